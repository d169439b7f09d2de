/**
 * The console of a supervisor of workers (src/cluster/supervisor.ts, src/ops/console-merge.ts;
 * docs/OPERATIONS.md, "The console"), as real processes on a real memcached fleet:
 *  - the page is served by the supervisor, with the same headers as a single gateway's;
 *  - /console/data is the sum of the workers: N sets over fresh connections (spread by the kernel over
 *    both workers) move the summed items by exactly N, and each shard's counters are the sum of both
 *    workers' /debug/stats; the split limits add back up to the configured ones; `workers` names both;
 *  - the key routes are answered by one worker: a value (text and bytes) written, read, placed and
 *    deleted, the same value a client reads on the public port; a body over maxValueBytes is refused;
 *  - a worker that does not answer (SIGSTOP) is listed with its error while the other's data is served;
 *  - with auth on, the data and key routes want the admin role there too; the page is open;
 *  - in headless Chromium, the unchanged page draws every chart and shard from the summed data, and its
 *    status line says both workers answered.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { LocalFleet } from '../src/fleet/local-fleet';
import { defaultConfig } from '../src/config/schema';
import type { ConsoleData, ConsoleShard } from '../src/ops/console';
import { KvHttpClient } from './client';
import { spawnGateway, type GatewayProcess } from './helpers/gateway-process';
import { apiKey } from './helpers/tokens';
import { until } from './helpers/harness';
import { adminRoutes, q } from './helpers/console-routes';
import { browserSkip, startBrowser, type BrowserKit } from './helpers/browser';

/** The console's own answer type: a supervisor's always carries the workers. */
type Data = ConsoleData & { workers: NonNullable<ConsoleData['workers']> };
type ShardData = ConsoleShard;
interface WorkerStats {
  pid: number;
  up: boolean;
  stats: { connections: { max: number }; shards: { shard: string; keys: number; batches: number }[] } | null;
}

const MAX_VALUE = 4096;

async function getJson<T>(url: string, init: RequestInit = {}): Promise<{ status: number; body: T; res: Response }> {
  const res = await fetch(url, init);
  return { status: res.status, body: (await res.json()) as T, res };
}

/** A PUT on a connection of its own (no keep-alive), so that the kernel spreads them over the workers. */
function putFresh(port: number, key: string, value: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method: 'PUT', path: `/v1/kv/${encodeURIComponent(key)}`, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.setHeader('content-type', 'application/octet-stream');
    req.end(value);
  });
}

const setOk = (d: Data): number => d.items.set?.ok ?? 0;
const shardsOf = (d: Data): ShardData[] => d.pools.flatMap((p) => p.shards);

