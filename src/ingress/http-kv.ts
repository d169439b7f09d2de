/**
 * HTTP, one key per request: GET / PUT / DELETE /v1/kv/{key}. The key is percent-decoded to raw bytes.
 * A PUT body is gathered in pool buffers (it must be whole before memcached can take it) and capped at
 * the item size while it arrives, so an oversized upload is refused without being held.
 */
import type { GatewayContext } from '../context';
import { ErrorCode, ErrorTable } from '../errors';
import { percentDecode } from '../decode/key';
import { Request } from '../request';
import { BUFFER_SIZE, BufferPool } from '../stream/buffer-pool';
import { HttpOut } from '../stream/http-out';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../uws';
import { refuseBusy } from './http-bulk';

const PREFIX = '/v1/kv/';

class HttpKvRequest extends Request {
  constructor(readonly out: HttpOut) {
    super();
  }
  protected onValue(_i: number, flags: number, total: number, _offset: number, buf: Buffer, off: number, len: number): void {
    this.out.sized(total, flags, buf, off, len);
  }
  protected onMiss(): void {
    this.out.error('NOT_FOUND');
  }
  protected onOk(): void {
    this.out.simple('204 No Content');
  }
  protected onError(_i: number, code: ErrorCode, message?: string): void {
    this.out.error(code, message);
  }
  protected onFinish(): void {}
}

export interface QueryNumbers { wait: number; ttl: number; flags: number; bad: ErrorCode | null }

/** Reads ?wait=&ttl=&flags= strictly: digits only. */
export function readQuery(req: HttpRequest, maxWaitMs: number): QueryNumbers {
  const q: QueryNumbers = { wait: 0, ttl: 0, flags: 0, bad: null };
  const num = (name: string, code: ErrorCode, max: number): number => {
    const v = req.getQuery(name);
    if (v === undefined || v === '') return 0;
    if (!/^\d{1,10}$/.test(v) || Number(v) > max) { q.bad ??= code; return 0; }
    return Number(v);
  };
  q.wait = num('wait', 'BAD_WAIT', maxWaitMs);
  q.ttl = num('ttl', 'BAD_TTL', 0xffffffff);
  q.flags = num('flags', 'BAD_FLAGS', 0xffffffff);
  return q;
}

export function mountKv(app: TemplatedApp, ctx: GatewayContext): void {
  const { router, pool } = ctx;
  const maxWaitMs = ctx.config.batch.maxWaitMs;
  const keyOf = (req: HttpRequest): Buffer | null => percentDecode(req.getUrl().slice(PREFIX.length));
  /**
   * A response counted in the gate, or null after refusing the client: draining first (SHUTTING_DOWN: go
   * elsewhere, even when the gate is full too), then too many (BUSY: retry here shortly).
   */
  const open = (res: HttpResponse): HttpOut | null => {
    if (ctx.draining) { new HttpOut(res, pool, ctx.gate, ctx).error('SHUTTING_DOWN'); return null; }
    if (ctx.gate.refuse()) { refuseBusy(res); return null; }
    return new HttpOut(res, pool, ctx.gate, ctx);
  };

  const read = (isGet: boolean) => (res: HttpResponse, req: HttpRequest): void => {
    const out = open(res);
    if (out === null) return;
    const key = keyOf(req);
    const q = readQuery(req, maxWaitMs);
    if (key === null) return out.error('BAD_KEY', 'malformed percent-encoding in key');
    if (q.bad) return out.error(q.bad);
    // A single value per connection at a time: bounded by limits.maxValueBytes, so not windowed; but
    // when the gateway-wide budget is spent, new reads are refused rather than queued.
    if (isGet && !ctx.budget.room(0, true)) return out.error('BUSY', 'the gateway holds its whole output budget for clients; retry shortly');
    const r = new HttpKvRequest(out);
    if (isGet) router.get(r, 0, key, 0, key.length, q.wait);
    else router.del(r, 0, key, 0, key.length, q.wait);
    r.seal();
  };
  app.get(`${PREFIX}*`, read(true));
  app.del(`${PREFIX}*`, read(false));

  app.put(`${PREFIX}*`, (res, req) => {
    const out = open(res);
    if (out === null) return;
    const key = keyOf(req);
    const q = readQuery(req, maxWaitMs);
    const max = router.limits.maxValueBytes;
    const declared = Number(req.getHeader('content-length') || '0');
    if (declared > max) {
      // Refuse before reading; closing is the only way to not read an upload we will not take.
      out.closeAfter = true;
      return out.simple(`${ErrorTable.TOO_LARGE.status}`, errorJson('TOO_LARGE', `value of ${declared} bytes is over the ${max}-byte limit`));
    }
    // The body is gathered in pool buffers, which the gateway-wide budget counts: when it cannot hold
    // this upload, refuse it now rather than read it.
    if (!ctx.budget.room(declared, true)) {
      out.closeAfter = true;
      return out.error('BUSY', 'the gateway holds its whole buffer budget; retry shortly');
    }
    const parts: Buffer[] = [];
    const lens: number[] = [];
    let total = 0;
    let refused = false;
    // An upload cut off part way: its buffers go back to the pool (onData is never called again).
    out.onAbort = () => release(pool, parts);
    res.onData((chunk, isLast) => {
      if (out.done || refused) { if (isLast || out.aborted) release(pool, parts); return; }
      const src = new Uint8Array(chunk);
      total += src.length;
      if (total > max) {
        // A chunked upload that outgrew the limit: refused, and cut off rather than read to its end.
        refused = true;
        release(pool, parts);
        out.closeAfter = true;
        return out.error('TOO_LARGE', `value is over the ${max}-byte limit`);
      }
      for (let off = 0; off < src.length;) {
        let last = parts.length - 1;
        if (last < 0 || lens[last] === BUFFER_SIZE) { parts.push(pool.acquire()); lens.push(0); last++; }
        const k = Math.min(BUFFER_SIZE - lens[last], src.length - off);
        parts[last].set(src.subarray(off, off + k), lens[last]);
        lens[last] += k;
        off += k;
      }
      if (!isLast) return;
      if (key === null) { release(pool, parts); return out.error('BAD_KEY', 'malformed percent-encoding in key'); }
      if (q.bad) { release(pool, parts); return out.error(q.bad); }
      const r = new HttpKvRequest(out);
      router.setParts(r, 0, key, 0, key.length, q.ttl, q.flags, parts, lens, total, q.wait);
      release(pool, parts); // copied into the shard's batch
      r.seal();
    });
  });
}

function release(pool: BufferPool, parts: Buffer[]): void {
  for (const b of parts) pool.release(b);
  parts.length = 0;
}

function errorJson(code: ErrorCode, message: string): string {
  return JSON.stringify({ error: { code, message } });
}
