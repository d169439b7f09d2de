/**
 * HTTP bulk: POST /v1/mget and /v1/mset. The body is parsed as it streams in and every whole item goes
 * to its shard at once; results stream out as shards answer (msgpack entries or NDJSON lines). Reading
 * pauses while too many items are in flight or the client is not reading its answers, so a huge body
 * costs bounded memory.
 */
import { isUtf8 } from 'node:buffer';
import type { GatewayContext } from './context';
import { ErrorCode, ErrorTable, errorBody, errorObject } from '../core/errors';
import { BodyTooLarge, MsgpackItems, NdjsonLines } from '../decode/body-stream';
import { RateLimitedLog } from '../core/log';
import { ItemFields } from '../decode/request-fields';
import { MsgpackError } from '../decode/msgpack-reader';
import { GetWindow } from '../flow/get-window';
import { Request } from '../core/request';
import { Front, TallyOp } from '../core/tally';
import { BUFFER_SIZE, BufferPool } from '../stream/buffer-pool';
import { EntryWriter, Kind } from '../stream/entry-writer';
import { Flushable, markForFlush } from '../stream/flush-list';
import { errorHeaders, HttpOut, statusLine } from '../stream/http-out';
import type { OutputMeter } from '../stream/output-meter';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../uws';
import { validTtl } from '../core/router';
import { declaredEmpty, NO_BYTES, refuseFraming } from './framing';
import { refuseBrowser } from './browser-gate';
import { discardLimit, readQuery } from './http-kv';
import { matchContentType, negotiate } from './media-type';
import type { Access } from '../security/access';
import { Perm, type Principal } from '../security/principal';
import { httpPrincipal, rateLimitedMessage, UNAUTHORIZED_HEADERS, unauthorizedMessage } from './access-gate';

const MSGPACK = 'application/msgpack';
const NDJSON = 'application/x-ndjson';
/** The bulk routes' media types (docs/PROTOCOL.md, "Bulk bodies"), for the body and for Accept alike. */
const TYPES = [MSGPACK, 'application/x-msgpack', NDJSON] as const;
/** The two formats by their names, in the order `negotiate` answers (0 msgpack, 1 NDJSON). */
const FORMATS = [[MSGPACK, 'application/x-msgpack'], [NDJSON]] as const;
/** Strict base64 (RFC 4648 section 4): the standard alphabet, padded to a multiple of 4. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
/** The body is not read on while this many gets (or key bytes) wait for the client's window. */
const PARK_ITEMS = 1024;
const PARK_BYTES = 64 * 1024;
/** NDJSON carries a binary value as base64 (4/3), plus a little for the line around it. */
const NDJSON_EXPANSION = 1.34;
/** Value bytes encoded per base64 piece: a multiple of 3, so pieces join without padding. */
const BASE64_PIECE = 12 * 1024;

/**
 * Whether an NDJSON answer carries this value as a JSON string (`"value"`) rather than as base64: only
 * UTF-8 text whose escaped form is no longer than its base64. JSON escapes a control character as six
 * bytes (`\u0000`), so 100 KB of NULs would be a 600 KB line; the client's get window counts every
 * value at NDJSON_EXPANSION, and this keeps that an upper bound.
 */
function asJsonText(v: Buffer): boolean {
  if (!isUtf8(v)) return false;
  let extra = 0;
  const budget = 4 * Math.ceil(v.length / 3) - v.length;
  for (let k = 0; k < v.length; k++) {
    const c = v[k];
    if (c < 0x20) extra += c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d ? 1 : 5;
    else if (c === 0x22 || c === 0x5c) extra++;
    else continue;
    if (extra > budget) return false;
  }
  return true;
}

class MsgpackOut extends EntryWriter {
  constructor(
    private readonly out: HttpOut,
    pool: BufferPool,
  ) {
    super(pool);
  }
  isClosed(): boolean {
    return this.out.done;
  }
  protected ship(buf: Buffer, len: number): void {
    this.out.chunk('200 OK', MSGPACK, buf, len); // takes the buffer
  }
}

