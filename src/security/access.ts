/**
 * What the fronts ask about a client, in one object per gateway: who it is (its credential, through the
 * Authenticator), which keys it may touch and what they are called in the fleet (its namespace and
 * rules), how fast it may go (TenantLimits), how many connections it and its address may hold
 * (AddressLimits), and which address it really has (ClientAddress, behind a trusted proxy).
 *
 * Key scoping is the per-key hot path: `scope` checks the principal's rules against the key as the client
 * sent it, then points `key`/`keyOff`/`keyLen` at the key the fleet stores: the client's own bytes when the
 * principal has no namespace, else namespace + key copied into one scratch buffer this object owns. The
 * caller hands that range on at once (router, get window); every batch and backlog copies a key's bytes
 * when it takes it, so the scratch buffer is free again before the next key. No allocation, no clock.
 *
 * Rates are checked per request, with the clock read once per message or body chunk (`tick`), not per key.
 * Counters are plain numbers for ops/metrics.ts; no credential is ever kept here or logged.
 */
import { MAX_KEY_BYTES } from '../core/key';
import type { Request } from '../core/request';
import { AddressLimits, type Refusal } from './address-limits';
import { Authenticator, type AuthResult } from './authenticator';
import type { AuthProblem } from './problems';
import { ClientAddress } from './client-address';
import { AUTH_FAILURES, type AuthFailure } from './jwt';
import { allowedBytes, MAX_NAMESPACE_BYTES, Perm, type Principal } from './principal';
import type { SecurityConfig } from './settings';
import { TenantLimits } from './tenant-limits';

/** The WebSocket subprotocol kvgate speaks; a browser offering a token subprotocol must offer this too. */
export const WS_PROTOCOL = 'kvgate.v1';
/** A subprotocol `kvgate.bearer.<token>` carries a browser's token (the WebSocket API sets no headers). */
export const BEARER_PROTOCOL_PREFIX = 'kvgate.bearer.';
/** The query parameter a browser may carry its token in instead (RFC 6750's name). */
export const TOKEN_QUERY_PARAM = 'access_token';

/** Accepted tokens remembered by their text at most, and the longest remembered: at most 8 MiB of text. */
const RECENT_TOKENS = 4096;
const RECENT_TOKEN_CHARS = 2048;

const DENIED: Readonly<Record<number, string>> = {
  [Perm.Read]: 'this credential may not read this key',
  [Perm.Write]: 'this credential may not write this key',
  [Perm.Delete]: 'this credential may not delete this key',
};

export class Access {
  readonly auth: Authenticator;
  /** Replaced by a reload that changes the rates (every bucket starts full again). */
  rates: TenantLimits;
  readonly connections: AddressLimits;
  /** Replaced by a reload that changes security.trustedProxies (for connections from then on). */
  clients: ClientAddress;
  /** Refusals by reason (AUTH_FAILURES order), items refused by the rules, requests and connections limited. */
  readonly authFailures = new Float64Array(AUTH_FAILURES.length);
  authOk = 0;
  forbiddenItems = 0;
  /** Connections closed because their credential expired, or because a reload no longer accepts it. */
  expiredConnections = 0;
  revokedConnections = 0;
  /** The clock the rate limits read, refreshed by `tick` once per message or chunk. */
  nowMs = Date.now();

  /** Tokens accepted lately, by their text (see `authenticate`); emptied when it fills and on reload. */
  private readonly recent = new Map<string, AuthResult & { ok: true }>();

  /** Where `scope` left the stored key. */
  key: Uint8Array = Buffer.alloc(0);
  keyOff = 0;
  keyLen = 0;
  private readonly scratch = Buffer.alloc(MAX_NAMESPACE_BYTES + MAX_KEY_BYTES);
  /** The namespace the scratch buffer starts with now. */
  private scratchNs: Buffer | null = null;

