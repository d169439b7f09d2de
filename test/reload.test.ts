/**
 * Hot reload (gateway.reload, ops/reload.ts; docs/OPERATIONS.md "Reload"): a fleet changed from 3 to 4
 * memcached and back while independent WebSocket clients keep reading and writing: no client disconnected,
 * no item failed, no value wrong, and afterwards every key is where a ketama ring over the new servers puts
 * it (asked of each memcached with memjs). A bad configuration or a restart-only setting changes nothing;
 * SIGHUP and POST /admin/reload reload a spawned gateway from its file.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { ConfigError, mergeConfig, validateConfig, type Config } from '../src/config/schema';
import { LocalFleet } from '../src/fleet/local-fleet';
import { startGateway, type Gateway } from '../src/gateway';
import { KetamaRing } from '../src/backends/memcached/ketama';
import { KvWsClient, isItemError } from './client';
import type { ServerSpec } from '../src/core/pools';
import { adminJson, until, testConfig } from './helpers/harness';
import { spawnGateway } from './helpers/gateway-process';
import { holders } from './helpers/holders';

const configFor = (servers: ServerSpec[], over: Record<string, unknown> = {}): Config =>
  validateConfig(
    mergeConfig(testConfig(), { port: 0, admin: { port: 0 }, log: { level: 'silent' }, servers, ...over }),
  );

/** Keys written through the gateway now sit on the member a ring over `servers` names. */
async function checkPlacement(gw: Gateway, fleet: LocalFleet, servers: ServerSpec[], tag: string): Promise<void> {
  const ring = new KetamaRing(servers, 'md5');
  const ws = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
  try {
    const keys = Array.from({ length: 40 }, (_, i) => `reload:place:${tag}:${i}`);
    await ws.mset(keys.map((key) => ({ key, value: 'p' })));
    for (const key of keys) {
      const member = fleet.members.findIndex((m) => m.port === servers[ring.lookupKey(key)].port);
      assert.deepEqual(
        (await holders(fleet, key)).map((h) => h.member),
        [member],
        `${key} is on the member the new ring names`,
      );
    }
  } finally {
    ws.terminate();
  }
}

/** Clients reading and writing until stopped; each key is written once, with a value made from the key. */
function load(url: string, clients: number) {
  const stats = { ops: 0, hits: 0, misses: 0, wrong: 0, errors: [] as string[], closed: 0 };
  let running = true;
  const value = (k: string): string => createHash('sha1').update(k).digest('hex');
  const run = async (c: number): Promise<void> => {
    const ws = await KvWsClient.connect(url);
    ws.closed.then(() => {
      if (running) stats.closed++;
    });
    const written: string[] = [];
    for (let n = 0; running; n++) {
      const fresh = Array.from({ length: 8 }, (_, i) => `reload:load:${c}:${n}:${i}`);
      const sets = await ws.mset(fresh.map((key) => ({ key, value: value(key) })));
      for (const r of sets) if (isItemError(r)) stats.errors.push(`set ${r.error.code}`);
      written.push(...fresh);
      const ask = Array.from({ length: 16 }, () => written[Math.floor(Math.random() * written.length)]);
      const got = await ws.mget(ask);
      got.forEach((r, i) => {
        stats.ops++;
        if (isItemError(r)) stats.errors.push(`get ${r.error.code}`);
        else if (!r.hit) stats.misses++;
        else if (r.value.toString() === value(ask[i])) stats.hits++;
        else stats.wrong++;
      });
    }
    ws.terminate();
  };
  const done = Promise.all(Array.from({ length: clients }, (_, c) => run(c)));
  return {
    stats,
    async stop() {
      running = false;
      await done;
    },
  };
}