class NdjsonOut implements Flushable {
  queuedForFlush = false;
  private buf: Buffer | null = null;
  len = 0;
  constructor(
    private readonly out: HttpOut,
    private readonly pool: BufferPool,
  ) {}

  line(s: string): void {
    if (this.out.done) return;
    const n = Buffer.byteLength(s) + 1;
    if (n > BUFFER_SIZE) return this.bigLine(s); // fills the current frame on, to the byte
    if (this.buf !== null && this.len + n > BUFFER_SIZE) this.flush();
    if (this.buf === null) this.take();
    this.len += this.buf!.write(s, this.len, 'utf8');
    this.buf![this.len++] = 0x0a;
  }

  /** A line longer than a buffer (a large value) goes out in full 16 KiB pool buffers. */
  private bigLine(s: string): void {
    const bytes = Buffer.from(s + '\n', 'utf8');
    for (let off = 0; off < bytes.length;) {
      if (this.buf === null) this.take();
      const k = Math.min(BUFFER_SIZE - this.len, bytes.length - off);
      bytes.copy(this.buf!, this.len, off, off + k);
      this.len += k;
      off += k;
      if (this.len === BUFFER_SIZE) this.flush();
    }
  }

  /**
   * `head` + `"base64":"` + the value as base64 + `tail`, encoded piece by piece straight into the
   * frames: no string or buffer the size of the value, whatever its size.
   */
  base64Line(head: string, v: Buffer, tail: string): void {
    if (this.out.done) return;
    const h = head + '"base64":"';
    const n = Buffer.byteLength(h);
    // The head may hold UTF-8 (the key): written whole, in a frame with room for it.
    if (this.buf !== null && this.len + n > BUFFER_SIZE - 1) this.flush();
    if (this.buf === null) this.take();
    this.len += this.buf!.write(h, this.len, 'utf8');
    for (let off = 0; off < v.length; off += BASE64_PIECE) {
      this.ascii(v.toString('base64', off, Math.min(v.length, off + BASE64_PIECE)));
    }
    this.ascii(tail);
    if (this.len === BUFFER_SIZE) this.flush();
    if (this.buf === null) this.take();
    this.buf![this.len++] = 0x0a;
  }

  /** ASCII text (one byte per character) appended across frames, filling each to the byte. */
  private ascii(s: string): void {
    for (let at = 0; at < s.length;) {
      if (this.buf === null) this.take();
      const room = BUFFER_SIZE - this.len;
      if (room === 0) {
        this.flush();
        continue;
      }
      const k = Math.min(room, s.length - at);
      this.len += this.buf!.write(at === 0 && k === s.length ? s : s.slice(at, at + k), this.len, 'latin1');
      at += k;
    }
  }

  private take(): void {
    this.buf = this.pool.acquire();
    this.len = 0;
    markForFlush(this);
  }

  flush(): void {
    const b = this.buf;
    if (b === null) return;
    this.buf = null;
    const n = this.len;
    this.len = 0;
    if (n > 0)
      this.out.chunk('200 OK', NDJSON, b, n); // takes the buffer
    else this.pool.release(b);
  }
}

class BulkRequest extends Request implements OutputMeter {
  readonly mp: MsgpackOut | null;
  readonly nd: NdjsonOut | null;
  /** NDJSON answers name their key; msgpack answers only index it. */
  readonly keys: string[] = [];
  private readonly partial = new Map<number, Buffer>();
  readonly window: GetWindow | null;
  count = 0;
  resume: () => void = () => {};
  onDone: (() => void) | null = null;
  /** The body broke off part way: written as the `i` -1 error once the items before it are answered. */
  broken: { code: ErrorCode; message: string } | null = null;
  /** Set when rate limits are on: answers' bytes are charged to `principal`. */
  access: Access | null = null;
  principal: Principal | null = null;

