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
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket } from '../uws';
import { RateLimitedLog } from '../core/log';
import { refuseFraming } from './framing';
import { refuseBrowser } from './browser-gate';
import { Front, TallyOp } from '../core/tally';
import { TOKEN_QUERY_PARAM, upgradeCredential, WS_PROTOCOL, type Access } from '../security/access';
import type { Refusal } from '../security/address-limits';
import { forwardedFor } from '../security/client-address';
import { Perm, type Principal } from '../security/principal';
import { rateLimitedMessage, retryHeaders, UNAUTHORIZED_HEADERS, unauthorizedMessage } from './access-gate';

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

/** setTimeout's longest delay; a credential valid for longer is looked at again after this. */
const MAX_TIMER_MS = 0x7fffffff;

/** One connection: its output side, its get window, and who it is. */
export class WsConn {
  /** Closes the connection when its credential expires (null: it does not). */
  expiry: NodeJS.Timeout | null = null;
  constructor(
    readonly s: WsSession,
    readonly w: GetWindow,
    /** Replaced by an `auth` message that refreshes the credential. */
    public p: Principal,
    /** The credential `p` came from, checked again when a reload changes the credentials (never logged). */
    public token: string,
    /** The client's address as the connection limits counted it ('' when they were not). */
    readonly address: string,
  ) {}
}

class WsRequest extends Request {
  s!: WsSession;
  w!: GetWindow;
  id = 0;
  /** get / mget: the items are the window's to account for. */
  read = false;
  free!: WsRequest[];
  /** Set when rate limits are on: the answers' bytes are charged to `principal`. */
  access: Access | null = null;
  principal: Principal | null = null;

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
    if (offset === 0 && this.access !== null) this.access.charge(this.principal!, total, 0);
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
  init(c: WsConn, id: number, read: boolean, free: WsRequest[], access: Access | null): this {
    this.reinit();
    this.s = c.s;
    this.w = c.w;
    this.id = id;
    this.read = read;
    this.free = free;
    this.access = access;
    this.principal = access === null ? null : c.p;
    return this;
  }
}

/** The gateway's view of its WebSocket sessions, for the drain and for reloads. */
export interface WsFront {
  counters: WsCounters;
  sessions: Set<WsConn>;
  /**
   * Checks every open connection's credential again (a reload changed the credentials): one no longer
   * accepted, or now standing for another principal or namespace, is closed with CloseCode.AuthRevoked;
   * the others take the new rules and expiry. Returns how many were closed.
   */
  recheck(): number;
}

