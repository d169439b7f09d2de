/**
 * Property test of the HTTP routes (issue 7): random and mutated requests within the framing uWS parses
 * (a valid request line and headers; Content-Length that matches the body, or chunked), written to a raw
 * socket split at random points. Each gets a correct answer, or an error whose code is in the table with
 * the table's status: never a 5xx other than the documented 503s, never a hang past a deadline; and the
 * gateway serves a canary afterwards. Bounded by numRuns and a time limit; a failure prints fast-check's
 * seed and path (replay: FC_SEED=<seed> FC_PATH=<path>).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { pack, unpackMultiple } from 'msgpackr';
import { ErrorTable } from '../src/core/errors';
import { startHarness, type Harness } from './helpers/harness';
import { parseHead, parseResponse, RawHttp, type RawResponse } from './helpers/raw-http';

const MAX_VALUE = 8192;
const DEADLINE_MS = 4000;

type Framing = 'length' | 'chunked' | 'dup-equal' | 'dup-different' | 'te-other';

interface Case {
  method: string;
  route: 'kv' | 'mget' | 'mset' | 'healthz' | 'other';
  path: string;
  query: string;
  contentType: string | null;
  accept: string | null;
  body: Buffer;
  framing: Framing;
  /** mset items sent well formed, by index (NDJSON value text or msgpack bytes), for checking what was stored. */
  items: Map<number, { key: string; value: Buffer }>;
  splits: number[];
}

const TOKEN_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!#$&^_`|~+';
const token = fc.string({ unit: fc.constantFrom(...TOKEN_CHARS.split('')), minLength: 1, maxLength: 12 });
const PATH_CHARS = "abcxyz019-._~:@!$&'()*+,;=/%";

