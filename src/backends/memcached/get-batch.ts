/**
 * The gets bound for one shard in one flush, kept as the multi-get command itself (`get k1 k2 ...\r\n`)
 * plus typed arrays: no object per key. The same key asked twice is stored once and its waiters chained,
 * so it is fetched once and fanned out. Memcached answers hits in the order asked, so responses are
 * matched by walking a cursor over the keys: every key the cursor passes without a VALUE is a miss.
 */
import type { GetOps } from '../../core/backend';
import type { ErrorCode } from '../../core/errors';
import type { Request } from '../../core/request';
import { fnv1a32, grow, growI32, growU8 } from '../../core/grow';

const GET = Buffer.from('get');

export class GetBatch implements GetOps {
  readonly kind = 0 as const;
  cmd: Buffer;
  len = 3;
  /** Unique keys. */
  n = 0;
  sentAt = 0;
  /** performance.now() at the write, for the shard's round-trip histogram. */
  sentHr = 0;
  private keyOff: Int32Array;
  private keyLen: Int32Array;
  private keyHash: Uint32Array;
  private keySlot: Int32Array;
  private firstWaiter: Int32Array;
  private table: Int32Array;
  private mask: number;
  private wReq: (Request | null)[] = [];
  private wIdx: Int32Array;
  private wNext: Int32Array;
  /** 1: this waiter refused the value when it began (its request fetches it again later). */
  private wSkip: Uint8Array;
  private nw = 0;
  /** Response matching: keys before it are settled. */
  cursor = 0;
  /** Sent again once already, after its connection broke before any answer. */
  retried = false;
  private sealed = false;

  constructor(private readonly maxKeys: number) {
    this.cmd = Buffer.allocUnsafeSlow(16 * 1024);
    GET.copy(this.cmd, 0);
    this.keyOff = new Int32Array(maxKeys);
    this.keyLen = new Int32Array(maxKeys);
    this.keyHash = new Uint32Array(maxKeys);
    this.keySlot = new Int32Array(maxKeys);
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

  /** The command's length so far (the coalescer compares it with batch.maxBytes). */
  get bytes(): number {
    return this.len;
  }

  add(req: Request, i: number, src: Uint8Array, off: number, len: number): void {
    const h = fnv1a32(src, off, len);
    let slot = h & this.mask;
    let k = -1;
    for (let t = this.table[slot]; t !== 0; slot = (slot + 1) & this.mask, t = this.table[slot]) {
      const c = t - 1;
      if (this.keyHash[c] === h && this.keyLen[c] === len && this.sameBytesIn(c, src, off, len)) {
        k = c;
        break;
      }
    }
    if (k < 0) {
      k = this.n++;
      this.ensure(len + 3);
      this.cmd[this.len++] = 0x20;
      this.keyOff[k] = this.len;
      this.keyLen[k] = len;
      this.keyHash[k] = h;
      this.keySlot[k] = slot;
      this.table[slot] = k + 1;
      this.firstWaiter[k] = -1;
      for (let p = off, end = off + len; p < end; p++) this.cmd[this.len++] = src[p];
    }
    const w = this.nw++;
    if (w >= this.wIdx.length) this.growWaiters();
    this.wReq[w] = req;
    this.wIdx[w] = i;
    this.wNext[w] = this.firstWaiter[k];
    this.firstWaiter[k] = w;
    req.submitted();
  }

  /** Terminates the command line; returns the bytes to write. */
  seal(): Buffer {
    if (!this.sealed) {
      this.sealed = true;
      this.ensure(2);
      this.cmd[this.len++] = 0x0d;
      this.cmd[this.len++] = 0x0a;
    }
    return this.cmd.subarray(0, this.len);
  }

  /** Finds the key of a VALUE line at or after the cursor, settling skipped keys as misses. -1: not ours. */
  matchValue(buf: Uint8Array, off: number, len: number): number {
    for (let k = this.cursor; k < this.n; k++) {
      if (this.keyLen[k] === len && this.sameBytesIn(k, buf, off, len)) {
        for (let m = this.cursor; m < k; m++) this.missKey(m);
        this.cursor = k + 1;
        return k;
      }
    }
    return -1;
  }

  deliver(k: number, flags: number, total: number, offset: number, buf: Buffer, off: number, len: number): void {
    for (let w = this.firstWaiter[k]; w !== -1; w = this.wNext[w]) {
      if (this.wSkip[w] === 1) continue;
      const req = this.wReq[w]!;
      if (!req.value(this.wIdx[w], flags, total, offset, buf, off, len)) {
        // The client has no room for it now: it asks again once it has (a get can be repeated).
        this.wSkip[w] = 1;
        req.redo(this.wIdx[w], this.cmd, this.keyOff[k], this.keyLen[k]);
      }
    }
  }

  /** END: every key not yet answered is a miss. */
  end(): void {
    for (let k = this.cursor; k < this.n; k++) this.missKey(k);
    this.cursor = this.n;
  }

  /** Fails every key not yet settled. */
  fail(code: ErrorCode, message?: string): void {
    this.failFrom(this.cursor, code, message);
  }

  /** Fails every key from `from` on: `cursor - 1` fails a value cut mid-stream too (it has not settled). */
  failFrom(from: number, code: ErrorCode, message?: string): void {
    for (let k = from; k < this.n; k++) {
      for (let w = this.firstWaiter[k]; w !== -1; w = this.wNext[w]) {
        if (this.wSkip[w] === 0) this.wReq[w]!.error(this.wIdx[w], code, message);
      }
    }
    this.cursor = this.n;
  }

  reset(): void {
    for (let k = 0; k < this.n; k++) this.table[this.keySlot[k]] = 0;
    for (let w = 0; w < this.nw; w++) {
      this.wReq[w] = null;
      this.wSkip[w] = 0;
    }
    this.n = 0;
    this.nw = 0;
    this.len = 3;
    this.cursor = 0;
    this.retried = false;
    this.sealed = false;
  }

  private missKey(k: number): void {
    for (let w = this.firstWaiter[k]; w !== -1; w = this.wNext[w]) this.wReq[w]!.miss(this.wIdx[w]);
  }

  private sameBytesIn(k: number, src: Uint8Array, off: number, len: number): boolean {
    const c = this.cmd;
    const o = this.keyOff[k];
    for (let j = 0; j < len; j++) if (c[o + j] !== src[off + j]) return false;
    return true;
  }

  private ensure(extra: number): void {
    this.cmd = grow(this.cmd, this.len, this.len + extra);
  }

  private growWaiters(): void {
    const size = this.wIdx.length * 2;
    this.wIdx = growI32(this.wIdx, size);
    this.wNext = growI32(this.wNext, size);
    this.wSkip = growU8(this.wSkip, size);
  }
}
