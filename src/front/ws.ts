/**
 * WebSocket ingress: `/v1/ws`. Each binary message holds one or more request maps; each is decoded in
 * place (the message's ArrayBuffer dies when this callback returns, so keys and values are copied into
 * shard batches, or into the session's get window when it has no room, before it does) and dispatched
 * item by item. Gets go through the session's window (credit-based fetching); answers leave through the
 * session's EntryWriter as shards reply.
 *
 * Nothing a client sends yields INTERNAL or a log line: bytes that are not msgpack (or nest too deep) get
 * BAD_REQUEST for the frame, a bad field gets its own code for its request. INTERNAL is kept for gateway
 * bugs, which cost the request they hit, and are logged through a rate limit, since a client that found one
 * could otherwise trigger it once per frame and flood the log.
 */
import type { GatewayContext } from './context';
import type { ErrorCode } from '../core/errors';
import { ErrorTable, errorBody } from '../core/errors';
import { Request } from '../core/request';
import { MsgpackError, MsgpackReader, MpType } from '../decode/msgpack-reader';
import { ItemFields, Op, RequestFields } from '../decode/request-fields';
import { Kind } from '../stream/entry-writer';
import { CloseCode, WsSession } from '../stream/ws-session';
import { GetWindow } from '../flow/get-window';
import type { TemplatedApp, WebSocket } from '../uws';
import { RateLimitedLog } from '../core/log';
import { refuseFraming } from './framing';
import { refuseBrowser } from './browser-gate';
import { Front, TallyOp } from '../core/tally';

export interface WsCounters {
  connections: number;
  messages: number;
  requests: number;
  badFrames: number;
  /** Clients (WebSocket or HTTP bulk) cut off because their output did not move for limits.stallTimeoutMs. */
  stalled: number;
  /** Gateway bugs met while handling a request (each answered INTERNAL; logged at most every few seconds). */
  internalErrors: number;
}

/**
 * uWS refuses a frame over its own maxPayloadLength at the frame header by dropping the TCP connection
 * (no close frame: the client sees 1006). We give uWS a higher bound and close with 1009 ourselves for
 * frames between our limit and it, so a client that oversteps by a little (up to the limit again, at most
 * 4 MiB more) learns why; only frames beyond that are cut at the header. The cost: uWS reserves a buffer
 * for a frame's announced length and fills it as bytes arrive, so one connection may hold up to that
 * bound (4 MiB at the default 2 MiB limit) while it sends one frame. Pages are touched only as the bytes
 * arrive, so only a client that really sends that much pays, at the speed it sends; it is the size of one
 * connection's output window (limits.maxBufferedBytesPerConnection, 4 MiB by default), which we already
 * hold per client.
 */
export function uwsPayloadBound(maxPayloadBytes: number): number {
  return maxPayloadBytes + Math.min(maxPayloadBytes, 4 * 1024 * 1024);
}

/** One connection: its output side and its get window. */
export class WsConn {
  constructor(
    readonly s: WsSession,
    readonly w: GetWindow,
  ) {}
}

class WsRequest extends Request {
  s!: WsSession;
  w!: GetWindow;
  id = 0;
  /** get / mget: the items are the window's to account for. */
  read = false;
  free!: WsRequest[];

