/**
 * The memcached reply parser against replies cut at every offset: a real memcached behind a re-chunking
 * proxy (test/helpers/split-proxy.ts), the gateway in front of the proxy. Values are stored straight
 * into memcached (not through the proxy), then read, overwritten and deleted through the gateway, so
 * VALUE lines, value bytes, their \r\n, END and HD/NF lines all cross chunk boundaries; every result is
 * compared byte for byte with what was written. Then replies that stop (stall) or break off (connection
 * closed) part way: what a client sees must be a whole value or an error, never a wrong value.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { mergeConfig, validateConfig } from '../src/config/schema';
import { LocalFleet } from '../src/fleet/local-fleet';
import { startGateway, type Gateway } from '../src/gateway';
import { KvError, KvHttpClient, KvWsClient, type MgetResult } from './client';
import { prng, randomBytesFrom, rawGet, rawSet } from './helpers/mc-raw';
import { SplitProxy, type SplitMode } from './helpers/split-proxy';
import { until, testConfig } from './helpers/harness';

const SIZES = [0, 1, 2, 100, 16383, 16384, 16385, 65536];
type Item = { key: string; value: Buffer; flags: number };

/** Random bytes with reply-lookalikes planted in them, so a parser that scans values for lines fails. */
function trickyValue(rand: () => number, size: number): Buffer {
  const v = randomBytesFrom(rand, size);
  const traps = ['\r\n', 'END\r\n', '\r\nVALUE x 0 1\r\n', 'HD O0\r\n', '\n', '\r'];
  for (let t = 0; t < traps.length && size > 0; t++) {
    const trap = Buffer.from(traps[t]);
    if (trap.length > size) continue;
    const at = t === 0 ? size - trap.length : Math.floor(rand() * (size - trap.length + 1));
    trap.copy(v, at);
  }
  return v;
}

/** One dataset per scenario: every size, a 1-byte key and a 250-byte key, random flags. */
function dataset(tag: string, oneByteKey: string, seed: number): Item[] {
  const rand = prng(seed);
  const flags = (): number => Math.floor(rand() * 2 ** 32);
  const items: Item[] = SIZES.map((size) => ({
    key: `split:${tag}:v${size}`,
    value: trickyValue(rand, size),
    flags: flags(),
  }));
  items.push({ key: oneByteKey, value: trickyValue(rand, 100), flags: flags() });
  const long = `split:${tag}:`;
  items.push({ key: long + 'L'.repeat(250 - long.length), value: trickyValue(rand, 16385), flags: flags() });
  items.push({ key: long + 'Z'.repeat(250 - long.length), value: Buffer.alloc(0), flags: 0 });
  return items;
}

/** Keys to ask: hits interleaved with misses (first, middle, runs, last) and one duplicate. */
function askList(tag: string, items: Item[]): { keys: string[]; want: (Item | null)[] } {
  const keys: string[] = [`split:${tag}:miss:first`];
  const want: (Item | null)[] = [null];
  items.forEach((it, n) => {
    keys.push(it.key);
    want.push(it);
    if (n % 3 === 1) {
      keys.push(`split:${tag}:miss:${n}a`, `split:${tag}:miss:${n}b`);
      want.push(null, null);
    }
  });
  keys.push(items[3].key);
  want.push(items[3]);
  keys.push(`split:${tag}:miss:last`);
  want.push(null);
  return { keys, want };
}

function checkMget(how: string, res: MgetResult[], want: (Item | null)[], keys: string[]): void {
  assert.equal(res.length, want.length);
  want.forEach((w, n) => {
    const r = res[n];
    if (w === null) {
      assert.deepEqual(r, { hit: false }, `${how}: ${keys[n]} should miss`);
      return;
    }
    assert.ok('hit' in r && r.hit, `${how}: ${keys[n]} should hit, got ${JSON.stringify(r).slice(0, 200)}`);
    assert.equal(r.flags, w.flags, `${how}: ${keys[n]} flags`);
    assert.equal(r.value.length, w.value.length, `${how}: ${keys[n]} length`);
    assert.ok(r.value.equals(w.value), `${how}: ${keys[n]} bytes differ`);
  });
}

