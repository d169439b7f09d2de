/**
 * The credential check of issue 10: a presented token (an API key, or a JWT) -> the Principal it stands
 * for, or the one reason it is refused. Synchronous and exception-free on any input, so the fronts can
 * call it inside a uWS upgrade handler and per HTTP request.
 *
 * API keys come first. Configuration holds only `sha256:<hex>` of each key (`Authenticator.hashKey`, or
 * `node dist/src/security/hash-key-cli.js`), never the key: the presented token is hashed, looked up by
 * its hash, and the stored hash compared with timingSafeEqual. (The lookup's timing depends on the hash of
 * what the client sent, which tells it nothing without a SHA-256 preimage.) A token with two dots that no
 * API key matches is tried as a JWT (jwt.ts).
 *
 * Verified JWTs are cached: an RS256 verification costs tens of µs, too much per request at 100k req/s.
 * The cache is keyed by the token's SHA-256 (the digest the API-key lookup computed anyway) rather than
 * by the token, so a heap dump holds no replayable tokens and an 8 KB token costs the cache 32 bytes. An
 * entry is never served once its principal's `expiresAt` has passed, and the whole cache is dropped when
 * keys change (`reload`, `reloadJwks`), so a removed key stops working at once. Failures are not cached:
 * only holders of valid tokens can add entries, so a client sending garbage cannot evict good ones, and
 * caching failures would save nothing against an attacker, who can vary the token at will.
 *
 * The cache is LRU-ish: eviction takes the oldest entry in insertion order, and a hit moves its entry to
 * the newest end only once it has drifted into the older half (a hit on a recently used entry is one Map
 * lookup).
 *
 * `mode: 'off'` authenticates every request as `anonymous` (no namespace, every permission, admin): what
 * the gateway did before issue 10, for a deployment behind its own access control.
 */
import { createHash, hash, timingSafeEqual } from 'node:crypto';
import { JwtVerifier, validateJwtOptions, type AuthFailure, type AuthResult, type JwtOptions } from './jwt';
import { makePrincipal, namespaceProblem, parseRules, Perm, type PermissionRule, type Principal } from './principal';
import { AuthConfigError, isRecord, unknownFields, type AuthProblem } from './problems';

export type { AuthFailure, AuthResult } from './jwt';

export type AuthMode = 'required' | 'off';

/** Permissions as configuration writes them: `"read,write"` or `["read", "write"]`. */
export type PermsText = string | string[];

export interface ApiKeyEntry {
  /** Names the key in logs and metrics; the principal's id. */
  id: string;
  /** `sha256:<64 lowercase hex>` of the key. */
  hash: string;
  namespace: string;
  /** Default: the namespace. */
  tenant?: string;
  /** For every key (exactly one of perms and rules). */
  perms?: PermsText;
  rules?: { prefix: string; perms: PermsText }[];
  admin?: boolean;
}

export interface AuthOptions {
  mode: AuthMode;
  apiKeys: ApiKeyEntry[];
  jwt: JwtOptions | null;
  /** Verified JWTs kept (default 10,000; 0: no cache). */
  cacheSize?: number;
}

export const DEFAULT_CACHE_SIZE = 10_000;
export const MAX_CACHE_SIZE = 1_000_000;
/** Longer credentials are refused unhashed (JWTs have their own, lower, limit). */
export const MAX_CREDENTIAL_CHARS = 65_536;
const MAX_TENANT_CHARS = 128;
const HASH_FORMAT = /^sha256:[0-9a-f]{64}$/;
const ID_FORMAT = /^[A-Za-z0-9._:@-]{1,64}$/;

/**
 * SHA-256 of a credential. `crypto.hash` (Node 20.12+) skips the Hash object and is about a fifth faster
 * on a cache hit, where hashing is most of the cost; older Node 20 releases lack it.
 */
