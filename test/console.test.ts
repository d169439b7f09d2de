/**
 * The console on the admin listener (src/ops/console.ts, src/ops/console/; docs/OPERATIONS.md, "The
 * console"), against real gateways and memcached fleets:
 *  - the page and its files: served on the admin listener only, with a strict CSP, no inline script,
 *    X-Frame-Options DENY, no-store;
 *  - /console/data moves by exactly the traffic the test makes (client keys, keys sent, items, flushes,
 *    round trips, connections);
 *  - the key inspector reads, writes and deletes stored keys through the router, and the owner it names
 *    (pool, shard, ketama point) is the memcached server that really holds the key, read there directly;
 *    a route prefix names its pool and why;
 *  - with auth on: 401 without a credential, 403 with a client's, 200 with an admin's, on every data route;
 *  - (a supervisor of workers: test/console-workers.test.ts);
 *  - in headless Chromium, while WebSocket clients load the gateway: the page asks for a token (401), then
 *    with one draws every chart, lists every shard, and the inspector finds a key's value and owner; no CSP
 *    violation; a screenshot is saved (dist/test-artifacts/console.png; docs/console.png when
 *    KVGATE_DOCS_SCREENSHOT=1, since a fresh one differs on every run).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startHarness, type Harness } from './helpers/harness';
import { holders } from './helpers/holders';
import { rawGet, rawSet } from './helpers/mc-raw';
import { apiKey } from './helpers/tokens';
import { adminRoutes, q } from './helpers/console-routes';
import { browserSkip, startBrowser, type BrowserKit } from './helpers/browser';
import { LocalFleet } from '../src/fleet/local-fleet';
import { KvHttpClient, KvWsClient } from './client';

const ROOT = join(__dirname, '..', '..');

interface Hist {
  bounds: number[];
  counts: number[];
  sum: number;
  count: number;
}
interface ShardData {
  shard: string;
  up: boolean;
  ejected: boolean;
  keys: number;
  batches: number;
  flushes: number;
  reconnects: number;
  rtt: Hist;
}
interface PoolData {
  name: string;
  backend: string;
  prefixes: string[];
  clientKeys: number;
  flushKeys: Hist;
  flushHold: Hist;
  ring: { server: string; share: number; points: number }[] | null;
  shards: ShardData[];
}
interface Data {
  at: number;
  defaultPool: string;
  items: Record<string, Record<string, number>>;
  connections: { ws: number; http: number };
  buffered: { used: number; limit: number };
  memory: { rss: number; heapUsed: number };
  pools: PoolData[];
}
interface Placement {
  key: string;
  pool: string;
  route: { prefix: string | null; why: string };
  shard: { index: number; label: string; up: boolean };
  ketama: {
    hash: string;
    keyHash: number;
    pointIndex: number;
    point: number;
    points: number;
    ringServer: string;
    shard: number;
  } | null;
}

const adminUrl = (h: { gw: { adminPort: number } }, path: string): string =>
  `http://127.0.0.1:${h.gw.adminPort}${path}`;
const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });

async function getJson<T>(url: string, init: RequestInit = {}): Promise<{ status: number; body: T; res: Response }> {
  const res = await fetch(url, init);
  return { status: res.status, body: (await res.json()) as T, res };
}

const data = async (h: Harness): Promise<Data> => {
  const r = await getJson<Data>(adminUrl(h, '/console/data'));
  assert.equal(r.status, 200);
  return r.body;
};

const shardsOf = (d: Data): ShardData[] => d.pools.flatMap((p) => p.shards);
const total = (d: Data, f: (s: ShardData) => number): number => shardsOf(d).reduce((n, s) => n + f(s), 0);

describe('console: the page, /console/data and the key inspector (auth off)', () => {
  let h: Harness;
  let sessions: LocalFleet;
  const p = `console:${randomBytes(3).toString('hex')}:`;

  before(async () => {
    sessions = await LocalFleet.start({ count: 2 });
    try {
      h = await startHarness(
        {
          pools: {
            sessions: {
              backend: 'memcached',
              servers: sessions.servers().map((s) => `${s.host}:${s.port}`),
              hash: 'fnv1a_64',
            },
          },
          routes: [{ prefix: 'sess:', pool: 'sessions' }],
        },
        3,
      );
    } catch (e) {
      await sessions.stop();
      throw e;
    }
  });
  after(async () => {
    await h?.stop();
    await sessions?.stop();
  });

  it('serves the page on the admin listener only: strict CSP, no inline script, DENY framing, no-store', async () => {
    const page = await fetch(adminUrl(h, '/console'));
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    const csp = page.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(page.headers.get('x-frame-options'), 'DENY');
    assert.equal(page.headers.get('cache-control'), 'no-store');
    const html = await page.text();
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    assert.ok(scripts.length >= 1);
    for (const s of scripts) {
      assert.match(s[1], /\bsrc="\/console\/console\.js"/, 'every script is a file');
      assert.equal(s[2].trim(), '', 'no inline script');
    }
    for (const [path, type] of [
      ['/console/console.js', /^text\/javascript/],
      ['/console/console.css', /^text\/css/],
    ] as const) {
      const r = await fetch(adminUrl(h, path));
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-type') ?? '', type);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
      assert.ok((await r.text()).length > 100);
    }
    // The public port has none of it.
    for (const path of ['/console', '/console/data', `/console/key?${q('x')}`])
      assert.equal((await fetch(`${h.base}${path}`)).status, 404, `public ${path}`);
  });

  it('/console/data moves by exactly the traffic made: N gets, N keys sent, N misses, flushes and round trips', async () => {
    const before = await data(h);
    const r = await fetch(adminUrl(h, '/console/data'));
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
    await r.arrayBuffer();
    assert.deepEqual(
      before.pools.map((x) => x.name),
      ['default', 'sessions'],
    );
    const main = before.pools[0];
    assert.deepEqual(
      main.shards.map((s) => s.shard),
      h.fleet.members.map((m) => `127.0.0.1:${m.port}`),
    );
    assert.deepEqual(before.pools[1].prefixes, ['sess:']);
    assert.equal(main.ring?.length, 3);
    assert.ok(Math.abs(main.ring!.reduce((n, x) => n + x.share, 0) - 1) < 1e-9, 'ring shares add up to 1');
    assert.ok(before.memory.rss > 0 && before.memory.heapUsed > 0);

    const N = 40;
    for (let i = 0; i < N; i++) assert.equal((await h.http.get(`${p}absent:${i}`)).hit, false);
    const after = await data(h);
    const a = after.pools[0],
      b = before.pools[0];
    assert.equal(a.clientKeys - b.clientKeys, N, 'client keys into the default pool');
    assert.equal(total(after, (s) => s.keys) - total(before, (s) => s.keys), N, 'keys sent to the shards');
    assert.equal((after.items.get?.miss ?? 0) - (before.items.get?.miss ?? 0), N, 'get misses');
    assert.equal(a.flushKeys.sum - b.flushKeys.sum, N, 'ops counted in the flushes');
    // One request at a time: each get is a flush of its own, and a batch with one round trip.
    assert.equal(a.flushKeys.count - b.flushKeys.count, N);
    assert.equal(a.flushHold.count - b.flushHold.count, N);
    const batches = total(after, (s) => s.batches) - total(before, (s) => s.batches);
    assert.equal(batches, N);
    assert.equal(total(after, (s) => s.rtt.count) - total(before, (s) => s.rtt.count), batches);
    assert.equal(after.pools[1].clientKeys - before.pools[1].clientKeys, 0, 'nothing went to the sessions pool');

    const ws1 = await h.ws();
    const ws2 = await h.ws();
    const open = await data(h);
    assert.equal(open.connections.ws - after.connections.ws, 2);
    ws1.terminate();
    ws2.terminate();
  });

  it('the inspector writes, reads and deletes a stored key; the owner it names is the server that holds it', async () => {
    for (let i = 0; i < 6; i++) {
      const key = `${p}insp:${i}`;
      const value = `value ${i} ✓`;
      const put = await getJson<Placement & { stored: boolean; bytes: number }>(
        adminUrl(h, `/console/key?${q(key)}&ttl=60&flags=${i}`),
        { method: 'PUT', body: value },
      );
      assert.equal(put.status, 200);
      assert.equal(put.res.headers.get('cache-control'), 'no-store');
      assert.equal(put.body.stored, true);
      assert.equal(put.body.bytes, Buffer.byteLength(value));
      const held = await holders(h.fleet, key);
      assert.equal(held.length, 1, `${key} is on one server`);
      assert.equal(held[0].value, value);
      const owner = h.fleet.members[held[0].member];
      assert.equal(put.body.pool, 'default');
      assert.equal(put.body.route.prefix, null);
      assert.match(put.body.route.why, /default pool/);
      assert.equal(put.body.shard.index, held[0].member);
      assert.equal(put.body.shard.label, `127.0.0.1:${owner.port}`);
      const k = put.body.ketama!;
      assert.equal(k.hash, h.config.hash);
      assert.equal(k.ringServer, `127.0.0.1:${owner.port}`);
      assert.equal(k.points, 3 * 160);
      assert.ok(k.point >= k.keyHash || k.pointIndex === 0, 'the first point at or after the hash, or the wrap');

      const got = await getJson<Placement & { found: boolean; value: string; encoding: string; flags: number }>(
        adminUrl(h, `/console/key?${q(key)}`),
      );
      assert.equal(got.status, 200);
      assert.deepEqual(
        { found: got.body.found, value: got.body.value, encoding: got.body.encoding, flags: got.body.flags },
        { found: true, value, encoding: 'utf8', flags: i },
      );
      assert.deepEqual(
        (await getJson<Placement>(adminUrl(h, `/console/placement?${q(key)}`))).body.shard,
        put.body.shard,
      );
      assert.equal((await h.http.get(key)).hit, true, 'the public API sees the same key');
    }

    // Bytes that are not UTF-8 come back as base64.
    const bin = `${p}bin`;
    const bytes = Buffer.from([0xff, 0x00, 0xfe, 0x0a]);
    const where = (await getJson<Placement>(adminUrl(h, `/console/placement?${q(bin)}`))).body;
    await rawSet(h.fleet.members[where.shard.index].port, bin, bytes, 9);
    const got = await getJson<{ found: boolean; value: string; encoding: string; flags: number; bytes: number }>(
      adminUrl(h, `/console/key?${q(bin)}`),
    );
    assert.deepEqual(got.body.found && [got.body.encoding, got.body.value, got.body.flags, got.body.bytes], [
      'base64',
      bytes.toString('base64'),
      9,
      4,
    ]);

    const key = `${p}insp:0`;
    const del = await getJson<{ deleted: boolean }>(adminUrl(h, `/console/key?${q(key)}`), { method: 'DELETE' });
    assert.equal(del.status, 200);
    assert.equal(del.body.deleted, true);
    assert.deepEqual(await holders(h.fleet, key), []);
    const again = await getJson<{ deleted: boolean }>(adminUrl(h, `/console/key?${q(key)}`), { method: 'DELETE' });
    assert.equal(again.body.deleted, false);
    assert.equal((await getJson<{ found: boolean }>(adminUrl(h, `/console/key?${q(key)}`))).body.found, false);

    // Refused as a client's item would be.
    const bad = await getJson<{ error: { code: string } }>(adminUrl(h, `/console/key?${q('has space')}`));
    assert.deepEqual([bad.status, bad.body.error.code], [400, 'BAD_KEY']);
    const none = await getJson<{ error: { code: string } }>(adminUrl(h, '/console/key'));
    assert.deepEqual([none.status, none.body.error.code], [400, 'BAD_REQUEST']);
    const ttl = await getJson<{ error: { code: string } }>(adminUrl(h, `/console/key?${q(key)}&ttl=-1`), {
      method: 'PUT',
      body: 'x',
    });
    assert.deepEqual([ttl.status, ttl.body.error.code], [400, 'BAD_TTL']);
    const big = await fetch(adminUrl(h, `/console/key?${q(key)}`), {
      method: 'PUT',
      body: Buffer.alloc(h.config.limits.maxValueBytes + 1),
    });
    assert.equal(big.status, 413);
    await big.arrayBuffer();
  });

  it('a key under a route prefix: its pool, the prefix that matched, and the server of that pool holding it', async () => {
    for (let i = 0; i < 4; i++) {
      const key = `sess:${p}${i}`;
      const put = await getJson<Placement>(adminUrl(h, `/console/key?${q(key)}`), { method: 'PUT', body: `s${i}` });
      assert.equal(put.status, 200);
      assert.equal(put.body.pool, 'sessions');
      assert.equal(put.body.route.prefix, 'sess:');
      assert.match(put.body.route.why, /"sess:"/);
      assert.equal(put.body.ketama?.hash, 'fnv1a_64', "the pool's own hash");
      const held = await holders(sessions, key);
      assert.equal(held.length, 1);
      assert.equal(put.body.shard.label, `127.0.0.1:${sessions.members[held[0].member].port}`);
      assert.deepEqual(await holders(h.fleet, key), [], 'never in the default pool');
      assert.equal((await rawGet(sessions.members[held[0].member].port, key))?.value.toString(), `s${i}`);
    }
  });
});

const ADMIN = apiKey('console-admin', { namespace: '', tenant: 'ops', perms: 'none', admin: true });
const TENANT = apiKey('console-tenant', { namespace: 'tenantA:', tenant: 'A', perms: 'all' });
const authOn = { security: { auth: { mode: 'required', apiKeys: [ADMIN.entry, TENANT.entry] } } };

describe('console: with auth on, the data routes want the admin role', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness(authOn, 2);
  });
  after(async () => {
    await h?.stop();
  });

  it('401 without a credential, 403 with a client key, 200 with the admin key; the page itself is open', async () => {
    const key = 'tenantA:auth';
    const routes = adminRoutes(key);
    for (const [method, path, body] of routes) {
      const what = `${method} ${path}`;
      const none = await fetch(adminUrl(h, path), { method, body });
      assert.equal(none.status, 401, what);
      assert.equal(none.headers.get('cache-control'), 'no-store', what);
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
      assert.equal(((await none.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
      assert.equal((await fetch(adminUrl(h, path), { method, body, headers: bearer('nope') })).status, 401, what);
      const tenant = await fetch(adminUrl(h, path), { method, body, headers: bearer(TENANT.key) });
      assert.equal(tenant.status, 403, what);
      assert.equal(((await tenant.json()) as { error: { code: string } }).error.code, 'FORBIDDEN');
      const ok = await fetch(adminUrl(h, path), { method, body, headers: bearer(ADMIN.key) });
      assert.equal(ok.status, 200, what);
      await ok.arrayBuffer();
    }
    // Nothing was written by the refused PUTs: the admin's PUT wrote it and the admin's DELETE removed it.
    assert.equal((await new KvHttpClient(h.base, { token: TENANT.key }).get('auth')).hit, false);
    for (const path of ['/console', '/console/console.js', '/console/console.css'])
      assert.equal((await fetch(adminUrl(h, path))).status, 200, path);
  });
});

const skip = browserSkip();

/** The page globals the waits below read (the project compiles without the DOM library). */
interface PageDom {
  document: {
    getElementById(id: string): { textContent: string | null } | null;
    querySelectorAll(sel: string): ArrayLike<{ dataset: Record<string, string | undefined> }>;
  };
}

