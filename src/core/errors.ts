/**
 * Every error a client can see comes from this table: a stable code to act on, a default message, the
 * HTTP status used when the error is the whole answer, and a retry hint. Clients switch on `code` (or
 * `retry`), never on the message. docs/PROTOCOL.md ("Error codes") lists the same rows; a test holds the
 * two together.
 *
 * `retry`:
 * - `no`: resending the request unchanged gets the same answer (the request is at fault, or the answer is
 *   final); nothing was applied.
 * - `after`: nothing was applied; the same request may be resent as is, after a pause (`Retry-After`).
 * - `idempotent`: the item may or may not have been applied; resend gets at once, and sets or deletes only
 *   where applying them twice is harmless to the caller.
 *
 * `retryAfter`: seconds, sent as `Retry-After` on an HTTP answer with this code.
 */
export type RetryHint = 'no' | 'after' | 'idempotent';

interface ErrorRow {
  status: number;
  retry: RetryHint;
  retryAfter?: number;
  message: string;
}

export const ErrorTable = {
  BAD_KEY: { status: 400, retry: 'no', message: 'key must be 1-250 bytes with no whitespace or control characters' },
  BAD_VALUE: { status: 400, retry: 'no', message: 'value must be bytes (msgpack bin or str)' },
  BAD_TTL: { status: 400, retry: 'no', message: 'ttl must be an integer number of seconds from 0 to 2592000' },
  BAD_FLAGS: { status: 400, retry: 'no', message: 'flags must be an integer from 0 to 4294967295' },
  BAD_WAIT: { status: 400, retry: 'no', message: 'wait must be an integer number of milliseconds from 0 to maxWaitMs' },
  BAD_REQUEST: { status: 400, retry: 'no', message: 'malformed request' },
  BAD_CONTENT_TYPE: { status: 415, retry: 'no', message: 'unsupported content type' },
  NOT_ACCEPTABLE: { status: 406, retry: 'no', message: 'none of the response types in Accept is supported' },
  NO_ROUTE: { status: 404, retry: 'no', message: 'no such route; see docs/PROTOCOL.md' },
  METHOD_NOT_ALLOWED: { status: 405, retry: 'no', message: 'method not allowed on this route (see Allow)' },
  UNKNOWN_OP: { status: 400, retry: 'no', message: 'unknown op' },
  TOO_LARGE: { status: 413, retry: 'no', message: 'value larger than the maximum item size' },
  TOO_MANY: { status: 413, retry: 'no', message: 'too many items in one request' },
  NOT_FOUND: { status: 404, retry: 'no', message: 'no such key' },
  UNAUTHORIZED: { status: 401, retry: 'no', message: 'a valid API key or token is required' },
  FORBIDDEN: { status: 403, retry: 'no', message: 'not allowed' },
  RATE_LIMITED: { status: 429, retry: 'after', retryAfter: 1, message: 'over the rate limit; retry after the hint' },
  NOT_STORED: { status: 502, retry: 'after', message: 'memcached did not store the item' },
  SHARD_DOWN: { status: 503, retry: 'idempotent', retryAfter: 1, message: 'the shard owning this key is unreachable' },
  TIMEOUT: { status: 504, retry: 'idempotent', message: 'the shard owning this key did not answer in time' },
  SHARD_ERROR: { status: 502, retry: 'idempotent', message: 'the shard owning this key answered with an error' },
  BUSY: { status: 503, retry: 'after', retryAfter: 1, message: 'too many requests in flight on this connection' },
  SHUTTING_DOWN: { status: 503, retry: 'idempotent', retryAfter: 1, message: 'the gateway is shutting down' },
  INTERNAL: { status: 500, retry: 'no', message: 'internal error' },
} as const satisfies Record<string, ErrorRow>;

export type ErrorCode = keyof typeof ErrorTable;

/** The table's rows with their optional fields spelled out, for code that walks every row. */
export function errorRow(code: ErrorCode): ErrorRow {
  return ErrorTable[code];
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, message?: string) {
    super(message ?? ErrorTable[code].message);
    this.code = code;
    this.status = ErrorTable[code].status;
  }
}

/** The JSON body of an HTTP error answer: `{"error":{"code","message","retry"}}`. */
export function errorBody(code: ErrorCode, message?: string): string {
  return JSON.stringify({ error: errorObject(code, message) });
}

export function errorObject(code: ErrorCode, message?: string): { code: ErrorCode; message: string; retry: RetryHint } {
  return { code, message: message ?? ErrorTable[code].message, retry: ErrorTable[code].retry };
}
