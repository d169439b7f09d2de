/**
 * Authentication, tenancy and limits end to end (issue 10), from outside: a real gateway in front of a
 * real memcached fleet (startHarness), driven by an attacker holding a valid credential of tenant B, or
 * none, over raw sockets (RawHttp, hand-made upgrades) and the client library. What the fleet holds is
 * read straight from memcached (mc-raw.ts), never through the gateway under test.
 *
 *  1. tenants are namespaces: B never reads, overwrites or deletes A's keys, over every route and format;
 *     prefix rules refuse items one by one inside a bulk; the 250-byte key limit counts the namespace;
 *  2. every kind of bad credential is 401 on HTTP and at the WebSocket upgrade, and stores nothing;
 *  3. the WebSocket token may come in a subprotocol or the query; the token is never echoed back;
 *  4. a connection whose JWT expires is closed with 4001 AUTH_EXPIRED when it expires; `auth` renews it;
 *  5. the admin listener wants the admin role;
 *  6. rate limits hold the configured rate within 10% on a real clock, and connection limits their counts;
 *  7. no token, key or secret reaches the log, /metrics or /debug/stats (a spawned gateway at trace level);
 *  8. authentication off on a public address is refused unless --insecure-public.
 * Tokens are made by test/helpers/tokens.ts (node:crypto, not the verifier's code).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { startHarness, until, type Harness } from './helpers/harness';
import { head, RawHttp, type RawResponse } from './helpers/raw-http';
import { rawGet } from './helpers/mc-raw';
import { spawnGateway, type GatewayProcess } from './helpers/gateway-process';
import { apiKey, hmacSecret, nowSeconds, rsaPair, signJwt, type SignKey } from './helpers/tokens';
import {
  decodeEntries,
  encodeRequest,
  KvError,
  KvHttpClient,
  KvWsClient,
  type Entry,
  type ItemResult,
  type Request,
} from './client';
import { ConfigError, defaultConfig, mergeConfig, validateConfig } from '../src/config/schema';
import { loadArgs } from '../src/config/args';
import { LocalFleet } from '../src/fleet/local-fleet';

// ---- credentials of the main gateway ----

const HS_SECRET = hmacSecret('main');
const RSA = rsaPair();
const OTHER_RSA = rsaPair();
const HS: SignKey = { alg: 'HS256', secret: HS_SECRET };
const RS: SignKey = { alg: 'RS256', privateKey: RSA.privateKey };

const KEY_A = apiKey('svc-a', { namespace: 'tenantA:', tenant: 'A', perms: 'all' });
const KEY_B = apiKey('svc-b', { namespace: 'tenantB:', tenant: 'B', perms: 'all' });
/** Tenant B, read-only except under `w:`. */
const KEY_B_RULES = apiKey('svc-b-rules', {
  namespace: 'tenantB:',
  tenant: 'B',
  rules: [
    { prefix: '', perms: 'read' },
    { prefix: 'w:', perms: 'all' },
  ],
});
const KEY_ADMIN = apiKey('ops', { namespace: 'ops:', tenant: 'ops', perms: 'none', admin: true });

/** The JWT section of the main gateway: one HS256 and one RS256 key, an audience, no clock skew. */
const JWT = {
  keys: [
    { kid: 'h1', alg: 'HS256', secret: HS_SECRET },
    { kid: 'r1', alg: 'RS256', publicKeyPem: RSA.publicPem },
  ],
  audience: 'kvgate',
  clockSkewSeconds: 0,
};

/** Claims of tenant B's user bob, valid for 10 minutes. */
function bobClaims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sub: 'bob',
    kvgate_ns: 'tenantB:',
    kvgate_tenant: 'B',
    kvgate_perms: 'read,write,delete',
    aud: 'kvgate',
    exp: nowSeconds() + 600,
    ...extra,
  };
}

function mainSecurity(): Record<string, unknown> {
  return {
    auth: { mode: 'required', apiKeys: [KEY_A.entry, KEY_B.entry, KEY_B_RULES.entry, KEY_ADMIN.entry], jwt: JWT },
  };
}

// ---- helpers ----

/** Every shard's copy of `key`, read from memcached itself: the values found (at most one, on one shard). */
async function inFleet(h: Harness, key: string): Promise<string[]> {
  const found: string[] = [];
  for (const m of h.fleet.members) {
    const v = await rawGet(m.port, key);
    if (v !== null) found.push(v.value.toString('utf8'));
  }
  return found;
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

async function errorOf(res: Response): Promise<{ code: string; message: string; retry: string }> {
  const body = (await res.json()) as { error: { code: string; message: string; retry: string } };
  return body.error;
}

/** A 401 as the issue words it: UNAUTHORIZED JSON with a retry hint, and the Bearer challenge. */
async function assert401(res: Response, what: string): Promise<void> {
  assert.equal(res.status, 401, what);
  assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="kvgate"', what);
  const e = await errorOf(res);
  assert.equal(e.code, 'UNAUTHORIZED', what);
  assert.equal(e.retry, 'no', what);
  assert.equal(typeof e.message, 'string');
}

/**
 * A WebSocket upgrade by hand: the whole response (the head alone for a 101, whose socket is then closed)
 * and the head's raw text, to look for what it must not carry.
 */
async function rawUpgrade(
  port: number,
  path: string,
  headers: Record<string, string>,
): Promise<RawResponse & { text: string }> {
  const c = await RawHttp.connect(port);
  try {
    await c.send(
      head('GET', path, {
        upgrade: 'websocket',
        connection: 'Upgrade',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'sec-websocket-version': '13',
        ...headers,
      }),
    );
    const h = await c.responseHead();
    if (h.status === 101) {
      const end = c.unread.indexOf('\r\n\r\n');
      return { ...h, text: c.unread.toString('latin1', 0, end) };
    }
    const r = await c.response();
    return { ...r, text: c.unread.toString('latin1') + r.body.toString('latin1') };
  } finally {
    c.destroy();
  }
}

/** A `ws` socket offering `protocols` (the client library sends its token as a header only). */
function openWs(url: string, protocols: string[] = [], localAddress?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { perMessageDeflate: false, localAddress });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      reject(new Error(`upgrade refused: ${res.statusCode}`));
    });
    ws.once('error', reject);
  });
}

/** Sends one request on a raw `ws` socket and collects its entries up to and including END. */
function wsExchange(ws: WebSocket, req: Request): Promise<Entry[]> {
  return new Promise((resolve, reject) => {
    const got: Entry[] = [];
    const onMessage = (data: Buffer): void => {
      for (const e of decodeEntries(data)) {
        if (e.id !== req.id) continue;
        got.push(e);
        if (e.kind === 'end') {
          ws.off('message', onMessage);
          resolve(got);
        }
      }
    };
    ws.on('message', onMessage);
    ws.once('close', (code) => reject(new Error(`closed ${code}`)));
    ws.send(encodeRequest(req));
  });
}

const codeOf = (r: ItemResult): string => ('error' in r ? r.error.code : 'ok');