  constructor(
    readonly out: HttpOut,
    ndjsonOut: boolean,
    pool: BufferPool,
    ctx: GatewayContext,
    isGet: boolean,
  ) {
    super();
    this.mp = ndjsonOut ? null : new MsgpackOut(out, pool);
    this.nd = ndjsonOut ? new NdjsonOut(out, pool) : null;
    this.window = isGet
      ? new GetWindow(
          ctx.router,
          ctx.budget,
          this,
          ctx.config.limits.maxBufferedBytesPerConnection,
          ndjsonOut ? NDJSON_EXPANSION : 1,
        )
      : null;
  }

  heldBytes(): number {
    return this.out.heldBytes() + (this.mp !== null ? this.mp.unshipped : this.nd!.len);
  }

  protected override accepts(i: number, total: number, whole: boolean): boolean {
    return this.window === null || this.window.accepts(this, i, total, whole);
  }
  protected override onSettled(i: number): void {
    this.window?.settled(this, i);
  }
  protected override onRedo(i: number, key: Uint8Array, off: number, len: number): void {
    this.window!.requeue(this, i, key, off, len);
  }

  protected onValue(
    i: number,
    flags: number,
    total: number,
    offset: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void {
    if (offset === 0 && this.access !== null) this.access.charge(this.principal!, total, 0);
    if (this.mp !== null) this.mp.value(0, i, flags, total, offset, buf, off, len);
    else {
      if (this.out.done) return;
      let v: Buffer;
      if (offset === 0 && len === total) v = buf.subarray(off, off + len);
      else {
        let acc = this.partial.get(i);
        if (acc === undefined) this.partial.set(i, (acc = Buffer.allocUnsafe(total)));
        buf.copy(acc, offset, off, off + len);
        if (offset + len < total) return;
        this.partial.delete(i);
        v = acc;
      }
      const head = `{"i":${i},"key":${JSON.stringify(this.keys[i])},`;
      if (asJsonText(v)) this.nd!.line(`${head}"value":${JSON.stringify(v.toString('utf8'))},"flags":${flags}}`);
      else this.nd!.base64Line(head, v, `","flags":${flags}}`);
    }
    if (offset + len === total) this.resume();
  }
  protected onMiss(i: number): void {
    this.window?.learnSmall();
    if (this.mp !== null) this.mp.simple(0, i, Kind.Miss);
    else this.nd!.line(`{"i":${i},"key":${JSON.stringify(this.keys[i])},"miss":true}`);
    this.resume();
  }
  protected onOk(i: number): void {
    if (this.mp !== null) this.mp.simple(0, i, Kind.Ok);
    else this.nd!.line(`{"i":${i},"key":${JSON.stringify(this.keys[i])},"ok":true}`);
    this.resume();
  }
  protected onError(i: number, code: ErrorCode, message?: string): void {
    this.partial.delete(i);
    this.writeError(i, code, message);
    this.resume();
  }
  private writeError(i: number, code: ErrorCode, message?: string): void {
    if (this.mp !== null) this.mp.error(0, i, code, message ?? ErrorTable[code].message);
    else {
      const key = i >= 0 && this.keys[i] !== undefined ? `"key":${JSON.stringify(this.keys[i])},` : '';
      this.nd!.line(`{"i":${i},${key}"error":${JSON.stringify(errorObject(code, message))}}`);
    }
  }
  protected onFinish(): void {
    // A body that broke off: its error comes after the results of every item before it.
    if (this.broken !== null) this.writeError(-1, this.broken.code, this.broken.message);
    if (this.mp !== null) {
      this.mp.simple(0, -1, Kind.End);
      this.mp.flush();
    } else {
      this.nd!.line(`{"done":true,"count":${this.count}}`);
      this.nd!.flush();
    }
    this.out.endChunked();
    this.onDone?.();
  }
}

export function mountBulk(app: TemplatedApp, ctx: GatewayContext): void {
  // Per gateway: a client-triggered bug logs a line per 10 s at most, never a stack.
  const bugs = new RateLimitedLog('bulk request handling failed', 10_000, (line) =>
    ctx.events.emit('gateway', 'handler.failed', 'error', line, {}, null),
  );
  app.post('/v1/mget', (res, req) => handle(res, req, ctx, true, bugs));
  app.post('/v1/mset', (res, req) => handle(res, req, ctx, false, bugs));
}

/** Strict base64 (see BASE64), also refusing unused bits that are not zero; null if not. */
function base64Value(s: string): Buffer | null {
  if (!BASE64.test(s)) return null;
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  if (pad > 0) {
    const last = B64.indexOf(s[s.length - pad - 1]);
    if ((last & (pad === 2 ? 0x0f : 0x03)) !== 0) return null;
  }
  return Buffer.from(s, 'base64');
}

function handle(res: HttpResponse, req: HttpRequest, ctx: GatewayContext, isGet: boolean, bugs: RateLimitedLog): void {
  const { router, config, access } = ctx;
  const limits = config.limits;
  const maxInflightItems = limits.maxInflightPerConnection;
  const tally = ctx.tally;
  const op = isGet ? TallyOp.MGet : TallyOp.MSet;
  if (refuseFraming(res, req)) return tally.request(Front.Http, op, 'BAD_REQUEST');
  if (refuseBrowser(res, req, ctx.browser, 'POST')) return tally.request(Front.Http, op, 'FORBIDDEN');
  if (ctx.draining) {
    tally.request(Front.Http, op, 'SHUTTING_DOWN');
    return refuseDraining(res);
  }
  if (ctx.gate.refuse()) {
    tally.request(Front.Http, op, 'BUSY');
    return refuseBusy(res);
  }
  const out = new HttpOut(res, ctx.pool, ctx.gate);
  const origin = req.getHeader('origin');
  if (origin !== '') out.cors = ctx.browser.corsHeaders(origin);
  /** Refused before a Request exists: counted, then told. */
  const refuse = (code: ErrorCode, message?: string, headers?: [string, string][]): void => {
    tally.request(Front.Http, op, code);
    out.error(code, message, headers);
  };
  const who = httpPrincipal(access, req);
  if (typeof who === 'string') return refuse('UNAUTHORIZED', unauthorizedMessage(who), UNAUTHORIZED_HEADERS);
  const empty = declaredEmpty(req);
  const inType = matchContentType(req.getHeader('content-type'), TYPES);
  if (inType === null) return refuse('BAD_CONTENT_TYPE', `content-type must be one of ${TYPES.join(', ')}`);
  const inFmt = inType === NDJSON ? 'ndjson' : 'msgpack';
  const outFmt = negotiate(req.getHeader('accept'), FORMATS, inFmt === 'ndjson' ? 1 : 0);
  if (outFmt < 0) return refuse('NOT_ACCEPTABLE', `Accept allows none of ${TYPES.join(', ')}`);
  const q = readQuery(req, config.batch.maxWaitMs, limits.maxTtlSeconds);
  if (q.bad) return refuse(q.bad, q.why);
  const ttlMessage = `ttl must be an integer number of seconds from 0 to ${limits.maxTtlSeconds}`;
  const r = new BulkRequest(out, outFmt === 1, ctx.pool, ctx, isGet);
  r.countInto(tally, tally.at(Front.Http, op), false);
  const limited = access.rates.limited;
  if (limited) {
    r.access = access;
    r.principal = who;
  }
  const w = r.window;
  const maxItem = router.limits.maxValueBytes * (inFmt === 'ndjson' ? 6 : 1) + 4096;
  const mp = inFmt === 'msgpack' ? new MsgpackItems(maxItem) : null;
  const nd = inFmt === 'ndjson' ? new NdjsonLines(maxItem) : null;
  const item = new ItemFields(limits);
  let failed = false;
  let paused = false;
  const wait = q.wait;

  // Reading the body pauses while the client's window holds enough parked keys (reads), or while too
  // many items are in flight or the client does not take its answers (writes).
  const mustPause = (): boolean =>
    w !== null
      ? w.parked >= PARK_ITEMS || w.parkedBytes >= PARK_BYTES
      : r.inFlight >= maxInflightItems || out.backpressured;
  const mayResume = (): boolean =>
    w !== null
      ? w.parked < PARK_ITEMS / 2 && w.parkedBytes < PARK_BYTES / 2
      : r.inFlight < maxInflightItems / 2 && !out.backpressured;
  r.resume = () => {
    if (paused && !out.done && mayResume()) {
      paused = false;
      res.resume();
    }
  };
  if (w !== null) w.onBacklogShrunk = r.resume;
  out.onWritableAgain = () => {
    if (w !== null) w.pump();
    r.resume();
  };
  // Gone: nothing parked is ever fetched; what is in a shard's batch settles and is dropped, and what is
  // batched but not sent yet is not sent (uWS closes a connection on a pipelined request).
  out.onAbort = () => {
    w?.cancel();
    r.abandon();
    ctx.bulk.delete(r);
  };
  // A body that breaks off is answered at once; the rest of it is read and dropped.
  out.expectBody(discardLimit(limits.maxValueBytes));
  ctx.bulk.add(r);
  r.onDone = () => ctx.bulk.delete(r);

  const fail = (code: ErrorCode, message: string): void => {
    failed = true;
    r.countAs(code);
    if (!out.started && r.count === 0) out.error(code, message);
    else r.broken = { code, message };
    r.seal();
  };

  /**
   * Item `i` passes the principal's rates and rules: true with access.key naming the stored key; false
   * after answering it (RATE_LIMITED, FORBIDDEN, BAD_KEY). The clock was read for this body chunk.
   */
  const allowed = (i: number, key: Uint8Array, off: number, len: number, vlen: number): boolean => {
    if (limited) {
      const ms = access.admit(who, 1, len + vlen, vlen);
      if (ms > 0) {
        r.reject(i, 'RATE_LIMITED', rateLimitedMessage(access, ms));
        return false;
      }
    }
    return access.scope(who, r, i, key, off, len, isGet ? Perm.Read : Perm.Write);
  };

  const index = (key: string | null): number => {
    if (r.count >= limits.maxItemsPerRequest) throw new TooMany();
    if (r.nd !== null) r.keys.push(key ?? '');
    return r.count++;
  };

  const msgpackItems = (): void => {
    const rd = mp!.reader;
    while (mp!.next()) {
      if (isGet) {
        const i = index(r.nd !== null ? peekKey(rd) : null);
        if (!rd.readBytes()) {
          rd.skip();
          r.reject(i, 'BAD_KEY', 'key must be a str or bin');
        } else if (allowed(i, rd.buf, rd.off, rd.len, 0)) w!.get(r, i, access.key, access.keyOff, access.keyLen, wait);
      } else {
        item.read(rd);
        const i = index(r.nd !== null && item.keyOff >= 0 ? keyText(rd.buf, item.keyOff, item.keyLen) : null);
        if (item.error !== null) r.reject(i, item.error, item.errorMessage);
        else if (allowed(i, rd.buf, item.keyOff, item.keyLen, item.valueLen))
          router.set(
            r,
            i,
            access.key,
            access.keyOff,
            access.keyLen,
            item.ttl,
            item.flags,
            rd.buf,
            item.valueOff,
            item.valueLen,
            wait,
          );
      }
      mp!.consumed();
    }
  };

  const ndjsonLine = (line: string): void => {
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new MsgpackError(`line ${r.count + 1} is not JSON`);
    }
    if (isGet) {
      const key =
        typeof v === 'string'
          ? v
          : v !== null && typeof v === 'object' && typeof (v as { key?: unknown }).key === 'string'
            ? (v as { key: string }).key
            : null;
      const i = index(key);
      if (key === null) return r.reject(i, 'BAD_KEY', 'each line must be a JSON string key');
      const kb = Buffer.from(key, 'utf8');
      if (allowed(i, kb, 0, kb.length, 0)) w!.get(r, i, access.key, access.keyOff, access.keyLen, wait);
      return;
    }
    const o = v as { key?: unknown; value?: unknown; base64?: unknown; ttl?: unknown; flags?: unknown };
    const key = o !== null && typeof o === 'object' && typeof o.key === 'string' ? o.key : null;
    const i = index(key);
    if (key === null) return r.reject(i, 'BAD_KEY', 'each line must be an object with a string "key"');
    let value: Buffer;
    if (typeof o.value === 'string') value = Buffer.from(o.value, 'utf8');
    else if (typeof o.base64 === 'string') {
      const b = base64Value(o.base64);
      if (b === null) return r.reject(i, 'BAD_VALUE', '"base64" must be padded standard base64 (RFC 4648 section 4)');
      value = b;
    } else return r.reject(i, 'BAD_VALUE', 'each line needs a string "value" or "base64"');
    const ttl = o.ttl === undefined ? 0 : o.ttl;
    const flags = o.flags === undefined ? 0 : o.flags;
    if (typeof ttl !== 'number' || !validTtl(ttl, limits.maxTtlSeconds)) return r.reject(i, 'BAD_TTL', ttlMessage);
    if (typeof flags !== 'number') return r.reject(i, 'BAD_FLAGS');
    const kb = Buffer.from(key, 'utf8');
    if (allowed(i, kb, 0, kb.length, value.length))
      router.set(r, i, access.key, access.keyOff, access.keyLen, ttl, flags, value, 0, value.length, wait);
  };

