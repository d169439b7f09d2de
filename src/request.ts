/**
 * One client request: a single-key op or a bulk op with many items. Batches report each item's outcome
 * here; the subclass (WebSocket, HTTP single, HTTP bulk) turns it into bytes for its client. The base
 * counts items so that the request finishes exactly once, after its last item and after the caller sealed
 * it (a streaming body may still be adding items while early ones complete).
 */
import type { ErrorCode } from './errors';

export abstract class Request {
  private pending = 0;
  private sealed = false;
  finished = false;

  /** A chunk of a hit; `offset + len === total` on the last one (a 0-byte value is one call with len 0). */
  protected abstract onValue(i: number, flags: number, total: number, offset: number, buf: Buffer, off: number, len: number): void;
  protected abstract onMiss(i: number): void;
  protected abstract onOk(i: number): void;
  protected abstract onError(i: number, code: ErrorCode, message?: string): void;
  protected abstract onFinish(): void;

  /** The item is on its way to a shard: the request will not finish before it settles. */
  submitted(): void {
    this.pending++;
  }

  get inFlight(): number {
    return this.pending;
  }

  value(i: number, flags: number, total: number, offset: number, buf: Buffer, off: number, len: number): void {
    this.onValue(i, flags, total, offset, buf, off, len);
    if (offset + len === total) this.settle();
  }

  miss(i: number): void {
    this.onMiss(i);
    this.settle();
  }

  ok(i: number): void {
    this.onOk(i);
    this.settle();
  }

  error(i: number, code: ErrorCode, message?: string): void {
    this.onError(i, code, message);
    this.settle();
  }

  /** An item that failed before it was submitted (bad key, too large): reported, never counted. */
  reject(i: number, code: ErrorCode, message?: string): void {
    this.onError(i, code, message);
  }

  /** Makes a finished request reusable (callers pool them). */
  protected reinit(): void {
    this.pending = 0;
    this.sealed = false;
    this.finished = false;
  }

  /** No more items will be added. */
  seal(): void {
    this.sealed = true;
    if (this.pending === 0) this.finish();
  }

  private settle(): void {
    if (--this.pending === 0 && this.sealed) this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.onFinish();
  }
}
