/**
 * JWT verification for the credential check (issue 10), with node:crypto alone and synchronously: the
 * check runs inside the uWS upgrade handler, where nothing may be awaited. `verify` never throws on what
 * a client sends and never repeats the token in what it returns: a failure is one `AuthFailure` name.
 *
 * Accepted: compact JWS (`header.payload.signature`, strict base64url without padding) signed HS256,
 * RS256 or ES256 (an ES256 signature is the raw 64-byte r||s of RFC 7518, not DER). Refused: `alg` none
 * or any algorithm not in `algorithms`; a `crit` header (we implement no extension); a key used with an
 * algorithm other than its own (every key is bound to one alg when configured: an RSA public key is never
 * an HMAC secret, whatever the token says); a wrong signature; `exp` passed or `nbf` not reached (both
 * with `clockSkewSeconds` of slack, default 30); a missing `exp` unless `requireExp: false`; `aud` not
 * naming the configured audience (the token's `aud` may be a string or a list); `iss` not the configured
 * issuer. Header fields that point at keys (`jku`, `x5u`, `jwk`, `x5c`) are ignored: only configured keys
 * verify.
 *
 * Keys: `keys` from the configuration, each `{kid?, alg, secret | publicKeyPem | jwk}`, and the public
 * keys of a JWKS file (`{"keys": [...]}`, read at construction and on `reload()`; a key whose `use` is not
 * `sig` or whose algorithm we do not verify is skipped). Several keys may be valid at once (rotation keeps
 * the previous key until its tokens expire). A token with a `kid` is checked against the keys with that
 * kid (and whose alg is the token's); when no key has that kid, against the keys configured without one.
 * A token without a `kid` is checked against every key whose alg is the token's.
 * An HS256 `secret` is its UTF-8 bytes, or, written `base64url:<text>`, the bytes that text decodes to
 * (most identity providers hand out a random secret as base64url); at least 32 bytes either way.
 *
 * Claims -> Principal (names configurable in `claims`, defaults in brackets):
 *  - subject [`sub`]: required string; the principal's id is `jwt:<sub>`.
 *  - namespace [`kvgate_ns`]: string; when absent, `defaultNamespace` if configured, else the token is
 *    refused (a tenant's token silently given the whole un-namespaced key space would be the worst outcome).
 *  - perms [`kvgate_perms`]: `"read,write"` / `["read"]` for every key, or a list of `{prefix, perms}`;
 *    absent: no key may be touched (an admin-only token).
 *  - tenant [`kvgate_tenant`]: string; absent: the namespace.
 *  - admin [`kvgate_admin`]: boolean; absent: false.
 * The principal's `expiresAt` is `exp` plus the clock skew: the instant `verify` would start refusing it.
 */
