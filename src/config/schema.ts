/**
 * The one configuration schema. Defaults live in config/default.json; a --config file and flags override
 * them; `validateConfig` checks everything at start and names every bad field at once.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KetamaRing } from '../route/ketama';

export type HashName = 'fnv1a_64' | 'md5';

export interface ServerSpec {
  host: string;
  port: number;
  weight: number;
  /** twemproxy's `name`: when set it replaces host[:port] on the ring, so renaming a host keeps its keys. */
  name?: string;
}

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

export class ConfigError extends Error {}

const ROOT = join(__dirname, '..', '..', '..');

export function defaultConfig(): Config {
  return JSON.parse(readFileSync(join(ROOT, 'config', 'default.json'), 'utf8')) as Config;
}

/** "host:port[:weight][ name]" list, comma separated, as `--servers` takes it. */
export function parseServerList(text: string): ServerSpec[] {
  return text.split(',').map((s) => s.trim()).filter(Boolean).map(parseServer);
}

export function parseServer(spec: string | Partial<ServerSpec>): ServerSpec {
  if (typeof spec !== 'string') {
    return { host: String(spec.host ?? ''), port: Number(spec.port), weight: Number(spec.weight ?? 1), name: spec.name };
  }
  const [addr, name] = spec.split(/\s+/, 2);
  const parts = addr.split(':');
  if (parts.length < 2 || parts.length > 3) throw new ConfigError(`server "${spec}": expected host:port[:weight]`);
  return { host: parts[0], port: Number(parts[1]), weight: parts[2] === undefined ? 1 : Number(parts[2]), name };
}

function deepMerge<T>(base: T, over: unknown): T {
  if (over === null || typeof over !== 'object' || Array.isArray(over)) return over as T;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over as Record<string, unknown>)) {
    const b = (base as Record<string, unknown>)[k];
    out[k] = b !== null && typeof b === 'object' && !Array.isArray(b) ? deepMerge(b, v) : v;
  }
  return out as T;
}

export function mergeConfig(base: Config, over: unknown): Config {
  return deepMerge(base, over);
}

