/**
 * The clients of the flow-control scenarios (bench/suite/flow.ts) that the closed-loop load generator
 * cannot play, each on its own `net` sockets so that it can read slowly or not at all:
 * - `HttpMget`: one POST /v1/mget of many large values (NDJSON or msgpack body) whose response it reads
 *   at a fixed byte rate, or never;
 * - `NonReaders`: many WebSocket connections that each send one `mget` and then read nothing;
 * - `WsMget`: the opposite, a WebSocket `mget` of many large values read as fast as the socket delivers
 *   them, every value checked (the load generator's own WsConn does the framing and checking).
 * Every wait here has a deadline, so a gateway that stops answering cannot hang the suite.
 */
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { KeySpace } from '../lib/keys';
import { Writer, mapHeader, arrayHeader, uint, str, F } from '../lib/mp';
import { ReqOp, type Conn, type Sink } from './conn';
import { WsConn } from './ws-conn';
import { authHeader, type Endpoint } from './types';

const HS_END = Buffer.from('\r\n\r\n');
const nowMs = (): number => performance.now();

const TCP_STATES = [
  '?',
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT1',
  'FIN_WAIT2',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'CLOSING',
];

/**
 * The kernel's state of our sockets to `remotePort`, by local port, from /proc/net/tcp. A client that
 * reads nothing cannot see the gateway close its connection (the FIN waits behind unread bytes), but
 * the kernel can: CLOSE_WAIT means the gateway closed it, a socket missing means it was reset.
 */
export function tcpStates(remotePort: number): Map<number, string> {
  const out = new Map<number, string>();
  try {
    for (const line of readFileSync('/proc/net/tcp', 'latin1').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4 || parseInt(f[2].split(':')[1], 16) !== remotePort) continue;
      out.set(parseInt(f[1].split(':')[1], 16), TCP_STATES[parseInt(f[3], 16)] ?? f[3]);
    }
  } catch {
    // not Linux: no states
  }
  return out;
}

export interface HttpMgetConfig {
  role: 'http-mget';
  target: Endpoint;
  format: 'ndjson' | 'msgpack';
  /** Keys 0..keyCount-1 of the value size's key space, all in one request. */
  keyCount: number;
  valueSize: number;
  /** Response bytes read per second; 0: never read a byte. */
  readBytesPerSec: number;
}

export interface HttpMgetResult {
  role: 'http-mget';
  format: 'ndjson' | 'msgpack';
  keys: number;
  readBytesPerSec: number;
  /** The response's status line, once read (null when nothing was read). */
  status: string | null;
  /** From the request's last byte to the first response byte read. */
  firstByteMs: number | null;
  bodyBytesRead: number;
  /** The whole chunked response arrived (its last chunk was read). */
  finished: boolean;
  /** The gateway closed the connection before the client did (seen as end of stream, or in the kernel's state). */
  serverClosed: boolean;
  /** The kernel's state of the socket when the client let go (null: gone, i.e. reset by the gateway). */
  tcpState: string | null;
  error?: string;
  seconds: number;
}

/** One bulk get over HTTP, its answer read at `readBytesPerSec`. */
export class HttpMget {
  private sock: Socket | null = null;
  private head: Buffer | null = Buffer.alloc(0);
  private status: string | null = null;
  private body = 0;
  private tail = Buffer.alloc(0);
  private sentAt = 0;
  private firstAt = 0;
  private serverClosed = false;
  private error: string | undefined;
  private ticker: NodeJS.Timeout | null = null;
  private budget = 0;
  private stopping = false;

  constructor(private readonly cfg: HttpMgetConfig) {}

