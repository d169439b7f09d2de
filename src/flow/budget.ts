/**
 * The gateway-wide budget for output held on clients' behalf (`limits.maxBufferedBytesTotal`). It counts
 * what that memory really is: the pool's 16 KiB buffers in use (frames waiting for a client, PUT bodies
 * being gathered), the bytes uWS holds for clients as last seen, the reservations made for gets in flight
 * (estimates of their answers), and keys parked until their client has room.
 *
 * Get windows ask `room()` before asking a shard for anything; when it says no they queue here and are
 * woken in arrival order as memory comes back. Nothing on the hot path allocates: counters are numbers.
 */
import { BUFFER_SIZE, BufferPool } from '../stream/buffer-pool';

/** Something that waits for budget: a client's get window. */
export interface BudgetWaiter {
  waitingForBudget: boolean;
  /** Issue what can be issued now; called when memory came back. */
  pump(): void;
}

export class MemoryBudget {
  /** Bytes reserved for gets in flight (each window's estimate per value). */
  reserved = 0;
  /** Key bytes parked in backlogs. */
  parked = 0;
  /** Bytes uWS holds for clients, as each connection last saw it. */
  transport = 0;
  /** Times a window had to wait for the global budget. */
  waits = 0;
  /** What an answer has cost lately, gateway-wide (0: none seen yet): new windows start from it. */
  sizeHint = 0;
  /** Answers dropped on arrival because they did not fit their client's window (fetched again later). */
  refetches = 0;
  private readonly waiters: BudgetWaiter[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly runWake = (): void => {
    this.timer = null;
    this.wake();
  };

  constructor(
    /** `limits.maxBufferedBytesTotal`; a reload may change it. */
    public limit: number,
    private readonly pool: BufferPool,
  ) {}

  get used(): number {
    return this.pool.inUse * BUFFER_SIZE + this.reserved + this.parked + this.transport;
  }

  /** Memory really held (without the reservations, which are estimates of answers not yet here). */
  get heldBytes(): number {
    return this.pool.inUse * BUFFER_SIZE + this.parked + this.transport;
  }

  get pressure(): number {
    return this.used / this.limit;
  }

  /**
   * `idle`: the asker holds nothing and has nothing in flight. Such a client may dip into a reserve of
   * an eighth of the budget, so one that reads always gets its next answer even while clients that do
   * not read hold the rest (until they are cut off as stalled); the reserve bounds what that costs.
   */
  room(n: number, idle = false): boolean {
    return this.used + n <= (idle ? this.limit + this.reserve : this.limit);
  }

  get reserve(): number {
    return this.limit >>> 3;
  }

  /** Queues a waiter; it is pumped once memory comes back. */
  wait(w: BudgetWaiter): void {
    if (w.waitingForBudget) return;
    w.waitingForBudget = true;
    this.waiters.push(w);
    this.waits++;
    // Memory comes back through many doors (pool releases, drains, settled gets); rather than hook each,
    // look again shortly while anyone waits.
    if (this.timer === null) this.timer = setTimeout(this.runWake, 5);
  }

  /**
   * Pumps waiters in arrival order while there is room. The first one that cannot go on (it queued
   * itself again) stops the round: first come, first served, and a wake costs one failed try at most.
   */
  wake(): void {
    let k = 0;
    const n = this.waiters.length;
    while (k < n && this.used < this.limit) {
      const w = this.waiters[k++];
      w.waitingForBudget = false;
      w.pump(); // may queue itself again, at the end
      if (w.waitingForBudget) break;
    }
    if (k > 0) this.waiters.splice(0, k);
    if (this.waiters.length > 0 && this.timer === null) this.timer = setTimeout(this.runWake, 5);
  }

  get waiting(): number {
    return this.waiters.length;
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  stats(): {
    limit: number;
    used: number;
    held: number;
    pressure: number;
    poolBytes: number;
    reserved: number;
    parked: number;
    transport: number;
    waiting: number;
    waits: number;
    refetches: number;
  } {
    return {
      limit: this.limit,
      used: this.used,
      held: this.heldBytes,
      pressure: Math.round(this.pressure * 1000) / 1000,
      poolBytes: this.pool.inUse * BUFFER_SIZE,
      reserved: this.reserved,
      parked: this.parked,
      transport: this.transport,
      waiting: this.waiters.length,
      waits: this.waits,
      refetches: this.refetches,
    };
  }
}
