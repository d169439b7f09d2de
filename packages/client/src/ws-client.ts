/**
 * The WebSocket client (docs/PROTOCOL.md, "WebSocket"). One socket carries many requests, told apart by a
 * uint32 id. Work moves through three places:
 *
 *   queue (issued, not sent)  --pump-->  inFlight (sent, waiting for END)  --END-->  settled
 *        ^                                   |
 *        +---- connection lost: gets/mgets --+   (writes in flight reject CONNECTION_CLOSED, maybe applied)
 *
 * `pump` runs once per microtask after something was issued or finished: it moves what the in-flight
 * bound allows from the queue into ONE binary frame (concatenated msgpack maps), so calls issued in the
 * same tick share a frame. A call that times out or is aborted after it was sent keeps its in-flight slot
 * (as "abandoned") until its END arrives, so the gateway never sees more than `maxInFlight` requests.
 */
import { CLIENT_CODES, KvError, badResponse } from './errors';
import { Decoder, Writer } from './msgpack';
import type {
  CallOptions,
  GetResult,
  Key,
  MdelResult,
  MgetItem,
  MgetResult,
  MsetResult,
  SetItem,
  SetOptions,
  Value,
} from './types';

/** The part of the WHATWG WebSocket the client uses (browsers, Node 22's global, and the `ws` package). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ReconnectOptions {
  /** First delay (default 100 ms); doubled per failed attempt up to `maxMs` (default 10 s). */
  minMs?: number;
  maxMs?: number;
  /** Fraction of each delay taken off at random, 0..1 (default 0.5), so clients do not reconnect in step. */
  jitter?: number;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface ConnectOptions {
  /** An API key or JWT, offered as the `kvgate.bearer.<token>` subprotocol beside `kvgate.v1`. */
  token?: string;
  /** The WebSocket class; default `globalThis.WebSocket` (the `/node` entry passes `ws` on Node 20). */
  WebSocket?: WebSocketConstructor;
  /** Requests in flight at once (default 1024; the gateway's `limits.maxInflightPerConnection` is 4096). */
  maxInFlight?: number;
  /** Largest frame the client sends (default 1 MiB; the gateway's `ws.maxPayloadBytes` is 2 MiB). */
  maxFrameBytes?: number;
  /** Default per-call timeout in ms (default 30000; 0 = none). */
  timeoutMs?: number;
  /** `false`: a lost connection closes the client. */
  reconnect?: ReconnectOptions | false;
  /**
   * Called when the gateway closes with 4001 AUTH_EXPIRED or 4003 AUTH_REVOKED. Return a fresh token to
   * reconnect with it; return nothing (or the same token) and the client closes, rejecting what waits with
   * AUTH_EXPIRED / AUTH_REVOKED. Without the hook the client closes.
   */
  onAuthExpired?: (info: CloseInfo) => string | null | undefined | Promise<string | null | undefined>;
}

export interface ClientStats {
  state: 'open' | 'reconnecting' | 'closed';
  inFlight: number;
  queued: number;
  framesSent: number;
  reconnects: number;
}

type Op = 'get' | 'set' | 'del' | 'mget' | 'mset' | 'mdel' | 'auth';
type ItemResult = MgetResult | MsetResult | MdelResult;

interface Part {
  flags: number;
  buf: Uint8Array;
  got: number;
}

interface Call {
  op: Op;
  /** Request fields besides id, op and the keys of a get/mget. */
  fields: Record<string, unknown>;
  /** get/mget/del/mdel: the keys asked, in the caller's order. */
  keys: Key[];
  count: number;
  /** get/mget are resent after a reconnect; nothing else is. */
  readonly idempotent: boolean;
  results: (ItemResult | undefined)[];
  /** get/mget: caller's indexes still to fetch; the wire index of a send is a position in this list. */
  todo: number[];
  wire: number[];
  parts: Map<number, Part>;
  retryItems: number[];
  failure?: KvError;
  id: number;
  state: 'queued' | 'sent' | 'abandoned' | 'settled';
  resolve: (r: ItemResult[]) => void;
  reject: (e: KvError) => void;
  onItem?: (i: number, r: MgetResult) => void;
  cleanup?: () => void;
}

const MAX_ID = 0xffffffff;
const WS_OPEN = 1;
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** A FIFO with O(1) shift (an indexed array, compacted when half is spent). */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(x: T): void {
    this.items.push(x);
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }
  unshiftAll(xs: T[]): void {
    this.items = [...xs, ...this.items.slice(this.head)];
    this.head = 0;
  }
  drain(): T[] {
    const all = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return all;
  }
}

