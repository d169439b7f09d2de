/**
 * The credential check of issue 10 (src/security) alone: prefix rules against a naive oracle, the JWT
 * verifier against tokens made here by a signer of our own (node:crypto's Sign/HMAC, our own base64url
 * and DER -> r||s conversion, none of the verifier's code), every refusal the verifier promises, a
 * little fuzzing (never throws, never accepts), API keys held as hashes, the verified-token cache and its
 * expiry, reloads, validation naming every problem at once, and the hash-key CLI.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, createHmac, createSign, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  allowed,
  allowedBytes,
  formatPermissions,
  makePrincipal,
  parsePermissions,
  parseRules,
  Perm,
  type PermissionRule,
} from '../src/security/principal';
import { JwtVerifier, type AuthResult, type JwtOptions } from '../src/security/jwt';
import { Authenticator, validateAuthOptions, type AuthOptions } from '../src/security/authenticator';
import { AuthConfigError } from '../src/security/problems';
import { prng } from './helpers/mc-raw';

// ---- a signer independent of the verifier ----

/** base64url by hand from standard base64 (the verifier uses Buffer's 'base64url'). */
function b64u(b: Buffer | string): string {
  return Buffer.from(b).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

/** A DER ECDSA signature (SEQUENCE of two INTEGERs, short-form lengths) as the 64-byte r||s of RFC 7518. */
function derToRaw(der: Buffer): Buffer {
  assert.equal(der[0], 0x30);
  let p = 2;
  const parts: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    assert.equal(der[p], 0x02);
    const n = der[p + 1];
    let v = der.subarray(p + 2, p + 2 + n);
    p += 2 + n;
    while (v.length > 32 && v[0] === 0) v = v.subarray(1);
    parts.push(Buffer.concat([Buffer.alloc(32 - v.length), v]));
  }
  return Buffer.concat(parts);
}

type SignKey = { alg: 'HS256'; secret: Buffer | string } | { alg: 'RS256' | 'ES256'; privateKey: KeyObject };

function signToken(key: SignKey, payload: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const input = `${b64u(JSON.stringify({ alg: key.alg, typ: 'JWT', ...header }))}.${b64u(JSON.stringify(payload))}`;
  let sig: Buffer;
  if (key.alg === 'HS256') sig = createHmac('sha256', key.secret).update(input).digest();
  else if (key.alg === 'RS256') sig = createSign('RSA-SHA256').update(input).sign(key.privateKey);
  else sig = derToRaw(createSign('SHA256').update(input).sign(key.privateKey));
  return `${input}.${b64u(sig)}`;
}

// ---- fixtures ----

const NOW = 1_800_000_000_000;
const SEC = NOW / 1000;
const SECRET = 'an-hs256-secret-of-at-least-32-bytes!';

function rsaPair(bits = 2048): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('rsa', { modulusLength: bits });
}
const rsa1 = rsaPair();
const rsa2 = rsaPair();
const ec1 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const pem = (k: KeyObject): string => k.export({ format: 'pem', type: 'spki' }) as string;

const RS1: SignKey = { alg: 'RS256', privateKey: rsa1.privateKey };
const RS2: SignKey = { alg: 'RS256', privateKey: rsa2.privateKey };
const ES1: SignKey = { alg: 'ES256', privateKey: ec1.privateKey };
const HS: SignKey = { alg: 'HS256', secret: SECRET };

function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { sub: 'alice', kvgate_ns: 'tenantA:', kvgate_perms: 'read,write', exp: SEC + 3600, ...extra };
}

function jwtOptions(extra: Partial<JwtOptions> = {}): JwtOptions {
  return {
    keys: [
      { alg: 'HS256', secret: SECRET, kid: 'h1' },
      { alg: 'RS256', publicKeyPem: pem(rsa1.publicKey), kid: 'r1' },
      { alg: 'ES256', publicKeyPem: pem(ec1.publicKey), kid: 'e1' },
    ],
    ...extra,
  };
}

function refusedAs(r: AuthResult): string {
  assert.equal(r.ok, false, 'expected a refusal');
  return r.ok ? '' : r.reason;
}

function principalOf(r: AuthResult) {
  assert.ok(r.ok, `expected success, got ${r.ok ? '' : r.reason}`);
  return r.principal;
}

// ---- permissions and rules ----

describe('permissions', () => {
  it('parses the compact forms and names every bad name', () => {
    assert.deepEqual(parsePermissions('read,write'), { ok: true, perms: Perm.Read | Perm.Write });
    assert.deepEqual(parsePermissions(['read', 'write', 'delete']), { ok: true, perms: 7 });
    assert.deepEqual(parsePermissions(' read , delete '), { ok: true, perms: Perm.Read | Perm.Delete });
    assert.deepEqual(parsePermissions('all'), { ok: true, perms: Perm.All });
    assert.deepEqual(parsePermissions('none'), { ok: true, perms: Perm.None });
    const bad = parsePermissions('read,reed,wirte');
    assert.equal(bad.ok, false);
    assert.equal(bad.ok ? 0 : bad.problems.length, 2);
    for (const v of ['', [], 'none,read', 42, [1], null, 'READ', 'constructor'])
      assert.equal(parsePermissions(v).ok, false, JSON.stringify(v));
    assert.equal(formatPermissions(Perm.Read | Perm.Delete), 'read,delete');
    assert.equal(formatPermissions(0), 'none');
  });

  it('parses rules: a perms string for every key, or distinct valid prefixes', () => {
    assert.deepEqual(parseRules('read', 'p'), { ok: true, rules: [{ prefix: '', perms: Perm.Read }] });
    assert.deepEqual(parseRules([{ prefix: 'a:', perms: ['write'] }], 'p'), {
      ok: true,
      rules: [{ prefix: 'a:', perms: Perm.Write }],
    });
    const r = parseRules(
      [
        { prefix: 'a:', perms: 'read' },
        { prefix: 'a:', perms: 'write' },
        { prefix: 'has space', perms: 'read' },
        { prefix: 'b:', perms: 'bogus' },
        { prefix: 7, perms: 'read', extra: 1 },
      ],
      'rules',
    );
    assert.equal(r.ok, false);
    const paths = r.ok ? [] : r.problems.map((p) => p.path);
    assert.deepEqual(paths.sort(), [
      'rules[1].prefix',
      'rules[2].prefix',
      'rules[3].perms',
      'rules[4].extra',
      'rules[4].prefix',
    ]);
  });
});

