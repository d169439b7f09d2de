/**
 * HTTP client for the gateway's REST side (docs/PROTOCOL.md, "HTTP"), on Node's global fetch. Like the
 * WebSocket client it is strict about the contract (status codes, headers, bulk streams), since tests use
 * it to check the gateway: deviations surface as ProtocolError (code BAD_RESPONSE).
 */
import { isUtf8 } from 'node:buffer';
import { ErrorTable } from '../../src/core/errors';
import {
  decodeEntries,
  encodeBulkItems,
  encodeBulkKeys,
  type Entry,
  type KeyInput,
  type SetItem,
  type SetOpts,
  type ValueInput,
  type WaitOpts,
  wireValue,
} from './entries';
import { KvError, ProtocolError } from './errors';
import { ResultAssembler, type GetResult, type ItemResult, type MgetResult, type MsetResult } from './results';

export type BulkFormat = 'msgpack' | 'ndjson';
export interface BulkOpts {
  /** Format of the request body (default msgpack). */
  format?: BulkFormat;
  /** Format asked for the response (default: the same as `format`, which is also the gateway's default). */
  accept?: BulkFormat;
  wait?: number;
}
export interface HealthReport {
  status: 'ok' | 'degraded';
  /** Every pool's shards in one list, each naming its pool. */
  shards: { pool: string; server: string; up: boolean }[];
  pools: Record<string, { backend: string; status: 'ok' | 'degraded' | 'down'; up: number; of: number }>;
}

const CONTENT_TYPE: Record<BulkFormat, string> = { msgpack: 'application/msgpack', ndjson: 'application/x-ndjson' };
const RESPONSE_TYPES: Record<BulkFormat, string[]> = {
  msgpack: ['application/msgpack', 'application/x-msgpack'],
  ndjson: ['application/x-ndjson'],
};