  start(): Promise<Record<string, unknown>> {
    const { cfg } = this;
    const ks = KeySpace.forSize(cfg.keyCount, cfg.valueSize);
    let body: Buffer;
    if (cfg.format === 'ndjson') body = Buffer.from(ks.keyStrings.map((k) => JSON.stringify(k)).join('\n') + '\n');
    else {
      const w = new Writer(cfg.keyCount * 16 + 64);
      for (const k of ks.keys) str(w, k);
      body = w.take();
    }
    const type = cfg.format === 'ndjson' ? 'application/x-ndjson' : 'application/msgpack';
    return new Promise((resolve, reject) => {
      const sock = netConnect({ host: cfg.target.host, port: cfg.target.port });
      this.sock = sock;
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error('http-mget: no connection within 5 s'));
      }, 5000);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.write(
          `POST /v1/mget HTTP/1.1\r\nHost: ${cfg.target.host}:${cfg.target.port}\r\n${authHeader(cfg.target)}Content-Type: ${type}\r\n` +
            `Content-Length: ${body.length}\r\n\r\n`,
        );
        sock.write(body, () => {
          this.sentAt = nowMs();
          resolve({ keys: cfg.keyCount, bodyBytes: body.length, format: cfg.format });
        });
        if (cfg.readBytesPerSec > 0) this.ticker = setInterval(() => this.tick(), 20);
      });
      sock.on('error', (e) => {
        this.error ??= e.message;
      });
      sock.on('end', () => {
        if (!this.stopping) this.serverClosed = true;
      });
      sock.on('close', () => {
        if (!this.stopping) this.serverClosed = true;
      });
    });
  }

  /** Reads what this 20 ms slice of the byte rate allows (socket in paused mode: read() pulls on demand). */
  private tick(): void {
    const sock = this.sock;
    if (!sock) return;
    const slice = this.cfg.readBytesPerSec / 50;
    this.budget = Math.min(this.budget + slice, slice * 5);
    while (this.budget >= 1) {
      const avail = sock.readableLength;
      if (avail === 0) {
        sock.read(0);
        break;
      }
      const c = sock.read(Math.min(avail, Math.floor(this.budget))) as Buffer | null;
      if (c === null) break;
      this.budget -= c.length;
      this.consume(c);
    }
  }

  private consume(c: Buffer): void {
    if (!this.firstAt) this.firstAt = nowMs();
    let b = c;
    if (this.head) {
      this.head = Buffer.concat([this.head, c]);
      const end = this.head.indexOf(HS_END);
      if (end < 0) return;
      this.status = this.head.toString('latin1', 0, this.head.indexOf(13));
      b = this.head.subarray(end + 4);
      this.head = null;
    }
    this.body += b.length;
    this.tail = Buffer.concat([this.tail, b]).subarray(-7);
  }

  async stop(): Promise<HttpMgetResult> {
    this.stopping = true;
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    const seconds = this.sentAt ? (nowMs() - this.sentAt) / 1000 : 0;
    const port = this.sock?.localPort;
    const tcpState = port === undefined ? null : (tcpStates(this.cfg.target.port).get(port) ?? null);
    if (tcpState === null || tcpState === 'CLOSE_WAIT') this.serverClosed = true;
    this.sock?.destroy();
    this.sock = null;
    return {
      role: 'http-mget',
      format: this.cfg.format,
      keys: this.cfg.keyCount,
      readBytesPerSec: this.cfg.readBytesPerSec,
      status: this.status,
      firstByteMs: this.firstAt ? this.firstAt - this.sentAt : null,
      bodyBytesRead: this.body,
      finished: this.tail.toString('latin1').endsWith('\r\n0\r\n\r\n'),
      serverClosed: this.serverClosed,
      tcpState,
      error: this.error,
      seconds,
    };
  }
}

export interface NonReadersConfig {
  role: 'ws-nonreaders';
  target: Endpoint;
  conns: number;
  /** Each connection asks for this many values: keys (c * keysPerConn + j) % keyCount. */
  keysPerConn: number;
  keyCount: number;
  valueSize: number;
  connectConcurrency: number;
  /** All connections must be open by then; the rest count as failed. */
  connectTimeoutMs: number;
}

export interface NonReadersResult {
  role: 'ws-nonreaders';
  conns: number;
  connected: number;
  failed: number;
  firstError?: string;
  connectSeconds: number;
  requestsSent: number;
  /** Bytes of values asked for, over all connections. */
  valueBytesRequested: number;
  /** Sockets that reported an error or a close before the client let go of them. */
  lostEarly: number;
  /** The kernel's states of the sockets when the client let go; CLOSE_WAIT or `gone`: the gateway closed them. */
  tcpStates: Record<string, number>;
  /** Connections the gateway had closed (or reset) by then. */
  closedByGateway: number;
  heldSeconds: number;
}

/** WebSocket connections that each send one bulk get and then never read. */
export class NonReaders {
  private readonly socks: Socket[] = [];
  private readonly lost = new Set<Socket>();
  private stopping = false;
  private sentAt = 0;
  private result: Omit<NonReadersResult, 'lostEarly' | 'tcpStates' | 'closedByGateway' | 'heldSeconds'> | null = null;

  constructor(private readonly cfg: NonReadersConfig) {}