export function mountWebSocket(app: TemplatedApp, ctx: GatewayContext): WsFront {
  const { router, access } = ctx;
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

  /** False after failing `req` as a whole because its principal is over a rate. */
  const admitted = (c: WsConn, req: WsRequest, ops: number, bytes: number, writeBytes: number): boolean => {
    const ms = access.admit(c.p, ops, bytes, writeBytes);
    if (ms === 0) return true;
    req.reject(-1, 'RATE_LIMITED', rateLimitedMessage(access, ms));
    return false;
  };

  const dispatch = (c: WsConn, f: RequestFields, start: number): void => {
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
    const limited = access.rates.limited;
    const req = (freeRequests.pop() ?? new WsRequest()).init(c, id, read, freeRequests, limited ? access : null);
    // Op's numbers are TallyOp's (test/metrics.test.ts holds them together).
    req.countInto(tally, tally.at(Front.Ws, op), op === Op.Get || op === Op.Set || op === Op.Del);
    s.inflight++;
    counters.requests++;
    const next = reader.pos;
    try {
      // One request, one admission: its item count, and its bytes as they came (the map's length).
      if (!limited) items(c, req, f);
      else if (f.op === Op.MGet || f.op === Op.MDel || f.op === Op.MSet) items(c, req, f, next - start);
      // An auth message counts as an op too: each may cost a signature check.
      else if (admitted(c, req, 1, next - start, f.op === Op.Set ? f.valueLen : 0)) items(c, req, f);
    } catch (e) {
      // A bug: this request fails as a whole (items already handed to shards still settle), the rest go on,
      // read from where this request's map ended.
      reader.pos = next;
      bug(e);
      req.reject(-1, 'INTERNAL', ErrorTable.INTERNAL.message);
    }
    req.seal();
  };

  /** `span`: the request's bytes, when a bulk request must be admitted once its item count is known (-1: no). */
  const items = (c: WsConn, req: WsRequest, f: RequestFields, span = -1): void => {
    const buf = reader.buf;
    const p = c.p;
    switch (f.op) {
      case Op.Get:
        if (f.keyOff < 0) req.reject(0, 'BAD_KEY', 'key missing');
        else if (access.scope(p, req, 0, buf, f.keyOff, f.keyLen, Perm.Read))
          c.w.get(req, 0, access.key, access.keyOff, access.keyLen, f.wait);
        break;
      case Op.Del:
        if (f.keyOff < 0) req.reject(0, 'BAD_KEY', 'key missing');
        else if (access.scope(p, req, 0, buf, f.keyOff, f.keyLen, Perm.Delete))
          router.del(req, 0, access.key, access.keyOff, access.keyLen, f.wait);
        break;
      case Op.Set:
        if (f.keyOff < 0) req.reject(0, 'BAD_KEY', 'key missing');
        else if (f.valueOff < 0) req.reject(0, 'BAD_VALUE', 'value missing');
        else if (access.scope(p, req, 0, buf, f.keyOff, f.keyLen, Perm.Write))
          router.set(
            req,
            0,
            access.key,
            access.keyOff,
            access.keyLen,
            f.ttl,
            f.flags,
            buf,
            f.valueOff,
            f.valueLen,
            f.wait,
          );
        break;
      case Op.MGet:
      case Op.MDel:
        bulkKeys(c, req, f, f.op === Op.MGet, span);
        break;
      case Op.MSet:
        bulkItems(c, req, f, span);
        break;
      case Op.Auth:
        reauthenticate(c, req, f);
        break;
      default:
        req.reject(-1, 'UNKNOWN_OP', 'op missing');
    }
  };

  /**
   * Closes `c` when its credential expires (CloseCode.AuthExpired), unless an `auth` message replaces it
   * first; a credential valid for longer than a timer can wait is looked at again then.
   */
  const armExpiry = (c: WsConn): void => {
    if (c.expiry !== null) clearTimeout(c.expiry);
    c.expiry = null;
    const at = c.p.expiresAt;
    if (at === Infinity) return;
    const ms = at - Date.now();
    c.expiry = setTimeout(
      () => {
        c.expiry = null;
        if (c.p.expiresAt > Date.now()) return armExpiry(c);
        access.expiredConnections++;
        c.s.end(CloseCode.AuthExpired, 'AUTH_EXPIRED');
      },
      Math.max(0, Math.min(ms, MAX_TIMER_MS)),
    );
  };

  /**
   * `{op: "auth", token}`: a fresh credential for this connection (a JWT about to expire). It must stand
   * for the same principal, tenant and namespace (a connection never changes whose keys it touches); its
   * rules and expiry replace the old ones. Refused: the connection keeps the credential it has.
   */
  const reauthenticate = (c: WsConn, req: WsRequest, f: RequestFields): void => {
    if (f.tokenOff < 0) return req.reject(-1, 'UNAUTHORIZED', 'token missing');
    const token = Buffer.from(reader.buf.buffer, reader.buf.byteOffset + f.tokenOff, f.tokenLen).toString('utf8');
    const r = access.authenticate(token);
    if (!r.ok) return req.reject(-1, 'UNAUTHORIZED', unauthorizedMessage(r.reason));
    const p = r.principal;
    if (p.id !== c.p.id || p.tenant !== c.p.tenant || p.namespace !== c.p.namespace)
      return req.reject(-1, 'FORBIDDEN', 'the new credential must stand for the same principal and namespace');
    c.p = p;
    c.token = token;
    armExpiry(c);
    req.submitted();
    req.ok(0);
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

  const bulkKeys = (c: WsConn, req: WsRequest, f: RequestFields, isGet: boolean, span: number): void => {
    const save = reader.pos;
    const n = openBulk(req, f.keysAt, 'keys');
    const w = c.w;
    const p = c.p;
    const perm = isGet ? Perm.Read : Perm.Delete;
    if (n > 0 && span >= 0 && !admitted(c, req, n, span, 0)) {
      reader.pos = save;
      return;
    }
    for (let i = 0; i < n; i++) {
      if (!reader.readBytes()) {
        reader.skip();
        req.reject(i, 'BAD_KEY', 'key must be a str or bin');
        continue;
      }
      if (!access.scope(p, req, i, reader.buf, reader.off, reader.len, perm)) continue;
      if (isGet) w.get(req, i, access.key, access.keyOff, access.keyLen, f.wait);
      else router.del(req, i, access.key, access.keyOff, access.keyLen, f.wait);
    }
    reader.pos = save;
  };

  const bulkItems = (c: WsConn, req: WsRequest, f: RequestFields, span: number): void => {
    const save = reader.pos;
    const n = openBulk(req, f.itemsAt, 'items');
    const p = c.p;
    // The values are most of an mset's bytes: its length counts as written bytes too.
    if (n > 0 && span >= 0 && !admitted(c, req, n, span, span)) {
      reader.pos = save;
      return;
    }
    for (let i = 0; i < n; i++) {
      item.read(reader);
      if (item.error !== null) {
        req.reject(i, item.error, item.errorMessage);
        continue;
      }
      if (!access.scope(p, req, i, reader.buf, item.keyOff, item.keyLen, Perm.Write)) continue;
      router.set(
        req,
        i,
        access.key,
        access.keyOff,
        access.keyLen,
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
      const cred = upgradeCredential(
        req.getHeader('authorization'),
        req.getHeader('sec-websocket-protocol'),
        req.getQuery(TOKEN_QUERY_PARAM),
      );
      if (cred.tokenInProtocol && cred.protocol === '')
        return refuseUpgrade(
          res,
          '400 Bad Request',
          'BAD_REQUEST',
          `offer the subprotocol ${WS_PROTOCOL} with the token's`,
        );
      // Counted from the attempt, before the credential: a flood of bad tokens is held to the rate too.
      let address = '';
      if (access.connections.limited) {
        address = clientAddress(res, req, access);
        const no = access.attempt(address);
        if (no !== null) return refuseConnection(res, no);
      }
      const auth = access.authenticate(cred.token);
      if (!auth.ok)
        return refuseUpgrade(
          res,
          '401 Unauthorized',
          'UNAUTHORIZED',
          unauthorizedMessage(auth.reason),
          UNAUTHORIZED_HEADERS,
        );
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
      // Counted from here (AddressLimits.open) until `close`: uWS calls `open` within res.upgrade.
      if (access.connections.limited) {
        const no = access.open(address, auth.principal);
        if (no !== null) return refuseConnection(res, no);
      }
      const s = new WsSession(ctx.pool, ctx.budget, hardCap);
      const w = new GetWindow(router, ctx.budget, s, limits.maxBufferedBytesPerConnection);
      res.upgrade(
        { c: new WsConn(s, w, auth.principal, cred.token, address) },
        req.getHeader('sec-websocket-key'),
        cred.protocol,
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
      armExpiry(c);
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
      if (access.rates.limited) access.tick();
      while (reader.remaining > 0) {
        const start = reader.pos;
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
          dispatch(c, fields, start);
        } catch (e) {
          bug(e);
          tally.request(Front.Ws, fields.op, 'INTERNAL');
          s.error(fields.id, -1, 'INTERNAL', ErrorTable.INTERNAL.message);
        }
      }
    },
    drain: (ws: WebSocket<{ c: WsConn }>) => ws.getUserData().c.s.drain(),
    close: (ws: WebSocket<{ c: WsConn }>) => {
      const c = ws.getUserData().c;
      if (c.expiry !== null) clearTimeout(c.expiry);
      if (access.connections.limited) access.close(c.address, c.p);
      c.s.closed();
      counters.connections--;
      ctx.gate.ws--;
    },
  });
  const recheck = (): number => {
    let closed = 0;
    for (const c of sessions) {
      const r = access.authenticate(c.token);
      const p = r.ok ? r.principal : null;
      if (p === null || p.id !== c.p.id || p.tenant !== c.p.tenant || p.namespace !== c.p.namespace) {
        closed++;
        access.revokedConnections++;
        c.s.end(CloseCode.AuthRevoked, 'AUTH_REVOKED');
        continue;
      }
      c.p = p;
      armExpiry(c);
    }
    return closed;
  };
  return { counters, sessions, recheck };
}

/** Refuses an upgrade with a JSON error body; the connection closes after it. */
function refuseUpgrade(
  res: HttpResponse,
  status: string,
  code: ErrorCode,
  message: string,
  headers?: [string, string][],
): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json');
    for (const [k, v] of headers ?? []) res.writeHeader(k, v);
    res.end(errorBody(code, message), true);
  });
}

const REFUSAL_MESSAGES = [
  'too many connections from this address',
  'too many connections with this credential',
  'too many new connections from this address',
];

function refuseConnection(res: HttpResponse, no: Refusal): void {
  const why = REFUSAL_MESSAGES[no.kind];
  refuseUpgrade(res, '429 Too Many Requests', 'RATE_LIMITED', why, retryHeaders(no.retryAfterMs));
}

/** The client's address, from a trusted proxy's PROXY header or X-Forwarded-For, else the peer's. */
function clientAddress(res: HttpResponse, req: HttpRequest, access: Access): string {
  const peer = Buffer.from(res.getRemoteAddressAsText()).toString('latin1');
  const proxied = Buffer.from(res.getProxiedRemoteAddressAsText()).toString('latin1');
  if (proxied !== '') return access.clients.resolveProxied(peer, proxied);
  return access.clients.resolve(peer, forwardedFor(req));
}
