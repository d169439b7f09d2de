/**
 * The sets and deletes bound for one shard in one flush, written as one pipelined run of meta commands
 * (`ms <key> <len> T<ttl> F<flags> O<n>` + data, `md <key> O<n>`): memcached's missing "putMulti".
 * Commands are not quiet: every item gets exactly one reply line, in order, echoing its opaque `O<n>`,
 * so even a reply without an opaque (SERVER_ERROR) maps to its item and a reply out of step is detected.
 *
 * Opaques come from the shard connection's OpaqueCounter, not from the op's place in the batch: a 32-bit
 * counter that wraps, so an opaque comes back only after 2^32 writes on that shard, far longer than any
 * reply can linger (a stray `HD O0` once acknowledged a write that never happened, when every batch
 * started at O0). Each op keeps its opaque, and a reply whose opaque is not the head op's is out of step.
 *
 * Ops of an abandoned request are cut out just before the batch is sent (`prune`): each op records where
 * its command starts, and a compaction pass runs only when some op's request is abandoned. Opaques stay
 * with their op, so removing one renumbers nothing.
 */
import type { MutOps } from '../../core/backend';
import type { ErrorCode } from '../../core/errors';
import type { Request } from '../../core/request';
import { grow } from '../../core/grow';
import { MetaStatus } from './reply-parser';

export const enum MutKind {
  Set = 0,
  Del = 1,
}

/** Per-connection opaque source: 1, 2, ... 4294967295, 0, 1, ... */
export class OpaqueCounter {
  private v = 0;
  next(): number {
    this.v = (this.v + 1) >>> 0;
    return this.v;
  }
}

/** The wire form of each MetaStatus, for messages. */
const META_REPLY = ['HD', 'NS', 'NF', 'EX', 'SERVER_ERROR'];

export class MutationBatch implements MutOps {
  readonly kind = 1 as const;
  cmd: Buffer;
  len = 0;
  n = 0;
  sentAt = 0;
  /** performance.now() at the write, for the shard's round-trip histogram. */
  sentHr = 0;
  cursor = 0;
  private req: (Request | null)[] = [];
  private idx: Int32Array;
  private kinds: Uint8Array;
  private opaque: Uint32Array;
  /** Where op k's command starts in `cmd` (its end is the next op's start, or `len`). */
  private start: Int32Array;

  constructor(
    private readonly maxOps: number,
    private readonly opaques: OpaqueCounter = new OpaqueCounter(),
  ) {
    this.cmd = Buffer.allocUnsafeSlow(64 * 1024);
    this.idx = new Int32Array(maxOps);
    this.kinds = new Uint8Array(maxOps);
    this.opaque = new Uint32Array(maxOps);
    this.start = new Int32Array(maxOps);
  }

  get full(): boolean {
    return this.n >= this.maxOps;
  }

  /** The commands' length so far (the coalescer compares it with batch.maxBytes). */
  get bytes(): number {
    return this.len;
  }

  /** Starts a set; the caller then appends exactly `vlen` value bytes and calls endSet(). */
  beginSet(
    req: Request,
    i: number,
    key: Uint8Array,
    koff: number,
    klen: number,
    ttl: number,
    flags: number,
    vlen: number,
  ): void {
    this.ensure(klen + vlen + 64);
    this.start[this.n] = this.len;
    let p = this.ascii('ms ', this.len);
    p = this.copyIn(key, koff, klen, p);
    this.cmd[p++] = 0x20;
    p = this.uint(vlen, p);
    if (ttl > 0) {
      p = this.ascii(' T', p);
      p = this.uint(ttl, p);
    }
    if (flags !== 0) {
      p = this.ascii(' F', p);
      p = this.uint(flags, p);
    }
    this.len = this.finishLine(req, i, MutKind.Set, p);
  }

  appendValue(src: Uint8Array, off: number, len: number): void {
    this.cmd.set(len === src.length && off === 0 ? src : src.subarray(off, off + len), this.len);
    this.len += len;
  }

  endSet(): void {
    this.cmd[this.len++] = 0x0d;
    this.cmd[this.len++] = 0x0a;
  }

