/**
 * A standalone Redis behind the gateway (issue 8, deliverable 4), against a real redis-server and a real
 * memcached fleet on loopback, both started here. What it proves:
 *  - every op over both fronts (KvWsClient, KvHttpClient; HTTP has no mdel) stores and reads the exact
 *    bytes in Redis: every byte value, sizes 0, 1, 16 KiB - 1, 16 KiB, 16 KiB + 1 and 1 MiB (streamed
 *    back in VALUE_PARTs, no server message over 16 KiB), deletes seen by Redis, ttl seen by Redis's `TTL`
 *    (and a set without ttl clears it; an expired key is a miss);
 *  - non-zero flags are refused per item with BAD_FLAGS and nothing is stored (nor overwritten), and a
 *    bulk request mixing good and bad items answers each item on its own and stores only the good ones;
 *  - interop both ways, same bytes: what ioredis and `redis-cli -x` write reads byte-identical through the
 *    gateway, binary keys included; what the gateway writes reads byte-identical by ioredis `getBuffer`,
 *    `redis-cli --no-raw GET` (its escaped form decoded here), `STRLEN` and `GETRANGE`;
 *  - coalescing, from Redis's own counters (`INFO commandstats`, `INFO stats`): 200 single-key gets over 20
 *    WebSocket connections, issued together, with duplicates, cost at most one command and one network
 *    read per WebSocket message (so keys per command >= 10, whatever the machine's load), every duplicate
 *    within a flush is looked up once, and nothing else reaches Redis;
 *  - a bulk request spanning a memcached pool and the Redis pool (routed by prefix) gives every item its
 *    own result, and every key lands in its own store only (checked on every memcached member with raw
 *    text-protocol gets, and on Redis with ioredis), memcached flags kept, Redis flags refused.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { isItemError, KvError, KvWsClient, type KeyInput, type MgetResult } from './client';
import { LocalFleet } from '../src/fleet/local-fleet';
import { adminJson, freeze, startPoolsHarness, until, type PoolsHarness } from './helpers/harness';
import { rawGet } from './helpers/mc-raw';
import { parseInfo, startRedis, type RedisServer } from './helpers/redis-local';
import { ALL_BYTES, assertHit, KIB16, MIB, pattern, show, SIZES } from './helpers/redis-values';

async function rejects(p: Promise<unknown>, code: string, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof KvError, `${what}: ${String(e)}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return true;
  });
}

/** redis-cli with `input` on its stdin; its stdout as bytes (non-tty: raw replies, one per line). */
function cliBytes(port: number, args: string[], input?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // stdin only for -x: a redis-cli that does not read it may exit before it is written (EPIPE)
    const p = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    p.stdout!.on('data', (b: Buffer) => out.push(b));
    p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    p.once('error', reject);
    p.once('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`redis-cli ${args.join(' ')}: ${code} ${err}`)),
    );
    if (input !== undefined) {
      p.stdin!.on('error', (e) => (err += `stdin: ${e.message}`)); // shows in the exit code's error, if any
      p.stdin!.end(input);
    }
  });
}

/**
 * Decodes what `redis-cli --no-raw` prints for a bulk string: Redis's sdscatrepr form, `"..."` with \\ \"
 * \n \r \t \a \b and \xHH escapes, printable ASCII as is.
 */
