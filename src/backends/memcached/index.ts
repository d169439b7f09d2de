/**
 * The memcached backend: a pool of ShardConnections placed on a ketama ring (twemproxy-compatible), each
 * connection speaking the meta text protocol (`get` multi-gets, `ms`/`md` writes with opaques). With
 * `failure.mode: eject` it also runs the failure policy (ejection.ts): a shard that keeps failing leaves
 * the ring (keys are placed on a ring over the others), is probed (probe.ts) and comes back; shardOf
 * always answers in the configured shard numbering.
 */
import type { Backend } from '../../core/backend';
import type { Events } from '../../core/events';
import type { BackendOptions, FailurePolicy, MemcachedPoolConfig, ServerSpec } from '../../core/pools';
import { Ejection } from './ejection';
import { KetamaRing } from './ketama';
import { PlacementCache } from './placement-cache';
import { probeVersion } from './probe';
import { ShardConnection } from './shard-connection';

/** Where one key lands on a memcached pool's ketama ring, and why (MemcachedBackend.explain). */
export interface KetamaPlacement {
  hash: string;
  keyHash: number;
  pointIndex: number;
  point: number;
  points: number;
  ringServer: string;
  shard: number;
  configuredRing: boolean;
}

export class MemcachedBackend implements Backend {
  readonly kind = 'memcached' as const;
  readonly shards: ShardConnection[];
  /** The configured ring, over every server (what `fail-fast` places keys with, always). */
  readonly ring: KetamaRing;
  /** The ring keys are placed with now: `ring`, or in `eject` mode one over the shards not ejected. */
  private live: KetamaRing;
  /** `liveIndex[i]`: the index into `shards` of the live ring's server i (null: the live ring is `ring`). */
  private liveIndex: Int32Array | null = null;
  /**
   * Recent placements on `live` (null: none kept). Only with `hash: md5` over several servers: there the
   * md5 is most of a lookup, while an fnv1a_64 lookup costs no more than the cache's own slot hash.
   */
  private readonly placement: PlacementCache | null;
  /** Per shard, in `eject` mode; null in `fail-fast`. */
  private readonly ejections: Ejection[] | null;
  private readonly probeTimers: (NodeJS.Timeout | null)[];
  /** The probe of shard i answered and its own connection is opening: it returns once that is up. */
  private readonly awaitingUp: boolean[];
  private closed = false;
  private readonly servers: ServerSpec[];
  private readonly events: Events;

  constructor(
    readonly name: string,
    private readonly pool: MemcachedPoolConfig,
    private readonly options: BackendOptions,
  ) {
    this.servers = pool.servers;
    this.events = options.events;
    this.ring = new KetamaRing(pool.servers, pool.hash);
    this.live = this.ring;
    this.placement = pool.hash === 'md5' && pool.servers.length > 1 ? new PlacementCache(this.ring) : null;
    this.shards = pool.servers.map(
      (s) => new ShardConnection(s.host, s.port, { ...options.shard, events: options.events }, options.fds),
    );
    // What the gateway would refuse from a client it refuses from a shard too (a longer VALUE is out of step).
    for (const s of this.shards) s.maxValueBytes = options.maxValueBytes;
    this.probeTimers = this.shards.map(() => null);
    this.awaitingUp = this.shards.map(() => false);
    this.ejections = pool.failure.mode === 'eject' ? this.shards.map(() => new Ejection(pool.failure)) : null;
    if (this.ejections !== null) {
      const ej = this.ejections;
      this.shards.forEach((s, i) => {
        s.onFailure = (reason) => {
          if (this.awaitingUp[i]) {
            // The probe answered but the connection did not open: probe again later.
            this.awaitingUp[i] = false;
            ej[i].probeFailed();
            this.scheduleProbe(i);
          } else if (ej[i].failure()) this.eject(i, reason);
        };
        s.onAnswered = () => ej[i].success();
        s.onUp = () => {
          if (this.awaitingUp[i]) this.restore(i);
        };
      });
    }
  }

  /** The failure policy in force (`pool.failure`). */
  get failure(): FailurePolicy {
    return this.pool.failure;
  }

