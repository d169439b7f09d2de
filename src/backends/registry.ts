/**
 * The backends a pool may name (`"backend": "memcached"`), each with the factory that builds its Backend
 * and the check of its settings beyond their shape. memcached is built in; another backend is plugged in
 * with registerBackend (Redis: `registerBackend('redis', createRedisBackend)`). A pool naming a backend
 * that has no factory here is a configuration error, named at start like every other.
 *
 * Backends never import config/ (their settings' types are in core/pools.ts): config/schema.ts reads this
 * table to validate pools, so a backend importing config would close a cycle.
 */
import type { BackendFactory, BackendKind, PoolConfig } from '../core/pools';
import { checkMemcachedPool, createMemcachedBackend } from './memcached';
import { createRedisBackend } from './redis';

type PoolOf<K extends BackendKind> = Extract<PoolConfig, { backend: K }>;

export interface BackendEntry<K extends BackendKind = BackendKind> {
  create: BackendFactory<PoolOf<K>>;
  /** Problems with a pool's settings that their shape does not show (each a sentence, without the path). */
  check?: (pool: PoolOf<K>) => string[];
}

const entries = new Map<BackendKind, BackendEntry>();

/** Makes `kind` available to pools; a second registration of a kind replaces the first. */
export function registerBackend<K extends BackendKind>(
  kind: K,
  create: BackendFactory<PoolOf<K>>,
  check?: (pool: PoolOf<K>) => string[],
): void {
  entries.set(kind, { create, check } as unknown as BackendEntry);
}

export function backendEntry(kind: BackendKind): BackendEntry | undefined {
  return entries.get(kind);
}

registerBackend('memcached', createMemcachedBackend, checkMemcachedPool);
// A Redis command has its own timeout (no progress-based shard timeout as for memcached): shard.timeoutMs,
// unless the pool names commandTimeoutMs.
registerBackend('redis', (name, pool, o) =>
  createRedisBackend(name, pool, {
    commandTimeoutMs: o.shard.timeoutMs,
    maxValueBytes: o.maxValueBytes,
    batchMaxOps: o.maxOps,
    events: o.events,
  }),
);