describe('allowedBytes: the longest matching prefix decides', () => {
  const p = makePrincipal({
    id: 'k',
    tenant: 't',
    namespace: 'ns:',
    admin: false,
    expiresAt: Infinity,
    rules: [
      { prefix: '', perms: Perm.Read },
      { prefix: 'user:', perms: Perm.Read | Perm.Write },
      { prefix: 'user:admin:', perms: Perm.None },
      { prefix: 'logs:', perms: Perm.Write },
      { prefix: 'ключ:', perms: Perm.Delete },
    ],
  });
  const at = (key: string, perm: Perm): boolean => {
    // The key sits inside a larger buffer, as it does in a request frame.
    const buf = Buffer.from(`\x00\x01${key}user:admin:zz`);
    return allowedBytes(p, buf, 2, Buffer.byteLength(key), perm);
  };

  it('applies the most specific rule, the empty prefix last', () => {
    assert.equal(at('x', Perm.Read), true);
    assert.equal(at('x', Perm.Write), false);
    assert.equal(at('user:1', Perm.Write), true);
    assert.equal(at('user:1', Perm.Read | Perm.Write), true);
    assert.equal(at('user:1', Perm.Read | Perm.Delete), false, 'every bit asked for must be granted');
    assert.equal(at('user:', Perm.Write), true, 'a key equal to the prefix matches it');
    assert.equal(at('user:admin:1', Perm.Read), false, 'a longer rule takes access away');
    assert.equal(at('user:ad', Perm.Write), true);
    const frame = Buffer.from('user:admin:1');
    assert.equal(allowedBytes(p, frame, 0, 7, Perm.Write), true, 'the bytes after len are not read');
    assert.equal(allowedBytes(p, frame, 0, frame.length, Perm.Write), false);
    assert.equal(at('use', Perm.Write), false);
    assert.equal(at('use', Perm.Read), true);
    assert.equal(at('logs:1', Perm.Read), false, 'the longest match wins even when a shorter one grants more');
    assert.equal(at('ключ:1', Perm.Delete), true, 'UTF-8 prefixes compare as bytes');
    assert.equal(at('ключ:1', Perm.Read), false);
    assert.equal(at('x', Perm.None), false, 'asking for nothing is not a grant');
    assert.deepEqual(
      p.rules.map((r) => r.prefix),
      ['user:admin:', 'ключ:', 'user:', 'logs:', ''],
      'rules are kept longest (in bytes) first',
    );
    assert.equal(p.namespaceBytes.toString(), 'ns:');
  });

  it('grants nothing where no rule matches (no empty prefix)', () => {
    const q = makePrincipal({ ...p, rules: [{ prefix: 'a:', perms: Perm.All }] });
    assert.equal(allowed(q, 'b:1', Perm.Read), false);
    assert.equal(allowed(q, Buffer.from('a:1'), Perm.Delete), true);
    const none = makePrincipal({ ...p, rules: [] });
    assert.equal(allowed(none, 'a', Perm.Read), false);
  });

  it('agrees with a naive oracle on random rules and keys, for strings and bytes', () => {
    const rand = prng(7);
    const alphabet = 'ab:';
    const word = (max: number): string =>
      Array.from({ length: Math.floor(rand() * (max + 1)) }, () => alphabet[Math.floor(rand() * 3)]).join('');
    for (let round = 0; round < 200; round++) {
      const byPrefix = new Map<string, number>();
      for (let i = 0; i < 1 + Math.floor(rand() * 6); i++) byPrefix.set(word(4), Math.floor(rand() * 8));
      const rules: PermissionRule[] = [...byPrefix].map(([prefix, perms]) => ({ prefix, perms }));
      const q = makePrincipal({ ...p, rules });
      for (let k = 0; k < 50; k++) {
        const key = 'x' + word(6);
        const key2 = word(6) || 'b';
        for (const kk of [key, key2]) {
          const matches = rules
            .filter((r) => kk.startsWith(r.prefix))
            .sort((a, b) => b.prefix.length - a.prefix.length);
          const granted = matches.length > 0 ? matches[0].perms : 0;
          const perm = (1 << Math.floor(rand() * 3)) as Perm;
          const want = (granted & perm) === perm;
          assert.equal(allowed(q, kk, perm), want, `${JSON.stringify(rules)} ${kk} ${perm}`);
          const buf = Buffer.from(`zz${kk}`);
          assert.equal(allowedBytes(q, buf, 2, buf.length - 2, perm), want);
        }
      }
    }
  });
});

// ---- JWT ----

