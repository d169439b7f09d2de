/**
 * Reading and judging HTTP answers: a response parser that notes every framing fault instead of trusting
 * the bytes, the checks every answer must pass (status line, the error table, Allow on 405), and the bulk
 * body checks (entries or NDJSON lines against the protocol and the generator's per-item oracle).
 */
import { unpackMultiple } from 'msgpackr';
import { ErrorTable } from '../../src/core/errors';
import type { HttpOracle } from './gen-http';

export interface Response {
  statusLine: string;
  status: number;
  headers: Map<string, string[]>;
  body: Buffer;
  faults: string[];
}

/** One whole response at the start of `buf` (null: more bytes needed); `used` bytes were consumed. */
export function parseResponse(buf: Buffer): { r: Response; used: number } | null {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) {
    if (buf.length > 64 * 1024)
      return {
        r: {
          statusLine: '',
          status: 0,
          headers: new Map(),
          body: Buffer.alloc(0),
          faults: ['response head over 64 KiB'],
        },
        used: buf.length,
      };
    return null;
  }
  const faults: string[] = [];
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const statusLine = lines[0];
  const m = /^HTTP\/1\.1 (\d{3})( [\t -~\x80-\xff]*)?$/.exec(statusLine);
  if (m === null) faults.push(`not an HTTP/1.1 status line: ${JSON.stringify(statusLine.slice(0, 80))}`);
  else if (m[2] === undefined)
    faults.push(`status line without the space after the code (RFC 9112 4): ${JSON.stringify(statusLine)}`);
  const status = m ? Number(m[1]) : Number(/^\S+ (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers = new Map<string, string[]>();
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    if (c <= 0) {
      faults.push(`malformed header line ${JSON.stringify(l.slice(0, 80))}`);
      continue;
    }
    const k = l.slice(0, c).toLowerCase();
    const xs = headers.get(k) ?? [];
    xs.push(l.slice(c + 1).trim());
    headers.set(k, xs);
  }
  let p = end + 4;
  const te = headers.get('transfer-encoding');
  const cl = headers.get('content-length');
  if (te && cl) faults.push('both Transfer-Encoding and Content-Length');
  if (status === 101 || status === 204 || status === 304 || (status >= 100 && status < 200)) {
    if (cl && cl[0] !== '0' && status !== 101) faults.push(`Content-Length ${cl[0]} on a ${status}`);
    return { r: { statusLine, status, headers, body: Buffer.alloc(0), faults }, used: p };
  }
  if (te) {
    if (te.join(',').toLowerCase() !== 'chunked') faults.push(`transfer-encoding ${te.join(',')}`);
    const parts: Buffer[] = [];
    for (;;) {
      const nl = buf.indexOf('\r\n', p);
      if (nl < 0) return null;
      const sizeText = buf.toString('latin1', p, nl);
      if (!/^[0-9a-fA-F]+$/.test(sizeText)) {
        faults.push(`bad chunk size ${JSON.stringify(sizeText.slice(0, 20))}`);
        return { r: { statusLine, status, headers, body: Buffer.concat(parts), faults }, used: buf.length };
      }
      const n = parseInt(sizeText, 16);
      if (n === 0) {
        const t = buf.indexOf('\r\n', nl + 2);
        if (t < 0) return null;
        if (t !== nl + 2) faults.push('trailers in a response');
        return { r: { statusLine, status, headers, body: Buffer.concat(parts), faults }, used: t + 2 };
      }
      if (nl + 2 + n + 2 > buf.length) return null;
      if (buf[nl + 2 + n] !== 0x0d || buf[nl + 3 + n] !== 0x0a) faults.push('chunk data not followed by CRLF');
      parts.push(buf.subarray(nl + 2, nl + 2 + n));
      p = nl + 2 + n + 2;
    }
  }
  if (cl === undefined) {
    faults.push('no Content-Length and not chunked');
    return { r: { statusLine, status, headers, body: buf.subarray(p), faults }, used: buf.length };
  }
  if (cl.length > 1 || !/^\d+$/.test(cl[0])) faults.push(`Content-Length ${JSON.stringify(cl)}`);
  const n = Number(cl[0]);
  if (buf.length < p + n) return null;
  return { r: { statusLine, status, headers, body: Buffer.from(buf.subarray(p, p + n)), faults }, used: p + n };
}