/** Counts the reads the gateway's reply parser gets from its one shard, from the connection's counters. */
function countReads(gw: Gateway): { reads: number; bytes: number; stop(): void } {
  const conn = gw.shards[0];
  const r0 = conn.reads,
    b0 = conn.bytesRead;
  return {
    get reads() {
      return conn.reads - r0;
    },
    get bytes() {
      return conn.bytesRead - b0;
    },
    stop(): void {},
  };
}

/** A GET over a raw socket: the head, every body byte that came, and whether the server closed. */
function rawHttpGet(
  port: number,
  path: string,
  waitMs: number,
): Promise<{ head: string; body: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let closed = false;
    const finish = (): void => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const he = all.indexOf('\r\n\r\n');
      s.destroy();
      resolve({
        head: he < 0 ? all.toString('latin1') : all.toString('latin1', 0, he + 2),
        body: he < 0 ? Buffer.alloc(0) : all.subarray(he + 4),
        closed,
      });
    };
    const timer = setTimeout(finish, waitMs);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => {
      closed = true;
      finish();
    });
    s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  });
}

interface Rig {
  fleet: LocalFleet;
  proxy: SplitProxy;
  gw: Gateway;
  ws: KvWsClient;
  http: KvHttpClient;
  mcPort: number;
}

async function startRig(shard: Record<string, number>): Promise<Rig> {
  const fleet = await LocalFleet.start({ count: 1, memoryMb: 64, itemSizeMb: 2 });
  const mcPort = fleet.members[0].port;
  const proxy = await SplitProxy.start(mcPort);
  const config = validateConfig(
    mergeConfig(testConfig(), {
      port: 0,
      admin: { port: 0 },
      log: { level: 'silent' },
      servers: [`127.0.0.1:${proxy.port}`],
      shard,
    }),
  );
  const gw = await startGateway(config);
  const ws = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
  return { fleet, proxy, gw, ws, http: new KvHttpClient(`http://127.0.0.1:${gw.port}`), mcPort };
}

async function stopRig(r: Rig | undefined): Promise<void> {
  if (!r) return;
  r.ws.terminate();
  await r.gw.stop();
  await r.proxy.close();
  await r.fleet.stop();
}

