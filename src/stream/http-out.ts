/**
 * Output side of one HTTP response. Two ways out:
 * - `Sized`: a single value with a known length, sent with tryEnd so the response carries a
 *   Content-Length. What uWS could not take is copied into pool buffers and resent from onWritable.
 * - `Chunked`: a bulk response of unknown length, sent with write(). uWS keeps every byte write() was given,
 *   so here backpressure only tells the producer to stop reading the request body (`onBackpressure`).
 * Every write happens inside cork, since it usually runs in a shard's socket callback.
 */
import { errorBody, ErrorCode, ErrorTable } from '../errors';
import type { HttpResponse } from '../uws';
import { BUFFER_SIZE, pool } from './buffer-pool';

export class HttpOut {
  aborted = false;
  ended = false;
  private headersSent = false;
  private total = 0;
  // Sized mode: bytes uWS has not taken yet, in pool buffers.
  private readonly pending: Buffer[] = [];
  private readonly pendingLens: number[] = [];
  private pendingHead = 0;
  backpressured = false;
  onWritableAgain: (() => void) | null = null;

  constructor(readonly res: HttpResponse) {
    res.onAborted(() => {
      this.aborted = true;
      this.releasePending();
    });
  }

  get done(): boolean {
    return this.aborted || this.ended;
  }

  /** A complete answer that is not a stream (errors, 204s). */
  simple(status: string, body?: string, contentType = 'application/json'): void {
    if (this.done) return;
    this.ended = true;
    if (this.headersSent) {
      // A 200 with its Content-Length is already on the wire and the value broke off: the only honest
      // signal left is to cut the connection, so the client sees a short body, never a wrong one.
      this.releasePending();
      this.res.close();
      return;
    }
    this.res.cork(() => {
      this.res.writeStatus(status);
      if (body !== undefined) this.res.writeHeader('content-type', contentType);
      this.res.end(body);
    });
  }

  error(code: ErrorCode, message?: string): void {
    const t = ErrorTable[code];
    this.simple(`${t.status}`, errorBody(code, message));
  }

  /** Sized mode: the first call sends the status line and headers; chunks must add up to `total`. */
  sized(total: number, flags: number, buf: Buffer, off: number, len: number): void {
    if (this.done) return;
    this.res.cork(() => {
      if (!this.headersSent) {
        this.headersSent = true;
        this.total = total;
        this.res.writeStatus('200 OK');
        this.res.writeHeader('content-type', 'application/octet-stream');
        this.res.writeHeader('x-kv-flags', String(flags));
      }
      if (this.pending.length > 0) return this.hold(buf, off, len);
      const before = this.res.getWriteOffset();
      const [ok, done] = this.res.tryEnd(new Uint8Array(buf.buffer, buf.byteOffset + off, len), total);
      if (done) { this.ended = true; return; }
      if (!ok) {
        const taken = this.res.getWriteOffset() - before;
        this.hold(buf, off + taken, len - taken);
        this.res.onWritable(() => this.resumeSized());
      }
    });
  }

  private hold(buf: Buffer, off: number, len: number): void {
    while (len > 0) {
      let last = this.pending.length - 1;
      if (last < 0 || this.pendingLens[last] === BUFFER_SIZE) {
        this.pending.push(pool.acquire());
        this.pendingLens.push(0);
        last++;
      }
      const room = BUFFER_SIZE - this.pendingLens[last];
      const k = len < room ? len : room;
      buf.copy(this.pending[last], this.pendingLens[last], off, off + k);
      this.pendingLens[last] += k;
      off += k;
      len -= k;
    }
  }

  /** onWritable: send held bytes from where uWS stopped. Returning false keeps the handler. */
  private resumeSized(): boolean {
    if (this.done) return true;
    while (this.pending.length > 0) {
      const b = this.pending[0];
      const end = this.pendingLens[0];
      const before = this.res.getWriteOffset();
      const [ok, done] = this.res.tryEnd(new Uint8Array(b.buffer, b.byteOffset + this.pendingHead, end - this.pendingHead), this.total);
      if (done) { this.ended = true; this.releasePending(); return true; }
      if (!ok) { this.pendingHead += this.res.getWriteOffset() - before; return false; }
      pool.release(this.pending.shift()!);
      this.pendingLens.shift();
      this.pendingHead = 0;
    }
    return true;
  }

  /** Chunked mode. */
  chunk(status: string, contentType: string, buf: Uint8Array, len: number): void {
    if (this.done) return;
    this.res.cork(() => {
      if (!this.headersSent) {
        this.headersSent = true;
        this.res.writeStatus(status);
        this.res.writeHeader('content-type', contentType);
      }
      if (!this.res.write(new Uint8Array(buf.buffer, buf.byteOffset, len)) && !this.backpressured) {
        this.backpressured = true;
        this.res.onWritable(() => {
          this.backpressured = false;
          this.onWritableAgain?.();
          return true;
        });
      }
    });
  }

  get started(): boolean {
    return this.headersSent;
  }

  endChunked(): void {
    if (this.done) return;
    this.ended = true;
    this.res.cork(() => this.res.end());
  }

  private releasePending(): void {
    for (const b of this.pending) pool.release(b);
    this.pending.length = 0;
    this.pendingLens.length = 0;
  }
}
