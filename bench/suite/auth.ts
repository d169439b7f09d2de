/**
 * How the suite authenticates to kvgate (issue 10): every kvgate the suite starts requires credentials
 * unless `--auth off` (or KVGATE_BENCH_AUTH=off) says otherwise, and every client the suite drives sends
 * the bench's token as `Authorization: Bearer <token>` (the token travels on the target Endpoint, so the
 * WebSocket and HTTP drivers, the flow-control clients and wrk all send it). Peers that are not kvgate
 * (naive gateways, twemproxy, memjs, webdis, redis-benchmark) are driven as before.
 *
 * The bench's API key has a namespace (`bench:`: the fleet stores `bench:k100:7` for the client's
 * `k100:7`) and permission rules, so every key goes through the rule check and the namespace copy
 * (src/security/access.ts `scope`). A second key, admin only, reads /debug/stats and /metrics. Both keys
 * are fixed strings: the gateways listen on loopback and live for one scenario, so they guard nothing.
 *
 * Variants, for the auth-cost scenario (bench/suite/auth-cost.ts) and `--auth`:
 *   off         security.auth.mode "off": everyone is the anonymous principal (no namespace, one rule)
 *   key         the API key above (namespace + rules)
 *   key+limits  the same plus rate limits far above anything the machine can reach, so TenantLimits.admit
 *               and charge run on every request and never refuse
 *   jwt         an HS256 JWT with the same namespace and rules (verified once, then the token cache)
 */
import { createHmac } from 'node:crypto';
import { Authenticator } from '../../src/security/authenticator';

export type AuthVariant = 'off' | 'key' | 'key+limits' | 'jwt';
export const AUTH_VARIANTS: readonly AuthVariant[] = ['off', 'key', 'key+limits', 'jwt'];

/** The suite-wide switch: `--auth on|off` (default on), or KVGATE_BENCH_AUTH=off. */
export type SuiteAuth = 'on' | 'off';
export const suiteVariant = (a: SuiteAuth): AuthVariant => (a === 'off' ? 'off' : 'key');

export const BENCH_NAMESPACE = 'bench:';
/** The bench key's rules: reads anywhere, everything on the load generator's keys (`k<size>:<i>`), nothing under `private:`. */
export const BENCH_RULES = [
  { prefix: '', perms: 'read' },
  { prefix: 'k', perms: 'read,write,delete' },
  { prefix: 'private:', perms: 'none' },
];
const BENCH_KEY = 'kvgate-bench-api-key-loopback-only-0001';
const ADMIN_KEY = 'kvgate-bench-admin-key-loopback-only-0001';
const JWT_SECRET = 'kvgate-bench-hs256-secret-loopback-only-0001';
/** High enough never to refuse on this machine (the largest rates TenantLimits accepts are 1e12). */
export const NEVER_REFUSING_LIMITS = { opsPerSecond: 1e9, bytesPerSecond: 1e12, writeBytesPerSecond: 1e12 };

/** Headers for the admin listener (/debug/stats, /metrics); harmless to peers that ignore them. */
export const ADMIN_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  authorization: `Bearer ${ADMIN_KEY}`,
});

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

/** An HS256 JWT for the bench principal, valid for a day. */
function benchJwt(): string {
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({
    sub: 'bench',
    kvgate_ns: BENCH_NAMESPACE,
    kvgate_perms: BENCH_RULES,
    exp: Math.floor(Date.now() / 1000) + 86_400,
  });
  const sig = createHmac('sha256', JWT_SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

let jwtToken: string | null = null;

/** The token the load generators send to a kvgate of this variant (undefined: none). */
export function tokenFor(v: AuthVariant): string | undefined {
  if (v === 'off') return undefined;
  if (v === 'jwt') return (jwtToken ??= benchJwt());
  return BENCH_KEY;
}

/** The `security` section of a kvgate config for this variant (merged over config/default.json). */
export function kvgateSecurity(v: AuthVariant): Record<string, unknown> {
  if (v === 'off') return { auth: { mode: 'off' } };
  const admin = {
    id: 'bench-admin',
    hash: Authenticator.hashKey(ADMIN_KEY),
    namespace: '',
    perms: 'read',
    admin: true,
  };
  const bench = { id: 'bench', hash: Authenticator.hashKey(BENCH_KEY), namespace: BENCH_NAMESPACE, rules: BENCH_RULES };
  const auth =
    v === 'jwt'
      ? { mode: 'required', apiKeys: [admin], jwt: { keys: [{ alg: 'HS256', secret: JWT_SECRET }] } }
      : { mode: 'required', apiKeys: [bench, admin] };
  return v === 'key+limits' ? { auth, limits: { default: NEVER_REFUSING_LIMITS } } : { auth };
}

/** What a result file records about a variant: the settings, never the tokens. */
export function describeAuth(v: AuthVariant): Record<string, unknown> {
  if (v === 'off') return { variant: v, mode: 'off' };
  return {
    variant: v,
    mode: 'required',
    credential: v === 'jwt' ? 'HS256 JWT (Authorization: Bearer)' : 'API key (Authorization: Bearer)',
    namespace: BENCH_NAMESPACE,
    rules: BENCH_RULES,
    rateLimits: v === 'key+limits' ? NEVER_REFUSING_LIMITS : null,
  };
}

/** The key the fleet stores for the client's `key` under this variant. */
export function storedKey(v: AuthVariant, key: string): string {
  return v === 'off' ? key : BENCH_NAMESPACE + key;
}
