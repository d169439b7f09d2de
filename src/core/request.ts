/**
 * One client request: a single-key op or a bulk op with many items. Batches report each item's outcome
 * here; the subclass (WebSocket, HTTP single, HTTP bulk) turns it into bytes for its client. The base
 * counts items so that the request finishes exactly once, after its last item and after the caller sealed
 * it (a streaming body may still be adding items while early ones complete).
 *
 * An item is counted while it is in a shard's batch (`submitted`) and while it is parked in a get window
 * waiting for credit (`hold`/`unhold`); moving from one to the other always adds before it removes.
 *
 * Two guards keep a bug in one request from reaching anyone else:
 *  - one item, one settlement: each item index has a byte in `settled`; a second value end, miss, ok or
 *    error for it is ignored and counted (`requestFaults.doubleSettled`), so it can neither finish the
 *    request early nor drive `pending` below zero. A value refused for `redo` is not a settlement (the
 *    item comes back later).
 *  - a throwing handler: every call into the subclass runs inside a try/catch here, at the boundary
 *    where a batch hands a result over, so the throw never reaches the shard connection's read loop (it
 *    would reset the shard for every client). The request is marked broken: the item being delivered and
 *    every later one settle with INTERNAL (to this request only), and the throw is logged, rate-limited.
 *    A try/catch that does not throw costs nothing and allocates nothing.
 */
import type { ErrorCode } from './errors';
import { CODE_OUTCOME, Outcome, REQUESTS, type Tally } from './tally';

const INTERNAL_OUTCOME = CODE_OUTCOME.INTERNAL;

/** Process-wide counts of request bugs caught here (for /debug/stats and tests). */
export const requestFaults = { doubleSettled: 0, handlerThrew: 0 };

/** At most one log line per this many ms about throwing handlers; the rest are counted in it. */
const LOG_EVERY_MS = 10_000;
let lastLogAt = 0;
let unlogged = 0;

function logHandlerThrow(e: unknown): void {
  requestFaults.handlerThrew++;
  const now = Date.now();
  if (lastLogAt !== 0 && now - lastLogAt < LOG_EVERY_MS) {
    unlogged++;
    return;
  }
  lastLogAt = now;
  const more = unlogged > 0 ? ` (${unlogged} more since the last report)` : '';
  unlogged = 0;
  console.error(`kvgate: a request's result handler threw; that request fails with INTERNAL${more}:`, e);
}

const INTERNAL_MESSAGE = 'the gateway failed while answering this request';

export abstract class Request {
  private pending = 0;
  private sealed = false;
  finished = false;
  /** The client went away: writes not yet sent to a shard are dropped (see MutationBatch.prune). */
  abandoned = false;
  /** A handler threw: every item still to settle settles with INTERNAL. */
  private handlerFailed = false;
  /** settled[i] is 1 once item i settled; grown by doubling, cleared up to `settledHigh` on reinit. */
  private settled: Uint8Array | null = null;
  private settledHigh = 0;
  /** The gateway's tally (core/tally.ts) and this request's slice of it; null: not counted. */
  private tally: Float64Array | null = null;
  private tallyAt = 0;
  /** One item: the request is counted with that item's outcome. */
  private single = false;
  /** The outcome the request is counted with (-1: `ok`, or its single item's). */
  private requestOutcome = -1;
  private lastOutcome = -1;