  private open(deadline: number): Promise<Socket> {
    const { target } = this.cfg;
    return new Promise((resolve, reject) => {
      const s = netConnect({ host: target.host, port: target.port });
      const timer = setTimeout(
        () => {
          s.destroy();
          reject(new Error('no upgrade before the deadline'));
        },
        Math.max(1, deadline - Date.now()),
      );
      s.once('connect', () => {
        s.write(
          `GET /v1/ws HTTP/1.1\r\nHost: ${target.host}:${target.port}\r\n${authHeader(target)}Upgrade: websocket\r\nConnection: Upgrade\r\n` +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
        );
      });
      s.once('data', (d: Buffer) => {
        clearTimeout(timer);
        s.pause(); // from now on, read nothing
        if (!d.toString('latin1', 0, 12).startsWith('HTTP/1.1 101')) {
          s.destroy();
          reject(new Error(`upgrade refused: ${d.toString('latin1', 0, d.indexOf(13))}`));
          return;
        }
        resolve(s);
      });
      s.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
        this.early(s);
      });
      s.on('close', () => {
        clearTimeout(timer);
        reject(new Error('closed before the upgrade'));
        this.early(s);
      });
    });
  }

  private early(s: Socket): void {
    if (!this.stopping && this.socks.includes(s)) this.lost.add(s);
  }

  async start(): Promise<Record<string, unknown>> {
    const cfg = this.cfg;
    const t0 = nowMs();
    const deadline = Date.now() + cfg.connectTimeoutMs;
    let next = 0;
    let failed = 0;
    let firstError: string | undefined;
    const lane = async (): Promise<void> => {
      while (next < cfg.conns && Date.now() < deadline) {
        next++;
        try {
          this.socks.push(await this.open(deadline));
        } catch (e) {
          failed++;
          firstError ??= (e as Error).message;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, cfg.connectConcurrency) }, lane));
    failed += cfg.conns - next;
    const connectSeconds = (nowMs() - t0) / 1000;
    const ks = KeySpace.forSize(cfg.keyCount, cfg.valueSize);
    const w = new Writer(1024);
    // every request goes out in the same turn: the gateway sees them as one burst
    this.socks.forEach((s, c) => {
      w.pos = 0;
      mapHeader(w, 3);
      str(w, F.id);
      uint(w, 1);
      str(w, F.op);
      str(w, F.mget);
      str(w, F.keys);
      arrayHeader(w, cfg.keysPerConn);
      for (let j = 0; j < cfg.keysPerConn; j++) str(w, ks.keys[(c * cfg.keysPerConn + j) % cfg.keyCount]);
      s.write(maskedFrame(w.buf, w.pos));
    });
    this.sentAt = nowMs();
    this.result = {
      role: 'ws-nonreaders',
      conns: cfg.conns,
      connected: this.socks.length,
      failed,
      firstError,
      connectSeconds,
      requestsSent: this.socks.length,
      valueBytesRequested: this.socks.length * cfg.keysPerConn * cfg.valueSize,
    };
    return { ...this.result };
  }

  async stop(): Promise<NonReadersResult> {
    this.stopping = true;
    const states = tcpStates(this.cfg.target.port);
    const tally: Record<string, number> = {};
    for (const s of this.socks) {
      const st = (s.localPort !== undefined && states.get(s.localPort)) || 'gone';
      tally[st] = (tally[st] ?? 0) + 1;
    }
    for (const s of this.socks) s.destroy();
    const heldSeconds = this.sentAt ? (nowMs() - this.sentAt) / 1000 : 0;
    this.socks.length = 0;
    const r = this.result ?? {
      role: 'ws-nonreaders' as const,
      conns: this.cfg.conns,
      connected: 0,
      failed: 0,
      connectSeconds: 0,
      requestsSent: 0,
      valueBytesRequested: 0,
    };
    return {
      ...r,
      lostEarly: this.lost.size,
      tcpStates: tally,
      closedByGateway: (tally.CLOSE_WAIT ?? 0) + (tally.gone ?? 0),
      heldSeconds,
    };
  }
}

/** One binary frame, masked with the all-zero key (as the load generator does). */
function maskedFrame(payload: Buffer, len: number): Buffer {
  const hl = len < 126 ? 2 : len < 0x10000 ? 4 : 10;
  const out = Buffer.alloc(hl + 4 + len);
  out[0] = 0x82;
  if (len < 126) out[1] = 0x80 | len;
  else if (len < 0x10000) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeUInt32BE(len, 6);
  }
  payload.copy(out, hl + 4, 0, len);
  return out;
}

export interface WsMgetConfig {
  role: 'ws-mget';
  target: Endpoint;
  keyCount: number;
  valueSize: number;
  keysPerRequest: number;
  /** Requests one after the other, each on a fresh connection, keys (a * keysPerRequest + j) % keyCount. */
  requests: number;
  /** Per request: past this it is abandoned and counted as not complete. */
  timeoutMs: number;
}

