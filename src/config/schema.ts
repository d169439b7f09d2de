/**
 * The one configuration schema. Defaults live in config/default.json; a --config file and flags override
 * them; `validateConfig` checks everything at start and names every bad field at once.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { backendEntry } from '../backends/registry';
import { isValidKey } from '../core/key';
import { validateSecurity, type SecurityConfig } from '../security/settings';
import type {
  FailurePolicy,
  HashName,
  MemcachedPoolConfig,
  PoolConfig,
  RedisPoolConfig,
  RouteSpec,
  ServerSpec,
} from '../core/pools';

export type { FailurePolicy, HashName, PoolConfig, RouteSpec, ServerSpec } from '../core/pools';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  host: string;
  port: number;
  /** The operational listener (/metrics, /debug/stats, /readyz, /admin/reload); never the public port. */
  admin: { enabled: boolean; host: string; port: number };
  log: { level: LogLevel };
  /** Gateway processes sharing the public port (`auto`: one per CPU). 1: one process, an exclusive listen. */
  workers: number | 'auto';
  /** The memcached servers of the pool named `default` (with `hash`); none and no pools: a local fleet. */
  servers: ServerSpec[];
  hash: HashName;
  /** Named pools, each with its own backend and servers (the `default` pool comes from `servers`). */
  pools: Record<string, PoolConfig>;
  /** Keys starting with a route's prefix go to its pool, the longest prefix first; others to defaultPool. */
  routes: RouteSpec[];
  defaultPool: string;
  /** What a memcached pool does with a shard that keeps failing; a pool's own `failure` overrides fields. */
  failure: FailurePolicy;
  localFleet: { count: number; memoryMb: number; threads: number };
  batch: { windowMs: number; maxWaitMs: number; maxOps: number; maxBytes: number };
  limits: {
    maxValueBytes: number;
    maxTtlSeconds: number;
    maxInflightPerConnection: number;
    maxItemsPerRequest: number;
    maxBufferedBytesPerConnection: number;
    /** Output held for all clients together (pool buffers, reservations for gets in flight, parked keys). */
    maxBufferedBytesTotal: number;
    /** WebSocket connections and HTTP requests in progress, together. */
    maxConnections: number;
    /** File descriptors kept free for shard (re)connections, whatever the clients do. */
    reservedDescriptors: number;
    /** A client whose held output has not moved for this long is disconnected (0: never). */
    stallTimeoutMs: number;
  };
  shard: { timeoutMs: number; connectTimeoutMs: number; reconnectMinMs: number; reconnectMaxMs: number };
  ws: { idleTimeoutSeconds: number; maxPayloadBytes: number };
  pool: { maxFreeBuffers: number };
  shutdown: { drainMs: number };
  debugStats: boolean;
  /** Browser safety, proxies, credentials and limits (security/settings.ts). */
  security: SecurityConfig;
}

/** One bad setting: `path` is where it is (`batch.maxOps`, `servers[1].port`), `text` the whole sentence. */
export interface ConfigProblem {
  path: string;
  text: string;
}

/** Carries every problem found, so that the caller can name each one (and say which flag or file set it). */
export class ConfigError extends Error {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[] | string) {
    const list = typeof problems === 'string' ? [{ path: '', text: problems }] : problems;
    super('invalid configuration:\n  - ' + list.map((p) => p.text).join('\n  - '));
    this.problems = list;
  }
}

const ROOT = join(__dirname, '..', '..', '..');

export function defaultConfig(): Config {
  return JSON.parse(readFileSync(join(ROOT, 'config', 'default.json'), 'utf8')) as Config;
}

/** "host:port[:weight][ name]" list, comma separated, as `--servers` takes it. */
export function splitServerList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Parsed `--servers`; throws on the first bad one (validateConfig names each). */
export function parseServerList(text: string): ServerSpec[] {
  return splitServerList(text).map(parseServer);
}

const SERVER_FIELDS = new Set(['host', 'port', 'weight', 'name']);

