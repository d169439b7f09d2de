/**
 * Credit-based fetching: one client's gets are handed to the shards only as fast as the client takes
 * their answers. A window per client (a WebSocket session, an HTTP bulk response) issues a get when
 *
 *     held output + reserved for gets in flight + estimate  <=  limits.maxBufferedBytesPerConnection
 *
 * and the gateway-wide budget has room; otherwise the key is parked (copied) in the window's backlog
 * and issued when the client drains, in arrival order. The estimate is learnt from the answers: it jumps
 * up to the largest value seen and decays towards smaller ones, so the first answers of a bulk read of
 * large values may over-ask once, never again.
 *
 * What an estimate gets wrong is caught when the answer arrives: a value that does not fit (held output
 * + its size over the window, or over the global budget) is not buffered but dropped and its key parked
 * again (a get is idempotent, so fetching it again later is safe). A value larger than the whole window
 * is taken only when nothing else is held for the client, and then streams out in 16 KiB frames as the
 * client reads. So a client holds at most max(window, largest value) of output, whatever it asks for, and
 * a client that stops reading makes the gateway stop asking the shards for it. Shard sockets are never
 * paused for a client, so no one else waits.
 */
import type { Request } from '../core/request';
import type { Router } from '../core/router';
import type { BudgetWaiter, MemoryBudget } from './budget';
import type { OutputMeter } from '../stream/output-meter';
import { KeyBacklog } from './key-backlog';

/** Bytes an answer costs besides its value (entry header, NDJSON wrapping, roughly). */
const ENTRY_OVERHEAD = 32;
const MIN_EST = 64;
const FIRST_EST = 32 * 1024;
/**
 * Gets in flight are also capped by count, the way TCP's congestion window is: it starts at FIRST_CAP,
 * grows by one per answer taken and halves per answer dropped. Sizes can change without warning (a
 * client that read small values asks for large ones); the byte estimate alone would then ask for
 * thousands of values that cannot be taken. The cap bounds what a wrong estimate costs the shards.
 */
const FIRST_CAP = 128;
const MIN_CAP = 8;
const MAX_CAP = 1 << 16;

export class GetWindow implements BudgetWaiter {
  waitingForBudget = false;
  /** Gets issued whose answer has not settled. */
  inflight = 0;
  private cap = FIRST_CAP;
  private reservedBytes = 0;
  private est: number;
  private readonly backlog = new KeyBacklog();
  /** Values accepted that are still arriving in parts (at most about one per shard). */
  private arriving = 0;
  private readonly arrReq: Request[] = [];
  private readonly arrIdx: number[] = [];
  private readonly arrSize: number[] = [];
  private cancelled = false;
  private pumping = false;
  /** Called after the backlog shrank (an HTTP body paused for it may read on). */
  onBacklogShrunk: (() => void) | null = null;

  constructor(
    private readonly router: Router,
    private readonly budget: MemoryBudget,
    private readonly out: OutputMeter,
    readonly limit: number,
    /** Output bytes per value byte: 1 for msgpack; 4/3 for NDJSON, whose binary values go as base64. */
    private readonly expansion = 1,
  ) {
    // A new client starts from what answers have cost lately, gateway-wide: a first bulk read of large
    // values then asks for about what fits, and one of small values for all it can, in one round.
    this.est = budget.sizeHint > 0 ? budget.sizeHint : FIRST_EST;
  }

  get parked(): number {
    return this.backlog.size;
  }

  get parkedBytes(): number {
    return this.backlog.bytes;
  }

  /** A get item: issued now if the window has room and nothing is parked ahead of it, else parked. */
  get(req: Request, i: number, key: Uint8Array, off: number, len: number, wait: number): void {
    if (this.cancelled) return;
    if (this.backlog.size === 0 && this.hasRoom()) this.issue(req, i, key, off, len, wait);
    else this.park(req, i, key, off, len, wait);
  }

  /**
   * A value is arriving (its first byte): may it be buffered for the client? Also learns its size.
   * False: the caller drops it and calls `requeue`.
   */
  accepts(req: Request, i: number, total: number, whole: boolean): boolean {
    const size = Math.ceil(total * this.expansion) + ENTRY_OVERHEAD;
    this.learn(size);
    if (this.cancelled) return true; // the output side drops it anyway
    const held = this.out.heldBytes() + this.arriving;
    const mine = this.inflight > 0 ? this.reservedBytes / this.inflight : 0;
    if (!this.budget.room(size - mine, held === 0 && this.inflight <= 1)) {
      this.cap = Math.max(MIN_CAP, this.cap >> 1);
      return false;
    }
    if (held !== 0 && held + size > this.limit) {
      this.cap = Math.max(MIN_CAP, this.cap >> 1);
      return false;
    }
    if (this.cap < MAX_CAP) this.cap++;
    if (!whole) {
      // It comes in several reads, and other shards' values may start meanwhile: count all of it now.
      this.arriving += size;
      this.arrReq.push(req);
      this.arrIdx.push(i);
      this.arrSize.push(size);
    }
    return true;
  }

