/**
 * HTTP inputs: one connection's worth of bytes per input (one request, a pipelined pair, garbage, an
 * aborted upload), a pure function of (seed, input number). Requests the generator built cleanly carry an
 * oracle for their answer; the rest are checked only against what every answer must be.
 */
import { encode, MpVal, map } from './mp';
import { Rng } from './prng';
import { fuzzKey, keyValid, Limits, mutate } from './gen-ws';

export type Expect =
  /** Must be answered (a well-formed request). */
  | 'answer'
  /** Must be answered or the connection closed (malformed: RFC 9112 asks for a 400, uWS may just close). */
  | 'answer-or-close'
  /** Nothing is owed (the client went away, or the request is incomplete on purpose). */
  | 'none';

/** What the answer must be, for requests whose meaning is known. */
export interface HttpOracle {
  /** Allowed statuses; an error status must carry one of `codes` (when given). */
  statuses: number[];
  codes?: string[];
  /** Bulk: what each item must get, in the body's format. */
  bulk?: {
    op: 'mget' | 'mset';
    items: ('ok' | 'err')[];
    reqErr: boolean;
    format: 'msgpack' | 'ndjson';
    body: 'msgpack' | 'ndjson';
  };
  /** Names the anomaly kind (stable); `why` adds the details. */
  kind: string;
  why: string;
}

export interface HttpInput {
  kind: string;
  /** Written in order; `gapMs` apart (drip-feeding) when set. */
  pieces: Buffer[];
  gapMs: number;
  expect: Expect;
  /** Answers owed (2 for a pipelined pair). */
  answers: number;
  oracles: (HttpOracle | null)[];
  /** After writing: destroy the socket at once (an aborted upload). */
  abort: boolean;
  /** Framing a strict proxy could read differently: never a 2xx. */
  ambiguous?: string;
  /** What is notable about it (names anomaly kinds): 'chunk-ext', 'method FOO', ... */
  trait: string;
  /** Per request, for inputs of several: its trait and its bytes. */
  traits?: string[];
  requests?: Buffer[];
  bytes: Buffer;
}

const CRLF = '\r\n';

interface Req {
  method: string;
  target: string;
  version: string;
  headers: [string, string][];
  body: Buffer;
  oracle: HttpOracle | null;
  /** Well-formed per RFC 9112 as far as the generator knows. */
  clean: boolean;
  ambiguous?: string;
  lineEnd: string;
  traits: string[];
}

const CT: readonly (readonly [string, 'msgpack' | 'ndjson' | null])[] = [
  ['application/msgpack', 'msgpack'],
  ['application/x-msgpack', 'msgpack'],
  ['application/x-ndjson', 'ndjson'],
  ['Application/MsgPack', 'msgpack'],
  ['application/x-ndjson; charset=utf-8', 'ndjson'],
  ['application/msgpack;q=1', 'msgpack'],
  ['application/json', null],
  ['text/plain;charset=ndjson', null],
  ['text/plain', null],
  ['application/x-ndjsonx', null],
  ['application/msgpackfoo', null],
  ['multipart/form-data; boundary=msgpack', null],
  ['', null],
  ['application/octet-stream', null],
  ['x-ndjson', null],
  ['application/', null],
  ['text/msgpack', null],
  ['application/x-www-form-urlencoded', null],
];
const ACCEPT = [
  'application/msgpack',
  'application/x-ndjson',
  '*/*',
  'application/x-ndjson;q=0.1, application/msgpack;q=0.9',
  'text/html',
  'application/*',
  '',
  'application/msgpack;q=0, application/x-ndjson',
];

function pctEncodeAll(b: Buffer): string {
  let s = '';
  for (const c of b) s += `%${c.toString(16).padStart(2, '0').toUpperCase()}`;
  return s;
}

