/**
 * One client request: a single-key op or a bulk op with many items. Batches report each item's outcome
 * here; the subclass (WebSocket, HTTP single, HTTP bulk) turns it into bytes for its client. The base
 * counts items so that the request finishes exactly once, after its last item and after the caller sealed
 * it (a streaming body may still be adding items while early ones complete).
 *
 * An item is counted while it is in a shard's batch (`submitted`) and while it is parked in a get window
 * waiting for credit (`hold`/`unhold`); moving from one to the other always adds before it removes.
 */
import type { ErrorCode } from './errors';

export abstract class Request {
  private pending = 0;
  private sealed = false;
  finished = false;
  abandoned = false;

  /** A chunk of a hit; `offset + len === total` on the last one (a 0-byte value is one call with len 0). */
  protected abstract onValue(i: number, flags: number, total: number, offset: number, buf: Buffer, off: number, len: number): void;
  protected abstract onMiss(i: number): void;
  protected abstract onOk(i: number): void;
  protected abstract onError(i: number, code: ErrorCode, message?: string): void;
  protected abstract onFinish(): void;
  /** A value is about to arrive (`whole`: all of it in this call): false drops it (the batch then calls `redo`). */
  protected accepts(_i: number, _total: number, _whole: boolean): boolean { return true; }
  /** An item submitted to a shard settled (answered, failed, or dropped for `redo`). */
  protected onSettled(_i: number): void {}
  /** A dropped value's key, to be fetched again later (only called when `accepts` said no). */
  protected onRedo(_i: number, _key: Uint8Array, _off: number, _len: number): void {}

  /** The item is on its way to a shard: the request will not finish before it settles. */
  submitted(): void {
    this.pending++;
  }

  /** The item is parked outside any batch (waiting for credit). */
  hold(): void {
    this.pending++;
  }

  /** A parked item left its backlog (issued, rejected or dropped). */
  unhold(): void {
    this.settle();
  }

  get inFlight(): number {
    return this.pending;
  }

  /** Returns false, at offset 0 only, when the request will not take this value now (see `redo`). */
  value(i: number, flags: number, total: number, offset: number, buf: Buffer, off: number, len: number): boolean {
    if (offset === 0 && !this.accepts(i, total, len === total)) return false;
    this.onValue(i, flags, total, offset, buf, off, len);
    if (offset + len === total) { this.onSettled(i); this.settle(); }
    return true;
  }

  /** The value of item `i` was refused by `accepts`: its key goes back to wait for credit. */
  redo(i: number, key: Uint8Array, off: number, len: number): void {
    this.onRedo(i, key, off, len);
    this.onSettled(i);
    this.settle();
  }

  miss(i: number): void {
    this.onMiss(i);
    this.onSettled(i);
    this.settle();
  }

  ok(i: number): void {
    this.onOk(i);
    this.onSettled(i);
    this.settle();
  }

  error(i: number, code: ErrorCode, message?: string): void {
    this.onError(i, code, message);
    this.onSettled(i);
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

  /** Stub (the backend helper owns the real one): ops of an abandoned request not yet sent are not sent. */
  abandon(): void {
    this.abandoned = true;
  }

  /** No more items will be added. */
  seal(): void {
    this.sealed = true;
    if (this.pending === 0) this.finish();
  }

  get isSealed(): boolean {
    return this.sealed;
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
