/**
 * The HTTP client (docs/PROTOCOL.md, "HTTP"), on `fetch` (browsers, Node 18+). Single keys are
 * `GET/PUT/DELETE /v1/kv/{key}`; bulk `mget` / `mset` send a msgpack or NDJSON body and read the answer
 * as a stream, item by item, as the gateway writes it (`mgetIter` yields each as it arrives).
 */
import { KvError, badResponse, type RetryHint } from './errors';
import { Decoder, Incomplete, Writer } from './msgpack';
import type {
  CallOptions,
  GetResult,
  Key,
  MgetItem,
  MgetResult,
  MsetResult,
  SetItem,
  SetOptions,
  Value,
} from './types';

export type BulkFormat = 'msgpack' | 'ndjson';

export interface HttpClientOptions {
  /** An API key or JWT, sent as `Authorization: Bearer`. */
  token?: string;
  /** Default per-call timeout in ms (default 30000; 0 = none). */
  timeoutMs?: number;
  /** Format of bulk bodies and answers (default msgpack). */
  format?: BulkFormat;
  /** A fetch of your own (default globalThis.fetch). */
  fetch?: typeof fetch;
}

export interface BulkOptions extends CallOptions {
  format?: BulkFormat;
}

const TYPES: Record<BulkFormat, string> = { msgpack: 'application/msgpack', ndjson: 'application/x-ndjson' };
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** A key for the URL path: strings through encodeURIComponent, bytes percent-encoded one by one. */
function keyPath(key: Key): string {
  if (typeof key === 'string') return encodeURIComponent(key);
  let out = '';
  for (const b of key) out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
  return out;
}

const toBytes = (v: Value): Uint8Array => (typeof v === 'string' ? utf8.encode(v) : v);

function base64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}
function unbase64(s: string): Uint8Array {
  const t = atob(s);
  const out = new Uint8Array(t.length);
  for (let i = 0; i < t.length; i++) out[i] = t.charCodeAt(i);
  return out;
}

function keyText(key: Key): string {
  if (typeof key === 'string') return key;
  return new TextDecoder('utf-8', { fatal: true }).decode(key);
}

async function errorOf(res: Response): Promise<KvError> {
  const text = await res.text().catch(() => '');
  let e: { code?: unknown; message?: unknown; retry?: unknown } | undefined;
  try {
    e = (JSON.parse(text) as { error?: typeof e }).error;
  } catch {
    // not JSON
  }
  const ra = Number(res.headers.get('retry-after'));
  if (typeof e?.code !== 'string') return new KvError('BAD_RESPONSE', `HTTP ${res.status}: ${text.slice(0, 200)}`);
  return new KvError(e.code, String(e.message ?? ''), {
    status: res.status,
    retry: typeof e.retry === 'string' ? (e.retry as RetryHint) : undefined,
    retryAfter: Number.isFinite(ra) && ra > 0 ? ra : undefined,
  });
}

export class KvHttpClient {
  private readonly fetch: typeof fetch;
  private readonly base: string;

  constructor(
    base: string,
    private readonly opts: HttpClientOptions = {},
  ) {
    this.base = base.replace(/\/+$/, '');
    const f = opts.fetch ?? globalThis.fetch;
    if (!f) throw new TypeError('no fetch: pass options.fetch');
    this.fetch = f.bind(globalThis);
  }

