/**
 * Collects every op that arrives before a flush into one GetBatch and one MutationBatch per shard, and
 * decides when they leave: at the end of the event-loop turn (setImmediate, after every socket read of
 * this turn was handled) by default; later when the configured window or a request's `wait` hint asks,
 * never later than maxWaitMs after the batch's first op; at once when a batch hits its op or byte cap.
 * A shard that is down fails its items at flush time, so callers hear SHARD_DOWN within one turn.
 */
import type { Request } from '../request';
import { GetBatch } from './get-batch';
import { MutationBatch } from './mutation-batch';
import type { Batch, ShardConnection } from '../memcached/shard-connection';

export interface BatchOptions {
  windowMs: number;
  maxWaitMs: number;
  maxOps: number;
  maxBytes: number;
}

class ShardQueue {
  get: GetBatch | null = null;
  mut: MutationBatch | null = null;
  /** When the open batches must leave (ms, Date.now clock); 0 = end of this turn. */
  deadline = 0;
  startedAt = 0;
  scheduled = false;
  readonly freeGets: GetBatch[] = [];
  readonly freeMuts: MutationBatch[] = [];
  flushes = 0;
  cuts = 0;
  constructor(readonly conn: ShardConnection) {}
}

export class Coalescer {
  private readonly queues: ShardQueue[];
  private readonly dueNow: ShardQueue[] = [];
  private immediate: NodeJS.Immediate | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = 0;
  private readonly runDue = (): void => this.flushDue();
  private readonly runTimed = (): void => this.flushTimed();

  constructor(conns: ShardConnection[], private readonly opts: BatchOptions) {
    this.queues = conns.map((c) => new ShardQueue(c));
    for (const q of this.queues) {
      q.conn.onBatchDone = (b: Batch) => this.recycle(q, b);
    }
  }

  get(shard: number, req: Request, i: number, key: Uint8Array, koff: number, klen: number, wait: number): void {
    const q = this.queues[shard];
    let b = q.get;
    if (b === null) b = q.get = q.freeGets.pop() ?? new GetBatch(this.opts.maxOps);
    b.add(req, i, key, koff, klen);
    this.after(q, wait, b.full || b.len >= this.opts.maxBytes);
  }

  /** Adds a set whose value is given as parts (a streamed body) or one range. */
  set(shard: number, req: Request, i: number, key: Uint8Array, koff: number, klen: number,
    ttl: number, flags: number, value: Uint8Array, voff: number, vlen: number, wait: number): void {
    const b = this.mutBatch(shard);
    b.beginSet(req, i, key, koff, klen, ttl, flags, vlen);
    b.appendValue(value, voff, vlen);
    b.endSet();
    this.afterMut(shard, wait);
  }

  setParts(shard: number, req: Request, i: number, key: Uint8Array, koff: number, klen: number,
    ttl: number, flags: number, parts: Buffer[], lens: number[], vlen: number, wait: number): void {
    const b = this.mutBatch(shard);
    b.beginSet(req, i, key, koff, klen, ttl, flags, vlen);
    for (let k = 0; k < parts.length; k++) b.appendValue(parts[k], 0, lens[k]);
    b.endSet();
    this.afterMut(shard, wait);
  }

  del(shard: number, req: Request, i: number, key: Uint8Array, koff: number, klen: number, wait: number): void {
    this.mutBatch(shard).addDel(req, i, key, koff, klen);
    this.afterMut(shard, wait);
  }

  /** Sends everything pending now (shutdown, tests). */
  flushAll(): void {
    for (const q of this.queues) this.flush(q);
  }

  stats(): { shard: string; up: boolean; flushes: number; cuts: number; writes: number; batches: number; keys: number; resets: number; inflightBatches: number }[] {
    return this.queues.map((q) => ({
      shard: q.conn.label, up: q.conn.up, flushes: q.flushes, cuts: q.cuts, writes: q.conn.writes,
      batches: q.conn.batchesSent, keys: q.conn.keysSent, resets: q.conn.resets, inflightBatches: q.conn.inflightBatches,
    }));
  }

  private mutBatch(shard: number): MutationBatch {
    const q = this.queues[shard];
    return q.mut ?? (q.mut = q.freeMuts.pop() ?? new MutationBatch(this.opts.maxOps));
  }

  private afterMut(shard: number, wait: number): void {
    const q = this.queues[shard];
    const b = q.mut!;
    this.after(q, wait, b.full || b.len >= this.opts.maxBytes);
  }

  private after(q: ShardQueue, wait: number, full: boolean): void {
    if (full) {
      q.cuts++;
      this.flush(q);
      return;
    }
    const hold = wait > this.opts.windowMs ? wait : this.opts.windowMs;
    if (hold === 0) {
      // The common case touches no clock (Date.now() allocates a heap number per call).
      if (!q.scheduled) {
        q.scheduled = true;
        q.deadline = 0;
        this.scheduleNow(q);
      }
      return;
    }
    const now = Date.now();
    if (!q.scheduled) {
      q.scheduled = true;
      q.startedAt = now;
      q.deadline = now + Math.min(hold, this.opts.maxWaitMs);
      this.scheduleAt(q.deadline);
    } else if (q.deadline !== 0) {
      // A longer hint extends the hold, bounded from the batch's first op.
      const until = Math.min(now + hold, q.startedAt + this.opts.maxWaitMs);
      if (until > q.deadline) q.deadline = until;
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
      if (q.scheduled && q.deadline === 0) this.flush(q);
    }
    this.dueNow.length = 0;
  }

  private flushTimed(): void {
    this.timer = null;
    const now = Date.now();
    let next = Infinity;
    for (const q of this.queues) {
      if (!q.scheduled || q.deadline === 0) continue;
      if (q.deadline <= now) this.flush(q);
      else if (q.deadline < next) next = q.deadline;
    }
    if (next !== Infinity) this.scheduleAt(next);
  }

  private flush(q: ShardQueue): void {
    const get = q.get, mut = q.mut;
    q.get = null;
    q.mut = null;
    q.scheduled = false;
    if (get === null && mut === null) return;
    q.flushes++;
    if (q.conn.up) {
      q.conn.send(mut, get);
      return;
    }
    const msg = `shard ${q.conn.label} is down`;
    if (mut !== null) { mut.fail('SHARD_DOWN', msg); this.recycle(q, mut); }
    if (get !== null) { get.fail(0, 'SHARD_DOWN', msg); this.recycle(q, get); }
  }

  private recycle(q: ShardQueue, b: Batch): void {
    b.reset();
    if (b.kind === 0) { if (q.freeGets.length < 4) q.freeGets.push(b); }
    else if (q.freeMuts.length < 4) q.freeMuts.push(b);
  }
}
