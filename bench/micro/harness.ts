/**
 * A tiny micro-benchmark harness: calibrates the iteration count so one round takes about 100 ms, keeps
 * the best of several rounds, and prints one JSON document in the same shape as ketama.bench.ts
 * (`{bench, node, results: [...]}`), which bench/run.ts folds into RESULTS.md.
 */
export interface MicroRow {
  name: string;
  opsPerSec: number;
  nsPerOp: number;
  note?: string;
  [k: string]: unknown;
}

const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = QUICK ? 3 : 7;
const ROUND_NS = (QUICK ? 40 : 120) * 1e6;

let sink = 0;

/**
 * `fn(iterations)` runs the operation that many times and returns a number (kept so the work is not
 * optimised away); `perIteration` is how many operations one iteration counts for.
 */
export function measure(name: string, fn: (iterations: number) => number, perIteration = 1, note?: string): MicroRow {
  let iters = 1;
  for (;;) {
    const t0 = process.hrtime.bigint();
    sink ^= fn(iters);
    const ns = Number(process.hrtime.bigint() - t0);
    if (ns > ROUND_NS / 4 || iters > 1e9) {
      iters = Math.max(1, Math.round((iters * ROUND_NS) / Math.max(ns, 1)));
      break;
    }
    iters *= 4;
  }
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    sink ^= fn(iters);
    const ns = Number(process.hrtime.bigint() - t0);
    if (ns < best) best = ns;
  }
  const ops = iters * perIteration;
  const row: MicroRow = { name, opsPerSec: Math.round(ops / (best / 1e9)), nsPerOp: +(best / ops).toFixed(2) };
  if (note) row.note = note;
  return row;
}

export function print(bench: string, results: MicroRow[], extra: Record<string, unknown> = {}): void {
  process.stdout.write(
    JSON.stringify({ bench, node: process.version, bestOfRounds: ROUNDS, ...extra, results, sink: sink & 1 }, null, 2) +
      '\n',
  );
}
