/**
 * Route to shard: validates each item (so nothing a client sends can become a backend command), picks its
 * pool by key prefix (the longest configured prefix the key starts with, else the default pool), finds its
 * shard with that pool's own placement (Backend.shardOf), and hands it to that pool's coalescer. Invalid
 * items fail alone; the items of one bulk request may go to different pools, each settles on its own.
 *
 * The prefix table is one buffer of prefix bytes sorted longest first, compared in place against the
 * key's bytes: no string, no allocation and no clock read per key. With no routes every key goes to the
 * default pool without a look at the table.
 */
import type { Backend } from './backend';
import type { Coalescer } from './coalescer';
import { isValidKey } from './key';
import type { RouteSpec } from './pools';
import type { Request } from './request';

export interface ItemLimits {
  maxValueBytes: number;
  maxTtlSeconds: number;
}

/** One pool as the router sees it: its backend (placement, shards) and the coalescer timing its flushes. */
export interface Pool {
  readonly name: string;
  readonly backend: Backend;
  readonly coalescer: Coalescer;
}

export class Router {
  pools: readonly Pool[] = [];
  private fallback!: Pool;
  /** Prefix k is bytes[starts[k], starts[k] + lens[k]) and routes to pools[poolOf[k]]; longest first. */
  private bytes = Buffer.alloc(0);
  private starts = new Int32Array(0);
  private lens = new Int32Array(0);
  private poolOf = new Int32Array(0);

  constructor(
    pools: readonly Pool[],
    routes: readonly RouteSpec[],
    defaultPool: string,
    /** Replaced by a reload (gateway.ts): checked per item from then on. */
    public limits: ItemLimits,
  ) {
    this.replace(pools, routes, defaultPool);
  }

  /**
   * Routes every key from now on by these pools and routes (a reload). Everything that holds this Router
   * (fronts, get windows) sees the change at once; what the old pools' coalescers hold is theirs to send.
   */
  replace(pools: readonly Pool[], routes: readonly RouteSpec[], defaultPool: string): void {
    const index = (name: string): number => {
      const k = pools.findIndex((p) => p.name === name);
      if (k < 0) throw new RangeError(`no pool named ${JSON.stringify(name)}`);
      return k;
    };
    const fallback = pools[index(defaultPool)];
    const table = routes
      .map((r) => ({ prefix: Buffer.from(r.prefix, 'utf8'), pool: index(r.pool) }))
      .sort((a, b) => b.prefix.length - a.prefix.length);
    const starts = new Int32Array(table.length);
    const lens = new Int32Array(table.length);
    const poolOf = new Int32Array(table.length);
    let at = 0;
    table.forEach((r, k) => {
      starts[k] = at;
      lens[k] = r.prefix.length;
      poolOf[k] = r.pool;
      at += r.prefix.length;
    });
    this.pools = pools;
    this.fallback = fallback;
    this.bytes = Buffer.concat(table.map((r) => r.prefix));
    this.starts = starts;
    this.lens = lens;
    this.poolOf = poolOf;
  }

  /** The pool owning a key: the first (longest) prefix it starts with, else the default pool. */
  poolFor(key: Uint8Array, off: number, len: number): Pool {
    const n = this.lens.length;
    for (let k = 0; k < n; k++) {
      const plen = this.lens[k];
      if (plen > len) continue;
      const s = this.starts[k];
      let j = 0;
      while (j < plen && this.bytes[s + j] === key[off + j]) j++;
      if (j === plen) return this.pools[this.poolOf[k]];
    }
    return this.fallback;
  }

  /**
   * Why a key goes to its pool, for tools (the admin console; allocates): the prefix that matched, or null
   * when none did and the key goes to the default pool. The same walk as `poolFor`.
   */
  routeOf(key: Uint8Array): { pool: Pool; prefix: string | null } {
    for (let k = 0; k < this.lens.length; k++) {
      const plen = this.lens[k];
      if (plen > key.length) continue;
      const s = this.starts[k];
      let j = 0;
      while (j < plen && this.bytes[s + j] === key[j]) j++;
      if (j === plen) return { pool: this.pools[this.poolOf[k]], prefix: this.bytes.toString('utf8', s, s + plen) };
    }
    return { pool: this.fallback, prefix: null };
  }

  /** False when the item was rejected (and answered) instead of handed to a shard's batch. */
  get(req: Request, i: number, key: Uint8Array, off: number, len: number, wait: number): boolean {
    if (!isValidKey(key, off, len)) {
      req.reject(i, 'BAD_KEY');
      return false;
    }
    const p = this.poolFor(key, off, len);
    p.coalescer.get(p.backend.shardOf(key, off, len), req, i, key, off, len, wait);
    return true;
  }

  del(req: Request, i: number, key: Uint8Array, off: number, len: number, wait: number): void {
    if (!isValidKey(key, off, len)) return req.reject(i, 'BAD_KEY');
    const p = this.poolFor(key, off, len);
    p.coalescer.del(p.backend.shardOf(key, off, len), req, i, key, off, len, wait);
  }

  set(
    req: Request,
    i: number,
    key: Uint8Array,
    off: number,
    len: number,
    ttl: number,
    flags: number,
    value: Uint8Array,
    voff: number,
    vlen: number,
    wait: number,
  ): void {
    if (!this.checkSet(req, i, key, off, len, vlen, ttl, flags)) return;
    const p = this.poolFor(key, off, len);
    p.coalescer.set(p.backend.shardOf(key, off, len), req, i, key, off, len, ttl, flags, value, voff, vlen, wait);
  }

  setParts(
    req: Request,
    i: number,
    key: Uint8Array,
    off: number,
    len: number,
    ttl: number,
    flags: number,
    parts: Buffer[],
    lens: number[],
    vlen: number,
    wait: number,
  ): void {
    if (!this.checkSet(req, i, key, off, len, vlen, ttl, flags)) return;
    const p = this.poolFor(key, off, len);
    p.coalescer.setParts(p.backend.shardOf(key, off, len), req, i, key, off, len, ttl, flags, parts, lens, vlen, wait);
  }

  /** Sends everything pending in every pool now (shutdown, tests). */
  flushAll(): void {
    for (const p of this.pools) p.coalescer.flushAll();
  }

  /** Checks a set's key, value length, ttl and flags; false after rejecting the item. */
  private checkSet(
    req: Request,
    i: number,
    key: Uint8Array,
    off: number,
    len: number,
    vlen: number,
    ttl: number,
    flags: number,
  ): boolean {
    if (!isValidKey(key, off, len)) {
      req.reject(i, 'BAD_KEY');
      return false;
    }
    if (vlen > this.limits.maxValueBytes) {
      req.reject(i, 'TOO_LARGE', `value of ${vlen} bytes is over the ${this.limits.maxValueBytes}-byte limit`);
      return false;
    }
    if (!validTtl(ttl, this.limits.maxTtlSeconds)) {
      req.reject(i, 'BAD_TTL', `ttl must be an integer number of seconds from 0 to ${this.limits.maxTtlSeconds}`);
      return false;
    }
    if (!validFlags(flags)) {
      req.reject(i, 'BAD_FLAGS');
      return false;
    }
    return true;
  }
}

export function validTtl(ttl: number, max: number): boolean {
  return Number.isInteger(ttl) && ttl >= 0 && ttl <= max;
}

export function validFlags(flags: number): boolean {
  return Number.isInteger(flags) && flags >= 0 && flags <= 0xffffffff;
}