describe('memcached replies split at every offset', () => {
  let rig: Rig;
  before(async () => {
    // Generous timeout: one byte per event-loop turn is slow, and a timeout here would be the test's fault.
    rig = await startRig({ timeoutMs: 20_000 });
  });
  after(async () => {
    await stopRig(rig);
  });

  /**
   * Reads, overwrites and deletes a dataset through the gateway while the proxy re-chunks replies.
   * `light`: the full dataset crosses the proxy once (one WS mget); the other paths read only the small
   * values, so that byte-at-a-time runs stay fast. `smallOnly`: big values never cross (the one-byte run
   * already took them byte by byte). Big values written through the gateway are checked in memcached.
   */
  async function scenario(
    tag: string,
    oneByteKey: string,
    seed: number,
    mode: SplitMode,
    opts: { light?: boolean; smallOnly?: boolean } = {},
  ): Promise<{ reads: number; bytes: number }> {
    const { ws, http, proxy, mcPort } = rig;
    const items = dataset(tag, oneByteKey, seed);
    for (const it of items) await rawSet(mcPort, it.key, it.value, it.flags);
    const small =
      opts.light || opts.smallOnly
        ? askList(
            tag,
            items.filter((it) => it.value.length <= 100),
          )
        : askList(tag, items);
    const full = opts.smallOnly ? small : askList(tag, items);
    const isSmall = (it: Item): boolean => !(opts.light || opts.smallOnly) || it.value.length <= 100;

    proxy.setMode(mode);
    const counter = countReads(rig.gw);
    try {
      checkMget(`${tag} WS mget`, await ws.mget(full.keys), full.want, full.keys);
      const { keys, want } = small;
      // single-key gets in one burst: one multi-get whose waiters are separate requests
      const singles = await Promise.all(keys.map((k) => ws.get(k)));
      checkMget(`${tag} WS gets`, singles, want, keys);
      checkMget(`${tag} HTTP mget msgpack`, await http.mget(keys), want, keys);
      checkMget(`${tag} HTTP mget ndjson`, await http.mget(keys, { format: 'ndjson' }), want, keys);
      for (const it of items.filter(isSmall)) {
        assert.deepEqual(
          await http.get(it.key),
          { hit: true, value: it.value, flags: it.flags },
          `${tag} HTTP GET ${it.key}`,
        );
      }
      assert.deepEqual(await http.get(`split:${tag}:miss:http`), { hit: false });

      // overwrite through the gateway (HD lines), with a get of the same keys in the same flush
      const rand = prng(seed + 1);
      const next = items.map((it) => ({
        key: it.key,
        value: trickyValue(rand, it.value.length),
        flags: (it.flags ^ 0x5a5a5a5a) >>> 0,
      }));
      const readKeys = next.filter(isSmall);
      const [stored, readBack] = await Promise.all([ws.mset(next), ws.mget(readKeys.map((it) => it.key))]);
      assert.deepEqual(
        stored,
        next.map(() => ({ ok: true })),
        `${tag} mset`,
      );
      checkMget(
        `${tag} mget in the same flush as the mset`,
        readBack,
        readKeys,
        readKeys.map((it) => it.key),
      );
      for (const it of next) {
        const got = await rawGet(mcPort, it.key);
        assert.ok(
          got && got.value.equals(it.value) && got.flags === it.flags,
          `${tag}: memcached holds the new ${it.key}`,
        );
      }
      // deletes of present and absent keys (HD and NF), mixed with sets and a single del
      const delKeys = [next[0].key, `split:${tag}:miss:del1`, next[5].key, `split:${tag}:miss:del2`, next[9].key];
      const [dels, single, reset] = await Promise.all([
        ws.mdel(delKeys),
        ws.del(next[7].key),
        ws.set(next[4].key, 'after', { flags: 1 }),
      ]);
      assert.deepEqual(
        dels,
        [{ deleted: true }, { deleted: false }, { deleted: true }, { deleted: false }, { deleted: true }],
        `${tag} mdel`,
      );
      assert.equal(single, true);
      assert.equal(reset, undefined);
      for (const k of [next[0].key, next[5].key, next[9].key, next[7].key])
        assert.equal(await rawGet(mcPort, k), null, `${tag}: ${k} deleted`);
      assert.deepEqual(await ws.get(next[4].key), { hit: true, value: Buffer.from('after'), flags: 1 });
      assert.equal(await http.del(next[1].key), true);
      assert.equal(await http.del(next[1].key), false);
      await http.set(next[1].key, next[2].value, { flags: 77 });
      assert.deepEqual(await http.get(next[1].key), { hit: true, value: next[2].value, flags: 77 });
    } finally {
      counter.stop();
      proxy.setMode({ kind: 'pass' });
    }
    return { reads: counter.reads, bytes: counter.bytes };
  }

  it('one byte per write', async () => {
    const before = rig.proxy.connections;
    const { reads, bytes } = await scenario('one', '1', 11, { kind: 'bytes', size: 1 }, { light: true });
    assert.equal(rig.proxy.connections, before, 'no reconnect happened (a parse error would reset the connection)');
    assert.equal(rig.gw.shards[0].resets, 0, 'the shard connection was never reset');
    // the point of the exercise: the gateway really read the replies a byte or so at a time
    assert.ok(bytes > 130_000, `replies carried ${bytes} bytes`);
    assert.ok(reads > bytes * 0.8, `the gateway read ${bytes} bytes in only ${reads} reads`);
  });

  for (const [seed, max] of [
    [101, 3],
    [202, 17],
    [303, 600],
    [404, 20_000],
  ] as const) {
    it(`random split points (seed ${seed}, chunks of 1..${max} bytes)`, async () => {
      const { reads, bytes } = await scenario(
        `rnd${seed}`,
        String.fromCharCode(0x41 + (seed % 26)),
        seed,
        { kind: 'random', seed, max },
        { smallOnly: max < 100 },
      );
      assert.equal(rig.gw.shards[0].resets, 0, 'the shard connection was never reset');
      assert.ok(reads > bytes / (max * 1.5 + 1), `the gateway read ${bytes} bytes in ${reads} reads`);
    });
  }

  it('replies to two pipelined batches delivered in one write', async () => {
    const { ws, proxy, mcPort, gw } = rig;
    const items = dataset('two', '2', 7).filter((it) => it.value.length <= 16385);
    for (const it of items) await rawSet(mcPort, it.key, it.value, it.flags);
    const { keys, want } = askList('two', items);
    const shard = gw.shards[0];
    proxy.setMode({ kind: 'hold' });
    const writesBefore = proxy.writes;

    // batch 1: a multi-get; its reply is held by the proxy
    const first = ws.mget(keys);
    await until(() => shard.inflightBatches === 1, 2000, 'batch 1 sent');
    await until(
      () => proxy.held > 0 && proxy.heldBytes().subarray(-5).toString() === 'END\r\n',
      2000,
      'memcached answered batch 1',
    );
    const heldAfterFirst = proxy.held;
    // batch 2 (next flush): sets + deletes, and a multi-get, while batch 1 is still unanswered
    const fresh = items
      .slice(0, 4)
      .map((it, n) => ({ key: it.key, value: Buffer.from(`fresh ${n} \r\nEND\r\n`), flags: n }));
    const second = Promise.all([
      ws.mset(fresh),
      ws.mdel([items[5].key, 'split:two:miss:del']),
      ws.mget([...fresh.map((f) => f.key), items[5].key, 'split:two:miss:z']),
    ]);
    await until(() => shard.inflightBatches === 3, 2000, 'batch 2 (mutations + gets) sent behind batch 1');
    await until(
      () => proxy.held > heldAfterFirst && proxy.heldBytes().subarray(-5).toString() === 'END\r\n',
      2000,
      'memcached answered batch 2',
    );
    assert.equal(shard.inflightBatches, 3, 'nothing answered yet');

    await proxy.release();
    assert.equal(proxy.writes, writesBefore + 1, 'all replies went to the gateway in one write');
    checkMget('batch 1', await first, want, keys);
    const [stored, dels, got] = await second;
    assert.deepEqual(
      stored,
      fresh.map(() => ({ ok: true })),
    );
    assert.deepEqual(dels, [{ deleted: true }, { deleted: false }]);
    checkMget('batch 2', got, [...fresh, null, null], [...fresh.map((f) => f.key), items[5].key, 'split:two:miss:z']);
    assert.equal(shard.inflightBatches, 0);
    assert.equal(shard.resets, 0);

    // and the same again, but the combined replies then trickle in one byte at a time
    proxy.setMode({ kind: 'hold' });
    const third = ws.mget(keys.slice(0, 6));
    await until(
      () => shard.inflightBatches === 1 && proxy.heldBytes().subarray(-5).toString() === 'END\r\n',
      2000,
      'batch 3 answered',
    );
    const held3 = proxy.held;
    const fourth = ws.mget(fresh.map((f) => f.key));
    await until(
      () =>
        shard.inflightBatches === 2 && proxy.held > held3 && proxy.heldBytes().subarray(-5).toString() === 'END\r\n',
      2000,
      'batch 4 answered',
    );
    proxy.setMode({ kind: 'bytes', size: 1 });
    checkMget(
      'batch 3',
      await third,
      want.slice(0, 6).map((w) => (w && fresh.find((f) => f.key === w.key)) ?? w),
      keys.slice(0, 6),
    );
    checkMget(
      'batch 4',
      await fourth,
      fresh,
      fresh.map((f) => f.key),
    );
    proxy.setMode({ kind: 'pass' });
  });
});