/** A path segment for a key and the key it decodes to (null: malformed escape). */
function keySegment(rng: Rng): { seg: string; key: Buffer | null } {
  return rng.weighted<() => { seg: string; key: Buffer | null }>([
    [
      50,
      () => {
        const k = fuzzKey(rng);
        return { seg: k, key: Buffer.from(k) };
      },
    ],
    [
      8,
      () => {
        const k = Buffer.from(`fz:${rng.word(rng.int(1, 20))}`);
        return { seg: pctEncodeAll(k), key: k };
      },
    ],
    [
      6,
      () => {
        const b = Buffer.concat([Buffer.from('fz:'), rng.bytes(rng.int(1, 12))]);
        return { seg: pctEncodeAll(b), key: b };
      },
    ],
    [4, () => ({ seg: 'fz:a%20b', key: Buffer.from('fz:a b') })],
    [3, () => ({ seg: `fz:${rng.pick(['%', '%2', '%zz', '%G1', '%%', '%-1'])}x`, key: null })],
    [3, () => ({ seg: 'fz:%00', key: Buffer.from([0x66, 0x7a, 0x3a, 0]) })],
    [3, () => ({ seg: '', key: Buffer.alloc(0) })],
    [
      3,
      () => {
        const k = `fz:${'y'.repeat(rng.int(240, 260))}`;
        return { seg: k, key: Buffer.from(k) };
      },
    ],
    [3, () => ({ seg: 'fz:%C3%BC%E2%82%AC', key: Buffer.from('fz:ü€') })],
    [2, () => ({ seg: 'fz:a/b', key: Buffer.from('fz:a/b') })],
    [2, () => ({ seg: 'fz:%2F..%2F', key: Buffer.from('fz:/../') })],
    [2, () => ({ seg: 'fz:+', key: Buffer.from('fz:+') })],
  ])();
}

interface Query {
  text: string;
  bad: string[];
  clear: boolean;
}

function query(rng: Rng, lim: Limits, names: string[]): Query {
  const q: Query = { text: '', bad: [], clear: true };
  if (rng.chance(0.5)) return q;
  const parts: string[] = [];
  const seen = new Set<string>();
  const n = rng.int(1, 4);
  for (let k = 0; k < n; k++) {
    const name = rng.chance(0.85) ? rng.pick(names) : rng.pick(['x', 'TTL', 'ttl%3D', '', 'a=b=c']);
    const max =
      name === 'ttl' ? lim.maxTtlSeconds : name === 'flags' ? 0xffffffff : name === 'wait' ? lim.maxWaitMs : Infinity;
    const [v, ok] = rng.weighted<() => [string, boolean | null]>([
      [
        10,
        () => {
          const x = rng.int(0, Math.min(max, 1000));
          return [String(x), true];
        },
      ],
      [3, () => [String(max === Infinity ? 1 : max), true]],
      [3, () => [String(max === Infinity ? 1 : max + rng.int(1, 10_000)), false]],
      [3, () => ['', false]],
      [2, () => ['-1', false]],
      [2, () => [rng.pick(['1.5', '1e3', '0x10', 'abc', '+1', '99999999999999999999']), false]],
      [1, () => ['%31', null]],
      [1, () => [rng.word(3, '%+&='), null]],
    ])();
    if (name === 'ttl' || name === 'flags' || name === 'wait') {
      if (seen.has(name) || ok === null) q.clear = false;
      else if (!ok) q.bad.push(name);
      seen.add(name);
    }
    parts.push(rng.chance(0.1) ? name : `${name}=${v}`);
    if (!parts[parts.length - 1].includes('=') && (name === 'ttl' || name === 'flags' || name === 'wait'))
      q.clear = false;
  }
  q.text = '?' + parts.join('&');
  return q;
}

const QCODE: Record<string, string> = { ttl: 'BAD_TTL', flags: 'BAD_FLAGS', wait: 'BAD_WAIT' };

function mgetBody(
  rng: Rng,
  fmt: 'msgpack' | 'ndjson',
  _lim: Limits,
): { body: Buffer; items: ('ok' | 'err')[]; reqErr: boolean } {
  const n = rng.weighted<number>([
    [70, rng.int(0, 10)],
    [27, rng.int(11, 300)],
    [3, rng.int(301, 3000)],
  ]);
  const items: ('ok' | 'err')[] = [];
  const keys: MpVal[] = [];
  for (let k = 0; k < n; k++) {
    if (rng.chance(0.9)) {
      keys.push(fuzzKey(rng));
      items.push('ok');
      continue;
    }
    const bad = rng.pick<MpVal>(['', 'fz:a b', `fz:${'z'.repeat(251)}`, 'fz:\u0001', 5, null]);
    keys.push(bad);
    items.push(typeof bad === 'string' && keyValid(Buffer.from(bad)) ? 'ok' : 'err');
  }
  if (fmt === 'msgpack') {
    const wrap = rng.chance(0.3);
    return { body: wrap ? encode(keys, rng) : Buffer.concat(keys.map((k) => encode(k, rng))), items, reqErr: false };
  }
  // NDJSON: a JSON string per line; a non-string line is a BAD_KEY item; blank lines are skipped
  const lines = keys.map((k) => JSON.stringify(k));
  let text = '';
  for (const l of lines) text += l + (rng.chance(0.05) ? '\r\n' : '\n') + (rng.chance(0.03) ? '\n' : '');
  if (rng.chance(0.2)) text = text.replace(/\n$/, '');
  return { body: Buffer.from(text), items, reqErr: false };
}