/** A key for the URL path: strings through encodeURIComponent, bytes percent-encoded one by one. */
export function encodeKeyPath(key: KeyInput): string {
  if (typeof key === 'string') return encodeURIComponent(key);
  let out = '';
  for (const b of key) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-_.~]/.test(c) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function query(params: Record<string, number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** The KvError for a non-2xx answer; the status must be the one the error table gives the code. */
async function errorFrom(res: Response): Promise<KvError> {
  const text = await res.text();
  let body: { error?: { code?: unknown; message?: unknown } } | undefined;
  try {
    body = JSON.parse(text);
  } catch {
    // fall through: not JSON
  }
  const code = body?.error?.code;
  if (typeof code !== 'string')
    return new ProtocolError(`HTTP ${res.status} without a JSON error body: ${text.slice(0, 200)}`, res.status);
  const expected = (ErrorTable as Record<string, { status: number }>)[code]?.status;
  if (expected !== undefined && expected !== res.status)
    return new ProtocolError(`${code} came with HTTP ${res.status}, expected ${expected}`, res.status);
  return new KvError(code, String(body?.error?.message ?? ''), res.status);
}

async function expectStatus(res: Response, status: number): Promise<void> {
  if (res.status === status) return;
  if (!res.ok) throw await errorFrom(res);
  await res.arrayBuffer().catch(() => undefined);
  throw new ProtocolError(`expected HTTP ${status}, got ${res.status}`, res.status);
}

function keyText(key: KeyInput): string {
  if (typeof key === 'string') return key;
  if (!isUtf8(key)) throw new TypeError('an NDJSON body can only carry UTF-8 keys; use format msgpack');
  return Buffer.from(key).toString('utf8');
}

function ndjsonKeys(keys: KeyInput[]): Buffer {
  return Buffer.from(keys.map((k) => JSON.stringify(keyText(k)) + '\n').join(''), 'utf8');
}

function ndjsonItems(items: SetItem[]): Buffer {
  const lines = items.map((it) => {
    const line: Record<string, unknown> = { key: keyText(it.key) };
    // Bytes always go as base64 so they arrive exactly, whether or not they happen to be UTF-8.
    if (typeof it.value === 'string') line.value = it.value;
    else line.base64 = wireValue(it.value).toString('base64');
    if (it.ttl !== undefined) line.ttl = it.ttl;
    if (it.flags !== undefined) line.flags = it.flags;
    return JSON.stringify(line) + '\n';
  });
  return Buffer.from(lines.join(''), 'utf8');
}

/**
 * Results of a msgpack bulk response: entries with id 0, ending with END. A request-level error (i = -1)
 * rejects with its code, since the response ends there.
 */
export function parseMsgpackBulk(op: string, body: Uint8Array, count: number, status = 200): ItemResult[] {
  const asm = new ResultAssembler(op, count);
  const entries = decodeEntries(body);
  for (let n = 0; n < entries.length; n++) {
    const e = entries[n];
    if (e.id !== 0) throw new ProtocolError(`bulk response entry has id ${e.id}, expected 0`, status);
    if (!asm.add(e)) continue;
    if (asm.failure) throw new KvError(asm.failure.code, asm.failure.message, status);
    if (n !== entries.length - 1) throw new ProtocolError(`${entries.length - 1 - n} entries after END`, status);
  }
  if (!asm.done) throw new ProtocolError('bulk response ended without END', status);
  return asm.finish();
}

const isUint32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** One NDJSON result line as the equivalent entry, so ResultAssembler checks both formats alike. */
function lineToEntry(line: Record<string, unknown>, keys: KeyInput[], text: string): Entry {
  const bad = (why: string): never => {
    throw new ProtocolError(`bad NDJSON result line ${text.slice(0, 200)}: ${why}`);
  };
  if (line.done === true) {
    if (line.count !== keys.length) bad(`count should be ${keys.length}`);
    return { kind: 'end', id: 0 };
  }
  const i = line.i;
  if (typeof i !== 'number' || !Number.isInteger(i) || i < -1) return bad('i is not an integer >= -1');
  const err = line.error as { code?: unknown; message?: unknown } | undefined;
  if (err !== undefined) {
    if (typeof err !== 'object' || err === null || typeof err.code !== 'string' || typeof err.message !== 'string')
      return bad('error needs code and message strings');
    return { kind: 'error', id: 0, i, code: err.code, message: err.message };
  }
  if (i < 0 || i >= keys.length) return bad(`item index out of range (${keys.length} items)`);
  // The echoed key is a JSON string, so only keys that are text can be compared.
  const want = keys[i];
  const wantText = typeof want === 'string' ? want : isUtf8(want) ? Buffer.from(want).toString('utf8') : undefined;
  if (wantText !== undefined && line.key !== wantText) bad(`key should be ${JSON.stringify(wantText)}`);
  if (line.miss === true) return { kind: 'miss', id: 0, i };
  if (line.ok === true) return { kind: 'ok', id: 0, i };
  if (!isUint32(line.flags)) return bad('flags is not a uint32');
  if (typeof line.value === 'string')
    return { kind: 'value', id: 0, i, flags: line.flags, value: Buffer.from(line.value, 'utf8') };
  if (typeof line.base64 === 'string' && BASE64.test(line.base64))
    return { kind: 'value', id: 0, i, flags: line.flags, value: Buffer.from(line.base64, 'base64') };
  return bad('no value, base64, miss, ok or error');
}

/** Results of an NDJSON bulk response: one line per item, then `{"done": true, "count": N}`. */
export function parseNdjsonBulk(op: string, text: string, keys: KeyInput[], status = 200): ItemResult[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop(); // the last line's newline
  const asm = new ResultAssembler(op, keys.length);
  for (let n = 0; n < lines.length; n++) {
    let obj: unknown;
    try {
      obj = JSON.parse(lines[n]);
    } catch {
      throw new ProtocolError(`NDJSON response line ${n + 1} is not JSON: ${lines[n].slice(0, 200)}`, status);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
      throw new ProtocolError(`NDJSON response line ${n + 1} is not an object`, status);
    if (!asm.add(lineToEntry(obj as Record<string, unknown>, keys, lines[n]))) continue;
    if (asm.failure) throw new KvError(asm.failure.code, asm.failure.message, status);
    if (n !== lines.length - 1) throw new ProtocolError(`${lines.length - 1 - n} lines after the done line`, status);
  }
  if (!asm.done) throw new ProtocolError('NDJSON response ended without a done line', status);
  return asm.finish();
}

export class KvHttpClient {
  readonly baseUrl: string;

  /** `Authorization` for every request, when a token was given. */
  private readonly auth: Record<string, string>;

  /** `token`: an API key or JWT, sent as `Authorization: Bearer` with every request. */
  constructor(baseUrl: string, opts: { token?: string } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.auth = opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` };
  }

  async get(key: KeyInput): Promise<GetResult> {
    const res = await fetch(this.kvUrl(key), { headers: this.auth });
    if (res.status === 404) {
      const err = await errorFrom(res);
      if (err.code === 'NOT_FOUND') return { hit: false };
      throw err;
    }
    if (res.status !== 200) await expectStatus(res, 200);
    const header = res.headers.get('x-kv-flags');
    const flags = header !== null && /^\d{1,10}$/.test(header) ? Number(header) : NaN;
    const value = Buffer.from(await res.arrayBuffer());
    if (!isUint32(flags))
      throw new ProtocolError(`x-kv-flags header ${JSON.stringify(header)} is not a uint32`, res.status);
    return { hit: true, value, flags };
  }

  async set(key: KeyInput, value: ValueInput, opts: SetOpts = {}): Promise<void> {
    const res = await fetch(this.kvUrl(key) + query({ ttl: opts.ttl, flags: opts.flags, wait: opts.wait }), {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream', ...this.auth },
      body: wireValue(value),
    });
    await expectStatus(res, 204);
  }

  /** True if the key was deleted, false if it was absent. */
  async del(key: KeyInput, opts: WaitOpts = {}): Promise<boolean> {
    const res = await fetch(this.kvUrl(key) + query({ wait: opts.wait }), { method: 'DELETE', headers: this.auth });
    if (res.status === 404) {
      const err = await errorFrom(res);
      if (err.code === 'NOT_FOUND') return false;
      throw err;
    }
    await expectStatus(res, 204);
    return true;
  }

  /** One result per key, aligned with `keys` (the stream comes in shard order; it is put back in order). */
  mget(keys: KeyInput[], opts: BulkOpts = {}): Promise<MgetResult[]> {
    const format = opts.format ?? 'msgpack';
    const body = format === 'msgpack' ? encodeBulkKeys(keys) : ndjsonKeys(keys);
    return this.bulk('mget', body, keys, opts) as Promise<MgetResult[]>;
  }

  mset(items: SetItem[], opts: BulkOpts = {}): Promise<MsetResult[]> {
    const format = opts.format ?? 'msgpack';
    const body = format === 'msgpack' ? encodeBulkItems(items) : ndjsonItems(items);
    return this.bulk(
      'mset',
      body,
      items.map((it) => it.key),
      opts,
    ) as Promise<MsetResult[]>;
  }

  async health(): Promise<HealthReport> {
    const res = await fetch(`${this.baseUrl}/healthz`);
    await expectStatus(res, 200);
    return (await res.json()) as HealthReport;
  }

  private kvUrl(key: KeyInput): string {
    return `${this.baseUrl}/v1/kv/${encodeKeyPath(key)}`;
  }

  private async bulk(op: 'mget' | 'mset', body: Buffer, keys: KeyInput[], opts: BulkOpts): Promise<ItemResult[]> {
    const format = opts.format ?? 'msgpack';
    const accept = opts.accept ?? format;
    const res = await fetch(`${this.baseUrl}/v1/${op}${query({ wait: opts.wait })}`, {
      method: 'POST',
      headers: { 'content-type': CONTENT_TYPE[format], accept: CONTENT_TYPE[accept], ...this.auth },
      body,
    });
    await expectStatus(res, 200);
    const type = (res.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase();
    if (!RESPONSE_TYPES[accept].includes(type)) {
      await res.arrayBuffer().catch(() => undefined);
      throw new ProtocolError(`asked for ${accept}, got content-type ${JSON.stringify(type)}`, res.status);
    }
    if (accept === 'msgpack')
      return parseMsgpackBulk(op, Buffer.from(await res.arrayBuffer()), keys.length, res.status);
    return parseNdjsonBulk(op, await res.text(), keys, res.status);
  }
}
