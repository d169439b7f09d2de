/**
 * @kvgate/client (packages/client, imported as the package, through its /node entry and the `ws` peer)
 * against real gateways in front of real memcached:
 *  - every op, over WebSocket and HTTP, with string and byte keys and values of many sizes (past 16 KiB,
 *    so they come back as VALUE_PART runs);
 *  - auto-batching: 1,000 calls issued in one tick arrive at the gateway as one frame (the gateway's own
 *    `ws.messages` counter), and `maxInFlight` holds the rest client-side (a gateway whose
 *    `limits.maxInflightPerConnection` is that bound answers none of them BUSY, one with a larger client does);
 *  - abort and timeout, before and after a request was sent (the gateway holds requests with `wait`);
 *  - a connection cut while requests are held at the gateway (a TCP proxy of the test's own), then a real
 *    gateway restart behind the same address: gets are resent, writes reject as maybe applied, the client reconnects;
 *  - credentials: API key by option, refused ones, `auth` refresh, and a JWT that expires (4001) renewed
 *    through `onAuthExpired`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, createHttpClient, isError, KvError, type KvClient } from '@kvgate/client/node';
import { startHarness, testConfig, until, type Harness } from './helpers/harness';
import { mergeConfig, validateConfig } from '../src/config/schema';
import { LocalFleet } from '../src/fleet/local-fleet';
import { startGateway, type Gateway } from '../src/gateway';
import { Authenticator } from '../src/security/authenticator';
import { hmacSecret, signJwt } from './helpers/tokens';
import { startTcpProxy } from './helpers/tcp-proxy';

const KB = 1024;
const SIZES = [0, 1, 100, 16 * KB - 64, 16 * KB, 16 * KB + 1, 50 * KB, 300 * KB, 1000 * KB];
const bytesOf = (n: number, seed: number): Uint8Array => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
};
const same = (a: Uint8Array | null | undefined, b: Uint8Array): boolean =>
  a != null &&
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

async function rejectsCode(p: Promise<unknown>, code: string): Promise<KvError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KvError, `not a KvError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`resolved, expected ${code}`);
}

describe('@kvgate/client against a gateway', () => {
  let h: Harness;
  let c: KvClient;
  const p = `pkg:${randomBytes(4).toString('hex')}:`;
  before(async () => {
    h = await startHarness({ batch: { maxWaitMs: 3000 } }, 3);
    c = await connect(h.wsUrl);
  });
  after(async () => {
    await c?.close();
    await h?.stop();
  });

  it('get, set, del, mget, mgetIter, mset, mdel over WebSocket with string and byte keys', async () => {
    const bkey = new Uint8Array([...Buffer.from(p), 0xc3, 0xa9, 0x80]); // not valid UTF-8: goes as bin
    await c.set(`${p}a`, 'hello', { flags: 42, ttl: 60 });
    await c.set(bkey, new Uint8Array([0, 1, 2]));
    assert.equal(Buffer.from((await c.get(`${p}a`))!).toString(), 'hello');
    assert.deepEqual(await c.getItem(`${p}a`), { hit: true, value: new Uint8Array(Buffer.from('hello')), flags: 42 });
    assert.ok(same(await c.get(bkey), new Uint8Array([0, 1, 2])));
    assert.equal(await c.get(`${p}absent`), null);
    assert.equal(await c.del(`${p}a`), true);
    assert.equal(await c.del(`${p}a`), false);

    const items = Array.from({ length: 20 }, (_, i) => ({ key: `${p}m${i}`, value: `v${i}`, flags: i }));
    const ms = await c.mset(items);
    assert.deepEqual(
      ms,
      items.map(() => ({ ok: true })),
    );
    const keys = [...items.map((x) => x.key), `${p}nope`, bkey];
    const got = await c.mget(keys);
    assert.equal(got.length, 22);
    items.forEach((it, i) =>
      assert.deepEqual(got[i], { hit: true, value: new Uint8Array(Buffer.from(it.value)), flags: i }),
    );
    assert.deepEqual(got[20], { hit: false });
    assert.ok('hit' in got[21] && got[21].hit && same(got[21].value, new Uint8Array([0, 1, 2])));

    const seen = new Map<number, unknown>();
    for await (const item of c.mgetIter(keys)) {
      assert.equal(item.key, keys[item.i]);
      assert.ok(!seen.has(item.i), `item ${item.i} twice`);
      seen.set(item.i, item.result);
    }
    assert.deepEqual(
      [...seen.keys()].sort((a, b) => a - b),
      keys.map((_, i) => i),
    );
    assert.deepEqual(seen.get(3), got[3]);

    const md = await c.mdel([items[0].key, `${p}nope`, items[1].key]);
    assert.deepEqual(md, [{ deleted: true }, { deleted: false }, { deleted: true }]);
    // A per-item error is that item's result; a bad single key rejects with the gateway's code and hint.
    const bad = await c.mget([items[2].key, 'has space']);
    assert.ok(isError(bad[1]) && bad[1].error.code === 'BAD_KEY');
    assert.ok(!isError(bad[0]));
    const e = await rejectsCode(c.set('has space', 'x'), 'BAD_KEY');
    assert.equal(e.retry, 'no');
    assert.equal(e.source, 'gateway');
  });

  it('binary values of every size round-trip, past 16 KiB as VALUE_PART runs (WebSocket and HTTP)', async () => {
    const http = createHttpClient(h.base);
    await Promise.all(SIZES.map((n, i) => c.set(`${p}size:${n}`, bytesOf(n, i))));
    for (const [i, n] of SIZES.entries()) {
      assert.ok(same(await c.get(`${p}size:${n}`), bytesOf(n, i)), `ws get of ${n} bytes`);
      assert.ok(same(await http.get(`${p}size:${n}`), bytesOf(n, i)), `http get of ${n} bytes`);
    }
    const all = await c.mget(SIZES.map((n) => `${p}size:${n}`));
    all.forEach((r, i) => assert.ok('hit' in r && r.hit && same(r.value, bytesOf(SIZES[i], i)), `mget ${SIZES[i]}`));
    for (const format of ['msgpack', 'ndjson'] as const) {
      const viaHttp = await http.mget(
        SIZES.map((n) => `${p}size:${n}`),
        { format },
      );
      viaHttp.forEach((r, i) =>
        assert.ok('hit' in r && r.hit && same(r.value, bytesOf(SIZES[i], i)), `${format} ${SIZES[i]}`),
      );
    }
  });

  it('HTTP: get, set, del, mget (both formats, streamed), mset', async () => {
    const http = createHttpClient(h.base);
    await http.set(`${p}h`, new Uint8Array([9, 8, 7]), { flags: 5 });
    assert.deepEqual(await http.getItem(`${p}h`), { hit: true, value: new Uint8Array([9, 8, 7]), flags: 5 });
    assert.equal(await http.get(`${p}h:absent`), null);
    assert.equal(await http.del(`${p}h`), true);
    assert.equal(await http.del(`${p}h`), false);
    for (const format of ['msgpack', 'ndjson'] as const) {
      const items = [
        { key: `${p}h:${format}:1`, value: 'text' },
        { key: `${p}h:${format}:2`, value: new Uint8Array([0xff, 0x00]) },
        { key: 'bad key', value: 'x' },
      ];
      const r = await http.mset(items, { format });
      assert.deepEqual(r.slice(0, 2), [{ ok: true }, { ok: true }]);
      assert.ok(isError(r[2]) && r[2].error.code === 'BAD_KEY');
      const got = await http.mget([items[0].key, items[1].key, `${p}none`], { format });
      assert.deepEqual(got, [
        { hit: true, value: new Uint8Array(Buffer.from('text')), flags: 0 },
        { hit: true, value: new Uint8Array([0xff, 0x00]), flags: 0 },
        { hit: false },
      ]);
      const order: number[] = [];
      for await (const it of http.mgetIter([items[0].key, items[1].key], { format })) order.push(it.i);
      assert.deepEqual(
        order.sort((a, b) => a - b),
        [0, 1],
      );
    }
    await rejectsCode(http.set('bad key', 'x'), 'BAD_KEY');
  });

  it('1,000 calls issued in one tick reach the gateway as one frame', async () => {
    const frames0 = h.gw.ws.counters.messages;
    const sent0 = c.stats.framesSent;
    const sets = Array.from({ length: 1000 }, (_, i) => c.set(`${p}batch:${i}`, `v${i}`));
    await Promise.all(sets);
    assert.equal(h.gw.ws.counters.messages - frames0, 1, 'the sets');
    const gets = await Promise.all(Array.from({ length: 1000 }, (_, i) => c.get(`${p}batch:${i}`)));
    assert.equal(h.gw.ws.counters.messages - frames0, 2, 'then the gets');
    assert.equal(c.stats.framesSent - sent0, 2);
    gets.forEach((v, i) => assert.equal(Buffer.from(v!).toString(), `v${i}`));
  });

  it('a frame is cut at maxFrameBytes without splitting a request', async () => {
    const small = await connect(h.wsUrl, { maxFrameBytes: 4 * KB });
    try {
      const frames0 = h.gw.ws.counters.messages;
      const v = bytesOf(1000, 3);
      await Promise.all(Array.from({ length: 40 }, (_, i) => small.set(`${p}cut:${i}`, v)));
      const frames = h.gw.ws.counters.messages - frames0;
      // About 1,030 bytes per request, 3 per 4 KiB frame: 14 frames.
      assert.equal(frames, 14);
      const got = await small.mget(Array.from({ length: 40 }, (_, i) => `${p}cut:${i}`));
      assert.ok(got.every((r) => 'hit' in r && r.hit && same(r.value, v)));
      await rejectsCode(small.set(`${p}cut:big`, bytesOf(5 * KB, 1)), 'TOO_LARGE');
    } finally {
      await small.close();
    }
  });

  it('abort: before sending (nothing sent), and after (rejects at once, the slot stays taken until END)', async () => {
    const ctl = new AbortController();
    ctl.abort();
    const sent0 = c.stats.framesSent;
    const e0 = await rejectsCode(c.get(`${p}x`, { signal: ctl.signal }), 'ABORTED');
    assert.equal(e0.retry, 'after');
    assert.equal(c.stats.framesSent, sent0);

    // Held at the gateway for 1.5 s by the wait hint; aborted after it left.
    const ctl2 = new AbortController();
    const t0 = Date.now();
    const held = c.set(`${p}abort`, 'applied anyway', { wait: 1500, signal: ctl2.signal });
    await until(() => c.stats.inFlight === 1, 2000, 'the set sent');
    ctl2.abort();
    const e = await rejectsCode(held, 'ABORTED');
    assert.ok(Date.now() - t0 < 1000, 'rejected at once');
    assert.equal(e.maybeApplied, true);
    assert.equal(c.stats.inFlight, 1, 'still in flight at the gateway');
    await until(() => c.stats.inFlight === 0, 5000, 'the END');
    assert.equal(Buffer.from((await c.get(`${p}abort`))!).toString(), 'applied anyway');
  });

  it('timeout: a call not answered in time rejects TIMEOUT (source client); a write may have been applied', async () => {
    const t0 = Date.now();
    const e = await rejectsCode(c.set(`${p}late`, 'late', { wait: 1000, timeout: 100 }), 'TIMEOUT');
    const took = Date.now() - t0;
    // libuv measures timers from the loop's cached start-of-turn time, so one may fire a millisecond or two
    // before Date.now() says 100 ms have passed: the point is that it waited, and not for the gateway.
    assert.ok(took >= 95 && took < 900, `took ${took} ms`);
    assert.equal(e.source, 'client');
    assert.equal(e.maybeApplied, true);
    assert.equal(e.retry, 'idempotent');
    const g = await rejectsCode(c.get(`${p}late`, { wait: 1000, timeout: 100 }), 'TIMEOUT');
    assert.equal(g.maybeApplied, false);
    await until(() => c.stats.inFlight === 0, 5000, 'the ENDs');
    assert.equal(Buffer.from((await c.get(`${p}late`))!).toString(), 'late');
    // The connection default applies too.
    const quick = await connect(h.wsUrl, { timeoutMs: 50 });
    await rejectsCode(quick.get(`${p}late`, { wait: 1000 }), 'TIMEOUT');
    await quick.close();
  });
});

describe('@kvgate/client: maxInFlight keeps the excess queued client-side', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ limits: { maxInflightPerConnection: 50 }, batch: { maxWaitMs: 200 } }, 2);
  });
  after(() => h?.stop());

  it('1,000 gets through a bound of 50 all succeed; a client bound past the gateway gets BUSY', async () => {
    const c = await connect(h.wsUrl, { maxInFlight: 50 });
    const over = await connect(h.wsUrl, { maxInFlight: 1000 });
    try {
      await c.set('mif', 'x');
      let peak = 0;
      const all = Array.from({ length: 1000 }, () => c.get('mif', { wait: 5 }));
      assert.equal(c.stats.queued, 1000);
      const watch = setInterval(() => (peak = Math.max(peak, c.stats.inFlight)));
      const got = await Promise.all(all);
      clearInterval(watch);
      assert.ok(got.every((v) => v !== null && Buffer.from(v).toString() === 'x'));
      assert.ok(peak <= 50 && peak > 0, `peak ${peak}`);
      const r = await Promise.allSettled(Array.from({ length: 1000 }, () => over.get('mif', { wait: 5 })));
      const busy = r.filter((x) => x.status === 'rejected' && (x.reason as KvError).code === 'BUSY');
      assert.ok(busy.length > 0, 'the gateway refused past its bound');
    } finally {
      await c.close();
      await over.close();
    }
  });
});

describe('@kvgate/client: a dropped connection and a gateway restart', () => {
  let fleet: LocalFleet;
  let gw: Gateway;
  const start = async (): Promise<Gateway> =>
    startGateway(
      validateConfig(
        mergeConfig(testConfig(), {
          port: 0,
          admin: { port: 0 },
          log: { level: 'silent' },
          batch: { maxWaitMs: 3000 },
          shutdown: { drainMs: 2000 },
          servers: fleet.servers(),
        }),
      ),
    );
  before(async () => {
    fleet = await LocalFleet.start({ count: 1, memoryMb: 64, itemSizeMb: 2 });
    gw = await start();
  });
  after(async () => {
    await gw?.stop();
    await fleet?.stop();
  });

  it('resends gets, reports writes in flight as maybe applied, and reconnects across a restart', async () => {
    // The client's URL is the proxy's (a load balancer's, say); it forwards to whichever gateway runs now.
    const proxy = await startTcpProxy(() => gw.port);
    const c = await connect(`ws://127.0.0.1:${proxy.port}/v1/ws`, {
      reconnect: { minMs: 20, maxMs: 200, jitter: 0.5 },
    });
    try {
      await c.set('r:k', 'before');
      const req0 = gw.ws.counters.requests;
      // Both held at the gateway (wait hint) when the connection is cut.
      const get = c.get('r:k', { wait: 2000 });
      const set = c.set('r:w', 'maybe', { wait: 2000 });
      await until(() => gw.ws.counters.requests - req0 === 2, 2000, 'both at the gateway');
      proxy.cut();
      const e = await rejectsCode(set, 'CONNECTION_CLOSED');
      assert.equal(e.maybeApplied, true);
      assert.equal(e.retry, 'idempotent');
      assert.match(e.message, /may or may not have been applied/);
      assert.equal(Buffer.from((await get)!).toString(), 'before', 'the get was resent on the new connection');
      assert.ok(c.stats.reconnects >= 1);

      // A real restart: drain (the client sees 1001), then a new gateway behind the same address. (Not on
      // the same port in this process: the old port's server-side TIME_WAIT connections keep it from binding.)
      const reconnects = c.stats.reconnects;
      await gw.drain();
      await gw.stop();
      const during = c.get('r:k'); // queued while no gateway listens
      gw = await start();
      assert.equal(Buffer.from((await during)!).toString(), 'before');
      await c.set('r:k', 'after');
      assert.equal(Buffer.from((await c.get('r:k'))!).toString(), 'after');
      assert.ok(c.stats.reconnects > reconnects, 'reconnected after the restart');
      assert.equal(c.stats.state, 'open');
    } finally {
      await c.close();
      await proxy.close();
    }
    await rejectsCode(c.get('r:k'), 'CLOSED');
  });

  it('the first connection failing rejects CONNECTION_FAILED', async () => {
    const e = await rejectsCode(connect(`ws://127.0.0.1:1/v1/ws`), 'CONNECTION_FAILED');
    assert.equal(e.retry, 'after');
  });
});

describe('@kvgate/client: credentials', () => {
  let h: Harness;
  const secret = hmacSecret('client');
  const key = `kvg_client_${randomBytes(16).toString('hex')}`;
  const other = `kvg_other_${randomBytes(16).toString('hex')}`;
  const jwt = (exp: number): string =>
    signJwt(
      { alg: 'HS256', secret },
      { sub: 'carol', kvgate_ns: 'c:', kvgate_perms: 'read,write,delete', exp },
      { kid: 'k1' },
    );
  before(async () => {
    h = await startHarness({
      security: {
        auth: {
          mode: 'required',
          apiKeys: [
            { id: 'client', hash: Authenticator.hashKey(key), namespace: 'client:', perms: 'all' },
            { id: 'other', hash: Authenticator.hashKey(other), namespace: 'other:', perms: 'all' },
          ],
          jwt: { keys: [{ kid: 'k1', alg: 'HS256', secret }], clockSkewSeconds: 0 },
        },
      },
    });
  });
  after(() => h?.stop());

  it('a token by option (WebSocket subprotocol, HTTP bearer); none or a wrong one is refused', async () => {
    const c = await connect(h.wsUrl, { token: key });
    await c.set('t', 'mine');
    assert.equal(Buffer.from((await c.get('t'))!).toString(), 'mine');
    const http = createHttpClient(h.base, { token: key });
    assert.equal(Buffer.from((await http.get('t'))!).toString(), 'mine');
    await rejectsCode(createHttpClient(h.base).get('t'), 'UNAUTHORIZED');
    await rejectsCode(connect(h.wsUrl), 'CONNECTION_FAILED');
    await rejectsCode(connect(h.wsUrl, { token: 'kvg_wrong' }), 'CONNECTION_FAILED');
    // Refresh to another principal: FORBIDDEN, the connection keeps its credential.
    await rejectsCode(c.auth(other), 'FORBIDDEN');
    await rejectsCode(c.auth('garbage'), 'UNAUTHORIZED');
    assert.equal(Buffer.from((await c.get('t'))!).toString(), 'mine');
    await c.close();
  });

  it('auth(token) renews a JWT on the open connection; an expired one (4001) is renewed through onAuthExpired', async () => {
    const exp = Math.ceil(Date.now() / 1000) + 2;
    const renewed = await connect(h.wsUrl, { token: jwt(exp), reconnect: { minMs: 10, maxMs: 50, jitter: 0 } });
    await renewed.auth(jwt(exp + 600));
    const asked: { code: number; reason: string }[] = [];
    const hooked = await connect(h.wsUrl, {
      token: jwt(exp),
      reconnect: { minMs: 10, maxMs: 50, jitter: 0 },
      onAuthExpired: (info) => {
        asked.push(info);
        return jwt(exp + 600);
      },
    });
    const bare = await connect(h.wsUrl, { token: jwt(exp) });
    await hooked.set('j', 'carol');
    const bareClosed = bare.closed;
    const info = await bareClosed; // closes at exp: 4001, no hook, so the client stops
    assert.equal(info.code, 4001);
    await rejectsCode(bare.get('j'), 'AUTH_EXPIRED');
    assert.equal(bare.stats.state, 'closed');
    await until(() => asked.length === 1 && hooked.stats.state === 'open', 5000, 'the hook and the reconnect');
    assert.deepEqual(asked, [{ code: 4001, reason: 'AUTH_EXPIRED' }]);
    assert.equal(Buffer.from((await hooked.get('j'))!).toString(), 'carol');
    assert.equal(Buffer.from((await renewed.get('j'))!).toString(), 'carol');
    assert.equal(renewed.stats.reconnects, 0, 'the renewed connection was never closed');
    await Promise.all([renewed.close(), hooked.close()]);
  });
});
