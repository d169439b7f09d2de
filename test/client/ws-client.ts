/**
 * WebSocket client for `/v1/ws` (docs/PROTOCOL.md). Many requests share one socket, told apart by a
 * uint32 id; entries are routed to their request by id and checked against the contract by
 * ResultAssembler. Any off-contract answer fails the whole connection: after one, the stream can no
 * longer be trusted, and a test should see it loudly rather than as one odd result.
 */
import WebSocket from 'ws';
import {
  decodeEntries,
  encodeRaw,
  encodeRequest,
  type Entry,
  type KeyInput,
  type Request,
  type SetItem,
  type SetOpts,
  type ValueInput,
  type WaitOpts,
} from './entries';
import { KvError, ProtocolError } from './errors';
import {
  isItemError,
  ResultAssembler,
  type GetResult,
  type ItemResult,
  type MdelResult,
  type MgetResult,
  type MsetResult,
} from './results';

export interface KvWsClientOptions {
  /**
   * Pack requests issued in the same tick into one WebSocket message (concatenated maps).
   * `true` or 'immediate' flushes on setImmediate, so requests issued from promise continuations in the
   * same turn of the event loop join the batch; 'microtask' flushes sooner but catches fewer.
   */
  batchSends?: boolean | 'immediate' | 'microtask';
  /** Send a batch early once it holds this many bytes (default 256 KiB, well under ws.maxPayloadBytes). */
  maxBatchBytes?: number;
  /** Treat a server message longer than this as a protocol error (the contract says 16 KiB). Off by default. */
  maxMessageBytes?: number;
  /** Passed to `ws`; perMessageDeflate defaults to off so frame sizes are what the gateway wrote. */
  ws?: WebSocket.ClientOptions;
  /** An API key or JWT, sent as `Authorization: Bearer` on the upgrade. */
  token?: string;
}

export type CloseInfo = { code: number; reason: string };

type Pending = { asm: ResultAssembler; resolve: (r: ItemResult[]) => void; reject: (e: Error) => void };

