/** Types shared by the WebSocket and HTTP clients. */
import type { KvError } from './errors';

/** A string key goes on the wire as msgpack str (UTF-8), a byte key as bin. */
export type Key = string | Uint8Array;
/** A string value is stored as its UTF-8 bytes. */
export type Value = string | Uint8Array;

export interface SetItem {
  key: Key;
  value: Value;
  /** Seconds, 0 (default) = never expires. */
  ttl?: number;
  /** memcached's 32-bit client flags, stored and returned untouched. */
  flags?: number;
}

export type Hit = { hit: true; value: Uint8Array; flags: number };
export type GetResult = Hit | { hit: false };
/** One item of a bulk request: its result, or its own error (the other items are unaffected). */
export type MgetResult = GetResult | { error: KvError };
export type MsetResult = { ok: true } | { error: KvError };
export type MdelResult = { deleted: boolean } | { error: KvError };

/** What `mgetIter` yields, as entries arrive (in the order shards answer, not the order asked). */
export interface MgetItem {
  i: number;
  key: Key;
  result: MgetResult;
}

export interface CallOptions {
  /** Milliseconds before the call rejects with TIMEOUT (`source: 'client'`); 0 = none. */
  timeout?: number;
  /** Aborting rejects the call with ABORTED. */
  signal?: AbortSignal;
  /** The gateway's batching hint (ms it may hold the request to coalesce more). */
  wait?: number;
}

export interface SetOptions extends CallOptions {
  ttl?: number;
  flags?: number;
}

export const isError = (r: MgetResult | MsetResult | MdelResult): r is { error: KvError } => 'error' in r;