  protected override accepts(i: number, total: number, whole: boolean): boolean {
    return !this.read || this.w.accepts(this, i, total, whole);
  }
  protected override onSettled(i: number): void {
    if (this.read) this.w.settled(this, i);
  }
  protected override onRedo(i: number, key: Uint8Array, off: number, len: number): void {
    this.w.requeue(this, i, key, off, len);
  }
  protected onValue(
    i: number,
    flags: number,
    total: number,
    offset: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void {
    this.s.value(this.id, i, flags, total, offset, buf, off, len);
  }
  protected onMiss(i: number): void {
    if (this.read) this.w.learnSmall();
    this.s.simple(this.id, i, Kind.Miss);
  }
  protected onOk(i: number): void {
    this.s.simple(this.id, i, Kind.Ok);
  }
  protected onError(i: number, code: ErrorCode, message?: string): void {
    this.s.error(this.id, i, code, message ?? ErrorTable[code].message);
  }
  protected onFinish(): void {
    const s = this.s;
    s.inflight--;
    s.simple(this.id, -1, Kind.End);
    // Pooled: a finished request has no item left in any batch or window, so it can carry the next one.
    if (this.free.length < 65536) this.free.push(this);
    if (s.closeWhenIdle) s.closeIfIdle();
  }
  init(c: WsConn, id: number, read: boolean, free: WsRequest[]): this {
    this.reinit();
    this.s = c.s;
    this.w = c.w;
    this.id = id;
    this.read = read;
    this.free = free;
    return this;
  }
}

/** The gateway's view of its WebSocket sessions, for the drain. */
export interface WsFront {
  counters: WsCounters;
  sessions: Set<WsConn>;
}

export function mountWebSocket(app: TemplatedApp, ctx: GatewayContext): WsFront {
  const { router } = ctx;
  // Limits and the `wait` bound come from the configuration running now: a reload replaces ctx.config,
  // and what is derived from it is rebuilt at the next message (ws.* settings are uWS's, fixed at mount).
  let config = ctx.config;
  let limits = config.limits;
  const counters: WsCounters = {
    connections: 0,
    messages: 0,
    requests: 0,
    badFrames: 0,
    stalled: 0,
    internalErrors: 0,
  };
  const sessions = new Set<WsConn>();
  const freeRequests: WsRequest[] = [];
  const reader = new MsgpackReader();
  let fields = new RequestFields({ maxTtlSeconds: limits.maxTtlSeconds, maxWaitMs: config.batch.maxWaitMs });
  let item = new ItemFields(limits);
  const bugs = new RateLimitedLog('request handling failed', 10_000, (line) =>
    ctx.events.emit('gateway', 'handler.failed', 'error', line, {}, null),
  );
  const maxPayload = config.ws.maxPayloadBytes;
  const idleTimeout = config.ws.idleTimeoutSeconds;
  const bug = (e: unknown): void => {
    counters.internalErrors++;
    bugs.report(e);
  };
  // Output no window governs (errors, write acks) may pass the window by this much before the client is
  // cut off; a value larger than the window is let through alone.
  const hardCapOf = (l: typeof limits): number => l.maxBufferedBytesPerConnection + l.maxValueBytes + 256 * 1024;
  let hardCap = hardCapOf(limits);
  // uWS's own bound is fixed at mount, but a session sends to uWS only below HIGH_WATER, so uWS holds at
  // most that and a frame: any hardCap a reload sets stays far under it.
  const maxBackpressure = hardCap + 1024 * 1024;
  const refresh = (): void => {
    config = ctx.config;
    limits = config.limits;
    fields = new RequestFields({ maxTtlSeconds: limits.maxTtlSeconds, maxWaitMs: config.batch.maxWaitMs });
    item = new ItemFields(limits);
    hardCap = hardCapOf(limits);
  };

  const tally = ctx.tally;
  const requestError = (s: WsSession, id: number, op: number, code: ErrorCode, message: string): void => {
    tally.request(Front.Ws, op, code);
    s.error(id, -1, code, message);
    s.simple(id, -1, Kind.End);
  };

  const dispatch = (c: WsConn, f: RequestFields): void => {
    const s = c.s;
    const id = f.id;
    const op = f.op;
    if (f.error !== null) return requestError(s, id, op, f.error, f.errorMessage);
    if (ctx.draining) return requestError(s, id, op, 'SHUTTING_DOWN', ErrorTable.SHUTTING_DOWN.message);
    if (s.inflight >= limits.maxInflightPerConnection) return requestError(s, id, op, 'BUSY', ErrorTable.BUSY.message);
    const read = f.op === Op.Get || f.op === Op.MGet;
    // Keys waiting for this client to read are bounded: past a frame's worth, reads wait for it to drain.
    if (read && c.w.parkedBytes > config.ws.maxPayloadBytes) {
      return requestError(s, id, op, 'BUSY', 'too many keys wait for this connection to read its answers');
    }
    const req = (freeRequests.pop() ?? new WsRequest()).init(c, id, read, freeRequests);
    // Op's numbers are TallyOp's (test/metrics.test.ts holds them together).
    req.countInto(tally, tally.at(Front.Ws, op), op === Op.Get || op === Op.Set || op === Op.Del);
    s.inflight++;
    counters.requests++;
    const next = reader.pos;
    try {
      items(c, req, f);
    } catch (e) {
      // A bug: this request fails as a whole (items already handed to shards still settle), the rest go on,
      // read from where this request's map ended.
      reader.pos = next;
      bug(e);
      req.reject(-1, 'INTERNAL', ErrorTable.INTERNAL.message);
    }
    req.seal();
  };

  const items = (c: WsConn, req: WsRequest, f: RequestFields): void => {
    const buf = reader.buf;
    switch (f.op) {
      case Op.Get:
        if (f.keyOff < 0) req.reject(0, 'BAD_KEY', 'key missing');
        else c.w.get(req, 0, buf, f.keyOff, f.keyLen, f.wait);
        break;
      case Op.Del:
        if (f.keyOff < 0) req.reject(0, 'BAD_KEY', 'key missing');
        else router.del(req, 0, buf, f.keyOff, f.keyLen, f.wait);
        break;
      case Op.Set:
        if (f.keyOff < 0) req.reject(0, 'BAD_KEY', 'key missing');
        else if (f.valueOff < 0) req.reject(0, 'BAD_VALUE', 'value missing');
        else router.set(req, 0, buf, f.keyOff, f.keyLen, f.ttl, f.flags, buf, f.valueOff, f.valueLen, f.wait);
        break;
      case Op.MGet:
      case Op.MDel:
        bulkKeys(c.w, req, f, f.op === Op.MGet);
        break;
      case Op.MSet:
        bulkItems(req, f);
        break;
      default:
        req.reject(-1, 'UNKNOWN_OP', 'op missing');
    }
  };

  /**
   * Moves the reader onto a bulk array (already known to be whole: RequestFields skipped over it) and
   * returns its length, or -1 after failing the request. The caller puts `reader.pos` back.
   */
  const openBulk = (req: WsRequest, at: number, what: string): number => {
    if (at < 0) {
      req.reject(-1, 'BAD_REQUEST', `${what} missing`);
      return -1;
    }
    reader.pos = at;
    if (reader.peekType() !== MpType.Array) {
      req.reject(-1, 'BAD_REQUEST', `${what} must be an array`);
      return -1;
    }
    const n = reader.readArrayHeader();
    if (n > limits.maxItemsPerRequest) {
      req.reject(-1, 'TOO_MANY', `at most ${limits.maxItemsPerRequest} ${what} per request`);
      return -1;
    }
    return n;
  };

  const bulkKeys = (w: GetWindow, req: WsRequest, f: RequestFields, isGet: boolean): void => {
    const save = reader.pos;
    const n = openBulk(req, f.keysAt, 'keys');
    for (let i = 0; i < n; i++) {
      if (!reader.readBytes()) {
        reader.skip();
        req.reject(i, 'BAD_KEY', 'key must be a str or bin');
        continue;
      }
      if (isGet) w.get(req, i, reader.buf, reader.off, reader.len, f.wait);
      else router.del(req, i, reader.buf, reader.off, reader.len, f.wait);
    }
    reader.pos = save;
  };

  const bulkItems = (req: WsRequest, f: RequestFields): void => {
    const save = reader.pos;
    const n = openBulk(req, f.itemsAt, 'items');
    for (let i = 0; i < n; i++) {
      item.read(reader);
      if (item.error !== null) {
        req.reject(i, item.error, item.errorMessage);
        continue;
      }
      router.set(
        req,
        i,
        reader.buf,
        item.keyOff,
        item.keyLen,
        item.ttl,
        item.flags,
        reader.buf,
        item.valueOff,
        item.valueLen,
        f.wait,
      );
    }
    reader.pos = save;
  };

  app.ws<{ c: WsConn }>('/v1/ws', {
    maxPayloadLength: uwsPayloadBound(maxPayload),
    idleTimeout,
    // Above anything the session lets pile up (it disconnects at hardCap), so uWS never drops a frame.
    maxBackpressure,
    closeOnBackpressureLimit: 0,
    upgrade: (res, req, context) => {
      // Refusals are decided here, synchronously (asynchronous upgrades have known crash reports).
      if (refuseFraming(res, req)) return;
      if (refuseBrowser(res, req, ctx.browser, 'GET')) return;
      if (ctx.config !== config) refresh();
      if (ctx.draining || ctx.gate.refuse()) {
        const code: ErrorCode = ctx.draining ? 'SHUTTING_DOWN' : 'BUSY';
        const message = ctx.draining ? ErrorTable.SHUTTING_DOWN.message : 'too many connections';
        res.cork(() => {
          res
            .writeStatus('503 Service Unavailable')
            .writeHeader('content-type', 'application/json')
            .writeHeader('retry-after', '1')
            .end(errorBody(code, message), true);
        });
        return;
      }
      const s = new WsSession(ctx.pool, ctx.budget, hardCap);
      const w = new GetWindow(router, ctx.budget, s, limits.maxBufferedBytesPerConnection);
      res.upgrade(
        { c: new WsConn(s, w) },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws: WebSocket<{ c: WsConn }>) => {
      const c = ws.getUserData().c;
      c.s.ws = ws as WebSocket<unknown>;
      c.s.onDrained = () => c.w.pump();
      c.s.onGone = () => {
        c.w.cancel();
        sessions.delete(c);
      };
      sessions.add(c);
      counters.connections++;
      ctx.gate.ws++;
    },
    message: (ws: WebSocket<{ c: WsConn }>, message: ArrayBuffer, isBinary: boolean) => {
      const c = ws.getUserData().c;
      const s = c.s;
      counters.messages++;
      if (message.byteLength > maxPayload) {
        counters.badFrames++;
        s.end(CloseCode.MessageTooBig, 'TOO_LARGE');
        return;
      }
      if (!isBinary) {
        counters.badFrames++;
        tally.request(Front.Ws, TallyOp.Unknown, 'BAD_REQUEST');
        s.error(0, -1, 'BAD_REQUEST', 'frames must be binary msgpack');
        return;
      }
      if (ctx.config !== config) refresh();
      reader.reset(new Uint8Array(message), 0, message.byteLength);
      while (reader.remaining > 0) {
        try {
          fields.read(reader);
        } catch (e) {
          // The rest of the frame cannot be found once a map is unreadable: one error for the frame. The
          // map's request, if its id was read, was never started, so it gets its END here.
          counters.badFrames++;
          if (!(e instanceof MsgpackError)) bug(e); // the client still only sent bad bytes: BAD_REQUEST
          const why = e instanceof MsgpackError ? `not valid msgpack: ${e.message}` : 'not valid msgpack';
          if (fields.id >= 0) requestError(s, fields.id, TallyOp.Unknown, 'BAD_REQUEST', why);
          else {
            tally.request(Front.Ws, TallyOp.Unknown, 'BAD_REQUEST');
            s.error(0, -1, 'BAD_REQUEST', why);
          }
          return;
        }
        if (fields.id < 0) {
          counters.badFrames++;
          tally.request(Front.Ws, TallyOp.Unknown, fields.error ?? 'BAD_REQUEST');
          s.error(0, -1, fields.error ?? 'BAD_REQUEST', fields.error ? fields.errorMessage : 'id missing');
          continue;
        }
        try {
          dispatch(c, fields);
        } catch (e) {
          bug(e);
          tally.request(Front.Ws, fields.op, 'INTERNAL');
          s.error(fields.id, -1, 'INTERNAL', ErrorTable.INTERNAL.message);
        }
      }
    },
    drain: (ws: WebSocket<{ c: WsConn }>) => ws.getUserData().c.s.drain(),
    close: (ws: WebSocket<{ c: WsConn }>) => {
      ws.getUserData().c.s.closed();
      counters.connections--;
      ctx.gate.ws--;
    },
  });
  return { counters, sessions };
}
