/**
 * Errors the client hands to its callers. Callers switch on `code`, never on the message (see the error
 * table in docs/PROTOCOL.md). Besides the gateway's codes, the client adds its own:
 * - `CONNECTION_CLOSED`: the WebSocket closed while the request was in flight (or before it was sent);
 * - `BAD_RESPONSE`: the gateway broke the wire contract (a gateway bug, or a client one).
 */
export class KvError extends Error {
  readonly code: string;
  /** HTTP status of the answer, when the error came over HTTP. */
  readonly status?: number;

  constructor(code: string, message: string, status?: number) {
    super(message);
    this.name = 'KvError';
    this.code = code;
    if (status !== undefined) this.status = status;
  }
}

/** The gateway's answer does not follow docs/PROTOCOL.md. */
export class ProtocolError extends KvError {
  constructor(message: string, status?: number) {
    super('BAD_RESPONSE', message, status);
    this.name = 'ProtocolError';
  }
}