export function parseServer(spec: string | Partial<ServerSpec>): ServerSpec {
  if (typeof spec !== 'string') {
    return {
      host: String(spec.host ?? ''),
      port: Number(spec.port),
      weight: Number(spec.weight ?? 1),
      name: spec.name,
    };
  }
  const [addr, name] = spec.trim().split(/\s+/, 2);
  const parts = addr.split(':');
  if (parts.length < 2 || parts.length > 3) throw new ConfigError(`server "${spec}": expected host:port[:weight]`);
  const whole = (what: string, v: string): number => {
    if (!/^\d+$/.test(v)) throw new ConfigError(`server "${spec}": ${what} must be a whole number (got "${v}")`);
    return Number(v);
  };
  return {
    host: parts[0],
    port: whole('port', parts[1]),
    weight: parts[2] === undefined ? 1 : whole('weight', parts[2]),
    name,
  };
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function deepMerge<T>(base: T, over: unknown): T {
  if (!isObject(over)) return over as T;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over)) {
    const b = (base as Record<string, unknown>)[k];
    // defineProperty, not `out[k] =`: a JSON "__proto__" stays an own key, so it is named as unknown.
    const value = isObject(b) && Object.hasOwn(base as object, k) ? deepMerge(b, v) : v;
    Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
  }
  return out as T;
}

export function mergeConfig(base: Config, over: unknown): Config {
  return deepMerge(base, over);
}

const isInt = (v: unknown, min: number, max: number): boolean =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** JSON.stringify, except that NaN and the infinities, which it writes as null, keep their names. */
const shown = (v: unknown): string => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : JSON.stringify(v));

/**
 * Names every key the defaults do not have, at any depth, and every section (`batch`, ...) that is not an
 * object; such a section's fields are not checked one by one (`bad` collects it).
 */
function unknownSettings(
  raw: Record<string, unknown>,
  known: Record<string, unknown>,
  prefix: string,
  errs: ConfigProblem[],
  bad: Set<string>,
): void {
  for (const [k, v] of Object.entries(raw)) {
    const path = prefix + k;
    if (!Object.hasOwn(known, k)) {
      errs.push({ path, text: `unknown setting "${path}"` });
    } else if (path === 'security.auth' || path === 'security.limits') {
      // Checked field by field by security/settings.ts, which names its own unknown fields.
    } else if (path === 'pools') {
      // Named by the user, not the defaults: readPools checks each pool's settings.
      if (!isObject(v)) {
        errs.push({ path, text: `pools must be an object of named pools (got ${shown(v)})` });
        bad.add(path);
      }
    } else if (isObject(known[k])) {
      if (isObject(v)) unknownSettings(v, known[k] as Record<string, unknown>, `${path}.`, errs, bad);
      else {
        errs.push({ path, text: `${path} must be an object of settings (got ${shown(v)})` });
        bad.add(path);
      }
    }
  }
}

const isHash = (v: unknown): v is HashName => v === 'md5' || v === 'fnv1a_64';

const POOL_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const MEMCACHED_POOL_FIELDS = new Set(['backend', 'servers', 'hash', 'failure']);
const FAILURE_FIELDS = new Set(['mode', 'failureLimit', 'retryTimeoutMs', 'maxRetryTimeoutMs']);

/**
 * A failure policy at `at` (`failure`, `pools.x.failure`): `raw`'s fields over `base`'s, each checked.
 * Returns the merged policy (fields that are wrong keep base's value; the error is collected).
 */
function readFailure(
  raw: unknown,
  base: FailurePolicy,
  at: string,
  err: (path: string, text: string) => void,
): FailurePolicy {
  if (raw === undefined) return base;
  if (!isObject(raw)) {
    err(at, `${at} must be an object of settings (got ${shown(raw)})`);
    return base;
  }
  for (const k of Object.keys(raw)) if (!FAILURE_FIELDS.has(k)) err(`${at}.${k}`, `unknown setting "${at}.${k}"`);
  const out = { ...base };
  if (raw.mode !== undefined) {
    if (raw.mode === 'fail-fast' || raw.mode === 'eject') out.mode = raw.mode;
    else err(`${at}.mode`, `${at}.mode must be "fail-fast" or "eject" (got ${shown(raw.mode)})`);
  }
  const num = (k: 'failureLimit' | 'retryTimeoutMs' | 'maxRetryTimeoutMs', min: number, max: number): void => {
    const v = raw[k];
    if (v === undefined) return;
    if (isInt(v, min, max)) out[k] = v as number;
    else err(`${at}.${k}`, `${at}.${k} must be an integer from ${min} to ${max} (got ${shown(v)})`);
  };
  num('failureLimit', 1, 1000);
  num('retryTimeoutMs', 10, 3_600_000);
  num('maxRetryTimeoutMs', 10, 3_600_000);
  if (out.retryTimeoutMs > out.maxRetryTimeoutMs)
    err(
      `${at}.retryTimeoutMs`,
      `${at}.retryTimeoutMs (${out.retryTimeoutMs}) must not exceed ${at}.maxRetryTimeoutMs (${out.maxRetryTimeoutMs})`,
    );
  return out;
}