  const onBody = (chunk: ArrayBuffer, isLast: boolean): void => {
    if (out.bodyChunk(chunk.byteLength, isLast) || failed) return;
    if (limited) access.tick();
    try {
      if (mp !== null) {
        mp.append(new Uint8Array(chunk));
        msgpackItems();
        if (isLast) mp.finish();
      } else {
        nd!.append(new Uint8Array(chunk));
        for (let line = nd!.nextLine(); line !== null; line = nd!.nextLine()) ndjsonLine(line);
        if (isLast) {
          const last = nd!.finish();
          if (last !== null) ndjsonLine(last);
        }
      }
    } catch (e) {
      if (e instanceof TooMany) return fail('TOO_MANY', `at most ${limits.maxItemsPerRequest} items per request`);
      if (e instanceof BodyTooLarge) return fail('TOO_LARGE', e.message);
      if (e instanceof MsgpackError) return fail('BAD_REQUEST', e.message);
      bugs.report(e);
      return fail('INTERNAL', ErrorTable.INTERNAL.message);
    }
    if (isLast) {
      r.seal();
      return;
    }
    if (!paused && mustPause()) {
      paused = true;
      res.pause();
    }
  };
  let ended = false;
  res.onData((chunk, isLast) => {
    if (ended) return;
    ended = isLast;
    onBody(chunk, isLast);
  });
  if (empty) {
    ended = true;
    onBody(NO_BYTES, true);
  }
}

