/**
 * One flush's gets and writes for a Redis shard, held as copied bytes plus typed arrays until the shard
 * turns them into pipelined commands (shard.ts). The fronts' key and value bytes are only valid during the
 * call that adds them, so both are copied into the batch's own buffer; the commands see subarrays of it.
 *
 * Gets: the same key asked twice in a flush is stored once, its waiters chained (as the memcached GetBatch
 * does), so it is fetched once and the value fanned out. Every unique key settles exactly once (`done`),
 * whatever route its command took (MGET, GET, a redirect, a retry); `pending` counts the keys still open,
 * and the shard hands the batch back when it reaches 0.
 *
 * Ownership of a value handed to `deliver`: the reply Buffer is ioredis's (a view of its read chunk); it is
 * passed to each waiter in parts of at most PART_BYTES and not kept after the call.
 */
import type { ErrorCode } from '../../core/errors';
import type { GetOps, MutOps } from '../../core/backend';
import type { Request } from '../../core/request';
import { fnv1a32, grow, growI32, growU8 } from '../../core/grow';

/** The largest part of a value handed to Request.value: the fronts' pooled buffers are 16 KiB. */
export const PART_BYTES = 16 * 1024;

export class RedisGets implements GetOps {
  readonly kind = 0 as const;
  /** The unique keys' bytes, back to back. */
  keys: Buffer;
  len = 0;
  /** Unique keys. */
  n = 0;
  /** Unique keys not settled yet. */
  pending = 0;
  /** In a shard's hands (sent, not yet given back). */
  live = false;
  /** Bumped by reset: a pipeline reply for an earlier use of this batch is recognised and ignored. */
  epoch = 0;
  keyOff: Int32Array;
  keyLen: Int32Array;
  /** Per unique key: its cluster slot (filled by the shard when it routes the batch). */
  slot: Int32Array;
  /** Per unique key: redirections followed so far (MOVED, ASK). */
  hops: Uint8Array;
  /** Per unique key: 1 once it was sent again after a failure (a get is retried once). */
  retried: Uint8Array;
  private done: Uint8Array;
  private keyHash: Uint32Array;
  private tablePos: Int32Array;
  private firstWaiter: Int32Array;
  private table: Int32Array;
  private mask: number;
  private wReq: (Request | null)[] = [];
  private wIdx: Int32Array;
  private wNext: Int32Array;
  /** 1: this waiter refused the value (its request fetches the key again later). */
  private wSkip: Uint8Array;
  private nw = 0;

  constructor(private readonly maxKeys: number) {
    this.keys = Buffer.allocUnsafeSlow(16 * 1024);
    this.keyOff = new Int32Array(maxKeys);
    this.keyLen = new Int32Array(maxKeys);
    this.slot = new Int32Array(maxKeys);
    this.hops = new Uint8Array(maxKeys);
    this.retried = new Uint8Array(maxKeys);
    this.done = new Uint8Array(maxKeys);
    this.keyHash = new Uint32Array(maxKeys);
    this.tablePos = new Int32Array(maxKeys);
    this.firstWaiter = new Int32Array(maxKeys);
    let size = 16;
    while (size < maxKeys * 2) size <<= 1;
    this.table = new Int32Array(size);
    this.mask = size - 1;
    this.wIdx = new Int32Array(maxKeys);
    this.wNext = new Int32Array(maxKeys);
    this.wSkip = new Uint8Array(maxKeys);
  }

  get full(): boolean {
    return this.n >= this.maxKeys;
  }

  get bytes(): number {
    return this.len;
  }

  add(req: Request, i: number, src: Uint8Array, off: number, len: number): void {
    const h = fnv1a32(src, off, len);
    let pos = h & this.mask;
    let k = -1;
    for (let t = this.table[pos]; t !== 0; pos = (pos + 1) & this.mask, t = this.table[pos]) {
      const c = t - 1;
      if (this.keyHash[c] === h && this.keyLen[c] === len && this.sameKey(c, src, off, len)) {
        k = c;
        break;
      }
    }
    if (k < 0) {
      k = this.n++;
      this.keys = grow(this.keys, this.len, this.len + len);
      this.keyOff[k] = this.len;
      this.keyLen[k] = len;
      this.keyHash[k] = h;
      this.tablePos[k] = pos;
      this.table[pos] = k + 1;
      this.firstWaiter[k] = -1;
      for (let p = off, end = off + len; p < end; p++) this.keys[this.len++] = src[p];
      this.pending++;
    }
    const w = this.nw++;
    if (w >= this.wIdx.length) this.growWaiters();
    this.wReq[w] = req;
    this.wIdx[w] = i;
    this.wNext[w] = this.firstWaiter[k];
    this.firstWaiter[k] = w;
    req.submitted();
  }

