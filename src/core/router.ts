/**
 * Route to shard: validates each item (so nothing a client sends can become a backend command), finds
 * its shard with the pool's own placement (Backend.shardOf), and hands it to the pool's coalescer.
 * Invalid items fail alone.
 */
import type { Backend } from './backend';
import type { Coalescer } from './coalescer';
import { isValidKey } from './key';
import type { Request } from './request';

export interface ItemLimits {
  maxValueBytes: number;
  maxTtlSeconds: number;
}

export class Router {
  constructor(
    private readonly backend: Backend,
    private readonly co: Coalescer,
    readonly limits: ItemLimits,
  ) {}

  /** False when the item was rejected (and answered) instead of handed to a shard's batch. */
  get(req: Request, i: number, key: Uint8Array, off: number, len: number, wait: number): boolean {
    if (!isValidKey(key, off, len)) {
      req.reject(i, 'BAD_KEY');
      return false;
    }
    this.co.get(this.backend.shardOf(key, off, len), req, i, key, off, len, wait);
    return true;
  }

  del(req: Request, i: number, key: Uint8Array, off: number, len: number, wait: number): void {
    if (!isValidKey(key, off, len)) return req.reject(i, 'BAD_KEY');
    this.co.del(this.backend.shardOf(key, off, len), req, i, key, off, len, wait);
  }

  /** Checks a set's key and value length; returns the shard, or -1 after rejecting the item. */
  checkSet(req: Request, i: number, key: Uint8Array, off: number, len: number, vlen: number, ttl: number): number {
    if (!isValidKey(key, off, len)) {
      req.reject(i, 'BAD_KEY');
      return -1;
    }
    if (vlen > this.limits.maxValueBytes) {
      req.reject(i, 'TOO_LARGE', `value of ${vlen} bytes is over the ${this.limits.maxValueBytes}-byte limit`);
      return -1;
    }
    if (!validTtl(ttl, this.limits.maxTtlSeconds)) {
      req.reject(i, 'BAD_TTL', `ttl must be an integer number of seconds from 0 to ${this.limits.maxTtlSeconds}`);
      return -1;
    }
    return this.backend.shardOf(key, off, len);
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
    const shard = this.checkSet(req, i, key, off, len, vlen, ttl);
    if (shard < 0) return;
    if (!validFlags(flags)) return req.reject(i, 'BAD_FLAGS');
    this.co.set(shard, req, i, key, off, len, ttl, flags, value, voff, vlen, wait);
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
    const shard = this.checkSet(req, i, key, off, len, vlen, ttl);
    if (shard < 0) return;
    if (!validFlags(flags)) return req.reject(i, 'BAD_FLAGS');
    this.co.setParts(shard, req, i, key, off, len, ttl, flags, parts, lens, vlen, wait);
  }
}

export function validTtl(ttl: number, max: number): boolean {
  return Number.isInteger(ttl) && ttl >= 0 && ttl <= max;
}

export function validFlags(flags: number): boolean {
  return Number.isInteger(flags) && flags >= 0 && flags <= 0xffffffff;
}