async function rejectsWith(p: Promise<unknown>, code: string, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof KvError && e.code === code, what);
}

// ---- 1. tenants ----

describe('tenants are namespaces: B cannot touch A', () => {
  let h: Harness;
  let a: KvHttpClient;
  let b: KvHttpClient;
  before(async () => {
    h = await startHarness({ security: mainSecurity() });
    a = new KvHttpClient(h.base, { token: KEY_A.key });
    b = new KvHttpClient(h.base, { token: KEY_B.key });
  });
  after(() => h.stop());

  it("B's get, set and del of A's key (HTTP) miss A's value; memcached holds both, namespaced", async () => {
    await a.set('user:1', 'A-secret');
    assert.deepEqual(await inFleet(h, 'tenantA:user:1'), ['A-secret']);
    assert.deepEqual(await inFleet(h, 'user:1'), [], 'never stored under the bare key');
    assert.deepEqual(await b.get('user:1'), { hit: false });

    await b.set('user:1', 'B-value');
    assert.deepEqual(await inFleet(h, 'tenantB:user:1'), ['B-value']);
    assert.deepEqual(await inFleet(h, 'tenantA:user:1'), ['A-secret'], "B's write did not reach A's key");
    assert.deepEqual(await a.get('user:1'), { hit: true, value: Buffer.from('A-secret'), flags: 0 });
    assert.deepEqual(await b.get('user:1'), { hit: true, value: Buffer.from('B-value'), flags: 0 });

    assert.equal(await b.del('user:1'), true);
    assert.equal(await b.del('user:1'), false, "B's second delete finds nothing: A's key is not B's");
    assert.deepEqual(await inFleet(h, 'tenantB:user:1'), []);
    assert.deepEqual(await inFleet(h, 'tenantA:user:1'), ['A-secret']);

    // A key that tries to climb out of the namespace is only a longer key inside it.
    await b.set('tenantA:user:1', 'climb');
    assert.deepEqual(await inFleet(h, 'tenantB:tenantA:user:1'), ['climb']);
    assert.deepEqual(await inFleet(h, 'tenantA:user:1'), ['A-secret']);
  });

  it("a JWT of tenant B shares B's namespace, not A's", async () => {
    const jwtB = new KvHttpClient(h.base, { token: signJwt(RS, bobClaims(), { kid: 'r1' }) });
    await b.set('shared:1', 'from the API key');
    assert.deepEqual(await jwtB.get('shared:1'), { hit: true, value: Buffer.from('from the API key'), flags: 0 });
    await a.set('a-only', 'A');
    assert.deepEqual(await jwtB.get('a-only'), { hit: false });
    assert.deepEqual(await inFleet(h, 'tenantA:a-only'), ['A']);
  });

  it('HTTP bulk (msgpack and NDJSON): B reads none of A, writes only its own', async () => {
    for (const format of ['msgpack', 'ndjson'] as const) {
      const [k1, k2] = [`bulk:${format}:1`, `bulk:${format}:2`];
      await a.mset(
        [
          { key: k1, value: 'A1' },
          { key: k2, value: 'A2' },
        ],
        { format },
      );
      assert.deepEqual(await b.mget([k1, k2], { format }), [{ hit: false }, { hit: false }], format);
      const set = await b.mset(
        [
          { key: k1, value: 'B1' },
          { key: k2, value: 'B2' },
        ],
        { format },
      );
      assert.deepEqual(set, [{ ok: true }, { ok: true }]);
      assert.deepEqual(await inFleet(h, `tenantB:${k1}`), ['B1']);
      assert.deepEqual(await inFleet(h, `tenantA:${k1}`), ['A1'], format);
      assert.deepEqual(await inFleet(h, `tenantA:${k2}`), ['A2'], format);
      assert.deepEqual(
        (await a.mget([k1, k2], { format })).map((r) => ('value' in r ? r.value.toString() : r)),
        ['A1', 'A2'],
      );
      assert.deepEqual(
        (await b.mget([k1, k2], { format })).map((r) => ('value' in r ? r.value.toString() : r)),
        ['B1', 'B2'],
      );
    }
  });

  it("NDJSON answers echo the client's key, never the namespaced one", async () => {
    const body = ['{"key":"echo:1","value":"v"}', '{"key":"echo:2","value":"w"}'].join('\n') + '\n';
    const set = await fetch(`${h.base}/v1/mset`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', ...bearer(KEY_B.key) },
      body,
    });
    assert.equal(set.status, 200);
    const setText = await set.text();
    const get = await fetch(`${h.base}/v1/mget`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', ...bearer(KEY_B.key) },
      body: '"echo:1"\n"echo:2"\n"echo:none"\n',
    });
    const getText = await get.text();
    for (const text of [setText, getText]) assert.ok(!text.includes('tenantB'), text);
    const lines = getText
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const byKey = Object.fromEntries(lines.filter((l) => 'key' in l).map((l) => [l.key, l]));
    assert.deepEqual(Object.keys(byKey).sort(), ['echo:1', 'echo:2', 'echo:none']);
    assert.equal(byKey['echo:1'].value, 'v');
    assert.equal(byKey['echo:none'].miss, true);
    assert.deepEqual(await inFleet(h, 'tenantB:echo:2'), ['w']);
  });

  it('WebSocket get/set/del and mget/mset/mdel: B reads none of A, writes and deletes only its own', async () => {
    await a.mset([
      { key: 'ws:1', value: 'A-ws1' },
      { key: 'ws:2', value: 'A-ws2' },
    ]);
    const ws = await KvWsClient.connect(h.wsUrl, { token: KEY_B.key });
    try {
      assert.deepEqual(await ws.get('ws:1'), { hit: false });
      assert.deepEqual(await ws.mget(['ws:1', 'ws:2']), [{ hit: false }, { hit: false }]);
      assert.deepEqual(await ws.mdel(['ws:1', 'ws:2']), [{ deleted: false }, { deleted: false }]);
      assert.equal(await ws.del('ws:1'), false);
      assert.deepEqual(
        await ws.mset([
          { key: 'ws:1', value: 'B-ws1' },
          { key: 'ws:2', value: 'B-ws2' },
        ]),
        [{ ok: true }, { ok: true }],
      );
      await ws.set('ws:3', 'B-ws3');
      assert.deepEqual(await inFleet(h, 'tenantB:ws:1'), ['B-ws1']);
      assert.deepEqual(await inFleet(h, 'tenantB:ws:3'), ['B-ws3']);
      assert.deepEqual(await ws.mdel(['ws:1', 'ws:2']), [{ deleted: true }, { deleted: true }]);
      assert.deepEqual(await inFleet(h, 'tenantB:ws:1'), []);
    } finally {
      await ws.close();
    }
    assert.deepEqual(await inFleet(h, 'tenantA:ws:1'), ['A-ws1']);
    assert.deepEqual(await inFleet(h, 'tenantA:ws:2'), ['A-ws2']);
  });

  it('prefix rules (read-only except w:): FORBIDDEN item by item in bulks that mix allowed and denied', async () => {
    const ro = new KvHttpClient(h.base, { token: KEY_B_RULES.key });
    await b.set('user:7', 'B7');
    // HTTP single: a denied write or delete is 403, an allowed one goes through.
    const put = await fetch(`${h.base}/v1/kv/user:7`, { method: 'PUT', headers: bearer(KEY_B_RULES.key), body: 'x' });
    assert.equal(put.status, 403);
    assert.equal((await errorOf(put)).code, 'FORBIDDEN');
    const del = await fetch(`${h.base}/v1/kv/user:7`, { method: 'DELETE', headers: bearer(KEY_B_RULES.key) });
    assert.equal(del.status, 403);
    assert.deepEqual(await inFleet(h, 'tenantB:user:7'), ['B7'], 'neither reached memcached');
    await ro.set('w:1', 'writable');
    assert.deepEqual(await ro.get('user:7'), { hit: true, value: Buffer.from('B7'), flags: 0 }, 'reads anywhere');

    for (const format of ['msgpack', 'ndjson'] as const) {
      const items = [
        { key: `w:${format}:a`, value: '1' },
        { key: `user:${format}`, value: 'denied' },
        { key: `w:${format}:b`, value: '2' },
        { key: `x:${format}`, value: 'denied' },
      ];
      assert.deepEqual((await ro.mset(items, { format })).map(codeOf), ['ok', 'FORBIDDEN', 'ok', 'FORBIDDEN'], format);
      assert.deepEqual(await inFleet(h, `tenantB:w:${format}:a`), ['1']);
      assert.deepEqual(await inFleet(h, `tenantB:w:${format}:b`), ['2']);
      assert.deepEqual(await inFleet(h, `tenantB:user:${format}`), []);
      assert.deepEqual(await inFleet(h, `tenantB:x:${format}`), []);
    }
    // NDJSON names the refused item by the client's key.
    const res = await fetch(`${h.base}/v1/mset`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', ...bearer(KEY_B_RULES.key) },
      body: '{"key":"w:nd","value":"1"}\n{"key":"ro:nd","value":"2"}\n',
    });
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { i?: number; key?: string; ok?: boolean; error?: { code: string } });
    const refused = lines.find((l) => l.error !== undefined);
    assert.equal(refused?.key, 'ro:nd');
    assert.equal(refused?.error?.code, 'FORBIDDEN');
    assert.equal(lines.find((l) => l.ok)?.key, 'w:nd');

    // WebSocket: the same rules, item by item.
    const ws = await KvWsClient.connect(h.wsUrl, { token: KEY_B_RULES.key });
    try {
      assert.deepEqual(
        (
          await ws.mset([
            { key: 'w:ws', value: 'ok' },
            { key: 'user:ws', value: 'denied' },
          ])
        ).map(codeOf),
        ['ok', 'FORBIDDEN'],
      );
      assert.deepEqual((await ws.mdel(['w:ws', 'user:7'])).map(codeOf), ['ok', 'FORBIDDEN']);
      await rejectsWith(ws.set('user:7', 'overwrite'), 'FORBIDDEN', 'single set');
      await rejectsWith(ws.del('user:7'), 'FORBIDDEN', 'single del');
      assert.deepEqual((await ws.mget(['user:7', 'w:1'])).map(codeOf), ['ok', 'ok']);
    } finally {
      await ws.close();
    }
    assert.deepEqual(await inFleet(h, 'tenantB:user:7'), ['B7']);
    assert.deepEqual(await inFleet(h, 'tenantB:user:ws'), []);
  });

  it('the 250-byte key limit counts the namespace', async () => {
    // 'tenantA:' is 8 bytes: 242 of the client's own fit, 243 do not.
    const fits = 'k'.repeat(242);
    const over = 'k'.repeat(243);
    await a.set(fits, 'fits');
    assert.deepEqual(await inFleet(h, `tenantA:${fits}`), ['fits']);
    const res = await fetch(`${h.base}/v1/kv/${over}`, { method: 'PUT', headers: bearer(KEY_A.key), body: 'no' });
    assert.equal(res.status, 400);
    const e = await errorOf(res);
    assert.equal(e.code, 'BAD_KEY');
    assert.match(e.message, /242/);
    assert.deepEqual((await a.mset([{ key: over, value: 'no' }])).map(codeOf), ['BAD_KEY']);
    const ws = await KvWsClient.connect(h.wsUrl, { token: KEY_A.key });
    try {
      await rejectsWith(ws.get(over), 'BAD_KEY', 'ws get');
      assert.deepEqual((await ws.mget([fits, over])).map(codeOf), ['ok', 'BAD_KEY']);
    } finally {
      await ws.close();
    }
    // The admin key's namespace 'ops:' is 4 bytes: its limit is 246 (it may not write, so it asks).
    const admin = await fetch(`${h.base}/v1/kv/${'k'.repeat(247)}`, { headers: bearer(KEY_ADMIN.key) });
    assert.equal(admin.status, 403, 'rules are checked first: the admin key may touch no key');
  });
});

