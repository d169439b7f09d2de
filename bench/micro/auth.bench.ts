/**
 * The credential check (src/security): what one `authenticate` costs on a verified-token cache hit
 * against a miss (a full signature verification), per algorithm, and an API key; plus the per-key
 * `allowedBytes` check. The miss rows are why the cache exists: at 100k HTTP requests/s an RS256
 * verification per request would take a good part of a core. Prints JSON; no assertions.
 *
 *   node dist/bench/micro/auth.bench.js
 */
import { createHmac, createSign, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { measure, print, type MicroRow } from './harness';
import { Authenticator, type AuthOptions } from '../../src/security/authenticator';
import { allowedBytes, makePrincipal, Perm } from '../../src/security/principal';
import { Access, bearerToken } from '../../src/security/access';
import type { SecurityConfig } from '../../src/security/settings';
import { Request } from '../../src/core/request';

const NOW = 1_800_000_000_000;
const SECRET = 'a-benchmark-hs256-secret-of-32-bytes-or-more';
const API_KEY = 'kvg_bench_0123456789abcdef0123456789abcdef';

const b64u = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

function token(alg: 'HS256' | 'RS256' | 'ES256', key: KeyObject | string, sub: string): string {
  const claims = { sub, kvgate_ns: 'bench:', kvgate_perms: 'read,write', exp: NOW / 1000 + 3600 };
  const input = `${b64u(JSON.stringify({ alg, typ: 'JWT' }))}.${b64u(JSON.stringify(claims))}`;
  const sig =
    alg === 'HS256'
      ? createHmac('sha256', key as string)
          .update(input)
          .digest()
      : createSign('SHA256')
          .update(input)
          .sign(alg === 'ES256' ? { key: key as KeyObject, dsaEncoding: 'ieee-p1363' } : (key as KeyObject));
  return `${input}.${b64u(sig)}`;
}

function main(): void {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const options = (cacheSize: number): AuthOptions => ({
    mode: 'required',
    apiKeys: [{ id: 'bench', hash: Authenticator.hashKey(API_KEY), namespace: 'bench:', perms: 'all' }],
    jwt: {
      keys: [
        { alg: 'HS256', secret: SECRET },
        { alg: 'RS256', publicKeyPem: rsa.publicKey.export({ format: 'pem', type: 'spki' }) as string },
        { alg: 'ES256', publicKeyPem: ec.publicKey.export({ format: 'pem', type: 'spki' }) as string },
      ],
    },
    cacheSize,
  });
  const cached = new Authenticator(options(10_000), () => NOW);
  const uncached = new Authenticator(options(0), () => NOW);
  const tokens = {
    HS256: token('HS256', SECRET, 'h'),
    RS256: token('RS256', rsa.privateKey, 'r'),
    ES256: token('ES256', ec.privateKey, 'e'),
  };
  const rows: MicroRow[] = [];
  const run = (name: string, a: Authenticator, t: string): void => {
    if (!a.authenticate(t).ok) throw new Error(`${name}: the benchmark token is refused`);
    rows.push(
      measure(name, (n) => {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += a.authenticate(t, NOW).ok ? 1 : 0;
        return acc;
      }),
    );
  };
  run('API key (sha256 + lookup)', cached, API_KEY);
  for (const alg of ['HS256', 'RS256', 'ES256'] as const) {
    run(`${alg} cache hit`, cached, tokens[alg]);
    run(`${alg} cache miss (verified)`, uncached, tokens[alg]);
  }
  const p = makePrincipal({
    id: 'b',
    tenant: 'b',
    namespace: '',
    admin: false,
    expiresAt: Infinity,
    rules: [
      { prefix: '', perms: Perm.Read },
      { prefix: 'user:', perms: Perm.Read | Perm.Write },
      { prefix: 'user:admin:', perms: Perm.None },
      { prefix: 'session:', perms: Perm.All },
      { prefix: 'logs:', perms: Perm.Write },
    ],
  });
  const keys = Buffer.from('user:12345:profile');
  rows.push(
    measure('allowedBytes, 5 rules, 18-byte key', (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += allowedBytes(p, keys, 0, keys.length, Perm.Write) ? 1 : 0;
      return acc;
    }),
  );
  // Everything a single-key HTTP GET pays for security, through the gateway's own Access object: the
  // Bearer header parsed, the credential (remembered by its text after the first check), the rate
  // admission and the answer's charge, and the key's rules and namespace. Compare with the gateway's
  // whole CPU per request (bench/PROFILING.md, "Security checks").
  const cfg = (limits: boolean): SecurityConfig => ({
    allowedOrigins: [],
    allowedHosts: [],
    trustedProxies: [],
    insecurePublic: false,
    auth: {
      mode: 'required',
      apiKeys: [
        {
          id: 'bench',
          hash: Authenticator.hashKey(API_KEY),
          namespace: 'bench:',
          rules: [
            { prefix: '', perms: 'read' },
            { prefix: 'key:', perms: 'all' },
            { prefix: 'key:admin:', perms: 'none' },
          ],
        },
      ],
      jwt: null,
      cacheSize: 10_000,
    },
    limits: {
      default: limits ? { opsPerSecond: 1e9, bytesPerSecond: 1e12, writeBytesPerSecond: 1e12 } : {},
      tenants: {},
      connections: {},
    },
  });
  const header = `Bearer ${API_KEY}`;
  const key = Buffer.from('key:000123');
  const req = new NullRequest();
  for (const limits of [false, true]) {
    const access = new Access(cfg(limits));
    rows.push(
      measure(`HTTP request's checks: Bearer, key, rules + namespace${limits ? ', admit + charge' : ''}`, (n) => {
        let acc = 0;
        for (let i = 0; i < n; i++) {
          const r = access.authenticate(bearerToken(header));
          if (!r.ok) continue;
          if (limits) {
            access.tick();
            acc += access.admit(r.principal, 1, key.length, 0);
            access.charge(r.principal, 100, 0);
          }
          if (access.scope(r.principal, req, 0, key, 0, key.length, Perm.Read)) acc += access.keyLen;
        }
        return acc;
      }),
    );
  }
  // A WebSocket request pays less: its credential was checked at the upgrade; per request (one per
  // message here, the worst case) the clock, the admission and the charge; per key the rules and namespace.
  for (const limits of [false, true]) {
    const access = new Access(cfg(limits));
    const r = access.authenticate(API_KEY);
    if (!r.ok) throw new Error('the benchmark key is refused');
    const p = r.principal;
    rows.push(
      measure(`WebSocket request's checks: rules + namespace${limits ? ', clock + admit + charge' : ''}`, (n) => {
        let acc = 0;
        for (let i = 0; i < n; i++) {
          if (limits) {
            access.tick();
            acc += access.admit(p, 1, key.length + 16, 0);
            access.charge(p, 100, 0);
          }
          if (access.scope(p, req, 0, key, 0, key.length, Perm.Read)) acc += access.keyLen;
        }
        return acc;
      }),
    );
  }
  print('auth', rows);
}

/** A request the checks can reject into (they never do here). */
class NullRequest extends Request {
  protected onValue(): void {}
  protected onMiss(): void {}
  protected onOk(): void {}
  protected onError(): void {
    throw new Error('a benchmark item was refused');
  }
  protected onFinish(): void {}
}

main();