const sha256: (text: string) => Buffer =
  typeof hash === 'function'
    ? (text) => hash('sha256', text, 'buffer')
    : (text) => createHash('sha256').update(text, 'utf8').digest();

const refused = (reason: AuthFailure): AuthResult => Object.freeze({ ok: false, reason });
const MISSING = refused('missing');
const MALFORMED = refused('malformed');
const BAD_API_KEY = refused('bad_api_key');
const JWT_DISABLED = refused('jwt_disabled');
const EXPIRED = refused('expired');

interface CacheEntry {
  readonly result: AuthResult & { ok: true };
  seq: number;
}

/** Verified tokens by digest, bounded, LRU-ish (see the file header). */
export class TokenCache {
  private readonly map = new Map<string, CacheEntry>();
  private seq = 0;
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.map.size;
  }

  /** The cached result; EXPIRED (and the entry dropped) once past its expiry; undefined when absent. */
  get(digest: string, nowMs: number): AuthResult | undefined {
    const e = this.map.get(digest);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    if (nowMs >= e.result.principal.expiresAt) {
      this.map.delete(digest);
      return EXPIRED;
    }
    this.hits++;
    if (this.seq - e.seq > this.capacity >> 1) {
      this.map.delete(digest);
      e.seq = ++this.seq;
      this.map.set(digest, e);
    }
    return e.result;
  }

  set(digest: string, result: AuthResult & { ok: true }): void {
    if (this.capacity === 0) return;
    if (!this.map.has(digest) && this.map.size >= this.capacity) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
      this.evictions++;
    }
    this.map.delete(digest);
    this.map.set(digest, { result: Object.freeze(result), seq: ++this.seq });
  }

  clear(): void {
    this.map.clear();
  }
}

interface StoredKey {
  readonly digest: Buffer;
  readonly result: AuthResult;
}

/** Everything built from one AuthOptions, swapped as one object on reload. */
class AuthState {
  readonly apiKeys = new Map<string, StoredKey>();
  readonly jwt: JwtVerifier | null;
  readonly cache: TokenCache;
  readonly anonymous: AuthResult;

  constructor(readonly options: AuthOptions) {
    const problems: AuthProblem[] = [];
    for (const k of compileApiKeys(options.apiKeys, 'apiKeys', problems)) {
      const digest = Buffer.from(k.hash.slice('sha256:'.length), 'hex');
      this.apiKeys.set(digest.toString('latin1'), {
        digest,
        result: Object.freeze({ ok: true, principal: k.principal }),
      });
    }
    let jwt: JwtVerifier | null = null;
    if (options.jwt !== null) {
      try {
        jwt = new JwtVerifier(options.jwt);
      } catch (err) {
        if (!(err instanceof AuthConfigError)) throw err;
        problems.push(...err.problems);
      }
    }
    if (problems.length > 0) throw new AuthConfigError(problems);
    this.jwt = jwt;
    this.cache = new TokenCache(options.cacheSize ?? DEFAULT_CACHE_SIZE);
    this.anonymous = Object.freeze({
      ok: true,
      principal: makePrincipal({
        id: 'anonymous',
        tenant: '',
        namespace: '',
        rules: [{ prefix: '', perms: Perm.All }],
        admin: true,
        expiresAt: Infinity,
      }),
    });
  }
}

export class Authenticator {
  private state: AuthState;

  /** Throws AuthConfigError naming every problem (validateAuthOptions names them without throwing). */
  constructor(
    options: AuthOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.state = new AuthState(options);
  }

  /** `sha256:<hex>` of a key, as `apiKeys[].hash` holds it. */
  static hashKey(plain: string): string {
    return 'sha256:' + createHash('sha256').update(plain, 'utf8').digest('hex');
  }

  get mode(): AuthMode {
    return this.state.options.mode;
  }

  /** Cache counters, for metrics. */
  get cacheStats(): { size: number; capacity: number; hits: number; misses: number; evictions: number } {
    const c = this.state.cache;
    return { size: c.size, capacity: c.capacity, hits: c.hits, misses: c.misses, evictions: c.evictions };
  }