// ---- 2. refused credentials ----

describe('bad credentials are refused (401) on HTTP and at the WebSocket upgrade; nothing is stored', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ security: mainSecurity() });
  });
  after(() => h.stop());

  const now = nowSeconds();
  const bad: [string, string | null][] = [
    ['none', null],
    ['garbage', 'garbage-token-not-a-key'],
    ['an API key one character off', KEY_B.key.slice(0, -1) + (KEY_B.key.endsWith('0') ? '1' : '0')],
    ['the hash of an API key', String(KEY_B.entry.hash)],
    [
      'HS256 forged with a wrong secret',
      signJwt({ alg: 'HS256', secret: hmacSecret('wrong') }, bobClaims(), { kid: 'h1' }),
    ],
    [
      'RS256 signed by another RSA key',
      signJwt({ alg: 'RS256', privateKey: OTHER_RSA.privateKey }, bobClaims(), { kid: 'r1' }),
    ],
    ['expired', signJwt(HS, bobClaims({ exp: now - 5 }), { kid: 'h1' })],
    ['not yet valid', signJwt(HS, bobClaims({ nbf: now + 300 }), { kid: 'h1' })],
    ['wrong audience', signJwt(HS, bobClaims({ aud: 'another-service' }), { kid: 'h1' })],
    ['no audience', signJwt(HS, bobClaims({ aud: undefined }), { kid: 'h1' })],
    ['alg none', signJwt({ alg: 'none' }, bobClaims())],
    ['alg none with kid', signJwt({ alg: 'none' }, bobClaims(), { kid: 'h1' })],
    [
      'HS256 keyed with the RS256 public key PEM (kid r1)',
      signJwt({ alg: 'HS256', secret: RSA.publicPem }, bobClaims(), { kid: 'r1' }),
    ],
    [
      'HS256 keyed with the RS256 public key PEM (no kid)',
      signJwt({ alg: 'HS256', secret: RSA.publicPem }, bobClaims()),
    ],
    ['unknown kid (signed with the right secret)', signJwt(HS, bobClaims(), { kid: 'no-such-key' })],
  ];
  // B re-signs nothing: it swaps its valid token's payload for one naming tenant A.
  const valid = signJwt(HS, bobClaims(), { kid: 'h1' });
  const [vh, , vs] = valid.split('.');
  const tampered = `${vh}.${Buffer.from(JSON.stringify(bobClaims({ kvgate_ns: 'tenantA:', kvgate_tenant: 'A' }))).toString('base64url')}.${vs}`;
  bad.push(['a valid signature over another payload', tampered]);

  const headersFor = (t: string | null): Record<string, string> => (t === null ? {} : bearer(t));

  it('each is 401 UNAUTHORIZED with a Bearer challenge on every HTTP route, and stores nothing', async () => {
    for (const [what, t] of bad) {
      const key = `probe:${what.replace(/\W+/g, '-')}`;
      await assert401(await fetch(`${h.base}/v1/kv/${key}`, { headers: headersFor(t) }), `GET ${what}`);
      await assert401(
        await fetch(`${h.base}/v1/kv/${key}`, { method: 'PUT', headers: headersFor(t), body: 'attack' }),
        `PUT ${what}`,
      );
      await assert401(
        await fetch(`${h.base}/v1/kv/${key}`, { method: 'DELETE', headers: headersFor(t) }),
        `DEL ${what}`,
      );
      await assert401(
        await fetch(`${h.base}/v1/mset`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson', ...headersFor(t) },
          body: `{"key":"${key}","value":"attack"}\n`,
        }),
        `mset ${what}`,
      );
      await assert401(
        await fetch(`${h.base}/v1/mget`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson', ...headersFor(t) },
          body: `"${key}"\n`,
        }),
        `mget ${what}`,
      );
      for (const stored of [key, `tenantB:${key}`, `tenantA:${key}`])
        assert.deepEqual(await inFleet(h, stored), [], `${what}: nothing stored as ${stored}`);
    }
    // The same routes answer the valid token (the refusals above are about the credential alone).
    const ok = await fetch(`${h.base}/v1/kv/probe:valid`, { method: 'PUT', headers: bearer(valid), body: 'ok' });
    assert.equal(ok.status, 204);
    assert.deepEqual(await inFleet(h, 'tenantB:probe:valid'), ['ok']);
    // A scheme other than Bearer carries no credential.
    const basic = await fetch(`${h.base}/v1/kv/probe:valid`, {
      headers: { authorization: `Basic ${Buffer.from(`x:${KEY_B.key}`).toString('base64')}` },
    });
    await assert401(basic, 'Basic');
  });

  it('each is 401 at the upgrade, in the header, the subprotocol and the query; a valid one opens', async () => {
    for (const [what, t] of bad) {
      const ways: [string, string, Record<string, string>][] =
        t === null
          ? [['no credential', '/v1/ws', { 'sec-websocket-protocol': 'kvgate.v1' }]]
          : [
              ['header', '/v1/ws', bearer(t)],
              ['subprotocol', '/v1/ws', { 'sec-websocket-protocol': `kvgate.v1, kvgate.bearer.${t}` }],
              ['query', `/v1/ws?access_token=${encodeURIComponent(t)}`, {}],
            ];
      for (const [how, path, headers] of ways) {
        const r = await rawUpgrade(h.gw.port, path, headers);
        assert.equal(r.status, 401, `${what} in the ${how}`);
        assert.equal(r.headers['www-authenticate'], 'Bearer realm="kvgate"');
        assert.equal((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
      }
    }
    for (const [how, path, headers] of [
      ['header', '/v1/ws', bearer(valid)],
      ['subprotocol', '/v1/ws', { 'sec-websocket-protocol': `kvgate.v1, kvgate.bearer.${valid}` }],
      ['query', `/v1/ws?access_token=${valid}`, {}],
    ] as const)
      assert.equal((await rawUpgrade(h.gw.port, path, headers)).status, 101, how);
    // The client library sees the refusal as a failed connect.
    await assert.rejects(KvWsClient.connect(h.wsUrl, { token: tampered }), /401/);
  });
});