function frameData(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (data instanceof Uint8Array) return data;
  return undefined;
}

export class KvClient {
  private ws?: WebSocketLike;
  private open = false;
  private closing = false;
  private closedInfo?: KvError;
  private readonly queue = new Fifo<Call>();
  private readonly inFlight = new Map<number, Call>();
  private lastId = 0;
  private pumpScheduled = false;
  private attempt = 0;
  private reconnectTimer?: ReturnType<typeof setTimeout>;
  private framesSent = 0;
  private reconnects = 0;
  private readonly writer = new Writer();
  private readonly WS: WebSocketConstructor;
  private readonly maxInFlight: number;
  private readonly maxFrameBytes: number;
  private readonly timeoutMs: number;
  private readonly reconnectOpts: Required<ReconnectOptions> | false;
  private token?: string;
  private closedResolve!: (info: CloseInfo) => void;
  /** Resolves when the client is closed for good (close(), an auth close without a fresh token, ...). */
  readonly closed: Promise<CloseInfo>;

  /** Use `connect()`. */
  constructor(
    private readonly url: string,
    opts: ConnectOptions = {},
  ) {
    const WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS)
      throw new TypeError('no WebSocket: pass options.WebSocket, or import @kvgate/client/node (uses the ws package)');
    this.WS = WS;
    this.token = opts.token;
    this.maxInFlight = opts.maxInFlight ?? 1024;
    this.maxFrameBytes = opts.maxFrameBytes ?? 1024 * 1024;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.reconnectOpts =
      opts.reconnect === false ? false : { minMs: 100, maxMs: 10_000, jitter: 0.5, ...(opts.reconnect ?? {}) };
    this.onAuthExpired = opts.onAuthExpired;
    this.closed = new Promise((resolve) => (this.closedResolve = resolve));
  }

  private readonly onAuthExpired?: ConnectOptions['onAuthExpired'];

  get stats(): ClientStats {
    return {
      state: this.closedInfo ? 'closed' : this.open ? 'open' : 'reconnecting',
      inFlight: this.inFlight.size,
      queued: this.queue.length,
      framesSent: this.framesSent,
      reconnects: this.reconnects,
    };
  }

  /** Opens the first connection; rejects with CONNECTION_FAILED if it cannot. */
  start(): Promise<this> {
    return new Promise((resolve, reject) => {
      this.openSocket((err) => {
        if (!err) return resolve(this);
        this.shutdown(err, { code: 1006, reason: err.message });
        reject(err);
      });
    });
  }

  // ---- the API ---------------------------------------------------------------------------------------

  /** The value, or null when the key is absent. */
  async get(key: Key, opts: CallOptions = {}): Promise<Uint8Array | null> {
    const r = (await this.single('get', [key], {}, opts)) as GetResult;
    return r.hit ? r.value : null;
  }

  /** The value with its flags, or `{hit: false}`. */
  async getItem(key: Key, opts: CallOptions = {}): Promise<GetResult> {
    return (await this.single('get', [key], {}, opts)) as GetResult;
  }

  async set(key: Key, value: Value, opts: SetOptions = {}): Promise<void> {
    await this.single('set', [], { key, value: bin(value), ttl: opts.ttl, flags: opts.flags }, opts);
  }

  /** True if the key was deleted, false if it was absent. */
  async del(key: Key, opts: CallOptions = {}): Promise<boolean> {
    const r = (await this.single('del', [key], {}, opts)) as { deleted: boolean };
    return r.deleted;
  }

  /** One result per key, in the order of `keys`; an item's error is its result, not a rejection. */
  mget(keys: Key[], opts: CallOptions = {}): Promise<MgetResult[]> {
    return this.issue('mget', keys, {}, keys.length, opts) as Promise<MgetResult[]>;
  }

  /** Yields `{i, key, result}` as the gateway answers each key (the order shards answer). */
  mgetIter(keys: Key[], opts: CallOptions = {}): AsyncIterableIterator<MgetItem> {
    const ready: MgetItem[] = [];
    let wake: (() => void) | undefined;
    let over = false;
    let failure: KvError | undefined;
    const ctl = new AbortController();
    const signal = opts.signal ? anySignal([opts.signal, ctl.signal]) : ctl.signal;
    const call = this.issue('mget', keys, {}, keys.length, { ...opts, signal }, (i, result) => {
      ready.push({ i, key: keys[i], result });
      wake?.();
    });
    call.then(
      () => {
        over = true;
        wake?.();
      },
      (e: KvError) => {
        over = true;
        failure = e;
        wake?.();
      },
    );
    const it: AsyncIterableIterator<MgetItem> = {
      [Symbol.asyncIterator]: () => it,
      async next(): Promise<IteratorResult<MgetItem>> {
        while (!ready.length && !over) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        const item = ready.shift();
        if (item) return { value: item, done: false };
        if (failure && !(failure.code === 'ABORTED' && ctl.signal.aborted)) throw failure;
        return { value: undefined, done: true };
      },
      async return(): Promise<IteratorResult<MgetItem>> {
        if (!over) ctl.abort();
        over = true;
        ready.length = 0;
        return { value: undefined, done: true };
      },
    };
    return it;
  }

  mset(items: SetItem[], opts: CallOptions = {}): Promise<MsetResult[]> {
    const wire = items.map((it) => ({ key: it.key, value: bin(it.value), ttl: it.ttl, flags: it.flags }));
    return this.issue('mset', [], { items: wire }, items.length, opts) as Promise<MsetResult[]>;
  }

  mdel(keys: Key[], opts: CallOptions = {}): Promise<MdelResult[]> {
    return this.issue('mdel', keys, {}, keys.length, opts) as Promise<MdelResult[]>;
  }

  /**
   * Replaces the connection's credential (a JWT about to expire); later reconnects use it too. Rejects with
   * UNAUTHORIZED or FORBIDDEN, keeping the old one.
   */
  async auth(token: string, opts: CallOptions = {}): Promise<void> {
    await this.single('auth', [], { token }, opts);
    this.token = token;
  }

  /**
   * Closes for good: what is queued rejects with CLOSED, what is in flight with CONNECTION_CLOSED (a write
   * may have been applied). Resolves once the socket has closed.
   */
  close(): Promise<CloseInfo> {
    if (!this.closedInfo) {
      this.closing = true;
      this.shutdown(new KvError('CLOSED', 'the client was closed', { source: 'client' }), {
        code: 1000,
        reason: '',
      });
    }
    return this.closed;
  }

  // ---- issuing ---------------------------------------------------------------------------------------

  private async single(op: Op, keys: Key[], fields: Record<string, unknown>, opts: CallOptions): Promise<ItemResult> {
    const [r] = await this.issue(op, keys, fields, 1, opts);
    if ('error' in r) throw r.error;
    return r;
  }

  private issue(
    op: Op,
    keys: Key[],
    fields: Record<string, unknown>,
    count: number,
    opts: CallOptions,
    onItem?: (i: number, r: MgetResult) => void,
  ): Promise<ItemResult[]> {
    if (this.closedInfo) return Promise.reject(this.closedInfo);
    if (opts.signal?.aborted) return Promise.reject(aborted(false, op));
    if (opts.wait !== undefined) fields.wait = opts.wait;
    return new Promise<ItemResult[]>((resolve, reject) => {
      const call: Call = {
        op,
        fields,
        keys,
        count,
        idempotent: op === 'get' || op === 'mget',
        results: new Array<ItemResult | undefined>(count).fill(undefined),
        todo: Array.from({ length: count }, (_, i) => i),
        wire: [],
        parts: new Map(),
        retryItems: [],
        id: 0,
        state: 'queued',
        resolve,
        reject,
        onItem,
      };
      const timeout = opts.timeout ?? this.timeoutMs;
      const timer =
        timeout > 0
          ? setTimeout(() => {
              const sent = call.state === 'sent';
              this.giveUp(
                call,
                new KvError('TIMEOUT', `${op}: no answer within ${timeout} ms`, {
                  source: 'client',
                  retry: sent ? 'idempotent' : 'after',
                  maybeApplied: sent && !call.idempotent,
                }),
              );
            }, timeout)
          : undefined;
      const onAbort = (): void => this.giveUp(call, aborted(call.state === 'sent', op, call.idempotent));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      call.cleanup = () => {
        if (timer !== undefined) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      this.queue.push(call);
      this.schedulePump();
    });
  }

  /** Timeout or abort: settle now; a sent call stays in flight (abandoned) until its END. */
  private giveUp(call: Call, err: KvError): void {
    if (call.state === 'settled' || call.state === 'abandoned') return;
    if (call.state === 'sent') call.state = 'abandoned';
    else call.state = 'settled'; // queued: the pump skips it
    call.cleanup?.();
    call.reject(err);
  }

  private settle(call: Call, err?: KvError): void {
    if (call.state === 'abandoned' || call.state === 'settled') return;
    call.state = 'settled';
    call.cleanup?.();
    if (err) call.reject(err);
    else call.resolve(call.results as ItemResult[]);
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => this.pump());
  }

  private pump(): void {
    this.pumpScheduled = false;
    const ws = this.ws;
    if (!ws || !this.open) return;
    let chunks: Uint8Array[] = [];
    let bytes = 0;
    while (this.queue.length && this.inFlight.size < this.maxInFlight) {
      const call = this.queue.shift()!;
      if (call.state !== 'queued') continue;
      const id = this.nextId();
      this.encode(this.writer, call, id);
      const req = this.writer.take();
      if (req.length > this.maxFrameBytes) {
        this.settle(
          call,
          new KvError('TOO_LARGE', `${call.op}: ${req.length} bytes, over maxFrameBytes (${this.maxFrameBytes})`, {
            source: 'client',
          }),
        );
        continue;
      }
      if (bytes + req.length > this.maxFrameBytes) {
        this.sendFrame(ws, chunks, bytes);
        chunks = [];
        bytes = 0;
      }
      chunks.push(req);
      bytes += req.length;
      call.id = id;
      call.state = 'sent';
      this.inFlight.set(id, call);
    }
    if (bytes > 0) this.sendFrame(ws, chunks, bytes);
  }

  /** One binary message: the requests' maps, concatenated (a msgpack stream). */
  private sendFrame(ws: WebSocketLike, chunks: Uint8Array[], bytes: number): void {
    let frame = chunks[0];
    if (chunks.length > 1) {
      frame = new Uint8Array(bytes);
      let at = 0;
      for (const c of chunks) {
        frame.set(c, at);
        at += c.length;
      }
    }
    this.framesSent++;
    ws.send(frame);
  }

  private encode(w: Writer, call: Call, id: number): void {
    const m: Record<string, unknown> = { id, op: call.op };
    switch (call.op) {
      case 'get':
      case 'del':
        m.key = call.keys[0];
        call.wire = [0];
        break;
      case 'mget':
        call.wire = call.todo;
        m.keys = call.todo.map((i) => call.keys[i]);
        break;
      case 'mdel':
        m.keys = call.keys;
        call.wire = call.todo;
        break;
      default:
        call.wire = call.todo;
    }
    Object.assign(m, call.fields);
    w.value(m);
  }

  /** Ids count up from 1 and wrap; 0 is skipped (the gateway answers with it when it cannot read an id). */
  private nextId(): number {
    do this.lastId = this.lastId >= MAX_ID ? 1 : this.lastId + 1;
    while (this.inFlight.has(this.lastId));
    return this.lastId;
  }

  // ---- the connection --------------------------------------------------------------------------------

  private openSocket(first?: (err?: KvError) => void): void {
    const protocols = ['kvgate.v1'];
    let url = this.url;
    if (this.token !== undefined) {
      if (TOKEN_CHARS.test(this.token)) protocols.push(`kvgate.bearer.${this.token}`);
      else url += `${url.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(this.token)}`;
    }
    let ws: WebSocketLike;
    try {
      ws = new this.WS(url, protocols);
    } catch (e) {
      const err = new KvError('CONNECTION_FAILED', `cannot connect to ${this.url}: ${(e as Error).message}`);
      if (first) first(err);
      else this.scheduleReconnect(1006);
      return;
    }
    ws.binaryType = 'arraybuffer';
    let opened = false;
    ws.onopen = () => {
      opened = true;
      if (this.closedInfo) return ws.close(1000);
      this.ws = ws;
      this.open = true;
      first?.();
      this.schedulePump();
    };
    ws.onerror = () => undefined; // a close event follows
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.receive(ws, ev.data);
    };
    ws.onclose = (ev) => {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      if (!opened) {
        if (first) return first(new KvError('CONNECTION_FAILED', `cannot connect to ${this.url} (${ev.code})`));
        if (!this.closedInfo) this.scheduleReconnect(ev.code);
        return;
      }
      if (this.ws === ws) this.lost(ev.code, ev.reason);
    };
  }

  /** The open connection closed (not by close()): resend gets, fail writes in flight, reconnect or stop. */
  private lost(code: number, reason: string): void {
    this.ws = undefined;
    this.open = false;
    const why = `connection closed (${code}${reason ? ' ' + reason : ''})`;
    const resend: Call[] = [];
    for (const call of this.inFlight.values()) {
      if (call.state !== 'sent') continue;
      if (call.idempotent) {
        this.rewind(call);
        resend.push(call);
      } else
        this.settle(
          call,
          new KvError('CONNECTION_CLOSED', `${call.op}: ${why} while in flight; it may or may not have been applied`, {
            source: 'client',
            maybeApplied: true,
          }),
        );
    }
    this.inFlight.clear();
    this.queue.unshiftAll(resend);
    if (this.closedInfo) return;
    if (code === 4001 || code === 4003) return void this.authClosed({ code, reason });
    if (this.reconnectOpts === false) return this.shutdown(new KvError('CONNECTION_CLOSED', why), { code, reason });
    if (code === 1008) this.attempt = Math.max(this.attempt, 1);
    this.scheduleReconnect(code);
  }

  /** A get/mget goes back to the queue with the items it has not got yet. */
  private rewind(call: Call): void {
    call.state = 'queued';
    call.parts.clear();
    call.todo = call.todo.filter((i) => call.results[i] === undefined);
    call.retryItems = [];
    call.failure = undefined;
  }

  private async authClosed(info: CloseInfo): Promise<void> {
    const code = info.code === 4001 ? 'AUTH_EXPIRED' : 'AUTH_REVOKED';
    let fresh: string | null | undefined;
    try {
      fresh = await this.onAuthExpired?.(info);
    } catch {
      fresh = undefined;
    }
    if (this.closedInfo) return;
    if (typeof fresh === 'string' && fresh !== '' && fresh !== this.token) {
      this.token = fresh;
      this.attempt = 0;
      this.scheduleReconnect(info.code);
      return;
    }
    this.shutdown(
      new KvError(code, `the gateway closed the connection with ${info.code} ${info.reason}; no fresh token`),
      info,
    );
  }

  private scheduleReconnect(code: number): void {
    const r = this.reconnectOpts;
    if (r === false)
      return this.shutdown(new KvError('CONNECTION_CLOSED', `connection lost (${code})`), { code, reason: '' });
    // 1001: the gateway is draining; another instance is likely ready at once.
    const base = code === 1001 && this.attempt === 0 ? r.minMs : Math.min(r.maxMs, r.minMs * 2 ** this.attempt++);
    const delay = base * (1 - r.jitter * Math.random());
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closedInfo) return;
      this.reconnects++;
      this.openSocket();
    }, delay);
  }

  /** Closed for good: everything waiting rejects with `err`. */
  private shutdown(err: KvError, info: CloseInfo): void {
    if (this.closedInfo) return;
    this.closedInfo = err;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    for (const call of this.queue.drain()) this.settle(call, err);
    const ws = this.ws;
    this.ws = undefined;
    this.open = false;
    for (const call of this.inFlight.values())
      this.settle(
        call,
        new KvError('CONNECTION_CLOSED', `${call.op}: ${err.message} while in flight`, {
          source: 'client',
          maybeApplied: !call.idempotent,
          retry: 'idempotent',
        }),
      );
    this.inFlight.clear();
    if (ws && ws.readyState === WS_OPEN) {
      ws.onmessage = null;
      ws.onclose = (ev) => this.closedResolve({ code: ev.code, reason: ev.reason });
      ws.close(1000);
    } else this.closedResolve(info);
  }

  // ---- answers ---------------------------------------------------------------------------------------

  private receive(ws: WebSocketLike, data: unknown): void {
    const bytes = frameData(data);
    try {
      if (!bytes) throw badResponse('the gateway sent a text frame');
      const d = new Decoder(bytes);
      while (!d.done) this.entry(d.value());
      this.attempt = 0; // this connection works
    } catch (e) {
      const err = e instanceof KvError ? e : badResponse(`undecodable message: ${(e as Error).message}`);
      // The stream can no longer be trusted: drop the connection (gets are resent on the next one).
      for (const call of this.inFlight.values()) if (!call.idempotent) this.settle(call, err);
      ws.close(1000, 'protocol error'); // browsers allow only 1000 and 3000-4999 here
    }
  }

  private entry(raw: unknown): void {
    if (!Array.isArray(raw) || raw.length < 3) throw badResponse('an entry is not an array of 3 or more');
    const [id, i, kind] = raw as [unknown, unknown, unknown];
    if (!isUint(id) || typeof i !== 'number' || !Number.isInteger(i) || i < -1)
      throw badResponse(`bad entry head ${String(id)}, ${String(i)}`);
    const call = this.inFlight.get(id);
    if (!call) return; // an answer to nothing we have in flight (a request-level error's trailing END)
    if (kind === 5) return this.end(call);
    if (call.state === 'abandoned') return;
    if (i === -1) {
      if (kind !== 4) throw badResponse(`entry kind ${String(kind)} with i = -1`);
      call.failure = new KvError(String(raw[3]), String(raw[4]));
      return;
    }
    const orig = call.wire[i];
    if (orig === undefined) throw badResponse(`item index ${i} out of range for ${call.op}`);
    if (call.results[orig] !== undefined) throw badResponse(`${call.op} item ${i} answered twice`);
    let r: ItemResult | undefined;
    const read = call.op === 'get' || call.op === 'mget';
    const del = call.op === 'del' || call.op === 'mdel';
    switch (kind) {
      case 0:
        if (!read || !isUint(raw[3]) || !(raw[4] instanceof Uint8Array)) throw badResponse(`bad VALUE for ${call.op}`);
        r = { hit: true, flags: raw[3] as number, value: (raw[4] as Uint8Array).slice() };
        break;
      case 1: {
        if (!read || !isUint(raw[4]) || !isUint(raw[5]) || !(raw[6] instanceof Uint8Array))
          throw badResponse(`bad VALUE_PART for ${call.op}`);
        const [, , , flags, total, offset, chunk] = raw as [
          unknown,
          unknown,
          unknown,
          number,
          number,
          number,
          Uint8Array,
        ];
        let p = call.parts.get(orig);
        if (!p) call.parts.set(orig, (p = { flags, buf: new Uint8Array(total), got: 0 }));
        if (offset !== p.got || offset + chunk.length > p.buf.length) throw badResponse('VALUE_PART out of order');
        p.buf.set(chunk, offset);
        p.got += chunk.length;
        if (p.got === p.buf.length) {
          call.parts.delete(orig);
          r = { hit: true, flags, value: p.buf };
        }
        break;
      }
      case 2:
        if (!read && !del) throw badResponse(`MISS for ${call.op}`);
        r = del ? { deleted: false } : { hit: false };
        break;
      case 3:
        if (read) throw badResponse(`OK for ${call.op}`);
        r = del ? { deleted: true } : { ok: true };
        break;
      case 4: {
        call.parts.delete(orig);
        const code = String(raw[3]);
        // A draining gateway refused a read it never did: fetch it again after the reconnect.
        if (code === 'SHUTTING_DOWN' && call.idempotent) call.retryItems.push(orig);
        else r = { error: new KvError(code, String(raw[4])) };
        break;
      }
      default:
        throw badResponse(`unknown entry kind ${String(kind)}`);
    }
    if (r === undefined) return;
    call.results[orig] = r;
    if (call.onItem) call.onItem(orig, r as MgetResult);
  }

  private end(call: Call): void {
    this.inFlight.delete(call.id);
    this.schedulePump(); // a slot is free
    if (call.state === 'abandoned') return;
    if (call.parts.size) throw badResponse(`${call.op}: END with a value incomplete`);
    if (call.failure) {
      if (call.failure.code === 'SHUTTING_DOWN' && call.idempotent) return this.requeue(call);
      return this.settle(call, call.failure);
    }
    if (call.retryItems.length) return this.requeue(call);
    if (call.results.some((r) => r === undefined)) throw badResponse(`${call.op}: END before every item was answered`);
    this.settle(call);
  }

  private requeue(call: Call): void {
    this.rewind(call);
    this.queue.push(call);
  }
}

const aborted = (sent: boolean, op: string, idempotent = false): KvError =>
  new KvError(
    'ABORTED',
    `${op} was aborted${sent && !idempotent ? ' after it was sent: it may have been applied' : ''}`,
    {
      source: 'client',
      retry: sent ? CLIENT_CODES.ABORTED : 'after',
      maybeApplied: sent && !idempotent,
    },
  );

const utf8 = new TextEncoder();
const bin = (v: Value): Uint8Array => (typeof v === 'string' ? utf8.encode(v) : v);

function anySignal(signals: AbortSignal[]): AbortSignal {
  const ctl = new AbortController();
  for (const s of signals) {
    if (s.aborted) ctl.abort();
    else s.addEventListener('abort', () => ctl.abort(), { once: true });
  }
  return ctl.signal;
}

/**
 * Opens a client on `url` (`ws://host:port/v1/ws`); resolves once the first connection is open.
 */
export function connect(url: string, opts: ConnectOptions = {}): Promise<KvClient> {
  return new KvClient(url, opts).start();
}
