/**
 * Collects the ops that arrive before a flush into batches per shard and decides when they leave: the
 * timing every backend shares. It talks to Shards only (core/backend.ts): a shard builds its own batches
 * (newGets/newMuts, in its own wire format), says which sets it can store (admitSet) and writes a flush
 * (send); how a batch is written and read back is the backend's. One Coalescer per pool. Each
 * shard has two lanes, each with its own get batch, write batch and deadline, so a `wait` hint holds only
 * the items of the requests that sent it (one client hinting 50 ms must not slow everyone's gets):
 *  - the immediate lane takes ops hinting at most batch.windowMs: it leaves at the end of the event-loop
 *    turn (setImmediate, after every socket read of this turn was handled), or windowMs after its last op
 *    when a window is set, never later than maxWaitMs after its first op;
 *  - the held lane takes ops hinting longer: it leaves `wait` after its first op (a longer hint extends
 *    it), never later than maxWaitMs after its first op.
 * A lane leaves at once when one of its batches hits its op or byte cap; the other lane stays. A shard that
 * is down fails its items at flush time, so callers hear SHARD_DOWN within one turn.
 *
 * Ordering a client may rely on (docs/PROTOCOL.md), per shard, so per key:
 *  - sets and deletes are written in arrival order, hinted or not. An un-hinted write arriving while the
 *    held lane has writes sends both lanes' writes at once (immediate lane first) before joining a new
 *    batch, so a hinted write may leave before its hint ran out, never after a later write;
 *  - whenever the held lane leaves, the immediate lane's writes go just ahead of it, so a get sees every
 *    write that arrived before it, except that an un-hinted get does not see an earlier hinted write that
 *    is still held;
 *  - in one flush writes go before gets: a get may also see a write that arrived after it in the same flush
 *    (a held get, any write that arrived while it was held).
 * Both rules rest on one invariant: while both lanes of a shard hold writes, every write in the immediate
 * lane arrived before every write in the held lane.
 */
import { performance } from 'node:perf_hooks';
import type { GetOps, MutOps, Ops, Shard, ShardStats } from './backend';
import { Histogram, KEY_COUNT_BUCKETS, LATENCY_BUCKETS } from './histogram';
import type { Request } from './request';

export interface BatchOptions {
  windowMs: number;
  maxWaitMs: number;
  maxOps: number;
  maxBytes: number;
}

class Lane {
  get: GetOps | null = null;
  mut: MutOps | null = null;
  /** When the lane must leave (ms, Date.now clock); 0 = end of this turn. */
  deadline = 0;
  startedAt = 0;
  scheduled = false;
  /** Client ops in the lane since it last left, and when the first came (performance.now: once per flush). */
  ops = 0;
  firstHr = 0;
}

class ShardQueue {
  /** Ops hinting at most windowMs. */
  readonly now = new Lane();
  /** Ops hinting longer than windowMs. */
  readonly held = new Lane();
  readonly freeGets: GetOps[] = [];
  readonly freeMuts: MutOps[] = [];
  flushes = 0;
  cuts = 0;
  constructor(readonly shard: Shard) {}
}

export interface CoalescerStats extends ShardStats {
  /** Flushes sent to this shard (both lanes, writes sent ahead of their lane included). */
  flushes: number;
  /** Flushes sent early because a batch hit batch.maxOps or batch.maxBytes. */
  cuts: number;
}

export class Coalescer {
  private readonly queues: ShardQueue[];
  private readonly dueNow: ShardQueue[] = [];
  private immediate: NodeJS.Immediate | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = 0;
  private readonly runDue = (): void => this.flushDue();
  private readonly runTimed = (): void => this.flushTimed();
  /** Client ops handed to this pool (duplicates included): with the shards' keys sent, the coalescing ratio. */
  keysIn = 0;
  /** Client ops per flush, and how long a flush's first op waited in its lane (seconds). */
  readonly flushOps = new Histogram(KEY_COUNT_BUCKETS);
  readonly flushHold = new Histogram(LATENCY_BUCKETS);