const REDIS_POOL_FIELDS = new Set(['backend', 'servers', 'cluster', 'commandTimeoutMs']);
const ROUTE_FIELDS = new Set(['prefix', 'pool']);
/** "host:port" of a Redis node (a name, an IPv4 address or a bracketed IPv6 address). */
const REDIS_NODE = /^(?:\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):(\d{1,5})$/;

/** validateConfig's collectors, shared with the pool reader. */
interface Checks {
  err(path: string, text: string): void;
  int(path: string, v: unknown, min: number, max: number): void;
  /** How many problems were collected so far. */
  count(): number;
  readServers(list: unknown, at: string): ServerSpec[] | null;
  /** The backend's own check of a pool whose shape is right; names a backend with no factory. */
  checkPool(pool: PoolConfig, at: string): void;
}

/**
 * `pools`, `routes` and `defaultPool`, every problem named. The top-level `servers` make the pool named
 * `default` (a local fleet does when there are neither servers nor pools). Returns them normalised
 * (memcached servers parsed, `hash` md5 when absent).
 */
function readPools(
  raw: Config,
  hasServers: boolean,
  { err, int, count, readServers, checkPool }: Checks,
  failure: FailurePolicy,
): Pick<Config, 'pools' | 'routes' | 'defaultPool'> {
  const pools: Record<string, PoolConfig> = {};
  const rawPools = isObject(raw.pools) ? raw.pools : {};
  const hasDefault = hasServers || Object.keys(rawPools).length === 0;
  for (const [name, p] of Object.entries(rawPools)) {
    const at = `pools.${name}`;
    if (!POOL_NAME.test(name)) err(at, `pool name ${shown(name)} must be 1-64 letters, digits, ".", "_" or "-"`);
    if (name === 'default' && hasServers)
      err(at, `pools.default: the top-level servers already make the pool named "default"`);
    if (!isObject(p)) {
      err(at, `${at} must be an object of settings (got ${shown(p)})`);
      continue;
    }
    const unknown = (fields: Set<string>): void => {
      for (const k of Object.keys(p)) if (!fields.has(k)) err(`${at}.${k}`, `unknown setting "${at}.${k}"`);
    };
    const before = count();
    if (p.backend === 'memcached') {
      unknown(MEMCACHED_POOL_FIELDS);
      const hash = p.hash ?? 'md5';
      if (!isHash(hash)) err(`${at}.hash`, `${at}.hash must be "md5" or "fnv1a_64" (got ${shown(p.hash)})`);
      const servers = readServers(p.servers, `${at}.servers`);
      if (servers !== null && servers.length === 0) err(`${at}.servers`, `${at}.servers must name at least one server`);
      const pool: MemcachedPoolConfig = {
        backend: 'memcached',
        servers: servers ?? [],
        hash: hash as HashName,
        failure: readFailure(p.failure, failure, `${at}.failure`, err),
      };
      if (count() === before) checkPool(pool, at);
      pools[name] = pool;
    } else if (p.backend === 'redis') {
      unknown(REDIS_POOL_FIELDS);
      const nodes = (key: 'servers' | 'cluster'): string[] | undefined => {
        const v = p[key];
        if (v === undefined) return undefined;
        if (!Array.isArray(v) || v.length === 0) {
          err(`${at}.${key}`, `${at}.${key} must be a non-empty list of "host:port" (got ${shown(v)})`);
          return undefined;
        }
        (v as unknown[]).forEach((n, i) => {
          const m = typeof n === 'string' ? REDIS_NODE.exec(n) : null;
          if (m === null || Number(m[1]) < 1 || Number(m[1]) > 65535)
            err(`${at}.${key}[${i}]`, `${at}.${key}[${i}] must be "host:port" (got ${shown(n)})`);
        });
        return v as string[];
      };
      const servers = nodes('servers'),
        cluster = nodes('cluster');
      if (p.servers !== undefined && p.cluster !== undefined)
        err(at, `${at}: give "servers" (one standalone Redis) or "cluster" (seed nodes), not both`);
      else if (p.servers === undefined && p.cluster === undefined)
        err(at, `${at}: a Redis pool needs "servers" (one standalone Redis) or "cluster" (seed nodes)`);
      if (servers !== undefined && servers.length > 1)
        err(
          `${at}.servers`,
          `${at}.servers must name exactly one Redis (got ${servers.length}); several nodes are a "cluster"`,
        );
      if (p.commandTimeoutMs !== undefined) int(`${at}.commandTimeoutMs`, p.commandTimeoutMs, 1, 600_000);
      const pool: RedisPoolConfig = { backend: 'redis' };
      if (servers !== undefined) pool.servers = servers;
      if (cluster !== undefined) pool.cluster = cluster;
      if (p.commandTimeoutMs !== undefined) pool.commandTimeoutMs = p.commandTimeoutMs as number;
      if (count() === before) checkPool(pool, at);
      pools[name] = pool;
    } else {
      err(`${at}.backend`, `${at}.backend must be "memcached" or "redis" (got ${shown(p.backend)})`);
    }
  }
  const known = (name: string): boolean => Object.hasOwn(rawPools, name) || (name === 'default' && hasDefault);
  const listed = (): string => {
    const names = [...(hasDefault ? ['default'] : []), ...Object.keys(rawPools)];
    return names.length === 0 ? 'there are none' : `pools: ${names.join(', ')}`;
  };
  const routes: RouteSpec[] = [];
  if (!Array.isArray(raw.routes)) err('routes', `routes must be a list of {prefix, pool} (got ${shown(raw.routes)})`);
  else {
    const seen = new Map<string, number>();
    (raw.routes as unknown[]).forEach((r, i) => {
      const at = `routes[${i}]`;
      if (!isObject(r)) return err(at, `${at} must be {"prefix": "...", "pool": "..."} (got ${shown(r)})`);
      for (const k of Object.keys(r)) if (!ROUTE_FIELDS.has(k)) err(`${at}.${k}`, `unknown setting "${at}.${k}"`);
      const { prefix, pool } = r;
      let ok = true;
      if (typeof prefix !== 'string' || prefix === '') {
        err(`${at}.prefix`, `${at}.prefix must be a non-empty string (got ${shown(prefix)})`);
        ok = false;
      } else {
        const b = Buffer.from(prefix, 'utf8');
        // A prefix no valid key can start with would route nothing: a mistake worth naming.
        if (!isValidKey(b, 0, b.length)) {
          err(
            `${at}.prefix`,
            `${at}.prefix ${shown(prefix)} cannot start a key (1-250 bytes, no whitespace or control characters)`,
          );
          ok = false;
        } else if (seen.has(prefix)) {
          err(`${at}.prefix`, `${at}.prefix ${shown(prefix)} is already routed by routes[${seen.get(prefix)}]`);
          ok = false;
        } else seen.set(prefix, i);
      }
      if (typeof pool !== 'string' || !known(pool)) {
        err(`${at}.pool`, `${at}.pool ${shown(pool)} is not a configured pool (${listed()})`);
        ok = false;
      }
      if (ok) routes.push({ prefix: prefix as string, pool: pool as string });
    });
  }
  const defaultPool = raw.defaultPool;
  if (typeof defaultPool !== 'string' || !known(defaultPool))
    err('defaultPool', `defaultPool ${shown(defaultPool)} is not a configured pool (${listed()})`);
  return { pools, routes, defaultPool: defaultPool as string };
}

