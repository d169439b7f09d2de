/**
 * HTTP, one key per request: GET / PUT / DELETE /v1/kv/{key}. The key is percent-decoded to raw bytes.
 * A PUT body is gathered in pool buffers (it must be whole before memcached can take it) and capped at
 * the item size while it arrives, so an oversized upload is refused without being held.
 */
import type { GatewayContext } from './context';
import type { ErrorCode } from '../core/errors';
import { percentDecode } from '../decode/key';
import { Request } from '../core/request';
import { BUFFER_SIZE, BufferPool } from '../stream/buffer-pool';
import { HttpOut } from '../stream/http-out';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../uws';
import { refuseBrowser } from './browser-gate';
import { declaredEmpty, NO_BYTES, refuseFraming } from './framing';
import { refuseBusy } from './http-bulk';
import { Front, TallyOp } from '../core/tally';
import type { Access } from '../security/access';
import { allowedBytes, Perm, type Principal } from '../security/principal';
import {
  httpPrincipal,
  rateLimitedMessage,
  retryHeaders,
  UNAUTHORIZED_HEADERS,
  unauthorizedMessage,
} from './access-gate';

const PREFIX = '/v1/kv/';

class HttpKvRequest extends Request {
  /** Set when rate limits are on: the answer's bytes are charged to `principal`. */
  access: Access | null = null;
  principal: Principal | null = null;
  constructor(readonly out: HttpOut) {
    super();
  }
  protected onValue(
    _i: number,
    flags: number,
    total: number,
    offset: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void {
    if (offset === 0 && this.access !== null) this.access.charge(this.principal!, total, 0);
    this.out.sized(total, flags, buf, off, len);
  }
  protected onMiss(): void {
    this.out.error('NOT_FOUND');
  }
  protected onOk(): void {
    this.out.simple(204);
  }
  protected onError(_i: number, code: ErrorCode, message?: string): void {
    this.out.error(code, message);
  }
  protected onFinish(): void {}
}

export interface QueryNumbers {
  wait: number;
  ttl: number;
  flags: number;
  bad: ErrorCode | null;
  why: string | undefined;
}

/** Read past limits.maxValueBytes after an early answer, an upload is cut off (see HttpOut.expectBody). */
export function discardLimit(maxValueBytes: number): number {
  return Math.max(8 * 1024 * 1024, 4 * maxValueBytes);
}

const enum Param {
  Wait,
  Ttl,
  Flags,
}
const PARAMS: Record<string, Param> = { wait: Param.Wait, ttl: Param.Ttl, flags: Param.Flags };

/**
 * Reads ?wait=&ttl=&flags= strictly: 1 to 10 ASCII digits within the limit. An empty value (`?ttl=`,
 * `?ttl`) or a name given twice is refused rather than read as the default; other names are ignored.
 */
export function readQuery(req: HttpRequest, maxWaitMs: number, maxTtlSeconds: number): QueryNumbers {
  const q: QueryNumbers = { wait: 0, ttl: 0, flags: 0, bad: null, why: undefined };
  const raw = req.getQuery();
  if (raw === undefined || raw === '') return q;
  let seen = 0;
  for (const part of raw.split('&')) {
    const eq = part.indexOf('=');
    const p = PARAMS[eq < 0 ? part : part.slice(0, eq)];
    if (p === undefined) continue;
    const v = eq < 0 ? '' : part.slice(eq + 1);
    const [code, name, max, unit] =
      p === Param.Wait
        ? (['BAD_WAIT', 'wait', maxWaitMs, ' number of milliseconds'] as const)
        : p === Param.Ttl
          ? (['BAD_TTL', 'ttl', maxTtlSeconds, ' number of seconds'] as const)
          : (['BAD_FLAGS', 'flags', 0xffffffff, ''] as const);
    const fail = (why: string): void => {
      if (q.bad === null) {
        q.bad = code;
        q.why = why;
      }
    };
    if (seen & (1 << p)) {
      fail(`${name} given more than once`);
      continue;
    }
    seen |= 1 << p;
    if (!/^\d{1,10}$/.test(v) || Number(v) > max) {
      fail(`${name} must be an integer${unit} from 0 to ${max}`);
      continue;
    }
    if (p === Param.Wait) q.wait = Number(v);
    else if (p === Param.Ttl) q.ttl = Number(v);
    else q.flags = Number(v);
  }
  return q;
}

export function mountKv(app: TemplatedApp, ctx: GatewayContext): void {
  const { router, pool, access } = ctx;
  const keyOf = (req: HttpRequest): Buffer | null => percentDecode(req.getUrl().slice(PREFIX.length));
  const tally = ctx.tally;
  /** A request answered with an error before it had a Request object: counted, then told. */
  const refuse = (out: HttpOut, op: TallyOp, code: ErrorCode, message?: string, headers?: [string, string][]): void => {
    tally.request(Front.Http, op, code);
    out.error(code, message, headers);
  };
  const counted = (r: HttpKvRequest, op: TallyOp, p: Principal): HttpKvRequest => {
    r.countInto(tally, tally.at(Front.Http, op), true);
    if (access.rates.limited) {
      r.access = access;
      r.principal = p;
    }
    return r;
  };
  /** False after refusing a request over its principal's rate (ops, bytes, tenant writes). */
  const admitted = (out: HttpOut, op: TallyOp, p: Principal, bytes: number, writeBytes: number): boolean => {
    if (!access.rates.limited) return true;
    access.tick();
    const ms = access.admit(p, 1, bytes, writeBytes);
    if (ms === 0) return true;
    refuse(out, op, 'RATE_LIMITED', rateLimitedMessage(access, ms), retryHeaders(ms));
    return false;
  };
  /**
   * A response counted in the gate, or null after refusing the client: ambiguous framing first (400 and
   * close), then draining (SHUTTING_DOWN: go elsewhere, even when the gate is full too), then too many
   * (BUSY: retry here shortly).
   */
  const open = (res: HttpResponse, req: HttpRequest, op: TallyOp): HttpOut | null => {
    if (refuseFraming(res, req)) {
      tally.request(Front.Http, op, 'BAD_REQUEST');
      return null;
    }
    if (refuseBrowser(res, req, ctx.browser, op === TallyOp.Set ? 'PUT' : op === TallyOp.Get ? 'GET' : 'DELETE')) {
      tally.request(Front.Http, op, 'FORBIDDEN');
      return null;
    }
    if (ctx.draining) {
      refuse(new HttpOut(res, pool, ctx.gate, ctx), op, 'SHUTTING_DOWN');
      return null;
    }
    if (ctx.gate.refuse()) {
      tally.request(Front.Http, op, 'BUSY');
      refuseBusy(res);
      return null;
    }
    const out = new HttpOut(res, pool, ctx.gate, ctx);
    const origin = req.getHeader('origin');
    if (origin !== '') out.cors = ctx.browser.corsHeaders(origin);
    return out;
  };

  const read =
    (isGet: boolean) =>
    (res: HttpResponse, req: HttpRequest): void => {
      const op = isGet ? TallyOp.Get : TallyOp.Del;
      const out = open(res, req, op);
      if (out === null) return;
      const who = httpPrincipal(access, req);
      if (typeof who === 'string')
        return refuse(out, op, 'UNAUTHORIZED', unauthorizedMessage(who), UNAUTHORIZED_HEADERS);
      const key = keyOf(req);
      const q = readQuery(req, ctx.config.batch.maxWaitMs, ctx.config.limits.maxTtlSeconds);
      if (key === null) return refuse(out, op, 'BAD_KEY', 'malformed percent-encoding in key');
      if (q.bad) return refuse(out, op, q.bad, q.why);
      if (!admitted(out, op, who, key.length, 0)) return;
      // A single value per connection at a time: bounded by limits.maxValueBytes, so not windowed; but
      // when the gateway-wide budget is spent, new reads are refused rather than queued.
      if (isGet && !ctx.budget.room(0, true))
        return refuse(out, op, 'BUSY', 'the gateway holds its whole output budget for clients; retry shortly');
      const r = counted(new HttpKvRequest(out), op, who);
      // Aborted before its op went out (uWS closes a connection on a pipelined request): it is not sent.
      out.onAbort = () => r.abandon();
      if (access.scope(who, r, 0, key, 0, key.length, isGet ? Perm.Read : Perm.Delete)) {
        if (isGet) router.get(r, 0, access.key, access.keyOff, access.keyLen, q.wait);
        else router.del(r, 0, access.key, access.keyOff, access.keyLen, q.wait);
      }
      r.seal();
    };
  app.get(`${PREFIX}*`, read(true));
  app.del(`${PREFIX}*`, read(false));

  app.put(`${PREFIX}*`, (res, req) => {
    const out = open(res, req, TallyOp.Set);
    if (out === null) return;
    const key = keyOf(req);
    const q = readQuery(req, ctx.config.batch.maxWaitMs, ctx.config.limits.maxTtlSeconds);
    const max = router.limits.maxValueBytes;
    const declared = Number(req.getHeader('content-length') || '0');
    const parts: Buffer[] = [];
    const lens: number[] = [];
    let total = 0;
    let r: HttpKvRequest | null = null;
    // Cut off part way (or by a pipelined request): the buffers go back to the pool, the write is not sent.
    out.onAbort = () => {
      release(pool, parts);
      r?.abandon();
    };
    // Refusals before the whole body is in are answered at once; the rest of the body is read and dropped.
    out.expectBody(discardLimit(max));
    const empty = declaredEmpty(req);
    const who = httpPrincipal(access, req);
    let ended = false;
    const onBody = (chunk: ArrayBuffer, isLast: boolean): void => {
      if (out.bodyChunk(chunk.byteLength, isLast)) return;
      const src = new Uint8Array(chunk);
      total += src.length;
      if (total > max) {
        // A chunked upload that outgrew the limit.
        release(pool, parts);
        return refuse(out, TallyOp.Set, 'TOO_LARGE', `value is over the ${max}-byte limit`);
      }
      for (let off = 0; off < src.length;) {
        let last = parts.length - 1;
        if (last < 0 || lens[last] === BUFFER_SIZE) {
          parts.push(pool.acquire());
          lens.push(0);
          last++;
        }
        const k = Math.min(BUFFER_SIZE - lens[last], src.length - off);
        parts[last].set(src.subarray(off, off + k), lens[last]);
        lens[last] += k;
        off += k;
      }
      if (!isLast) return;
      if (key === null) {
        release(pool, parts);
        return refuse(out, TallyOp.Set, 'BAD_KEY', 'malformed percent-encoding in key');
      }
      if (q.bad) {
        release(pool, parts);
        return refuse(out, TallyOp.Set, q.bad, q.why);
      }
      if (typeof who === 'string' || !admitted(out, TallyOp.Set, who, key.length + total, total)) {
        release(pool, parts);
        return;
      }
      r = counted(new HttpKvRequest(out), TallyOp.Set, who);
      if (access.scope(who, r, 0, key, 0, key.length, Perm.Write))
        router.setParts(r, 0, access.key, access.keyOff, access.keyLen, q.ttl, q.flags, parts, lens, total, q.wait);
      release(pool, parts); // copied into the shard's batch
      r.seal();
    };
    res.onData((chunk, isLast) => {
      if (ended) return;
      ended = isLast;
      onBody(chunk, isLast);
    });
    // A refused credential or key is answered before the body is read (it is read and dropped).
    const refuseEarly = (code: ErrorCode, message: string, headers?: [string, string][]): void => {
      refuse(out, TallyOp.Set, code, message, headers);
      if (empty) {
        ended = true;
        out.bodyChunk(0, true); // no body will come to end the answer
      }
    };
    if (typeof who === 'string') return refuseEarly('UNAUTHORIZED', unauthorizedMessage(who), UNAUTHORIZED_HEADERS);
    if (key !== null && !allowedBytes(who, key, 0, key.length, Perm.Write)) {
      access.forbiddenItems++;
      return refuseEarly('FORBIDDEN', 'this credential may not write this key');
    }
    if (empty) {
      ended = true;
      return onBody(NO_BYTES, true);
    }
    if (declared > max) {
      // Longer than what will be read and dropped: the connection is cut off after it, and says so.
      if (declared > discardLimit(max)) out.closeAfter = true;
      return refuse(out, TallyOp.Set, 'TOO_LARGE', `value of ${declared} bytes is over the ${max}-byte limit`);
    }
    // The body is gathered in pool buffers, which the gateway-wide budget counts: when it cannot hold
    // this upload, refuse it now rather than gather it.
    if (!ctx.budget.room(declared, true))
      return refuse(out, TallyOp.Set, 'BUSY', 'the gateway holds its whole buffer budget; retry shortly');
  });
}

function release(pool: BufferPool, parts: Buffer[]): void {
  for (const b of parts) pool.release(b);
  parts.length = 0;
}