describe('console with workers: the supervisor serves the page, sums the data and forwards the key routes', () => {
  let fleet: LocalFleet;
  let gw: GatewayProcess;
  let admin: string;
  const p = `cw:${randomBytes(3).toString('hex')}:`;

  before(async () => {
    fleet = await LocalFleet.start({ count: 2 });
    gw = await spawnGateway({ servers: fleet.servers(), workers: 2, limits: { maxValueBytes: MAX_VALUE } });
    admin = `http://127.0.0.1:${gw.adminPort}`;
  });
  after(async () => {
    await gw?.kill();
    await fleet?.stop();
  });

  const data = async (): Promise<Data> => {
    const r = await getJson<Data>(`${admin}/console/data`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.res.headers.get('cache-control'), 'no-store');
    return r.body;
  };
  const stats = async (): Promise<Record<string, WorkerStats>> =>
    (await getJson<Record<string, WorkerStats>>(`${admin}/debug/stats`)).body;

  it('serves the page and its files with the same headers as a single gateway', async () => {
    const page = await fetch(`${admin}/console`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'.*frame-ancestors 'none'/);
    assert.equal(page.headers.get('x-frame-options'), 'DENY');
    assert.match(await page.text(), /<script src="\/console\/console\.js" defer><\/script>/);
    for (const path of ['/console/console.js', '/console/console.css']) {
      const r = await fetch(`${admin}${path}`);
      assert.equal(r.status, 200, path);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
      assert.ok((await r.text()).length > 100, path);
    }
  });

  it('/console/data is the sum of both workers: N sets move the items by N, shard counters add up', async () => {
    const first = await data();
    assert.deepEqual(
      first.workers.map((w) => [w.name, w.up, w.restarts, w.error]),
      [
        ['w1', true, 0, undefined],
        ['w2', true, 0, undefined],
      ],
    );
    assert.notEqual(first.workers[0].pid, first.workers[1].pid);
    // The limits each worker holds a share of add back up to the configured ones (cluster/share.ts).
    const d = defaultConfig().limits;
    assert.equal(first.buffered.limit, d.maxBufferedBytesTotal);
    const s0 = await stats();
    assert.equal(first.connections.max, s0.w1.stats!.connections.max + s0.w2.stats!.connections.max);
    assert.ok(first.memory.rss > 0 && first.generation >= 1 && first.draining === false);
    assert.equal(shardsOf(first).length, 2);

    // N sets, each on a connection of its own, until both workers have served some (the kernel hashes
    // connections over them: a few rounds at most).
    const N = 50;
    let sent = 0;
    const keysOf = (s: WorkerStats): number => s.stats!.shards.reduce((n, x) => n + x.keys, 0);
    for (let round = 0; round < 10; round++) {
      const codes = await Promise.all(
        Array.from({ length: N }, (_, i) => putFresh(gw.port, `${p}${round}:${i}`, `v${i}`)),
      );
      assert.deepEqual(new Set(codes), new Set([204]));
      sent += N;
      const s = await stats();
      if (keysOf(s.w1) > keysOf(s0.w1) && keysOf(s.w2) > keysOf(s0.w2)) break;
    }
    const s = await stats();
    assert.ok(keysOf(s.w1) > keysOf(s0.w1) && keysOf(s.w2) > keysOf(s0.w2), 'both workers served sets');

    const now = await data();
    assert.equal(setOk(now) - setOk(first), sent, 'every set counted once, whichever worker served it');
    const clientKeys = (x: Data): number => x.pools.reduce((n, pl) => n + pl.clientKeys, 0);
    assert.equal(clientKeys(now) - clientKeys(first), sent);
    // Each shard's counters are both workers' (the supervisor answers from the same moment: nothing runs).
    const again = await stats();
    for (const sh of shardsOf(now)) {
      const per = ['w1', 'w2'].map((w) => again[w].stats!.shards.find((x) => x.shard === sh.shard)!);
      assert.equal(sh.keys, per[0].keys + per[1].keys, `${sh.shard} keys`);
      assert.equal(sh.batches, per[0].batches + per[1].batches, `${sh.shard} batches`);
      assert.equal(sh.up, true);
      assert.ok(sh.rtt.count > 0, `${sh.shard}: round trips observed`);
      assert.deepEqual(sh.rtt.bounds, shardsOf(first)[0].rtt.bounds);
    }
    const fk = now.pools[0].flushKeys;
    assert.equal(
      fk.counts.reduce((a, b) => a + b, 0),
      fk.count,
    );
  });

  it('the key routes: PUT, GET, placement and DELETE through one worker, the same value clients see', async () => {
    const key = `${p}inspected`;
    const put = await getJson<{ stored: boolean; bytes: number; pool: string; shard: { label: string } }>(
      `${admin}/console/key?${q(key)}&flags=7`,
      { method: 'PUT', body: 'héllo workers' },
    );
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.stored, true);
    assert.equal(put.body.bytes, Buffer.byteLength('héllo workers'));
    assert.equal(put.res.headers.get('x-frame-options'), 'DENY');

    const got = await getJson<{
      found: boolean;
      value: string;
      flags: number;
      encoding: string;
      shard: { label: string };
    }>(`${admin}/console/key?${q(key)}`);
    assert.equal(got.status, 200);
    assert.deepEqual(
      [got.body.found, got.body.value, got.body.flags, got.body.encoding],
      [true, 'héllo workers', 7, 'utf8'],
    );
    const pub = await new KvHttpClient(`http://127.0.0.1:${gw.port}`).get(key);
    assert.ok(pub.hit && pub.value.toString() === 'héllo workers' && pub.flags === 7, 'a client reads it');

    const where = await getJson<{
      pool: string;
      shard: { label: string; up: boolean };
      ketama: { ringServer: string };
    }>(`${admin}/console/placement?${q(key)}`);
    assert.equal(where.status, 200);
    assert.equal(where.body.shard.label, got.body.shard.label);
    assert.equal(where.body.shard.label, put.body.shard.label);
    assert.equal(where.body.shard.up, true);
    assert.ok(
      fleet.servers().some((s) => where.body.shard.label.includes(String(s.port))),
      where.body.shard.label,
    );

    // Bytes that are not UTF-8 survive the trip over the workers' JSON channel.
    const bin = Buffer.from([0xff, 0x00, 0xfe, 0x80, 0x0a]);
    const binKey = `${p}bytes`;
    assert.equal((await fetch(`${admin}/console/key?${q(binKey)}`, { method: 'PUT', body: bin })).status, 200);
    const gotBin = await getJson<{ value: string; encoding: string; bytes: number }>(
      `${admin}/console/key?${q(binKey)}`,
    );
    assert.deepEqual(
      [gotBin.body.encoding, gotBin.body.value, gotBin.body.bytes],
      ['base64', bin.toString('base64'), 5],
    );

    const del = await getJson<{ deleted: boolean }>(`${admin}/console/key?${q(key)}`, { method: 'DELETE' });
    assert.equal(del.status, 200);
    assert.equal(del.body.deleted, true);
    assert.equal((await getJson<{ found: boolean }>(`${admin}/console/key?${q(key)}`)).body.found, false);
    assert.equal(
      (await getJson<{ deleted: boolean }>(`${admin}/console/key?${q(key)}`, { method: 'DELETE' })).body.deleted,
      false,
    );
    assert.equal((await new KvHttpClient(`http://127.0.0.1:${gw.port}`).get(key)).hit, false);

    // A route's own refusals come back as the worker gave them.
    const noKey = await getJson<{ error: { code: string } }>(`${admin}/console/key`);
    assert.deepEqual([noKey.status, noKey.body.error.code], [400, 'BAD_REQUEST']);
  });

  it('a body over maxValueBytes is refused with 413 and nothing is written; one at the limit is stored', async () => {
    const key = `${p}big`;
    const over = await fetch(`${admin}/console/key?${q(key)}`, { method: 'PUT', body: 'x'.repeat(MAX_VALUE + 1) });
    assert.equal(over.status, 413);
    assert.equal(((await over.json()) as { error: { code: string } }).error.code, 'TOO_LARGE');
    assert.equal((await getJson<{ found: boolean }>(`${admin}/console/key?${q(key)}`)).body.found, false);
    const at = await getJson<{ stored: boolean; bytes: number }>(`${admin}/console/key?${q(key)}`, {
      method: 'PUT',
      body: 'x'.repeat(MAX_VALUE),
    });
    assert.deepEqual([at.status, at.body.stored, at.body.bytes], [200, true, MAX_VALUE]);
  });

  it('a worker that does not answer is listed with its error; the data of the other is served', async () => {
    const s = await stats();
    process.kill(s.w2.pid, 'SIGSTOP');
    try {
      const d = await data();
      const w2 = d.workers.find((w) => w.name === 'w2')!;
      assert.match(w2.error ?? '', /w2 did not answer console-data/);
      assert.equal(d.workers.find((w) => w.name === 'w1')!.error, undefined);
      // Only w1's share is left in the sums.
      assert.equal(d.connections.max, s.w1.stats!.connections.max);
      assert.equal(d.buffered.limit, defaultConfig().limits.maxBufferedBytesTotal / 2);
    } finally {
      process.kill(s.w2.pid, 'SIGCONT');
    }
    await until(async () => (await data()).workers.every((w) => w.error === undefined), 10_000, 'w2 answers again');
  });
});