/** During the drain: refused at once, before anything is read, and the connection closed after. */
export function refuseDraining(res: HttpResponse): void {
  refuseNow(res, 'SHUTTING_DOWN');
}

/** Past limits.maxConnections: refused at once, before anything is read. */
export function refuseBusy(res: HttpResponse): void {
  refuseNow(res, 'BUSY', 'too many connections');
}

/** A whole answer outside the gate's count (HttpOut counts itself), closing the connection after it. */
function refuseNow(res: HttpResponse, code: ErrorCode, message?: string): void {
  res.cork(() => {
    res.writeStatus(statusLine(ErrorTable[code].status)).writeHeader('content-type', 'application/json');
    for (const [k, v] of errorHeaders(code) ?? []) res.writeHeader(k, v);
    res.end(errorBody(code, message), true);
  });
}

class TooMany extends Error {}

function keyText(buf: Uint8Array, off: number, len: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + off, len).toString('utf8');
}

/** For NDJSON answers to a msgpack body: the key's text if the next value is a str/bin, without moving. */
function peekKey(rd: { pos: number; readBytes(): boolean; buf: Uint8Array; off: number; len: number }): string | null {
  const at = rd.pos;
  const ok = rd.readBytes();
  rd.pos = at;
  return ok ? keyText(rd.buf, rd.off, rd.len) : null;
}
