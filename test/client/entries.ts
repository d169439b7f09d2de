/**
 * The wire format of docs/PROTOCOL.md: decoding the gateway's response entries and encoding requests.
 * Decoding is strict (exact arity, exact types) because this client exists to test the gateway: anything
 * off-contract is reported as a ProtocolError instead of being papered over.
 */
import { Packr, Unpackr } from 'msgpackr';
import { ProtocolError } from './errors';

export type Bytes = Buffer | Uint8Array;
/** A string key goes on the wire as msgpack str, a byte key as bin. */
export type KeyInput = string | Bytes;
/** Values always go on the wire as bin; a string is sent as its UTF-8 bytes. */
export type ValueInput = string | Bytes;

export const EntryKind = { VALUE: 0, VALUE_PART: 1, MISS: 2, OK: 3, ERROR: 4, END: 5 } as const;

export type ValueEntry = { kind: 'value'; id: number; i: number; flags: number; value: Buffer };
export type PartEntry = {
  kind: 'part';
  id: number;
  i: number;
  flags: number;
  total: number;
  offset: number;
  chunk: Buffer;
};
export type MissEntry = { kind: 'miss'; id: number; i: number };
export type OkEntry = { kind: 'ok'; id: number; i: number };
export type ErrorEntry = { kind: 'error'; id: number; i: number; code: string; message: string };
export type EndEntry = { kind: 'end'; id: number };
export type Entry = ValueEntry | PartEntry | MissEntry | OkEntry | ErrorEntry | EndEntry;

// int64AsType 'number': a server that spends a uint64 on a small number is still on contract.
const unpackr = new Unpackr({ useRecords: false, int64AsType: 'number' });
// useRecords false: plain msgpack maps, never msgpackr's record extension.
const packr = new Packr({ useRecords: false });

const UINT32_MAX = 0xffffffff;
const isUint = (v: unknown, max = Number.MAX_SAFE_INTEGER): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
const isBin = (v: unknown): v is Uint8Array => v instanceof Uint8Array;
const asBuffer = (b: Uint8Array): Buffer =>
  Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);

