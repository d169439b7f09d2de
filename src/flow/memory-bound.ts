/**
 * What bounds the gateway's memory, as a formula of its limits (docs/FLOW-CONTROL.md explains each
 * term). Tests hold the measured RSS to it; operators size machines with it (`GET /debug/stats` shows
 * it for the current connection count).
 */
import { resolvedPools, type Config } from '../config/schema';
import { BUFFER_SIZE } from '../stream/buffer-pool';

/** Node, V8's heap at rest, uWS and the code, measured idle on Node 20 (about 52 MB), with headroom. */
const BASE = 96 * 1024 * 1024;
/** uWS socket, session objects and their small buffers, per connection at rest and busy (measured 1.2-7.5 KiB). */
const PER_CONNECTION = 8 * 1024;

export interface MemoryTerms {
  base: number;
  connections: number;
  clientOutput: number;
  shardBatches: number;
  total: number;
}

export function memoryBound(c: Config, connections: number): MemoryTerms {
  const base = BASE;
  const conns = connections * PER_CONNECTION;
  // Everything held for clients (pool buffers, what uWS holds, parked keys) stays within the budget plus
  // its reserve for clients that hold nothing; windows keep each client's share within its window.
  const clientOutput = c.limits.maxBufferedBytesTotal + (c.limits.maxBufferedBytesTotal >>> 3);
  // Open batches: two lanes (immediate, held) of gets and writes per shard, each cut at batch.maxBytes
  // (plus the item that crossed it), plus the shard connection's read buffer. A Redis Cluster pool counts
  // its seed nodes (its masters may be more: size for them).
  const shards = Object.values(resolvedPools(c)).reduce(
    (n, p) => n + (p.backend === 'memcached' ? p.servers.length : (p.cluster ?? p.servers ?? []).length),
    0,
  );
  const shardBatches = shards * (4 * (c.batch.maxBytes + c.limits.maxValueBytes) + 4 * BUFFER_SIZE);
  return { base, connections: conns, clientOutput, shardBatches, total: base + conns + clientOutput + shardBatches };
}
