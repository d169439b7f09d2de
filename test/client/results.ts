/**
 * Turns the entries of one request into one result per item, checking the contract of PROTOCOL.md on the
 * way: every item gets exactly one VALUE, MISS, OK or ERROR (or a complete, in-order run of VALUE_PARTs),
 * then one END. Shared by the WebSocket client and the HTTP msgpack bulk parser.
 */
import type { Entry, PartEntry } from './entries';
import { KvError, ProtocolError } from './errors';

export type Hit = { hit: true; value: Buffer; flags: number };
export type Miss = { hit: false };
export type GetResult = Hit | Miss;
export type Stored = { ok: true };
export type Deleted = { deleted: boolean };
export type ItemError = { error: { code: string; message: string } };

/** Any item's result; each bulk op narrows it (see MgetResult, MsetResult, MdelResult). */
export type ItemResult = GetResult | Stored | Deleted | ItemError;
export type MgetResult = GetResult | ItemError;
export type MsetResult = Stored | ItemError;
export type MdelResult = Deleted | ItemError;

export const isItemError = (r: ItemResult): r is ItemError => 'error' in r;

/** Reassembles VALUE_PART runs, one per item index; pieces must start at 0 and be contiguous. */
export class PartAssembler {
  private readonly runs = new Map<number, { flags: number; total: number; next: number; chunks: Buffer[] }>();

  /** Returns the whole value when `e` is its last piece, undefined while more are due. */
  add(e: PartEntry): Buffer | undefined {
    const where = `id ${e.id} item ${e.i}`;
    let run = this.runs.get(e.i);
    if (!run) {
      if (e.offset !== 0) throw new ProtocolError(`${where}: first VALUE_PART has offset ${e.offset}, expected 0`);
      run = { flags: e.flags, total: e.total, next: 0, chunks: [] };
      this.runs.set(e.i, run);
    }
    if (e.offset !== run.next) throw new ProtocolError(`${where}: VALUE_PART offset ${e.offset}, expected ${run.next}`);
    if (e.total !== run.total)
      throw new ProtocolError(`${where}: VALUE_PART total changed from ${run.total} to ${e.total}`);
    if (e.flags !== run.flags)
      throw new ProtocolError(`${where}: VALUE_PART flags changed from ${run.flags} to ${e.flags}`);
    if (e.offset + e.chunk.length > run.total)
      throw new ProtocolError(`${where}: VALUE_PART runs past total ${run.total}`);
    run.chunks.push(e.chunk);
    run.next += e.chunk.length;
    if (run.next < run.total) return undefined;
    this.runs.delete(e.i);
    return Buffer.concat(run.chunks, run.total);
  }

  has(i: number): boolean {
    return this.runs.has(i);
  }

  /** The shard failed mid-value (PROTOCOL.md): the pieces so far are worthless. */
  discard(i: number): void {
    this.runs.delete(i);
  }

  /** Item indexes whose value is still missing pieces. */
  incomplete(): number[] {
    return [...this.runs.keys()];
  }
}

type Family = 'read' | 'write' | 'del' | 'any';
const FAMILY: Record<string, Family> = {
  get: 'read',
  mget: 'read',
  set: 'write',
  mset: 'write',
  del: 'del',
  mdel: 'del',
};
const ALLOWED: Record<Family, ReadonlySet<Entry['kind']>> = {
  read: new Set(['value', 'part', 'miss', 'error']),
  write: new Set(['ok', 'error']),
  del: new Set(['ok', 'miss', 'error']),
  any: new Set(['value', 'part', 'miss', 'ok', 'error']),
};

export class ResultAssembler {
  readonly results: (ItemResult | undefined)[];
  /** Set by a request-level ERROR (i = -1): the request failed as a whole. */
  failure?: KvError;
  /** Set when END arrived and every item had its result. */
  done = false;
  private filled = 0;
  private readonly parts = new PartAssembler();
  private readonly family: Family;

  /** `op` picks which entry kinds are legal (an unknown op, as tests send on purpose, allows all). */
  constructor(
    readonly op: string,
    readonly count: number,
  ) {
    this.results = new Array<ItemResult | undefined>(count).fill(undefined);
    this.family = FAMILY[op] ?? 'any';
  }

  /** Applies one entry of this request; returns true once the request is over (END, or failed as a whole). */
  add(e: Entry): boolean {
    const where = `id ${e.id} (${this.op})`;
    if (this.done || this.failure) throw new ProtocolError(`${where}: ${e.kind} entry after the request ended`);
    if (e.kind === 'end') return this.end(where);
    if (e.kind === 'error' && e.i === -1) {
      this.failure = new KvError(e.code, e.message);
      return true;
    }
    if (!ALLOWED[this.family].has(e.kind)) throw new ProtocolError(`${where}: ${e.kind} entry is not a valid answer`);
    if (e.i >= this.count) throw new ProtocolError(`${where}: item index ${e.i} out of range (${this.count} items)`);
    if (this.results[e.i] !== undefined) throw new ProtocolError(`${where}: item ${e.i} answered twice`);
    if (e.kind === 'error' && this.parts.has(e.i)) this.parts.discard(e.i);
    if (e.kind !== 'part' && this.parts.has(e.i))
      throw new ProtocolError(`${where}: item ${e.i} got ${e.kind} in the middle of a VALUE_PART run`);
    let r: ItemResult | undefined;
    switch (e.kind) {
      case 'value':
        r = { hit: true, value: e.value, flags: e.flags };
        break;
      case 'part': {
        const value = this.parts.add(e);
        if (value) r = { hit: true, value, flags: e.flags };
        break;
      }
      case 'miss':
        r = this.family === 'del' ? { deleted: false } : { hit: false };
        break;
      case 'ok':
        r = this.family === 'del' ? { deleted: true } : { ok: true };
        break;
      case 'error':
        r = { error: { code: e.code, message: e.message } };
        break;
    }
    if (r) {
      this.results[e.i] = r;
      this.filled++;
    }
    return false;
  }

  private end(where: string): boolean {
    const open = this.parts.incomplete();
    if (open.length)
      throw new ProtocolError(`${where}: END with VALUE_PART runs incomplete for items ${open.join(', ')}`);
    if (this.filled !== this.count) {
      const missing = this.results.flatMap((r, i) => (r === undefined ? [i] : [])).slice(0, 10);
      throw new ProtocolError(
        `${where}: END before ${this.count - this.filled} of ${this.count} items were answered (e.g. ${missing.join(', ')})`,
      );
    }
    this.done = true;
    return true;
  }

  /** The results once the request is over; throws the request-level error if there was one. */
  finish(): ItemResult[] {
    if (this.failure) throw this.failure;
    if (!this.done) throw new ProtocolError(`${this.op}: request did not end`);
    return this.results as ItemResult[];
  }
}