  addDel(req: Request, i: number, key: Uint8Array, koff: number, klen: number): void {
    this.ensure(klen + 32);
    this.start[this.n] = this.len;
    let p = this.ascii('md ', this.len);
    p = this.copyIn(key, koff, klen, p);
    this.len = this.finishLine(req, i, MutKind.Del, p);
  }

  bytesOut(): Buffer {
    return this.cmd.subarray(0, this.len);
  }

  /**
   * Cuts out the ops whose request was abandoned (they settle through Request.drop, with no output) and
   * returns how many ops are left. Called just before the batch is written; one flag read per op when
   * nothing is abandoned.
   */
  prune(): number {
    let k = 0;
    while (k < this.n && !this.req[k]!.abandoned) k++;
    if (k === this.n) return this.n;
    let w = k;
    let out = this.start[k];
    for (; k < this.n; k++) {
      const r = this.req[k]!;
      const s = this.start[k];
      const e = k + 1 < this.n ? this.start[k + 1] : this.len;
      if (r.abandoned) {
        r.drop(this.idx[k]);
        continue;
      }
      if (s !== out) this.cmd.copyWithin(out, s, e);
      this.start[w] = out;
      this.req[w] = r;
      this.idx[w] = this.idx[k];
      this.kinds[w] = this.kinds[k];
      this.opaque[w] = this.opaque[k];
      out += e - s;
      w++;
    }
    for (let j = w; j < this.n; j++) this.req[j] = null;
    this.n = w;
    this.len = out;
    return w;
  }

  /** The reply line for item `cursor` arrived. `opaque` is -1 when the line carried none. */
  settleNext(status: MetaStatus, opaque: number, message: string): boolean {
    const k = this.cursor;
    if (k >= this.n || (opaque !== -1 && opaque !== this.opaque[k])) return false;
    this.cursor++;
    const r = this.req[k]!,
      i = this.idx[k];
    if (status === MetaStatus.Stored) r.ok(i);
    else if (status === MetaStatus.NotFound && this.kinds[k] === MutKind.Del) r.miss(i);
    else if (status === MetaStatus.ServerError) r.error(i, 'SHARD_ERROR', message);
    else r.error(i, 'NOT_STORED', `memcached answered ${META_REPLY[status]}`);
    return true;
  }

  get done(): boolean {
    return this.cursor >= this.n;
  }

  fail(code: ErrorCode, message?: string): void {
    for (let k = this.cursor; k < this.n; k++) this.req[k]!.error(this.idx[k], code, message);
    this.cursor = this.n;
  }

  reset(): void {
    for (let k = 0; k < this.n; k++) this.req[k] = null;
    this.n = 0;
    this.len = 0;
    this.cursor = 0;
  }

  private finishLine(req: Request, i: number, kind: MutKind, p: number): number {
    const k = this.n++;
    const o = this.opaques.next();
    this.opaque[k] = o;
    p = this.ascii(' O', p);
    p = this.uint(o, p);
    this.cmd[p++] = 0x0d;
    this.cmd[p++] = 0x0a;
    this.req[k] = req;
    this.idx[k] = i;
    this.kinds[k] = kind;
    req.submitted();
    return p;
  }

  private ascii(s: string, p: number): number {
    for (let j = 0; j < s.length; j++) this.cmd[p++] = s.charCodeAt(j);
    return p;
  }

  private copyIn(src: Uint8Array, off: number, len: number, p: number): number {
    for (let j = 0; j < len; j++) this.cmd[p++] = src[off + j];
    return p;
  }

  private uint(v: number, p: number): number {
    if (v === 0) {
      this.cmd[p] = 0x30;
      return p + 1;
    }
    let digits = 0;
    for (let t = v; t > 0; t = Math.floor(t / 10)) digits++;
    for (let j = digits - 1, t = v; j >= 0; j--, t = Math.floor(t / 10)) this.cmd[p + j] = 0x30 + (t % 10);
    return p + digits;
  }

  private ensure(extra: number): void {
    this.cmd = grow(this.cmd, this.len, this.len + extra);
  }
}