function decodeRepr(text: string): Buffer {
  const s = text.replace(/\n$/, '');
  assert.ok(s.length >= 2 && s[0] === '"' && s[s.length - 1] === '"', `not a quoted string: ${s.slice(0, 80)}`);
  const out: number[] = [];
  const named: Record<string, number> = { n: 10, r: 13, t: 9, a: 7, b: 8, '\\': 92, '"': 34 };
  for (let i = 1; i < s.length - 1; i++) {
    const c = s[i];
    if (c !== '\\') {
      out.push(c.charCodeAt(0));
      continue;
    }
    const e = s[++i];
    if (e === 'x') {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (e in named) out.push(named[e]);
    else assert.fail(`unknown escape \\${e}`);
  }
  return Buffer.from(out);
}

/** The fields of one `cmdstat_x:calls=1,usec=...` line of INFO commandstats. */
function cmdCalls(info: Record<string, string>, cmd: string): number {
  const m = /calls=(\d+)/.exec(info[`cmdstat_${cmd}`] ?? '');
  return m ? Number(m[1]) : 0;
}

describe('a standalone Redis pool behind the gateway', () => {
  let redis: RedisServer;
  let fleet: LocalFleet;
  let h: PoolsHarness;
  let admin: Redis;
  let ws: KvWsClient;
  /** A message longer than 16 KiB breaks the client's connection: the 16 KiB promise is checked on every read. */
  const wsOpts = { maxMessageBytes: KIB16 };

  before(async () => {
    [redis, fleet] = await Promise.all([startRedis(), LocalFleet.start({ count: 2, itemSizeMb: 2 })]);
    h = await startPoolsHarness({
      pools: {
        r: { backend: 'redis', servers: [`127.0.0.1:${redis.port}`] },
        mc: { backend: 'memcached', servers: fleet.servers().map((s) => `${s.host}:${s.port}`) },
      },
      routes: [{ prefix: 'mc:', pool: 'mc' }],
      defaultPool: 'r',
    });
    admin = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    ws = await h.ws(wsOpts);
    const health = await h.http.health();
    assert.equal(health.pools.r?.status, 'ok', JSON.stringify(health));
    assert.equal(health.pools.r?.backend, 'redis');
  });

  after(async () => {
    admin?.disconnect();
    await h?.stop();
    await Promise.all([redis?.stop(), fleet?.stop()]);
  });

  it('get, set and del over both fronts: every byte value, sizes 0 to 1 MiB, as Redis stores them', async () => {
    const http = h.http;
    const fronts = [
      { name: 'ws', c: ws },
      { name: 'http', c: http },
    ] as const;
    let parts = 0;
    ws.onEntry = (e) => {
      if (e.kind === 'part') parts++;
    };
    for (const [f, { name, c }] of fronts.entries()) {
      for (const size of SIZES) {
        const key = `${name}:size:${size}`;
        const value = pattern(size, size + f);
        await c.set(key, value);
        const stored = await admin.getBuffer(key);
        assert.ok(stored !== null && stored.equals(value), `${key}: Redis holds other bytes`);
        assertHit(await ws.get(key), value, `${key} read over ws`);
        assertHit(await http.get(key), value, `${key} read over http`);
      }
      await c.set(`${name}:all`, ALL_BYTES);
      assert.ok((await admin.getBuffer(`${name}:all`))!.equals(ALL_BYTES));
      assertHit(await c.get(`${name}:all`), ALL_BYTES, `${name}:all`);

      assert.equal(await c.del(`${name}:size:1`), true);
      assert.equal(await admin.exists(`${name}:size:1`), 0, 'Redis still has the deleted key');
      assert.deepEqual(await c.get(`${name}:size:1`), { hit: false });
      assert.equal(await c.del(`${name}:size:1`), false, 'a second delete finds nothing');
      assert.deepEqual(await c.get(`${name}:never`), { hit: false });
    }
    // 1 MiB read twice over ws (written by each front): at least 64 parts each, none over 16 KiB
    assert.ok(parts >= 2 * (MIB / KIB16), `${parts} VALUE_PARTs`);
    ws.onEntry = undefined;
  });

  it('mget, mset and mdel over both fronts, each item with its own result, as Redis stores them', async () => {
    const items = SIZES.map((size, i) => ({ key: `bulk:${i}`, value: pattern(size, 100 + i) }));
    items.push({ key: 'bulk:all', value: ALL_BYTES });
    const wsRes = await ws.mset(items);
    assert.deepEqual(
      wsRes.map(show),
      items.map(() => 'ok'),
    );
    const stored = await admin.mgetBuffer(...items.map((it) => it.key));
    for (const [i, it] of items.entries()) assert.ok(stored[i]?.equals(it.value), `${it.key} in Redis`);

    // duplicates and an absent key in one mget, on both fronts and both HTTP formats
    const keys = [...items.map((it) => it.key), 'bulk:absent', 'bulk:0', 'bulk:all'];
    const want = [...items.map((it) => it.value), null, items[0].value, ALL_BYTES];
    const check = (res: MgetResult[], what: string): void => {
      assert.equal(res.length, keys.length, what);
      for (const [i, r] of res.entries()) {
        if (want[i] === null) assert.deepEqual(r, { hit: false }, `${what} ${keys[i]}`);
        else assertHit(r, want[i]!, `${what} ${keys[i]}`);
      }
    };
    check(await ws.mget(keys), 'ws mget');
    check(await h.http.mget(keys), 'http msgpack mget');
    check(await h.http.mget(keys, { format: 'ndjson' }), 'http ndjson mget');

    // HTTP mset in both formats, overwriting what ws wrote
    const again = items.map((it, i) => ({ key: it.key, value: pattern(it.value.length, 200 + i) }));
    assert.deepEqual((await h.http.mset(again.slice(0, 4))).map(show), ['ok', 'ok', 'ok', 'ok']);
    assert.deepEqual(
      (await h.http.mset(again.slice(4), { format: 'ndjson' })).map(show),
      again.slice(4).map(() => 'ok'),
    );
    const now = await admin.mgetBuffer(...again.map((it) => it.key));
    for (const [i, it] of again.entries()) assert.ok(now[i]?.equals(it.value), `${it.key} rewritten over http`);

    // mdel: present and absent keys, and a key twice
    const del = ['bulk:0', 'bulk:1', 'bulk:absent', 'bulk:2'];
    assert.deepEqual((await ws.mdel(del)).map(show), ['deleted:true', 'deleted:true', 'deleted:false', 'deleted:true']);
    assert.equal(await admin.exists('bulk:0', 'bulk:1', 'bulk:2'), 0);
    assert.equal(await admin.exists('bulk:3'), 1, 'mdel touched a key it did not name');
  });

  it('ttl reaches Redis (TTL), a set without ttl clears it, and an expired key is a miss', async () => {
    const t0 = Date.now();
    await ws.set('ttl:ws', 'a', { ttl: 100 });
    await h.http.set('ttl:http', 'b', { ttl: 200 });
    const res = await ws.mset([
      { key: 'ttl:m1', value: 'c', ttl: 300 },
      { key: 'ttl:m2', value: 'd' },
    ]);
    assert.deepEqual(res.map(show), ['ok', 'ok']);
    assert.deepEqual((await h.http.mset([{ key: 'ttl:n1', value: 'e', ttl: 400 }], { format: 'ndjson' })).map(show), [
      'ok',
    ]);
    const ttls = await Promise.all(['ttl:ws', 'ttl:http', 'ttl:m1', 'ttl:n1', 'ttl:m2'].map((k) => admin.ttl(k)));
    // Redis counts down from the ttl given; no more whole seconds can have passed than since t0
    const slack = Math.ceil((Date.now() - t0) / 1000) + 1;
    for (const [i, given] of [100, 200, 300, 400].entries())
      assert.ok(ttls[i] <= given && ttls[i] >= given - slack, `ttl ${given}: Redis says ${ttls[i]}`);
    assert.equal(ttls[4], -1, 'a set without ttl has no expiry');

    await ws.set('ttl:ws', 'again');
    assert.equal(await admin.ttl('ttl:ws'), -1, 'a set with ttl 0 keeps no earlier expiry');

    await h.http.set('ttl:short', 'gone soon', { ttl: 1 });
    assert.ok((await admin.ttl('ttl:short')) >= 0);
    await until(async () => !(await ws.get('ttl:short')).hit, 5000, 'ttl:short to expire');
    assert.equal(await admin.exists('ttl:short'), 0);
  });

  it('refuses non-zero flags with BAD_FLAGS per item, storing nothing; a mixed bulk stores only its good items', async () => {
    await ws.set('flags:kept', 'original');
    await rejects(ws.set('flags:ws', 'x', { flags: 1 }), 'BAD_FLAGS', 'ws set flags 1');
    await rejects(h.http.set('flags:http', 'x', { flags: 7 }), 'BAD_FLAGS', 'http set flags 7');
    await rejects(ws.set('flags:kept', 'overwritten', { flags: 0xffffffff }), 'BAD_FLAGS', 'ws set max flags');
    await rejects(h.http.set('flags:kept', 'overwritten', { flags: 2 }), 'BAD_FLAGS', 'http set flags 2');
    assert.equal(await admin.exists('flags:ws', 'flags:http'), 0, 'a refused set was stored');
    assert.equal(await admin.get('flags:kept'), 'original', 'a refused set overwrote the key');
    await ws.set('flags:zero', 'fine', { flags: 0 });
    assert.equal(await admin.get('flags:zero'), 'fine');

    const mixed = (tag: string): { key: KeyInput; value: Buffer; ttl?: number; flags?: number }[] => [
      { key: `${tag}:good0`, value: pattern(300, 1) },
      { key: `${tag}:flags`, value: Buffer.from('no'), flags: 5 },
      { key: `${tag}:good1`, value: pattern(KIB16 + 1, 2), ttl: 60 },
      { key: `${tag}:maxflags`, value: Buffer.from('no'), flags: 0xffffffff },
      { key: `${tag}:bad key`, value: Buffer.from('no') },
      { key: `${tag}:large`, value: Buffer.alloc(MIB + 1, 1) },
      { key: `${tag}:good2`, value: Buffer.alloc(0), flags: 0 },
      { key: `${tag}:badttl`, value: Buffer.from('no'), ttl: 2592001 },
    ];
    const expected = [
      'ok',
      'error:BAD_FLAGS',
      'ok',
      'error:BAD_FLAGS',
      'error:BAD_KEY',
      'error:TOO_LARGE',
      'ok',
      'error:BAD_TTL',
    ];
    const runs = [
      { tag: 'mixws', send: (it: ReturnType<typeof mixed>) => ws.mset(it) },
      { tag: 'mixmp', send: (it: ReturnType<typeof mixed>) => h.http.mset(it) },
      { tag: 'mixnd', send: (it: ReturnType<typeof mixed>) => h.http.mset(it, { format: 'ndjson' }) },
    ];
    for (const { tag, send } of runs) {
      const items = mixed(tag);
      assert.deepEqual((await send(items)).map(show), expected, tag);
      for (const [i, it] of items.entries()) {
        const inRedis = await admin.getBuffer(it.key as string);
        if (expected[i] === 'ok') assert.ok(inRedis?.equals(it.value), `${tag}: ${String(it.key)} not stored as sent`);
        else assert.equal(inRedis, null, `${tag}: refused ${String(it.key)} was stored`);
      }
      // the same mix read back: the good items hit, the refused ones miss, the bad key is refused again
      const res = await ws.mget(items.map((it) => it.key));
      assert.deepEqual(
        res.map(show),
        items.map((it, i) =>
          expected[i] === 'ok' ? `hit:${it.value.length}` : expected[i] === 'error:BAD_KEY' ? 'error:BAD_KEY' : 'miss',
        ),
        `${tag} read back`,
      );
    }
  });

  it('interop: what ioredis and redis-cli write reads byte-identical through the gateway, and the reverse', async () => {
    const binKey = Buffer.concat([Buffer.from('bin:'), Buffer.from([0x80, 0xc3, 0x28, 0xfe, 0xff])]);
    const fromIoredis: [Buffer, Buffer][] = [
      [Buffer.from('io:all'), ALL_BYTES],
      [Buffer.from('io:empty'), Buffer.alloc(0)],
      [Buffer.from('io:crlf'), Buffer.from('\r\nEND\r\nVALUE x 0 1\r\n\0')],
      [Buffer.from('io:16k1'), pattern(KIB16 + 1, 9)],
      [Buffer.from('io:1m'), pattern(MIB, 10)],
      [binKey, pattern(1000, 11)],
    ];
    for (const [k, v] of fromIoredis) await admin.set(k, v);
    const keys = fromIoredis.map(([k]) => k);
    for (const [i, r] of (await ws.mget(keys)).entries()) assertHit(r, fromIoredis[i][1], `ws mget ${keys[i]}`);
    for (const [i, r] of (await h.http.mget(keys)).entries()) assertHit(r, fromIoredis[i][1], `http mget ${keys[i]}`);
    for (const [k, v] of fromIoredis) {
      assertHit(await ws.get(k), v, `ws get ${k.toString('latin1')}`);
      assertHit(await h.http.get(k), v, `http get ${k.toString('latin1')}`);
    }

    // redis-cli -x takes the value from stdin byte for byte (STRLEN proves nothing was added or stripped)
    await cliBytes(redis.port, ['-x', 'SET', 'cli:all'], ALL_BYTES);
    await cliBytes(redis.port, ['-x', 'SET', 'cli:16k1'], pattern(KIB16 + 1, 12));
    await cliBytes(redis.port, ['SET', 'cli:text', 'hello world']);
    assert.equal((await cliBytes(redis.port, ['STRLEN', 'cli:all'])).toString(), `${ALL_BYTES.length}\n`);
    for (const [k, v] of [
      ['cli:all', ALL_BYTES],
      ['cli:16k1', pattern(KIB16 + 1, 12)],
      ['cli:text', Buffer.from('hello world')],
    ] as const) {
      assertHit(await ws.get(k), v, `ws get ${k}`);
      assertHit(await h.http.get(k), v, `http get ${k}`);
    }

    // the reverse: written through each front, read by ioredis and redis-cli
    const written: [string, Buffer][] = [
      ['gw:ws:all', ALL_BYTES],
      ['gw:http:all', ALL_BYTES],
      ['gw:ws:16k1', pattern(KIB16 + 1, 13)],
      ['gw:http:1m', pattern(MIB, 14)],
    ];
    await ws.set(written[0][0], written[0][1]);
    await h.http.set(written[1][0], written[1][1]);
    await ws.set(written[2][0], written[2][1]);
    await h.http.set(written[3][0], written[3][1]);
    await ws.set(binKey, ALL_BYTES);
    assert.ok((await admin.getBuffer(binKey))!.equals(ALL_BYTES), 'binary key written over ws');
    for (const [k, v] of written) {
      assert.ok((await admin.getBuffer(k))!.equals(v), `ioredis reads ${k}`);
      assert.equal((await cliBytes(redis.port, ['STRLEN', k])).toString(), `${v.length}\n`, `STRLEN ${k}`);
      const range = await cliBytes(redis.port, ['GETRANGE', k, '0', '299']);
      assert.ok(range.equals(Buffer.concat([v.subarray(0, 300), Buffer.from('\n')])), `GETRANGE ${k}`);
      const tail = await cliBytes(redis.port, ['GETRANGE', k, String(v.length - 256), String(v.length - 1)]);
      assert.ok(tail.equals(Buffer.concat([v.subarray(v.length - 256), Buffer.from('\n')])), `GETRANGE tail ${k}`);
    }
    for (const k of ['gw:ws:all', 'gw:http:all']) {
      const repr = (await cliBytes(redis.port, ['--no-raw', 'GET', k])).toString('latin1');
      assert.ok(decodeRepr(repr).equals(ALL_BYTES), `redis-cli --no-raw GET ${k}: ${repr.slice(0, 60)}`);
    }
  });

  it('coalesces 200 single-key gets over 20 connections into at most one command per message (INFO)', async (t) => {
    const CONNS = 20;
    const PER = 10;
    const KEYS = 80;
    // connection c asks keys c*4 .. c*4+7 (mod 80), the first two twice: duplicates inside each message and
    // overlaps between neighbouring connections
    const keyOf = (c: number, j: number): string => `co:${(c * 4 + (j % 8)) % KEYS}`;
    const valueOf = (k: number): Buffer => Buffer.concat([Buffer.from(`co:${k}=`), pattern(64, k)]);
    const flat: (string | Buffer)[] = [];
    for (let k = 0; k < KEYS; k++) flat.push(`co:${k}`, valueOf(k));
    await admin.mset(...flat);
    // A gateway of its own: a get window starts from the size of the answers the gateway sent lately
    // (flow/get-window.ts), and the 1 MiB reads above would let each new connection issue only a few gets
    // at once, parking the rest until it drains. A fresh gateway starts at 32 KiB per key and 128 gets in
    // flight per connection: ten gets of one connection are all issued the moment their message is read.
    const g = await startPoolsHarness({
      pools: { r: { backend: 'redis', servers: [`127.0.0.1:${redis.port}`] } },
      defaultPool: 'r',
    });
    t.after(() => g.stop());
    // batchSends: each connection's ten gets leave in one WebSocket message (ten requests, not one mget)
    const clients = await Promise.all(Array.from({ length: CONNS }, () => g.ws({ ...wsOpts, batchSends: true })));
    const messages = { sent: 0 };
    for (const c of clients) {
      const send = c.socket.send.bind(c.socket);
      c.socket.send = ((...a: Parameters<typeof send>) => {
        messages.sent++;
        return send(...a);
      }) as typeof send;
    }
    const snapshot = async (): Promise<Record<string, string>> =>
      parseInfo((await admin.call('INFO', 'stats', 'commandstats')) as string);
    const shardWrites = async (): Promise<number> => {
      const s = (await adminJson(g.gw, '/debug/stats')) as unknown as {
        pools: Record<string, { shards: { writes: number }[] }>;
      };
      return s.pools.r.shards.reduce((n, x) => n + x.writes, 0);
    };
    const writes0 = await shardWrites();
    const before = await snapshot();
    const pending: Promise<void>[] = [];
    for (let c = 0; c < CONNS; c++)
      for (let j = 0; j < PER; j++) {
        const key = keyOf(c, j);
        const k = Number(key.slice(3));
        pending.push(clients[c].get(key).then((r) => assertHit(r, valueOf(k), `conn ${c} ${key}`)));
      }
    await Promise.all(pending);
    const afterInfo = await snapshot();
    const pipelines = (await shardWrites()) - writes0;

    const d = (f: string): number => Number(afterInfo[f]) - Number(before[f]);
    const commands =
      cmdCalls(afterInfo, 'get') + cmdCalls(afterInfo, 'mget') - cmdCalls(before, 'get') - cmdCalls(before, 'mget');
    // the first INFO is counted by the second; the second's read, by itself
    const total = d('total_commands_processed') - 1;
    const reads = d('total_reads_processed') - 1;
    const lookups = d('keyspace_hits') + d('keyspace_misses');
    const asked = CONNS * PER;
    t.diagnostic(
      `${asked} gets in ${messages.sent} messages -> ${commands} GET/MGET (${(asked / commands).toFixed(1)} keys per ` +
        `command), ${reads} reads, ${pipelines} pipelines, ${lookups} key lookups`,
    );
    assert.equal(messages.sent, CONNS, 'each connection sent its gets in one message');
    // A message is decoded in one turn and a flush leaves at the end of a turn as one pipeline holding one
    // MGET (or a GET for a single key): at most one command, one pipeline and one read per message.
    assert.ok(commands >= 1 && commands <= messages.sent, `${commands} GET/MGET for ${messages.sent} messages`);
    assert.ok(asked / commands >= asked / messages.sent, `keys per command ${asked / commands}`);
    assert.equal(total, commands, 'the gateway sent Redis nothing but GET/MGET');
    assert.ok(pipelines <= messages.sent, `${pipelines} pipelines`);
    assert.ok(reads >= 1 && reads <= pipelines, `${reads} network reads for ${pipelines} pipelines`);
    // duplicates in one flush are fetched once: at most 8 distinct keys per message, every key at least once
    assert.equal(d('keyspace_misses'), 0);
    assert.ok(lookups >= KEYS && lookups <= messages.sent * 8, `${lookups} key lookups`);
  });

  it('a bulk request spanning a memcached pool and the Redis pool: each item its result, each key its store', async () => {
    const items = [
      { key: 'mc:a', value: pattern(500, 21), flags: 42 },
      { key: 'r:a', value: pattern(500, 22) },
      { key: 'mc:b', value: ALL_BYTES },
      { key: 'r:b', value: ALL_BYTES, flags: 3 },
      { key: 'mc:c', value: pattern(KIB16 + 1, 23), ttl: 100 },
      { key: 'r:c', value: pattern(KIB16 + 1, 24), ttl: 100 },
      { key: 'mc:bad key', value: Buffer.from('x') },
      { key: 'r:d', value: Buffer.alloc(0) },
    ];
    const expected = ['ok', 'ok', 'ok', 'error:BAD_FLAGS', 'ok', 'ok', 'error:BAD_KEY', 'ok'];
    assert.deepEqual((await ws.mset(items)).map(show), expected);

    const onMembers = async (key: string): Promise<{ member: number; flags: number; value: Buffer }[]> => {
      const out = [];
      for (const [m, member] of fleet.members.entries()) {
        const v = await rawGet(member.port, key);
        if (v !== null) out.push({ member: m, flags: v.flags, value: v.value });
      }
      return out;
    };
    for (const [i, it] of items.entries()) {
      if (expected[i] !== 'ok') continue;
      const mc = await onMembers(it.key);
      const inRedis = await admin.getBuffer(it.key);
      if (it.key.startsWith('mc:')) {
        assert.equal(mc.length, 1, `${it.key} on ${mc.length} memcached members`);
        assert.ok(mc[0].value.equals(it.value), `${it.key} bytes in memcached`);
        assert.equal(mc[0].flags, it.flags ?? 0, `${it.key} flags in memcached`);
        assert.equal(inRedis, null, `${it.key} leaked into Redis`);
      } else {
        assert.equal(mc.length, 0, `${it.key} leaked into memcached`);
        assert.ok(inRedis?.equals(it.value), `${it.key} bytes in Redis`);
      }
    }
    assert.equal(await admin.exists('r:b'), 0, 'the refused Redis item was stored');
    assert.ok((await admin.ttl('r:c')) > 0);

    const keys = ['r:a', 'mc:a', 'mc:absent', 'r:absent', 'mc:b', 'r:c', 'mc:c', 'r:d', 'mc:bad key', 'r:b'];
    const want = (k: string): string => {
      const it = items.find((x) => x.key === k);
      if (k.includes(' ')) return 'error:BAD_KEY';
      if (it === undefined || k === 'r:b') return 'miss';
      return `hit:${it.value.length}:${it.key.startsWith('mc:') ? (it.flags ?? 0) : 0}`;
    };
    const check = (res: MgetResult[], what: string): void => {
      const got = res.map((r) => (!isItemError(r) && r.hit ? `hit:${r.value.length}:${r.flags}` : show(r)));
      assert.deepEqual(got, keys.map(want), what);
      for (const [i, r] of res.entries()) {
        if (!isItemError(r) && r.hit) assert.ok(r.value.equals(items.find((x) => x.key === keys[i])!.value), keys[i]);
      }
    };
    check(await ws.mget(keys), 'ws mget');
    check(await h.http.mget(keys), 'http msgpack mget');
    check(await h.http.mget(keys, { format: 'ndjson' }), 'http ndjson mget');

    // the same over HTTP mset, then deletes spanning both pools
    const more = [
      { key: 'mc:h', value: pattern(100, 31), flags: 9 },
      { key: 'r:h', value: pattern(100, 32) },
      { key: 'r:h2', value: pattern(100, 33), flags: 1 },
    ];
    assert.deepEqual((await h.http.mset(more, { format: 'ndjson' })).map(show), ['ok', 'ok', 'error:BAD_FLAGS']);
    assert.equal((await onMembers('mc:h'))[0]?.flags, 9);
    assert.ok((await admin.getBuffer('r:h'))?.equals(more[1].value));

    const del = ['mc:a', 'r:a', 'mc:absent', 'r:absent', 'mc:h', 'r:h'];
    assert.deepEqual((await ws.mdel(del)).map(show), [
      'deleted:true',
      'deleted:true',
      'deleted:false',
      'deleted:false',
      'deleted:true',
      'deleted:true',
    ]);
    for (const k of ['mc:a', 'mc:h']) assert.equal((await onMembers(k)).length, 0, `${k} still in memcached`);
    assert.equal(await admin.exists('r:a', 'r:h'), 0);
    assert.equal((await onMembers('mc:b')).length, 1, 'mdel touched a memcached key it did not name');
  });

  it("a frozen Redis: its items time out (TIMEOUT), and once it runs again every value is its own key's", async () => {
    const keys = Array.from({ length: 8 }, (_, i) => `frozen:${i}`);
    const values = keys.map((k, i) => Buffer.concat([Buffer.from(`${k}=`), pattern(KIB16 + 1 + i, i)]));
    assert.deepEqual(
      (await ws.mset(keys.map((key, i) => ({ key, value: values[i] })))).map(show),
      keys.map(() => 'ok'),
    );
    await freeze(redis.pid);
    const t0 = Date.now();

    try {
      // gets, a set and a delete sent while Redis cannot answer: each is answered TIMEOUT after the command
      // timeout (shard.timeoutMs), and their replies come later, when Redis runs again
      await Promise.all([
        rejects(ws.get(keys[0]), 'TIMEOUT', 'ws get'),
        rejects(h.http.get(keys[1]), 'TIMEOUT', 'http get'),
        ws
          .mget(keys.slice(2, 5))
          .then((r) => assert.deepEqual(r.map(show), ['error:TIMEOUT', 'error:TIMEOUT', 'error:TIMEOUT'])),
        rejects(ws.set(keys[5], 'maybe written'), 'TIMEOUT', 'ws set'),
        rejects(h.http.del(keys[6]), 'TIMEOUT', 'http del'),
        // memcached answers meanwhile
        ws
          .set('mc:frozen', 'fine')
          .then(() => ws.get('mc:frozen'))
          .then((r) => assertHit(r, Buffer.from('fine'), 'mc:frozen')),
      ]);
      assert.ok(Date.now() - t0 >= h.config.shard.timeoutMs * 0.9, `answered after ${Date.now() - t0} ms`);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    // The late replies reach the gateway's connection first: it must read them as theirs, not as answers
    // to what it asks next (a text protocol would be out of step here).
    for (let round = 0; round < 3; round++) {
      const res = await ws.mget(keys);
      for (const [i, r] of res.entries()) {
        if (i === 5) {
          assert.ok(!isItemError(r) && r.hit, `${keys[i]}: ${show(r)}`);
          assert.ok(
            r.value.equals(values[i]) || r.value.equals(Buffer.from('maybe written')),
            `${keys[i]}: wrong value`,
          );
        } else if (i === 6)
          assert.ok(show(r) === 'miss' || (!isItemError(r) && r.hit && r.value.equals(values[i])), keys[i]);
        else assertHit(r, values[i], `${keys[i]} after the thaw`);
      }
      for (const [i, k] of keys.entries()) if (i < 5 || i === 7) assertHit(await h.http.get(k), values[i], `http ${k}`);
    }
  });

  it('a Redis that is gone fails only its own items (SHARD_DOWN); the memcached pool keeps answering', async () => {
    await ws.set('gone:r', 'r');
    await ws.set('mc:gone', 'm', { flags: 4 });
    await redis.stop();
    await until(async () => (await h.http.health()).pools.r?.status === 'down', 5000, 'pool r to be down');
    const health = await h.http.health();
    assert.equal(health.pools.mc?.status, 'ok');
    assert.equal(health.status, 'degraded');
    const res = await ws.mget(['gone:r', 'mc:gone', 'gone:other']);
    assert.deepEqual(res.map(show), ['error:SHARD_DOWN', 'hit:1', 'error:SHARD_DOWN']);
    assert.deepEqual(
      (
        await h.http.mset([
          { key: 'gone:r', value: 'x' },
          { key: 'mc:gone2', value: 'y' },
        ])
      ).map(show),
      ['error:SHARD_DOWN', 'ok'],
    );
    await rejects(h.http.get('gone:r'), 'SHARD_DOWN', 'http get');
    await rejects(ws.set('gone:r', 'x'), 'SHARD_DOWN', 'ws set');
    assert.deepEqual((await ws.mdel(['gone:r', 'mc:gone2'])).map(show), ['error:SHARD_DOWN', 'deleted:true']);
  });
});