  private async request(path: string, init: RequestInit, opts: CallOptions, what: string): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.opts.token !== undefined) headers.set('authorization', `Bearer ${this.opts.token}`);
    const timeout = opts.timeout ?? this.opts.timeoutMs ?? 30_000;
    const signals: AbortSignal[] = [];
    if (opts.signal) signals.push(opts.signal);
    if (timeout > 0) signals.push(AbortSignal.timeout(timeout));
    const signal = signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
    try {
      return await this.fetch(this.base + path, { ...init, headers, signal });
    } catch (e) {
      throw this.failure(e, opts, timeout, what, init.method !== 'GET');
    }
  }

  private failure(e: unknown, opts: CallOptions, timeout: number, what: string, write: boolean): KvError {
    if (e instanceof KvError) return e;
    if (opts.signal?.aborted)
      return new KvError('ABORTED', `${what} was aborted`, { source: 'client', maybeApplied: write });
    if ((e as Error)?.name === 'TimeoutError' || (e as Error)?.name === 'AbortError')
      return new KvError('TIMEOUT', `${what}: no answer within ${timeout} ms`, {
        source: 'client',
        maybeApplied: write,
      });
    return new KvError('CONNECTION_CLOSED', `${what}: ${(e as Error)?.message ?? String(e)}`, {
      source: 'client',
      maybeApplied: write,
    });
  }

  private query(o: Record<string, number | undefined>): string {
    const q = Object.entries(o)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${String(v)}`);
    return q.length ? `?${q.join('&')}` : '';
  }

  /** The value, or null when the key is absent. */
  async get(key: Key, opts: CallOptions = {}): Promise<Uint8Array | null> {
    const r = await this.getItem(key, opts);
    return r.hit ? r.value : null;
  }

  async getItem(key: Key, opts: CallOptions = {}): Promise<GetResult> {
    const res = await this.request(`/v1/kv/${keyPath(key)}`, { method: 'GET' }, opts, 'get');
    if (res.status === 404) {
      const err = await errorOf(res);
      if (err.code === 'NOT_FOUND') return { hit: false };
      throw err;
    }
    if (res.status !== 200) throw await errorOf(res);
    const value = new Uint8Array(await res.arrayBuffer());
    return { hit: true, value, flags: Number(res.headers.get('x-kv-flags') ?? 0) };
  }

  async set(key: Key, value: Value, opts: SetOptions = {}): Promise<void> {
    const q = this.query({ ttl: opts.ttl, flags: opts.flags, wait: opts.wait });
    const res = await this.request(
      `/v1/kv/${keyPath(key)}${q}`,
      { method: 'PUT', body: toBytes(value) as BodyInit },
      opts,
      'set',
    );
    if (res.status !== 204) throw await errorOf(res);
  }

  /** True if the key was deleted, false if it was absent. */
  async del(key: Key, opts: CallOptions = {}): Promise<boolean> {
    const q = this.query({ wait: opts.wait });
    const res = await this.request(`/v1/kv/${keyPath(key)}${q}`, { method: 'DELETE' }, opts, 'del');
    if (res.status === 204) return true;
    const err = await errorOf(res);
    if (err.code === 'NOT_FOUND') return false;
    throw err;
  }

  /** One result per key, in the order of `keys`. */
  async mget(keys: Key[], opts: BulkOptions = {}): Promise<MgetResult[]> {
    const out = new Array<MgetResult>(keys.length);
    for await (const item of this.mgetIter(keys, opts)) out[item.i] = item.result;
    return out;
  }

  /** Yields each key's result as the gateway streams it. */
  async *mgetIter(keys: Key[], opts: BulkOptions = {}): AsyncGenerator<MgetItem> {
    const format = opts.format ?? this.opts.format ?? 'msgpack';
    let body: Uint8Array;
    if (format === 'msgpack') {
      const w = new Writer();
      for (const k of keys) w.value(k);
      body = w.take();
    } else body = utf8.encode(keys.map((k) => JSON.stringify(keyText(k)) + '\n').join(''));
    for await (const [i, r] of this.bulk('/v1/mget', body, format, keys.length, false, opts))
      yield { i, key: keys[i], result: r as MgetResult };
  }

  /** One result per item, in the order of `items`. */
  async mset(items: SetItem[], opts: BulkOptions = {}): Promise<MsetResult[]> {
    const format = opts.format ?? this.opts.format ?? 'msgpack';
    let body: Uint8Array;
    if (format === 'msgpack') {
      const w = new Writer();
      for (const it of items) w.value({ key: it.key, value: toBytes(it.value), ttl: it.ttl, flags: it.flags });
      body = w.take();
    } else
      body = utf8.encode(
        items
          .map((it) => {
            const v = typeof it.value === 'string' ? { value: it.value } : { base64: base64(it.value) };
            return JSON.stringify({ key: keyText(it.key), ...v, ttl: it.ttl, flags: it.flags }) + '\n';
          })
          .join(''),
      );
    const out = new Array<MsetResult>(items.length);
    for await (const [i, r] of this.bulk('/v1/mset', body, format, items.length, true, opts)) out[i] = r as MsetResult;
    return out;
  }

  private async *bulk(
    path: string,
    body: Uint8Array,
    format: BulkFormat,
    count: number,
    write: boolean,
    opts: CallOptions,
  ): AsyncGenerator<[number, MgetResult | MsetResult]> {
    const q = this.query({ wait: opts.wait });
    const what = path.slice(4);
    const res = await this.request(
      path + q,
      { method: 'POST', body: body as BodyInit, headers: { 'content-type': TYPES[format], accept: TYPES[format] } },
      opts,
      what,
    );
    if (res.status !== 200) throw await errorOf(res);
    if (!res.body) throw badResponse(`${what}: no body`);
    const reader = res.body.getReader();
    const seen = new Set<number>();
    let ended = false;
    const parts = new Map<number, { flags: number; buf: Uint8Array; got: number }>();
    const item = (i: number): number => {
      if (!Number.isInteger(i) || i < 0 || i >= count || seen.has(i)) throw badResponse(`${what}: bad item index ${i}`);
      seen.add(i);
      return i;
    };
    let pending: Uint8Array = new Uint8Array(0);
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          throw this.failure(e, opts, opts.timeout ?? this.opts.timeoutMs ?? 30_000, what, write);
        }
        if (chunk.done) break;
        pending = pending.length ? concat(pending, chunk.value) : chunk.value;
        const out: [number, MgetResult | MsetResult][] = [];
        if (format === 'msgpack') {
          const d = new Decoder(pending);
          let at = 0;
          try {
            while (!d.done) {
              const e = d.value() as unknown[];
              at = d.pos;
              if (!Array.isArray(e) || e[0] !== 0) throw badResponse(`${what}: bad entry`);
              const [, i, kind] = e as [number, number, number];
              if (kind === 5) ended = true;
              else if (i === -1 && kind === 4) throw new KvError(String(e[3]), String(e[4]));
              else if (kind === 0)
                out.push([item(i), { hit: true, flags: e[3] as number, value: (e[4] as Uint8Array).slice() }]);
              else if (kind === 1) {
                const [, , , flags, total, offset, c] = e as [
                  number,
                  number,
                  number,
                  number,
                  number,
                  number,
                  Uint8Array,
                ];
                let p = parts.get(i);
                if (!p) parts.set(i, (p = { flags, buf: new Uint8Array(total), got: 0 }));
                if (offset !== p.got || offset + c.length > total)
                  throw badResponse(`${what}: VALUE_PART out of order`);
                p.buf.set(c, offset);
                p.got += c.length;
                if (p.got === total) {
                  parts.delete(i);
                  out.push([item(i), { hit: true, flags, value: p.buf }]);
                }
              } else if (kind === 2) out.push([item(i), { hit: false }]);
              else if (kind === 3) out.push([item(i), { ok: true }]);
              else if (kind === 4) {
                parts.delete(i);
                out.push([item(i), { error: new KvError(String(e[3]), String(e[4])) }]);
              } else throw badResponse(`${what}: unknown entry kind ${kind}`);
            }
          } catch (e) {
            if (!(e instanceof Incomplete)) throw e;
          }
          pending = pending.subarray(at);
        } else {
          let nl: number;
          while ((nl = pending.indexOf(10)) >= 0) {
            const line = JSON.parse(fromUtf8.decode(pending.subarray(0, nl))) as Record<string, unknown>;
            pending = pending.subarray(nl + 1);
            const i = line.i as number;
            const err = line.error as { code: string; message: string; retry?: RetryHint } | undefined;
            if (line.done === true) ended = true;
            else if (i === -1 && err) throw new KvError(err.code, err.message);
            else if (err) out.push([item(i), { error: new KvError(err.code, err.message) }]);
            else if (line.miss === true) out.push([item(i), { hit: false }]);
            else if (line.ok === true) out.push([item(i), { ok: true }]);
            else if (typeof line.value === 'string' || typeof line.base64 === 'string')
              out.push([
                item(i),
                {
                  hit: true,
                  flags: Number(line.flags ?? 0),
                  value: typeof line.base64 === 'string' ? unbase64(line.base64) : utf8.encode(line.value as string),
                },
              ]);
            else throw badResponse(`${what}: bad NDJSON line`);
          }
        }
        yield* out;
      }
    } finally {
      reader.releaseLock();
      if (!ended) await res.body.cancel().catch(() => undefined);
    }
    if (!ended || seen.size !== count || pending.length)
      throw badResponse(`${what}: the answer ended after ${seen.size} of ${count} items`);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

export function createHttpClient(base: string, opts: HttpClientOptions = {}): KvHttpClient {
  return new KvHttpClient(base, opts);
}