const MAX_ID = 0xffffffff;

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export class KvWsClient {
  /** Called with every decoded entry, in arrival order, including entries for ids this client never sent. */
  onEntry?: (entry: Entry) => void;
  /** Called with the byte length (and bytes) of every server message, before it is decoded. */
  onMessage?: (bytes: number, data: Buffer) => void;
  /** Resolves when the socket has closed, with the close code and reason (e.g. 1008 SLOW_CONSUMER). */
  readonly closed: Promise<CloseInfo>;

  private readonly pending = new Map<number, Pending>();
  private lastId = 0;
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private flushScheduled = false;
  private broken?: KvError;
  private closeInfo?: CloseInfo;
  private lastError?: Error;

  private constructor(
    readonly socket: WebSocket,
    private readonly opts: KvWsClientOptions,
  ) {
    let onClosed!: (info: CloseInfo) => void;
    this.closed = new Promise((resolve) => (onClosed = resolve));
    socket.on('message', (data, isBinary) => this.receive(toBuffer(data), isBinary));
    // ws emits 'error' then 'close'; keep the error for the CONNECTION_CLOSED message.
    socket.on('error', (e) => (this.lastError = e));
    socket.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      this.queue = [];
      this.queuedBytes = 0;
      const why = this.lastError ? `: ${this.lastError.message}` : '';
      this.failAll(new KvError('CONNECTION_CLOSED', `connection closed (${code} ${this.closeInfo.reason})${why}`));
      onClosed(this.closeInfo);
    });
  }

  static connect(url: string, opts: KvWsClientOptions = {}): Promise<KvWsClient> {
    return new Promise((resolve, reject) => {
      const headers = {
        ...opts.ws?.headers,
        ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }),
      };
      const ws = new WebSocket(url, { perMessageDeflate: false, ...opts.ws, headers });
      const onError = (e: Error): void => reject(e);
      ws.once('error', onError);
      ws.once('open', () => {
        ws.off('error', onError);
        resolve(new KvWsClient(ws, opts)); // listeners attach synchronously: no message can slip by
      });
    });
  }

  /** Requests sent and not yet ended. */
  get inflight(): number {
    return this.pending.size;
  }

  async get(key: KeyInput, opts: WaitOpts = {}): Promise<GetResult> {
    return (await this.single({ id: 0, op: 'get', key, wait: opts.wait })) as GetResult;
  }

  async set(key: KeyInput, value: ValueInput, opts: SetOpts = {}): Promise<void> {
    await this.single({ id: 0, op: 'set', key, value, ttl: opts.ttl, flags: opts.flags, wait: opts.wait });
  }

  /** True if the key was deleted, false if it was absent. */
  async del(key: KeyInput, opts: WaitOpts = {}): Promise<boolean> {
    const r = await this.single({ id: 0, op: 'del', key, wait: opts.wait });
    return (r as { deleted: boolean }).deleted;
  }

  /** One result per key, aligned with `keys`; per-item errors come back as `{error}`, not as a rejection. */
  mget(keys: KeyInput[], opts: WaitOpts = {}): Promise<MgetResult[]> {
    return this.issue({ id: 0, op: 'mget', keys, wait: opts.wait }, keys.length) as Promise<MgetResult[]>;
  }

  mset(items: SetItem[], opts: WaitOpts = {}): Promise<MsetResult[]> {
    return this.issue({ id: 0, op: 'mset', items, wait: opts.wait }, items.length) as Promise<MsetResult[]>;
  }

  mdel(keys: KeyInput[], opts: WaitOpts = {}): Promise<MdelResult[]> {
    return this.issue({ id: 0, op: 'mdel', keys, wait: opts.wait }, keys.length) as Promise<MdelResult[]>;
  }

  /**
   * Replaces this connection's credential (a JWT about to expire) with `token`, which must stand for the
   * same principal and namespace; rejects with UNAUTHORIZED or FORBIDDEN, keeping the old one.
   */
  async auth(token: string): Promise<void> {
    const [r] = await this.request({ op: 'auth', token }, 1);
    if (isItemError(r)) throw new KvError(r.error.code, r.error.message);
  }

  /**
   * Sends `fields` packed as-is plus a fresh `id`, expecting `count` item results: for tests of
   * off-contract requests (bad ttl types, unknown ops, ...). Entry kinds are checked against `fields.op`.
   */
  request(fields: Record<string, unknown>, count: number): Promise<ItemResult[]> {
    return this.send(String(fields.op), count, (id) => encodeRaw([{ ...fields, id }]));
  }

  /** Sends bytes as a binary message, or a string as a text message, outside any request bookkeeping. */
  sendRaw(data: Buffer | Uint8Array | string): void {
    this.flush(); // keep the order in which the caller issued things
    this.socket.send(data, { binary: typeof data !== 'string' });
  }

  /** Closes the socket; requests still in flight when it has closed reject with CONNECTION_CLOSED. */
  close(code = 1000, reason = ''): Promise<CloseInfo> {
    this.flush();
    if (this.socket.readyState === WebSocket.OPEN || this.socket.readyState === WebSocket.CONNECTING)
      this.socket.close(code, reason);
    return this.closed;
  }

  /** Drops the TCP connection without a close handshake. */
  terminate(): Promise<CloseInfo> {
    this.socket.terminate();
    return this.closed;
  }

  private async single(req: Request): Promise<ItemResult> {
    const [r] = await this.issue(req, 1);
    if (isItemError(r)) throw new KvError(r.error.code, r.error.message);
    return r;
  }

  private issue(req: Request, count: number): Promise<ItemResult[]> {
    return this.send(req.op, count, (id) => encodeRequest({ ...req, id }));
  }

  private send(op: string, count: number, encode: (id: number) => Buffer): Promise<ItemResult[]> {
    const down =
      this.broken ??
      (this.closeInfo &&
        new KvError('CONNECTION_CLOSED', `connection closed (${this.closeInfo.code} ${this.closeInfo.reason})`));
    if (down) return Promise.reject(down);
    const id = this.nextId();
    let frame: Buffer;
    try {
      frame = encode(id);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      this.pending.set(id, { asm: new ResultAssembler(op, count), resolve, reject });
      this.write(frame);
    });
  }

  /** Ids count up from 1 and wrap; 0 is skipped because the gateway uses it when it cannot read an id. */
  private nextId(): number {
    do this.lastId = this.lastId >= MAX_ID ? 1 : this.lastId + 1;
    while (this.pending.has(this.lastId));
    return this.lastId;
  }

  private write(frame: Buffer): void {
    if (!this.opts.batchSends) {
      this.socket.send(frame, { binary: true });
      return;
    }
    const max = this.opts.maxBatchBytes ?? 256 * 1024;
    if (this.queue.length && this.queuedBytes + frame.length > max) this.flush();
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    if (this.queuedBytes >= max) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      if (this.opts.batchSends === 'microtask') queueMicrotask(() => this.flush());
      else setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (!this.queue.length) return;
    const data = this.queue.length === 1 ? this.queue[0] : Buffer.concat(this.queue, this.queuedBytes);
    this.queue = [];
    this.queuedBytes = 0;
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(data, { binary: true });
  }

  private receive(data: Buffer, isBinary: boolean): void {
    if (this.broken) return;
    this.onMessage?.(data.length, data);
    let entries: Entry[];
    try {
      if (!isBinary) throw new ProtocolError('server sent a text frame');
      const max = this.opts.maxMessageBytes;
      if (max !== undefined && data.length > max)
        throw new ProtocolError(`server message of ${data.length} bytes exceeds ${max}`);
      entries = decodeEntries(data);
    } catch (e) {
      return this.breakConnection(e as KvError);
    }
    for (const e of entries) {
      this.onEntry?.(e);
      const p = this.pending.get(e.id);
      if (!p) continue; // not ours (sendRaw) or a trailing END after a request-level error
      let over: boolean;
      try {
        over = p.asm.add(e);
      } catch (err) {
        return this.breakConnection(err as KvError);
      }
      if (!over) continue;
      this.pending.delete(e.id);
      if (p.asm.failure) p.reject(p.asm.failure);
      else p.resolve(p.asm.finish());
    }
  }

  private breakConnection(err: KvError): void {
    this.broken = err;
    this.failAll(err);
    this.socket.close(1002, 'protocol error');
  }

  private failAll(err: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(err);
  }
}
