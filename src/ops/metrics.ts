/**
 * The gateway's Prometheus metrics, on its own prom-client Registry (never the global one: tests run two
 * gateways in one process). Nothing here runs on the data path: the fronts, coalescers and shards count
 * into plain numbers, typed arrays (core/tally.ts) and fixed-bucket histograms (core/histogram.ts), and
 * each family below reads them when /metrics is scraped. The families are duck-typed prom-client metrics
 * (`get()` returning name, help, type, values, aggregator), which is what Registry.metrics() renders and
 * what AggregatorRegistry.aggregate() sums over workers (src/cluster/). docs/OPERATIONS.md lists them.
 */
import { monitorEventLoopDelay, PerformanceObserver, constants as perf } from 'node:perf_hooks';
import { Registry, type Metric } from 'prom-client';
import { Histogram } from '../core/histogram';
import type { Pool } from '../core/router';
import type { Tally } from '../core/tally';
import { AUTH_FAILURES } from '../security/jwt';
import type { Access } from '../security/access';

export type Labels = Record<string, string>;
interface Sample {
  value: number;
  labels: Labels;
  metricName?: string;
}
type Kind = 'counter' | 'gauge' | 'histogram' | 'summary';
/** How the supervisor combines a family over workers (prom-client's aggregator names). */
type Aggregator = 'sum' | 'max' | 'min' | 'first' | 'omit';

/** What the metrics read; `pools` is a function because a reload replaces them. */
export interface MetricsSources {
  tally: Tally;
  pools(): readonly Pool[];
  connections(): { ws: number; http: number; refused: number; kicked: number };
  buffered(): { used: number; limit: number };
  buffers(): { inUse: number; free: number; allocated: number };
  draining(): boolean;
  generation(): number;
  /** Reloads so far by result (`applied`, `failed`, `unchanged`). */
  reloads(): Record<string, number>;
  /** Credentials, rules and limits (security/access.ts); absent: not counted. */
  access?: Access;
}

export interface GatewayMetrics {
  registry: Registry;
  /** GC counts since start, from the same observer as kvgate_gc_pause_seconds (for /debug/stats and the bench). */
  gcCounts(): { young: number; major: number; other: number; pauseMs: number };
  close(): void;
}

class Family {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: Kind,
    private readonly read: (out: Sample[]) => void,
    readonly aggregator: Aggregator = 'sum',
  ) {}

  get(): { name: string; help: string; type: Kind; values: Sample[]; aggregator: Aggregator } {
    const values: Sample[] = [];
    this.read(values);
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

/** A core/histogram.ts Histogram as Prometheus buckets (cumulative, `le` inclusive), `_sum` and `_count`. */
export function histogramSamples(out: Sample[], name: string, labels: Labels, h: Histogram): void {
  let acc = 0;
  for (let i = 0; i < h.bounds.length; i++) {
    acc += h.counts[i];
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: String(h.bounds[i]) }, value: acc });
  }
  acc += h.counts[h.bounds.length];
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: acc });
  out.push({ metricName: `${name}_sum`, labels, value: h.sum });
  out.push({ metricName: `${name}_count`, labels, value: h.count });
}

