/**
 * A log-bucketed latency histogram (HDR-like): values in nanoseconds, 32 sub-buckets per power of two
 * (about 3% resolution), fixed size, mergeable across processes by adding counts.
 */
const SUB_BITS = 5;
const SUB = 1 << SUB_BITS; // 32
const LINEAR = SUB * 2; // values below 64 ns are exact
const MAX_EXP = 32; // up to 2^32 ns (4.29 s); larger values are clamped
export const BUCKETS = LINEAR + (MAX_EXP - SUB_BITS - 1) * SUB;

export function bucketOf(ns: number): number {
  if (ns < LINEAR) return ns < 0 ? 0 : ns | 0;
  if (ns >= 4294967295) return BUCKETS - 1;
  const v = ns >>> 0;
  const exp = 31 - Math.clz32(v); // >= 6
  const sub = (v >>> (exp - SUB_BITS)) & (SUB - 1);
  return LINEAR + (exp - SUB_BITS - 1) * SUB + sub;
}

/** The midpoint of a bucket, in nanoseconds. */
export function valueOf(bucket: number): number {
  if (bucket < LINEAR) return bucket;
  const b = bucket - LINEAR;
  const exp = Math.floor(b / SUB) + SUB_BITS + 1;
  const sub = b % SUB;
  const lo = (SUB + sub) * 2 ** (exp - SUB_BITS);
  return lo + 2 ** (exp - SUB_BITS) / 2;
}

export class Histogram {
  counts = new Float64Array(BUCKETS);
  total = 0;
  max = 0;

  record(ns: number): void {
    this.counts[bucketOf(ns)]++;
    this.total++;
    if (ns > this.max) this.max = ns;
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
    this.max = 0;
  }

  /** Sparse form for IPC: [bucket, count, bucket, count, ...]. */
  toSparse(): number[] {
    const out: number[] = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i] !== 0) out.push(i, this.counts[i]);
    return out;
  }

  addSparse(sparse: number[], max = 0): void {
    for (let i = 0; i < sparse.length; i += 2) {
      this.counts[sparse[i]] += sparse[i + 1];
      this.total += sparse[i + 1];
    }
    if (max > this.max) this.max = max;
  }

  /** q in 0..1; returns nanoseconds (bucket midpoint), 0 when empty. */
  quantile(q: number): number {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(valueOf(i), this.max || Infinity);
    }
    return this.max;
  }
}
