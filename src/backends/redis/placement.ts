/**
 * Where a Redis shard's commands go. A standalone server: always its one connection. A Redis Cluster: the
 * master ioredis's slot table (`Cluster.slots`, refreshed by ioredis every slotsRefreshInterval, on MOVED
 * and when a node is lost) names for the key's slot, looked up when the flush is sent, so a failover or a
 * resharding is followed without the coalescer knowing.
 */
import type { Cluster, Redis } from 'ioredis';
import { RedisNode, type Placement } from './shard';

const noop = (): void => {};

function nodeKey(r: Redis): string {
  return `${r.options.host}:${r.options.port}`;
}

export class ServerPlacement implements Placement {
  readonly cluster = false;
  resets = 0;
  reconnects = 0;
  private readonly node: RedisNode;
  private readonly list: readonly RedisNode[];
  private wasReady = false;

  constructor(label: string, redis: Redis) {
    this.node = new RedisNode(label, redis);
    this.list = [this.node];
    // ioredis emits 'error' for every failed connect; the items that meet it are failed with a code.
    redis.on('error', noop);
    redis.on('ready', () => {
      this.wasReady = true;
    });
    redis.on('reconnecting', () => {
      this.reconnects++;
    });
    redis.on('close', () => {
      if (this.wasReady) this.resets++;
      this.wasReady = false;
    });
  }

  get up(): boolean {
    return this.node.redis.status === 'ready';
  }

  nodeOf(_slot: number): RedisNode {
    return this.node;
  }

  /** A standalone server does not redirect. */
  nodeNamed(_hostPort: string): RedisNode | null {
    return null;
  }

  refresh(): void {}

  nodes(): readonly RedisNode[] {
    return this.list;
  }

  connect(): Promise<void> {
    return this.node.redis.connect().then(noop, noop);
  }

  close(): void {
    this.node.redis.disconnect();
  }
}

export class ClusterPlacement implements Placement {
  readonly cluster = true;
  resets = 0;
  reconnects = 0;
  private readonly byKey = new Map<string, RedisNode>();

  constructor(
    private readonly c: Cluster,
    private readonly connectTimeoutMs: number,
  ) {
    c.on('error', noop);
    c.on('node error', noop);
    c.on('reconnecting', () => {
      this.reconnects++;
    });
    c.on('+node', (r: Redis) => {
      const key = nodeKey(r);
      if (this.byKey.get(key)?.redis !== r) this.byKey.set(key, new RedisNode(key, r));
      // ioredis opens node connections on first use; open them now, so the first flush finds them ready.
      if (r.status === 'wait') r.connect().catch(noop);
    });
    c.on('-node', (r: Redis) => {
      const key = nodeKey(r);
      if (this.byKey.get(key)?.redis === r) this.byKey.delete(key);
      // No refresh here: while a dead master is still in the slot table, every refresh recreates its
      // connection, which fails and ends again; ioredis's periodic refresh paces that.
      this.resets++;
    });
  }

  get up(): boolean {
    return this.c.status === 'ready';
  }

  nodeOf(slot: number): RedisNode | null {
    const owners = this.c.slots[slot];
    return owners === undefined || owners.length === 0 ? null : this.nodeNamed(owners[0]);
  }

  nodeNamed(hostPort: string): RedisNode | null {
    return this.byKey.get(hostPort) ?? null;
  }

  refresh(): void {
    if (this.c.status === 'ready') this.c.refreshSlotsCache();
  }

  nodes(): readonly RedisNode[] {
    return [...this.byKey.values()];
  }

  /** Resolves once the slot table was read and every node had its connect attempt (or the cluster failed). */
  async connect(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.connectTimeoutMs * 2);
    });
    const attempt = (async (): Promise<void> => {
      try {
        await this.c.connect();
      } catch {
        return; // ioredis keeps retrying (clusterRetryStrategy); the shard is down until it succeeds
      }
      await Promise.all(
        this.c.nodes('all').map((r) => (r.status === 'ready' ? undefined : r.connect().then(noop, noop))),
      );
    })();
    await Promise.race([attempt, bound]);
    clearTimeout(timer);
  }

  close(): void {
    this.c.disconnect();
  }
}
