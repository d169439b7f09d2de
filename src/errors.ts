/**
 * Every error a client can see comes from this table: a stable code to act on, a default message and the
 * HTTP status used when the error is the whole answer. Clients switch on `code`, never on the message.
 */
export const ErrorTable = {
  BAD_KEY: { status: 400, message: 'key must be 1-250 bytes with no whitespace or control characters' },
  BAD_VALUE: { status: 400, message: 'value must be bytes (msgpack bin or str)' },
  BAD_TTL: { status: 400, message: 'ttl must be an integer number of seconds from 0 to 2592000' },
  BAD_FLAGS: { status: 400, message: 'flags must be an integer from 0 to 4294967295' },
  BAD_WAIT: { status: 400, message: 'wait must be an integer number of milliseconds from 0 to maxWaitMs' },
  BAD_REQUEST: { status: 400, message: 'malformed request' },
  BAD_CONTENT_TYPE: { status: 415, message: 'unsupported content type' },
  UNKNOWN_OP: { status: 400, message: 'unknown op' },
  TOO_LARGE: { status: 413, message: 'value larger than the maximum item size' },
  TOO_MANY: { status: 413, message: 'too many items in one request' },
  NOT_FOUND: { status: 404, message: 'no such key' },
  NOT_STORED: { status: 502, message: 'memcached did not store the item' },
  SHARD_DOWN: { status: 503, message: 'the shard owning this key is unreachable' },
  TIMEOUT: { status: 504, message: 'the shard owning this key did not answer in time' },
  SHARD_ERROR: { status: 502, message: 'the shard owning this key answered with an error' },
  BUSY: { status: 503, message: 'too many requests in flight on this connection' },
  SHUTTING_DOWN: { status: 503, message: 'the gateway is shutting down' },
  INTERNAL: { status: 500, message: 'internal error' },
} as const;

export type ErrorCode = keyof typeof ErrorTable;

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, message?: string) {
    super(message ?? ErrorTable[code].message);
    this.code = code;
    this.status = ErrorTable[code].status;
  }
}

export function errorBody(code: ErrorCode, message?: string): string {
  return JSON.stringify({ error: { code, message: message ?? ErrorTable[code].message } });
}
