/** Messages and settings shared by the load generator's coordinator (index.ts) and its workers. */
export type Proto = 'ws' | 'http' | 'mc' | 'memjs';
export type Op = 'get' | 'set' | 'mget' | 'mset' | 'mix';

export interface Endpoint {
  host: string;
  port: number;
  /** A gateway's credential: sent as `Authorization: Bearer <token>` by every HTTP and WebSocket client. */
  token?: string;
}

/** The `Authorization` header line (CRLF included) a client sends to `e`; '' when it has no token. */
export function authHeader(e: Endpoint): string {
  return e.token ? `Authorization: Bearer ${e.token}\r\n` : '';
}

export interface WorkerConfig {
  index: number;
  workers: number;
  proto: Proto;
  /** ws / http / mc-through-a-proxy target. */
  target: Endpoint;
  /** memjs, and mc in ceiling mode: the memcached servers themselves. */
  servers: Endpoint[];
  /** mc only: one group of connections per server, keys partitioned by index % servers, `bulk` keys a request. */
  ceiling: boolean;
  /** Connections of this worker (ceiling: per server). */
  conns: number;
  /** Requests in flight per connection (closed loop), or the cap in rate mode. */
  depth: number;
  op: Op;
  /** For `mix`: percent of requests that are single-key gets; the rest are single-key sets. */
  getPct: number;
  /** Keys per mget / mset request (and per request in ceiling mode). */
  bulk: number;
  keyCount: number;
  valueSize: number;
  /** Source addresses to spread connections over (127.0.0.x); empty: let the kernel choose. */
  localAddresses: string[];
  /** Connections opened at once while connecting. */
  connectConcurrency: number;
  seed: number;
  /** HTTP path for single-key gets / bulk gets. */
  wsPath: string;
  /** ws only: the batching hint `wait` (ms) sent with every request; 0 or absent: none. */
  waitMs?: number;
  /**
   * Requests per socket write, for ws, http and mc: 1 writes each request's frame by itself (a browser
   * with one request at a time per connection: one TCP segment each), N writes every Nth, 0 or absent
   * writes everything a turn staged at once (a client that batches its writes).
   */
  framesPerWrite?: number;
}

export type ToWorker =
  | { cmd: 'connect' }
  | { cmd: 'preload' }
  | { cmd: 'run'; rate: number }
  | { cmd: 'reset' }
  | { cmd: 'collect' }
  | { cmd: 'pause' }
  | { cmd: 'close' };

export interface WorkerSample {
  elapsedNs: number;
  requests: number;
  keys: number;
  hist: number[];
  histMax: number;
  errors: Record<string, number>;
  misses: number;
  badValues: number;
  cpuUserUs: number;
  cpuSystemUs: number;
  rssBytes: number;
  inflight: number;
  conns: number;
}

export type FromWorker =
  | { ev: 'connected'; conns: number; failed: number; firstError?: string }
  | { ev: 'preloaded'; keys: number; errors: Record<string, number> }
  | { ev: 'paused' }
  | { ev: 'sample'; sample: WorkerSample }
  | { ev: 'fatal'; message: string };
