/**
 * The Redis backend: a pool that is one standalone Redis server or one Redis Cluster, through ioredis.
 *
 * A Redis Cluster is ONE shard for the coalescer, not one per master. The coalescer's shards are fixed
 * when the gateway starts, while a cluster's masters are not: a failover promotes a replica (a new
 * host:port), a resharding moves slots between masters. So the shard's `send` groups the flush per master
 * itself, from ioredis's slot table at the moment of sending, and writes one pipeline per master (see
 * shard.ts); a flush never waits on a routing decision made when its first item arrived. The cost: the
 * coalescer's op and byte caps count the whole cluster's flush, and its per-shard stats are one line
 * (`nodeStats()` on the shard gives one line per node). `shardOf` is therefore always 0.
 *
 * Client settings, for a gateway that promises each item one honest answer:
 *  - `enableOfflineQueue: false`: a command for a server that is not connected fails at once (SHARD_DOWN)
 *    instead of waiting in memory. (Cluster node connections are created by ioredis's ConnectionPool with
 *    the offline queue forced on; the shard sends nothing to a node whose connection was lost, and what
 *    waits for a node still opening is bounded by the command timeout.)
 *  - `autoResendUnfulfilledCommands: false` and `maxRetriesPerRequest: 0`: a command in flight when its
 *    connection closes fails at once. With a higher maxRetriesPerRequest ioredis keeps such commands until
 *    a later reconnect and, with resending off, then drops them without an answer (only the command timeout
 *    would settle them). Writes are never resent; a get is resent once, by the shard (shard.ts).
 *  - `commandTimeout`: every command fails with TIMEOUT after it (a late reply is still consumed by
 *    ioredis in order, so the connection stays in step, unlike memcached's text protocol).
 *  - `enableAutoPipelining: false`: the shard pipelines per flush itself.
 *  - Cluster: `scaleReads: 'master'` (a replica may be behind: a get must see the writes before it),
 *    `retryDelayOnFailover: 0` and `retryDelayOnClusterDown: 0` (ioredis would otherwise resend a single
 *    command, a write too, after a lost connection), MOVED/ASK followed by the shard per command.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Backend, Shard } from '../../core/backend';
import type { RedisPoolConfig } from '../../core/pools';
import type { Events } from '../../core/events';
import { ClusterPlacement, ServerPlacement } from './placement';
import { MAX_HOPS, RedisShard } from './shard';

export { keySlot, crc16, SLOTS } from './slot';
export { RedisShard } from './shard';

export type { RedisPoolConfig } from '../../core/pools';

export interface RedisBackendOptions {
  commandTimeoutMs: number;
  maxValueBytes: number;
  batchMaxOps: number;
  /** Where the connection's state changes go (shard.up, shard.down with the reason). */
  events?: Events;
}

function hostPort(s: string, pool: string): { host: string; port: number } {
  const at = s.lastIndexOf(':');
  const host = at > 0 ? s.slice(0, at).replace(/^\[(.*)\]$/, '$1') : '';
  const port = at > 0 ? Number(s.slice(at + 1)) : NaN;
  if (host === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`pool ${pool}: "${s}" is not host:port`);
  }
  return { host, port };
}

/** Reconnect after 50, 100, 200 ... ms, at most 2 s apart. */
function reconnectDelay(times: number): number {
  return Math.min(50 * 2 ** Math.min(times - 1, 6), 2000);
}

/** Logs a standalone server's connection going up and down (once per change, with ioredis's reason). */
function reportState(redis: Redis, label: string, events: Events): void {
  let up = false;
  let lastError = '';
  redis.on('error', (e: Error) => {
    lastError = e.message;
  });
  redis.on('ready', () => {
    up = true;
    events.emit('shard', 'shard.up', 'info', `Redis ${label} is up`, { shard: label }, label);
  });
  redis.on('close', () => {
    if (!up) return;
    up = false;
    const reason = lastError || 'connection closed';
    events.emit('shard', 'shard.down', 'warn', `Redis ${label} is down: ${reason}`, { shard: label, reason }, label);
  });
}

export function createRedisBackend(name: string, cfg: RedisPoolConfig, opts: RedisBackendOptions): Backend {
  const timeoutMs = cfg.commandTimeoutMs ?? opts.commandTimeoutMs;
  const hasServers = cfg.servers !== undefined && cfg.servers.length > 0;
  const hasCluster = cfg.cluster !== undefined && cfg.cluster.length > 0;
  if (hasServers === hasCluster) {
    throw new Error(`pool ${name}: a Redis pool names either "servers" (one server) or "cluster" (seed nodes)`);
  }
  if (hasServers && cfg.servers!.length !== 1) {
    throw new Error(`pool ${name}: a standalone Redis pool has exactly one server (use "cluster" for more)`);
  }
  const connectTimeout = Math.max(timeoutMs, 1000);
  const client: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    commandTimeout: timeoutMs,
    connectTimeout,
    enableAutoPipelining: false,
    enableReadyCheck: true,
    autoResubscribe: false,
    retryStrategy: reconnectDelay,
  };
  const shardOpts = {
    maxValueBytes: opts.maxValueBytes,
    commandTimeoutMs: timeoutMs,
    maxKeysPerMget: opts.batchMaxOps,
  };
  let shard: RedisShard;
  if (hasServers) {
    const label = cfg.servers![0];
    const { host, port } = hostPort(label, name);
    const redis = new Redis({ ...client, host, port });
    if (opts.events !== undefined) reportState(redis, label, opts.events);
    shard = new RedisShard(label, new ServerPlacement(label, redis), shardOpts);
  } else {
    const seeds = cfg.cluster!.map((s) => hostPort(s, name));
    const c = new Cluster(seeds, {
      lazyConnect: true,
      enableOfflineQueue: false,
      enableAutoPipelining: false,
      enableReadyCheck: true,
      scaleReads: 'master',
      maxRedirections: MAX_HOPS,
      retryDelayOnFailover: 0,
      retryDelayOnClusterDown: 0,
      retryDelayOnTryAgain: 50,
      slotsRefreshInterval: 1000,
      slotsRefreshTimeout: Math.min(connectTimeout, 2000),
      clusterRetryStrategy: reconnectDelay,
      redisOptions: client,
    });
    shard = new RedisShard(`cluster ${cfg.cluster!.join(',')}`, new ClusterPlacement(c, connectTimeout), shardOpts);
  }
  const shards: readonly Shard[] = [shard];
  return {
    name,
    kind: 'redis',
    shards,
    shardOf: () => 0,
    connect: () => shard.connect(),
    close: () => shard.close(),
  };
}
