/**
 * /console/data of a supervisor of workers: the workers' answers (console.ts's ConsoleData, one per worker
 * that answered) made into one of the same shape, so the page reads it unchanged. Counters, histograms,
 * connections, buffers and memory are summed (every worker counts its own traffic, holds its own
 * connections and its own share of the limits; histogram bounds are the same everywhere); a shard is up
 * only when every worker that answered sees it up, ejected when any does; uptime is the youngest worker's,
 * the generation the highest (a reload that reached some workers shows), draining when any is. The layout
 * (pools, shards, routes, ring) is the first answer's: every worker runs the same configuration, and a
 * pool or shard another worker lacks (in the middle of a reload) just gets nothing from it.
 * `workers` lists every worker, with why it did not answer.
 */
import type { ConsoleData, ConsoleHist, ConsolePool, ConsoleShard } from './console';

export type WorkerHealth = NonNullable<ConsoleData['workers']>[number];

/** Sums the numeric fields of `xs` into a copy of the first (other fields are the first's). */
function sumFields<T extends object>(xs: readonly T[]): T {
  const out = { ...xs[0] } as Record<string, unknown>;
  for (const x of xs.slice(1))
    for (const [k, v] of Object.entries(x))
      if (typeof v === 'number' && typeof out[k] === 'number') out[k] = (out[k] as number) + v;
  return out as T;
}

function sumHist(hs: readonly ConsoleHist[]): ConsoleHist {
  const counts = hs[0].counts.map((_, i) => hs.reduce((n, h) => n + (h.counts[i] ?? 0), 0));
  return {
    bounds: hs[0].bounds,
    counts,
    sum: hs.reduce((n, h) => n + h.sum, 0),
    count: hs.reduce((n, h) => n + h.count, 0),
  };
}

function sumItems(xs: readonly ConsoleData['items'][]): ConsoleData['items'] {
  const out: ConsoleData['items'] = {};
  for (const items of xs)
    for (const [op, outcomes] of Object.entries(items)) {
      const o = (out[op] ??= {});
      for (const [outcome, n] of Object.entries(outcomes)) o[outcome] = (o[outcome] ?? 0) + n;
    }
  return out;
}

function mergeShards(same: readonly ConsoleShard[]): ConsoleShard {
  return {
    ...sumFields(same),
    up: same.every((s) => s.up),
    ejected: same.some((s) => s.ejected),
    rtt: sumHist(same.map((s) => s.rtt)),
  };
}

function mergePool(first: ConsolePool, all: readonly ConsoleData[]): ConsolePool {
  const same = all.flatMap((d) => d.pools.filter((p) => p.name === first.name));
  return {
    ...first,
    clientKeys: same.reduce((n, p) => n + p.clientKeys, 0),
    flushKeys: sumHist(same.map((p) => p.flushKeys)),
    flushHold: sumHist(same.map((p) => p.flushHold)),
    shards: first.shards.map((s) => mergeShards(same.flatMap((p) => p.shards.filter((t) => t.shard === s.shard)))),
  };
}

/** One ConsoleData from the answers of the workers that gave one (at least one). */
export function mergeConsoleData(
  answers: readonly ConsoleData[],
  workers: readonly WorkerHealth[],
  draining: boolean,
): ConsoleData {
  const first = answers[0];
  return {
    at: Date.now(),
    uptimeMs: Math.min(...answers.map((d) => d.uptimeMs)),
    generation: Math.max(...answers.map((d) => d.generation)),
    draining: draining || answers.some((d) => d.draining),
    defaultPool: first.defaultPool,
    routes: first.routes,
    items: sumItems(answers.map((d) => d.items)),
    connections: sumFields(answers.map((d) => d.connections)),
    buffered: sumFields(answers.map((d) => d.buffered)),
    buffers: sumFields(answers.map((d) => d.buffers)),
    memory: sumFields(answers.map((d) => d.memory)),
    pools: first.pools.map((p) => mergePool(p, answers)),
    workers: [...workers],
  };
}