describe('hot reload', () => {
  let fleet: LocalFleet;
  let gw: Gateway;
  const three = (): ServerSpec[] => fleet.servers().slice(0, 3);
  before(async () => {
    fleet = await LocalFleet.start({ count: 4, memoryMb: 32 });
  });
  after(async () => {
    await gw?.stop();
    await fleet?.stop();
  });

  it('3 -> 4 -> 3 memcached under load: no disconnect, no failed item, no wrong value, keys on the new ring', async () => {
    let next: Config = configFor(three());
    gw = await startGateway(next, { reloadConfig: () => next });
    const l = load(`ws://127.0.0.1:${gw.port}/v1/ws`, 4);
    try {
      await until(() => l.stats.ops > 2000, 20_000, 'load before the first reload');
      next = configFor(fleet.servers());
      const up = await gw.reload();
      assert.equal(up.result, 'applied', up.message);
      assert.deepEqual(up.changed, ['servers']);
      assert.equal(gw.generation, 2);
      assert.equal(gw.shards.length, 4);
      const atFour = l.stats.ops;
      await until(() => l.stats.ops > atFour + 2000, 20_000, 'load on four shards');
      // The old connections close once idle.
      await until(async () => (await adminJson(gw, '/debug/stats')).retiring === 0, 5000, 'the old shards to close');
      await checkPlacement(gw, fleet, fleet.servers(), 'four');

      next = configFor(three());
      const down = await gw.reload();
      assert.equal(down.result, 'applied', down.message);
      assert.equal(gw.generation, 3);
      const atThree = l.stats.ops;
      await until(() => l.stats.ops > atThree + 2000, 20_000, 'load on three shards again');
    } finally {
      await l.stop();
    }
    assert.equal(l.stats.closed, 0, 'no client was disconnected');
    assert.deepEqual(l.stats.errors.slice(0, 5), [], 'no item failed');
    assert.equal(l.stats.wrong, 0, 'no value was wrong');
    // Re-homed keys miss (docs/OPERATIONS.md, "Reload"); most keys stay where they were.
    assert.ok(l.stats.hits > l.stats.misses, `hits ${l.stats.hits}, misses ${l.stats.misses}`);
    await checkPlacement(gw, fleet, three(), 'three');
    const m = await (await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`)).text();
    assert.match(m, /^kvgate_config_generation 3$/m);
    assert.match(m, /^kvgate_reloads_total\{result="applied"\} 2$/m);
  });

  it('limits, batch.maxWaitMs, shard and log settings apply to new requests; open connections stay', async () => {
    const tight = { limits: { maxItemsPerRequest: 5, maxValueBytes: 1000 }, batch: { maxWaitMs: 10 } };
    let next = configFor(three(), tight);
    const g = await startGateway(next, { reloadConfig: () => next });
    const base = `http://127.0.0.1:${g.port}`;
    const ws = await KvWsClient.connect(`ws://127.0.0.1:${g.port}/v1/ws`);
    let closed = false;
    void ws.closed.then(() => (closed = true));
    const six = Array.from({ length: 6 }, (_, i) => `reload:limits:${i}`);
    const big = Buffer.alloc(2000, 7);
    const codeOf = (r: unknown): string | undefined => (r as { error?: { code: string } }).error?.code;
    const bulkStatus = async (): Promise<number> =>
      (
        await fetch(`${base}/v1/mget`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson' },
          body: six.map((k) => JSON.stringify(k)).join('\n'),
        })
      ).status;
    try {
      // Before: the tight limits hold, on both fronts.
      await assert.rejects(ws.mget(six), { code: 'TOO_MANY' });
      assert.equal(codeOf((await ws.mset([{ key: six[0], value: big }]))[0]), 'TOO_LARGE');
      await assert.rejects(ws.get(six[0], { wait: 20 }), { code: 'BAD_WAIT' });
      assert.equal((await fetch(`${base}/v1/kv/${six[0]}`, { method: 'PUT', body: big })).status, 413);
      const tooMany = await (
        await fetch(`${base}/v1/mget`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson' },
          body: six.map((k) => JSON.stringify(k)).join('\n'),
        })
      ).text();
      assert.match(tooMany, /"TOO_MANY"/);

      const shardsBefore = g.shards;
      next = configFor(three(), {
        limits: { maxItemsPerRequest: 10, maxValueBytes: 4096, maxConnections: 1 },
        batch: { maxWaitMs: 50 },
        shard: { timeoutMs: 2000 },
        log: { level: 'error' },
      });
      const r = await g.reload();
      assert.equal(r.result, 'applied', r.message);
      assert.deepEqual(r.changed.sort(), [
        'batch.maxWaitMs',
        'limits.maxConnections',
        'limits.maxItemsPerRequest',
        'limits.maxValueBytes',
        'log.level',
        'shard.timeoutMs',
      ]);
      // shard.* and maxValueBytes are what a backend is built with: every pool has new connections.
      assert.ok(
        g.shards.every((s) => !shardsBefore.includes(s)),
        'the shards were rebuilt',
      );

      // After, on the connection opened before: the new limits.
      const stored = await ws.mset([{ key: six[0], value: big }]);
      assert.deepEqual(stored, [{ ok: true }]);
      const got = await ws.mget(six);
      assert.equal(got.length, 6);
      assert.ok(got[0] && 'hit' in got[0] && got[0].hit && got[0].value.equals(big));
      assert.ok(got.slice(1).every((x) => 'hit' in x && !x.hit));
      assert.deepEqual(await ws.get(six[0], { wait: 20 }), { hit: true, value: big, flags: 0 });
      // One connection is open and the bound is now 1: it stays, a new one is refused.
      assert.equal(await bulkStatus(), 503);
      await assert.rejects(KvWsClient.connect(`ws://127.0.0.1:${g.port}/v1/ws`));
      assert.deepEqual(await ws.get(six[0]), { hit: true, value: big, flags: 0 });

      next = configFor(three(), { limits: { maxItemsPerRequest: 10, maxValueBytes: 4096 } });
      assert.equal((await g.reload()).result, 'applied');
      assert.equal(await bulkStatus(), 200);
      assert.equal((await fetch(`${base}/v1/kv/${six[1]}`, { method: 'PUT', body: big })).status, 204);
      assert.equal(closed, false, 'the WebSocket opened before the reloads is still open');
    } finally {
      await ws.close();
      await g.stop();
    }
  });

  it('a bad configuration or a restart-only change is refused and changes nothing', async () => {
    const before = gw.generation;
    const servers = gw.shards.map((s) => s.label);
    let fail: 'bad' | 'port' = 'bad';
    const g2 = await startGateway(configFor(three()), {
      reloadConfig: () => {
        if (fail === 'bad') throw new ConfigError([{ path: 'servers', text: 'servers[0]: not host:port' }]);
        return configFor(three(), { limits: { reservedDescriptors: 32 }, ws: { maxPayloadBytes: 4 << 20 } });
      },
    });
    try {
      const bad = await g2.reload();
      assert.equal(bad.result, 'failed');
      assert.equal(bad.status, 400);
      assert.deepEqual(bad.problems, ['servers[0]: not host:port']);
      fail = 'port';
      const restart = await g2.reload();
      assert.equal(restart.status, 409);
      assert.deepEqual(restart.changed, ['limits.reservedDescriptors', 'ws.maxPayloadBytes']);
      assert.deepEqual(restart.problems, [
        'limits.reservedDescriptors takes a restart',
        'ws.maxPayloadBytes takes a restart',
      ]);
      assert.equal(g2.generation, 1);
      const viaHttp = await fetch(`http://127.0.0.1:${g2.adminPort}/admin/reload`, { method: 'POST' });
      assert.equal(viaHttp.status, 409);
      assert.equal(((await viaHttp.json()) as { result: string }).result, 'failed');
    } finally {
      await g2.stop();
    }
    assert.equal(gw.generation, before);
    assert.deepEqual(
      gw.shards.map((s) => s.label),
      servers,
    );
  });

  it('SIGHUP and POST /admin/reload read the file again in a spawned gateway', async () => {
    const servers = (n: number): string[] =>
      fleet
        .servers()
        .slice(0, n)
        .map((s) => `${s.host}:${s.port}`);
    const p = await spawnGateway({ servers: servers(2) });
    try {
      const file = (p.proc.spawnargs[p.proc.spawnargs.indexOf('--config') + 1] ?? '') as string;
      assert.ok(file.endsWith('.json'));
      const write = (n: number): void =>
        writeFileSync(
          file,
          JSON.stringify({
            host: '127.0.0.1',
            admin: { port: 0 },
            servers: servers(n),
            port: p.port,
            security: { auth: { mode: 'off' } },
          }),
        );
      write(3);
      p.signal('SIGHUP');
      await until(async () => (await adminJson(p, '/debug/stats')).generation === 2, 5000, 'SIGHUP to apply the file');
      assert.equal(((await adminJson(p, '/debug/stats')).shards as unknown[]).length, 3);
      write(2);
      const res = await fetch(`http://127.0.0.1:${p.adminPort}/admin/reload`, { method: 'POST' });
      const body = (await res.json()) as { result: string; generation: number };
      assert.equal(res.status, 200);
      assert.deepEqual([body.result, body.generation], ['applied', 3]);
      writeFileSync(file, '{ not json');
      const bad = await fetch(`http://127.0.0.1:${p.adminPort}/admin/reload`, { method: 'POST' });
      assert.equal(bad.status, 400);
      assert.match(p.output(), /"event":"reload.applied"/);
      assert.match(p.output(), /"event":"reload.failed"/);
      assert.equal(p.proc.exitCode, null, 'still running');
    } finally {
      await p.kill();
    }
  });
});