describe('JWT: valid tokens', () => {
  const v = new JwtVerifier(jwtOptions());

  it('accepts HS256, RS256 and ES256 and maps the claims', () => {
    for (const [key, kid] of [
      [HS, 'h1'],
      [RS1, 'r1'],
      [ES1, 'e1'],
    ] as const) {
      const p = principalOf(v.verify(signToken(key, claims(), { kid }), NOW));
      assert.equal(p.id, 'jwt:alice');
      assert.equal(p.namespace, 'tenantA:');
      assert.equal(p.tenant, 'tenantA:', 'the tenant defaults to the namespace');
      assert.equal(p.admin, false);
      assert.equal(p.expiresAt, (SEC + 3600) * 1000 + 30_000, 'exp plus the clock skew');
      assert.deepEqual(p.rules, [{ prefix: '', perms: Perm.Read | Perm.Write }]);
    }
  });

  it('accepts tokens without kid by trying every key of the token alg', () => {
    for (const key of [HS, RS1, ES1]) assert.equal(v.verify(signToken(key, claims()), NOW).ok, true);
  });

  it('maps custom claim names, rule lists, tenant and admin', () => {
    const w = new JwtVerifier(
      jwtOptions({ claims: { subject: 'uid', namespace: 'ns', perms: 'p', tenant: 'org', admin: 'adm' } }),
    );
    const p = principalOf(
      w.verify(
        signToken(RS1, {
          uid: 'svc-7',
          ns: 'b:',
          org: 'acme',
          adm: true,
          p: [
            { prefix: 'x:', perms: 'read' },
            { prefix: '', perms: 'none' },
          ],
          exp: SEC + 60,
        }),
        NOW,
      ),
    );
    assert.equal(p.id, 'jwt:svc-7');
    assert.equal(p.tenant, 'acme');
    assert.equal(p.namespace, 'b:');
    assert.equal(p.admin, true);
    assert.equal(allowed(p, 'x:1', Perm.Read), true);
    assert.equal(allowed(p, 'y:1', Perm.Read), false);
  });

  it('takes an HS256 secret as base64url: bytes, and keys as JWKs', () => {
    const raw = randomBytes(32);
    const w = new JwtVerifier({
      keys: [
        { alg: 'HS256', secret: `base64url:${b64u(raw)}` },
        { alg: 'RS256', jwk: rsa2.publicKey.export({ format: 'jwk' }), kid: 'j2' },
        { alg: 'HS256', jwk: { kty: 'oct', k: b64u(randomBytes(40)), kid: 'o' } },
      ],
    });
    assert.equal(w.verify(signToken({ alg: 'HS256', secret: raw }, claims()), NOW).ok, true);
    assert.equal(
      refusedAs(w.verify(signToken({ alg: 'HS256', secret: `base64url:${b64u(raw)}` }, claims()), NOW)),
      'bad_signature',
      'the prefix and text are not the secret',
    );
    assert.equal(w.verify(signToken(RS2, claims(), { kid: 'j2' }), NOW).ok, true);
  });
});

describe('JWT: key selection and rotation', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvgate-auth-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const jwks = (...keys: [KeyObject, string][]): string =>
    JSON.stringify({
      keys: [
        ...keys.map(([k, kid]) => ({ ...k.export({ format: 'jwk' }), kid, use: 'sig' })),
        { kty: 'RSA', alg: 'RS512', kid: 'ignored', n: 'AQAB', e: 'AQAB' },
        { ...rsa2.publicKey.export({ format: 'jwk' }), kid: 'enc-key', use: 'enc' },
      ],
    });

  it('picks the key by kid: a token signed by another key under that kid fails', () => {
    const v = new JwtVerifier({
      keys: [
        { alg: 'RS256', publicKeyPem: pem(rsa1.publicKey), kid: 'k1' },
        { alg: 'RS256', publicKeyPem: pem(rsa2.publicKey), kid: 'k2' },
      ],
    });
    assert.equal(v.verify(signToken(RS2, claims(), { kid: 'k2' }), NOW).ok, true);
    assert.equal(v.verify(signToken(RS1, claims(), { kid: 'k1' }), NOW).ok, true);
    assert.equal(refusedAs(v.verify(signToken(RS2, claims(), { kid: 'k1' }), NOW)), 'bad_signature');
    assert.equal(refusedAs(v.verify(signToken(RS2, claims(), { kid: 'k9' }), NOW)), 'unknown_key');
    assert.equal(v.verify(signToken(RS2, claims()), NOW).ok, true, 'no kid: every RS256 key is tried');
    const mixed = new JwtVerifier({
      keys: [
        { alg: 'RS256', publicKeyPem: pem(rsa1.publicKey), kid: 'k1' },
        { alg: 'RS256', publicKeyPem: pem(rsa2.publicKey) },
      ],
    });
    assert.equal(mixed.verify(signToken(RS2, claims(), { kid: 'k9' }), NOW).ok, true, 'unknown kid: the kid-less keys');
    assert.equal(refusedAs(mixed.verify(signToken(RS1, claims(), { kid: 'k9' }), NOW)), 'bad_signature');
    assert.equal(refusedAs(mixed.verify(signToken(RS2, claims(), { kid: 'k1' }), NOW)), 'bad_signature');
    assert.equal(refusedAs(v.verify(signToken(RS2, claims(), { kid: 7 }), NOW)), 'malformed');
  });

  it('accepts the old and the new key of a JWKS file, and refuses the removed one after reload', () => {
    const file = join(dir, 'jwks.json');
    writeFileSync(file, jwks([rsa1.publicKey, 'old'], [rsa2.publicKey, 'new'], [ec1.publicKey, 'ec']));
    let clock = NOW;
    const a = new Authenticator({ mode: 'required', apiKeys: [], jwt: { keys: [], jwksFile: file } }, () => clock);
    const oldTok = signToken(RS1, claims(), { kid: 'old' });
    const newTok = signToken(RS2, claims(), { kid: 'new' });
    assert.equal(a.authenticate(oldTok).ok, true);
    assert.equal(a.authenticate(newTok).ok, true);
    assert.equal(a.authenticate(signToken(ES1, claims(), { kid: 'ec' })).ok, true);
    assert.equal(refusedAs(a.authenticate(signToken(RS2, claims(), { kid: 'enc-key' }))), 'unknown_key');
    assert.equal(a.authenticate(oldTok).ok, true, 'served from the cache');

    writeFileSync(file, jwks([rsa2.publicKey, 'new']));
    assert.deepEqual(a.reloadJwks(), []);
    assert.equal(refusedAs(a.authenticate(oldTok)), 'unknown_key', 'the cache was dropped with the old key');
    assert.equal(a.authenticate(newTok).ok, true);

    writeFileSync(file, '{not json');
    const problems = a.reloadJwks();
    assert.equal(problems.length, 1);
    assert.match(problems[0].message, /cannot read/);
    clock += 1;
    assert.equal(a.authenticate(newTok).ok, true, 'a bad file keeps the keys in use');
  });

  it('refuses a key removed from the configuration after reload(opts)', () => {
    const both: AuthOptions = {
      mode: 'required',
      apiKeys: [],
      jwt: {
        keys: [
          { alg: 'RS256', publicKeyPem: pem(rsa1.publicKey), kid: 'k1' },
          { alg: 'RS256', publicKeyPem: pem(rsa2.publicKey), kid: 'k2' },
        ],
      },
    };
    const a = new Authenticator(both, () => NOW);
    const t1 = signToken(RS1, claims(), { kid: 'k1' });
    assert.equal(a.authenticate(t1).ok, true);
    a.reload({ ...both, jwt: { keys: [both.jwt!.keys[1]] } });
    assert.equal(a.cacheStats.size, 0);
    assert.equal(refusedAs(a.authenticate(t1)), 'unknown_key');
    assert.equal(a.authenticate(signToken(RS2, claims(), { kid: 'k2' })).ok, true);
  });
});