  constructor(
    shards: readonly Shard[],
    private readonly opts: BatchOptions,
  ) {
    this.queues = shards.map((s) => new ShardQueue(s));
    for (const q of this.queues) {
      q.shard.onBatchDone = (b: Ops) => this.recycle(q, b);
    }
  }

  get(shard: number, req: Request, i: number, key: Uint8Array, koff: number, klen: number, wait: number): void {
    const q = this.queues[shard];
    const lane = wait > this.opts.windowMs ? q.held : q.now;
    let b = lane.get;
    if (b === null) {
      if (lane.mut === null) this.opened(lane);
      b = lane.get = q.freeGets.pop() ?? q.shard.newGets(this.opts.maxOps);
    }
    b.add(req, i, key, koff, klen);
    lane.ops++;
    this.keysIn++;
    this.after(q, lane, wait, b.full || b.bytes >= this.opts.maxBytes);
  }

  /** Adds a set whose value is given as parts (a streamed body) or one range. */
  set(
    shard: number,
    req: Request,
    i: number,
    key: Uint8Array,
    koff: number,
    klen: number,
    ttl: number,
    flags: number,
    value: Uint8Array,
    voff: number,
    vlen: number,
    wait: number,
  ): void {
    const q = this.queues[shard];
    if (!q.shard.admitSet(req, i, klen, vlen, flags)) return;
    const lane = this.mutLane(q, wait);
    const b = this.mutBatch(q, lane);
    b.beginSet(req, i, key, koff, klen, ttl, flags, vlen);
    b.appendValue(value, voff, vlen);
    b.endSet();
    this.afterMut(q, lane, wait);
  }

  setParts(
    shard: number,
    req: Request,
    i: number,
    key: Uint8Array,
    koff: number,
    klen: number,
    ttl: number,
    flags: number,
    parts: Buffer[],
    lens: number[],
    vlen: number,
    wait: number,
  ): void {
    const q = this.queues[shard];
    if (!q.shard.admitSet(req, i, klen, vlen, flags)) return;
    const lane = this.mutLane(q, wait);
    const b = this.mutBatch(q, lane);
    b.beginSet(req, i, key, koff, klen, ttl, flags, vlen);
    for (let k = 0; k < parts.length; k++) b.appendValue(parts[k], 0, lens[k]);
    b.endSet();
    this.afterMut(q, lane, wait);
  }

  del(shard: number, req: Request, i: number, key: Uint8Array, koff: number, klen: number, wait: number): void {
    const q = this.queues[shard];
    const lane = this.mutLane(q, wait);
    this.mutBatch(q, lane).addDel(req, i, key, koff, klen);
    this.afterMut(q, lane, wait);
  }

  /** Sends everything pending now (shutdown, tests). */
  flushAll(): void {
    for (const q of this.queues) {
      this.flush(q, q.now);
      this.flush(q, q.held);
    }
  }

  /** Each shard's own counters, plus this coalescer's flushes and cuts for it. */
  stats(): CoalescerStats[] {
    return this.queues.map((q) => ({ ...q.shard.stats(), flushes: q.flushes, cuts: q.cuts }));
  }

  /** The lane a write joins. An un-hinted write must not overtake a held one: those leave first. */
  private mutLane(q: ShardQueue, wait: number): Lane {
    if (wait > this.opts.windowMs) return q.held;
    if (q.held.mut !== null) {
      // By the invariant the immediate lane's writes are older than the held ones: they go first.
      if (q.now.mut !== null) this.sendMuts(q, q.now);
      this.sendMuts(q, q.held);
    }
    return q.now;
  }

  private mutBatch(q: ShardQueue, lane: Lane): MutOps {
    lane.ops++;
    this.keysIn++;
    if (lane.mut !== null) return lane.mut;
    if (lane.get === null) this.opened(lane);
    return (lane.mut = q.freeMuts.pop() ?? q.shard.newMuts(this.opts.maxOps));
  }

  /** A lane's first op since it last left. */
  private opened(lane: Lane): void {
    lane.firstHr = performance.now();
  }

  /** A lane (or its writes, sent ahead) leaves: its ops and its wait go into the histograms. */
  private left(lane: Lane): void {
    this.flushOps.observe(lane.ops);
    this.flushHold.observe((performance.now() - lane.firstHr) / 1000);
    lane.ops = 0;
  }