describe('a reply cut off in the middle of a value', () => {
  let rig: Rig;
  const timeoutMs = 300;
  const big = trickyValue(prng(5), 65536);
  // the VALUE line and 30000 of the 65536 value bytes reach the gateway, then nothing
  const cutAt = `VALUE split:cut:big 9 65536\r\n`.length + 30_000;
  before(async () => {
    rig = await startRig({ timeoutMs, connectTimeoutMs: 500, reconnectMinMs: 20, reconnectMaxMs: 100 });
    await rawSet(rig.mcPort, 'split:cut:big', big, 9);
    await rawSet(rig.mcPort, 'split:cut:small', Buffer.from('small'), 3);
  });
  after(async () => {
    await stopRig(rig);
  });

  /** Runs `fn` while the proxy stalls after `cutAt` bytes, then lets replies through and waits for the reconnect. */
  async function withCut<T>(fn: () => Promise<T>): Promise<T> {
    rig.proxy.setMode({ kind: 'stall', after: cutAt });
    try {
      return await fn();
    } finally {
      rig.proxy.setMode({ kind: 'pass' });
      await until(() => rig.gw.shards[0].up, 2000, 'the gateway reconnected');
    }
  }

  it('the stalled connection is reset after timeoutMs; items fail TIMEOUT; the next reads get the whole value', async () => {
    const resets = rig.gw.shards[0].resets;
    // a stall after cutAt bytes does not touch a reply shorter than that
    assert.deepEqual(await withCut(() => rig.http.mget(['split:cut:small'], { format: 'ndjson' })), [
      { hit: true, value: Buffer.from('small'), flags: 3 },
    ]);
    assert.equal(rig.gw.shards[0].resets, resets);
    const t0 = Date.now();
    const r = await withCut(() => rig.http.mget(['split:cut:big', 'split:cut:small'], { format: 'ndjson' }));
    const ms = Date.now() - t0;
    assert.equal((r[0] as { error?: { code: string } }).error?.code, 'TIMEOUT', 'the cut value');
    assert.equal((r[1] as { error?: { code: string } }).error?.code, 'TIMEOUT', 'the key after the cut value');
    assert.ok(ms >= timeoutMs * 0.9, `failed after ${ms} ms, before timeoutMs`);
    assert.ok(rig.gw.shards[0].resets > resets, 'the stalled connection was dropped');
    const ws = await KvWsClient.connect(`ws://127.0.0.1:${rig.gw.port}/v1/ws`);
    try {
      assert.deepEqual(await ws.get('split:cut:big'), { hit: true, value: big, flags: 9 });
      assert.deepEqual(await ws.mget(['split:cut:big', 'split:cut:small']), [
        { hit: true, value: big, flags: 9 },
        { hit: true, value: Buffer.from('small'), flags: 3 },
      ]);
    } finally {
      ws.terminate();
    }
    assert.deepEqual(await rig.http.get('split:cut:big'), { hit: true, value: big, flags: 9 });
  });

  it('HTTP GET of the cut value: a short body and a closed connection, never a wrong or padded body', async () => {
    // PROTOCOL.md: the 200 head with its Content-Length is out when the shard fails, so the gateway closes
    // the connection; the client must see fewer bytes than announced, all of them the value's own.
    const t0 = Date.now();
    const raw = await withCut(() => rawHttpGet(rig.gw.port, '/v1/kv/split:cut:big', timeoutMs + 3000));
    const ms = Date.now() - t0;
    assert.ok(
      raw.closed,
      `the connection was not closed within ${timeoutMs + 3000} ms (${raw.body.length} body bytes)`,
    );
    assert.match(raw.head, /^HTTP\/1\.1 200 /);
    assert.match(raw.head, /\r\ncontent-length: 65536\r\n/i);
    assert.ok(raw.body.length < big.length, `the body is ${raw.body.length} bytes: a cut value must not look complete`);
    assert.ok(
      raw.body.equals(big.subarray(0, raw.body.length)),
      "every body byte is the value's own (no error text appended)",
    );
    assert.ok(ms >= timeoutMs * 0.9 && ms < timeoutMs + 2000, `closed after ${ms} ms`);
    // fetch reports it as an error, not as a value
    const viaFetch = await withCut(async () => {
      try {
        const r = await fetch(`${rig.http.baseUrl}/v1/kv/split:cut:big`, {
          signal: AbortSignal.timeout(timeoutMs + 3000),
        });
        return { ok: true, status: r.status, len: (await r.arrayBuffer()).byteLength };
      } catch (e) {
        return { ok: false, name: (e as Error).name };
      }
    });
    assert.deepEqual(
      viaFetch,
      { ok: false, name: 'TypeError' },
      'fetch fails (terminated), it does not time out or resolve',
    );
  });

  it('WebSocket mget of the cut value: its parts stop short, then one ERROR (TIMEOUT) for it and for the key after it', async () => {
    const ws = await KvWsClient.connect(`ws://127.0.0.1:${rig.gw.port}/v1/ws`);
    const kinds: string[] = [];
    ws.onEntry = (e) => kinds.push(e.kind === 'error' ? `error:${e.code}` : e.kind);
    try {
      const r = await withCut(() =>
        ws.mget(['split:cut:big', 'split:cut:small']).then(
          (v) => ({ v }),
          (e: KvError) => ({ code: e.code, message: e.message }),
        ),
      );
      assert.ok('v' in r, `the request failed as a whole: ${JSON.stringify(r)} after entries ${kinds.join(', ')}`);
      assert.equal((r.v[0] as { error?: { code: string } }).error?.code, 'TIMEOUT');
      assert.equal(
        (r.v[1] as { error?: { code: string } }).error?.code,
        'TIMEOUT',
        'the key after the cut value fails too',
      );
      // what went over the wire: some parts of item 0 (never all of them), then the ERRORs, then END
      const firstError = kinds.findIndex((k) => k.startsWith('error'));
      assert.ok(firstError > 0 && kinds.slice(0, firstError).every((k) => k === 'part'), kinds.join(', '));
      assert.deepEqual(kinds.slice(firstError), ['error:TIMEOUT', 'error:TIMEOUT', 'end']);
      assert.equal(ws.socket.readyState, 1, 'the connection stays open');
      assert.deepEqual(await ws.get('split:cut:small'), { hit: true, value: Buffer.from('small'), flags: 3 });
    } finally {
      ws.terminate();
    }
  });

  it('HTTP mget (msgpack) of the cut value: incomplete parts, then one ERROR for it', async () => {
    const r = await withCut(() =>
      rig.http.mget(['split:cut:big', 'split:cut:small']).then(
        (v) => ({ v }),
        (e: KvError) => ({ code: e.code, message: e.message }),
      ),
    );
    assert.ok('v' in r, `the response broke the contract: ${JSON.stringify(r)}`);
    assert.equal((r.v[0] as { error?: { code: string } }).error?.code, 'TIMEOUT');
    assert.equal((r.v[1] as { error?: { code: string } }).error?.code, 'TIMEOUT');
  });
});

