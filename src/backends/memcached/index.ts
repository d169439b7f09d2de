/**
 * The memcached backend: a pool of ShardConnections placed on a ketama ring (twemproxy-compatible), each
 * connection speaking the meta text protocol (`get` multi-gets, `ms`/`md` writes with opaques).
 */
import type { Backend } from '../../core/backend';
import type { BackendOptions, MemcachedPoolConfig } from '../../core/pools';
import { KetamaRing } from './ketama';
import { ShardConnection } from './shard-connection';

export class MemcachedBackend implements Backend {
  readonly kind = 'memcached' as const;
  readonly shards: ShardConnection[];
  readonly ring: KetamaRing;

  constructor(
    readonly name: string,
    pool: MemcachedPoolConfig,
    options: BackendOptions,
  ) {
    this.ring = new KetamaRing(pool.servers, pool.hash);
    this.shards = pool.servers.map((s) => new ShardConnection(s.host, s.port, options.shard, options.fds));
    // What the gateway would refuse from a client it refuses from a shard too (a longer VALUE is out of step).
    for (const s of this.shards) s.maxValueBytes = options.maxValueBytes;
  }

  shardOf(key: Uint8Array, off: number, len: number): number {
    return this.ring.lookup(key, off, len);
  }

  async connect(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.connect()));
  }

  close(): void {
    for (const s of this.shards) s.close();
  }
}

export function createMemcachedBackend(
  name: string,
  pool: MemcachedPoolConfig,
  options: BackendOptions,
): MemcachedBackend {
  return new MemcachedBackend(name, pool, options);
}

/**
 * What the configuration's shape checks cannot see (config/schema.ts checks the shape): the ring refuses
 * what twemproxy cannot hash (two servers with one ring name, a ring name too long). Returns each problem.
 */
export function checkMemcachedPool(pool: MemcachedPoolConfig): string[] {
  try {
    new KetamaRing(pool.servers, pool.hash);
  } catch (e) {
    return [(e as Error).message];
  }
  return [];
}