  /** The principal `token` stands for at `nowMs`, or why not. Never throws; the result never holds the token. */
  authenticate(token: string, nowMs: number = this.now()): AuthResult {
    const s = this.state;
    if (s.options.mode === 'off') return s.anonymous;
    if (typeof token !== 'string' || token.length === 0) return MISSING;
    if (token.length > MAX_CREDENTIAL_CHARS) return MALFORMED;
    const digest = sha256(token);
    const id = digest.toString('latin1');
    const key = s.apiKeys.get(id);
    if (key !== undefined && timingSafeEqual(digest, key.digest)) return key.result;
    if (!hasTwoDots(token)) return BAD_API_KEY;
    if (s.jwt === null) return JWT_DISABLED;
    const hit = s.cache.get(id, nowMs);
    if (hit !== undefined) return hit;
    const r = s.jwt.verify(token, nowMs);
    if (r.ok) s.cache.set(id, r);
    return r;
  }

  /** Replaces every key and setting at once, the cache with it; on a bad `options` throws and keeps the old. */
  reload(options: AuthOptions): void {
    this.state = new AuthState(options);
  }

  /** Re-reads the JWKS file (key rotation at the identity provider); clears the cache when the keys changed. */
  reloadJwks(): AuthProblem[] {
    const jwt = this.state.jwt;
    if (jwt === null) return [];
    const problems = jwt.reload();
    if (problems.length === 0) this.state.cache.clear();
    return problems;
  }
}

function hasTwoDots(t: string): boolean {
  const a = t.indexOf('.');
  if (a < 0) return false;
  const b = t.indexOf('.', a + 1);
  return b >= 0 && t.indexOf('.', b + 1) < 0;
}

interface CompiledKey {
  hash: string;
  principal: Principal;
}

const API_KEY_FIELDS = new Set(['id', 'hash', 'namespace', 'tenant', 'perms', 'rules', 'admin']);

/** The usable entries of `entries`, with a problem pushed for every bad field (an entry with one is left out). */
function compileApiKeys(entries: unknown, path: string, problems: AuthProblem[]): CompiledKey[] {
  if (!Array.isArray(entries)) {
    problems.push({ path, message: 'must be a list' });
    return [];
  }
  const out: CompiledKey[] = [];
  const ids = new Map<string, number>();
  const hashes = new Map<string, number>();
  entries.forEach((e: unknown, i: number) => {
    const at = `${path}[${i}]`;
    if (!isRecord(e)) {
      problems.push({ path: at, message: 'must be {id, hash, namespace, perms | rules, tenant?, admin?}' });
      return;
    }
    const before = problems.length;
    problems.push(...unknownFields(e, API_KEY_FIELDS, at));
    const { id, hash, namespace, tenant, perms, rules, admin } = e;
    if (typeof id !== 'string' || !ID_FORMAT.test(id))
      problems.push({ path: `${at}.id`, message: 'must be 1-64 of A-Z a-z 0-9 . _ : @ -' });
    else if (id.startsWith('jwt:'))
      problems.push({ path: `${at}.id`, message: 'must not start with jwt: (JWT principals do)' });
    else if (ids.has(id)) problems.push({ path: `${at}.id`, message: `"${id}" is also ${path}[${ids.get(id)}]'s id` });
    else ids.set(id, i);
    if (typeof hash !== 'string' || !HASH_FORMAT.test(hash))
      problems.push({
        path: `${at}.hash`,
        message: 'must be sha256:<64 lowercase hex digits> (the hash of the key, never the key itself)',
      });
    else if (hashes.has(hash))
      problems.push({
        path: `${at}.hash`,
        message: `is also ${path}[${hashes.get(hash)}]'s hash (one key, two entries)`,
      });
    else hashes.set(hash, i);
    if (typeof namespace !== 'string')
      problems.push({ path: `${at}.namespace`, message: "must be a string ('' for none)" });
    else {
      const why = namespaceProblem(namespace);
      if (why !== null) problems.push({ path: `${at}.namespace`, message: why });
    }
    if (
      tenant !== undefined &&
      (typeof tenant !== 'string' || tenant.length > MAX_TENANT_CHARS || /[\u0000-\u001f\u007f]/.test(tenant))
    )
      problems.push({
        path: `${at}.tenant`,
        message: `must be a string of at most ${MAX_TENANT_CHARS} characters, no control characters`,
      });
    if (admin !== undefined && typeof admin !== 'boolean')
      problems.push({ path: `${at}.admin`, message: 'must be true or false' });
    let parsed: PermissionRule[] = [];
    if ((perms === undefined) === (rules === undefined))
      problems.push({ path: at, message: 'needs exactly one of perms ("read,write") and rules ([{prefix, perms}])' });
    else {
      const r = perms !== undefined ? parseRules(perms, `${at}.perms`) : parseRules(rules, `${at}.rules`);
      if (!r.ok) problems.push(...r.problems);
      else parsed = r.rules;
    }
    if (problems.length > before) return;
    out.push({
      hash: hash as string,
      principal: makePrincipal({
        id: id as string,
        tenant: (tenant as string | undefined) ?? (namespace as string),
        namespace: namespace as string,
        rules: parsed,
        admin: admin === true,
        expiresAt: Infinity,
      }),
    });
  });
  return out;
}