function msetBody(
  rng: Rng,
  fmt: 'msgpack' | 'ndjson',
  lim: Limits,
): { body: Buffer; items: ('ok' | 'err')[]; reqErr: boolean } {
  const n = rng.weighted<number>([
    [70, rng.int(0, 10)],
    [28, rng.int(11, 200)],
    [2, rng.int(201, 1000)],
  ]);
  const items: ('ok' | 'err')[] = [];
  if (fmt === 'msgpack') {
    const parts: MpVal[] = [];
    for (let k = 0; k < n; k++) {
      const g = genMsetItem(rng, lim);
      parts.push(g.v);
      items.push(g.ok ? 'ok' : 'err');
    }
    const wrap = rng.chance(0.3);
    return { body: wrap ? encode(parts, rng) : Buffer.concat(parts.map((p) => encode(p, rng))), items, reqErr: false };
  }
  let text = '';
  let reqErr = false;
  for (let k = 0; k < n; k++) {
    const g = ndjsonItem(rng, lim);
    if (g === null) {
      text += '{"key": "fz:1", "value": \n';
      reqErr = true;
      break;
    } // not JSON: the rest is not read
    text += g.line + '\n';
    items.push(g.ok ? 'ok' : 'err');
  }
  return { body: Buffer.from(text), items, reqErr };
}

function genMsetItem(rng: Rng, lim: Limits): { v: MpVal; ok: boolean } {
  const key = rng.chance(0.9)
    ? { v: fuzzKey(rng) as MpVal, ok: true }
    : rng.pick([
        { v: '' as MpVal, ok: false },
        { v: 5 as MpVal, ok: false },
        { v: 'fz:a b' as MpVal, ok: false },
      ]);
  const value = rng.chance(0.92)
    ? { v: rng.bytes(rng.int(0, 200)) as MpVal, ok: true }
    : rng.pick([
        { v: null as MpVal, ok: false },
        { v: 3 as MpVal, ok: false },
      ]);
  const ttl = rng.chance(0.7)
    ? null
    : rng.pick([
        { v: 10 as MpVal, ok: true },
        { v: lim.maxTtlSeconds as MpVal, ok: true },
        { v: (lim.maxTtlSeconds + 1) as MpVal, ok: false },
        { v: -1 as MpVal, ok: false },
        { v: 1.5 as MpVal, ok: false },
      ]);
  const flags = rng.chance(0.7)
    ? null
    : rng.pick([
        { v: 7 as MpVal, ok: true },
        { v: 0xffffffff as MpVal, ok: true },
        { v: (2 ** 32) as MpVal, ok: false },
        { v: -2 as MpVal, ok: false },
      ]);
  if (rng.chance(0.03)) return { v: 'not a map', ok: false };
  return {
    v: map({ key: key.v, value: value.v, ttl: ttl?.v, flags: flags?.v }),
    ok: key.ok && value.ok && (ttl?.ok ?? true) && (flags?.ok ?? true),
  };
}

function ndjsonItem(rng: Rng, lim: Limits): { line: string; ok: boolean } | null {
  if (rng.chance(0.01)) return null;
  const o: Record<string, unknown> = {};
  let ok = true;
  if (rng.chance(0.93)) o.key = fuzzKey(rng);
  else {
    o.key = rng.pick(['', 'fz:a b', 5, null]);
    ok = false;
  }
  const v = rng.int(0, 9);
  if (v < 6) o.value = rng.word(rng.int(0, 100), 'abcxyz ü€\n"\\');
  else if (v < 8) o.base64 = rng.bytes(rng.int(0, 60)).toString('base64');
  else if (v === 8) {
    o.base64 = rng.pick(['!!!not base64!!!', 'A===', 'AA=A', 'AA AA', 'ü', 'AAAA*AAA']);
    ok = false;
  } else {
    o.value = rng.pick([5, null, true, ['x'], { a: 1 }]);
    ok = false;
  }
  if (rng.chance(0.2)) {
    const t = rng.pick<[unknown, boolean]>([
      [10, true],
      [lim.maxTtlSeconds, true],
      [lim.maxTtlSeconds + 1, false],
      [-1, false],
      [1.5, false],
      ['10', false],
      [null, false],
    ]);
    o.ttl = t[0];
    if (!t[1]) ok = false;
  }
  if (rng.chance(0.2)) {
    const f = rng.pick<[unknown, boolean]>([
      [3, true],
      [0xffffffff, true],
      [2 ** 32, false],
      [-1, false],
      ['1', false],
      [2.5, false],
    ]);
    o.flags = f[0];
    if (!f[1]) ok = false;
  }
  return { line: JSON.stringify(o), ok };
}

