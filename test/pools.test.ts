/**
 * Pools and routes (docs/PROTOCOL.md, "Pools"): two memcached fleets behind one gateway, keys routed by
 * prefix (longest first), checked with memjs directly against every member of both fleets; bulk requests
 * spanning both pools, each item with its own result, also while one pool is down; /healthz and
 * /debug/stats per pool; the prefix table alone; and every bad pool or route setting named at once.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, defaultConfig, mergeConfig, validateConfig } from '../src/config/schema';
import { LocalFleet } from '../src/fleet/local-fleet';
import { startGateway, type Gateway } from '../src/gateway';
import { KvHttpClient, KvWsClient, isItemError, type MgetResult } from './client';
import { Router, type Pool } from '../src/core/router';
import type { Backend } from '../src/core/backend';
import type { Coalescer } from '../src/core/coalescer';
import type { MemcachedBackend } from '../src/backends/memcached';
import type { KetamaRing } from '../src/backends/memcached/ketama';
import { adminJson, until, testConfig } from './helpers/harness';
import { holders } from './helpers/holders';

const valueOf = (r: MgetResult): string =>
  isItemError(r) ? `error:${r.error.code}` : r.hit ? r.value.toString() : 'miss';

describe('pools routed by key prefix', () => {
  let main: LocalFleet, sessions: LocalFleet;
  let gw: Gateway;
  let http: KvHttpClient;
  let ws: KvWsClient;
  before(async () => {
    [main, sessions] = await Promise.all([LocalFleet.start({ count: 2 }), LocalFleet.start({ count: 2 })]);
    const config = validateConfig(
      mergeConfig(testConfig(), {
        port: 0,
        admin: { port: 0 },
        log: { level: 'silent' },
        servers: main.servers(),
        pools: {
          sessions: {
            backend: 'memcached',
            servers: sessions.servers().map((s) => `${s.host}:${s.port}`),
            hash: 'fnv1a_64',
          },
        },
        // The longer prefix wins: `sess:keep:` keys stay in the default pool.
        routes: [
          { prefix: 'sess:', pool: 'sessions' },
          { prefix: 'sess:keep:', pool: 'default' },
        ],
      }),
    );
    gw = await startGateway(config);
    http = new KvHttpClient(`http://127.0.0.1:${gw.port}`);
    ws = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
  });
  after(async () => {
    ws?.terminate();
    await gw?.stop();
    await Promise.all([main?.stop(), sessions?.stop()]);
  });

  it('each key is stored on exactly one member of the fleet its longest prefix names, never the other', async () => {
    const keys = [
      ...Array.from({ length: 12 }, (_, i) => `sess:${i}`),
      ...Array.from({ length: 6 }, (_, i) => `sess:keep:${i}`),
      ...Array.from({ length: 6 }, (_, i) => `user:${i}`),
      'sess', // shorter than the prefix: the default pool
    ];
    for (const [n, k] of keys.entries()) {
      if (n % 2 === 0) await ws.set(k, `v-${k}`);
      else await http.set(k, `v-${k}`);
    }
    // Each pool keeps its own placement: the sessions pool's ketama ring (fnv1a_64) over its own servers.
    const ringOf = (name: string): KetamaRing =>
      (gw.pools.find((p) => p.name === name)!.backend as MemcachedBackend).ring;
    for (const k of keys) {
      const inSessions = k.startsWith('sess:') && !k.startsWith('sess:keep:');
      const [want, other, pool] = inSessions ? [sessions, main, 'sessions'] : [main, sessions, 'default'];
      assert.deepEqual(
        await holders(want, k),
        [{ member: ringOf(pool).lookupKey(k), value: `v-${k}` }],
        `${k}: on the member of the ${pool} fleet its ring names`,
      );
      assert.deepEqual(await holders(other, k), [], `${k}: not in the other fleet`);
    }
  });

  it('a bulk request spans both pools: every item its own result, in order, over both fronts', async () => {
    const items = Array.from({ length: 40 }, (_, i) => ({
      key: i % 2 === 0 ? `sess:bulk:${i}` : `acct:bulk:${i}`,
      value: `b${i}`,
    }));
    const stored = await ws.mset(items);
    assert.deepEqual(
      stored,
      items.map(() => ({ ok: true })),
    );
    const keys = [...items.map((it) => it.key), 'sess:bulk:absent', 'acct:bulk:absent'];
    const want = [...items.map((it) => it.value), 'miss', 'miss'];
    assert.deepEqual((await ws.mget(keys)).map(valueOf), want, 'WebSocket mget');
    assert.deepEqual((await http.mget(keys)).map(valueOf), want, 'HTTP mget (msgpack)');
    assert.deepEqual((await http.mget(keys, { format: 'ndjson' })).map(valueOf), want, 'HTTP mget (NDJSON)');
    for (const it of items.slice(0, 4)) {
      const fleet = it.key.startsWith('sess:') ? sessions : main;
      assert.equal((await holders(fleet, it.key)).length, 1, it.key);
    }
    const deleted = await ws.mdel(['sess:bulk:0', 'acct:bulk:1', 'sess:bulk:absent']);
    assert.deepEqual(deleted, [{ deleted: true }, { deleted: true }, { deleted: false }]);
  });

  it('/healthz and the admin /debug/stats show every pool', async () => {
    const h = await http.health();
    assert.equal(h.status, 'ok');
    assert.deepEqual(Object.keys(h.pools).sort(), ['default', 'sessions']);
    assert.deepEqual(h.pools.sessions, { backend: 'memcached', status: 'ok', up: 2, of: 2 });
    assert.deepEqual(
      h.shards.map((s) => `${s.pool} ${s.server}`).sort(),
      [
        ...main.servers().map((s) => `default 127.0.0.1:${s.port}`),
        ...sessions.servers().map((s) => `sessions 127.0.0.1:${s.port}`),
      ].sort(),
    );
    const st = (await adminJson(gw, '/debug/stats')) as unknown as {
      pools: Record<string, { backend: string; shards: { shard: string; keys: number }[] }>;
      routes: { prefix: string; pool: string }[];
    };
    assert.deepEqual(Object.keys(st.pools).sort(), ['default', 'sessions']);
    assert.equal(st.pools.sessions.shards.length, 2);
    assert.ok(
      st.pools.sessions.shards.reduce((n, s) => n + s.keys, 0) > 0,
      'the sessions pool counted the keys sent to it',
    );
    assert.equal(st.routes.length, 2);
  });

  it('with the sessions pool down, its items fail with SHARD_DOWN and the rest of the same request succeed', async () => {
    await sessions.stop();
    await until(
      () => gw.pools.find((p) => p.name === 'sessions')!.backend.shards.every((s) => !s.up),
      5000,
      'sessions down',
    );
    const keys = ['sess:bulk:2', 'acct:bulk:3', 'sess:bulk:4', 'acct:bulk:5'];
    assert.deepEqual((await ws.mget(keys)).map(valueOf), ['error:SHARD_DOWN', 'b3', 'error:SHARD_DOWN', 'b5']);
    const h = (await (await fetch(`http://127.0.0.1:${gw.port}/healthz`)).json()) as {
      status: string;
      pools: Record<string, { status: string }>;
    };
    assert.equal(h.status, 'degraded');
    assert.equal(h.pools.sessions.status, 'down');
    assert.equal(h.pools.default.status, 'ok');
  });
});

describe('the prefix table', () => {
  const pool = (name: string): Pool => ({ name, backend: {} as Backend, coalescer: {} as Coalescer });
  const pools = ['default', 'a', 'b', 'c'].map(pool);
  const router = new Router(
    pools,
    [
      { prefix: 'a', pool: 'a' },
      { prefix: 'ab:', pool: 'b' },
      { prefix: 'ab:c', pool: 'c' },
      { prefix: 'é', pool: 'c' },
    ],
    'default',
    { maxValueBytes: 1024, maxTtlSeconds: 10 },
  );
  const pick = (key: string, pad = 0): string => {
    // The key inside a larger buffer: only key[off, off + len) counts.
    const b = Buffer.concat([Buffer.from('x'.repeat(pad)), Buffer.from(key), Buffer.from('ab:c')]);
    return router.poolFor(b, pad, Buffer.byteLength(key)).name;
  };
  it('picks the longest prefix a key starts with, byte by byte, else the default pool', () => {
    assert.equal(pick('a'), 'a');
    assert.equal(pick('ax'), 'a');
    assert.equal(pick('ab'), 'a');
    assert.equal(pick('ab:'), 'b');
    assert.equal(pick('ab:x', 3), 'b');
    assert.equal(pick('ab:c'), 'c');
    assert.equal(pick('ab:cd', 5), 'c');
    assert.equal(pick('b'), 'default');
    assert.equal(pick('Ab:c'), 'default');
    assert.equal(pick('éa'), 'c', 'a UTF-8 prefix, compared as bytes');
    assert.equal(pick('e'), 'default');
    assert.equal(pick('ab:', 2), 'b', 'bytes past the key do not extend it');
  });
  it('refuses a route or a default pool naming no pool', () => {
    assert.throws(
      () => new Router(pools, [{ prefix: 'x', pool: 'nope' }], 'default', { maxValueBytes: 1, maxTtlSeconds: 1 }),
      /nope/,
    );
    assert.throws(() => new Router(pools, [], 'nope', { maxValueBytes: 1, maxTtlSeconds: 1 }), /nope/);
  });
});

describe('pool and route settings', () => {
  const problems = (over: Record<string, unknown>): string[] => {
    try {
      validateConfig(mergeConfig(testConfig(), over));
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      return e.problems.map((p) => p.text);
    }
    return [];
  };
  const has = (list: string[], re: RegExp): void =>
    assert.equal(list.filter((t) => re.test(t)).length, 1, `one problem matching ${re} in:\n${list.join('\n')}`);

  it('the current servers setting alone is one memcached pool named default', () => {
    const c = validateConfig(mergeConfig(testConfig(), { servers: ['127.0.0.1:11211'] }));
    assert.deepEqual(c.pools, {});
    assert.deepEqual(c.routes, []);
    assert.equal(c.defaultPool, 'default');
  });

  it('names every bad pool, route and default pool at once', () => {
    const list = problems({
      servers: ['127.0.0.1:11211'],
      pools: {
        default: { backend: 'memcached', servers: ['127.0.0.1:11212'] },
        bad: { backend: 'mongodb' },
        'sp ace': { backend: 'memcached', servers: ['127.0.0.1:1'] },
        twins: { backend: 'memcached', servers: ['10.0.0.1:11211', '10.0.0.1:11211'], hash: 'sha1' },
        dupes: { backend: 'memcached', servers: ['10.0.0.1:11211 n', '10.0.0.2:11211 n'] },
        empty: { backend: 'memcached', servers: [] },
        extra: { backend: 'memcached', servers: ['127.0.0.1:2'], weight: 3 },
      },
      routes: [
        { prefix: 'a:', pool: 'nowhere' },
        { prefix: '', pool: 'default' },
        { prefix: 'has space', pool: 'default' },
        { prefix: 'b:', pool: 'default' },
        { prefix: 'b:', pool: 'empty' },
        'c:',
        { prefix: 'd:', pool: 'default', weight: 1 },
      ],
      defaultPool: 'missing',
    });
    has(list, /^pools\.default: the top-level servers already make/);
    has(list, /^pools\.bad\.backend must be "memcached" or "redis" \(got "mongodb"\)/);
    has(list, /^pool name "sp ace"/);
    has(list, /^pools\.twins\.hash must be "md5" or "fnv1a_64"/);
    has(list, /^pools\.dupes: .*same ring name "n"/);
    has(list, /^pools\.empty\.servers must name at least one server/);
    has(list, /^unknown setting "pools\.extra\.weight"/);
    has(list, /^routes\[0\]\.pool "nowhere" is not a configured pool \(pools: default, /);
    has(list, /^routes\[1\]\.prefix must be a non-empty string/);
    has(list, /^routes\[2\]\.prefix "has space" cannot start a key/);
    has(list, /^routes\[4\]\.prefix "b:" is already routed by routes\[3\]/);
    has(list, /^routes\[5\] must be \{"prefix"/);
    has(list, /^unknown setting "routes\[6\]\.weight"/);
    has(list, /^defaultPool "missing" is not a configured pool/);
    assert.equal(list.length, 14, list.join('\n'));
  });

  it('a Redis pool is one standalone server or cluster seed nodes, with an optional command timeout', () => {
    const list = problems({
      servers: ['127.0.0.1:11211'],
      pools: {
        both: { backend: 'redis', servers: ['127.0.0.1:6379'], cluster: ['127.0.0.1:7000'] },
        neither: { backend: 'redis' },
        two: { backend: 'redis', servers: ['127.0.0.1:6379', '127.0.0.1:6380'] },
        badnode: { backend: 'redis', cluster: ['127.0.0.1', 'h:99999', 7000] },
        slow: { backend: 'redis', cluster: ['127.0.0.1:7000'], commandTimeoutMs: 0 },
        typo: { backend: 'redis', cluster: ['127.0.0.1:7000'], clusterr: [] },
      },
    });
    has(list, /^pools\.both: give "servers" .* not both/);
    has(list, /^pools\.neither: a Redis pool needs "servers"/);
    has(list, /^pools\.two\.servers must name exactly one Redis \(got 2\)/);
    has(list, /^pools\.badnode\.cluster\[0\] must be "host:port"/);
    has(list, /^pools\.badnode\.cluster\[1\] must be "host:port"/);
    has(list, /^pools\.badnode\.cluster\[2\] must be "host:port"/);
    has(list, /^pools\.slow\.commandTimeoutMs must be an integer from 1 to 600000 \(got 0\)/);
    has(list, /^unknown setting "pools\.typo\.clusterr"/);
    // Well-formed Redis pools are only refused because this build has no Redis factory.
    assert.equal(list.filter((t) => /no factory registered/.test(t)).length, 0, 'shape errors first');
    assert.equal(list.length, 8, list.join('\n'));
  });

  it('pools without top-level servers need a default pool that exists', () => {
    const pools = { only: { backend: 'memcached', servers: ['127.0.0.1:11211'] } };
    has(problems({ pools }), /^defaultPool "default" is not a configured pool \(pools: only\)/);
    const c = validateConfig(mergeConfig(testConfig(), { pools, defaultPool: 'only' }));
    assert.deepEqual(c.pools.only, {
      backend: 'memcached',
      servers: [{ host: '127.0.0.1', port: 11211, weight: 1, name: undefined }],
      hash: 'md5',
      failure: defaultConfig().failure,
    });
    has(problems({ pools: [] }), /^pools must be an object of named pools/);
    has(problems({ routes: {} }), /^routes must be a list/);
  });
});
