/**
 * The one configuration schema. Defaults live in config/default.json; a --config file and flags override
 * them; `validateConfig` checks everything at start and names every bad field at once.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { backendEntry } from '../backends/registry';
import type { HashName, ServerSpec } from '../core/pools';

export type { HashName, ServerSpec } from '../core/pools';

export interface Config {
  host: string;
  port: number;
  servers: ServerSpec[];
  hash: HashName;
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
    } else if (isObject(known[k])) {
      if (isObject(v)) unknownSettings(v, known[k] as Record<string, unknown>, `${path}.`, errs, bad);
      else {
        errs.push({ path, text: `${path} must be an object of settings (got ${shown(v)})` });
        bad.add(path);
      }
    }
  }
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
  const hashOk = raw.hash === 'md5' || raw.hash === 'fnv1a_64';
  if (!hashOk) err('hash', `hash must be "md5" or "fnv1a_64" (got ${shown(raw.hash)})`);
  const servers: ServerSpec[] = [];
  if (!Array.isArray(raw.servers)) err('servers', `servers must be a list (got ${shown(raw.servers)})`);
  else {
    const before = errs.length;
    (raw.servers as unknown[]).forEach((item, i) => {
      const at = `servers[${i}]`;
      let s: ServerSpec;
      if (typeof item === 'string') {
        try {
          s = parseServer(item);
        } catch (e) {
          const why = e instanceof ConfigError ? e.problems.map((q) => q.text).join('; ') : (e as Error).message;
          return err(at, `${at}: ${why}`);
        }
      } else if (isObject(item)) {
        for (const k of Object.keys(item)) if (!SERVER_FIELDS.has(k)) err(`${at}.${k}`, `unknown setting "${at}.${k}"`);
        s = parseServer(item as Partial<ServerSpec>);
      } else {
        return err(at, `${at} must be "host:port[:weight] [name]" or {host, port, weight, name} (got ${shown(item)})`);
      }
      if (!s.host || /\s/.test(s.host))
        err(`${at}.host`, `${at}.host must be a host name or address (got ${shown(s.host)})`);
      int(`${at}.port`, s.port, 1, 65535);
      int(`${at}.weight`, s.weight, 1, 1_000_000);
      if (s.name !== undefined && (typeof s.name !== 'string' || s.name === ''))
        err(`${at}.name`, `${at}.name must be a non-empty string`);
      servers.push(s);
    });
    if (errs.length === before && hashOk && servers.length > 0) {
      // The ring refuses what twemproxy cannot hash (duplicate ring names, over-long names): say so now.
      for (const why of backendEntry('memcached')?.check?.({ backend: 'memcached', servers, hash: raw.hash }) ?? [])
        err('servers', `servers: ${why}`);
    }
  }
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
  if (errs.length) throw new ConfigError(errs);
  return { ...raw, servers };
}
