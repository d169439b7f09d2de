/**
 * Gets waiting for their client's window: a FIFO of (request, item, key, wait) with the keys copied into
 * one growing buffer (the frame or body chunk they came from dies with its callback). No object per item.
 * The key buffer is compacted when its dead head outgrows its live part, so a backlog that never quite
 * empties under steady load does not grow without end.
 */
import type { Request } from '../core/request';

export class KeyBacklog {
  private keys = Buffer.allocUnsafeSlow(4096);
  private keyStart = 0;
  private keyEnd = 0;
  private reqs: (Request | null)[] = [];
  private idx: Int32Array<ArrayBuffer> = new Int32Array(64);
  private koff: Int32Array<ArrayBuffer> = new Int32Array(64);
  private klen: Int32Array<ArrayBuffer> = new Int32Array(64);
  private waits: Int32Array<ArrayBuffer> = new Int32Array(64);
  private head = 0;
  private tail = 0;
  /** Key bytes held. */
  bytes = 0;

  get size(): number {
    return this.tail - this.head;
  }

  push(req: Request, i: number, key: Uint8Array, off: number, len: number, wait: number): void {
    if (this.tail === this.idx.length) this.makeRoom();
    if (this.keyEnd + len > this.keys.length) this.makeKeyRoom(len);
    const t = this.tail++;
    this.reqs[t] = req;
    this.idx[t] = i;
    this.koff[t] = this.keyEnd;
    this.klen[t] = len;
    this.waits[t] = wait;
    for (let p = 0; p < len; p++) this.keys[this.keyEnd + p] = key[off + p];
    this.keyEnd += len;
    this.bytes += len;
  }

  // The head item, read in place; valid until shift().
  get req(): Request {
    return this.reqs[this.head]!;
  }
  get item(): number {
    return this.idx[this.head];
  }
  get keyBuf(): Buffer {
    return this.keys;
  }
  get keyOff(): number {
    return this.koff[this.head];
  }
  get keyLen(): number {
    return this.klen[this.head];
  }
  get wait(): number {
    return this.waits[this.head];
  }

  shift(): void {
    const h = this.head++;
    this.reqs[h] = null;
    this.bytes -= this.klen[h];
    this.keyStart = this.koff[h] + this.klen[h];
    if (this.head === this.tail) {
      this.head = this.tail = 0;
      this.keyStart = this.keyEnd = 0;
    }
  }

  private makeRoom(): void {
    const live = this.tail - this.head;
    if (this.head > 0 && live <= this.idx.length >> 1) {
      // Slide the live items down instead of growing.
      this.idx.copyWithin(0, this.head, this.tail);
      this.koff.copyWithin(0, this.head, this.tail);
      this.klen.copyWithin(0, this.head, this.tail);
      this.waits.copyWithin(0, this.head, this.tail);
      for (let k = 0; k < live; k++) this.reqs[k] = this.reqs[this.head + k];
      for (let k = live; k < this.tail; k++) this.reqs[k] = null;
      this.head = 0;
      this.tail = live;
      return;
    }
    const n = this.idx.length * 2;
    this.idx = growInt(this.idx, n);
    this.koff = growInt(this.koff, n);
    this.klen = growInt(this.klen, n);
    this.waits = growInt(this.waits, n);
  }

  private makeKeyRoom(len: number): void {
    const live = this.keyEnd - this.keyStart;
    let size = this.keys.length;
    while (size < (live + len) * 2) size *= 2;
    const next = size === this.keys.length ? this.keys : Buffer.allocUnsafeSlow(size);
    this.keys.copy(next, 0, this.keyStart, this.keyEnd);
    const shift = this.keyStart;
    for (let k = this.head; k < this.tail; k++) this.koff[k] -= shift;
    this.keys = next;
    this.keyStart = 0;
    this.keyEnd = live;
  }
}

function growInt(a: Int32Array, n: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(n);
  b.set(a);
  return b;
}
