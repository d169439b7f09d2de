/**
 * What a pool is configured with, and how a backend is built from it: plain data types shared by the
 * configuration (config/schema.ts validates them), the backends (each builds its Backend from its own
 * kind) and the gateway. They live in core so that no backend imports the configuration: config may name
 * backends (to validate their settings), backends never name config.
 */
import type { Backend } from './backend';
import type { Events } from './events';

/** Key hash of a memcached pool's ketama ring (twemproxy's names). */
export type HashName = 'fnv1a_64' | 'md5';

/** One memcached server. */
export interface ServerSpec {
  host: string;
  port: number;
  weight: number;
  /** twemproxy's `name`: when set it replaces host[:port] on the ring, so renaming a host keeps its keys. */
  name?: string;
}

/**
 * What a memcached pool does with a failing shard (twemproxy's auto_eject_hosts / server_failure_limit /
 * server_retry_timeout, mcrouter's TKO). `fail-fast`: the ring never changes; a dead shard's keys fail
 * with SHARD_DOWN. `eject`: after `failureLimit` consecutive failures the shard leaves the ring until a
 * probe succeeds, `retryTimeoutMs` after it left, doubling (up to `maxRetryTimeoutMs`) each time it is
 * ejected again soon after it came back.
 */
export interface FailurePolicy {
  mode: 'fail-fast' | 'eject';
  failureLimit: number;
  retryTimeoutMs: number;
  maxRetryTimeoutMs: number;
}

export interface MemcachedPoolConfig {
  backend: 'memcached';
  servers: ServerSpec[];
  hash: HashName;
  failure: FailurePolicy;
}

/** Standalone (`servers`: exactly one "host:port") or Redis Cluster (`cluster`: seed nodes). */
export interface RedisPoolConfig {
  backend: 'redis';
  servers?: string[];
  cluster?: string[];
  /** Per-command timeout; the shard timeout (shard.timeoutMs) when absent. */
  commandTimeoutMs?: number;
}

export type PoolConfig = MemcachedPoolConfig | RedisPoolConfig;
export type BackendKind = PoolConfig['backend'];

/** A key prefix and the pool its keys go to. */
export interface RouteSpec {
  prefix: string;
  pool: string;
}

/** What every backend of one gateway gets besides its own pool's settings. */
export interface BackendOptions {
  /** Largest value taken from a shard (limits.maxValueBytes): a longer one is the shard out of step. */
  maxValueBytes: number;
  /** batch.maxOps: the most keys one multi-key command of a flush may carry. */
  maxOps: number;
  /** The `shard` settings: reply timeout, connect timeout, reconnect backoff. */
  shard: { timeoutMs: number; connectTimeoutMs: number; reconnectMinMs: number; reconnectMaxMs: number };
  /**
   * Descriptors held in reserve for backend connections: lend() one just before opening a connection,
   * restock() once it is open or failed (so a process whose descriptors clients used up still reaches
   * its shards). Null when there is no reserve (tests).
   */
  fds: { lend(): void; restock(): void } | null;
  /** Where a backend reports shard state changes, resets, timeouts and retries. */
  events: Events;
}

/** Builds a pool's Backend; connect() is called by the gateway, not here. */
export type BackendFactory<P extends PoolConfig = PoolConfig> = (
  name: string,
  pool: P,
  options: BackendOptions,
) => Backend;