// ---- 3. the WebSocket token's carriers ----

describe('WebSocket: token in a subprotocol or the query, never echoed', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ security: mainSecurity() });
    await new KvHttpClient(h.base, { token: KEY_B.key }).set('carrier', 'B-carrier');
    await new KvHttpClient(h.base, { token: KEY_A.key }).set('carrier', 'A-carrier');
  });
  after(() => h.stop());

  it("the 101 selects kvgate.v1 and its head never contains the token; B's namespace applies", async () => {
    for (const t of [KEY_B.key, signJwt(RS, bobClaims(), { kid: 'r1' })]) {
      for (const offer of [`kvgate.bearer.${t}, kvgate.v1`, `kvgate.v1, kvgate.bearer.${t}`]) {
        const r = await rawUpgrade(h.gw.port, '/v1/ws', { 'sec-websocket-protocol': offer });
        assert.equal(r.status, 101, offer);
        assert.equal(r.headers['sec-websocket-protocol'], 'kvgate.v1');
        assert.ok(!r.text.includes(t), 'the token is not in the 101');
        assert.ok(!r.text.includes('bearer'), r.text);
      }
      const ws = await openWs(h.wsUrl, ['kvgate.v1', `kvgate.bearer.${t}`]);
      try {
        assert.equal(ws.protocol, 'kvgate.v1');
        const got = await wsExchange(ws, { id: 7, op: 'get', key: 'carrier' });
        assert.equal(got[0].kind === 'value' && got[0].value.toString(), 'B-carrier');
      } finally {
        ws.close();
      }
    }
    // A header token with no subprotocol offered: none is selected.
    const plain = await rawUpgrade(h.gw.port, '/v1/ws', bearer(KEY_B.key));
    assert.equal(plain.status, 101);
    assert.equal(plain.headers['sec-websocket-protocol'], undefined);
  });

  it('a bearer subprotocol without kvgate.v1 is 400, even with a valid token', async () => {
    for (const offer of [`kvgate.bearer.${KEY_B.key}`, `kvgate.bearer.${KEY_B.key}, other.v2`]) {
      const r = await rawUpgrade(h.gw.port, '/v1/ws', { 'sec-websocket-protocol': offer });
      assert.equal(r.status, 400, offer);
      assert.equal((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code, 'BAD_REQUEST');
      assert.ok(!r.text.includes(KEY_B.key));
    }
    await assert.rejects(openWs(h.wsUrl, [`kvgate.bearer.${KEY_B.key}`]), /400/);
  });

  it('?access_token= opens a connection of that principal', async () => {
    for (const [t, want] of [
      [KEY_A.key, 'A-carrier'],
      [signJwt(HS, bobClaims(), { kid: 'h1' }), 'B-carrier'],
    ]) {
      const ws = await openWs(`${h.wsUrl}?access_token=${encodeURIComponent(t)}`);
      try {
        const got = await wsExchange(ws, { id: 1, op: 'get', key: 'carrier' });
        assert.equal(got[0].kind === 'value' && got[0].value.toString(), want);
      } finally {
        ws.close();
      }
    }
  });
});