  private afterMut(q: ShardQueue, lane: Lane, wait: number): void {
    const b = lane.mut!;
    this.after(q, lane, wait, b.full || b.bytes >= this.opts.maxBytes);
  }

  private after(q: ShardQueue, lane: Lane, wait: number, full: boolean): void {
    if (full) {
      q.cuts++;
      this.flush(q, lane);
      return;
    }
    const hold = lane === q.held ? wait : this.opts.windowMs;
    if (hold === 0) {
      // The common case touches no clock (Date.now() allocates a heap number per call).
      if (!lane.scheduled) {
        lane.scheduled = true;
        lane.deadline = 0;
        this.scheduleNow(q);
      }
      return;
    }
    const now = Date.now();
    if (!lane.scheduled) {
      lane.scheduled = true;
      lane.startedAt = now;
      lane.deadline = now + Math.min(hold, this.opts.maxWaitMs);
      this.scheduleAt(lane.deadline);
    } else {
      // A longer hint extends the hold, bounded from the lane's first op.
      const until = Math.min(now + hold, lane.startedAt + this.opts.maxWaitMs);
      if (until > lane.deadline) lane.deadline = until;
    }
  }

  private scheduleNow(q: ShardQueue): void {
    this.dueNow.push(q);
    if (this.immediate === null) this.immediate = setImmediate(this.runDue);
  }

  private scheduleAt(at: number): void {
    if (this.timer !== null && this.timerAt <= at) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.runTimed, Math.max(0, at - Date.now()));
  }

  private flushDue(): void {
    this.immediate = null;
    for (let k = 0; k < this.dueNow.length; k++) {
      const q = this.dueNow[k];
      if (q.now.scheduled && q.now.deadline === 0) this.flush(q, q.now);
    }
    this.dueNow.length = 0;
  }

  private flushTimed(): void {
    this.timer = null;
    const now = Date.now();
    let next = Infinity;
    for (const q of this.queues) {
      next = this.flushIfDue(q, q.now, now, next);
      next = this.flushIfDue(q, q.held, now, next);
    }
    if (next !== Infinity) this.scheduleAt(next);
  }

  /** Flushes a timed lane whose deadline passed; returns the earliest deadline still ahead. */
  private flushIfDue(q: ShardQueue, lane: Lane, now: number, next: number): number {
    if (!lane.scheduled || lane.deadline === 0) return next;
    if (lane.deadline <= now) this.flush(q, lane);
    else if (lane.deadline < next) return lane.deadline;
    return next;
  }

  private flush(q: ShardQueue, lane: Lane): void {
    // The immediate lane's writes are older than anything held (the invariant): they go first.
    if (lane === q.held && q.now.mut !== null) this.sendMuts(q, q.now);
    const get = lane.get,
      mut = lane.mut;
    lane.get = null;
    lane.mut = null;
    lane.scheduled = false;
    if (get === null && mut === null) return;
    this.left(lane);
    this.send(q, mut, get);
  }

  /** Sends a lane's writes ahead of the rest of it; its gets keep their deadline. */
  private sendMuts(q: ShardQueue, lane: Lane): void {
    const mut = lane.mut!;
    lane.mut = null;
    if (lane.get === null) lane.scheduled = false;
    // The lane's gets stay, counted with the next flush; the writes are this one.
    this.left(lane);
    this.send(q, mut, null);
  }

  private send(q: ShardQueue, mut: MutOps | null, get: GetOps | null): void {
    q.flushes++;
    if (q.shard.up) {
      q.shard.send(mut, get);
      return;
    }
    const msg = `shard ${q.shard.label} is down`;
    if (mut !== null) {
      mut.fail('SHARD_DOWN', msg);
      this.recycle(q, mut);
    }
    if (get !== null) {
      get.fail('SHARD_DOWN', msg);
      this.recycle(q, get);
    }
  }

  private recycle(q: ShardQueue, b: Ops): void {
    b.reset();
    if (b.kind === 0) {
      if (q.freeGets.length < 4) q.freeGets.push(b);
    } else if (q.freeMuts.length < 4) q.freeMuts.push(b);
  }
}