  /** A chunk of a hit; `offset + len === total` on the last one (a 0-byte value is one call with len 0). */
  protected abstract onValue(
    i: number,
    flags: number,
    total: number,
    offset: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void;
  protected abstract onMiss(i: number): void;
  protected abstract onOk(i: number): void;
  protected abstract onError(i: number, code: ErrorCode, message?: string): void;
  protected abstract onFinish(): void;
  /** A value is about to arrive (`whole`: all of it in this call): false drops it (the batch then calls `redo`). */
  protected accepts(_i: number, _total: number, _whole: boolean): boolean {
    return true;
  }
  /** An item submitted to a shard settled (answered, failed, or dropped for `redo`). */
  protected onSettled(_i: number): void {}
  /** A dropped value's key, to be fetched again later (only called when `accepts` said no). */
  protected onRedo(_i: number, _key: Uint8Array, _off: number, _len: number): void {}

  /**
   * Counts this request and its items into `tally` at `at` (Tally.at(front, op)). `single`: a one-key
   * op, counted as a request with its item's outcome. Called by the front after each (re)init.
   */
  countInto(tally: Tally, at: number, single: boolean): void {
    this.tally = tally.counts;
    this.tallyAt = at;
    this.single = single;
  }

  /** The request failed as a whole with `code` (told to its client by the front): counted so. */
  countAs(code: ErrorCode): void {
    this.requestOutcome = CODE_OUTCOME[code];
  }

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

  /** True once a handler of this request threw (its items settle with INTERNAL). */
  get failed(): boolean {
    return this.handlerFailed;
  }

  /**
   * The client is gone (an HTTP abort, a closed socket): its writes still waiting in a batch are not
   * sent (they settle through `drop`, without output). Writes already sent are not undone; what is in
   * flight settles as usual and its output is dropped by the subclass.
   */
  abandon(): void {
    this.abandoned = true;
  }

  /**
   * Returns false, at offset 0 only, when the request will not take this value now (see `redo`). The
   * reply parser calls the last chunk (`offset + len === total`) only after the value's framing was
   * checked, so a value that completes here is the value memcached sent.
   */
  value(i: number, flags: number, total: number, offset: number, buf: Buffer, off: number, len: number): boolean {
    const last = offset + len === total;
    if (this.isSettled(i)) {
      if (last) requestFaults.doubleSettled++;
      return true;
    }
    if (this.handlerFailed) {
      if (last) this.settleInternal(i);
      return true;
    }
    try {
      if (offset === 0 && !this.accepts(i, total, len === total)) return false;
      this.onValue(i, flags, total, offset, buf, off, len);
    } catch (e) {
      this.threw(e);
      if (last) this.settleInternal(i);
      return true;
    }
    if (last) {
      this.tallyItem(Outcome.Hit);
      this.close(i);
    }
    return true;
  }

  /** The value of item `i` was refused by `accepts`: its key goes back to wait for credit. */
  redo(i: number, key: Uint8Array, off: number, len: number): void {
    if (this.isSettled(i)) {
      requestFaults.doubleSettled++;
      return;
    }
    if (!this.handlerFailed) {
      try {
        this.onRedo(i, key, off, len);
        this.onSettled(i);
        this.settle();
        return;
      } catch (e) {
        this.threw(e);
      }
    }
    // Not parked again: the item ends here.
    this.settleInternal(i);
  }

  miss(i: number): void {
    if (this.begin(i)) return;
    try {
      this.onMiss(i);
    } catch (e) {
      this.threw(e);
      this.internal(i);
    }
    // handlerFailed was false on entry (begin): set now, this call threw.
    this.tallyItem(this.handlerFailed ? INTERNAL_OUTCOME : Outcome.Miss);
    this.close(i);
  }

  ok(i: number): void {
    if (this.begin(i)) return;
    try {
      this.onOk(i);
    } catch (e) {
      this.threw(e);
      this.internal(i);
    }
    // handlerFailed was false on entry (begin): set now, this call threw.
    this.tallyItem(this.handlerFailed ? INTERNAL_OUTCOME : Outcome.Ok);
    this.close(i);
  }

  error(i: number, code: ErrorCode, message?: string): void {
    if (this.begin(i)) return;
    try {
      this.onError(i, code, message);
    } catch (e) {
      this.threw(e);
      this.internal(i);
    }
    // handlerFailed was false on entry (begin): set now, this call threw.
    this.tallyItem(this.handlerFailed ? INTERNAL_OUTCOME : CODE_OUTCOME[code]);
    this.close(i);
  }

  /** A write of an abandoned request, dropped before it was sent: settles with no output. */
  drop(i: number): void {
    if (this.isSettled(i)) {
      requestFaults.doubleSettled++;
      return;
    }
    this.tallyItem(Outcome.Dropped);
    this.close(i);
  }

  /** An item that failed before it was submitted (bad key, too large): reported, never counted. */
  reject(i: number, code: ErrorCode, message?: string): void {
    if (i < 0) this.requestOutcome = CODE_OUTCOME[code];
    else this.tallyItem(CODE_OUTCOME[code]);
    if (this.handlerFailed) return;
    try {
      this.onError(i, code, message);
    } catch (e) {
      this.threw(e);
    }
  }

  /** Makes a finished request reusable (callers pool them). */
  protected reinit(): void {
    this.pending = 0;
    this.sealed = false;
    this.finished = false;
    this.abandoned = false;
    this.handlerFailed = false;
    this.requestOutcome = -1;
    this.lastOutcome = -1;
    if (this.settled !== null && this.settledHigh > 0) this.settled.fill(0, 0, this.settledHigh);
    this.settledHigh = 0;
  }

  /** No more items will be added. */
  seal(): void {
    this.sealed = true;
    if (this.pending === 0) this.finish();
  }

  get isSealed(): boolean {
    return this.sealed;
  }

  /** True when the settlement of item `i` must be skipped: already settled, or sent to INTERNAL. */
  private begin(i: number): boolean {
    if (this.isSettled(i)) {
      requestFaults.doubleSettled++;
      return true;
    }
    if (this.handlerFailed) {
      this.settleInternal(i);
      return true;
    }
    return false;
  }

  private isSettled(i: number): boolean {
    const s = this.settled;
    return i >= 0 && s !== null && i < s.length && s[i] === 1;
  }

  private mark(i: number): void {
    if (i < 0) return;
    let s = this.settled;
    if (s === null || i >= s.length) {
      let size = s === null ? 64 : s.length * 2;
      while (size <= i) size *= 2;
      const next = new Uint8Array(size);
      if (s !== null) next.set(s.subarray(0, this.settledHigh));
      this.settled = s = next;
    }
    s[i] = 1;
    if (i >= this.settledHigh) this.settledHigh = i + 1;
  }

  /** Item `i` settled: marked, reported to the subclass's accounting, and counted off. */
  private close(i: number): void {
    this.mark(i);
    try {
      this.onSettled(i);
    } catch (e) {
      this.threw(e);
    }
    this.settle();
  }

  private settleInternal(i: number): void {
    this.tallyItem(INTERNAL_OUTCOME);
    this.internal(i);
    this.close(i);
  }

  private internal(i: number): void {
    try {
      this.onError(i, 'INTERNAL', INTERNAL_MESSAGE);
    } catch {
      /* the handler is broken: nothing more to tell */
    }
  }

  private threw(e: unknown): void {
    if (!this.handlerFailed) {
      this.handlerFailed = true;
      logHandlerThrow(e);
    } else {
      requestFaults.handlerThrew++;
    }
  }

  private settle(): void {
    if (--this.pending === 0 && this.sealed) this.finish();
  }

  /** One item outcome (an index into core/tally.ts's outcomes). */
  private tallyItem(o: number): void {
    const t = this.tally;
    if (t === null) return;
    t[this.tallyAt + o]++;
    this.lastOutcome = o;
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    const t = this.tally;
    if (t !== null) {
      const o =
        this.requestOutcome >= 0
          ? this.requestOutcome
          : this.single && this.lastOutcome >= 0
            ? this.lastOutcome
            : Outcome.Ok;
      t[REQUESTS + this.tallyAt + o]++;
    }
    try {
      this.onFinish();
    } catch (e) {
      this.threw(e);
    }
  }
}