const isInt = (v: unknown, min: number, max: number): boolean =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** Returns the config with servers normalised, or throws a ConfigError listing every problem. */
export function validateConfig(raw: Config): Config {
  const errs: string[] = [];
  const known = defaultConfig();
  for (const k of Object.keys(raw)) if (!(k in known)) errs.push(`unknown setting "${k}"`);
  const int = (path: string, v: unknown, min: number, max: number): void => {
    if (!isInt(v, min, max)) errs.push(`${path} must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
  };
  if (typeof raw.host !== 'string' || raw.host === '') errs.push('host must be a non-empty string');
  int('port', raw.port, 0, 65535);
  if (raw.hash !== 'md5' && raw.hash !== 'fnv1a_64') errs.push(`hash must be "md5" or "fnv1a_64" (got ${JSON.stringify(raw.hash)})`);
  let servers: ServerSpec[] = [];
  if (!Array.isArray(raw.servers)) errs.push('servers must be a list');
  else {
    try {
      servers = raw.servers.map((s) => parseServer(s as never));
    } catch (e) {
      errs.push((e as Error).message);
    }
    servers.forEach((s, i) => {
      if (!s.host || /\s/.test(s.host)) errs.push(`servers[${i}].host must be a host name or address`);
      int(`servers[${i}].port`, s.port, 1, 65535);
      int(`servers[${i}].weight`, s.weight, 1, 1_000_000);
      if (s.name !== undefined && (typeof s.name !== 'string' || s.name === '')) errs.push(`servers[${i}].name must be a non-empty string`);
    });
    if (errs.length === 0 && servers.length > 0) {
      // The ring refuses what twemproxy cannot hash (duplicate ring names, over-long names): say so now.
      try {
        new KetamaRing(servers, raw.hash);
      } catch (e) {
        errs.push(`servers: ${(e as Error).message}`);
      }
    }
  }
  int('localFleet.count', raw.localFleet?.count, 1, 64);
  int('localFleet.memoryMb', raw.localFleet?.memoryMb, 8, 65536);
  int('localFleet.threads', raw.localFleet?.threads, 1, 64);
  int('batch.windowMs', raw.batch?.windowMs, 0, 10_000);
  int('batch.maxWaitMs', raw.batch?.maxWaitMs, 0, 10_000);
  int('batch.maxOps', raw.batch?.maxOps, 1, 1_000_000);
  int('batch.maxBytes', raw.batch?.maxBytes, 1024, 64 * 1024 * 1024);
  if (isInt(raw.batch?.windowMs, 0, 1e9) && isInt(raw.batch?.maxWaitMs, 0, 1e9) && raw.batch.windowMs > raw.batch.maxWaitMs)
    errs.push('batch.windowMs must not exceed batch.maxWaitMs');
  int('limits.maxValueBytes', raw.limits?.maxValueBytes, 0, 128 * 1024 * 1024);
  int('limits.maxTtlSeconds', raw.limits?.maxTtlSeconds, 0, 2592000);
  int('limits.maxInflightPerConnection', raw.limits?.maxInflightPerConnection, 1, 1_000_000);
  int('limits.maxItemsPerRequest', raw.limits?.maxItemsPerRequest, 1, 10_000_000);
  int('limits.maxBufferedBytesPerConnection', raw.limits?.maxBufferedBytesPerConnection, 65536, 1 << 30);
  int('limits.maxBufferedBytesTotal', raw.limits?.maxBufferedBytesTotal, 1 << 20, 2 ** 40);
  int('limits.maxConnections', raw.limits?.maxConnections, 1, 10_000_000);
  int('limits.reservedDescriptors', raw.limits?.reservedDescriptors, 8, 1_000_000);
  if (isInt(raw.limits?.maxBufferedBytesTotal, 0, 2 ** 40) && isInt(raw.limits?.maxBufferedBytesPerConnection, 0, 1 << 30) &&
    raw.limits.maxBufferedBytesTotal < raw.limits.maxBufferedBytesPerConnection)
    errs.push('limits.maxBufferedBytesTotal must be at least limits.maxBufferedBytesPerConnection');
  int('limits.stallTimeoutMs', raw.limits?.stallTimeoutMs, 0, 3_600_000);
  int('shutdown.drainMs', raw.shutdown?.drainMs, 0, 600_000);
  int('shard.timeoutMs', raw.shard?.timeoutMs, 1, 600_000);
  int('shard.connectTimeoutMs', raw.shard?.connectTimeoutMs, 1, 600_000);
  int('shard.reconnectMinMs', raw.shard?.reconnectMinMs, 1, 600_000);
  int('shard.reconnectMaxMs', raw.shard?.reconnectMaxMs, 1, 600_000);
  const idle = raw.ws?.idleTimeoutSeconds;
  if (!(idle === 0 || (isInt(idle, 8, 960) && idle % 4 === 0))) errs.push('ws.idleTimeoutSeconds must be 0 or a multiple of 4 from 8 to 960 (a uWebSockets.js rule)');
  int('ws.maxPayloadBytes', raw.ws?.maxPayloadBytes, 1024, 1 << 30);
  int('pool.maxFreeBuffers', raw.pool?.maxFreeBuffers, 0, 1 << 20);
  if (typeof raw.debugStats !== 'boolean') errs.push('debugStats must be true or false');
  if (isInt(raw.ws?.maxPayloadBytes, 0, 1 << 30) && isInt(raw.limits?.maxValueBytes, 0, 1 << 30) && raw.ws.maxPayloadBytes < raw.limits.maxValueBytes + 1024)
    errs.push('ws.maxPayloadBytes must be at least limits.maxValueBytes + 1024 so that a maximal set fits in one frame');
  if (errs.length) throw new ConfigError('invalid configuration:\n  - ' + errs.join('\n  - '));
  return { ...raw, servers };
}
