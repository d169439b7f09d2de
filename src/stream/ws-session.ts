/**
 * Output side of one WebSocket connection. Frames go to uWS while its own buffer stays under HIGH_WATER;
 * past that they wait here, in pool buffers, until `drain`. A client that lets more than its budget pile
 * up is disconnected (1008 SLOW_CONSUMER): one slow reader must not hold unbounded memory or anyone else.
 */
import type { WebSocket } from '../uws';
import { pool, viewOf } from './buffer-pool';
import { EntryWriter } from './entry-writer';

const HIGH_WATER = 256 * 1024;

export class WsSession extends EntryWriter {
  ws: WebSocket<unknown> | null = null;
  inflight = 0;
  private readonly queue: Buffer[] = [];
  private readonly queueLens: number[] = [];
  private queuedBytes = 0;
  private sendBuf: Buffer | null = null;
  private sendLen = 0;
  private readonly corkedSend = (): void => this.sendNow();
  framesSent = 0;

  constructor(private readonly maxBuffered: number) {
    super();
  }

  isClosed(): boolean {
    return this.ws === null;
  }

  protected ship(buf: Buffer, len: number): void {
    const ws = this.ws;
    if (ws === null) { pool.release(buf); return; }
    if (this.queue.length === 0 && ws.getBufferedAmount() < HIGH_WATER) {
      this.sendBuf = buf;
      this.sendLen = len;
      ws.cork(this.corkedSend);
      return;
    }
    this.queue.push(buf);
    this.queueLens.push(len);
    this.queuedBytes += len;
    if (this.queuedBytes + ws.getBufferedAmount() > this.maxBuffered) this.kick();
  }

  private sendNow(): void {
    const buf = this.sendBuf!, len = this.sendLen;
    this.sendBuf = null;
    const ws = this.ws;
    if (ws !== null) {
      // uWS copies the bytes (or writes them) before returning, so the buffer is free again at once.
      const r = ws.send(viewOf(buf, len), true);
      this.framesSent++;
      if (r === 2) this.kick(); // dropped: the stream has a hole, so the connection cannot go on
    }
    pool.release(buf);
  }

  /** uWS drained its buffer: send what waited here. */
  drain(): void {
    const ws = this.ws;
    if (ws === null) return;
    while (this.queue.length > 0 && this.ws !== null && ws.getBufferedAmount() < HIGH_WATER) {
      this.sendBuf = this.queue.shift()!;
      this.sendLen = this.queueLens.shift()!;
      this.queuedBytes -= this.sendLen;
      ws.cork(this.corkedSend);
    }
  }

  private kick(): void {
    const ws = this.ws;
    if (ws === null) return;
    this.closed();
    ws.end(1008, 'SLOW_CONSUMER');
  }

  /** The socket is gone: drop everything held for it. */
  closed(): void {
    this.ws = null;
    for (const b of this.queue) pool.release(b);
    this.queue.length = 0;
    this.queueLens.length = 0;
    this.queuedBytes = 0;
    this.discard();
  }
}