describe('console with workers and auth on: the data and key routes want the admin role', () => {
  const ADMIN = apiKey('cw-admin', { namespace: '', tenant: 'ops', perms: 'none', admin: true });
  const TENANT = apiKey('cw-tenant', { namespace: 'tenantA:', tenant: 'A', perms: 'all' });
  let fleet: LocalFleet;
  let gw: GatewayProcess;

  before(async () => {
    fleet = await LocalFleet.start({ count: 1 });
    gw = await spawnGateway({
      servers: fleet.servers(),
      workers: 2,
      security: { auth: { mode: 'required', apiKeys: [ADMIN.entry, TENANT.entry] } },
    });
  });
  after(async () => {
    await gw?.kill();
    await fleet?.stop();
  });

  it('401 without a credential, 403 with a client key, 200 with the admin key; the page is open', async () => {
    const admin = `http://127.0.0.1:${gw.adminPort}`;
    const key = 'tenantA:cw-auth';
    const routes = adminRoutes(key);
    for (const [method, path, body] of routes) {
      const what = `${method} ${path}`;
      assert.equal((await fetch(`${admin}${path}`, { method, body })).status, 401, what);
      const tenant = { authorization: `Bearer ${TENANT.key}` };
      assert.equal((await fetch(`${admin}${path}`, { method, body, headers: tenant })).status, 403, what);
      const ok = await fetch(`${admin}${path}`, { method, body, headers: { authorization: `Bearer ${ADMIN.key}` } });
      assert.equal(ok.status, 200, what);
      await ok.arrayBuffer();
    }
    // The refused PUTs wrote nothing: the admin's PUT wrote the key and the admin's DELETE removed it.
    assert.equal(
      (await new KvHttpClient(`http://127.0.0.1:${gw.port}`, { token: TENANT.key }).get('cw-auth')).hit,
      false,
    );
    for (const path of ['/console', '/console/console.js', '/console/console.css'])
      assert.equal((await fetch(`${admin}${path}`)).status, 200, path);
  });
});

