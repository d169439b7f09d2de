/**
 * How the fronts word what security/access.ts decides: who an HTTP request is (its Bearer credential), and
 * the answers for a refused credential (401) and a rate limit (429 with Retry-After). A 401 says whether
 * the credential was missing, expired or not valid, never which check failed (that is counted in metrics),
 * so a guesser learns nothing about which keys exist.
 */
import { bearerToken, type Access } from '../security/access';
import type { AuthFailure } from '../security/jwt';
import type { Principal } from '../security/principal';
import { LIMIT_KIND_NAMES } from '../security/tenant-limits';
import type { HttpRequest } from '../uws';

/** RFC 6750 section 3: a 401 names the scheme to use. */
export const UNAUTHORIZED_HEADERS: [string, string][] = [['www-authenticate', 'Bearer realm="kvgate"']];

/** The principal of an HTTP request, or why it has none. */
export function httpPrincipal(access: Access, req: HttpRequest): Principal | AuthFailure {
  const r = access.authenticate(bearerToken(req.getHeader('authorization')));
  return r.ok ? r.principal : r.reason;
}

export function unauthorizedMessage(reason: AuthFailure): string {
  if (reason === 'missing') return 'a credential is required: send Authorization: Bearer <API key or JWT>';
  if (reason === 'expired') return 'the token has expired';
  return 'the credential is not valid';
}

/** The seconds of a Retry-After for a wait of `ms` (at least 1: the header counts whole seconds). */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

export function rateLimitedMessage(access: Access, ms: number): string {
  return `over the ${LIMIT_KIND_NAMES[access.rates.lastRefusal]} rate limit: retry after ${Math.ceil(ms)} ms`;
}

export function retryHeaders(ms: number): [string, string][] {
  return [['retry-after', String(retryAfterSeconds(ms))]];
}