function serialize(r: Req): Buffer {
  const le = r.lineEnd;
  let h = `${r.method} ${r.target} ${r.version}${le}`;
  for (const [k, v] of r.headers) h += `${k}: ${v}${le}`;
  return Buffer.concat([Buffer.from(h + le, 'latin1'), r.body]);
}

/** Splits a body into chunked encoding (maybe with extensions, maybe malformed). */
function chunked(rng: Rng, body: Buffer, r: Req): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  const ext = rng.chance(0.04);
  const breakIt = rng.chance(0.15) ? rng.int(0, 4) : -1;
  while (at < body.length) {
    const k = Math.min(body.length - at, rng.int(1, 4096));
    const e = ext ? rng.pick([';a=b', ';name', ';x="y z"', ' ;a=1']) : '';
    out.push(Buffer.from(`${k.toString(16)}${e}\r\n`), body.subarray(at, at + k), Buffer.from('\r\n'));
    at += k;
  }
  if (ext) r.traits.push('chunk-ext');
  let tail = Buffer.from('0\r\n\r\n');
  switch (breakIt) {
    case 0: // chunk data not followed by CRLF
      if (out.length >= 3) {
        out[2] = Buffer.from('XX');
        r.ambiguous = 'chunk data not followed by CRLF';
      }
      break;
    case 1:
      if (out.length) {
        out[0] = Buffer.from(`${rng.pick(['zz', '-1', ' 5', '0x5', 'fffffffffffffffff'])}\r\n`);
        r.ambiguous = 'bad chunk size';
      }
      break;
    case 2:
      tail = Buffer.from('0\r\nX-Trailer: 1\r\n\r\n');
      break; // a trailer: valid
    case 3:
      if (out.length) {
        out[0] = Buffer.from(`${(Number.parseInt(out[0].toString(), 16) + 3).toString(16)}\r\n`);
        r.ambiguous = 'chunk size larger than its data';
      }
      break;
    default:
      break;
  }
  if (r.ambiguous) r.clean = false;
  return Buffer.concat([...out, tail]);
}