describe('JWT: refusals', () => {
  const v = new JwtVerifier(jwtOptions());
  const good = signToken(RS1, claims(), { kid: 'r1' });
  const [gh, gp, gs] = good.split('.');

  it('refuses a forged signature and a changed payload', () => {
    const sig = Buffer.from(gs, 'base64url');
    sig[10] ^= 1;
    assert.equal(refusedAs(v.verify(`${gh}.${gp}.${b64u(sig)}`, NOW)), 'bad_signature');
    const forged = b64u(JSON.stringify(claims({ kvgate_perms: 'all', kvgate_admin: true })));
    assert.equal(refusedAs(v.verify(`${gh}.${forged}.${gs}`, NOW)), 'bad_signature');
    assert.equal(refusedAs(v.verify(signToken(RS2, claims(), { kid: 'r1' }), NOW)), 'bad_signature');
    const [eh, ep, es] = signToken(ES1, claims(), { kid: 'e1' }).split('.');
    const raw = Buffer.from(es, 'base64url');
    for (const wrongLength of [raw.subarray(0, 63), Buffer.concat([raw, Buffer.from([0])]), Buffer.from([0x30, 0x06])])
      assert.equal(refusedAs(v.verify(`${eh}.${ep}.${b64u(wrongLength)}`, NOW)), 'bad_signature');
    assert.equal(
      refusedAs(v.verify(signToken({ alg: 'HS256', secret: 'x'.repeat(40) }, claims()), NOW)),
      'bad_signature',
    );
  });

  it('refuses an HS256 token whose secret is the RSA public key (algorithm confusion)', () => {
    for (const secret of [pem(rsa1.publicKey), rsa1.publicKey.export({ format: 'der', type: 'spki' }) as Buffer]) {
      const onlyRsa = new JwtVerifier({ keys: [{ alg: 'RS256', publicKeyPem: pem(rsa1.publicKey), kid: 'r1' }] });
      assert.equal(refusedAs(onlyRsa.verify(signToken({ alg: 'HS256', secret }, claims()), NOW)), 'unknown_key');
      assert.equal(
        refusedAs(onlyRsa.verify(signToken({ alg: 'HS256', secret }, claims(), { kid: 'r1' }), NOW)),
        'unknown_key',
      );
      // With an HS256 key configured too, the RSA key still never serves as a secret.
      assert.equal(refusedAs(v.verify(signToken({ alg: 'HS256', secret }, claims()), NOW)), 'bad_signature');
      assert.equal(
        refusedAs(v.verify(signToken({ alg: 'HS256', secret }, claims(), { kid: 'r1' }), NOW)),
        'unknown_key',
      );
    }
    assert.equal(refusedAs(v.verify(signToken(RS1, claims(), { kid: 'h1' }), NOW)), 'unknown_key');
    assert.equal(refusedAs(v.verify(signToken(ES1, claims(), { kid: 'r1' }), NOW)), 'unknown_key');
  });

  it('refuses alg none, with and without a signature, and algorithms not allowed', () => {
    for (const alg of ['none', 'None', 'NONE', 'RS384', 'HS512', '', null]) {
      const unsigned = `${b64u(JSON.stringify({ alg, typ: 'JWT' }))}.${gp}.`;
      assert.equal(refusedAs(v.verify(unsigned, NOW)), 'unsupported_alg', String(alg));
      assert.equal(refusedAs(v.verify(unsigned + gs, NOW)), 'unsupported_alg', String(alg));
    }
    assert.equal(refusedAs(v.verify(`${b64u('{"typ":"JWT"}')}.${gp}.${gs}`, NOW)), 'unsupported_alg');
    const rsOnly = new JwtVerifier({ ...jwtOptions(), keys: jwtOptions().keys.slice(1, 2), algorithms: ['RS256'] });
    assert.equal(refusedAs(rsOnly.verify(signToken(HS, claims()), NOW)), 'unsupported_alg');
    assert.equal(rsOnly.verify(good, NOW).ok, true);
  });

  it('refuses a crit header', () => {
    assert.equal(refusedAs(v.verify(signToken(RS1, claims(), { kid: 'r1', crit: ['exp'] }), NOW)), 'unsupported_crit');
  });

  it('checks exp and nbf with the clock skew, to the millisecond', () => {
    const exp = SEC - 10;
    const t = signToken(HS, claims({ exp }));
    assert.equal(v.verify(t, NOW).ok, true, '10 s late is within 30 s of skew');
    assert.equal(v.verify(t, exp * 1000 + 30_000 - 1).ok, true);
    assert.equal(refusedAs(v.verify(t, exp * 1000 + 30_000)), 'expired');
    assert.equal(refusedAs(v.verify(signToken(HS, claims({ exp: SEC - 31 })), NOW)), 'expired');
    const nbf = SEC + 30;
    const n = signToken(HS, claims({ nbf }));
    assert.equal(v.verify(n, NOW).ok, true, '30 s early is within the skew');
    assert.equal(refusedAs(v.verify(n, NOW - 1)), 'not_yet_valid');
    assert.equal(refusedAs(v.verify(signToken(HS, claims({ nbf: SEC + 31 })), NOW)), 'not_yet_valid');
    const strict = new JwtVerifier(jwtOptions({ clockSkewSeconds: 0 }));
    assert.equal(refusedAs(strict.verify(signToken(HS, claims({ exp: SEC })), NOW)), 'expired');
    assert.equal(strict.verify(signToken(HS, claims({ exp: SEC + 0.001 })), NOW).ok, true);
    assert.equal(refusedAs(v.verify(signToken(HS, claims({ exp: String(SEC + 60) })), NOW)), 'bad_claims');
    assert.equal(refusedAs(v.verify(signToken(HS, claims({ nbf: null })), NOW)), 'bad_claims');
  });

  it('requires exp unless told not to', () => {
    const noExp = claims();
    delete noExp.exp;
    assert.equal(refusedAs(v.verify(signToken(HS, noExp), NOW)), 'missing_claim');
    const lax = new JwtVerifier(jwtOptions({ requireExp: false }));
    assert.equal(principalOf(lax.verify(signToken(HS, noExp), NOW)).expiresAt, Infinity);
  });

  it('checks aud (a string or a list in the token) and iss when configured', () => {
    const w = new JwtVerifier(jwtOptions({ audience: 'kvgate', issuer: 'https://idp.example' }));
    const c = (extra: Record<string, unknown>): Record<string, unknown> =>
      claims({ aud: 'kvgate', iss: 'https://idp.example', ...extra });
    assert.equal(w.verify(signToken(HS, c({})), NOW).ok, true);
    assert.equal(w.verify(signToken(HS, c({ aud: ['other', 'kvgate'] })), NOW).ok, true);
    assert.equal(refusedAs(w.verify(signToken(HS, c({ aud: 'other' })), NOW)), 'wrong_audience');
    assert.equal(refusedAs(w.verify(signToken(HS, c({ aud: ['a', 'b'] })), NOW)), 'wrong_audience');
    assert.equal(refusedAs(w.verify(signToken(HS, c({ aud: undefined })), NOW)), 'wrong_audience');
    assert.equal(refusedAs(w.verify(signToken(HS, c({ aud: 5 })), NOW)), 'bad_claims');
    assert.equal(refusedAs(w.verify(signToken(HS, c({ iss: 'https://evil.example' })), NOW)), 'wrong_issuer');
    assert.equal(refusedAs(w.verify(signToken(HS, c({ iss: undefined })), NOW)), 'wrong_issuer');
    assert.equal(v.verify(signToken(HS, claims({ aud: 'anything' })), NOW).ok, true, 'no audience configured');
  });

  it('refuses claims it cannot map', () => {
    const noNs = claims();
    delete noNs.kvgate_ns;
    assert.equal(refusedAs(v.verify(signToken(HS, noNs), NOW)), 'missing_claim');
    const dflt = new JwtVerifier(jwtOptions({ defaultNamespace: '' }));
    assert.equal(principalOf(dflt.verify(signToken(HS, noNs), NOW)).namespace, '');
    const noSub = claims();
    delete noSub.sub;
    assert.equal(refusedAs(v.verify(signToken(HS, noSub), NOW)), 'missing_claim');
    for (const bad of [
      { sub: 42 },
      { sub: '' },
      { sub: 'a\nb' },
      { kvgate_ns: 'has space' },
      { kvgate_ns: 'x'.repeat(65) },
      { kvgate_ns: 3 },
      { kvgate_perms: 'read,fly' },
      { kvgate_perms: [{ prefix: 'a b', perms: 'read' }] },
      { kvgate_admin: 'yes' },
      { kvgate_tenant: 9 },
    ])
      assert.equal(refusedAs(v.verify(signToken(HS, claims(bad)), NOW)), 'bad_claims', JSON.stringify(bad));
    const noPerms = claims();
    delete noPerms.kvgate_perms;
    const p = principalOf(v.verify(signToken(HS, noPerms), NOW));
    assert.equal(allowed(p, 'a', Perm.Read), false, 'no perms claim: no key access');
  });

  it('refuses malformed tokens', () => {
    const enc = (o: unknown): string => b64u(JSON.stringify(o));
    const cases: [string, string][] = [
      ['a', 'no dots'],
      ['a.b', 'one dot'],
      [`${gh}.${gp}.${gs}.x`, 'four parts'],
      ['..', 'empty parts'],
      [`${gh}..${gs}`, 'empty payload'],
      [`.${gp}.${gs}`, 'empty header'],
      [`${gh}.${gp}.`, 'empty signature'],
      [`${b64u('{"alg":"RS256"')}.${gp}.${gs}`, 'header not JSON'],
      [`${enc(['RS256'])}.${gp}.${gs}`, 'header an array'],
      [`${enc('RS256')}.${gp}.${gs}`, 'header a string'],
      [`${gh}=.${gp}.${gs}`, 'padding'],
      [`${gh}.${gp}.${gs.replace(/-/g, '+').replace(/_/g, '/')}x+/`, 'standard base64 alphabet'],
      [`${gh.slice(0, -1)}${gh.endsWith('A') ? 'B' : 'A'}.${gp}.${gs}`, 'header changed in its last char'],
      [`${b64u(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]))}.${gp}.${gs}`, 'header not UTF-8'],
      [`${gh}.${gp}.${gs}`.padEnd(9000, 'A'), 'too long'],
      [`${gh} .${gp}.${gs}`, 'a space'],
    ];
    for (const [t, what] of cases) {
      const r = v.verify(t, NOW);
      assert.equal(r.ok, false, what);
    }
    // Non-canonical base64url: same bytes, different trailing bits in the last character.
    const h2 = `${gh}`;
    const last = h2[h2.length - 1];
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twin = alphabet[alphabet.indexOf(last) ^ 1];
    if (Buffer.from(h2.slice(0, -1) + twin, 'base64url').equals(Buffer.from(h2, 'base64url')))
      assert.equal(refusedAs(v.verify(`${h2.slice(0, -1)}${twin}.${gp}.${gs}`, NOW)), 'malformed');
    assert.equal(refusedAs(v.verify('', NOW)), 'missing');
    assert.equal(refusedAs(v.verify(`${b64u('{"alg":"RS256","kid":"r1"}')}.bm90IGpzb24.${gs}`, NOW)), 'bad_signature');
    const signedGarbage = `${b64u('{"alg":"HS256"}')}.${b64u('not json')}`;
    const mac = b64u(createHmac('sha256', SECRET).update(signedGarbage).digest());
    assert.equal(
      refusedAs(v.verify(`${signedGarbage}.${mac}`, NOW)),
      'malformed',
      'signed, but the payload is not JSON',
    );
    const signedArray = `${b64u('{"alg":"HS256"}')}.${b64u('[1,2]')}`;
    const mac2 = b64u(createHmac('sha256', SECRET).update(signedArray).digest());
    assert.equal(
      refusedAs(v.verify(`${signedArray}.${mac2}`, NOW)),
      'malformed',
      'signed, but the payload is an array',
    );
  });

  it('never throws and never accepts random strings or mutations of a valid token', () => {
    const a = new Authenticator({ mode: 'required', apiKeys: [], jwt: jwtOptions() }, () => NOW);
    const rand = prng(42);
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \u00e9\u0000{}"';
    const originals = [good, signToken(HS, claims()), signToken(ES1, claims(), { kid: 'e1' })];
    for (const o of originals) assert.equal(a.authenticate(o).ok, true, 'the originals are valid (and now cached)');
    const tried = new Set<string>(originals);
    const check = (t: string): void => {
      if (tried.has(t)) return;
      tried.add(t);
      let r1: AuthResult, r2: AuthResult;
      assert.doesNotThrow(() => {
        r1 = v.verify(t, NOW);
        r2 = a.authenticate(t);
      }, 'no exception');
      assert.equal(r1!.ok, false, `accepted a mutant`);
      assert.equal(r2!.ok, false, `authenticator accepted a mutant`);
    };
    for (let i = 0; i < 2000; i++) {
      const len = Math.floor(rand() * 120);
      check(Array.from({ length: len }, () => chars[Math.floor(rand() * chars.length)]).join(''));
      check([0, 1, 2].map(() => b64u(randomBytes(Math.floor(rand() * 40)))).join('.'));
    }
    for (const o of originals) {
      for (let i = 0; i < o.length; i++) {
        const c = chars[Math.floor(rand() * chars.length)];
        check(o.slice(0, i) + c + o.slice(i + 1)); // replace
        check(o.slice(0, i) + o.slice(i + 1)); // delete
        check(o.slice(0, i) + c + o.slice(i)); // insert
        check(o.slice(0, i)); // truncate
      }
      const [h, p, s] = o.split('.');
      for (const t of [`${p}.${h}.${s}`, `${h}.${p}.${p}`, `${h}.${h}.${s}`, `${o}.${s}`]) check(t);
    }
    assert.ok(tried.size > 5000, `${tried.size} inputs tried`);
  });
});

