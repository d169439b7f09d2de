/**
 * The key space and values every peer reads and writes. A value is a function of its key's index and the
 * value size: the ASCII header `v<index>:` followed by a fixed byte pattern, so any answer can be checked
 * without keeping a copy of what was written, and a value returned for the wrong key is caught.
 */
export class KeySpace {
  readonly keys: Buffer[] = [];
  readonly keyStrings: string[] = [];
  private readonly filler: Buffer;
  private readonly headers: Buffer[] = [];

  constructor(
    readonly prefix: string,
    readonly count: number,
    readonly valueSize: number,
  ) {
    for (let i = 0; i < count; i++) {
      const s = `${prefix}:${i}`;
      this.keyStrings.push(s);
      this.keys.push(Buffer.from(s, 'latin1'));
      this.headers.push(Buffer.from(`v${i}:`, 'latin1'));
    }
    this.filler = Buffer.allocUnsafe(valueSize);
    for (let j = 0; j < valueSize; j++) this.filler[j] = (j * 7 + 13) & 0xff;
  }

  static forSize(count: number, valueSize: number): KeySpace {
    return new KeySpace(`k${valueSize}`, count, valueSize);
  }

  /** Copies the value of key `idx` into `target` at `offset`; returns the offset after it. */
  writeValue(idx: number, target: Buffer, offset: number): number {
    const h = this.headers[idx];
    const size = this.valueSize;
    const hl = Math.min(h.length, size);
    h.copy(target, offset, 0, hl);
    if (size > hl) this.filler.copy(target, offset + hl, hl, size);
    return offset + size;
  }

  value(idx: number): Buffer {
    const b = Buffer.allocUnsafe(this.valueSize);
    this.writeValue(idx, b, 0);
    return b;
  }

  /** True when buf[start, end) is exactly the value of key `idx`. */
  check(idx: number, buf: Buffer, start: number, end: number): boolean {
    if (end - start !== this.valueSize) return false;
    return this.checkRange(idx, 0, buf, start, end);
  }

  /** True when buf[start, end) equals bytes [offset, offset + (end - start)) of key `idx`'s value. */
  checkRange(idx: number, offset: number, buf: Buffer, start: number, end: number): boolean {
    const len = end - start;
    if (offset < 0 || offset + len > this.valueSize) return false;
    const h = this.headers[idx];
    const hl = Math.min(h.length, this.valueSize);
    let o = offset;
    let p = start;
    while (o < hl && p < end) {
      if (buf[p] !== h[o]) return false;
      o++;
      p++;
    }
    if (p === end) return true;
    return this.filler.compare(buf, p, end, o, o + (end - p)) === 0;
  }
}

/** xorshift32: a cheap deterministic generator for key choice and op mix. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed | 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x;
    return x >>> 0;
  }
  /** Uniform integer in [0, n). */
  below(n: number): number {
    return this.next() % n;
  }
}