describe('console: in headless Chromium under load', { skip }, () => {
  let kit: BrowserKit;
  let h: Harness;
  let running = true;
  let loads: Promise<number>[] = [];

  before(async () => {
    [kit, h] = await Promise.all([startBrowser(), startHarness(authOn, 3)]);
    const clients = await Promise.all(
      [0, 1, 2].map(() => KvWsClient.connect(h.wsUrl, { token: TENANT.key, batchSends: true })),
    );
    // Each client: a set and 20 gets (half of them of one hot key, coalesced) per round, until stopped.
    loads = clients.map(async (c, n) => {
      let ops = 0;
      try {
        for (let r = 0; running; r++) {
          await c.set(`load:${n}:${r % 50}`, `v${r}`);
          await Promise.all(Array.from({ length: 20 }, (_, i) => c.get(i % 2 === 0 ? 'load:hot' : `load:${n}:${i}`)));
          ops += 21;
        }
      } finally {
        c.terminate();
      }
      return ops;
    });
  });
  after(async () => {
    running = false;
    await Promise.allSettled(loads);
    await Promise.all([kit?.close(), h?.stop()]);
  });

  it('asks for a token, then draws every chart, lists every shard, and inspects a key; saves a screenshot', async () => {
    const tenant = new KvHttpClient(h.base, { token: TENANT.key });
    await tenant.set('inspect-me', 'hello from the console test');
    const stored = 'tenantA:inspect-me';
    const held = await holders(h.fleet, stored);
    assert.equal(held.length, 1);
    const ownerLabel = `127.0.0.1:${h.fleet.members[held[0].member].port}`;

    const context = await kit.browser.newContext({ viewport: { width: 1400, height: 1000 } });
    try {
      const page = await context.newPage();
      page.setDefaultTimeout(15_000);
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' && !/401|403/.test(m.text())) problems.push(m.text());
      });
      page.on('pageerror', (e) => problems.push(e.message));
      const sent: (string | undefined)[] = [];
      page.on('request', (r) => {
        if (r.url().includes('/console/data')) sent.push(r.headers().authorization);
      });

      const res = await page.goto(adminUrl(h, '/console?interval=400'));
      assert.equal(res?.status(), 200);
      // Without a token: the status says 401 and asks for one.
      await page.waitForFunction(() =>
        /401/.test((globalThis as unknown as PageDom).document.getElementById('status')?.textContent ?? ''),
      );
      assert.match((await page.textContent('#status')) ?? '', /admin token/);
      assert.equal(sent[0], undefined);

      await page.fill('#token', ADMIN.key);
      await page.click('#auth button[type=submit]');
      // Every chart has at least three steps of rates (four samples at 400 ms).
      await page.waitForFunction(
        () => {
          const charts = Array.from((globalThis as unknown as PageDom).document.querySelectorAll('.chart'));
          return charts.length === 9 && charts.every((c) => Number(c.dataset.steps ?? 0) >= 3);
        },
        undefined,
        { timeout: 20_000 },
      );
      assert.ok(sent.includes(`Bearer ${ADMIN.key}`), 'the token is sent as a Bearer credential');
      const charts = await page.$$eval('.chart', (cs) =>
        cs.map((c) => ({
          id: c.id,
          points: Number((c as unknown as { dataset: Record<string, string> }).dataset.points),
          lines: c.querySelectorAll('polyline').length,
          legend: c.querySelector('.legend')!.textContent,
        })),
      );
      for (const c of charts) {
        assert.ok(c.points >= 2, `${c.id} has data points (${c.points})`);
        assert.ok(c.lines >= 1, `${c.id} draws a line`);
      }
      const legend = (id: string): string => charts.find((c) => c.id === `chart-${id}`)!.legend ?? '';
      assert.match(legend('keys'), /client ops [1-9]/, 'keys per second under load');
      for (const label of h.fleet.members.map((m) => `127.0.0.1:${m.port}`)) {
        assert.ok(legend('rtt-p50').includes(label), `p50 of ${label}`);
        assert.ok(legend('rtt-p99').includes(label), `p99 of ${label}`);
      }
      assert.match(legend('connections'), /WebSocket 3(?!\d)/);

      const shards = await page.$$eval('#shards tbody tr', (rows) =>
        rows.map((r) => [
          (r as unknown as { dataset: Record<string, string> }).dataset.shard,
          r.children[2].textContent,
        ]),
      );
      assert.deepEqual(
        shards,
        h.fleet.members.map((m) => [`127.0.0.1:${m.port}`, 'up']),
      );
      const pools = await page.$$eval('#pools tbody tr', (rows) => rows.map((r) => r.children[2].textContent));
      assert.deepEqual(pools, ['up']);
      assert.equal(await page.locator('#spread tr').count(), 1 + 3, 'a spread row per server');

      await page.fill('#key', stored);
      await page.click('#get');
      await page.waitForSelector('dd[data-field=value]');
      assert.equal(await page.textContent('dd[data-field=value]'), 'hello from the console test');
      assert.match(
        (await page.textContent('dd[data-field=shard]')) ?? '',
        new RegExp(`^${ownerLabel} \\(#${held[0].member}, up\\)`),
      );
      assert.match((await page.textContent('dd[data-field="ring point"]')) ?? '', new RegExp(`→ ${ownerLabel}$`));
      assert.match((await page.textContent('dd[data-field=route]')) ?? '', /default pool/);
      assert.deepEqual(problems, [], 'no script error, no CSP violation');

      const dir = join(ROOT, 'dist', 'test-artifacts');
      mkdirSync(dir, { recursive: true });
      const shot = join(dir, 'console.png');
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`console screenshot: ${shot}`);
      if (process.env.KVGATE_DOCS_SCREENSHOT === '1') {
        await page.screenshot({ path: join(ROOT, 'docs', 'console.png'), fullPage: true });
        console.log(`console screenshot: ${join(ROOT, 'docs', 'console.png')}`);
      }
    } finally {
      await context.close();
    }
    running = false;
    const ops = await Promise.all(loads);
    assert.ok(
      ops.every((n) => n > 0),
      `every load client made requests (${ops.join(', ')})`,
    );
  });
});