// ---- Authenticator ----

const KEY_A = 'kvg_live_4f7d0b3e9a1c42d8b6e5a0f1c2d3e4f5';
const KEY_B = 'kvg_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';

function apiOptions(extra: Partial<AuthOptions> = {}): AuthOptions {
  return {
    mode: 'required',
    apiKeys: [
      { id: 'svc-a', hash: Authenticator.hashKey(KEY_A), namespace: 'a:', perms: 'read' },
      {
        id: 'ops',
        hash: Authenticator.hashKey(KEY_B),
        namespace: '',
        tenant: 'ops-team',
        rules: [{ prefix: 'cfg:', perms: 'all' }],
        admin: true,
      },
    ],
    jwt: jwtOptions(),
    ...extra,
  };
}

describe('Authenticator: API keys', () => {
  it('hashes keys as sha256:<hex>', () => {
    assert.equal(
      Authenticator.hashKey('abc'),
      'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });

  it('accepts the right key, refuses a wrong, a near and an empty one', () => {
    const a = new Authenticator(apiOptions(), () => NOW);
    const p = principalOf(a.authenticate(KEY_A));
    assert.equal(p.id, 'svc-a');
    assert.equal(p.namespace, 'a:');
    assert.equal(p.tenant, 'a:');
    assert.equal(p.expiresAt, Infinity);
    assert.equal(allowed(p, 'x', Perm.Read), true);
    assert.equal(allowed(p, 'x', Perm.Write), false);
    const q = principalOf(a.authenticate(KEY_B));
    assert.equal(q.admin, true);
    assert.equal(q.tenant, 'ops-team');
    assert.equal(allowed(q, 'cfg:1', Perm.Delete), true);
    assert.equal(allowed(q, 'x', Perm.Read), false);
    assert.equal(refusedAs(a.authenticate(KEY_A.slice(0, -1) + 'x')), 'bad_api_key');
    assert.equal(refusedAs(a.authenticate(KEY_A + ' ')), 'bad_api_key');
    assert.equal(refusedAs(a.authenticate('')), 'missing');
    assert.equal(refusedAs(a.authenticate('x'.repeat(70_000))), 'malformed');
    assert.equal(refusedAs(a.authenticate(Authenticator.hashKey(KEY_A))), 'bad_api_key', 'the hash is not the key');
  });

  it('stores and returns only hashes: neither the options nor a result hold the token', () => {
    const opts = apiOptions();
    const a = new Authenticator(opts, () => NOW);
    assert.ok(!JSON.stringify(opts).includes(KEY_A));
    const jwt = signToken(RS1, claims(), { kid: 'r1' });
    for (const t of [KEY_A, jwt, jwt.slice(0, -2), 'nope.nope.nope']) {
      const text = JSON.stringify(a.authenticate(t));
      assert.ok(!text.includes(t) && !text.includes(t.split('.')[2] ?? t), 'no token in a result');
    }
  });

  it('tells a JWT with JWT off from a bad API key, and authenticates everyone as anonymous when off', () => {
    const noJwt = new Authenticator(apiOptions({ jwt: null }), () => NOW);
    assert.equal(refusedAs(noJwt.authenticate(signToken(HS, claims()))), 'jwt_disabled');
    assert.equal(refusedAs(noJwt.authenticate('no-dots-here')), 'bad_api_key');
    const withJwt = new Authenticator(apiOptions(), () => NOW);
    assert.equal(refusedAs(withJwt.authenticate('one.dot-only')), 'bad_api_key');
    const off = new Authenticator(apiOptions({ mode: 'off' }), () => NOW);
    const p = principalOf(off.authenticate(''));
    assert.equal(p.id, 'anonymous');
    assert.equal(allowed(p, 'anything', Perm.All), true);
    assert.equal(off.mode, 'off');
  });

  it('reload swaps the keys at once; a bad reload throws and keeps the old ones', () => {
    const a = new Authenticator(apiOptions(), () => NOW);
    a.reload({
      ...apiOptions(),
      apiKeys: [{ id: 'b', hash: Authenticator.hashKey(KEY_B), namespace: 'b:', perms: 'all' }],
    });
    assert.equal(refusedAs(a.authenticate(KEY_A)), 'bad_api_key');
    assert.equal(principalOf(a.authenticate(KEY_B)).id, 'b');
    assert.throws(
      () => a.reload({ ...apiOptions(), apiKeys: [{ id: 'x', hash: 'sha256:nothex', namespace: '', perms: 'read' }] }),
      (err: unknown) => err instanceof AuthConfigError && err.problems.some((p) => p.path === 'apiKeys[0].hash'),
    );
    assert.equal(principalOf(a.authenticate(KEY_B)).id, 'b', 'still the keys of the last good reload');
  });
});

describe('Authenticator: the verified-token cache', () => {
  it('serves the same principal on a hit, keyed by a digest, and never the token', () => {
    const a = new Authenticator(apiOptions(), () => NOW);
    const t = signToken(RS1, claims(), { kid: 'r1' });
    const r1 = principalOf(a.authenticate(t));
    const r2 = principalOf(a.authenticate(t));
    assert.equal(r1, r2, 'the very same principal object');
    assert.deepEqual(
      { size: a.cacheStats.size, hits: a.cacheStats.hits, misses: a.cacheStats.misses },
      { size: 1, hits: 1, misses: 1 },
    );
    // Reaching into the cache: its keys are 32-byte digests, not tokens.
    const map = (a as unknown as { state: { cache: { map: Map<string, unknown> } } }).state.cache.map;
    const keys = [...map.keys()];
    assert.deepEqual(keys, [createHash('sha256').update(t).digest().toString('latin1')]);
  });

  it('does not serve an entry past its expiry, nor cache failures', () => {
    let clock = NOW;
    const a = new Authenticator(apiOptions(), () => clock);
    const exp = SEC + 60;
    const t = signToken(ES1, claims({ exp }), { kid: 'e1' });
    assert.equal(a.authenticate(t).ok, true);
    clock = exp * 1000 + 30_000 - 1;
    assert.equal(a.authenticate(t).ok, true);
    assert.equal(a.cacheStats.hits, 1);
    clock = exp * 1000 + 30_000;
    assert.equal(refusedAs(a.authenticate(t)), 'expired');
    assert.equal(a.cacheStats.size, 0, 'the expired entry is dropped');
    assert.equal(a.authenticate(t, NOW).ok, true, 'verified afresh at an earlier time, and cached again');
    const bad = t.slice(0, -3) + (t.endsWith('AAA') ? 'BBB' : 'AAA');
    for (let i = 0; i < 3; i++) a.authenticate(bad, NOW);
    assert.equal(a.cacheStats.size, 1, 'only the valid token (verified again at NOW) is cached');
  });

  it('is bounded, evicting the least recently used (roughly)', () => {
    const a = new Authenticator(apiOptions({ cacheSize: 4 }), () => NOW);
    const toks = ['A', 'B', 'C', 'D', 'E'].map((s) => signToken(HS, claims({ sub: s })));
    for (const t of toks.slice(0, 4)) a.authenticate(t);
    assert.equal(a.authenticate(toks[0]).ok, true); // A hit: old enough to move to the newest end
    a.authenticate(toks[4]); // E evicts the oldest, B
    assert.equal(a.cacheStats.size, 4);
    assert.equal(a.cacheStats.evictions, 1);
    const hits = a.cacheStats.hits;
    a.authenticate(toks[0]);
    assert.equal(a.cacheStats.hits, hits + 1, 'A stayed');
    const misses = a.cacheStats.misses;
    a.authenticate(toks[1]);
    assert.equal(a.cacheStats.misses, misses + 1, 'B was evicted');
    const none = new Authenticator(apiOptions({ cacheSize: 0 }), () => NOW);
    none.authenticate(toks[0]);
    assert.equal(principalOf(none.authenticate(toks[0])).id, 'jwt:A');
    assert.equal(none.cacheStats.size, 0);
  });
});

// ---- validation ----

describe('validateAuthOptions', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvgate-authcfg-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('names every problem at once', () => {
    const weak = rsaPair(1024);
    // Keys each wrong in its own way, used in both passes below (indices are asserted in the second).
    const badKeys = [
      { alg: 'HS256', secret: 'too-short' },
      { alg: 'RS256', publicKeyPem: '-----BEGIN PUBLIC KEY-----\nbm9wZQ==\n-----END PUBLIC KEY-----\n' },
      { alg: 'RS256', secret: 'x'.repeat(40) },
      { alg: 'HS256', publicKeyPem: pem(rsa1.publicKey) },
      { alg: 'ES256', publicKeyPem: pem(rsa1.publicKey) },
      { alg: 'RS256', publicKeyPem: pem(weak.publicKey) },
      { alg: 'RS256', publicKeyPem: rsa1.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string },
      { alg: 'PS256', publicKeyPem: pem(rsa1.publicKey) },
    ];
    const { problems } = validateAuthOptions({
      mode: 'maybe',
      extra: true,
      cacheSize: -1,
      apiKeys: [
        { id: 'a', hash: 'sha256:ABC', namespace: '', perms: 'read' },
        { id: 'a', hash: Authenticator.hashKey('k1'), namespace: 'has space', perms: 'reed' },
        { id: 'c', hash: Authenticator.hashKey('k1'), namespace: '', secret: 'x', perms: 'read', rules: [] },
        { id: 'jwt:x', hash: Authenticator.hashKey('k3'), namespace: '', admin: 'yes' },
      ],
      jwt: {
        audiense: 'typo',
        clockSkewSeconds: 3600,
        jwksFile: join(dir, 'missing.json'),
        keys: badKeys,
      },
    });
    const paths = problems.map((p) => p.path);
    const want = [
      'security.auth.mode',
      'security.auth.extra',
      'security.auth.cacheSize',
      'security.auth.apiKeys[0].hash',
      'security.auth.apiKeys[1].id',
      'security.auth.apiKeys[1].namespace',
      'security.auth.apiKeys[1].perms',
      'security.auth.apiKeys[2].hash',
      'security.auth.apiKeys[2].secret',
      'security.auth.apiKeys[2]',
      'security.auth.apiKeys[3].id',
      'security.auth.apiKeys[3].admin',
      'security.auth.apiKeys[3]',
      'security.auth.jwt.audiense',
      'security.auth.jwt.clockSkewSeconds',
    ];
    for (const p of want) assert.ok(paths.includes(p), `${p} named (got ${paths.join(', ')})`);
    // The keys and the JWKS file are checked in a second pass, once the jwt section's shape is right.
    const second = validateAuthOptions({
      mode: 'required',
      jwt: {
        jwksFile: join(dir, 'missing.json'),
        keys: [
          ...badKeys,
          { alg: 'HS256', secret: 'base64url:not base64!' },
          { alg: 'RS256', jwk: rsa1.privateKey.export({ format: 'jwk' }) },
        ],
      },
    }).problems;
    const byPath = new Map(second.map((p) => [p.path, p.message]));
    const j = 'security.auth.jwt';
    assert.match(byPath.get(`${j}.keys[0]`) ?? '', /at least 32 bytes/);
    assert.match(byPath.get(`${j}.keys[1].publicKeyPem`) ?? '', /not a readable PEM/);
    assert.match(byPath.get(`${j}.keys[2].secret`) ?? '', /public key, not a secret/);
    assert.match(byPath.get(`${j}.keys[3].publicKeyPem`) ?? '', /cannot be one/);
    assert.match(byPath.get(`${j}.keys[4]`) ?? '', /P-256/);
    assert.match(byPath.get(`${j}.keys[5]`) ?? '', /2048/);
    assert.match(byPath.get(`${j}.keys[6].publicKeyPem`) ?? '', /private key/);
    assert.match(byPath.get(`${j}.keys[7].alg`) ?? '', /one of/);
    assert.match(byPath.get(`${j}.keys[8].secret`) ?? '', /not base64url/);
    assert.match(byPath.get(`${j}.keys[9].jwk`) ?? '', /private JWK/);
    assert.match(byPath.get(`${j}.jwksFile`) ?? '', /cannot read .*ENOENT/);
  });

  it('refuses a required mode with nothing to authenticate, and a bad JWKS', () => {
    assert.match(validateAuthOptions({ mode: 'required' }).problems[0]?.message ?? '', /nothing could authenticate/);
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ keys: [{ kty: 'RSA', kid: 'x', e: 'AQAB' }, 'nope'] }));
    const { problems } = validateAuthOptions({ mode: 'required', jwt: { keys: [], jwksFile: file } });
    assert.deepEqual(
      problems.map((p) => p.path),
      ['security.auth.jwt.jwksFile keys[0].jwk', 'security.auth.jwt.jwksFile keys[1]'],
    );
    writeFileSync(file, JSON.stringify({ keys: [] }));
    assert.match(
      validateAuthOptions({ mode: 'required', jwt: { jwksFile: file } }).problems[0]?.message ?? '',
      /no usable key/,
    );
  });

  it('returns options with defaults that build a working Authenticator', () => {
    const { options, problems } = validateAuthOptions(
      {
        mode: 'required',
        apiKeys: [{ id: 'k', hash: Authenticator.hashKey(KEY_A), namespace: 'a:', perms: ['read', 'write'] }],
        jwt: { keys: [{ alg: 'ES256', jwk: ec1.publicKey.export({ format: 'jwk' }) }], audience: ['kvgate'] },
      },
      'auth',
    );
    assert.deepEqual(problems, []);
    assert.equal(options!.cacheSize, 10_000);
    assert.equal(options!.jwt!.clockSkewSeconds, 30);
    assert.equal(options!.jwt!.requireExp, true);
    const a = new Authenticator(options!, () => NOW);
    assert.equal(principalOf(a.authenticate(KEY_A)).id, 'k');
    assert.equal(a.authenticate(signToken(ES1, claims({ aud: 'kvgate' }))).ok, true);
    assert.equal(refusedAs(a.authenticate(signToken(ES1, claims()))), 'wrong_audience');
    assert.equal(validateAuthOptions({ mode: 'off' }).problems.length, 0);
  });
});

describe('hash-key CLI', () => {
  const cli = join(__dirname, '..', 'src', 'security', 'hash-key-cli.js');
  it('prints the hash of the key on stdin, refuses short keys, makes new ones', () => {
    const r = spawnSync(process.execPath, [cli], { input: `${KEY_A}\n`, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${Authenticator.hashKey(KEY_A)}\n`);
    const short = spawnSync(process.execPath, [cli], { input: 'short', encoding: 'utf8' });
    assert.equal(short.status, 1);
    assert.equal(short.stdout, '');
    const made = spawnSync(process.execPath, [cli, '--new'], { encoding: 'utf8' });
    const [key, hash] = made.stdout.trim().split('\n');
    assert.equal(Buffer.from(key, 'base64url').length, 32);
    assert.equal(hash, Authenticator.hashKey(key));
  });
});
