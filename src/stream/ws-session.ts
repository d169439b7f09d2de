/**
 * Output side of one WebSocket connection. Frames go to uWS while its own buffer stays under HIGH_WATER;
 * past that they wait here, in pool buffers, until `drain`. What is held here is bounded by the client's
 * get window (src/flow/get-window.ts, told through `onDrained`), which stops asking the shards for this
 * client while it does not read;
 * only output no window governs (errors, acks of writes, ENDs) can pile past it, and a client that lets
 * that pass `hardCap` is disconnected (1008 SLOW_CONSUMER).
 *
 * The bytes uWS holds are read after each send and drain and counted in the global budget, so the
 * budget sees all the memory held for clients, not only ours.
 */
import type { WebSocket } from '../uws';
import { BufferPool, viewOf } from './buffer-pool';
import { EntryWriter } from './entry-writer';
import type { OutputMeter, TransportTally } from './output-meter';

/** Bytes uWS may hold before frames wait here instead (keeps uWS's own copy of the output small). */
export const HIGH_WATER = 64 * 1024;

export const enum CloseCode {
  GoingAway = 1001,
  PolicyViolation = 1008,
  MessageTooBig = 1009,
  /** The connection's credential expired and no `auth` message replaced it (docs/PROTOCOL.md). */
  AuthExpired = 4001,
  /** A reload changed the credentials and this connection's is no longer accepted (docs/PROTOCOL.md). */
  AuthRevoked = 4003,
}

export class WsSession extends EntryWriter implements OutputMeter {
  ws: WebSocket<unknown> | null = null;
  /** Requests in flight. */
  inflight = 0;
  private readonly queue: Buffer[] = [];
  private readonly queueLens: number[] = [];
  private queuedBytes = 0;
  private transportSeen = 0;
  private sendBuf: Buffer | null = null;
  private sendLen = 0;
  private readonly corkedSend = (): void => this.sendNow();
  framesSent = 0;
  private gone = false;
  private drains = 0;
  private drainsSeen = 0;
  private stalledLooks = 0;
  /** Set when the gateway drains: the connection is closed with 1001 once its answers are out. */
  closeWhenIdle = false;
  /** The client took some output: its window may ask for more. */
  onDrained: (() => void) | null = null;
  /** Called once when the socket is gone: its window fetches nothing more. */
  onGone: (() => void) | null = null;

  constructor(
    pool: BufferPool,
    private readonly budget: TransportTally,
    private readonly hardCap: number,
  ) {
    super(pool);
  }

  /** Frames waiting here for uWS to drain (tests and stats look; the gateway does not). */
  get queuedFrames(): number {
    return this.queue.length;
  }

  /** What uWS held for this client when last looked at. */
  get transportBytes(): number {
    return this.transportSeen;
  }

  /** Drain events seen from uWS. */
  get drainEvents(): number {
    return this.drains;
  }

  isClosed(): boolean {
    return this.ws === null;
  }

  heldBytes(): number {
    return this.queuedBytes + this.len + this.transportSeen;
  }

  protected ship(buf: Buffer, len: number): void {
    const ws = this.ws;
    if (ws === null) {
      this.pool.release(buf);
      return;
    }
    if (this.queue.length === 0 && this.refreshTransport(ws) < HIGH_WATER) {
      this.sendBuf = buf;
      this.sendLen = len;
      ws.cork(this.corkedSend);
      return;
    }
    this.queue.push(buf);
    this.queueLens.push(len);
    this.queuedBytes += len;
    if (this.heldBytes() > this.hardCap) this.kick();
  }

  private sendNow(): void {
    const buf = this.sendBuf!,
      len = this.sendLen;
    this.sendBuf = null;
    const ws = this.ws;
    if (ws !== null) {
      // uWS copies the bytes (or writes them) before returning, so the buffer is free again at once.
      const r = ws.send(viewOf(buf, len), true);
      this.framesSent++;
      if (r === 2)
        this.kick(); // dropped: the stream has a hole, so the connection cannot go on
      else if (r === 0) this.refreshTransport(ws);
    }
    this.pool.release(buf);
  }

  private refreshTransport(ws: WebSocket<unknown>): number {
    const t = ws.getBufferedAmount();
    this.budget.transport += t - this.transportSeen;
    this.transportSeen = t;
    return t;
  }

  /**
   * The gateway's watchdog looks once a second: true when output has waited for this client through
   * `looks` looks in a row without the client taking any of it (no drain event).
   */
  stalled(looks: number): boolean {
    if (this.queue.length === 0 && this.transportSeen === 0) {
      this.stalledLooks = 0;
      return false;
    }
    if (this.drains !== this.drainsSeen) {
      this.drainsSeen = this.drains;
      this.stalledLooks = 0;
      return false;
    }
    return ++this.stalledLooks >= looks;
  }

  /** Cut off: the client let its output wait too long (or past hardCap). */
  kick(): void {
    this.end(CloseCode.PolicyViolation, 'SLOW_CONSUMER');
  }

  /** uWS drained (part of) its buffer: send what waited here, then let the window ask for more. */
  drain(): void {
    const ws = this.ws;
    if (ws === null) return;
    this.drains++;
    while (this.queue.length > 0 && this.ws !== null && this.refreshTransport(ws) < HIGH_WATER) {
      this.sendBuf = this.queue.shift()!;
      this.sendLen = this.queueLens.shift()!;
      this.queuedBytes -= this.sendLen;
      ws.cork(this.corkedSend);
    }
    if (this.ws === null) return;
    if (this.queue.length === 0) this.refreshTransport(ws);
    this.onDrained?.();
    if (this.closeWhenIdle) this.closeIfIdle();
  }

  /** Draining: closes with 1001 once nothing is in flight and every answer has left. */
  closeIfIdle(): boolean {
    const ws = this.ws;
    if (ws === null) return true;
    if (this.inflight > 0 || this.queue.length > 0 || this.len > 0) return false;
    this.end(CloseCode.GoingAway, 'SHUTTING_DOWN');
    return true;
  }

  /** Sends a close frame (after what uWS holds) and forgets the socket. */
  end(code: CloseCode, reason: string): void {
    const ws = this.ws;
    if (ws === null) return;
    this.closed();
    ws.end(code, reason);
  }

  /** The socket is gone: drop everything held for it, and fetch nothing more for it. */
  closed(): void {
    if (this.gone) return;
    this.gone = true;
    this.ws = null;
    for (const b of this.queue) this.pool.release(b);
    this.queue.length = 0;
    this.queueLens.length = 0;
    this.queuedBytes = 0;
    this.budget.transport -= this.transportSeen;
    this.transportSeen = 0;
    this.discard();
    const gone = this.onGone;
    this.onGone = null;
    this.onDrained = null;
    gone?.();
  }
}