// ---- 4. expiry and renewal ----

describe('WebSocket credentials expire: 4001 AUTH_EXPIRED, unless renewed with auth', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ security: mainSecurity() });
  });
  after(() => h.stop());

  it('closes at exp (not before), keeps a renewed connection past it, refuses another principal', async () => {
    // exp 2 to 3 s ahead (whole seconds), no clock skew configured.
    const exp = Math.ceil(Date.now() / 1000) + 2;
    const expMs = exp * 1000;
    const short = signJwt(HS, bobClaims({ exp }), { kid: 'h1' });
    const doomed = await KvWsClient.connect(h.wsUrl, { token: short });
    const renewed = await KvWsClient.connect(h.wsUrl, { token: short });
    let closedAt = 0;
    const doomedClosed = doomed.closed.then((c) => {
      closedAt = Date.now();
      return c;
    });
    await renewed.set('exp:k', 'before');
    await renewed.auth(signJwt(HS, bobClaims({ exp: exp + 120 }), { kid: 'h1' }));

    // Another principal (alice of tenant B), and bob under another namespace: FORBIDDEN, nothing changes.
    await rejectsWith(renewed.auth(signJwt(HS, bobClaims({ sub: 'alice' }), { kid: 'h1' })), 'FORBIDDEN', 'alice');
    await rejectsWith(renewed.auth(KEY_B.key), 'FORBIDDEN', "tenant B's API key is another principal");
    await rejectsWith(
      renewed.auth(signJwt(HS, bobClaims({ kvgate_ns: 'tenantA:', kvgate_tenant: 'A' }), { kid: 'h1' })),
      'FORBIDDEN',
      "bob in A's namespace",
    );
    await rejectsWith(renewed.auth('garbage'), 'UNAUTHORIZED', 'garbage');
    await rejectsWith(
      renewed.auth(signJwt(HS, bobClaims({ exp: nowSeconds() - 1 }), { kid: 'h1' })),
      'UNAUTHORIZED',
      'expired',
    );
    assert.deepEqual(await renewed.get('exp:k'), { hit: true, value: Buffer.from('before'), flags: 0 });

    const c = await doomedClosed;
    assert.deepEqual(c, { code: 4001, reason: 'AUTH_EXPIRED' });
    assert.ok(closedAt >= expMs, `closed ${expMs - closedAt} ms before exp`);
    assert.ok(closedAt < expMs + 1000, `closed ${closedAt - expMs} ms after exp`);

    // Past the first exp the renewed connection works, in B's namespace; the short token opens nothing now.
    assert.ok(Date.now() >= expMs);
    await renewed.set('exp:k', 'after');
    assert.deepEqual(await inFleet(h, 'tenantB:exp:k'), ['after']);
    const again = await rawUpgrade(h.gw.port, '/v1/ws', bearer(short));
    assert.equal(again.status, 401);
    assert.match(JSON.parse(again.body.toString()).error.message, /expired/);
    await renewed.close();
  });
});

// ---- 5. admin role ----

describe('the admin listener wants the admin role', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ security: mainSecurity() });
  });
  after(() => h.stop());

  it('/metrics, /debug/stats and /admin/reload: 401 without credential, 403 without admin, 200 with it', async () => {
    const admin = `http://127.0.0.1:${h.gw.adminPort}`;
    const adminJwt = signJwt(RS, bobClaims({ sub: 'root', kvgate_admin: true }), { kid: 'r1' });
    for (const path of ['/metrics', '/debug/stats']) {
      const none = await fetch(admin + path);
      assert.equal(none.status, 401, path);
      assert.match(String(none.headers.get('www-authenticate')), /^Bearer /);
      assert.equal((await errorOf(none)).code, 'UNAUTHORIZED');
      assert.equal((await fetch(admin + path, { headers: bearer('garbage') })).status, 401);
      const tenant = await fetch(admin + path, { headers: bearer(KEY_B.key) });
      assert.equal(tenant.status, 403, path);
      assert.equal((await errorOf(tenant)).code, 'FORBIDDEN');
      assert.equal(
        (await fetch(admin + path, { headers: bearer(signJwt(HS, bobClaims(), { kid: 'h1' })) })).status,
        403,
      );
      const ok = await fetch(admin + path, { headers: bearer(KEY_ADMIN.key) });
      assert.equal(ok.status, 200, path);
      assert.ok((await ok.text()).length > 0);
      assert.equal((await fetch(admin + path, { headers: bearer(adminJwt) })).status, 200, `${path} admin JWT`);
    }
    assert.equal((await fetch(`${admin}/admin/reload`, { method: 'POST' })).status, 401);
    assert.equal((await fetch(`${admin}/admin/reload`, { method: 'POST', headers: bearer(KEY_A.key) })).status, 403);
    // Past the role check: this in-process gateway has no file to reload (409), which is not a refusal.
    const reload = await fetch(`${admin}/admin/reload`, { method: 'POST', headers: bearer(KEY_ADMIN.key) });
    assert.equal(reload.status, 409);
    const ready = await fetch(`${admin}/readyz`);
    assert.equal(ready.status, 200, '/readyz stays open');
    assert.equal(((await ready.json()) as { ready: boolean }).ready, true);
  });
});

// ---- 6. rate and connection limits ----

/** Within ±fraction of expected. */
function within(actual: number, expected: number, fraction: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= expected * fraction,
    `${what}: ${actual.toFixed(1)} is not within ${fraction * 100}% of ${expected.toFixed(1)}`,
  );
}

/**
 * Runs `workers` loops of `op` for `ms` (as fast as each answer comes back) and counts what passed:
 * `op` returns the units admitted (0 when it was refused RATE_LIMITED).
 */
async function drive(
  ms: number,
  workers: number,
  op: (w: number) => Promise<number>,
): Promise<{ admitted: number[]; refused: number; seconds: number }> {
  const admitted = new Array<number>(workers).fill(0);
  let refused = 0;
  const t0 = performance.now();
  const end = t0 + ms;
  await Promise.all(
    admitted.map(async (_, w) => {
      while (performance.now() < end) {
        const n = await op(w);
        if (n > 0) admitted[w] += n;
        else refused++;
      }
    }),
  );
  return { admitted, refused, seconds: (performance.now() - t0) / 1000 };
}

const sum = (xs: number[]): number => xs.reduce((s, x) => s + x, 0);