export interface WsMgetAttempt {
  keys: number;
  /** Items answered (value, miss or error) before the END or the end of the connection. */
  received: number;
  /** Items whose whole value arrived and matched what was written (known only when the END arrived). */
  ok: number;
  misses: number;
  badValues: number;
  errors: Record<string, number>;
  /** The request's END arrived. */
  complete: boolean;
  /** Why the connection ended early, e.g. "server closed the WebSocket (1008 SLOW_CONSUMER)". */
  closed?: string;
  timedOut: boolean;
  ms: number;
  /** Value bytes of the items received per second, MiB. */
  mibPerSec: number;
}

export interface WsMgetResult {
  role: 'ws-mget';
  valueSize: number;
  attempts: WsMgetAttempt[];
}

/** The Sink of one WsConn carrying one request at a time. */
class OneRequest implements Sink {
  ok = 0;
  misses = 0;
  badValues = 0;
  errors: Record<string, number> = {};
  closed: string | undefined;
  ended: number | null = null;
  onSettled: (() => void) | null = null;
  readonly framesPerWrite = 0;
  private readonly base = process.hrtime.bigint();

  constructor(readonly ks: KeySpace) {}

  now(): number {
    return Number(process.hrtime.bigint() - this.base);
  }
  done(_conn: Conn, _startNs: number, ok: number, now: number): void {
    this.ok += ok;
    this.ended = now;
    this.onSettled?.();
  }
  error(code: string, n = 1): void {
    this.errors[code] = (this.errors[code] ?? 0) + n;
  }
  miss(n: number): void {
    this.misses += n;
  }
  bad(n: number): void {
    this.badValues += n;
  }
  dirty(conn: Conn): void {
    setImmediate(() => conn.flush());
  }
  lost(_conn: Conn, why: string): void {
    this.closed = why;
    this.onSettled?.();
  }
}

/** Bulk gets of large values over WebSocket, read as fast as they come. */
export class WsMget {
  readonly finished: Promise<WsMgetResult>;
  private resolveFinished!: (r: WsMgetResult) => void;
  private readonly attempts: WsMgetAttempt[] = [];
  private stopped = false;
  private current: WsConn | null = null;
  private abort: (() => void) | null = null;

  constructor(private readonly cfg: WsMgetConfig) {
    this.finished = new Promise((r) => {
      this.resolveFinished = r;
    });
  }

  async start(): Promise<Record<string, unknown>> {
    void this.runAll();
    return { keysPerRequest: this.cfg.keysPerRequest, requests: this.cfg.requests };
  }

  private async runAll(): Promise<void> {
    const cfg = this.cfg;
    const ks = KeySpace.forSize(cfg.keyCount, cfg.valueSize);
    for (let a = 0; a < cfg.requests && !this.stopped; a++) {
      const sink = new OneRequest(ks);
      const conn = new WsConn(sink, cfg.target, '/v1/ws', undefined);
      this.current = conn;
      const idxs = Array.from({ length: cfg.keysPerRequest }, (_, j) => (a * cfg.keysPerRequest + j) % cfg.keyCount);
      let timedOut = false;
      let start = 0;
      try {
        await conn.connect();
        start = sink.now();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            timedOut = true;
            resolve();
          }, cfg.timeoutMs);
          sink.onSettled = () => {
            clearTimeout(timer);
            resolve();
          };
          this.abort = sink.onSettled;
          conn.send(ReqOp.Mget, 0, idxs, start);
        });
      } catch (e) {
        sink.closed ??= `connect failed: ${(e as Error).message}`;
      }
      const end = sink.ended ?? sink.now();
      conn.close();
      const ms = start ? (end - start) / 1e6 : 0;
      // WsConn reports the items still open when a connection dies as CONNECTION_LOST
      const received = sink.ended !== null ? idxs.length : idxs.length - (sink.errors.CONNECTION_LOST ?? 0);
      this.attempts.push({
        keys: idxs.length,
        received,
        ok: sink.ok,
        misses: sink.misses,
        badValues: sink.badValues,
        errors: sink.errors,
        complete: sink.ended !== null,
        closed: sink.closed,
        timedOut,
        ms,
        mibPerSec: ms > 0 ? (received * cfg.valueSize) / 1048576 / (ms / 1000) : 0,
      });
    }
    this.current = null;
    this.resolveFinished({ role: 'ws-mget', valueSize: cfg.valueSize, attempts: this.attempts });
  }

  async stop(): Promise<WsMgetResult> {
    this.stopped = true;
    this.current?.close();
    this.abort?.();
    await Promise.race([this.finished, new Promise((r) => setTimeout(r, 2000))]);
    return { role: 'ws-mget', valueSize: this.cfg.valueSize, attempts: this.attempts };
  }
}

export type FlowClientConfig = HttpMgetConfig | NonReadersConfig | WsMgetConfig;
export type FlowClientResult = HttpMgetResult | NonReadersResult | WsMgetResult;