/**
 * Every pool the gateway runs, by name: `default` from the top-level servers (when there are any) and
 * the named pools.
 */
export function resolvedPools(config: Config): Record<string, PoolConfig> {
  const out: Record<string, PoolConfig> = {};
  if (config.servers.length > 0)
    out.default = { backend: 'memcached', servers: config.servers, hash: config.hash, failure: config.failure };
  return Object.assign(out, config.pools);
}

/** Returns the config with servers normalised, or throws a ConfigError listing every problem. */
export function validateConfig(raw: Config): Config {
  const errs: ConfigProblem[] = [];
  const bad = new Set<string>();
  unknownSettings(
    raw as unknown as Record<string, unknown>,
    defaultConfig() as unknown as Record<string, unknown>,
    '',
    errs,
    bad,
  );
  const err = (path: string, text: string): void => {
    errs.push({ path, text });
  };
  const int = (path: string, v: unknown, min: number, max: number): void => {
    if (bad.has(path.split('.')[0])) return;
    if (!isInt(v, min, max)) err(path, `${path} must be an integer from ${min} to ${max} (got ${shown(v)})`);
  };
  if (typeof raw.host !== 'string' || raw.host === '')
    err('host', `host must be a non-empty string (got ${shown(raw.host)})`);
  int('port', raw.port, 0, 65535);
  const admin = raw.admin;
  if (!bad.has('admin')) {
    if (typeof admin?.enabled !== 'boolean')
      err('admin.enabled', `admin.enabled must be true or false (got ${shown(admin?.enabled)})`);
    if (typeof admin?.host !== 'string' || admin.host === '')
      err('admin.host', `admin.host must be a non-empty string (got ${shown(admin?.host)})`);
    int('admin.port', admin?.port, 0, 65535);
    if (admin?.enabled === true && admin.port !== 0 && admin.port === raw.port && admin.host === raw.host)
      err('admin.port', `admin.port (${admin.port}) must differ from port: operational endpoints are never public`);
  }
  if (!bad.has('log') && !(LOG_LEVELS as readonly unknown[]).includes(raw.log?.level))
    err('log.level', `log.level must be one of ${LOG_LEVELS.join(', ')} (got ${shown(raw.log?.level)})`);
  if (raw.workers !== 'auto' && !isInt(raw.workers, 1, 256))
    err('workers', `workers must be "auto" or an integer from 1 to 256 (got ${shown(raw.workers)})`);
  /** A list of memcached servers at `at` (`servers`, `pools.x.servers`); null when it is no list. */
  const readServers = (list: unknown, at: string): ServerSpec[] | null => {
    if (!Array.isArray(list)) {
      err(at, `${at} must be a list (got ${shown(list)})`);
      return null;
    }
    const out: ServerSpec[] = [];
    (list as unknown[]).forEach((item, i) => {
      const here = `${at}[${i}]`;
      let s: ServerSpec;
      if (typeof item === 'string') {
        try {
          s = parseServer(item);
        } catch (e) {
          const why = e instanceof ConfigError ? e.problems.map((q) => q.text).join('; ') : (e as Error).message;
          return err(here, `${here}: ${why}`);
        }
      } else if (isObject(item)) {
        for (const k of Object.keys(item))
          if (!SERVER_FIELDS.has(k)) err(`${here}.${k}`, `unknown setting "${here}.${k}"`);
        s = parseServer(item as Partial<ServerSpec>);
      } else {
        return err(
          here,
          `${here} must be "host:port[:weight] [name]" or {host, port, weight, name} (got ${shown(item)})`,
        );
      }
      if (!s.host || /\s/.test(s.host))
        err(`${here}.host`, `${here}.host must be a host name or address (got ${shown(s.host)})`);
      int(`${here}.port`, s.port, 1, 65535);
      int(`${here}.weight`, s.weight, 1, 1_000_000);
      if (s.name !== undefined && (typeof s.name !== 'string' || s.name === ''))
        err(`${here}.name`, `${here}.name must be a non-empty string`);
      out.push(s);
    });
    return out;
  };
  /** The backend's own check of a pool whose shape is right (the memcached ring: names twemproxy can hash). */
  const checkPool = (pool: PoolConfig, at: string): void => {
    const entry = backendEntry(pool.backend);
    if (entry === undefined) {
      err(`${at}.backend`, `${at}: backend "${pool.backend}" is not available in this build (no factory registered)`);
      return;
    }
    for (const why of entry.check?.(pool) ?? []) err(at, `${at}: ${why}`);
  };
  const hashOk = isHash(raw.hash);
  if (!hashOk) err('hash', `hash must be "md5" or "fnv1a_64" (got ${shown(raw.hash)})`);
  const before = errs.length;
  const servers = readServers(raw.servers, 'servers') ?? [];
  const FAILURE_DEFAULTS = defaultConfig().failure;
  const failure = bad.has('failure') ? FAILURE_DEFAULTS : readFailure(raw.failure, FAILURE_DEFAULTS, 'failure', err);
  if (errs.length === before && hashOk && servers.length > 0)
    checkPool({ backend: 'memcached', servers, hash: raw.hash, failure }, 'servers');
  const pools = readPools(
    raw,
    servers.length > 0,
    { err, int, count: () => errs.length, readServers, checkPool },
    failure,
  );
  int('localFleet.count', raw.localFleet?.count, 1, 64);
  int('localFleet.memoryMb', raw.localFleet?.memoryMb, 8, 65536);
  int('localFleet.threads', raw.localFleet?.threads, 1, 64);
  int('batch.windowMs', raw.batch?.windowMs, 0, 10_000);
  int('batch.maxWaitMs', raw.batch?.maxWaitMs, 0, 10_000);
  int('batch.maxOps', raw.batch?.maxOps, 1, 1_000_000);
  int('batch.maxBytes', raw.batch?.maxBytes, 1024, 64 * 1024 * 1024);
  const { batch, limits, shard, ws } = raw;
  if (isInt(batch?.windowMs, 0, 1e9) && isInt(batch?.maxWaitMs, 0, 1e9) && batch.windowMs > batch.maxWaitMs)
    err('batch.windowMs', `batch.windowMs (${batch.windowMs}) must not exceed batch.maxWaitMs (${batch.maxWaitMs})`);
  int('limits.maxValueBytes', limits?.maxValueBytes, 0, 128 * 1024 * 1024);
  int('limits.maxTtlSeconds', limits?.maxTtlSeconds, 0, 2592000);
  int('limits.maxInflightPerConnection', limits?.maxInflightPerConnection, 1, 1_000_000);
  int('limits.maxItemsPerRequest', limits?.maxItemsPerRequest, 1, 10_000_000);
  int('limits.maxBufferedBytesPerConnection', limits?.maxBufferedBytesPerConnection, 65536, 1 << 30);
  int('limits.maxBufferedBytesTotal', limits?.maxBufferedBytesTotal, 1 << 20, 2 ** 40);
  int('limits.maxConnections', limits?.maxConnections, 1, 10_000_000);
  int('limits.reservedDescriptors', limits?.reservedDescriptors, 8, 1_000_000);
  if (
    isInt(limits?.maxBufferedBytesTotal, 0, 2 ** 40) &&
    isInt(limits?.maxBufferedBytesPerConnection, 0, 1 << 30) &&
    limits.maxBufferedBytesTotal < limits.maxBufferedBytesPerConnection
  )
    err(
      'limits.maxBufferedBytesTotal',
      'limits.maxBufferedBytesTotal must be at least limits.maxBufferedBytesPerConnection',
    );
  int('limits.stallTimeoutMs', limits?.stallTimeoutMs, 0, 3_600_000);
  int('shutdown.drainMs', raw.shutdown?.drainMs, 0, 600_000);
  int('shard.timeoutMs', shard?.timeoutMs, 1, 600_000);
  int('shard.connectTimeoutMs', shard?.connectTimeoutMs, 1, 600_000);
  int('shard.reconnectMinMs', shard?.reconnectMinMs, 1, 600_000);
  int('shard.reconnectMaxMs', shard?.reconnectMaxMs, 1, 600_000);
  if (
    isInt(shard?.reconnectMinMs, 1, 600_000) &&
    isInt(shard?.reconnectMaxMs, 1, 600_000) &&
    shard.reconnectMinMs > shard.reconnectMaxMs
  )
    err(
      'shard.reconnectMinMs',
      `shard.reconnectMinMs (${shard.reconnectMinMs}) must not exceed shard.reconnectMaxMs (${shard.reconnectMaxMs})`,
    );
  const idle = ws?.idleTimeoutSeconds;
  if (!bad.has('ws') && !(idle === 0 || (isInt(idle, 8, 960) && idle % 4 === 0)))
    err(
      'ws.idleTimeoutSeconds',
      `ws.idleTimeoutSeconds must be 0 or a multiple of 4 from 8 to 960 (a uWebSockets.js rule; got ${shown(idle)})`,
    );
  int('ws.maxPayloadBytes', ws?.maxPayloadBytes, 1024, 1 << 30);
  int('pool.maxFreeBuffers', raw.pool?.maxFreeBuffers, 0, 1 << 20);
  if (typeof raw.debugStats !== 'boolean')
    err('debugStats', `debugStats must be true or false (got ${shown(raw.debugStats)})`);
  if (
    isInt(ws?.maxPayloadBytes, 0, 1 << 30) &&
    isInt(limits?.maxValueBytes, 0, 1 << 30) &&
    ws.maxPayloadBytes < limits.maxValueBytes + 1024
  )
    err(
      'ws.maxPayloadBytes',
      'ws.maxPayloadBytes must be at least limits.maxValueBytes + 1024 so that a maximal set fits in one frame',
    );
  if (!bad.has('security'))
    errs.push(
      ...validateSecurity(raw.security, {
        host: raw.host,
        adminHost: raw.admin?.enabled === true ? raw.admin.host : null,
      }),
    );
  if (errs.length) throw new ConfigError(errs);
  return { ...raw, servers, failure, ...pools };
}