/** Seconds a GC pause lasts, from 0.1 ms to 1 s. */
const GC_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const GC_KINDS: Record<number, string> = {
  [perf.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perf.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perf.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perf.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

export function createMetrics(src: MetricsSources): GatewayMetrics {
  const registry = new Registry();
  const add = (f: Family): void => registry.registerMetric(f as unknown as Metric);
  const perShard = (fn: (out: Sample[], labels: Labels, p: Pool, k: number) => void) => (out: Sample[]) => {
    for (const p of src.pools())
      for (let k = 0; k < p.backend.shards.length; k++)
        fn(out, { pool: p.name, shard: p.backend.shards[k].label }, p, k);
  };
  const shardCounter = (
    name: string,
    help: string,
    pick: (s: ReturnType<Pool['backend']['shards'][0]['stats']>) => number,
  ) =>
    add(
      new Family(
        name,
        help,
        'counter',
        perShard((out, labels, p, k) => out.push({ labels, value: pick(p.backend.shards[k].stats()) })),
      ),
    );

  add(
    new Family(
      'kvgate_requests_total',
      "Client requests by front, op and outcome (ok, or the code refusing the whole request; a one-key request counts with its item's outcome).",
      'counter',
      (out) =>
        src.tally.forEach((requests, front, op, outcome, n) => {
          if (requests) out.push({ labels: { front, op, outcome }, value: n });
        }),
    ),
  );
  add(
    new Family(
      'kvgate_items_total',
      'Items (keys) of client requests by front, op and outcome: hit, miss, ok, dropped or an error code.',
      'counter',
      (out) =>
        src.tally.forEach((requests, front, op, outcome, n) => {
          if (!requests) out.push({ labels: { front, op, outcome }, value: n });
        }),
    ),
  );

  // Batching: what the knobs (batch.windowMs, maxWaitMs, maxOps, maxBytes, wait hints) do.
  add(
    new Family(
      'kvgate_flush_keys',
      'Client ops per shard flush (duplicates included), per pool.',
      'histogram',
      (out) => {
        for (const p of src.pools()) histogramSamples(out, 'kvgate_flush_keys', { pool: p.name }, p.coalescer.flushOps);
      },
    ),
  );
  add(
    new Family(
      'kvgate_flush_hold_seconds',
      "How long a flush's first op waited in its lane before the flush left, per pool.",
      'histogram',
      (out) => {
        for (const p of src.pools())
          histogramSamples(out, 'kvgate_flush_hold_seconds', { pool: p.name }, p.coalescer.flushHold);
      },
    ),
  );
  add(
    new Family(
      'kvgate_client_keys_total',
      'Client ops handed to a pool for its shards (duplicates included).',
      'counter',
      (out) => {
        for (const p of src.pools()) out.push({ labels: { pool: p.name }, value: p.coalescer.keysIn });
      },
    ),
  );
  shardCounter(
    'kvgate_shard_keys_total',
    'Keys sent to a shard (a key asked twice in one flush is sent once).',
    (s) => s.keys,
  );
  add(
    new Family(
      'kvgate_coalescing_ratio',
      'Client ops per key sent to the shards since start, per pool (1: no coalescing; rate(kvgate_client_keys_total) / rate(kvgate_shard_keys_total) for a window).',
      'gauge',
      (out) => {
        for (const p of src.pools()) {
          let sent = 0;
          for (const s of p.backend.shards) sent += s.stats().keys;
          out.push({ labels: { pool: p.name }, value: sent === 0 ? 0 : p.coalescer.keysIn / sent });
        }
      },
      'max',
    ),
  );
  add(
    new Family(
      'kvgate_shard_flushes_total',
      'Flushes sent to a shard, and how many a batch cap (maxOps, maxBytes) cut early.',
      'counter',
      (out) => {
        for (const p of src.pools()) {
          const st = p.coalescer.stats();
          for (const s of st) {
            out.push({ labels: { pool: p.name, shard: s.shard, cause: 'timing' }, value: s.flushes - s.cuts });
            out.push({ labels: { pool: p.name, shard: s.shard, cause: 'cap' }, value: s.cuts });
          }
        }
      },
    ),
  );

  // Shards.
  add(
    new Family(
      'kvgate_shard_rtt_seconds',
      'Round trip of a batch to a shard: from its write to its last reply.',
      'histogram',
      (out) => {
        for (const p of src.pools())
          for (const s of p.backend.shards)
            histogramSamples(out, 'kvgate_shard_rtt_seconds', { pool: p.name, shard: s.label }, s.rtt);
      },
    ),
  );
  add(
    new Family(
      'kvgate_shard_up',
      'A shard is connected (1) or not (0).',
      'gauge',
      perShard((out, labels, p, k) => out.push({ labels, value: p.backend.shards[k].up ? 1 : 0 })),
      'min',
    ),
  );
  add(
    new Family(
      'kvgate_shard_ejected',
      'A shard is out of its ring by the failure policy (failure.mode eject).',
      'gauge',
      perShard((out, labels, p, k) => out.push({ labels, value: p.backend.shards[k].stats().ejected ? 1 : 0 })),
      'max',
    ),
  );
  add(
    new Family(
      'kvgate_shard_inflight_batches',
      'Batches written to a shard and not fully answered.',
      'gauge',
      perShard((out, labels, p, k) => out.push({ labels, value: p.backend.shards[k].stats().inflightBatches })),
    ),
  );
  shardCounter(
    'kvgate_shard_resets_total',
    'Shard connections lost or closed for a protocol error or a timeout.',
    (s) => s.resets,
  );
  shardCounter('kvgate_shard_reconnects_total', 'Connection attempts to a shard after its first.', (s) => s.reconnects);
  shardCounter(
    'kvgate_shard_retries_total',
    'Gets sent again after a connection broke before any of their answer came.',
    (s) => s.retries,
  );
  shardCounter(
    'kvgate_shard_timeouts_total',
    'Times a shard went quiet with something in flight (its items got TIMEOUT).',
    (s) => s.timeouts,
  );

  // Clients and memory.
  add(
    new Family('kvgate_connections', 'Open client connections by front.', 'gauge', (out) => {
      const c = src.connections();
      out.push({ labels: { front: 'ws' }, value: c.ws }, { labels: { front: 'http' }, value: c.http });
    }),
  );
  const access = src.access;
  if (access !== undefined) {
    add(
      new Family(
        'kvgate_auth_total',
        'Credentials checked (HTTP requests, WebSocket upgrades and auth messages, admin requests) by result: ok, or why refused.',
        'counter',
        (out) => {
          out.push({ labels: { result: 'ok' }, value: access.authOk });
          AUTH_FAILURES.forEach((reason, k) => out.push({ labels: { result: reason }, value: access.authFailures[k] }));
        },
      ),
    );
    add(
      new Family(
        'kvgate_forbidden_items_total',
        "Items refused with FORBIDDEN: the credential's rules do not allow that op on that key.",
        'counter',
        (out) => out.push({ labels: {}, value: access.forbiddenItems }),
      ),
    );
    add(
      new Family(
        'kvgate_rate_limited_total',
        'Requests (or bulk HTTP items) refused with RATE_LIMITED, by the limit that refused them.',
        'counter',
        (out) => {
          const r = access.rates;
          out.push({ labels: { kind: 'ops' }, value: r.refusedOps });
          out.push({ labels: { kind: 'bytes' }, value: r.refusedBytes });
          out.push({ labels: { kind: 'write_bytes' }, value: r.refusedWriteBytes });
        },
      ),
    );
    add(
      new Family(
        'kvgate_connection_limit_refusals_total',
        'WebSocket upgrades refused by security.limits.connections, by the limit that refused them.',
        'counter',
        (out) => {
          const c = access.connections;
          out.push({ labels: { kind: 'address_connections' }, value: c.refusedAddress });
          out.push({ labels: { kind: 'principal_connections' }, value: c.refusedPrincipal });
          out.push({ labels: { kind: 'new_connection_rate' }, value: c.refusedRate });
        },
      ),
    );
    add(
      new Family(
        'kvgate_auth_closed_total',
        'WebSocket connections closed because their credential expired (4001) or a reload revoked it (4003).',
        'counter',
        (out) => {
          out.push({ labels: { reason: 'expired' }, value: access.expiredConnections });
          out.push({ labels: { reason: 'revoked' }, value: access.revokedConnections });
        },
      ),
    );
    add(
      new Family(
        'kvgate_rate_limit_principals',
        'Principals whose rate-limit buckets are held (bounded; idle full ones are swept).',
        'gauge',
        (out) => out.push({ labels: {}, value: access.rates.principals }),
      ),
    );
  }
  add(
    new Family(
      'kvgate_connections_refused_total',
      'Client connections refused at limits.maxConnections.',
      'counter',
      (out) => {
        out.push({ labels: {}, value: src.connections().refused });
      },
    ),
  );
  add(
    new Family(
      'kvgate_slow_consumers_kicked_total',
      'Clients disconnected because their output did not move for limits.stallTimeoutMs.',
      'counter',
      (out) => {
        out.push({ labels: {}, value: src.connections().kicked });
      },
    ),
  );
  add(
    new Family(
      'kvgate_client_buffered_bytes',
      'Bytes held for clients (output not yet taken, parked keys, uploads), against limits.maxBufferedBytesTotal.',
      'gauge',
      (out) => {
        const b = src.buffered();
        out.push({ labels: { kind: 'used' }, value: b.used }, { labels: { kind: 'limit' }, value: b.limit });
      },
    ),
  );
  add(
    new Family('kvgate_pool_buffers', 'Pooled 16 KiB output buffers, in use and free.', 'gauge', (out) => {
      const b = src.buffers();
      out.push({ labels: { state: 'in_use' }, value: b.inUse }, { labels: { state: 'free' }, value: b.free });
    }),
  );

  // The process: event loop, GC, CPU, memory.
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  add(
    new Family(
      'kvgate_event_loop_delay_seconds',
      'Event-loop delay since the last scrape (monitorEventLoopDelay, 10 ms resolution).',
      'summary',
      (out) => {
        const q: [string, number][] = [
          ['0.5', loop.percentile(50)],
          ['0.9', loop.percentile(90)],
          ['0.99', loop.percentile(99)],
          ['1', loop.max],
        ];
        for (const [quantile, ns] of q) out.push({ labels: { quantile }, value: loop.count > 0 ? ns / 1e9 : 0 });
        out.push({
          metricName: 'kvgate_event_loop_delay_seconds_sum',
          labels: {},
          value: (loop.count * (loop.count > 0 ? loop.mean : 0)) / 1e9,
        });
        out.push({ metricName: 'kvgate_event_loop_delay_seconds_count', labels: {}, value: loop.count });
        loop.reset();
      },
      'max',
    ),
  );
  const gc = new Map<string, Histogram>();
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = GC_KINDS[(e as unknown as { detail?: { kind?: number } }).detail?.kind ?? -1] ?? 'other';
      let h = gc.get(kind);
      if (h === undefined) gc.set(kind, (h = new Histogram(GC_BUCKETS)));
      h.observe(e.duration / 1000);
    }
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  add(
    new Family('kvgate_gc_pause_seconds', 'Garbage-collection pauses by kind.', 'histogram', (out) => {
      for (const [kind, h] of gc) histogramSamples(out, 'kvgate_gc_pause_seconds', { kind }, h);
    }),
  );
  add(
    new Family('kvgate_process_cpu_seconds_total', 'CPU time of this process, user and system.', 'counter', (out) => {
      const u = process.cpuUsage();
      out.push(
        { labels: { mode: 'user' }, value: u.user / 1e6 },
        { labels: { mode: 'system' }, value: u.system / 1e6 },
      );
    }),
  );
  add(
    new Family(
      'kvgate_process_memory_bytes',
      'Memory of this process: resident set, V8 heap used, external (Buffers).',
      'gauge',
      (out) => {
        const m = process.memoryUsage();
        out.push(
          { labels: { kind: 'rss' }, value: m.rss },
          { labels: { kind: 'heap_used' }, value: m.heapUsed },
          { labels: { kind: 'external' }, value: m.external },
        );
      },
    ),
  );

  // Configuration.
  add(
    new Family(
      'kvgate_config_generation',
      'Configuration generation: 1 at start, one more per applied reload.',
      'gauge',
      (out) => {
        out.push({ labels: {}, value: src.generation() });
      },
      'min',
    ),
  );
  add(
    new Family('kvgate_reloads_total', 'Configuration reloads by result.', 'counter', (out) => {
      for (const [result, n] of Object.entries(src.reloads())) out.push({ labels: { result }, value: n });
    }),
  );
  add(
    new Family(
      'kvgate_draining',
      'The gateway is draining (1): new requests get SHUTTING_DOWN.',
      'gauge',
      (out) => {
        out.push({ labels: {}, value: src.draining() ? 1 : 0 });
      },
      'max',
    ),
  );

  return {
    registry,
    gcCounts() {
      const out = { young: 0, major: 0, other: 0, pauseMs: 0 };
      for (const [kind, h] of gc) {
        if (kind === 'minor') out.young += h.count;
        else if (kind === 'major') out.major += h.count;
        else out.other += h.count;
        out.pauseMs += h.sum * 1000;
      }
      return out;
    },
    close() {
      loop.disable();
      gcObserver.disconnect();
    },
  };
}
