/**
 * The seam between the shared core (routing, coalescing, flow control, fronts) and a backend (a pool of
 * shards with its own placement and wire codec). The coalescer decides *when* a shard's ops leave (end of
 * turn, window, hint, caps: the same for every backend); the backend decides *how* they are written and
 * read back. A codec writes into its batches' buffers and reports each item to its Request; it never sees
 * a front, a socket of a client, or another shard.
 */
import type { ErrorCode } from './errors';
import type { Histogram } from './histogram';
import type { Request } from './request';

/** The gets bound for one shard in one flush. Duplicate keys are fetched once and fanned out. */
export interface GetOps {
  readonly kind: 0;
  /** The op cap (batch.maxOps) is reached: the coalescer sends the batch now. */
  readonly full: boolean;
  /** Bytes held so far, compared with batch.maxBytes. */
  readonly bytes: number;
  add(req: Request, i: number, key: Uint8Array, koff: number, klen: number): void;
  /** Settles every item not settled yet with this error. */
  fail(code: ErrorCode, message?: string): void;
  /** Empties the batch for reuse (after every item settled). */
  reset(): void;
}

/** The sets and deletes bound for one shard in one flush, applied in arrival order. */
export interface MutOps {
  readonly kind: 1;
  readonly full: boolean;
  readonly bytes: number;
  /** Starts a set; the caller then appends exactly `vlen` value bytes and calls endSet(). */
  beginSet(
    req: Request,
    i: number,
    key: Uint8Array,
    koff: number,
    klen: number,
    ttl: number,
    flags: number,
    vlen: number,
  ): void;
  appendValue(src: Uint8Array, off: number, len: number): void;
  endSet(): void;
  addDel(req: Request, i: number, key: Uint8Array, koff: number, klen: number): void;
  fail(code: ErrorCode, message?: string): void;
  reset(): void;
}

export type Ops = GetOps | MutOps;

export interface ShardStats {
  shard: string;
  up: boolean;
  writes: number;
  batches: number;
  keys: number;
  resets: number;
  inflightBatches: number;
  /** Connection attempts after the first (each reconnect, successful or not). */
  reconnects: number;
  /** Gets sent again after a connection broke before any of their answer arrived. */
  retries: number;
  /** Batches failed with TIMEOUT (the shard went quiet with something in flight). */
  timeouts: number;
  /** Out of the ring by the failure policy (failure.mode `eject`); always false in `fail-fast`. */
  ejected: boolean;
}

/** Where the coalescer sends one shard's flush: a memcached server, a Redis server or a Redis Cluster. */
export interface Shard {
  readonly label: string;
  /** False while the shard cannot take a batch: the coalescer fails the batch with SHARD_DOWN instead. */
  readonly up: boolean;
  newGets(maxOps: number): GetOps;
  newMuts(maxOps: number): MutOps;
  /**
   * Before a set joins a batch: false after rejecting the item (req.reject) when this shard cannot store
   * it (memcached: over item_size_max; Redis: non-zero flags are BAD_FLAGS).
   */
  admitSet(req: Request, i: number, klen: number, vlen: number, flags: number): boolean;
  /** Writes go before reads. Each batch is handed back through onBatchDone once every item settled. */
  send(mut: MutOps | null, get: GetOps | null): void;
  onBatchDone: (b: Ops) => void;
  stats(): ShardStats;
  /** Seconds from a batch's write to its last reply (per batch, never per key). */
  readonly rtt: Histogram;
  close(): void;
}

/** A pool of shards with its own placement (ketama for memcached, hash slots for Redis Cluster). */
export interface Backend {
  /** The pool's name in the configuration. */
  readonly name: string;
  readonly kind: 'memcached' | 'redis';
  readonly shards: readonly Shard[];
  /** The index in `shards` of the shard owning this key. */
  shardOf(key: Uint8Array, off: number, len: number): number;
  /** Resolves once every shard was tried once (a shard that is down does not fail the start). */
  connect(): Promise<void>;
  close(): void;
}