  /** Always an index into `shards` (the configured order), whichever ring is live. Allocates nothing. */
  shardOf(key: Uint8Array, off: number, len: number): number {
    const cache = this.placement;
    const i = cache === null ? this.live.lookup(key, off, len) : cache.lookup(key, off, len);
    const map = this.liveIndex;
    return map === null ? i : map[i];
  }

  /**
   * Where a key is placed and why (the admin console; allocates): its hash on the ring in use now, the
   * ring point chosen and the shard it belongs to (an index into `shards`). `live` is false while the
   * failure policy has ejected shards and keys are placed on a ring over the others.
   */
  explain(key: Uint8Array): KetamaPlacement {
    const at = this.live.locate(key);
    const map = this.liveIndex;
    return {
      hash: this.pool.hash,
      keyHash: at.hash,
      pointIndex: at.pointIndex,
      point: at.point,
      points: this.live.size,
      ringServer: at.name,
      shard: map === null ? at.server : map[at.server],
      configuredRing: map === null,
    };
  }

  async connect(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.connect()));
  }

  close(): void {
    this.closed = true;
    for (let i = 0; i < this.probeTimers.length; i++) {
      const t = this.probeTimers[i];
      if (t !== null) clearTimeout(t);
      this.probeTimers[i] = null;
    }
    for (const s of this.shards) s.close();
  }

  private eject(i: number, reason: string): void {
    const e = this.ejections![i];
    const s = this.shards[i];
    s.ejected = true;
    this.rebuild();
    this.events.emit(
      'shard',
      'shard.ejected',
      'warn',
      `${s.label} left the ring of pool ${this.name} after ${this.pool.failure.failureLimit} failures; probed in ${e.retryMs} ms`,
      { shard: s.label, pool: this.name, failures: this.pool.failure.failureLimit, retryMs: e.retryMs, reason },
      s.label,
    );
    this.scheduleProbe(i);
  }

  private scheduleProbe(i: number): void {
    if (this.closed) return;
    const wait = Math.max(0, this.ejections![i].probeAt - Date.now());
    this.probeTimers[i] = setTimeout(() => {
      this.probeTimers[i] = null;
      void this.probe(i);
    }, wait);
  }

  private async probe(i: number): Promise<void> {
    const s = this.shards[i];
    const shard = this.options.shard;
    const why = await probeVersion(s.host, s.port, shard.connectTimeoutMs + shard.timeoutMs, this.options.fds);
    if (this.closed) return;
    if (why !== null) {
      this.ejections![i].probeFailed();
      this.scheduleProbe(i);
      return;
    }
    if (s.up) {
      this.restore(i);
      return;
    }
    // The server answers but the shard's own connection is still waiting out its backoff: open it now,
    // and return the shard once it is up (so its keys do not come back to a connection that is down).
    this.awaitingUp[i] = true;
    s.reconnectNow();
  }

  private restore(i: number): void {
    const s = this.shards[i];
    this.awaitingUp[i] = false;
    const outMs = this.ejections![i].returned();
    s.ejected = false;
    this.rebuild();
    this.events.emit(
      'shard',
      'shard.returned',
      'info',
      `${s.label} is back in the ring of pool ${this.name} after ${outMs} ms out`,
      { shard: s.label, pool: this.name, outMs },
      s.label,
    );
  }

  /**
   * Places keys over the shards not ejected. With none ejected, or every one (an empty ring places
   * nothing), the configured ring: each key then fails with SHARD_DOWN on its own shard until one returns.
   */
  private rebuild(): void {
    const keep: number[] = [];
    for (let i = 0; i < this.shards.length; i++) if (!this.shards[i].ejected) keep.push(i);
    if (keep.length === this.shards.length || keep.length === 0) {
      this.live = this.ring;
      this.liveIndex = null;
    } else {
      this.live = new KetamaRing(
        keep.map((i) => this.servers[i]),
        this.pool.hash,
      );
      this.liveIndex = Int32Array.from(keep);
    }
    // The cached answers are indices on the ring that was live until now.
    this.placement?.use(this.live);
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
