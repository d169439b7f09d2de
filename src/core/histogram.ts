/**
 * A fixed-bucket histogram in plain numbers, for hot paths (per flush, per shard batch): `observe` walks a
 * short bound list and bumps a Float64Array slot, with no allocation and no label lookup. ops/metrics.ts
 * reads it at scrape time and renders Prometheus buckets (cumulative, `le` inclusive).
 */
export class Histogram {
  /** counts[i]: observations with bounds[i-1] < v <= bounds[i]; the last slot is +Inf. Not cumulative. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    for (let i = 1; i < bounds.length; i++)
      if (!(bounds[i] > bounds[i - 1])) throw new Error('histogram bounds must increase');
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

/** Seconds, from 50 µs (a loopback round trip to memcached) to 5 s. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

/** Keys per flush: powers of two up to the largest batch.maxOps a deployment would set. */
export const KEY_COUNT_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];