function genRequestHttp(rng: Rng, lim: Limits): Req {
  const route = rng.weighted<string>([
    [30, 'kv'],
    [12, 'mget'],
    [12, 'mset'],
    [4, 'health'],
    [2, 'stats'],
    [6, 'other'],
    [2, 'ws'],
  ]);
  const r: Req = {
    method: 'GET',
    target: '/',
    version: 'HTTP/1.1',
    headers: [],
    body: Buffer.alloc(0),
    oracle: null,
    clean: true,
    lineEnd: CRLF,
    traits: [],
  };
  const host: [string, string] = ['Host', rng.pick(['127.0.0.1', 'localhost:8080', 'LOCALHOST', '[::1]'])];
  r.headers.push(host);
  let contentType: (typeof CT)[number] | null = null;
  if (route === 'kv') {
    r.method = rng.weighted<string>([
      [30, 'GET'],
      [35, 'PUT'],
      [15, 'DELETE'],
      [4, 'POST'],
      [2, 'TRACE'],
      [2, 'PATCH'],
      [2, 'OPTIONS'],
    ]);
    const { seg, key } = keySegment(rng);
    const q = query(rng, lim, r.method === 'PUT' ? ['ttl', 'flags', 'wait'] : ['wait']);
    r.target = `/v1/kv/${seg}${q.text}`;
    if (r.method === 'PUT') {
      const n = rng.weighted<number>([
        [80, rng.int(0, 200)],
        [17, rng.int(201, 60_000)],
        [2, rng.int(60_001, lim.maxValueBytes)],
        [1, lim.maxValueBytes + rng.int(1, 1000)],
      ]);
      r.body = rng.bytes(n);
      if (n > lim.maxValueBytes) r.traits.push('oversized body');
      if (rng.chance(0.1))
        r.headers.push(['Content-Type', rng.pick(['application/octet-stream', 'text/plain', 'application/msgpack'])]);
    }
    const keyOk = key !== null && keyValid(key);
    const ops = ['GET', 'PUT', 'DELETE'];
    if (!ops.includes(r.method)) {
      r.oracle = { statuses: [404, 405], kind: `${r.method} on /v1/kv/{key}`, why: r.target };
    } else if (q.clear) {
      // only the query names the method reads count; for GET/DELETE ttl is ignored
      const bad = q.bad.filter((b) => r.method === 'PUT' || b === 'wait');
      const tooLarge = r.method === 'PUT' && r.body.length > lim.maxValueBytes;
      if (keyOk && bad.length === 0 && !tooLarge) {
        r.oracle = {
          statuses: r.method === 'GET' ? [200, 404] : r.method === 'PUT' ? [204] : [204, 404],
          codes: ['NOT_FOUND'],
          kind: `valid ${r.method}`,
          why: r.target,
        };
      } else {
        const codes = [...(keyOk ? [] : ['BAD_KEY']), ...bad.map((b) => QCODE[b]), ...(tooLarge ? ['TOO_LARGE'] : [])];
        r.oracle = { statuses: [400, 413], codes, kind: `invalid ${r.method} (${codes.join(', ')})`, why: r.target };
      }
    }
  } else if (route === 'mget' || route === 'mset') {
    r.method = rng.chance(0.92) ? 'POST' : rng.pick(['GET', 'PUT', 'DELETE']);
    const q = query(rng, lim, ['wait']);
    r.target = `/v1/${route}${q.text}`;
    contentType = rng.chance(0.8) ? CT[rng.int(0, 5)] : rng.pick(CT);
    if (contentType[0] !== '' || rng.chance(0.5))
      r.headers.push([rng.pick(['Content-Type', 'content-type', 'CONTENT-TYPE']), contentType[0]]);
    const fmt = contentType[1] ?? rng.pick(['msgpack', 'ndjson'] as const);
    let accept: string | null = null;
    if (rng.chance(0.25)) {
      accept = rng.pick(ACCEPT);
      r.headers.push(['Accept', accept]);
    }
    const b = route === 'mget' ? mgetBody(rng, fmt, lim) : msetBody(rng, fmt, lim);
    r.body = b.body;
    const mutated = rng.chance(0.15);
    if (mutated) r.body = mutate(rng, r.body);
    const outFmt =
      accept === 'application/msgpack'
        ? 'msgpack'
        : accept === 'application/x-ndjson'
          ? 'ndjson'
          : accept === null
            ? fmt
            : null;
    // an Accept that allows neither format may be refused (406) before anything else is looked at
    const unacceptable = accept === 'text/html' ? { s: [406], c: ['NOT_ACCEPTABLE'] } : { s: [], c: [] };
    if (r.method !== 'POST') r.oracle = { statuses: [404, 405], kind: `${r.method} on /v1/${route}`, why: r.target };
    else if (contentType[1] === null) {
      // either refusal may come first when the query is bad too
      const also = q.clear && q.bad.length ? { s: [400], c: ['BAD_WAIT'] } : { s: [], c: [] };
      r.oracle = {
        statuses: [415, ...also.s, ...unacceptable.s],
        codes: ['BAD_CONTENT_TYPE', ...also.c, ...unacceptable.c],
        kind: 'undocumented content-type',
        why: `content-type ${JSON.stringify(contentType[0])}`,
      };
    } else if (q.clear && q.bad.length)
      r.oracle = {
        statuses: [400, ...unacceptable.s],
        codes: [...(mutated || b.reqErr ? ['BAD_WAIT', 'BAD_REQUEST'] : ['BAD_WAIT']), ...unacceptable.c],
        kind: 'bulk with a bad wait',
        why: r.target,
      };
    else if (q.clear && !mutated && outFmt !== null)
      r.oracle = {
        statuses: b.reqErr ? [200, 400] : [200],
        bulk: { op: route, items: b.items, reqErr: b.reqErr, format: outFmt, body: fmt },
        kind: `${route} (${fmt} body)`,
        why: `content-type ${JSON.stringify(contentType[0])}, accept ${JSON.stringify(accept)}, ${b.items.length} items`,
      };
    else if (!mutated)
      r.oracle = {
        statuses: [200, 400, 406],
        kind: 'bulk request',
        why: `content-type ${JSON.stringify(contentType[0])}, accept ${JSON.stringify(accept)}`,
      };
  } else if (route === 'health') {
    r.method = rng.chance(0.9) ? 'GET' : rng.pick(['POST', 'DELETE']);
    r.target = rng.pick(['/healthz', '/healthz?x=1', '/healthz/']);
    if (r.method === 'GET' && r.target !== '/healthz/')
      r.oracle = { statuses: [200], kind: 'GET /healthz', why: r.target };
  } else if (route === 'stats') {
    // Operational endpoints are on the admin listener only: the public port does not know them.
    r.method = 'GET';
    r.target = rng.pick(['/debug/stats', '/metrics', '/readyz', '/admin/reload']);
    r.oracle = { statuses: [404], codes: ['NO_ROUTE'], kind: 'an admin path on the public port', why: r.target };
  } else if (route === 'ws') {
    r.target = '/v1/ws';
    if (rng.chance(0.5)) r.headers.push(['Upgrade', 'websocket'], ['Connection', 'Upgrade']);
    if (rng.chance(0.3)) r.headers.push(['Sec-WebSocket-Key', rng.pick(['', 'short', 'dGhlIHNhbXBsZSBub25jZQ=='])]);
    if (rng.chance(0.3)) r.headers.push(['Sec-WebSocket-Version', rng.pick(['13', '8', 'x'])]);
  } else {
    r.method = rng.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'FOO', 'M-SEARCH']);
    r.target = rng.pick([
      '/',
      '/v1',
      '/v1/',
      '/v1/kv',
      '/v1/kv/',
      '/v1/mget/',
      '/v2/kv/x',
      '/favicon.ico',
      '/%2e%2e/etc',
      `/${rng.word(rng.int(1, 50), 'abc/%.?=&#')}`,
    ]);
    if (r.target === '/v1/kv/' && ['GET', 'PUT', 'DELETE'].includes(r.method))
      r.oracle = { statuses: [400, 404], kind: 'empty key', why: r.target };
  }
  // extra headers, some odd but legal
  if (rng.chance(0.2))
    r.headers.push([
      rng.pick(['X-Fuzz', 'User-Agent', 'Cookie', 'X-Forwarded-For']),
      rng.word(rng.size(200), 'abc ;=,"\t'),
    ]);
  if (rng.chance(0.05)) r.headers.push(['Connection', rng.pick(['close', 'keep-alive', 'Upgrade'])]);
  if (rng.chance(0.05)) r.headers.push(['Expect', '100-continue']);
  // framing
  const framing =
    r.body.length === 0 && r.method !== 'PUT' && r.method !== 'POST'
      ? rng.weighted<string>([
          [90, 'none'],
          [10, 'cl'],
        ])
      : rng.weighted<string>([
          [78, 'cl'],
          [12, 'chunked'],
          [2, 'cl-dup-same'],
          [3, 'cl-dup-diff'],
          [2, 'te-cl'],
          [2, 'cl-bad'],
          [1, 'none'],
        ]);
  switch (framing) {
    case 'cl':
      r.headers.push([rng.chance(0.9) ? 'Content-Length' : 'content-length', String(r.body.length)]);
      break;
    case 'chunked':
      r.headers.push(['Transfer-Encoding', rng.pick(['chunked', 'Chunked'])]);
      r.body = chunked(rng, r.body, r);
      break;
    case 'cl-dup-same':
      r.headers.push(['Content-Length', String(r.body.length)], ['Content-Length', String(r.body.length)]);
      // Refused even when equal (docs/PROTOCOL.md, HTTP conformance): a 2xx is the anomaly.
      r.ambiguous = 'two equal Content-Length headers';
      r.clean = false;
      break;
    case 'cl-dup-diff': {
      const extra = Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      r.headers.push(
        ['Content-Length', String(r.body.length + extra.length)],
        ['Content-Length', String(r.body.length)],
      );
      r.body = Buffer.concat([r.body, extra]);
      r.ambiguous = 'two different Content-Length headers';
      r.clean = false;
      break;
    }
    case 'te-cl':
      r.headers.push(['Transfer-Encoding', 'chunked'], ['Content-Length', String(r.body.length)]);
      r.body = chunked(rng, r.body, r);
      r.ambiguous = 'Transfer-Encoding and Content-Length';
      r.clean = false;
      break;
    case 'cl-bad':
      r.headers.push([
        'Content-Length',
        rng.pick([
          '-1',
          'abc',
          '1e3',
          '0x10',
          '99999999999999999999',
          `+${r.body.length}`,
          `${r.body.length}, ${r.body.length + 1}`,
        ]),
      ]);
      r.ambiguous = 'malformed Content-Length';
      r.clean = false;
      break;
    default:
      if (r.body.length) {
        r.clean = false;
        r.oracle = null;
        r.traits.push('body without framing');
      }
      break;
  }
  if (framing !== 'cl' && framing !== 'none') r.traits.push(framing);
  // the traits uWS cannot answer (see LIMITS), and other malformations
  const odd = rng.weighted<string>([
    [97, ''],
    [0.5, 'http10'],
    [0.3, 'no-host'],
    [0.3, 'bare-lf'],
    [0.3, 'folded'],
    [0.3, 'many'],
    [0.3, 'space-colon'],
    [0.5, 'lower-method'],
    [0.3, 'bad-target'],
    [0.3, 'bad-version'],
  ]);
  switch (odd) {
    case 'http10':
      r.version = 'HTTP/1.0';
      r.oracle = null;
      r.clean = false;
      break;
    case 'no-host':
      r.headers = r.headers.filter((h) => h !== host);
      r.oracle = null;
      r.clean = false;
      break;
    case 'bare-lf':
      r.lineEnd = '\n';
      r.oracle = null;
      r.clean = false;
      break;
    case 'folded':
      r.headers.push(['X-Folded', 'a\r\n  b']);
      r.oracle = null;
      r.clean = false;
      break;
    case 'many': {
      const n = rng.int(49, 120);
      for (let k = 0; k < n; k++) r.headers.push([`X-H${k}`, 'v']);
      r.oracle = null;
      r.clean = false;
      break;
    }
    case 'space-colon':
      r.headers.push(['X-Space ', 'v']);
      r.oracle = null;
      r.clean = false;
      break;
    case 'lower-method':
      r.method = r.method.toLowerCase();
      r.oracle = null;
      r.clean = false;
      break;
    case 'bad-target':
      r.target = rng.pick(['*', 'http://127.0.0.1/healthz', '/v1/kv/a\x00b', '/v1/kv/a b', '', '/v1/kv/\x7f']);
      r.oracle = null;
      r.clean = false;
      break;
    case 'bad-version':
      r.version = rng.pick(['HTTP/2.0', 'HTTP/1.2', 'http/1.1', 'HTTP/1.1x', 'HTTP/11']);
      r.oracle = null;
      r.clean = false;
      break;
    default:
      break;
  }
  if (odd !== '') r.traits.push(odd);
  if (!['GET', 'PUT', 'DELETE', 'POST'].includes(r.method.toUpperCase())) r.traits.push(`method ${r.method}`);
  // uWS misreads bodies with chunk extensions (LIMITS 'chunk-ext'): what the gateway gets is not what was sent
  if (r.ambiguous || r.traits.includes('chunk-ext')) r.oracle = null;
  if (r.headers.some(([k, v]) => k.toLowerCase() === 'connection' && v === 'Upgrade') && r.target === '/v1/ws')
    r.oracle = null;
  if (r.headers.some(([k]) => k === 'Expect')) {
    r.oracle = null;
    r.traits.push('expect-continue');
  }
  return r;
}