  /** Item `i` of `req` settled: if its value was arriving in parts, it no longer is. */
  private arrived(req: Request, i: number): void {
    const n = this.arrReq.length;
    for (let k = 0; k < n; k++) {
      if (this.arrReq[k] === req && this.arrIdx[k] === i) {
        this.arriving -= this.arrSize[k];
        this.arrReq[k] = this.arrReq[n - 1];
        this.arrIdx[k] = this.arrIdx[n - 1];
        this.arrSize[k] = this.arrSize[n - 1];
        this.arrReq.length = this.arrIdx.length = this.arrSize.length = n - 1;
        return;
      }
    }
  }

  /** A miss or an error: an answer of almost nothing. */
  learnSmall(): void {
    this.learn(MIN_EST);
  }

  /** An issued get settled (value complete, miss, error, or dropped to be fetched again). */
  settled(req: Request, i: number): void {
    if (this.arrReq.length > 0) this.arrived(req, i);
    const r = this.inflight <= 1 ? this.reservedBytes : Math.floor(this.reservedBytes / this.inflight);
    this.inflight--;
    this.reservedBytes -= r;
    this.budget.reserved -= r;
    if (this.backlog.size > 0) this.pump();
    else if (this.budget.waiting > 0) this.budget.wake();
  }

  /** An arriving value did not fit: park its key again (the caller then settles the old submission). */
  requeue(req: Request, i: number, key: Uint8Array, off: number, len: number): void {
    this.budget.refetches++;
    this.park(req, i, key, off, len, 0);
  }

  /** Issues parked gets while there is room. Called when the client drained and when gets settle. */
  pump(): void {
    if (this.pumping || this.cancelled) return;
    this.pumping = true;
    const b = this.backlog;
    const before = b.size;
    while (b.size > 0 && this.hasRoom()) {
      const req = b.req;
      this.budget.parked -= b.keyLen;
      this.issue(req, b.item, b.keyBuf, b.keyOff, b.keyLen, b.wait);
      b.shift();
      req.unhold(); // after issue(): the request never sees zero pending in between
    }
    this.pumping = false;
    if (b.size < before) this.onBacklogShrunk?.();
  }

  /**
   * The client is gone: nothing parked is fetched, ever. Gets already in a shard's batch settle as they
   * come (their answers are dropped by the output side).
   */
  cancel(): void {
    this.cancelled = true;
    this.dropParked(null);
  }

  /** Gives every parked get this error now (shutdown: what was not fetched by the deadline). */
  failParked(code: 'SHUTTING_DOWN'): void {
    this.dropParked(code);
  }

  private dropParked(code: 'SHUTTING_DOWN' | null): void {
    const b = this.backlog;
    while (b.size > 0) {
      const req = b.req;
      this.budget.parked -= b.keyLen;
      if (code !== null) req.reject(b.item, code);
      b.shift();
      req.unhold();
    }
  }

  private hasRoom(): boolean {
    const est = this.est;
    const held = this.out.heldBytes() + this.arriving;
    const idle = this.inflight === 0 && held === 0;
    if (!idle && (this.inflight >= this.cap || held + this.reservedBytes + est > this.limit)) return false;
    if (!this.budget.room(est, idle)) {
      this.budget.wait(this);
      return false;
    }
    return true;
  }

  private issue(req: Request, i: number, key: Uint8Array, off: number, len: number, wait: number): void {
    if (!this.router.get(req, i, key, off, len, wait)) return; // rejected (bad key): already answered
    const est = this.est;
    this.inflight++;
    this.reservedBytes += est;
    this.budget.reserved += est;
  }

  private park(req: Request, i: number, key: Uint8Array, off: number, len: number, wait: number): void {
    req.hold();
    this.backlog.push(req, i, key, off, len, wait);
    this.budget.parked += len;
  }

  private learn(size: number): void {
    this.est = decayedMax(this.est, size, 3);
    // The gateway-wide hint forgets more slowly (1/64 of the gap per answer), so a stretch of small
    // answers does not make the next client's first bulk read of large values over-ask.
    this.budget.sizeHint = decayedMax(this.budget.sizeHint, size, 6);
  }
}

/** Up at once to a larger size, down by 2^-shift of the gap towards a smaller one. */
function decayedMax(e: number, size: number, shift: number): number {
  if (size >= e) return size;
  const next = e - ((e - size) >> shift);
  return next < MIN_EST ? MIN_EST : next;
}