describe('a connection cut at every offset of a reply', () => {
  let rig: Rig;
  before(async () => {
    rig = await startRig({ timeoutMs: 5000, connectTimeoutMs: 500, reconnectMinMs: 1, reconnectMaxMs: 5 });
  });
  after(async () => {
    await stopRig(rig);
  });

  it('answered items keep their values, a reply cut before any answer is retried, the rest fail SHARD_DOWN; never a wrong value', async () => {
    const { ws, proxy, mcPort, gw } = rig;
    const shard = gw.shards[0];
    const hits: Item[] = [
      { key: 'split:every:a', value: Buffer.from('alpha'), flags: 1 },
      { key: 'split:every:b', value: Buffer.alloc(0), flags: 2 },
      { key: 'split:every:c', value: Buffer.from('c\r\nEND\r\nVALUE split:every:d 0 3\r\n'), flags: 3 },
      { key: 'split:every:d', value: Buffer.from('dd\n'), flags: 4 },
    ];
    for (const it of hits) await rawSet(mcPort, it.key, it.value, it.flags);
    const ask: (Item | string)[] = [
      'split:every:miss0',
      hits[0],
      'split:every:miss1',
      hits[1],
      hits[2],
      'split:every:miss2',
      hits[3],
      'split:every:miss3',
    ];
    const keys = ask.map((a) => (typeof a === 'string' ? a : a.key));
    // the reply memcached sends, and where each hit's last data byte and its VALUE line end
    let reply = 0;
    const dataEnd = new Map<string, number>();
    let firstLineEnd = -1;
    for (const it of hits) {
      reply += `VALUE ${it.key} ${it.flags} ${it.value.length}\r\n`.length;
      if (firstLineEnd < 0) firstLineEnd = reply;
      reply += it.value.length;
      dataEnd.set(it.key, reply);
      reply += 2;
    }
    reply += 'END\r\n'.length;

    let retried = 0;
    let failedSome = 0;
    for (let cut = 0; cut <= reply; cut++) {
      const retriesBefore = shard.retries;
      proxy.setMode({ kind: 'cut', after: cut });
      const res = await ws.mget(keys);
      const where = `cut after ${cut} of ${reply} bytes`;
      let failures = 0;
      ask.forEach((a, n) => {
        const r = res[n];
        if ('error' in r) {
          assert.equal(r.error.code, 'SHARD_DOWN', `${where}: ${keys[n]}`);
          failures++;
          // A value counts as arrived only with the \r\n that closes it (its framing is checked first).
          if (typeof a !== 'string')
            assert.ok(dataEnd.get(a.key)! + 2 > cut, `${where}: ${a.key} fully arrived, yet failed`);
          return;
        }
        if (typeof a === 'string') assert.deepEqual(r, { hit: false }, `${where}: ${a}`);
        else assert.deepEqual(r, { hit: true, value: a.value, flags: a.flags }, `${where}: ${a.key}`);
      });
      if (cut < firstLineEnd) {
        // no item was answered before the cut: the gateway sent the get again, once, and it all came back
        assert.equal(failures, 0, `${where}: nothing had been answered, so the get is retried`);
        if (cut < reply) assert.equal(shard.retries, retriesBefore + 1, `${where}: one retry`);
      }
      if (cut >= reply) assert.equal(failures, 0, `${where}: the whole reply arrived`);
      if (shard.retries > retriesBefore) retried++;
      if (failures > 0) failedSome++;
      // the cut connection is gone; wait for the gateway to be connected again before the next round
      await until(
        () => shard.up && proxy.liveConnections === 1 && proxy.mode.kind === 'pass',
        2000,
        `reconnected after ${where}`,
      );
    }
    assert.ok(proxy.cuts >= reply, `the proxy cut ${proxy.cuts} connections`);
    assert.ok(
      retried >= firstLineEnd && failedSome > 0,
      `retried ${retried} rounds, ${failedSome} rounds had failures`,
    );
    // and the connection is healthy afterwards
    assert.deepEqual(
      await ws.mget(keys),
      ask.map((a) => (typeof a === 'string' ? { hit: false } : { hit: true, value: a.value, flags: a.flags })),
    );
  });
});