export type Verdict = { kind: string; what: string }[];

const h1 = (r: Response, k: string): string | undefined => r.headers.get(k)?.[0];

/** What every answer must be, and what its oracle says it must be. */
export function judge(r: Response, o: HttpOracle | null, ambiguous: string | undefined, method: string): Verdict {
  const v: Verdict = [];
  for (const f of r.faults) v.push({ kind: `http: malformed response: ${f.replace(/: .*/, '')}`, what: f });
  const s = r.status;
  if (ambiguous !== undefined && s >= 200 && s < 300)
    v.push({ kind: `http: accepted ambiguous framing: ${ambiguous}`, what: `${r.statusLine}` });
  if (s >= 400) {
    let code: string | null = null;
    try {
      const j = JSON.parse(r.body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } };
      if (typeof j.error?.code === 'string' && typeof j.error.message === 'string') code = j.error.code;
    } catch {
      /* judged below */
    }
    if (code === null)
      v.push({
        kind: `http: ${s} without a JSON error body`,
        what: `${r.statusLine} ${JSON.stringify(r.body.toString('latin1', 0, 200))}`,
      });
    else if (!(code in ErrorTable)) v.push({ kind: `http: error code not in the table: ${code}`, what: r.statusLine });
    else {
      if (code === 'INTERNAL')
        v.push({ kind: 'http: INTERNAL error', what: `${r.statusLine} ${r.body.toString('utf8', 0, 300)}` });
      const want = (ErrorTable as Record<string, { status: number }>)[code].status;
      if (want !== s)
        v.push({
          kind: `http: status ${s} with code ${code} (table: ${want})`,
          what: `${method} answered ${r.statusLine}`,
        });
      if (
        o?.codes &&
        o.statuses.includes(s) &&
        !o.codes.includes(code) &&
        !(code === 'BUSY' || code === 'SHUTTING_DOWN')
      ) {
        v.push({
          kind: `http: ${o.kind}: code ${code}, expected ${o.codes.join('/')}`,
          what: `${o.why}: ${r.body.toString('utf8', 0, 300)}`,
        });
      }
    }
    if (!/^application\/json/.test(h1(r, 'content-type') ?? ''))
      v.push({ kind: `http: ${s} error not application/json`, what: `content-type ${h1(r, 'content-type')}` });
    if (s === 405 && !r.headers.has('allow')) v.push({ kind: 'http: 405 without Allow', what: r.statusLine });
  } else if (![101, 200, 204].includes(s)) v.push({ kind: `http: unexpected status ${s}`, what: r.statusLine });
  if (o !== null && !o.statuses.includes(s) && !(s === 503 && /BUSY/.test(r.body.toString()))) {
    v.push({
      kind: `http: ${o.kind}: status ${s}, expected ${o.statuses.join('/')}`,
      what: `${o.why}: ${r.statusLine} ${r.body.toString('utf8', 0, 300)}`,
    });
  }
  if (s === 200 && o?.bulk) v.push(...judgeBulk(r, o));
  return v;
}

const SUCCESS = { mget: new Set(['value', 'miss']), mset: new Set(['ok']) };