import { createHmac, createPublicKey, timingSafeEqual, verify, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { makePrincipal, namespaceProblem, parseRules, type Principal } from './principal';
import { AuthConfigError, isRecord, unknownFields, type AuthProblem } from './problems';

export type JwtAlg = 'HS256' | 'RS256' | 'ES256';
export const JWT_ALGS: readonly JwtAlg[] = Object.freeze(['HS256', 'RS256', 'ES256'] as const);

/** Every reason a credential is refused, for log fields and a metrics label (a closed set). */
export const AUTH_FAILURES = Object.freeze([
  'missing', // no credential presented
  'malformed', // not a JWT we can read: bad base64url, bad JSON, not three parts, too long
  'unsupported_alg', // alg none, or not in the allowed list
  'unsupported_crit', // a crit header: an extension we do not implement
  'unknown_key', // no configured key for the token's kid and alg
  'bad_signature',
  'expired',
  'not_yet_valid',
  'wrong_audience',
  'wrong_issuer',
  'missing_claim', // exp (when required), sub, or the namespace (with no default)
  'bad_claims', // a claim of the wrong type or value
  'bad_api_key', // not a JWT and no API key has this hash
  'jwt_disabled', // looks like a JWT, but no JWT keys are configured
] as const);
export type AuthFailure = (typeof AUTH_FAILURES)[number];

export type AuthResult = { ok: true; principal: Principal } | { ok: false; reason: AuthFailure };

export interface JwtKeyConfig {
  kid?: string;
  alg: JwtAlg;
  /** HS256 only: UTF-8 text, or `base64url:<text>`; at least 32 bytes. */
  secret?: string;
  /** RS256 / ES256 only: an SPKI or PKCS#1 public key in PEM. */
  publicKeyPem?: string;
  /** A public JWK (RSA, EC P-256) or, for HS256, an `oct` JWK. */
  jwk?: JsonWebKey;
}

export interface JwtClaimNames {
  subject: string;
  namespace: string;
  perms: string;
  tenant: string;
  admin: string;
}

export const DEFAULT_CLAIM_NAMES: Readonly<JwtClaimNames> = Object.freeze({
  subject: 'sub',
  namespace: 'kvgate_ns',
  perms: 'kvgate_perms',
  tenant: 'kvgate_tenant',
  admin: 'kvgate_admin',
});

export interface JwtOptions {
  keys: JwtKeyConfig[];
  jwksFile?: string | null;
  /** Algorithms accepted at all (default: all three). */
  algorithms?: JwtAlg[];
  /** When set, the token's `aud` must name one of these. */
  audience?: string | string[] | null;
  /** When set, the token's `iss` must be one of these. */
  issuer?: string | string[] | null;
  /** Slack for `exp` and `nbf` (default 30). */
  clockSkewSeconds?: number;
  /** Refuse tokens without `exp` (default true). */
  requireExp?: boolean;
  claims?: Partial<JwtClaimNames>;
  /** Namespace of a token without the namespace claim; null (default): such a token is refused. */
  defaultNamespace?: string | null;
  /** Longer tokens are refused unread (default 8192). */
  maxTokenBytes?: number;
}

export const DEFAULT_CLOCK_SKEW_SECONDS = 30;
export const DEFAULT_MAX_TOKEN_BYTES = 8192;
/** Shortest HS256 secret: RFC 7518 §3.2 asks for a key at least as long as the hash. */
export const MIN_HMAC_SECRET_BYTES = 32;
const MAX_SUBJECT_CHARS = 256;
const MAX_TENANT_CHARS = 128;

/** A key ready to verify with, bound to its one algorithm. */
interface VerifyKey {
  readonly kid: string | null;
  readonly alg: JwtAlg;
  /** HS256 only. */
  readonly secret: Buffer | null;
  /** RS256 / ES256 only. */
  readonly publicKey: KeyObject | null;
}

/** The keys in use, replaced as a whole on reload. */
class KeySet {
  private readonly byKid = new Map<string, VerifyKey[]>();
  /** Every key, by algorithm. */
  private readonly byAlg = new Map<JwtAlg, VerifyKey[]>();
  /** Keys configured without a kid, by algorithm. */
  private readonly kidless = new Map<JwtAlg, VerifyKey[]>();

  constructor(readonly keys: readonly VerifyKey[]) {
    for (const k of keys) {
      push(this.byAlg, k.alg, k);
      if (k.kid === null) push(this.kidless, k.alg, k);
      else push(this.byKid, k.kid, k);
    }
  }

  /** Keys to try for a token's kid (null: none in the header) and alg. */
  candidates(kid: string | null, alg: JwtAlg): readonly VerifyKey[] {
    if (kid === null) return this.byAlg.get(alg) ?? [];
    const named = this.byKid.get(kid);
    if (named !== undefined) return named.filter((k) => k.alg === alg);
    return this.kidless.get(alg) ?? [];
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

const B64URL = /^[A-Za-z0-9_-]+$/;
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Strict base64url without padding: only the alphabet, no impossible length, no stray trailing bits. */
function decodeB64url(s: string): Buffer | null {
  if (s.length === 0 || s.length % 4 === 1 || !B64URL.test(s)) return null;
  const b = Buffer.from(s, 'base64url');
  return b.toString('base64url') === s ? b : null;
}

function own(obj: Record<string, unknown>, name: string): unknown {
  return Object.prototype.hasOwnProperty.call(obj, name) ? obj[name] : undefined;
}

const isAlg = (v: unknown): v is JwtAlg => typeof v === 'string' && (JWT_ALGS as readonly string[]).includes(v);
const asList = (v: string | string[] | null | undefined): string[] | null =>
  v === null || v === undefined ? null : typeof v === 'string' ? [v] : v;

/** The options with every default filled in. */
interface ResolvedJwtOptions {
  keys: JwtKeyConfig[];
  jwksFile: string | null;
  algorithms: ReadonlySet<JwtAlg>;
  audience: string[] | null;
  issuer: string[] | null;
  skewMs: number;
  requireExp: boolean;
  claims: JwtClaimNames;
  defaultNamespace: string | null;
  maxTokenBytes: number;
}

function resolve(o: JwtOptions): ResolvedJwtOptions {
  return {
    keys: o.keys,
    jwksFile: o.jwksFile ?? null,
    algorithms: new Set(o.algorithms ?? JWT_ALGS),
    audience: asList(o.audience),
    issuer: asList(o.issuer),
    skewMs: (o.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS) * 1000,
    requireExp: o.requireExp ?? true,
    claims: { ...DEFAULT_CLAIM_NAMES, ...(o.claims ?? {}) },
    defaultNamespace: o.defaultNamespace ?? null,
    maxTokenBytes: o.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES,
  };
}

export class JwtVerifier {
  private readonly opts: ResolvedJwtOptions;
  /** The configured keys, compiled once; the JWKS file's are added on each (re)load. */
  private readonly configured: readonly VerifyKey[];
  private keySet: KeySet;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });

  /** Throws AuthConfigError naming every key that does not compile (validateJwtOptions names them first). */
  constructor(options: JwtOptions) {
    this.opts = resolve(options);
    const problems: AuthProblem[] = [];
    this.configured = compileConfiguredKeys(this.opts, 'jwt', problems);
    const fromFile =
      this.opts.jwksFile === null ? [] : readJwks(this.opts.jwksFile, this.opts, 'jwt.jwksFile', problems);
    if (problems.length > 0) throw new AuthConfigError(problems);
    this.keySet = new KeySet([...this.configured, ...fromFile]);
    if (this.keySet.keys.length === 0) throw new AuthConfigError([{ path: 'jwt', message: 'no usable key' }]);
  }

  /** Keys in use (configured and from the JWKS file). */
  get keyCount(): number {
    return this.keySet.keys.length;
  }

  /** Skew applied to exp and nbf, in ms. */
  get clockSkewMs(): number {
    return this.opts.skewMs;
  }

  /**
   * Re-reads the JWKS file. On any problem the keys in use stay as they were and the problems are
   * returned; on success the new set replaces the old at once (a removed key stops verifying).
   */
  reload(): AuthProblem[] {
    if (this.opts.jwksFile === null) return [];
    const problems: AuthProblem[] = [];
    const fromFile = readJwks(this.opts.jwksFile, this.opts, 'jwt.jwksFile', problems);
    if (problems.length === 0 && this.configured.length + fromFile.length === 0)
      problems.push({ path: 'jwt.jwksFile', message: 'no usable key' });
    if (problems.length > 0) return problems;
    this.keySet = new KeySet([...this.configured, ...fromFile]);
    return [];
  }

  /** Checks `token` at `nowMs`; never throws. */
  verify(token: string, nowMs: number): AuthResult {
    try {
      return this.check(token, nowMs);
    } catch {
      // Nothing above should throw on any input; if crypto does on some key/signature pairing, the
      // token is refused as unverifiable rather than crashing the upgrade handler.
      return { ok: false, reason: 'bad_signature' };
    }
  }

  private check(token: string, nowMs: number): AuthResult {
    const o = this.opts;
    if (typeof token !== 'string' || token.length === 0) return fail('missing');
    if (token.length > o.maxTokenBytes) return fail('malformed');
    const d1 = token.indexOf('.');
    const d2 = d1 < 0 ? -1 : token.indexOf('.', d1 + 1);
    if (d2 < 0 || token.indexOf('.', d2 + 1) >= 0) return fail('malformed');

    const header = this.json(token.slice(0, d1));
    if (header === null) return fail('malformed');
    const alg = own(header, 'alg');
    if (!isAlg(alg) || !o.algorithms.has(alg)) return fail('unsupported_alg');
    if (own(header, 'crit') !== undefined) return fail('unsupported_crit');
    const kid = own(header, 'kid');
    if (kid !== undefined && typeof kid !== 'string') return fail('malformed');

    const sig = decodeB64url(token.slice(d2 + 1));
    if (sig === null) return fail('malformed');
    // The payload must be well formed before any key is tried, but is parsed only once the signature holds.
    const payloadText = token.slice(d1 + 1, d2);
    if (decodeB64url(payloadText) === null) return fail('malformed');

    const keys = this.keySet.candidates(kid ?? null, alg);
    if (keys.length === 0) return fail('unknown_key');
    const input = Buffer.from(token.slice(0, d2), 'latin1'); // ASCII: both parts passed the alphabet check
    let good = false;
    for (let i = 0; i < keys.length && !good; i++) good = verifyWith(keys[i], input, sig);
    if (!good) return fail('bad_signature');

    const claims = this.json(payloadText);
    if (claims === null) return fail('malformed');
    return this.principalFrom(claims, nowMs);
  }

  /** A base64url part decoded as a JSON object, or null. */
  private json(part: string): Record<string, unknown> | null {
    const bytes = decodeB64url(part);
    if (bytes === null) return null;
    try {
      const v: unknown = JSON.parse(this.utf8.decode(bytes));
      return isRecord(v) ? v : null;
    } catch {
      return null;
    }
  }

  private principalFrom(c: Record<string, unknown>, nowMs: number): AuthResult {
    const o = this.opts;
    const exp = own(c, 'exp');
    const nbf = own(c, 'nbf');
    if (exp !== undefined && !isNumericDate(exp)) return fail('bad_claims');
    if (nbf !== undefined && !isNumericDate(nbf)) return fail('bad_claims');
    if (exp === undefined && o.requireExp) return fail('missing_claim');
    const expiresAt = exp === undefined ? Infinity : (exp as number) * 1000 + o.skewMs;
    if (nowMs >= expiresAt) return fail('expired');
    if (nbf !== undefined && nowMs < (nbf as number) * 1000 - o.skewMs) return fail('not_yet_valid');

    if (o.audience !== null) {
      const aud = own(c, 'aud');
      if (
        aud !== undefined &&
        typeof aud !== 'string' &&
        !(Array.isArray(aud) && aud.every((a) => typeof a === 'string'))
      )
        return fail('bad_claims');
      const named = aud === undefined ? [] : typeof aud === 'string' ? [aud] : (aud as string[]);
      if (!named.some((a) => o.audience!.includes(a))) return fail('wrong_audience');
    }
    if (o.issuer !== null) {
      const iss = own(c, 'iss');
      if (typeof iss !== 'string' || !o.issuer.includes(iss)) return fail('wrong_issuer');
    }

    const names = o.claims;
    const sub = own(c, names.subject);
    if (sub === undefined) return fail('missing_claim');
    if (typeof sub !== 'string' || sub.length === 0 || sub.length > MAX_SUBJECT_CHARS || CONTROL.test(sub))
      return fail('bad_claims');

    let namespace = own(c, names.namespace);
    if (namespace === undefined) {
      if (o.defaultNamespace === null) return fail('missing_claim');
      namespace = o.defaultNamespace;
    }
    if (typeof namespace !== 'string' || namespaceProblem(namespace) !== null) return fail('bad_claims');

    const tenant = own(c, names.tenant) ?? namespace;
    if (typeof tenant !== 'string' || tenant.length > MAX_TENANT_CHARS || CONTROL.test(tenant))
      return fail('bad_claims');

    const admin = own(c, names.admin) ?? false;
    if (typeof admin !== 'boolean') return fail('bad_claims');

    const permsClaim = own(c, names.perms);
    let rules: { prefix: string; perms: number }[] = [];
    if (permsClaim !== undefined) {
      const parsed = parseRules(permsClaim, names.perms);
      if (!parsed.ok) return fail('bad_claims');
      rules = parsed.rules;
    }
    return { ok: true, principal: makePrincipal({ id: `jwt:${sub}`, tenant, namespace, rules, admin, expiresAt }) };
  }
}

function fail(reason: AuthFailure): AuthResult {
  return { ok: false, reason };
}

function isNumericDate(v: unknown): boolean {
  return typeof v === 'number' && Number.isFinite(v);
}

function verifyWith(k: VerifyKey, input: Buffer, sig: Buffer): boolean {
  switch (k.alg) {
    case 'HS256': {
      if (sig.length !== 32) return false;
      const mac = createHmac('sha256', k.secret!).update(input).digest();
      return timingSafeEqual(mac, sig);
    }
    case 'RS256':
      return verify('sha256', input, k.publicKey!, sig);
    case 'ES256':
      if (sig.length !== 64) return false;
      return verify('sha256', input, { key: k.publicKey!, dsaEncoding: 'ieee-p1363' }, sig);
  }
}

const KEY_FIELDS = new Set(['kid', 'alg', 'secret', 'publicKeyPem', 'jwk']);

function compileConfiguredKeys(o: ResolvedJwtOptions, path: string, problems: AuthProblem[]): VerifyKey[] {
  const out: VerifyKey[] = [];
  o.keys.forEach((cfg, i) => {
    const at = `${path}.keys[${i}]`;
    if (!isRecord(cfg)) {
      problems.push({ path: at, message: 'must be {kid?, alg, secret | publicKeyPem | jwk}' });
      return;
    }
    problems.push(...unknownFields(cfg, KEY_FIELDS, at));
    const k = compileKey(cfg, at, problems);
    if (k === null) return;
    if (!o.algorithms.has(k.alg))
      problems.push({ path: `${at}.alg`, message: `${k.alg} is not among the accepted algorithms` });
    else out.push(k);
  });
  return out;
}

/** One configured key, or null with its problems pushed. */
function compileKey(cfg: Record<string, unknown>, at: string, problems: AuthProblem[]): VerifyKey | null {
  const before = problems.length;
  const { kid, alg, secret, publicKeyPem, jwk } = cfg;
  if (kid !== undefined && (typeof kid !== 'string' || kid.length === 0))
    problems.push({ path: `${at}.kid`, message: 'must be a non-empty string' });
  if (!isAlg(alg)) {
    problems.push({ path: `${at}.alg`, message: `must be one of ${JWT_ALGS.join(', ')}` });
    return null;
  }
  const given = [secret, publicKeyPem, jwk].filter((v) => v !== undefined).length;
  if (given !== 1) {
    problems.push({ path: at, message: 'needs exactly one of secret, publicKeyPem, jwk' });
    return null;
  }
  let secretBytes: Buffer | null = null;
  let publicKey: KeyObject | null = null;
  let jwkKid: string | null = null;
  if (alg === 'HS256') {
    if (publicKeyPem !== undefined) {
      problems.push({
        path: `${at}.publicKeyPem`,
        message: 'an HS256 key is a shared secret: a public key cannot be one',
      });
      return null;
    }
    if (secret !== undefined) secretBytes = secretFrom(secret, `${at}.secret`, problems);
    else if (isRecord(jwk) && jwk.kty === 'oct' && typeof jwk.k === 'string') {
      secretBytes = decodeB64url(jwk.k);
      if (secretBytes === null) problems.push({ path: `${at}.jwk.k`, message: 'is not base64url' });
      jwkKid = typeof jwk.kid === 'string' ? jwk.kid : null;
    } else problems.push({ path: `${at}.jwk`, message: 'an HS256 JWK must be {kty: "oct", k}' });
    if (secretBytes !== null && secretBytes.length < MIN_HMAC_SECRET_BYTES)
      problems.push({ path: at, message: `an HS256 secret must be at least ${MIN_HMAC_SECRET_BYTES} bytes` });
  } else {
    if (secret !== undefined) {
      problems.push({ path: `${at}.secret`, message: `an ${alg} key is a public key, not a secret` });
      return null;
    }
    if (publicKeyPem !== undefined) publicKey = publicKeyFromPem(publicKeyPem, `${at}.publicKeyPem`, problems);
    else {
      publicKey = publicKeyFromJwk(jwk, `${at}.jwk`, problems);
      if (isRecord(jwk) && typeof jwk.kid === 'string') jwkKid = jwk.kid;
      if (isRecord(jwk) && jwk.alg !== undefined && jwk.alg !== alg)
        problems.push({ path: `${at}.jwk.alg`, message: `says ${String(jwk.alg)}, the key says ${alg}` });
    }
    if (publicKey !== null) {
      const why = keyTypeProblem(publicKey, alg);
      if (why !== null) problems.push({ path: at, message: why });
    }
  }
  if (problems.length > before) return null;
  return { kid: typeof kid === 'string' ? kid : jwkKid, alg, secret: secretBytes, publicKey };
}

function secretFrom(v: unknown, at: string, problems: AuthProblem[]): Buffer | null {
  if (typeof v !== 'string') {
    problems.push({ path: at, message: 'must be a string (UTF-8 text, or base64url:<text>)' });
    return null;
  }
  if (!v.startsWith('base64url:')) return Buffer.from(v, 'utf8');
  const b = decodeB64url(v.slice('base64url:'.length));
  if (b === null) problems.push({ path: at, message: 'the text after base64url: is not base64url (no padding)' });
  return b;
}

function publicKeyFromPem(v: unknown, at: string, problems: AuthProblem[]): KeyObject | null {
  if (typeof v !== 'string') {
    problems.push({ path: at, message: 'must be a PEM string' });
    return null;
  }
  if (/PRIVATE KEY-----/.test(v)) {
    problems.push({ path: at, message: 'is a private key: give the gateway the public key only' });
    return null;
  }
  try {
    return createPublicKey({ key: v, format: 'pem' });
  } catch {
    problems.push({ path: at, message: 'is not a readable PEM public key' });
    return null;
  }
}

function publicKeyFromJwk(v: unknown, at: string, problems: AuthProblem[]): KeyObject | null {
  if (!isRecord(v)) {
    problems.push({ path: at, message: 'must be a JWK object' });
    return null;
  }
  if (v.d !== undefined) {
    problems.push({ path: at, message: 'is a private JWK: give the gateway the public key only' });
    return null;
  }
  try {
    return createPublicKey({ key: v as JsonWebKey, format: 'jwk' });
  } catch {
    problems.push({ path: at, message: 'is not a readable public JWK' });
    return null;
  }
}

/** Why `k` cannot verify `alg`, or null. RSA keys under 2048 bits are refused (RFC 7518 §3.3). */
function keyTypeProblem(k: KeyObject, alg: JwtAlg): string | null {
  if (alg === 'RS256') {
    if (k.asymmetricKeyType !== 'rsa') return `an RS256 key must be an RSA key (got ${k.asymmetricKeyType})`;
    if ((k.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return 'an RS256 key must have at least 2048 bits';
  } else if (alg === 'ES256') {
    if (k.asymmetricKeyType !== 'ec' || k.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
      return 'an ES256 key must be an EC key on P-256 (prime256v1)';
  }
  return null;
}

/** The usable keys of a JWKS file; problems for a file that cannot be read or a key that claims our alg but does not load. */
function readJwks(file: string, o: ResolvedJwtOptions, at: string, problems: AuthProblem[]): VerifyKey[] {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? 'not JSON';
    problems.push({ path: at, message: `cannot read ${file} as a JWKS (${why})` });
    return [];
  }
  if (!isRecord(doc) || !Array.isArray(doc.keys)) {
    problems.push({ path: at, message: `${file} is not a JWKS ({"keys": [...]})` });
    return [];
  }
  const out: VerifyKey[] = [];
  doc.keys.forEach((jwk: unknown, i: number) => {
    const kat = `${at} keys[${i}]`;
    if (!isRecord(jwk)) {
      problems.push({ path: kat, message: 'is not a JWK object' });
      return;
    }
    if (jwk.use !== undefined && jwk.use !== 'sig') return;
    let alg: unknown = jwk.alg;
    if (alg === undefined)
      alg = jwk.kty === 'RSA' ? 'RS256' : jwk.kty === 'EC' && jwk.crv === 'P-256' ? 'ES256' : undefined;
    // Other algorithms (RS384, EdDSA, ...) and symmetric keys may sit in a provider's JWKS: not ours to use.
    if (alg !== 'RS256' && alg !== 'ES256') return;
    if (!o.algorithms.has(alg)) return;
    const k = compileKey({ kid: jwk.kid, alg, jwk }, kat, problems);
    if (k !== null) out.push(k);
  });
  return out;
}

/** Validation result of a `jwt` section: the options with defaults filled in, or the problems. */
export interface JwtValidation {
  options?: JwtOptions;
  problems: AuthProblem[];
}

const JWT_FIELDS = new Set([
  'keys',
  'jwksFile',
  'algorithms',
  'audience',
  'issuer',
  'clockSkewSeconds',
  'requireExp',
  'claims',
  'defaultNamespace',
  'maxTokenBytes',
]);
const CLAIM_FIELDS = new Set(Object.keys(DEFAULT_CLAIM_NAMES));

/** Checks a `jwt` section as read from a file, naming every bad field; compiles the keys and reads the JWKS file. */
export function validateJwtOptions(raw: unknown, path: string): JwtValidation {
  if (!isRecord(raw)) return { problems: [{ path, message: 'must be an object (or null for no JWT)' }] };
  const problems: AuthProblem[] = unknownFields(raw, JWT_FIELDS, path);
  const keys = raw.keys ?? [];
  if (!Array.isArray(keys)) problems.push({ path: `${path}.keys`, message: 'must be a list' });
  const jwksFile = raw.jwksFile ?? null;
  if (jwksFile !== null && (typeof jwksFile !== 'string' || jwksFile === ''))
    problems.push({ path: `${path}.jwksFile`, message: 'must be a file path' });
  const algorithms = raw.algorithms ?? [...JWT_ALGS];
  if (!Array.isArray(algorithms) || algorithms.length === 0 || !algorithms.every(isAlg))
    problems.push({ path: `${path}.algorithms`, message: `must be a non-empty list of ${JWT_ALGS.join(', ')}` });
  const names = (f: string): void => {
    const v = raw[f];
    if (v === undefined || v === null) return;
    if (
      typeof v === 'string'
        ? v === ''
        : !Array.isArray(v) || v.length === 0 || !v.every((s) => typeof s === 'string' && s !== '')
    )
      problems.push({ path: `${path}.${f}`, message: 'must be a non-empty string or list of strings' });
  };
  names('audience');
  names('issuer');
  const skew = raw.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS;
  if (typeof skew !== 'number' || !Number.isInteger(skew) || skew < 0 || skew > 300)
    problems.push({ path: `${path}.clockSkewSeconds`, message: 'must be a whole number of seconds from 0 to 300' });
  const requireExp = raw.requireExp ?? true;
  if (typeof requireExp !== 'boolean') problems.push({ path: `${path}.requireExp`, message: 'must be true or false' });
  const claims = raw.claims ?? {};
  if (!isRecord(claims)) problems.push({ path: `${path}.claims`, message: 'must be an object of claim names' });
  else {
    problems.push(...unknownFields(claims, CLAIM_FIELDS, `${path}.claims`));
    for (const [k, v] of Object.entries(claims))
      if (CLAIM_FIELDS.has(k) && (typeof v !== 'string' || v === ''))
        problems.push({ path: `${path}.claims.${k}`, message: 'must be a non-empty claim name' });
  }
  const defaultNamespace = raw.defaultNamespace ?? null;
  if (defaultNamespace !== null) {
    const why = typeof defaultNamespace === 'string' ? namespaceProblem(defaultNamespace) : 'must be a string or null';
    if (why !== null) problems.push({ path: `${path}.defaultNamespace`, message: why });
  }
  const maxTokenBytes = raw.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES;
  if (
    typeof maxTokenBytes !== 'number' ||
    !Number.isInteger(maxTokenBytes) ||
    maxTokenBytes < 256 ||
    maxTokenBytes > 65536
  )
    problems.push({ path: `${path}.maxTokenBytes`, message: 'must be a whole number from 256 to 65536' });
  if (problems.length > 0) return { problems };

  const options: JwtOptions = {
    keys: keys as JwtKeyConfig[],
    jwksFile: jwksFile as string | null,
    algorithms: algorithms as JwtAlg[],
    audience: (raw.audience ?? null) as string | string[] | null,
    issuer: (raw.issuer ?? null) as string | string[] | null,
    clockSkewSeconds: skew as number,
    requireExp: requireExp as boolean,
    claims: { ...DEFAULT_CLAIM_NAMES, ...(claims as Partial<JwtClaimNames>) },
    defaultNamespace: defaultNamespace as string | null,
    maxTokenBytes: maxTokenBytes as number,
  };
  const r = resolve(options);
  const compiled = compileConfiguredKeys(r, path, problems);
  const fromFile = r.jwksFile === null ? [] : readJwks(r.jwksFile, r, `${path}.jwksFile`, problems);
  if (problems.length === 0 && compiled.length + fromFile.length === 0)
    problems.push({ path, message: 'no usable key (keys is empty and the JWKS file has none we verify)' });
  return problems.length > 0 ? { problems } : { options, problems };
}