  constructor(sec: SecurityConfig) {
    this.auth = new Authenticator(sec.auth);
    this.rates = new TenantLimits(sec.limits.default, { tenants: sec.limits.tenants });
    this.connections = new AddressLimits(sec.limits.connections);
    this.clients = new ClientAddress(sec.trustedProxies);
  }

  /**
   * A reload's new settings (already validated): credentials, rates and trusted proxies. Connection limits
   * count connections open now and are restart-only (ops/reload.ts refuses a change to them).
   */
  reload(before: SecurityConfig, next: SecurityConfig): void {
    if (canonicalJson(before.auth) !== canonicalJson(next.auth)) {
      this.auth.reload(next.auth);
      this.recent.clear();
    }
    const rates = (s: SecurityConfig): string => canonicalJson({ d: s.limits.default, t: s.limits.tenants });
    if (rates(before) !== rates(next))
      this.rates = new TenantLimits(next.limits.default, { tenants: next.limits.tenants });
    if (canonicalJson(before.trustedProxies) !== canonicalJson(next.trustedProxies))
      this.clients = new ClientAddress(next.trustedProxies);
  }

  /** Credentials are checked (mode "required"); false: everyone is the anonymous principal. */
  get required(): boolean {
    return this.auth.mode === 'required';
  }

  /**
   * The principal a token stands for, counted by outcome. A token that passed lately is found by its own
   * text first, skipping the SHA-256 the Authenticator starts with (most of an HTTP request's auth cost,
   * bench/PROFILING.md). That lookup cannot leak the token through timing: a Map compares strings only
   * when their 32-bit hashes are equal, so a guess learns nothing byte by byte, and a string is only put
   * here after the full check (hash, constant-time compare or signature) accepted it.
   */
  authenticate(token: string): AuthResult {
    const seen = this.recent.get(token);
    if (seen !== undefined && (seen.principal.expiresAt === Infinity || seen.principal.expiresAt > Date.now())) {
      this.authOk++;
      return seen;
    }
    const r = this.auth.authenticate(token);
    if (r.ok) {
      this.authOk++;
      if (token.length > 0 && token.length <= RECENT_TOKEN_CHARS) {
        if (this.recent.size >= RECENT_TOKENS) this.recent.clear();
        this.recent.set(token, r);
      }
    } else this.authFailures[AUTH_FAILURES.indexOf(r.reason)]++;
    return r;
  }

  /** Re-reads the JWKS file (Authenticator.reloadJwks): tokens passed before are checked again. */
  reloadJwks(): AuthProblem[] {
    const problems = this.auth.reloadJwks();
    if (problems.length === 0) this.recent.clear();
    return problems;
  }

  /** Failures counted for `reason` (tests, metrics). */
  failures(reason: AuthFailure): number {
    return this.authFailures[AUTH_FAILURES.indexOf(reason)];
  }

  tick(): void {
    this.nowMs = Date.now();
  }

  /**
   * May `p` do `perm` to the client's key `buf[off, off+len)`? True: `key`/`keyOff`/`keyLen` name the key
   * to store. False: item `i` of `req` was answered (FORBIDDEN, or BAD_KEY when the namespace makes it too
   * long).
   */
  scope(p: Principal, req: Request, i: number, buf: Uint8Array, off: number, len: number, perm: Perm): boolean {
    if (!allowedBytes(p, buf, off, len, perm)) {
      this.forbiddenItems++;
      req.reject(i, 'FORBIDDEN', DENIED[perm]);
      return false;
    }
    const ns = p.namespaceBytes;
    const n = ns.length;
    if (n === 0) {
      this.key = buf;
      this.keyOff = off;
      this.keyLen = len;
      return true;
    }
    if (n + len > MAX_KEY_BYTES) {
      req.reject(
        i,
        'BAD_KEY',
        `key must be at most ${MAX_KEY_BYTES - n} bytes under this credential's ${n}-byte namespace (got ${len})`,
      );
      return false;
    }
    const s = this.scratch;
    // The namespace stays in place between keys of the same principal (most keys follow one of theirs).
    if (this.scratchNs !== ns) {
      ns.copy(s, 0);
      this.scratchNs = ns;
    }
    // A byte loop, not set(subarray()): a key is at most 250 bytes, and a view would be an object per key.
    for (let k = 0; k < len; k++) s[n + k] = buf[off + k];
    this.key = s;
    this.keyOff = 0;
    this.keyLen = n + len;
    return true;
  }