describe('rate limits hold the configured rate within 10% on a real clock', () => {
  let h: Harness;
  const OPS = apiKey('r-ops', { namespace: 'ops:', tenant: 't-ops', perms: 'all' });
  const OPS2 = apiKey('r-ops2', { namespace: 'ops:', tenant: 't-ops', perms: 'all' });
  const BYTES = apiKey('r-bytes', { namespace: 'bytes:', tenant: 't-bytes', perms: 'all' });
  const W1 = apiKey('r-w1', { namespace: 'w:', tenant: 't-write', perms: 'all' });
  const W2 = apiKey('r-w2', { namespace: 'w:', tenant: 't-write', perms: 'all' });
  const FREE = apiKey('r-free', { namespace: 'free:', tenant: 't-free', perms: 'all' });
  const SLOW = apiKey('r-slow', { namespace: 'slow:', tenant: 't-unnamed', perms: 'all' });
  // A second of burst: the gateway shares this process with the client, and a stall of both longer
  // than the burst (a loaded machine) would lose the tokens that came in meanwhile.
  const BURST = 1;
  const rates = {
    't-ops': { opsPerSecond: 200, burstSeconds: BURST },
    't-bytes': { bytesPerSecond: 200_000, burstSeconds: BURST },
    't-write': { writeBytesPerSecond: 100_000, burstSeconds: BURST },
    't-free': {},
  };
  before(async () => {
    h = await startHarness(
      {
        security: {
          auth: { mode: 'required', apiKeys: [OPS, OPS2, BYTES, W1, W2, FREE, SLOW].map((k) => k.entry) },
          limits: { default: { opsPerSecond: 1 }, tenants: rates },
        },
      },
      2,
    );
    await new KvHttpClient(h.base, { token: FREE.key }).set('seed', 'x');
  });
  after(() => h.stop());

  it('opsPerSecond 200 (WebSocket gets, driven flat out for 3 s): admitted - burst = 200/s ± 10%', async () => {
    const getter = (ws: KvWsClient) => async (): Promise<number> => {
      try {
        await ws.get('k');
        return 1;
      } catch (e) {
        if (e instanceof KvError && e.code === 'RATE_LIMITED') return 0;
        throw e;
      }
    };
    // Warm the paths up first with another principal (its own bucket, full again a second later): a cold
    // start drains OPS's burst slowly, and the tokens that come in while its bucket is still full are lost.
    const warm = await KvWsClient.connect(h.wsUrl, { token: OPS2.key });
    await drive(300, 16, getter(warm));
    await warm.close();
    const ws = await KvWsClient.connect(h.wsUrl, { token: OPS.key });
    try {
      const r = await drive(3000, 16, getter(ws));
      within((sum(r.admitted) - 200 * BURST) / r.seconds, 200, 0.1, 'ops/s');
      assert.ok(r.refused > sum(r.admitted), `driven well past the rate (${r.refused} refused)`);
    } finally {
      await ws.close();
    }
  });

  it('bytesPerSecond 200 kB/s (WebSocket gets of 2 kB values, answers charged after): ±10%', async () => {
    const value = Buffer.alloc(2000, 0x61);
    // The seed write costs 2 kB of the 200 kB burst: well under 1% of what the drive admits.
    await new KvHttpClient(h.base, { token: BYTES.key }).set('big', value);
    const ws = await KvWsClient.connect(h.wsUrl, { token: BYTES.key });
    // A get is charged its request map (as sent; ids of this run take 2 or 3 bytes) and, once answered,
    // its value. Four in flight: the debt charged after the fact overshoots by at most 4 values (8 kB).
    const perGet = encodeRequest({ id: 1000, op: 'get', key: 'big' }).length + value.length;
    try {
      const r = await drive(3000, 4, async () => {
        try {
          const got = await ws.get('big');
          assert.equal(got.hit && got.value.length, value.length);
          return perGet;
        } catch (e) {
          if (e instanceof KvError && e.code === 'RATE_LIMITED') return 0;
          throw e;
        }
      });
      within((sum(r.admitted) - rates['t-bytes'].bytesPerSecond * BURST) / r.seconds, 200_000, 0.1, 'bytes/s');
      assert.ok(r.refused > 0);
    } finally {
      await ws.close();
    }
  });

  it('writeBytesPerSecond 100 kB/s is one cap shared by two principals of the tenant: ±10%', async () => {
    const clients = await Promise.all([W1, W2].map((k) => KvWsClient.connect(h.wsUrl, { token: k.key })));
    const value = Buffer.alloc(1000, 0x62);
    try {
      const r = await drive(3000, 16, async (w) => {
        try {
          await clients[w % 2].set(`v${w}`, value);
          return value.length;
        } catch (e) {
          if (e instanceof KvError && e.code === 'RATE_LIMITED') return 0;
          throw e;
        }
      });
      const burst = 100_000 * BURST;
      const each = [0, 1].map((p) => sum(r.admitted.filter((_, w) => w % 2 === p)));
      // Had each principal its own cap, the two together would write twice this.
      within((sum(each) - burst) / r.seconds, 100_000, 0.1, 'tenant write bytes/s');
      assert.ok(each[0] > 0 && each[1] > 0, `both wrote: ${each.join(', ')}`);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('429 carries Retry-After >= 1; a bulk over the rate is refused item by item; others go on', async () => {
    // OPS2 has its own 200-op burst: a 400-key bulk spends it and the rest are RATE_LIMITED.
    const c = new KvHttpClient(h.base, { token: OPS2.key });
    const keys = Array.from({ length: 400 }, (_, i) => `b${i}`);
    const codes = (await c.mget(keys)).map(codeOf);
    const ok = codes.filter((x) => x === 'ok').length;
    assert.ok(ok >= 200 && ok <= 210, `${ok} admitted of 400 against a burst of 200`);
    assert.equal(codes.filter((x) => x === 'RATE_LIMITED').length, 400 - ok);
    // A tenant no spec names has the defaults (1 op/s, a burst of 1): its second GET is 429.
    const first = await fetch(`${h.base}/v1/kv/b0`, { headers: bearer(SLOW.key) });
    assert.equal(first.status, 404);
    const res = await fetch(`${h.base}/v1/kv/b0`, { headers: bearer(SLOW.key) });
    assert.equal(res.status, 429);
    const retry = Number(res.headers.get('retry-after'));
    assert.ok(Number.isInteger(retry) && retry >= 1, `Retry-After ${res.headers.get('retry-after')}`);
    const e = await errorOf(res);
    assert.equal(e.code, 'RATE_LIMITED');
    assert.equal(e.retry, 'after');
    // The default spec (1 op/s) does not apply to t-free, which has a spec with no limit.
    const free = new KvHttpClient(h.base, { token: FREE.key });
    for (let i = 0; i < 50; i++)
      assert.deepEqual(await free.get('seed'), { hit: true, value: Buffer.from('x'), flags: 0 });
  });
});

describe('connection limits at the WebSocket upgrade', () => {
  const K1 = apiKey('c-one', { namespace: 'c:', tenant: 'c', perms: 'all' });
  const K2 = apiKey('c-two', { namespace: 'c:', tenant: 'c', perms: 'all' });
  const security = (connections: Record<string, number>): Record<string, unknown> => ({
    auth: { mode: 'required', apiKeys: [K1.entry, K2.entry] },
    limits: { connections },
  });
  const refusedWith429 = async (h: Harness, token: string): Promise<number> => {
    const r = await rawUpgrade(h.gw.port, '/v1/ws', bearer(token));
    if (r.status === 101) return 101;
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers['retry-after']) >= 1, `Retry-After ${r.headers['retry-after']}`);
    assert.equal((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code, 'RATE_LIMITED');
    return 429;
  };

  it('maxConnectionsPerAddress 3: the 4th is 429; another address is not counted; closing frees a slot', async () => {
    const h = await startHarness({ security: security({ maxConnectionsPerAddress: 3 }) }, 1);
    const open: KvWsClient[] = [];
    try {
      for (let i = 0; i < 3; i++) open.push(await KvWsClient.connect(h.wsUrl, { token: i % 2 ? K1.key : K2.key }));
      assert.equal(await refusedWith429(h, K1.key), 429);
      assert.equal(await refusedWith429(h, K2.key), 429, 'counted by address, whatever the credential');
      const other = await KvWsClient.connect(h.wsUrl, { token: K1.key, ws: { localAddress: '127.0.0.2' } });
      open.push(other);
      await other.set('from-2', 'ok');
      await open[0].close();
      // The server sees the close a moment after the client: until then an attempt is refused (and takes nothing).
      await until(async () => (await refusedWith429(h, K1.key)) === 101, 5000, 'a freed slot');
      for (const c of open.slice(1)) assert.equal(await c.get('from-2').then((r) => r.hit), true);
    } finally {
      await Promise.all(open.map((c) => c.terminate()));
      await h.stop();
    }
  });

  it('maxConnectionsPerPrincipal 2: the 3rd of one credential is 429, another credential opens', async () => {
    const h = await startHarness({ security: security({ maxConnectionsPerPrincipal: 2 }) }, 1);
    const open: KvWsClient[] = [];
    try {
      open.push(await KvWsClient.connect(h.wsUrl, { token: K1.key }));
      open.push(await KvWsClient.connect(h.wsUrl, { token: K1.key }));
      assert.equal(await refusedWith429(h, K1.key), 429);
      // From another address too: the count is the principal's.
      await assert.rejects(KvWsClient.connect(h.wsUrl, { token: K1.key, ws: { localAddress: '127.0.0.3' } }), /429/);
      open.push(await KvWsClient.connect(h.wsUrl, { token: K2.key }));
      await open[0].close();
      await until(async () => (await refusedWith429(h, K1.key)) === 101, 5000, "a freed slot of K1's");
    } finally {
      await Promise.all(open.map((c) => c.terminate()));
      await h.stop();
    }
  });

  it('newConnectionsPerSecondPerAddress 2 (burst 5): the 6th at once is 429, one more passes ~500 ms later', async () => {
    const h = await startHarness(
      { security: security({ newConnectionsPerSecondPerAddress: 2, newConnectionsBurst: 5 }) },
      1,
    );
    try {
      const t0 = performance.now();
      for (let i = 0; i < 5; i++) await (await KvWsClient.connect(h.wsUrl, { token: K1.key })).close();
      assert.equal(await refusedWith429(h, K2.key), 429, 'the sixth within the burst time');
      const refusedAt = performance.now();
      // Waiting for the next token (one each 500 ms): refused attempts take none.
      await until(async () => (await refusedWith429(h, K1.key)) === 101, 5000, 'the next token');
      const since = performance.now() - t0;
      const waited = performance.now() - refusedAt;
      assert.ok(since >= 480, `a token came ${since.toFixed(0)} ms after the first connect, not ~500`);
      assert.ok(waited < 1500, `waited ${waited.toFixed(0)} ms for one token at 2/s`);
      const other = await KvWsClient.connect(h.wsUrl, { token: K1.key, ws: { localAddress: '127.0.0.4' } });
      await other.close();
    } finally {
      await h.stop();
    }
  });

  it('attempts with bad credentials count against newConnectionsPerSecondPerAddress (no signature-check flood)', async () => {
    const h = await startHarness(
      { security: security({ newConnectionsPerSecondPerAddress: 1, newConnectionsBurst: 3 }) },
      1,
    );
    try {
      for (let i = 0; i < 3; i++) {
        const r = await rawUpgrade(h.gw.port, '/v1/ws', bearer(`not-a-key-${i}-0123456789`));
        assert.equal(r.status, 401, 'within the burst, a bad credential is checked and refused');
      }
      assert.equal(await refusedWith429(h, K1.key), 429, 'the burst was spent by the bad attempts');
      const bad = await rawUpgrade(h.gw.port, '/v1/ws', bearer('not-a-key-x-0123456789'));
      assert.equal(bad.status, 429, 'past the rate a bad credential is not even checked');
    } finally {
      await h.stop();
    }
  });
});

// ---- 7. nothing secret in logs, metrics or stats ----

describe('tokens, API keys and secrets never reach the log, /metrics or /debug/stats', () => {
  let fleet: LocalFleet;
  let gw: GatewayProcess;
  const secret = hmacSecret('logcheck');
  const signer: SignKey = { alg: 'HS256', secret };
  const ALICE = apiKey('log-alice', { namespace: 'la:', tenant: 'L', perms: 'all' });
  const LIMITED = apiKey('log-limited', { namespace: 'll:', tenant: 'slow', perms: 'all' });
  const ADMIN = apiKey('log-admin', { namespace: '', tenant: 'ops', perms: 'none', admin: true });
  const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    sub: 'logger',
    kvgate_ns: 'lj:',
    kvgate_perms: 'all',
    exp: nowSeconds() + 600,
    ...extra,
  });
  const goodJwt = signJwt(signer, claims(), { kid: 'k1' });
  const otherJwt = signJwt(signer, claims({ sub: 'someone-else' }), { kid: 'k1' });
  const expiredJwt = signJwt(signer, claims({ exp: nowSeconds() - 100 }), { kid: 'k1' });
  const forgedJwt = signJwt({ alg: 'HS256', secret: hmacSecret('forger') }, claims(), { kid: 'k1' });
  const noneJwt = signJwt({ alg: 'none' }, claims());
  const garbage = `garbage-${ALICE.key.slice(-12)}-token`;
  const wrongKey = `kvg_wrong_${ALICE.key.slice(-20)}`;
  /** Everything that must never show: whole tokens, their signatures, keys, the secret. */
  const secrets = [ALICE.key, LIMITED.key, ADMIN.key, secret, garbage, wrongKey];
  for (const t of [goodJwt, otherJwt, expiredJwt, forgedJwt, noneJwt]) {
    secrets.push(t);
    const sig = t.split('.')[2];
    if (sig.length > 0) secrets.push(sig);
  }
  const leaks = (text: string): string[] => secrets.filter((s) => text.includes(s));

  before(async () => {
    fleet = await LocalFleet.start({ count: 2, memoryMb: 16, itemSizeMb: 2 });
    gw = await spawnGateway({
      servers: fleet.servers(),
      log: { level: 'trace' },
      debugStats: true,
      security: {
        auth: {
          mode: 'required',
          apiKeys: [ALICE.entry, LIMITED.entry, ADMIN.entry],
          jwt: { keys: [{ kid: 'k1', alg: 'HS256', secret }], clockSkewSeconds: 0 },
        },
        limits: { tenants: { slow: { opsPerSecond: 2, burstSeconds: 1 } } },
      },
    });
  });
  after(async () => {
    await gw?.kill();
    await fleet?.stop();
  });

  it('after every kind of success and failure, the log and the admin pages hold none of them', async () => {
    const base = `http://127.0.0.1:${gw.port}`;
    const wsUrl = `ws://127.0.0.1:${gw.port}/v1/ws`;
    const admin = `http://127.0.0.1:${gw.adminPort}`;
    const all = [
      ALICE.key,
      LIMITED.key,
      ADMIN.key,
      goodJwt,
      otherJwt,
      expiredJwt,
      forgedJwt,
      noneJwt,
      garbage,
      wrongKey,
    ];
    for (const t of all) {
      // Every HTTP route, each token as a Bearer header.
      await fetch(`${base}/v1/kv/k`, { method: 'PUT', headers: bearer(t), body: 'v' }).then((r) => r.arrayBuffer());
      await fetch(`${base}/v1/kv/k`, { headers: bearer(t) }).then((r) => r.arrayBuffer());
      await fetch(`${base}/v1/kv/k`, { method: 'DELETE', headers: bearer(t) }).then((r) => r.arrayBuffer());
      for (const op of ['mget', 'mset'])
        await fetch(`${base}/v1/${op}`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson', ...bearer(t) },
          body: op === 'mget' ? '"k"\n' : '{"key":"k","value":"v"}\n',
        }).then((r) => r.arrayBuffer());
      // Every WebSocket carrier; the subprotocol without kvgate.v1 too (400).
      for (const [path, headers] of [
        ['/v1/ws', bearer(t)],
        ['/v1/ws', { 'sec-websocket-protocol': `kvgate.v1, kvgate.bearer.${t}` }],
        ['/v1/ws', { 'sec-websocket-protocol': `kvgate.bearer.${t}` }],
        [`/v1/ws?access_token=${t}`, {}],
      ] as const)
        await rawUpgrade(gw.port, path, headers);
      for (const path of ['/metrics', '/debug/stats'])
        await fetch(admin + path, { headers: bearer(t) }).then((r) => r.arrayBuffer());
    }
    // The auth op, refused (garbage, expired, another principal) and accepted.
    const ws = await KvWsClient.connect(wsUrl, { token: goodJwt });
    for (const t of [garbage, expiredJwt, otherJwt, ALICE.key])
      await assert.rejects(ws.auth(t), (e: unknown) => e instanceof KvError);
    await ws.auth(goodJwt);
    await ws.set('k', 'v');
    await ws.close();
    // Rate limited on both fronts.
    const slow = await KvWsClient.connect(wsUrl, { token: LIMITED.key });
    let limited = 0;
    for (let i = 0; i < 10; i++)
      await slow.get('k').catch((e: KvError) => (limited += e.code === 'RATE_LIMITED' ? 1 : 0));
    await slow.close();
    assert.ok(limited > 0, 'the limit was reached');
    assert.equal((await fetch(`${base}/v1/kv/k`, { headers: bearer(LIMITED.key) })).status, 429);
    await fetch(`${admin}/admin/reload`, { method: 'POST', headers: bearer(ADMIN.key) }).then((r) => r.arrayBuffer());

    const metrics = await fetch(`${admin}/metrics`, { headers: bearer(ADMIN.key) });
    assert.equal(metrics.status, 200);
    const metricsText = await metrics.text();
    const stats = await fetch(`${admin}/debug/stats`, { headers: bearer(ADMIN.key) });
    assert.equal(stats.status, 200);
    const statsText = await stats.text();
    // The pages and the log are real: the refusals were counted, the log has its lines.
    assert.match(metricsText, /kvgate_requests_total\{[^}]*UNAUTHORIZED[^}]*\} [1-9]/);
    assert.ok(statsText.startsWith('{'));
    const log = gw.output();
    assert.match(log, /"event":"listening"/);
    assert.match(log, /reload/);
    assert.deepEqual(leaks(metricsText), [], 'in /metrics');
    assert.deepEqual(leaks(statsText), [], 'in /debug/stats');
    assert.deepEqual(leaks(log), [], 'in the log');
    // The search itself finds a token where there is one.
    assert.deepEqual(leaks(`x${goodJwt}x`), [goodJwt, goodJwt.split('.')[2]]);
  });
});

