/**
 * WebSocket ingress: `/v1/ws`. Each binary message holds one or more request maps; each is decoded in
 * place (the message's ArrayBuffer dies when this callback returns, so keys and values are copied into
 * shard batches before it does) and dispatched item by item. Answers leave through the session's
 * EntryWriter as shards reply.
 */
import type { ErrorCode } from '../errors';
import { ErrorTable } from '../errors';
import { Request } from '../request';
import type { Router } from '../route/router';
import { MsgpackError, MsgpackReader, MpType } from '../decode/msgpack-reader';
import { ItemFields, Op, RequestFields } from '../decode/request-fields';
import { Kind } from '../stream/entry-writer';
import { WsSession } from '../stream/ws-session';
import type { TemplatedApp, WebSocket } from '../uws';

export interface WsLimits {
  maxInflightPerConnection: number;
  maxItemsPerRequest: number;
  maxBufferedBytesPerConnection: number;
  maxWaitMs: number;
  idleTimeoutSeconds: number;
  maxPayloadBytes: number;
}

/** Pooled: a finished request has no item left in any batch, so it can carry the next one. */
const freeRequests: WsRequest[] = [];

class WsRequest extends Request {
  private s!: WsSession;
  private id = 0;

  static take(s: WsSession, id: number): WsRequest {
    const r = freeRequests.pop() ?? new WsRequest();
    r.reinit();
    r.s = s;
    r.id = id;
    return r;
  }

  protected onValue(i: number, flags: number, total: number, offset: number, buf: Buffer, off: number, len: number): void {
    this.s.value(this.id, i, flags, total, offset, buf, off, len);
  }
  protected onMiss(i: number): void { this.s.simple(this.id, i, Kind.Miss); }
  protected onOk(i: number): void { this.s.simple(this.id, i, Kind.Ok); }
  protected onError(i: number, code: ErrorCode, message?: string): void {
    this.s.error(this.id, i, code, message ?? ErrorTable[code].message);
  }
  protected onFinish(): void {
    this.s.inflight--;
    this.s.simple(this.id, -1, Kind.End);
    if (freeRequests.length < 65536) freeRequests.push(this);
  }
}

export interface WsCounters { connections: number; messages: number; requests: number; badFrames: number }

