/**
 * The batches one memcached connection has written and not yet seen answered, in the order written, and
 * the reply parser's sink: memcached answers in order, so every reply belongs to the head batch. This is
 * where replies are matched to what was asked (the parser only reads the grammar): a VALUE to a key of the
 * head multi-get (GetBatch.matchValue walks its cursor), a write's reply line to the head write by its
 * opaque (MutationBatch.settleNext). A reply that fits nothing asked (nothing in flight, a key not asked,
 * an opaque out of step, a get's reply to a write) is out of step: the owner drops the connection.
 *
 *   queue: [ head (replies arriving) | ... | tail (last written) ]
 */
import type { GetBatch } from './get-batch';
import type { MutationBatch } from './mutation-batch';
import type { MetaStatus, ReplySink } from './reply-parser';

export type Batch = GetBatch | MutationBatch;

export interface InflightOwner {
  /** The head batch is fully answered; it has left the queue. */
  answered(b: Batch): void;
  /** The reply stream can no longer be trusted. */
  outOfStep(why: string): void;
}

export class Inflight implements ReplySink {
  private readonly queue: Batch[] = [];
  private first = 0;
  /** The head get, its key whose VALUE is arriving, and that value's flags. */
  private vBatch: GetBatch | null = null;
  private vKey = 0;
  private vFlags = 0;

  constructor(private readonly owner: InflightOwner) {}

  get size(): number {
    return this.queue.length - this.first;
  }

  push(b: Batch): void {
    this.queue.push(b);
  }

  /** The batch every reply belongs to now, or null when nothing is in flight. */
  head(): Batch | null {
    return this.first < this.queue.length ? this.queue[this.first] : null;
  }

  /** Empties the queue, returning what was in it, head first (the connection broke). */
  takeAll(): Batch[] {
    this.vBatch = null;
    const all = this.queue.slice(this.first);
    this.queue.length = 0;
    this.first = 0;
    return all;
  }

  onValueHeader(buf: Buffer, koff: number, klen: number, flags: number, _bytes: number): boolean {
    const b = this.head();
    if (b === null) return this.outOfStep('reply with nothing in flight');
    if (b.kind !== 0) return this.outOfStep('VALUE in reply to a write');
    const k = b.matchValue(buf, koff, klen);
    if (k < 0) return this.outOfStep('VALUE for a key not asked');
    this.vBatch = b;
    this.vKey = k;
    this.vFlags = flags;
    return true;
  }

  onValue(total: number, offset: number, buf: Buffer, off: number, len: number): void {
    // Only after onValueHeader accepted the VALUE: vBatch is the head get.
    this.vBatch!.deliver(this.vKey, this.vFlags, total, offset, buf, off, len);
  }

  onEnd(): boolean {
    const b = this.head();
    if (b === null) return this.outOfStep('reply with nothing in flight');
    if (b.kind !== 0) return this.outOfStep('END in reply to a write');
    b.end();
    this.vBatch = null;
    this.shift();
    return true;
  }

  onStatus(status: MetaStatus, opaque: number, message: string): boolean {
    const b = this.head();
    if (b === null) return this.outOfStep('reply with nothing in flight');
    if (b.kind !== 1) return this.outOfStep(`unexpected reply to get: ${message || 'a meta reply'}`);
    if (!b.settleNext(status, opaque, message)) return this.outOfStep('meta reply out of step');
    if (b.done) this.shift();
    return true;
  }

  onError(why: string): void {
    this.owner.outOfStep(why);
  }

  private outOfStep(why: string): false {
    this.owner.outOfStep(why);
    return false;
  }

  private shift(): void {
    const b = this.queue[this.first++];
    if (this.first === this.queue.length) {
      this.queue.length = 0;
      this.first = 0;
    }
    this.owner.answered(b);
  }
}