// ---- 8. authentication off on a public address ----

describe('authentication off is refused on a non-loopback address unless insecurePublic', () => {
  const off = { security: { auth: { mode: 'off' } } };
  const problemPaths = (f: () => unknown): string[] => {
    try {
      f();
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.map((p) => p.path);
      throw e;
    }
    return [];
  };

  it('validateConfig: public host or admin host with mode off fails; loopback, insecurePublic or a key pass', () => {
    const check = (over: Record<string, unknown>): string[] =>
      problemPaths(() => validateConfig(mergeConfig(defaultConfig(), over)));
    assert.deepEqual(check({ ...off, host: '0.0.0.0' }), ['security.auth.mode']);
    assert.deepEqual(check({ ...off, host: '192.168.1.10' }), ['security.auth.mode']);
    assert.deepEqual(check({ ...off, admin: { host: '0.0.0.0' } }), ['security.auth.mode'], 'the admin listener too');
    assert.deepEqual(check({ ...off, host: '127.0.0.1' }), []);
    assert.deepEqual(check({ ...off, host: 'localhost' }), []);
    assert.deepEqual(check({ ...off, host: '::1' }), []);
    assert.deepEqual(check({ host: '0.0.0.0', security: { insecurePublic: true, auth: { mode: 'off' } } }), []);
    const key = apiKey('pub', { namespace: '', perms: 'read' });
    assert.deepEqual(check({ host: '0.0.0.0', security: { auth: { mode: 'required', apiKeys: [key.entry] } } }), []);
    assert.deepEqual(
      check({ host: '0.0.0.0', security: { auth: { mode: 'required' } } }),
      ['security.auth'],
      'required with nothing to authenticate is refused too',
    );
  });

  it('loadArgs: --insecure-public sets security.insecurePublic and lets mode off listen publicly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvgate-sec-'));
    try {
      const file = join(dir, 'off.json');
      writeFileSync(file, JSON.stringify(off));
      assert.throws(
        () => loadArgs(['--config', file, '--host', '0.0.0.0']),
        (e: unknown) => e instanceof ConfigError && /--insecure-public/.test(e.message),
      );
      const { config } = loadArgs(['--config', file, '--host', '0.0.0.0', '--insecure-public']);
      assert.equal(config.security.insecurePublic, true);
      assert.equal(config.security.auth.mode, 'off');
      assert.equal(config.host, '0.0.0.0');
      assert.equal(loadArgs(['--config', file]).config.security.insecurePublic, false, 'off without the flag');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