export function mountWebSocket(app: TemplatedApp, router: Router, limits: WsLimits, counters: WsCounters): void {
  const reader = new MsgpackReader();
  const fields = new RequestFields();
  const item = new ItemFields();

  const requestError = (s: WsSession, id: number, code: ErrorCode, message: string): void => {
    s.error(id, -1, code, message);
    s.simple(id, -1, Kind.End);
  };

  const dispatch = (s: WsSession, f: RequestFields): void => {
    const id = f.id;
    if (f.error !== null) return requestError(s, id, f.error, f.errorMessage);
    if (f.wait > limits.maxWaitMs) return requestError(s, id, 'BAD_WAIT', `wait must be at most ${limits.maxWaitMs} ms`);
    if (s.inflight >= limits.maxInflightPerConnection) return requestError(s, id, 'BUSY', ErrorTable.BUSY.message);
    const buf = reader.buf;
    const req = WsRequest.take(s, id);
    s.inflight++;
    counters.requests++;
    switch (f.op) {
      case Op.Get:
      case Op.Del:
        if (f.keyOff < 0) req.reject(0, 'BAD_KEY', 'key missing');
        else if (f.op === Op.Get) router.get(req, 0, buf, f.keyOff, f.keyLen, f.wait);
        else router.del(req, 0, buf, f.keyOff, f.keyLen, f.wait);
        break;
      case Op.Set:
        if (f.keyOff < 0) req.reject(0, 'BAD_KEY', 'key missing');
        else if (f.valueOff < 0) req.reject(0, 'BAD_VALUE', 'value missing');
        else router.set(req, 0, buf, f.keyOff, f.keyLen, f.ttl, f.flags, buf, f.valueOff, f.valueLen, f.wait);
        break;
      case Op.MGet:
      case Op.MDel:
        bulkKeys(req, f, f.op === Op.MGet);
        break;
      case Op.MSet:
        bulkItems(req, f);
        break;
      default:
        req.reject(-1, 'UNKNOWN_OP', 'op missing');
    }
    req.seal();
  };

  /**
   * Moves the reader onto a bulk array (already known to be whole: RequestFields skipped over it) and
   * returns its length, or -1 after failing the request. The caller puts `reader.pos` back.
   */
  const openBulk = (req: WsRequest, at: number, what: string): number => {
    if (at < 0) { req.reject(-1, 'BAD_REQUEST', `${what} missing`); return -1; }
    reader.pos = at;
    if (reader.peekType() !== MpType.Array) { req.reject(-1, 'BAD_REQUEST', `${what} must be an array`); return -1; }
    const n = reader.readArrayHeader();
    if (n > limits.maxItemsPerRequest) { req.reject(-1, 'TOO_MANY', `at most ${limits.maxItemsPerRequest} ${what} per request`); return -1; }
    return n;
  };

  const bulkKeys = (req: WsRequest, f: RequestFields, isGet: boolean): void => {
    const save = reader.pos;
    const n = openBulk(req, f.keysAt, 'keys');
    for (let i = 0; i < n; i++) {
      if (!reader.readBytes()) { reader.skip(); req.reject(i, 'BAD_KEY', 'key must be a str or bin'); continue; }
      if (isGet) router.get(req, i, reader.buf, reader.off, reader.len, f.wait);
      else router.del(req, i, reader.buf, reader.off, reader.len, f.wait);
    }
    reader.pos = save;
  };

  const bulkItems = (req: WsRequest, f: RequestFields): void => {
    const save = reader.pos;
    const n = openBulk(req, f.itemsAt, 'items');
    for (let i = 0; i < n; i++) {
      item.read(reader);
      if (item.error !== null) { req.reject(i, item.error); continue; }
      router.set(req, i, reader.buf, item.keyOff, item.keyLen, item.ttl, item.flags, reader.buf, item.valueOff, item.valueLen, f.wait);
    }
    reader.pos = save;
  };

  app.ws<{ s: WsSession }>('/v1/ws', {
    maxPayloadLength: limits.maxPayloadBytes,
    idleTimeout: limits.idleTimeoutSeconds,
    // Above our own high-water mark plus the budget, so uWS never drops a frame we chose to send.
    maxBackpressure: limits.maxBufferedBytesPerConnection + 1024 * 1024,
    closeOnBackpressureLimit: 0,
    upgrade: (res, req, context) => {
      res.upgrade({ s: new WsSession(limits.maxBufferedBytesPerConnection) },
        req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'), context);
    },
    open: (ws: WebSocket<{ s: WsSession }>) => {
      ws.getUserData().s.ws = ws as WebSocket<unknown>;
      counters.connections++;
    },
    message: (ws: WebSocket<{ s: WsSession }>, message: ArrayBuffer, isBinary: boolean) => {
      const s = ws.getUserData().s;
      counters.messages++;
      if (!isBinary) {
        counters.badFrames++;
        s.error(0, -1, 'BAD_REQUEST', 'frames must be binary msgpack');
        return;
      }
      reader.reset(new Uint8Array(message), 0, message.byteLength);
      try {
        while (reader.remaining > 0) {
          fields.read(reader);
          if (fields.id < 0) {
            counters.badFrames++;
            s.error(0, -1, fields.error ?? 'BAD_REQUEST', fields.error ? fields.errorMessage : 'id missing');
            continue;
          }
          dispatch(s, fields);
        }
      } catch (e) {
        if (e instanceof MsgpackError) {
          counters.badFrames++;
          s.error(fields.id >= 0 ? fields.id : 0, -1, 'BAD_REQUEST', `not valid msgpack: ${e.message}`);
        } else {
          // A gateway bug: report it to this client and the log, keep the process and the connection.
          console.error('kvgate: request handling failed:', e);
          s.error(fields.id >= 0 ? fields.id : 0, -1, 'INTERNAL', ErrorTable.INTERNAL.message);
        }
      }
    },
    drain: (ws: WebSocket<{ s: WsSession }>) => ws.getUserData().s.drain(),
    close: (ws: WebSocket<{ s: WsSession }>) => {
      ws.getUserData().s.closed();
      counters.connections--;
    },
  });
}