/** Key bytes: mostly safe text, some percent-encoded bytes (valid or not), some characters the key refuses. */
const keyPart = fc
  .array(
    fc.oneof(
      { weight: 20, arbitrary: fc.constantFrom(...'abcdefghijklmnop0123456789:_-'.split('')) },
      {
        weight: 2,
        arbitrary: fc.integer({ min: 0, max: 255 }).map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`),
      },
      { weight: 1, arbitrary: fc.constantFrom('%', '%z', '%4', '%20', '%0D%0A', '%7F', '%C3%A9', '/', '+') },
    ),
    { minLength: 0, maxLength: 30 },
  )
  .map((a) => a.join(''));

const numberText = fc.oneof(
  fc.nat({ max: 5000 }).map(String),
  fc.constantFrom(
    '',
    '-1',
    '+1',
    '1.5',
    'abc',
    '4294967295',
    '4294967296',
    '99999999999',
    '0x10',
    '%31',
    '2592000',
    '3600',
  ),
);
const query = fc
  .array(fc.tuple(fc.constantFrom('ttl', 'flags', 'wait', 'x', 'TTL'), fc.option(numberText, { nil: undefined })), {
    maxLength: 4,
  })
  .map((ps) => (ps.length === 0 ? '' : '?' + ps.map(([k, v]) => (v === undefined ? k : `${k}=${v}`)).join('&')));

const mediaType = fc.oneof(
  fc.constantFrom(
    'application/msgpack',
    'application/x-msgpack',
    'application/x-ndjson',
    'APPLICATION/X-NDJSON',
    'application/json',
    'text/plain;charset=ndjson',
    'application/x-ndjson; charset=utf-8',
    'application/msgpack ; q=1',
    'text/plain',
    '*/*',
    'application/*',
  ),
  fc
    .tuple(token, token, fc.array(fc.tuple(token, token), { maxLength: 2 }))
    .map(([t, s, ps]) => `${t}/${s}${ps.map(([k, v]) => `; ${k}=${v}`).join('')}`),
  fc.string({ unit: fc.constantFrom(...'ab/;=," *q0.1'.split('')), maxLength: 20 }),
);
const acceptValue = fc.oneof(
  mediaType,
  fc
    .array(fc.tuple(mediaType, fc.option(fc.constantFrom('0', '0.5', '1', '1.000', '2', 'x'), { nil: undefined })), {
      minLength: 1,
      maxLength: 3,
    })
    .map((es) => es.map(([m, q]) => (q === undefined ? m : `${m};q=${q}`)).join(', ')),
);

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((u) => Buffer.from(u));

function b64ish(): fc.Arbitrary<string> {
  return fc.oneof(
    bytes(40).map((b) => b.toString('base64')),
    fc.string({ maxLength: 12 }),
    fc.constantFrom('!!!not base64!!!', 'AAE', 'AR==', '===='),
  );
}

/** An mset or mget body in one of the formats, some items well formed, some not, maybe mutated. */
function bulkBody(
  isSet: boolean,
  prefix: string,
): fc.Arbitrary<{ body: Buffer; items: Map<number, { key: string; value: Buffer }>; ndjson: boolean }> {
  const item = fc.record({
    good: fc.boolean(),
    key: keyPart.map((k) => `${prefix}${k}`),
    text: fc.string({ maxLength: 40 }),
    bin: bytes(300),
    ttl: fc.option(fc.oneof(fc.nat({ max: 4000 }), fc.constantFrom(-1, 1.5, 2592001)), { nil: undefined }),
    flags: fc.option(fc.oneof(fc.nat(), fc.constant(-5)), { nil: undefined }),
    b64: b64ish(),
    junk: fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.string({ maxLength: 20 }).map((s) => s.replace(/\n/g, ' ')),
    ),
    useBase64: fc.boolean(),
  });
  return fc
    .record({
      ndjson: fc.boolean(),
      list: fc.array(item, { maxLength: 12 }),
      asArray: fc.boolean(),
      flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 2 }),
      cut: fc.option(fc.nat(), { nil: undefined }),
      trailingNewline: fc.boolean(),
    })
    .map(({ ndjson, list, asArray, flips, cut, trailingNewline }) => {
      const items = new Map<number, { key: string; value: Buffer }>();
      let body: Buffer;
      if (ndjson) {
        const lines = list.map((x, i) => {
          if (!x.good) return x.junk;
          if (!isSet) return JSON.stringify(x.key);
          const o: Record<string, unknown> = { key: x.key };
          if (x.useBase64) o.base64 = x.b64;
          else o.value = x.text;
          if (x.ttl !== undefined) o.ttl = x.ttl;
          if (x.flags !== undefined) o.flags = x.flags;
          if (!x.useBase64) items.set(i, { key: x.key, value: Buffer.from(x.text, 'utf8') });
          return JSON.stringify(o);
        });
        body = Buffer.from(lines.join('\n') + (trailingNewline ? '\n' : ''));
      } else {
        const objs = list.map((x, i) => {
          if (!isSet) return x.good ? x.key : x.bin;
          if (!x.good) return x.junk;
          const o: Record<string, unknown> = { key: x.key, value: x.bin };
          if (x.ttl !== undefined) o.ttl = x.ttl;
          if (x.flags !== undefined) o.flags = x.flags;
          items.set(i, { key: x.key, value: x.bin });
          return o;
        });
        body = asArray ? pack(objs) : Buffer.concat(objs.map((o) => pack(o)));
      }
      if (flips.length > 0 || cut !== undefined) {
        items.clear(); // mutated: no promise about what was stored, only about the answer
        body = Buffer.from(body);
        for (const [at, v] of flips) if (body.length > 0) body[at % body.length] = v;
        if (cut !== undefined && body.length > 0) body = body.subarray(0, cut % body.length);
      }
      return { body, items, ndjson };
    });
}

let runs = 0;
/** Answers seen, by route and status, so a run shows what it covered. */
const seen = new Map<string, number>();
const saw = (k: string): void => {
  seen.set(k, (seen.get(k) ?? 0) + 1);
};

const caseArb: fc.Arbitrary<Case> = fc.integer({ min: 0, max: 2 ** 30 }).chain((salt) => {
  const prefix = `prop:${salt.toString(36)}:`;
  return fc
    .record({
      route: fc.constantFrom('kv', 'kv', 'kv', 'mget', 'mset', 'mset', 'healthz', 'other') as fc.Arbitrary<
        Case['route']
      >,
      method: fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom('GET', 'PUT', 'PUT', 'DELETE', 'POST') },
        { weight: 1, arbitrary: fc.constantFrom('HEAD', 'PATCH', 'OPTIONS', 'FOO') },
      ),
      key: keyPart,
      otherPath: fc.string({ unit: fc.constantFrom(...PATH_CHARS.split('')), maxLength: 20 }),
      query: fc.oneof(
        { weight: 2, arbitrary: fc.constant('') },
        { weight: 1, arbitrary: fc.constantFrom('?ttl=60', '?flags=7', '?wait=0', '?ttl=0&flags=1') },
        { weight: 2, arbitrary: query },
      ),
      contentType: fc.option(mediaType, { nil: null }),
      accept: fc.oneof(
        { weight: 3, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.constantFrom('*/*', 'application/x-ndjson', 'application/msgpack') },
        { weight: 2, arbitrary: acceptValue },
      ),
      kvBody: fc.oneof(
        { weight: 4, arbitrary: bytes(3000) },
        {
          weight: 1,
          arbitrary: fc.integer({ min: MAX_VALUE - 2, max: MAX_VALUE + 3000 }).map((n) => Buffer.alloc(n, 0x5a)),
        },
      ),
      bulk: fc.boolean().chain((isSet) => bulkBody(isSet, prefix).map((b) => ({ ...b, isSet }))),
      framing: fc.oneof(
        { weight: 8, arbitrary: fc.constant('length' as Framing) },
        { weight: 3, arbitrary: fc.constant('chunked' as Framing) },
        { weight: 1, arbitrary: fc.constantFrom('dup-equal', 'dup-different', 'te-other') as fc.Arbitrary<Framing> },
      ),
      splits: fc.array(fc.nat(), { maxLength: 4 }),
      bulkCt: fc.boolean(),
    })
    .map((r): Case => {
      let path: string;
      let body: Buffer = Buffer.alloc(0);
      let contentType = r.contentType;
      let method = r.method;
      let items = new Map<number, { key: string; value: Buffer }>();
      switch (r.route) {
        case 'kv':
          path = `/v1/kv/${prefix.replace(/:/g, '%3A')}${r.key}`;
          if (method === 'PUT' || method === 'POST') body = r.kvBody;
          break;
        case 'mget':
        case 'mset':
          path = r.route === 'mget' ? '/v1/mget' : '/v1/mset';
          if (r.method !== 'HEAD') method = r.method === 'FOO' ? 'FOO' : r.method === 'GET' ? 'GET' : 'POST';
          if (r.bulk.isSet !== (r.route === 'mset')) {
            /* a body of the other route's shape: also fine */
          }
          body = r.bulk.body;
          items = r.route === 'mset' && r.bulk.isSet ? r.bulk.items : new Map();
          // Usually the body's own type, so that bodies get parsed at all.
          if (r.bulkCt) contentType = r.bulk.ndjson ? 'application/x-ndjson' : 'application/msgpack';
          break;
        case 'healthz':
          path = '/healthz';
          break;
        default:
          path = `/${r.otherPath}`;
      }
      if (method === 'HEAD' || method === 'GET' || method === 'DELETE') {
        if (r.route !== 'mget' && r.route !== 'mset') body = Buffer.alloc(0);
      }
      return {
        method,
        route: r.route,
        path,
        query: r.query,
        contentType,
        accept: r.accept,
        body,
        framing: r.framing,
        items,
        splits: r.splits,
      };
    });
});

function encode(c: Case): Buffer {
  let h = `${c.method} ${c.path}${c.query} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
  if (c.contentType !== null) h += `Content-Type: ${c.contentType}\r\n`;
  if (c.accept !== null) h += `Accept: ${c.accept}\r\n`;
  let body = c.body;
  switch (c.framing) {
    case 'length':
      h += `Content-Length: ${body.length}\r\n`;
      break;
    case 'dup-equal':
      h += `Content-Length: ${body.length}\r\nContent-Length: ${body.length}\r\n`;
      break;
    case 'dup-different':
      h += `Content-Length: ${body.length}\r\nContent-Length: ${body.length + 7}\r\n`;
      break;
    case 'chunked':
    case 'te-other': {
      h += `Transfer-Encoding: ${c.framing === 'chunked' ? 'chunked' : 'gzip, chunked'}\r\n`;
      const parts: Buffer[] = [];
      for (let at = 0, k = 0; at < body.length; k++) {
        const n = Math.min(body.length - at, 1 + ((c.splits[k % Math.max(1, c.splits.length)] ?? 700) % 1500));
        parts.push(Buffer.from(`${n.toString(16)}\r\n`), body.subarray(at, at + n), Buffer.from('\r\n'));
        at += n;
      }
      parts.push(Buffer.from('0\r\n\r\n'));
      body = Buffer.concat(parts);
      break;
    }
  }
  return Buffer.concat([Buffer.from(h + '\r\n'), body]);
}

const STANDARD_METHODS = new Set(['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);
const DOCUMENTED_503 = new Set(
  Object.entries(ErrorTable)
    .filter(([, r]) => r.status === 503)
    .map(([c]) => c),
);

async function sendSplit(c: RawHttp, bytes: Buffer, splits: number[]): Promise<void> {
  const cuts = [...new Set(splits.map((s) => s % Math.max(1, bytes.length)))].sort((a, b) => a - b);
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    if (cut <= at) continue;
    await c.send(bytes.subarray(at, cut));
    at = cut;
    await new Promise((r) => setImmediate(r)); // a separate read on the gateway's side, most of the time
  }
}

/** An error answer: a JSON body naming a code of the table whose status is the answer's. */
function checkError(r: RawResponse, what: string, head: boolean): string {
  if (head) return '';
  const e = (JSON.parse(r.body.toString()) as { error: { code: string; message: string; retry: string } }).error;
  assert.ok(e.code in ErrorTable, `${what}: code ${e.code} is in the table`);
  const row = ErrorTable[e.code as keyof typeof ErrorTable];
  assert.equal(r.status, row.status, `${what}: status of ${e.code}`);
  assert.equal(e.retry, row.retry, `${what}: retry hint of ${e.code}`);
  assert.equal(typeof e.message, 'string');
  return e.code;
}

describe('HTTP routes, property', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ limits: { maxValueBytes: MAX_VALUE, maxTtlSeconds: 3600 } }, 2);
  });
  after(() => h.stop());

  it('random and mutated requests get a correct answer or a table error, never a 5xx or a hang', async () => {
    const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED);
    await fc.assert(
      fc.asyncProperty(caseArb, async (tc) => {
        runs++;
        const what = `${tc.method} ${tc.path}${tc.query} (${tc.framing}, ${tc.body.length} bytes)`;
        const c = await RawHttp.connect(h.gw.port);
        try {
          await sendSplit(c, encode(tc), tc.splits).catch(() => undefined); // the gateway may close first
          let whole: RawResponse | null = null;
          await c.waitFor(
            () => (whole = parseResponse(c.unread)?.r ?? null) !== null || c.closed,
            DEADLINE_MS,
            `an answer to ${what}`,
          );
          const isHead = tc.method === 'HEAD';
          if (!STANDARD_METHODS.has(tc.method)) {
            // uWS routes only the nine standard methods and closes on any other, unanswered (docs).
            await c.closedByPeer(DEADLINE_MS);
            assert.equal(c.received, 0, `${what}: no answer`);
            return;
          }
          if (tc.framing === 'dup-equal' || tc.framing === 'dup-different' || tc.framing === 'te-other') {
            // Ambiguous framing: 400 and a close, whatever the route.
            await c.closedByPeer(DEADLINE_MS);
            const end = c.unread.indexOf('\r\n\r\n');
            assert.ok(end > 0, `${what}: an answer before the close`);
            assert.equal(parseHead(c.unread.toString('latin1', 0, end)).status, 400, what);
            assert.match(c.unread.toString(), /"code":"BAD_REQUEST"/);
            return;
          }
          assert.ok(whole !== null, `${what}: a whole answer (closed: ${c.closed}, ${c.unread.length} bytes)`);
          const r = whole as RawResponse;
          saw(`${tc.route} ${r.status}`);
          assert.ok(
            r.status < 500 || (r.status === 503 && DOCUMENTED_503.has(checkError(r, what, isHead))),
            `${what}: status ${r.status}`,
          );
          if (r.status >= 400) {
            checkError(r, what, isHead);
            return;
          }
          // A success is the route's.
          if (tc.route === 'healthz') {
            assert.equal(r.status, 200);
            return;
          }
          assert.ok(
            tc.route === 'kv' || tc.route === 'mget' || tc.route === 'mset',
            `${what}: ${r.status} on a route that has no success`,
          );
          if (tc.route === 'kv') {
            if (tc.method === 'PUT') {
              assert.equal(r.status, 204, what);
              // Stored exactly: read back on a fresh connection.
              const g = await RawHttp.connect(h.gw.port);
              await g.send(`GET ${tc.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
              const got = await g.response(DEADLINE_MS);
              g.destroy();
              assert.equal(got.status, 200, `${what}: the stored value reads back`);
              assert.ok(got.body.equals(tc.body), `${what}: the stored value is the body`);
            } else if (tc.method === 'GET') assert.equal(r.status, 200, what);
            else assert.equal(r.status, 204, what);
            return;
          }
          // Bulk: a stream of entries ending with END; every error code from the table.
          assert.equal(r.status, 200);
          const type = r.headers['content-type'];
          const oks = new Set<number>();
          if (type === 'application/x-ndjson') {
            const lines = r.body
              .toString()
              .split('\n')
              .filter((l) => l !== '')
              .map((l) => JSON.parse(l) as Record<string, unknown>);
            assert.ok(lines.length > 0 && lines[lines.length - 1].done === true, `${what}: ends with done`);
            for (const l of lines.slice(0, -1)) {
              const e = l.error as { code?: string } | undefined;
              if (e !== undefined)
                assert.ok(typeof e.code === 'string' && e.code in ErrorTable, `${what}: item code ${e.code}`);
              if (l.ok === true) oks.add(l.i as number);
            }
          } else {
            assert.equal(type, 'application/msgpack', what);
            const entries = unpackMultiple(r.body) as unknown[][];
            assert.deepEqual(entries[entries.length - 1], [0, -1, 5], `${what}: ends with END`);
            for (const e of entries.slice(0, -1)) {
              if (e[2] === 4) assert.ok((e[3] as string) in ErrorTable, `${what}: item code ${String(e[3])}`);
              if (e[2] === 3) oks.add(e[1] as number);
            }
          }
          if (tc.route === 'mset') {
            for (const i of oks) {
              const item = tc.items.get(i);
              if (item === undefined) continue;
              const got = await h.http.get(item.key);
              assert.ok(got.hit && got.value.equals(item.value), `${what}: item ${i} stored exactly`);
            }
          }
        } finally {
          c.destroy();
        }
        // The gateway still serves.
        const canary = await RawHttp.connect(h.gw.port);
        await canary.send('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
        assert.equal((await canary.response(DEADLINE_MS)).status, 200, 'the canary is served');
        canary.destroy();
      }),
      {
        numRuns: 600,
        interruptAfterTimeLimit: 5000,
        markInterruptAsFailure: false,
        seed,
        path: process.env.FC_PATH,
        includeErrorInReport: true,
      },
    );
    console.log(`prop-http: ${runs} runs; answers ${JSON.stringify(Object.fromEntries(seen))}`);
    assert.ok(runs >= 20, `only ${runs} runs in the time limit`);
  });
});