  /**
   * A request of `ops` items bringing `bytes`, `writeBytes` of them values to store: 0 when admitted,
   * else the ms to wait (nothing taken).
   */
  admit(p: Principal, ops: number, bytes: number, writeBytes: number): number {
    return this.rates.admit(p.id, p.tenant, ops, bytes, writeBytes, this.nowMs);
  }

  /** Bytes learnt after admission (answers, a streamed body), into debt if need be. */
  charge(p: Principal, bytes: number, writeBytes: number): void {
    this.rates.charge(p.id, p.tenant, bytes, writeBytes, this.nowMs);
  }

  /** A connection attempt from `address`, before its credential is checked (the new-connections rate). */
  attempt(address: string): Refusal | null {
    return this.connections.attempt(address, Date.now());
  }

  /** The attempt's connection, authenticated as `p`: null when admitted (close it later). */
  open(address: string, p: Principal): Refusal | null {
    return this.connections.open(address, p.id, Date.now(), true);
  }

  close(address: string, p: Principal): void {
    this.connections.close(address, p.id);
  }

  /** The admin listener's question: may this `Authorization` header use it? */
  admin(authorization: string): 'ok' | 'unauthorized' | 'forbidden' {
    const r = this.authenticate(bearerToken(authorization));
    if (!r.ok) return 'unauthorized';
    return r.principal.admin ? 'ok' : 'forbidden';
  }

  /** Drops idle limiter entries (a timer calls it every few seconds). */
  sweep(): void {
    const now = Date.now();
    this.rates.sweep(now);
    this.connections.sweep(now);
  }
}

/** The token of an `Authorization: Bearer <token>` header; '' when there is none or the scheme differs. */
export function bearerToken(header: string): string {
  if (header.length < 8) return '';
  // "Bearer " in any case (RFC 9110: the scheme is case-insensitive), without making a lower-cased copy.
  for (let i = 0; i < 6; i++) if ((header.charCodeAt(i) | 0x20) !== BEARER.charCodeAt(i)) return '';
  if (header.charCodeAt(6) !== 0x20) return '';
  const last = header.charCodeAt(header.length - 1);
  const token = header.slice(7);
  return header.charCodeAt(7) <= 0x20 || last <= 0x20 ? token.trim() : token;
}

const BEARER = 'bearer';

/**
 * A WebSocket upgrade's token and the subprotocol to answer with: from `Authorization`, else a
 * `kvgate.bearer.<token>` subprotocol, else the `access_token` query parameter. `protocol` is what the
 * server selects: `kvgate.v1` when offered (a token subprotocol is never echoed back, so the token is not
 * sent back over the wire), else '' (none).
 */
export function upgradeCredential(
  authorization: string,
  protocols: string,
  query: string | undefined,
): { token: string; protocol: string; tokenInProtocol: boolean } {
  let token = bearerToken(authorization);
  let protocol = '';
  let tokenInProtocol = false;
  if (protocols.length > 0) {
    for (const raw of protocols.split(',')) {
      const p = raw.trim();
      if (p === WS_PROTOCOL) protocol = WS_PROTOCOL;
      else if (p.startsWith(BEARER_PROTOCOL_PREFIX)) {
        tokenInProtocol = true;
        if (token === '') token = p.slice(BEARER_PROTOCOL_PREFIX.length);
      }
    }
  }
  if (token === '' && query !== undefined) token = query;
  return { token, protocol, tokenInProtocol };
}

/** JSON with object keys sorted: two equal settings compare equal whatever their key order. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}