  /** The key's bytes as a Buffer for a command argument (a view: valid until reset). */
  keyView(k: number): Buffer {
    return this.keys.subarray(this.keyOff[k], this.keyOff[k] + this.keyLen[k]);
  }

  isDone(k: number): boolean {
    return this.done[k] === 1;
  }

  /**
   * A hit: every waiter gets the value in parts of at most PART_BYTES. A waiter whose request refuses it
   * (flow control, at the first part) gets `redo` instead and fetches the key again when it has room.
   */
  deliver(k: number, v: Buffer): void {
    if (!this.close(k)) return;
    const total = v.length;
    for (let w = this.firstWaiter[k]; w !== -1; w = this.wNext[w]) {
      const req = this.wReq[w]!;
      const i = this.wIdx[w];
      let at = 0;
      do {
        const part = total - at < PART_BYTES ? total - at : PART_BYTES;
        if (!req.value(i, 0, total, at, v, at, part)) {
          this.wSkip[w] = 1;
          req.redo(i, this.keys, this.keyOff[k], this.keyLen[k]);
          break;
        }
        at += part;
      } while (at < total);
    }
  }

  miss(k: number): void {
    if (!this.close(k)) return;
    for (let w = this.firstWaiter[k]; w !== -1; w = this.wNext[w]) this.wReq[w]!.miss(this.wIdx[w]);
  }

  failKey(k: number, code: ErrorCode, message?: string): void {
    if (!this.close(k)) return;
    for (let w = this.firstWaiter[k]; w !== -1; w = this.wNext[w]) {
      if (this.wSkip[w] === 0) this.wReq[w]!.error(this.wIdx[w], code, message);
    }
  }

  fail(code: ErrorCode, message?: string): void {
    for (let k = 0; k < this.n; k++) if (this.done[k] === 0) this.failKey(k, code, message);
  }

  reset(): void {
    for (let k = 0; k < this.n; k++) {
      this.table[this.tablePos[k]] = 0;
      this.done[k] = 0;
      this.hops[k] = 0;
      this.retried[k] = 0;
    }
    for (let w = 0; w < this.nw; w++) {
      this.wReq[w] = null;
      this.wSkip[w] = 0;
    }
    this.n = 0;
    this.nw = 0;
    this.len = 0;
    this.pending = 0;
    this.live = false;
    this.epoch++;
  }

  /** Marks key k settled; false if it already was. */
  private close(k: number): boolean {
    if (this.done[k] === 1) return false;
    this.done[k] = 1;
    this.pending--;
    return true;
  }

  private sameKey(k: number, src: Uint8Array, off: number, len: number): boolean {
    const c = this.keys;
    const o = this.keyOff[k];
    for (let j = 0; j < len; j++) if (c[o + j] !== src[off + j]) return false;
    return true;
  }

  private growWaiters(): void {
    const size = this.wIdx.length * 2;
    this.wIdx = growI32(this.wIdx, size);
    this.wNext = growI32(this.wNext, size);
    this.wSkip = growU8(this.wSkip, size);
  }
}

export const enum MutKind {
  Set = 0,
  Del = 1,
}

/** The sets and deletes of one flush, in arrival order: keys and values copied back to back into `data`. */
export class RedisMuts implements MutOps {
  readonly kind = 1 as const;
  data: Buffer;
  len = 0;
  n = 0;
  pending = 0;
  live = false;
  epoch = 0;
  req: (Request | null)[] = [];
  idx: Int32Array;
  kinds: Uint8Array;
  keyOff: Int32Array;
  keyLen: Int32Array;
  valOff: Int32Array;
  valLen: Int32Array;
  ttl: Int32Array;
  slot: Int32Array;
  hops: Uint8Array;
  private done: Uint8Array;