export function genHttpInput(rng: Rng, lim: Limits): HttpInput {
  const kind = rng.weighted<string>([
    [60, 'request'],
    [8, 'keep-alive'],
    [4, 'pipelined'],
    [8, 'drip'],
    [2, 'garbage'],
    [3, 'mutated'],
    [5, 'abort'],
    [0.3, 'oversize-put'],
  ]);
  const one = (r: Req, bytes: Buffer): HttpInput => ({
    kind,
    pieces: [bytes],
    gapMs: 0,
    expect: r.clean ? 'answer' : 'answer-or-close',
    answers: 1,
    oracles: [r.oracle],
    abort: false,
    ambiguous: r.ambiguous,
    trait: traitOf(r),
    bytes,
  });
  switch (kind) {
    case 'request': {
      const r = genRequestHttp(rng, lim);
      const b = serialize(r);
      const x = one(r, b);
      if (rng.chance(0.2)) x.pieces = split(rng, b, 2, 4);
      return x;
    }
    case 'keep-alive': {
      // several requests on one connection, each sent after the previous answer
      const rs: Req[] = [];
      for (let k = rng.int(2, 4); k > 0; k--) {
        const r = genRequestHttp(rng, lim);
        if (!r.clean || r.headers.some(([h]) => h === 'Connection')) continue;
        rs.push(r);
      }
      if (rs.length === 0) {
        const r = genRequestHttp(rng, lim);
        const b = serialize(r);
        return { ...one(r, b), kind: 'request' };
      }
      const pieces = rs.map((r) => serialize(r));
      return {
        kind,
        pieces,
        gapMs: -1,
        expect: 'answer',
        answers: rs.length,
        oracles: rs.map((r) => r.oracle),
        abort: false,
        trait: rs.map(traitOf).join(' + '),
        traits: rs.map(traitOf),
        requests: pieces,
        bytes: Buffer.concat(pieces),
      };
    }
    case 'pipelined': {
      const rs: Req[] = [];
      while (rs.length < 2) {
        const r = genRequestHttp(rng, lim);
        if (r.clean && r.body.length < 10_000 && !r.headers.some(([h]) => h === 'Connection')) rs.push(r);
      }
      const requests = rs.map((r) => serialize(r));
      const bytes = Buffer.concat(requests);
      return {
        kind,
        pieces: [bytes],
        gapMs: 0,
        expect: 'answer',
        answers: 2,
        oracles: [rs[0].oracle, null],
        abort: false,
        trait: `${traitOf(rs[0])} + ${traitOf(rs[1])}`,
        traits: rs.map(traitOf),
        requests,
        bytes,
      };
    }
    case 'drip': {
      let r = genRequestHttp(rng, lim);
      for (let k = 0; k < 5 && (r.body.length > 12_000 || !r.clean); k++) r = genRequestHttp(rng, lim);
      const b = serialize(r);
      if (b.length > 16_000) return one(r, b);
      const x = one(r, b);
      x.pieces = split(rng, b, 8, 400);
      x.gapMs = rng.pick([0, 0, 1, 2]);
      return x;
    }
    case 'garbage': {
      const g = rng.weighted<() => Buffer>([
        [3, () => rng.bytes(rng.size(2000))],
        [2, () => Buffer.concat([rng.bytes(rng.size(300)), Buffer.from('\r\n\r\n')])],
        [
          2,
          () =>
            Buffer.from(
              `${rng.word(rng.int(1, 10), 'ABCDEFG@ /')} ${rng.word(rng.int(1, 20), '/abc%?')} HTTP/1.1\r\nHost: x\r\n\r\n`,
              'latin1',
            ),
        ],
        [1, () => Buffer.from('\r\n\r\n')],
        [
          1,
          () =>
            Buffer.concat([
              Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n'),
              rng.bytes(rng.size(100)),
              Buffer.from('\r\n\r\n'),
            ]),
        ],
      ])();
      return {
        kind,
        pieces: [g],
        gapMs: 0,
        expect: 'answer-or-close',
        answers: 1,
        oracles: [null],
        abort: false,
        trait: 'garbage',
        bytes: g,
      };
    }
    case 'mutated': {
      const r = genRequestHttp(rng, lim);
      const b = mutate(rng, serialize(r));
      return {
        kind,
        pieces: [b],
        gapMs: 0,
        expect: 'answer-or-close',
        answers: 1,
        oracles: [null],
        abort: false,
        trait: 'mutated',
        bytes: b,
      };
    }
    case 'abort': {
      let r = genRequestHttp(rng, lim);
      for (let k = 0; k < 5 && r.body.length < 10; k++) r = genRequestHttp(rng, lim);
      const b = serialize(r);
      const cut = rng.int(0, Math.max(0, b.length - 1));
      return {
        kind,
        pieces: [b.subarray(0, cut)],
        gapMs: 0,
        expect: 'none',
        answers: 0,
        oracles: [],
        abort: true,
        trait: 'abort',
        bytes: b.subarray(0, cut),
      };
    }
    default: {
      // a PUT over the value limit, written in full: the client must read 413 TOO_LARGE
      const n = lim.maxValueBytes + rng.int(1, 4 * 1024 * 1024);
      const chunkedUpload = rng.chance(0.3);
      const headText = `PUT /v1/kv/${fuzzKey(rng)} HTTP/1.1\r\nHost: 127.0.0.1\r\n${chunkedUpload ? 'Transfer-Encoding: chunked' : `Content-Length: ${n}`}\r\n\r\n`;
      const body = Buffer.alloc(n, 0x61);
      const pieces = [Buffer.from(headText)];
      if (chunkedUpload) {
        for (let at = 0; at < n; at += 65536) {
          const k = Math.min(65536, n - at);
          pieces.push(
            Buffer.concat([Buffer.from(`${k.toString(16)}\r\n`), body.subarray(at, at + k), Buffer.from('\r\n')]),
          );
        }
        pieces.push(Buffer.from('0\r\n\r\n'));
      } else for (let at = 0; at < n; at += 65536) pieces.push(body.subarray(at, Math.min(n, at + 65536)));
      return {
        kind,
        pieces,
        gapMs: 0,
        expect: 'answer',
        answers: 1,
        oracles: [{ statuses: [413], codes: ['TOO_LARGE'], kind: 'oversized PUT', why: `PUT of ${n} bytes` }],
        abort: false,
        trait: chunkedUpload ? 'chunked' : 'content-length',
        bytes: Buffer.from(headText),
      };
    }
  }
}

function traitOf(r: Req): string {
  if (r.traits.length) return r.traits.join(', ');
  const path = r.target.startsWith('/v1/kv/') ? '/v1/kv/{key}' : r.target.replace(/\?.*/, '');
  return `${r.method} ${path}`;
}

function split(rng: Rng, b: Buffer, minParts: number, maxParts: number): Buffer[] {
  const parts = Math.min(b.length, rng.int(minParts, maxParts));
  const cuts = new Set<number>();
  for (let k = 1; k < parts; k++) cuts.add(rng.int(1, b.length - 1));
  const at = [0, ...[...cuts].sort((x, y) => x - y), b.length];
  const out: Buffer[] = [];
  for (let k = 0; k + 1 < at.length; k++) if (at[k + 1] > at[k]) out.push(b.subarray(at[k], at[k + 1]));
  return out;
}
