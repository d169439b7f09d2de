/**
 * Every error the client hands out is a KvError with a stable `code` and a `retry` hint
 * (docs/PROTOCOL.md, "Error codes"). Gateway codes carry the gateway's hint; the client adds codes of its
 * own for what happens on its side of the wire. Switch on `code` or `retry`, never on the message.
 */

/**
 * - `no`: resending unchanged gets the same answer; nothing was applied.
 * - `after`: nothing was applied; resend after a pause.
 * - `idempotent`: it may or may not have been applied; resend reads at once, writes only where applying
 *   them twice is harmless.
 */
export type RetryHint = 'no' | 'after' | 'idempotent';

/** The gateway's codes and their hints: the same rows as src/core/errors.ts (a test holds them together). */
export const GATEWAY_CODES = {
  BAD_KEY: 'no',
  BAD_VALUE: 'no',
  BAD_TTL: 'no',
  BAD_FLAGS: 'no',
  BAD_WAIT: 'no',
  BAD_REQUEST: 'no',
  BAD_CONTENT_TYPE: 'no',
  NOT_ACCEPTABLE: 'no',
  NO_ROUTE: 'no',
  METHOD_NOT_ALLOWED: 'no',
  UNKNOWN_OP: 'no',
  TOO_LARGE: 'no',
  TOO_MANY: 'no',
  NOT_FOUND: 'no',
  UNAUTHORIZED: 'no',
  FORBIDDEN: 'no',
  RATE_LIMITED: 'after',
  NOT_STORED: 'after',
  SHARD_DOWN: 'idempotent',
  TIMEOUT: 'idempotent',
  SHARD_ERROR: 'idempotent',
  BUSY: 'after',
  SHUTTING_DOWN: 'idempotent',
  INTERNAL: 'no',
} as const satisfies Record<string, RetryHint>;

/**
 * Codes of the client's own, with their default hints (an instance may say more: a request that was never
 * sent gets `after` whatever its code). `TIMEOUT` and `TOO_LARGE` are gateway codes the client also uses,
 * with `source: 'client'`.
 */
export const CLIENT_CODES = {
  /** The caller's AbortSignal fired. */
  ABORTED: 'idempotent',
  /** The connection closed while the request was in flight: a write may or may not have been applied. */
  CONNECTION_CLOSED: 'idempotent',
  /** The first connection could not be opened (unreachable, refused, or a credential the upgrade refused). */
  CONNECTION_FAILED: 'after',
  /** Closed with 4001: the credential expired, and no fresh one was given (`onAuthExpired`). */
  AUTH_EXPIRED: 'no',
  /** Closed with 4003: a reload no longer accepts the credential. */
  AUTH_REVOKED: 'no',
  /** `close()` was called. */
  CLOSED: 'no',
  /** The gateway broke the wire contract (a bug on one side or the other). */
  BAD_RESPONSE: 'no',
} as const satisfies Record<string, RetryHint>;

export type GatewayCode = keyof typeof GATEWAY_CODES;
export type ClientCode = keyof typeof CLIENT_CODES;
export type ErrorCode = GatewayCode | ClientCode;

export interface KvErrorInit {
  retry?: RetryHint;
  source?: 'gateway' | 'client';
  /** A write that was sent and not answered: it may or may not have been applied. */
  maybeApplied?: boolean;
  /** HTTP status, when the error came over HTTP. */
  status?: number;
  /** Seconds to wait, from an HTTP `Retry-After`. */
  retryAfter?: number;
}

export class KvError extends Error {
  readonly code: ErrorCode | string;
  readonly retry: RetryHint;
  readonly source: 'gateway' | 'client';
  readonly maybeApplied: boolean;
  readonly status?: number;
  readonly retryAfter?: number;

  constructor(code: ErrorCode | string, message: string, init: KvErrorInit = {}) {
    super(message);
    this.name = 'KvError';
    this.code = code;
    this.source = init.source ?? (code in GATEWAY_CODES ? 'gateway' : 'client');
    this.retry =
      init.retry ??
      (GATEWAY_CODES as Record<string, RetryHint>)[code] ??
      (CLIENT_CODES as Record<string, RetryHint>)[code] ??
      'no';
    this.maybeApplied = init.maybeApplied ?? false;
    if (init.status !== undefined) this.status = init.status;
    if (init.retryAfter !== undefined) this.retryAfter = init.retryAfter;
  }
}

export const badResponse = (message: string): KvError => new KvError('BAD_RESPONSE', message, { source: 'client' });
