/**
 * What a reload may change, decided before anything is touched. A new configuration is compared with the
 * running one setting by setting:
 * - the fleet (servers, hash, failure, pools, routes, defaultPool): changed pools get new backends;
 * - `shard.*`, `limits.maxValueBytes` and `batch.maxOps`, which a backend is built with: every pool gets
 *   new backends (new connections; batches in flight finish on the old ones);
 * - `batch.*` and the other `limits.*`: new requests see them (the fronts read the running configuration
 *   per request; clients already connected stay, even past a lowered `limits.maxConnections`);
 * - `log.level`;
 * - `security.auth` (keys and JWT settings: open WebSockets are checked again, and those whose credential
 *   no longer passes are closed), `security.limits` rates (their buckets start full again),
 *   `security.trustedProxies`, `security.allowedOrigins` and `security.allowedHosts`, for requests and
 *   connections from then on.
 * Everything else is read once at start (listeners, workers, uWS's WebSocket settings, the descriptor
 * reserve, the buffer pool, the drain), so a change to it refuses the whole reload and names each such
 * setting: half a reload is worse than none.
 */
import { resolvedPools, type Config } from '../config/schema';
import type { PoolConfig } from '../core/pools';

/** Top-level settings a reload applies whole. */
const APPLIED = new Set(['servers', 'hash', 'failure', 'pools', 'routes', 'defaultPool', 'batch', 'shard', 'log']);
/** Of `security`, what a reload applies (the connection limits count connections open now: restart-only). */
const SECURITY_APPLIED = new Set([
  'security.auth',
  'security.limits',
  'security.trustedProxies',
  'security.allowedOrigins',
  'security.allowedHosts',
]);
/** Of `limits`, the one that holds real descriptors open from the start. */
const LIMITS_RESTART_ONLY = new Set(['reservedDescriptors']);
/** Settings a backend is built with: a change rebuilds every pool. */
const BUILT_WITH = (path: string): boolean =>
  path.startsWith('shard.') || path === 'limits.maxValueBytes' || path === 'batch.maxOps';

export interface ConfigDiff {
  /** Every setting path that differs (`servers`, `batch.windowMs`, `limits.maxConnections`). */
  changed: string[];
  /** The changed ones a reload cannot apply. */
  restartOnly: string[];
  /** Pools (resolved: the top-level servers make `default`) that are new or whose settings differ. */
  rebuilt: string[];
  /** Pools no longer configured. */
  removed: string[];
  batchChanged: boolean;
}

/** JSON with object keys sorted, so that two equal settings compare equal whatever their key order. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

export function diffConfig(running: Config, next: Config): ConfigDiff {
  const changed: string[] = [];
  const restartOnly: string[] = [];
  const a = running as unknown as Record<string, unknown>;
  const b = next as unknown as Record<string, unknown>;
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[key],
      y = b[key];
    if (canonical(x) === canonical(y)) continue;
    const nested =
      x !== null &&
      y !== null &&
      typeof x === 'object' &&
      typeof y === 'object' &&
      !Array.isArray(x) &&
      key !== 'pools';
    const paths = nested
      ? [...new Set([...Object.keys(x), ...Object.keys(y as object)])]
          .filter((k) => canonical((x as Record<string, unknown>)[k]) !== canonical((y as Record<string, unknown>)[k]))
          .map((k) => `${key}.${k}`)
      : [key];
    for (const path of paths) {
      changed.push(path);
      const applied =
        key === 'limits'
          ? !LIMITS_RESTART_ONLY.has(path.slice('limits.'.length))
          : key === 'security'
            ? SECURITY_APPLIED.has(path)
            : APPLIED.has(key);
      if (!applied) restartOnly.push(path);
      if (path === 'security.limits' && connectionLimitsDiffer(running, next))
        restartOnly.push('security.limits.connections');
    }
  }
  const before: Record<string, PoolConfig> = resolvedPools(running);
  const after: Record<string, PoolConfig> = resolvedPools(next);
  const all = changed.some(BUILT_WITH);
  const rebuilt = Object.keys(after).filter(
    (n) => all || before[n] === undefined || canonical(before[n]) !== canonical(after[n]),
  );
  const removed = Object.keys(before).filter((n) => after[n] === undefined);
  return {
    changed,
    restartOnly,
    rebuilt,
    removed,
    batchChanged: changed.some((p) => p.startsWith('batch.')),
  };
}

function connectionLimitsDiffer(a: Config, b: Config): boolean {
  return canonical(a.security?.limits?.connections) !== canonical(b.security?.limits?.connections);
}