function judgeBulk(r: Response, o: HttpOracle): Verdict {
  const b = o.bulk!;
  const v: Verdict = [];
  const ct = h1(r, 'content-type') ?? '';
  const want = b.format === 'msgpack' ? /^application\/(x-)?msgpack/ : /^application\/x-ndjson/;
  if (!want.test(ct)) v.push({ kind: `http: bulk answer in ${ct}, asked ${b.format}`, what: ct });
  // results per index, in arrival order
  const results = new Map<number, string[]>();
  let reqError: string | null = null;
  let afterReqError = 0;
  let ended = false;
  const add = (i: number, what: string): void => {
    if (ended) v.push({ kind: 'http: bulk entry after the end', what });
    if (i === -1) {
      reqError = what;
      return;
    }
    if (reqError !== null) afterReqError++;
    const xs = results.get(i) ?? [];
    xs.push(what);
    results.set(i, xs);
  };
  const errCode = (code: unknown): void => {
    if (typeof code !== 'string' || !(code in ErrorTable))
      v.push({ kind: `http: bulk error code not in the table: ${String(code)}`, what: String(code) });
    else if (code === 'INTERNAL') v.push({ kind: 'http: INTERNAL bulk entry', what: code });
  };
  let count = -1;
  if (/msgpack/.test(ct)) {
    let entries: unknown[];
    try {
      entries = unpackMultiple(r.body) as unknown[];
    } catch (e) {
      return [...v, { kind: 'http: bulk msgpack answer does not decode', what: (e as Error).message }];
    }
    const parts = new Map<number, number>();
    for (const e of entries) {
      if (!Array.isArray(e) || e.length < 3 || e[0] !== 0) {
        v.push({ kind: 'http: malformed bulk entry', what: JSON.stringify(e).slice(0, 200) });
        continue;
      }
      const [, i, kind] = e as number[];
      if (kind === 5) {
        if (i !== -1) v.push({ kind: 'http: END with an item index', what: JSON.stringify(e) });
        ended = true;
        continue;
      }
      if (kind === 1) {
        const at = parts.get(i) ?? 0;
        const chunk = e[6] as Uint8Array;
        if (e[5] !== at) v.push({ kind: 'http: bulk VALUE_PART out of order', what: `item ${i}` });
        if ((e[5] as number) + chunk.length < (e[4] as number)) {
          parts.set(i, (e[5] as number) + chunk.length);
          continue;
        }
        parts.delete(i);
        add(i, 'value');
      } else if (kind === 0) add(i, 'value');
      else if (kind === 2) add(i, 'miss');
      else if (kind === 3) add(i, 'ok');
      else if (kind === 4) {
        errCode(e[3]);
        add(i, `error ${String(e[3])}`);
      } else v.push({ kind: 'http: malformed bulk entry', what: JSON.stringify(e).slice(0, 200) });
    }
  } else {
    const lines = r.body.toString('utf8').split('\n');
    if (lines[lines.length - 1] !== '')
      v.push({ kind: 'http: NDJSON answer does not end with a newline', what: lines[lines.length - 1].slice(0, 100) });
    for (const line of lines) {
      if (line === '') continue;
      let j: Record<string, unknown>;
      try {
        j = JSON.parse(line) as Record<string, unknown>;
      } catch {
        v.push({ kind: 'http: NDJSON answer line is not JSON', what: line.slice(0, 200) });
        continue;
      }
      if (j.done === true) {
        count = Number(j.count);
        ended = true;
        continue;
      }
      const i = j.i as number;
      if (typeof i !== 'number') {
        v.push({ kind: 'http: NDJSON answer line without i', what: line.slice(0, 200) });
        continue;
      }
      if (j.error !== undefined) {
        errCode((j.error as { code?: unknown }).code);
        add(i, `error ${String((j.error as { code?: unknown }).code)}`);
      } else if (j.miss === true) add(i, 'miss');
      else if (j.ok === true) add(i, 'ok');
      else if (typeof j.value === 'string' || typeof j.base64 === 'string') add(i, 'value');
      else v.push({ kind: 'http: NDJSON answer line of no known shape', what: line.slice(0, 200) });
    }
  }
  if (!ended) v.push({ kind: 'http: bulk answer without its END/done', what: `${r.body.length} bytes` });
  if (afterReqError > 0)
    v.push({
      kind: 'http: bulk item results after the request error',
      what: `${afterReqError} item results after ${reqError}`,
    });
  if (count >= 0 && count !== results.size)
    v.push({
      kind: 'http: NDJSON done count differs from the items answered',
      what: `count ${count}, ${results.size} items answered`,
    });
  const ok = SUCCESS[b.op];
  if (b.reqErr && reqError === null)
    v.push({ kind: `http: ${b.op} body with a bad line got no request error`, what: `${results.size} items answered` });
  if (!b.reqErr && reqError !== null)
    v.push({ kind: `http: valid ${b.op} body got a request error`, what: String(reqError) });
  const n = b.reqErr ? Math.min(b.items.length, results.size) : b.items.length;
  for (let i = 0; i < n; i++) {
    const xs = results.get(i) ?? [];
    if (xs.length !== 1) {
      v.push({
        kind: `http: ${b.op} (${b.body} body) item got ${xs.length === 0 ? 'no result' : `${xs.length} results`}`,
        what: `item ${i} of ${b.items.length}: ${xs.join(', ')}`,
      });
      break;
    }
    const good = ok.has(xs[0]);
    if (b.items[i] === 'ok' && !good) {
      v.push({ kind: `http: valid ${b.op} (${b.body} body) item refused with ${xs[0]}`, what: `item ${i}` });
      break;
    }
    if (b.items[i] === 'err' && good) {
      v.push({ kind: `http: invalid ${b.op} (${b.body} body) item accepted`, what: `item ${i}: ${xs[0]}` });
      break;
    }
  }
  for (const i of results.keys())
    if (i >= b.items.length) {
      v.push({ kind: `http: ${b.op} result for an item that does not exist`, what: `item ${i}` });
      break;
    }
  return v;
}