/** The page globals the wait below reads (the project compiles without the DOM library). */
interface PageDom {
  document: {
    getElementById(id: string): { textContent: string | null } | null;
    querySelectorAll(sel: string): ArrayLike<{ dataset: Record<string, string | undefined> }>;
  };
}

describe('console with workers: in headless Chromium', { skip: browserSkip() }, () => {
  let kit: BrowserKit;
  let fleet: LocalFleet;
  let gw: GatewayProcess;

  before(async () => {
    [kit, fleet] = await Promise.all([startBrowser(), LocalFleet.start({ count: 2 })]);
    gw = await spawnGateway({ servers: fleet.servers(), workers: 2 });
  });
  after(async () => {
    await Promise.all([kit?.close(), gw?.kill()]);
    await fleet?.stop();
  });

  it('the page draws every chart and both shards from the summed data; the status names both workers', async () => {
    const context = await kit.browser.newContext();
    try {
      const page = await context.newPage();
      page.setDefaultTimeout(15_000);
      const problems: string[] = [];
      page.on('pageerror', (e) => problems.push(e.message));
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(m.text());
      });
      const http = new KvHttpClient(`http://127.0.0.1:${gw.port}`);
      assert.equal((await page.goto(`http://127.0.0.1:${gw.adminPort}/console?interval=300`))?.status(), 200);
      for (let i = 0; i < 20; i++) await http.set(`cw-page:${i}`, 'v');
      await page.waitForFunction(() => {
        const charts = Array.from((globalThis as unknown as PageDom).document.querySelectorAll('.chart'));
        return charts.length === 9 && charts.every((c) => Number(c.dataset.steps ?? 0) >= 2);
      });
      assert.match((await page.textContent('#status')) ?? '', /2 of 2 workers answered/);
      const shards = await page.$$eval('#shards tbody tr', (rows) => rows.map((r) => r.children[2].textContent));
      assert.deepEqual(shards, ['up', 'up']);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });
});