export interface AuthValidation {
  options?: AuthOptions;
  problems: AuthProblem[];
}

const AUTH_FIELDS = new Set(['mode', 'apiKeys', 'jwt', 'cacheSize']);

/**
 * Checks a `security.auth` section as read from a file and names every bad field at once: unknown fields,
 * hash format, duplicate ids and hashes, permissions, namespaces, JWT settings, HS256 secrets shorter than
 * 32 bytes, PEMs and JWKs that do not load, a JWKS file that cannot be read. The options come back with
 * defaults filled in when there is no problem.
 */
export function validateAuthOptions(raw: unknown, path = 'security.auth'): AuthValidation {
  if (!isRecord(raw)) return { problems: [{ path, message: 'must be an object' }] };
  const problems: AuthProblem[] = unknownFields(raw, AUTH_FIELDS, path);
  const mode = raw.mode;
  if (mode !== 'required' && mode !== 'off')
    problems.push({ path: `${path}.mode`, message: 'must be "required" or "off"' });
  const apiKeys = raw.apiKeys ?? [];
  compileApiKeys(apiKeys, `${path}.apiKeys`, problems);
  let jwt: JwtOptions | null = null;
  if (raw.jwt !== undefined && raw.jwt !== null) {
    const v = validateJwtOptions(raw.jwt, `${path}.jwt`);
    problems.push(...v.problems);
    jwt = v.options ?? null;
  }
  const cacheSize = raw.cacheSize ?? DEFAULT_CACHE_SIZE;
  if (typeof cacheSize !== 'number' || !Number.isInteger(cacheSize) || cacheSize < 0 || cacheSize > MAX_CACHE_SIZE)
    problems.push({ path: `${path}.cacheSize`, message: `must be a whole number from 0 to ${MAX_CACHE_SIZE}` });
  if (
    mode === 'required' &&
    Array.isArray(apiKeys) &&
    apiKeys.length === 0 &&
    (raw.jwt === undefined || raw.jwt === null)
  )
    problems.push({
      path,
      message: 'mode is "required" but no apiKeys and no jwt are configured: nothing could authenticate',
    });
  if (problems.length > 0) return { problems };
  return {
    options: { mode: mode as AuthMode, apiKeys: apiKeys as ApiKeyEntry[], jwt, cacheSize: cacheSize as number },
    problems,
  };
}