function describe(v: unknown): string {
  if (isBin(v)) return `<bin ${v.length}>`;
  try {
    return JSON.stringify(v, (_k, x) => (isBin(x) ? `<bin ${x.length}>` : x)) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Turns one decoded msgpack value into an Entry, or throws a ProtocolError naming what is wrong. */
export function decodeEntry(raw: unknown): Entry {
  const bad = (why: string): never => {
    throw new ProtocolError(`malformed entry ${describe(raw)}: ${why}`);
  };
  if (!Array.isArray(raw)) return bad('not an array');
  const [id, i, kind] = raw as unknown[];
  if (!isUint(id, UINT32_MAX)) return bad('id is not a uint32');
  if (typeof i !== 'number' || !Number.isInteger(i) || i < -1) return bad('i is not an integer >= -1');
  const arity = (n: number): void => {
    if (raw.length !== n) bad(`kind ${String(kind)} needs ${n} elements, got ${raw.length}`);
  };
  const itemIndex = (): void => {
    if (i < 0) bad(`kind ${String(kind)} needs an item index >= 0`);
  };
  switch (kind) {
    case EntryKind.VALUE: {
      arity(5);
      itemIndex();
      const [, , , flags, value] = raw as unknown[];
      if (!isUint(flags, UINT32_MAX)) return bad('flags is not a uint32');
      if (!isBin(value)) return bad('value is not bin');
      return { kind: 'value', id, i, flags, value: asBuffer(value) };
    }
    case EntryKind.VALUE_PART: {
      arity(7);
      itemIndex();
      const [, , , flags, total, offset, chunk] = raw as unknown[];
      if (!isUint(flags, UINT32_MAX)) return bad('flags is not a uint32');
      if (!isUint(total)) return bad('total is not a uint');
      if (!isUint(offset)) return bad('offset is not a uint');
      if (!isBin(chunk)) return bad('chunk is not bin');
      if (offset + chunk.length > total) return bad('offset + chunk length exceeds total');
      return { kind: 'part', id, i, flags, total, offset, chunk: asBuffer(chunk) };
    }
    case EntryKind.MISS:
    case EntryKind.OK:
      arity(3);
      itemIndex();
      return { kind: kind === EntryKind.MISS ? 'miss' : 'ok', id, i };
    case EntryKind.ERROR: {
      arity(5);
      const [, , , code, message] = raw as unknown[];
      if (typeof code !== 'string' || code === '') return bad('code is not a non-empty str');
      if (typeof message !== 'string') return bad('message is not a str');
      return { kind: 'error', id, i, code, message };
    }
    case EntryKind.END:
      arity(3);
      if (i !== -1) return bad('END must have i = -1');
      return { kind: 'end', id };
    default:
      return bad('unknown kind');
  }
}

/**
 * Decodes one server message: one or more msgpack arrays, concatenated. Values and chunks are views into
 * `message` (no copy); callers that keep them for long and care about memory should copy.
 */
export function decodeEntries(message: Uint8Array): Entry[] {
  if (message.length === 0) throw new ProtocolError('empty message');
  let values: unknown[];
  try {
    values = unpackr.unpackMultiple(message);
  } catch (e) {
    throw new ProtocolError(`message of ${message.length} bytes is not a msgpack stream: ${(e as Error).message}`);
  }
  return values.map(decodeEntry);
}

// ---- requests ----------------------------------------------------------------------------------------

export type Op = 'get' | 'set' | 'del' | 'mget' | 'mset' | 'mdel';
export interface SetItem {
  key: KeyInput;
  value: ValueInput;
  ttl?: number;
  flags?: number;
}
/** `wait`: batching hint in ms, how long the gateway may hold the request to coalesce more. */
export type WaitOpts = { wait?: number };
export type SetOpts = { ttl?: number; flags?: number; wait?: number };
type Common = { id: number; wait?: number };
export type Request =
  | (Common & { op: 'get' | 'del'; key: KeyInput })
  | (Common & { op: 'set'; key: KeyInput; value: ValueInput; ttl?: number; flags?: number })
  | (Common & { op: 'mget' | 'mdel'; keys: KeyInput[] })
  | (Common & { op: 'mset'; items: SetItem[] });

export const wireKey = (k: KeyInput): string | Buffer => (typeof k === 'string' ? k : asBuffer(k));
export const wireValue = (v: ValueInput): Buffer => (typeof v === 'string' ? Buffer.from(v, 'utf8') : asBuffer(v));

/** A key as bytes (what the gateway measures and hashes). */
export const keyBytes = (k: KeyInput): Buffer => (typeof k === 'string' ? Buffer.from(k, 'utf8') : asBuffer(k));

/** The msgpack map of one mset item; optional fields are left out rather than sent as nil. */
export function wireItem(item: SetItem): Record<string, unknown> {
  const m: Record<string, unknown> = { key: wireKey(item.key), value: wireValue(item.value) };
  if (item.ttl !== undefined) m.ttl = item.ttl;
  if (item.flags !== undefined) m.flags = item.flags;
  return m;
}

/** The msgpack map of one request, in the field order of PROTOCOL.md. */
export function wireRequest(req: Request): Record<string, unknown> {
  const m: Record<string, unknown> = { id: req.id, op: req.op };
  switch (req.op) {
    case 'get':
    case 'del':
      m.key = wireKey(req.key);
      break;
    case 'set':
      m.key = wireKey(req.key);
      m.value = wireValue(req.value);
      if (req.ttl !== undefined) m.ttl = req.ttl;
      if (req.flags !== undefined) m.flags = req.flags;
      break;
    case 'mget':
    case 'mdel':
      m.keys = req.keys.map(wireKey);
      break;
    case 'mset':
      m.items = req.items.map(wireItem);
      break;
  }
  if (req.wait !== undefined) m.wait = req.wait;
  return m;
}

/** Packs arbitrary values as concatenated msgpack; tests use it for off-contract requests. */
export function encodeRaw(values: unknown[]): Buffer {
  const parts = values.map((v) => packr.pack(v));
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

export const encodeRequest = (req: Request): Buffer => packr.pack(wireRequest(req));
export const encodeRequests = (reqs: Request[]): Buffer => encodeRaw(reqs.map(wireRequest));

/** HTTP bulk bodies (msgpack form): keys, or item maps, concatenated. */
export const encodeBulkKeys = (keys: KeyInput[]): Buffer => encodeRaw(keys.map(wireKey));
export const encodeBulkItems = (items: SetItem[]): Buffer => encodeRaw(items.map(wireItem));