const UWS_METHODS = new Set(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'CONNECT']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Header names uWS takes (others, even RFC 9110 tokens like `X%a`, hang: see uws-bare.ts). */
const UWS_NAME = /^[0-9A-Za-z-]+$/;

/**
 * What a request that got no answer has in it, judged from its bytes: still incomplete (nothing is owed
 * yet), or traits of LIMITS (report.ts); none of them means the silence is an anomaly.
 */
export function hangTraits(b: Buffer): string[] {
  let end = b.indexOf('\r\n\r\n');
  let sep = 4;
  const lf = b.indexOf('\n\n');
  if (lf >= 0 && (end < 0 || lf < end)) {
    end = lf;
    sep = 2;
  }
  if (end < 0) return ['incomplete'];
  const head = b.toString('latin1', 0, end);
  const traits: string[] = [];
  if (/(^|[^\r])\n/.test(head)) traits.push('bare-lf');
  const lines = head.split(/\r?\n/);
  const parts = lines[0].split(' ');
  if (parts.length !== 3 || !TOKEN.test(parts[0]) || !/^\/[\x21-\x7e]*$/.test(parts[1])) traits.push('request-line');
  else if (!UWS_METHODS.has(parts[0])) traits.push('unknown-method');
  if (parts.length === 3 && parts[2] !== 'HTTP/1.1') traits.push('http-version');
  const fields = lines.slice(1);
  if (!fields.some((l) => /^host:/i.test(l))) traits.push('no-host');
  if (fields.some((l) => /^[ \t]/.test(l))) traits.push('folded-header');
  else if (
    fields.some((l) => {
      const c = l.indexOf(':');
      return c <= 0 || !UWS_NAME.test(l.slice(0, c)) || /[\x00-\x08\x0a-\x1f\x7f]/.test(l);
    })
  )
    traits.push('header-syntax');
  if (fields.length > 48) traits.push('many-headers');
  const body = b.subarray(end + sep);
  const cl = /^content-length:[ \t]*(\d+)[ \t]*$/im.exec(head);
  const chunked = /^transfer-encoding:.*chunked/im.test(head);
  if (chunked) {
    const text = body.toString('latin1');
    if (/(^|\r\n)[0-9a-fA-F]+[ \t]*;/.test(text)) traits.push('chunk-ext');
    if (/(^|\r\n)0\r\n[^\r]/.test(text)) traits.push('trailer');
    if (!/(^|\r\n)0(;[^\r]*)?\r\n/.test(text)) traits.push('incomplete');
    else if (!chunksWellFormed(body)) traits.push('chunk-framing');
  } else if (cl && Number(cl[1]) > body.length) traits.push('incomplete');
  return traits;
}

/** Whether a chunked body is framed exactly as RFC 9112 7.1 says (size line, data, CRLF, ..., 0, trailers). */
function chunksWellFormed(b: Buffer): boolean {
  let p = 0;
  for (;;) {
    const nl = b.indexOf('\r\n', p);
    if (nl < 0) return false;
    const m = /^([0-9a-fA-F]+)(;[^\r\n]*)?$/.exec(b.toString('latin1', p, nl));
    if (m === null) return false;
    const n = parseInt(m[1], 16);
    if (n === 0) return true;
    p = nl + 2 + n;
    if (b[p] !== 0x0d || b[p + 1] !== 0x0a) return false;
    p += 2;
  }
}