  constructor(private readonly maxOps: number) {
    this.data = Buffer.allocUnsafeSlow(64 * 1024);
    this.idx = new Int32Array(maxOps);
    this.kinds = new Uint8Array(maxOps);
    this.keyOff = new Int32Array(maxOps);
    this.keyLen = new Int32Array(maxOps);
    this.valOff = new Int32Array(maxOps);
    this.valLen = new Int32Array(maxOps);
    this.ttl = new Int32Array(maxOps);
    this.slot = new Int32Array(maxOps);
    this.hops = new Uint8Array(maxOps);
    this.done = new Uint8Array(maxOps);
  }

  get full(): boolean {
    return this.n >= this.maxOps;
  }

  get bytes(): number {
    return this.len;
  }

  beginSet(
    req: Request,
    i: number,
    key: Uint8Array,
    koff: number,
    klen: number,
    ttl: number,
    _flags: number,
    vlen: number,
  ): void {
    // Flags were refused by admitSet: Redis stores the value bytes only.
    const k = this.addKey(req, i, MutKind.Set, key, koff, klen, vlen);
    this.ttl[k] = ttl;
    this.valOff[k] = this.len;
    this.valLen[k] = vlen;
  }

  appendValue(src: Uint8Array, off: number, len: number): void {
    this.data.set(len === src.length && off === 0 ? src : src.subarray(off, off + len), this.len);
    this.len += len;
  }

  endSet(): void {}

  addDel(req: Request, i: number, key: Uint8Array, koff: number, klen: number): void {
    this.addKey(req, i, MutKind.Del, key, koff, klen, 0);
  }

  keyView(k: number): Buffer {
    return this.data.subarray(this.keyOff[k], this.keyOff[k] + this.keyLen[k]);
  }

  valueView(k: number): Buffer {
    return this.data.subarray(this.valOff[k], this.valOff[k] + this.valLen[k]);
  }

  isDone(k: number): boolean {
    return this.done[k] === 1;
  }

  ok(k: number): void {
    if (this.close(k)) this.req[k]!.ok(this.idx[k]);
  }

  miss(k: number): void {
    if (this.close(k)) this.req[k]!.miss(this.idx[k]);
  }

  failOp(k: number, code: ErrorCode, message?: string): void {
    if (this.close(k)) this.req[k]!.error(this.idx[k], code, message);
  }

  /** A write of an abandoned request, not sent: settles with no output (Request.drop). */
  dropOp(k: number): void {
    if (this.close(k)) this.req[k]!.drop(this.idx[k]);
  }

  fail(code: ErrorCode, message?: string): void {
    for (let k = 0; k < this.n; k++) if (this.done[k] === 0) this.failOp(k, code, message);
  }

  reset(): void {
    for (let k = 0; k < this.n; k++) {
      this.req[k] = null;
      this.done[k] = 0;
      this.hops[k] = 0;
    }
    this.n = 0;
    this.len = 0;
    this.pending = 0;
    this.live = false;
    this.epoch++;
  }

  private addKey(
    req: Request,
    i: number,
    kind: MutKind,
    key: Uint8Array,
    koff: number,
    klen: number,
    vlen: number,
  ): number {
    if (this.n >= this.idx.length) this.growOps();
    const k = this.n++;
    this.data = grow(this.data, this.len, this.len + klen + vlen);
    this.keyOff[k] = this.len;
    this.keyLen[k] = klen;
    for (let p = koff, end = koff + klen; p < end; p++) this.data[this.len++] = key[p];
    this.req[k] = req;
    this.idx[k] = i;
    this.kinds[k] = kind;
    this.pending++;
    req.submitted();
    return k;
  }

  private close(k: number): boolean {
    if (this.done[k] === 1) return false;
    this.done[k] = 1;
    this.pending--;
    return true;
  }

  private growOps(): void {
    const size = this.idx.length * 2;
    this.idx = growI32(this.idx, size);
    this.kinds = growU8(this.kinds, size);
    this.keyOff = growI32(this.keyOff, size);
    this.keyLen = growI32(this.keyLen, size);
    this.valOff = growI32(this.valOff, size);
    this.valLen = growI32(this.valLen, size);
    this.ttl = growI32(this.ttl, size);
    this.slot = growI32(this.slot, size);
    this.hops = growU8(this.hops, size);
    this.done = growU8(this.done, size);
  }
}
