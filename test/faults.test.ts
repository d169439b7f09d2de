/**
 * Faults: a dead shard (SIGKILL, then restart on the same port), a frozen shard (SIGSTOP / SIGCONT) and
 * hostile input. Everything runs against real memcached processes; server state is polled, never slept on.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { freeze, startHarness, until, type Harness } from './helpers/harness';
import { keysByShard, rawGet, rawSet } from './helpers/mc-raw';
import { KvError, KvHttpClient, encodeRaw, type ItemResult, type MgetResult } from './client';
import { startGateway } from '../src/gateway';

const hit = (r: ItemResult | undefined): { value: Buffer; flags: number } => {
  assert.ok(r && 'hit' in r && r.hit, `expected a hit, got ${JSON.stringify(r)}`);
  return r as { hit: true; value: Buffer; flags: number };
};
const errCode = (r: ItemResult | undefined): string | undefined => (r && 'error' in r ? r.error.code : undefined);

async function rejectsWith(p: Promise<unknown>, code: string, what: string): Promise<KvError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KvError, `${what}: expected a KvError, got ${String(e)}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return e;
  }
  assert.fail(`${what}: expected ${code}, but it succeeded`);
}

async function httpJson(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: { error?: { code: string; message: string } } }> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: { error?: { code: string; message: string } } = {};
  try {
    body = JSON.parse(text);
  } catch {
    assert.fail(`HTTP ${res.status} ${url}: body is not JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, body };
}

// -------------------------------------------------------------------------------------------------------
describe('shard down', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ shard: { reconnectMinMs: 20, reconnectMaxMs: 200 } });
  });
  after(async () => {
    await h?.stop();
  });

  it("fails a dead shard's items fast with SHARD_DOWN, serves the others, and recovers after a restart", async () => {
    const dead = 1;
    const byShard = keysByShard(h.gw.ring, 3, 'faults:down:', 4);
    const all = [
      byShard[0][0],
      byShard[1][0],
      byShard[2][0],
      byShard[0][1],
      byShard[1][1],
      byShard[2][1],
      byShard[1][2],
      byShard[0][2],
      byShard[2][2],
    ];
    const valueOf = (k: string): Buffer => Buffer.from(`value of ${k}`);
    const ws = await h.ws();
    const stored = await ws.mset(all.map((k, n) => ({ key: k, value: valueOf(k), flags: n })));
    assert.deepEqual(
      stored,
      all.map(() => ({ ok: true })),
    );
    // the dead-shard keys really are on the shard we are about to kill
    for (const k of byShard[dead].slice(0, 3))
      assert.deepEqual((await rawGet(h.fleet.members[dead].port, k))?.value, valueOf(k));

    await h.fleet.members[dead].stop();

    // WebSocket mget over all shards, right after the kill (no waiting for the gateway to notice)
    let t0 = performance.now();
    const wsRes = await ws.mget(all);
    const wsMs = performance.now() - t0;
    t0 = performance.now();
    const httpRes = await h.http.mget(all);
    const httpMs = performance.now() - t0;
    const ndRes = await h.http.mget(all, { format: 'ndjson' });
    for (const [name, res] of [
      ['ws', wsRes],
      ['http msgpack', httpRes],
      ['http ndjson', ndRes],
    ] as [string, MgetResult[]][]) {
      all.forEach((k, n) => {
        if (h.gw.ring.lookupKey(k) === dead)
          assert.equal(errCode(res[n]), 'SHARD_DOWN', `${name} ${k}: ${JSON.stringify(res[n])}`);
        else {
          const r = hit(res[n]);
          assert.deepEqual(r.value, valueOf(k), `${name} ${k}`);
          assert.equal(r.flags, n, `${name} ${k} flags`);
        }
      });
    }
    assert.ok(wsMs < 1000, `WS mget with a dead shard took ${wsMs.toFixed(0)} ms`);
    assert.ok(httpMs < 1000, `HTTP mget with a dead shard took ${httpMs.toFixed(0)} ms`);

    // single-key HTTP GET of a dead-shard key: 503 SHARD_DOWN
    const deadKey = byShard[dead][0];
    const single = await httpJson(`${h.base}/v1/kv/${encodeURIComponent(deadKey)}`);
    assert.equal(single.status, 503);
    assert.equal(single.body.error?.code, 'SHARD_DOWN');
    // writes to the dead shard fail the same way, writes elsewhere go through
    await rejectsWith(ws.set(deadKey, 'x'), 'SHARD_DOWN', 'WS set on the dead shard');
    await rejectsWith(ws.del(byShard[dead][1]), 'SHARD_DOWN', 'WS del on the dead shard');
    const put = await httpJson(`${h.base}/v1/kv/${encodeURIComponent(deadKey)}`, { method: 'PUT', body: 'x' });
    assert.equal(put.status, 503);
    assert.equal(put.body.error?.code, 'SHARD_DOWN');
    const mixed = await ws.mset([
      { key: byShard[0][3], value: 'live-0' },
      { key: byShard[dead][3], value: 'dead' },
      { key: byShard[2][3], value: 'live-2' },
    ]);
    assert.deepEqual(mixed[0], { ok: true });
    assert.equal(errCode(mixed[1]), 'SHARD_DOWN');
    assert.deepEqual(mixed[2], { ok: true });

    // the same WebSocket connection still works
    assert.equal(ws.socket.readyState, WebSocket.OPEN);
    assert.deepEqual(hit(await ws.get(byShard[2][3])).value, Buffer.from('live-2'));

    const health = await h.http.health();
    assert.equal(health.status, 'degraded');
    assert.deepEqual(
      health.shards.map((s) => s.up),
      [0, 1, 2].map((i) => i !== dead),
    );
    assert.equal(health.shards[dead].server, `127.0.0.1:${h.fleet.members[dead].port}`);

    // restart the same memcached (same port, empty cache): the gateway reconnects by itself
    await h.fleet.members[dead].start();
    await until(async () => (await h.http.health()).status === 'ok', 5000, 'healthz back to ok');
    assert.deepEqual(
      (await h.http.health()).shards.map((s) => s.up),
      [true, true, true],
    );
    const again = await ws.get(deadKey);
    assert.deepEqual(again, { hit: false }, 'a restarted memcached starts empty');
    await ws.set(deadKey, 'after restart', { flags: 7 });
    assert.deepEqual(await ws.get(deadKey), { hit: true, value: Buffer.from('after restart'), flags: 7 });
    assert.deepEqual((await rawGet(h.fleet.members[dead].port, deadKey))?.value, Buffer.from('after restart'));
    await h.http.set(byShard[dead][1], 'http after restart');
    assert.deepEqual(await h.http.get(byShard[dead][1]), {
      hit: true,
      value: Buffer.from('http after restart'),
      flags: 0,
    });
    const final = await ws.mget(all);
    all.forEach((k, n) => {
      if (h.gw.ring.lookupKey(k) !== dead)
        assert.deepEqual(hit(final[n]).value, valueOf(k), `live shard key ${k} kept its value`);
    });
  });
  it('requests in flight when a shard dies fail SHARD_DOWN at once, not after the timeout', async () => {
    const victim = 0;
    const byShard = keysByShard(h.gw.ring, 3, 'faults:inflight:', 2);
    const ws = await h.ws();
    await ws.mset(byShard.flat().map((k) => ({ key: k, value: k })));
    const member = h.fleet.members[victim];
    const pid = member.proc!.pid!;
    await freeze(pid);
    const t0 = performance.now();
    const pending = ws.mget(byShard.flat());
    const pendingSet = ws.set(byShard[victim][1], 'never').then(
      () => 'stored',
      (e: KvError) => e.code,
    );
    await until(() => h.gw.shards[victim].inflightBatches >= 2, 2000, 'the get and the set are on the wire').catch(
      (e: Error) => {
        throw new Error(`${e.message}: ${JSON.stringify(h.gw.coalescer.stats()[victim])}`);
      },
    );
    await member.stop(); // SIGKILL: the kernel closes its sockets
    const [res, set] = await Promise.all([pending, pendingSet]);
    const ms = performance.now() - t0;
    assert.equal(set, 'SHARD_DOWN');
    byShard.flat().forEach((k, n) => {
      if (h.gw.ring.lookupKey(k) === victim) assert.equal(errCode(res[n]), 'SHARD_DOWN', k);
      else assert.deepEqual(hit(res[n]).value, Buffer.from(k), k);
    });
    assert.ok(
      ms < h.config.shard.timeoutMs,
      `in-flight items failed after ${ms.toFixed(0)} ms, not before the ${h.config.shard.timeoutMs} ms timeout`,
    );
    await member.start();
    await until(async () => (await h.http.health()).status === 'ok', 5000, 'healthz back to ok');
    await ws.set(byShard[victim][0], 'back');
    assert.deepEqual(await ws.get(byShard[victim][0]), { hit: true, value: Buffer.from('back'), flags: 0 });
  });

  it('a gateway started while a shard is down serves the others and picks the shard up when it starts', async () => {
    const down = 2;
    const member = h.fleet.members[down];
    await member.stop();
    const gw2 = await startGateway(h.config);
    try {
      const http2 = new KvHttpClient(`http://127.0.0.1:${gw2.port}`);
      const health = await http2.health();
      assert.equal(health.status, 'degraded');
      assert.deepEqual(
        health.shards.map((s) => s.up),
        [true, true, false],
      );
      const byShard = keysByShard(gw2.ring, 3, 'faults:startdown:', 1);
      const keys = byShard.flat();
      const stored = await http2.mset(keys.map((k) => ({ key: k, value: k })));
      keys.forEach((k, n) => {
        if (gw2.ring.lookupKey(k) === down) assert.equal(errCode(stored[n]), 'SHARD_DOWN', k);
        else assert.deepEqual(stored[n], { ok: true }, k);
      });
      await member.start();
      await until(
        async () => (await http2.health()).status === 'ok',
        5000,
        'the new gateway connects to the late shard',
      );
      await http2.set(byShard[down][0], 'late');
      assert.deepEqual(await http2.get(byShard[down][0]), { hit: true, value: Buffer.from('late'), flags: 0 });
      assert.deepEqual((await rawGet(member.port, byShard[down][0]))?.value, Buffer.from('late'));
    } finally {
      await gw2.stop();
    }
  });
});

// -------------------------------------------------------------------------------------------------------
describe('shard frozen (SIGSTOP)', () => {
  let h: Harness;
  let frozenPid: number | undefined;
  const timeoutMs = 300;
  before(async () => {
    h = await startHarness({ shard: { timeoutMs, connectTimeoutMs: 500, reconnectMinMs: 50, reconnectMaxMs: 200 } });
  });
  after(async () => {
    if (frozenPid !== undefined) {
      try {
        process.kill(frozenPid, 'SIGCONT');
      } catch {
        /* already gone */
      }
    }
    await h?.stop();
  });

  it("fails the frozen shard's items with TIMEOUT after timeoutMs, serves the others, and never delivers a stale reply", async () => {
    const frozen = 2;
    const byShard = keysByShard(h.gw.ring, 3, 'faults:freeze:', 4);
    const v1 = (k: string): Buffer => Buffer.from(`first value of ${k}`);
    const ws = await h.ws();
    const keys = byShard.flat();
    assert.deepEqual(
      await ws.mset(keys.map((k) => ({ key: k, value: v1(k) }))),
      keys.map(() => ({ ok: true })),
    );

    const member = h.fleet.members[frozen];
    assert.ok(member.proc?.pid, 'memcached is running');
    frozenPid = member.proc.pid;
    await freeze(frozenPid);

    // one WebSocket get per key, all at once; each settles on its own
    const t0 = performance.now();
    const outcomes = await Promise.all(
      keys.map(async (k) => {
        try {
          const r = await ws.get(k);
          return { k, ms: performance.now() - t0, r, code: undefined as string | undefined };
        } catch (e) {
          return { k, ms: performance.now() - t0, r: undefined, code: (e as KvError).code };
        }
      }),
    );
    for (const o of outcomes) {
      if (h.gw.ring.lookupKey(o.k) === frozen) {
        assert.equal(o.code, 'TIMEOUT', `${o.k} on the frozen shard`);
        assert.ok(
          o.ms >= timeoutMs * 0.9,
          `${o.k} timed out after ${o.ms.toFixed(0)} ms, before timeoutMs ${timeoutMs}`,
        );
        assert.ok(o.ms < timeoutMs * 5, `${o.k} timed out only after ${o.ms.toFixed(0)} ms`);
      } else {
        assert.equal(o.code, undefined, `${o.k} on a live shard failed with ${o.code}`);
        assert.deepEqual(o.r, { hit: true, value: v1(o.k), flags: 0 });
      }
    }
    // After a timeout the gateway drops the connection and reconnects (a frozen process's kernel still
    // accepts); until then the shard counts as down. Once it is "up" again, requests go out and time out.
    await until(() => h.gw.shards[frozen].up, 2000, 'the gateway reconnected to the frozen shard');
    // mget over all shards: frozen items TIMEOUT, the rest hit; and HTTP single GET answers 504
    const [mg, single] = await Promise.all([
      ws.mget(keys),
      httpJson(`${h.base}/v1/kv/${encodeURIComponent(byShard[frozen][1])}`),
    ]);
    keys.forEach((k, n) => {
      if (h.gw.ring.lookupKey(k) === frozen) assert.equal(errCode(mg[n]), 'TIMEOUT', k);
      else assert.deepEqual(hit(mg[n]).value, v1(k), k);
    });
    assert.equal(single.status, 504);
    assert.equal(single.body.error?.code, 'TIMEOUT');
    const resets = (h.gw.coalescer.stats()[frozen] as { resets: number }).resets;
    assert.ok(resets >= 1, 'the timed-out connection was reset');

    // a get is in flight to the frozen shard when it resumes
    await until(() => h.gw.shards[frozen].up, 2000, 'the gateway reconnected to the frozen shard');
    const inFlight = ws.get(byShard[frozen][3]).then(
      (r) => ({ r }),
      (e: KvError) => ({ code: e.code }),
    );
    await until(() => h.gw.shards[frozen].inflightBatches > 0, 2000, 'the get was written to the frozen shard');
    assert.ok(process.kill(frozenPid, 'SIGCONT'));
    frozenPid = undefined;
    const first = await inFlight;
    if ('r' in first)
      assert.deepEqual(
        first.r,
        { hit: true, value: v1(byShard[frozen][3]), flags: 0 },
        'an answer that arrives must be the right one',
      );
    else assert.equal(first.code, 'TIMEOUT');

    await until(
      async () => {
        try {
          return (await ws.get(byShard[frozen][0])).hit;
        } catch {
          return false;
        }
      },
      5000,
      'the resumed shard answers again',
    );

    // nothing from the frozen period leaks into later answers: new values read back as new,
    // keys asked during the freeze read back as themselves
    const v2 = (k: string): Buffer => Buffer.from(`second value of ${k} after the freeze`);
    for (const k of byShard[frozen]) await ws.set(k, v2(k), { flags: 2 });
    for (const k of byShard[frozen]) assert.deepEqual(await ws.get(k), { hit: true, value: v2(k), flags: 2 }, k);
    const after1 = await ws.mget(keys);
    keys.forEach((k, n) => {
      const want = h.gw.ring.lookupKey(k) === frozen ? v2(k) : v1(k);
      assert.deepEqual(hit(after1[n]).value, want, `mget after the freeze: ${k}`);
    });
    for (const k of byShard[frozen])
      assert.deepEqual(await h.http.get(k), { hit: true, value: v2(k), flags: 2 }, `HTTP ${k}`);
    assert.equal((await h.http.health()).status, 'ok');
  });
});

// -------------------------------------------------------------------------------------------------------
describe('bad input leaves everything else untouched', () => {
  let h: Harness;
  const canaries: { port: number; key: string }[] = [];
  const maxValueBytes = 1024 * 1024;
  before(async () => {
    h = await startHarness({ limits: { maxValueBytes }, ws: { maxPayloadBytes: 4 * 1024 * 1024 } });
    for (const m of h.fleet.members) {
      const key = `faults:canary:${m.port}`;
      await rawSet(m.port, key, Buffer.from(`canary ${m.port}`));
      canaries.push({ port: m.port, key });
    }
  });
  after(async () => {
    await h?.stop();
  });

  const assertCanaries = async (): Promise<void> => {
    for (const c of canaries) {
      const v = await rawGet(c.port, c.key);
      assert.deepEqual(
        v?.value,
        Buffer.from(`canary ${c.port}`),
        `canary on port ${c.port} survived (no flush_all ran)`,
      );
    }
  };

  it('WebSocket: one burst of good and bad requests; each bad one gets its own error, the rest succeed', async () => {
    const ws = await h.ws();
    const good = 'faults:bad:good';
    const pre = 'faults:bad:pre';
    await ws.set(pre, 'stored before');
    const stray: { id: number; i: number; kind: string; code?: string }[] = [];
    ws.onEntry = (e) => {
      if (e.kind === 'error' && (e.id === 0 || e.id === 4242424))
        stray.push({ id: e.id, i: e.i, kind: e.kind, code: e.code });
    };
    const key251 = 'k'.repeat(251);
    const big = Buffer.alloc(maxValueBytes + 1, 0x61);
    const settle = <T>(p: Promise<T>) =>
      p.then(
        (v) => ({ ok: v }),
        (e: KvError) => ({ code: e.code }),
      );

    // everything below leaves in one synchronous burst
    const burst = {
      set: settle(ws.set(good, 'good value', { flags: 5 })),
      rawBad: ws.sendRaw(Buffer.from([0xc1, 0x00, 0x01])),
      rawText: ws.sendRaw('{"id":1,"op":"get","key":"x"}'),
      // a good request and a truncated map in one frame: the good one runs, the rest is BAD_REQUEST with its id
      rawTail: ws.sendRaw(
        Buffer.concat([
          encodeRaw([{ id: 4242423, op: 'set', key: 'faults:bad:tail', value: Buffer.from('tail') }]),
          encodeRaw([{ id: 4242424, op: 'get', key: 'faults:bad:x' }]).subarray(0, 12),
        ]),
      ),
      unknownOp: settle(ws.request({ op: 'frobnicate', key: 'faults:bad:op' }, 1)),
      crlfSet: settle(ws.set('a\r\nflush_all', 'x')),
      crlfGet: settle(ws.get('a\r\nflush_all')),
      crlfDel: settle(ws.del('a\r\nflush_all')),
      spaceKey: settle(ws.get('a b')),
      delKey: settle(ws.get(Buffer.from([0x61, 0x7f, 0x62]))),
      nulKey: settle(ws.set(Buffer.from([0x61, 0x00]), 'x')),
      badWait: settle(ws.request({ op: 'get', key: 'faults:bad:wait', wait: 10_000_000 }, 1)),
      emptyKey: settle(ws.get('')),
      longKey: settle(ws.set(key251, 'x')),
      maxKey: settle(ws.set('m'.repeat(250), 'max key')),
      tooLarge: settle(ws.set('faults:bad:big', big)),
      ttlString: settle(ws.request({ op: 'set', key: 'faults:bad:ttl1', value: Buffer.from('x'), ttl: '60' }, 1)),
      ttlNegative: settle(ws.request({ op: 'set', key: 'faults:bad:ttl2', value: Buffer.from('x'), ttl: -1 }, 1)),
      ttlTooBig: settle(ws.set('faults:bad:ttl3', 'x', { ttl: 2592001 })),
      ttlMax: settle(ws.set('faults:bad:ttl4', 'x', { ttl: 2592000 })),
      flagsBad: settle(ws.request({ op: 'set', key: 'faults:bad:flags', value: Buffer.from('x'), flags: 2 ** 32 }, 1)),
      msetMixed: ws.mset([
        { key: 'faults:bad:m0', value: 'm0' },
        { key: 'bad key', value: 'x' },
        { key: 'faults:bad:m2', value: 'm2', ttl: 2592001 },
        { key: 'faults:bad:m3', value: big },
        { key: 'faults:bad:m4', value: 'm4', flags: 9 },
      ]),
      mgetMixed: ws.mget([pre, 'x\ry', good]),
      getPre: settle(ws.get(pre)),
      getGood: settle(ws.get(good)),
    };
    void burst.rawBad;
    void burst.rawText;
    void burst.rawTail;

    assert.deepEqual(await burst.set, { ok: undefined });
    assert.deepEqual(await burst.unknownOp, { code: 'UNKNOWN_OP' });
    assert.deepEqual(await burst.crlfSet, { code: 'BAD_KEY' });
    assert.deepEqual(await burst.crlfGet, { code: 'BAD_KEY' });
    assert.deepEqual(await burst.crlfDel, { code: 'BAD_KEY' });
    assert.deepEqual(await burst.spaceKey, { code: 'BAD_KEY' });
    assert.deepEqual(await burst.delKey, { code: 'BAD_KEY' });
    assert.deepEqual(await burst.nulKey, { code: 'BAD_KEY' });
    assert.deepEqual(await burst.badWait, { code: 'BAD_WAIT' });
    assert.deepEqual(await burst.emptyKey, { code: 'BAD_KEY' });
    assert.deepEqual(await burst.longKey, { code: 'BAD_KEY' });
    assert.deepEqual(await burst.maxKey, { ok: undefined });
    assert.deepEqual(await burst.tooLarge, { code: 'TOO_LARGE' });
    assert.deepEqual(await burst.ttlString, { code: 'BAD_TTL' });
    assert.deepEqual(await burst.ttlNegative, { code: 'BAD_TTL' });
    assert.deepEqual(await burst.ttlTooBig, { code: 'BAD_TTL' });
    assert.deepEqual(await burst.ttlMax, { ok: undefined });
    assert.deepEqual(await burst.flagsBad, { code: 'BAD_FLAGS' });
    const ms = await burst.msetMixed;
    assert.deepEqual(ms[0], { ok: true });
    assert.equal(errCode(ms[1]), 'BAD_KEY');
    assert.equal(errCode(ms[2]), 'BAD_TTL');
    assert.equal(errCode(ms[3]), 'TOO_LARGE');
    assert.deepEqual(ms[4], { ok: true });
    const mg = await burst.mgetMixed;
    assert.deepEqual(mg[0], { hit: true, value: Buffer.from('stored before'), flags: 0 });
    assert.equal(errCode(mg[1]), 'BAD_KEY');
    assert.deepEqual(
      mg[2],
      { hit: true, value: Buffer.from('good value'), flags: 5 },
      'a get sees the set sent before it in the same burst',
    );
    assert.deepEqual(await burst.getPre, { ok: { hit: true, value: Buffer.from('stored before'), flags: 0 } });
    assert.deepEqual(await burst.getGood, { ok: { hit: true, value: Buffer.from('good value'), flags: 5 } });

    // the raw frames: malformed msgpack and the text frame each got one BAD_REQUEST with id 0; the
    // truncated map after a good request got one with the id it carried
    await until(() => stray.length >= 3, 2000, 'errors for the raw frames');
    assert.deepEqual(
      stray.filter((e) => e.id === 0),
      [
        { id: 0, i: -1, kind: 'error', code: 'BAD_REQUEST' },
        { id: 0, i: -1, kind: 'error', code: 'BAD_REQUEST' },
      ],
    );
    assert.deepEqual(
      stray.filter((e) => e.id === 4242424),
      [{ id: 4242424, i: -1, kind: 'error', code: 'BAD_REQUEST' }],
    );

    // the connection is still open and usable
    assert.equal(ws.socket.readyState, WebSocket.OPEN);
    assert.deepEqual(await ws.get('faults:bad:m4'), { hit: true, value: Buffer.from('m4'), flags: 9 });
    assert.deepEqual(
      await ws.get('faults:bad:tail'),
      { hit: true, value: Buffer.from('tail'), flags: 0 },
      'the good request before the truncated map ran',
    );
    assert.deepEqual(await ws.get('m'.repeat(250)), { hit: true, value: Buffer.from('max key'), flags: 0 });
    for (const k of [
      'faults:bad:ttl1',
      'faults:bad:ttl2',
      'faults:bad:ttl3',
      'faults:bad:flags',
      'faults:bad:big',
      'faults:bad:m2',
      'faults:bad:m3',
    ]) {
      assert.deepEqual(await ws.get(k), { hit: false }, `${k} was refused, so it must not be stored`);
    }
    // the good set reached its shard with its flags
    const owner = h.fleet.members[h.gw.ring.lookupKey(good)].port;
    assert.deepEqual(await rawGet(owner, good), { key: good, flags: 5, value: Buffer.from('good value') });
    await assertCanaries();
  });

  it('HTTP: bad keys, bodies over the limit, bad ttl and a bad NDJSON line fail alone', async () => {
    const crlf = await httpJson(`${h.base}/v1/kv/a%0D%0Aflush_all`);
    assert.equal(crlf.status, 400);
    assert.equal(crlf.body.error?.code, 'BAD_KEY');
    const crlfPut = await httpJson(`${h.base}/v1/kv/a%0D%0Aflush_all`, { method: 'PUT', body: 'x' });
    assert.equal(crlfPut.status, 400);
    assert.equal(crlfPut.body.error?.code, 'BAD_KEY');
    const crlfDel = await httpJson(`${h.base}/v1/kv/a%0D%0Aflush_all`, { method: 'DELETE' });
    assert.equal(crlfDel.status, 400);
    assert.equal(crlfDel.body.error?.code, 'BAD_KEY');
    const long = await httpJson(`${h.base}/v1/kv/${'k'.repeat(251)}`);
    assert.equal(long.status, 400);
    assert.equal(long.body.error?.code, 'BAD_KEY');
    const badEscape = await httpJson(`${h.base}/v1/kv/abc%zz`);
    assert.equal(badEscape.status, 400);
    assert.equal(badEscape.body.error?.code, 'BAD_KEY');

    // a body over the limit, with a content-length
    const tooBig = await httpJson(`${h.base}/v1/kv/faults:http:big`, {
      method: 'PUT',
      body: Buffer.alloc(maxValueBytes + 1, 0x62),
    });
    assert.equal(tooBig.status, 413);
    assert.equal(tooBig.body.error?.code, 'TOO_LARGE');
    // ... and streamed without one (chunked), so the gateway only learns the size as it reads
    const chunks = [Buffer.alloc(600 * 1024, 0x63), Buffer.alloc(600 * 1024, 0x64)];
    const stream = new ReadableStream<Uint8Array>({
      pull(ctl) {
        const c = chunks.shift();
        if (c) ctl.enqueue(c);
        else ctl.close();
      },
    });
    const tooBigChunked = await httpJson(`${h.base}/v1/kv/faults:http:big2`, {
      method: 'PUT',
      body: stream,
      duplex: 'half',
    } as RequestInit);
    assert.equal(tooBigChunked.status, 413);
    assert.equal(tooBigChunked.body.error?.code, 'TOO_LARGE');
    // exactly at the limit is fine
    const atLimit = Buffer.alloc(maxValueBytes, 0x65);
    await h.http.set('faults:http:limit', atLimit);
    assert.deepEqual(await h.http.get('faults:http:limit'), { hit: true, value: atLimit, flags: 0 });

    for (const q of ['ttl=abc', 'ttl=-1', 'ttl=2592001', 'ttl=1.5']) {
      const r = await httpJson(`${h.base}/v1/kv/faults:http:ttl?${q}`, { method: 'PUT', body: 'x' });
      assert.equal(r.status, 400, q);
      assert.equal(r.body.error?.code, 'BAD_TTL', q);
    }
    const badFlags = await httpJson(`${h.base}/v1/kv/faults:http:ttl?flags=4294967296`, { method: 'PUT', body: 'x' });
    assert.equal(badFlags.status, 400);
    assert.equal(badFlags.body.error?.code, 'BAD_FLAGS');
    assert.deepEqual(await h.http.get('faults:http:ttl'), { hit: false }, 'refused PUTs stored nothing');
    for (const k of ['faults:http:big', 'faults:http:big2']) assert.deepEqual(await h.http.get(k), { hit: false }, k);

    // NDJSON mset: good lines around bad ones; each bad line gets its own error
    const lines = [
      { key: 'faults:nd:0', value: 'zero' },
      { key: 'faults:nd:1', value: 'one', ttl: -5 },
      { key: 'bad key', value: 'x' },
      { key: 'faults:nd:3', base64: Buffer.from([0, 1, 2, 255]).toString('base64'), flags: 3 },
      { key: 'faults:nd:4', value: 42 },
      { key: 'faults:nd:5', value: 'five', ttl: 'soon' },
      { key: 'a\r\nflush_all', value: 'x' },
      { key: 'faults:nd:7', value: 'seven' },
    ];
    const res = await fetch(`${h.base}/v1/mset`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: lines.map((l) => JSON.stringify(l)).join('\n') + '\n',
    });
    assert.equal(res.status, 200);
    const out = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const done = out.pop();
    assert.deepEqual(done, { done: true, count: lines.length });
    const byI = new Map(out.map((o) => [o.i as number, o]));
    assert.equal(byI.size, lines.length, `one result line per item: ${JSON.stringify(out)}`);
    const codeAt = (i: number): unknown => (byI.get(i)?.error as { code?: string } | undefined)?.code;
    assert.equal(byI.get(0)?.ok, true);
    assert.equal(codeAt(1), 'BAD_TTL');
    assert.equal(codeAt(2), 'BAD_KEY');
    assert.equal(byI.get(3)?.ok, true);
    assert.equal(codeAt(4), 'BAD_VALUE');
    assert.equal(codeAt(5), 'BAD_TTL');
    assert.equal(codeAt(6), 'BAD_KEY');
    assert.equal(byI.get(7)?.ok, true);
    assert.deepEqual(await h.http.get('faults:nd:0'), { hit: true, value: Buffer.from('zero'), flags: 0 });
    assert.deepEqual(await h.http.get('faults:nd:3'), { hit: true, value: Buffer.from([0, 1, 2, 255]), flags: 3 });
    assert.deepEqual(await h.http.get('faults:nd:7'), { hit: true, value: Buffer.from('seven'), flags: 0 });
    for (const k of ['faults:nd:1', 'faults:nd:4', 'faults:nd:5'])
      assert.deepEqual(await h.http.get(k), { hit: false }, k);

    // a line that is not JSON ends the response with an i = -1 error; the items before it were stored
    const res2 = await fetch(`${h.base}/v1/mset`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: `${JSON.stringify({ key: 'faults:nd2:0', value: 'a' })}\n{not json\n${JSON.stringify({ key: 'faults:nd2:2', value: 'c' })}\n`,
    });
    assert.equal(res2.status, 200);
    const out2 = (await res2.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(
      out2.some((o) => o.i === -1 && (o.error as { code?: string })?.code === 'BAD_REQUEST'),
      JSON.stringify(out2),
    );
    assert.deepEqual(await h.http.get('faults:nd2:0'), { hit: true, value: Buffer.from('a'), flags: 0 });
    assert.deepEqual(await h.http.get('faults:nd2:2'), { hit: false }, 'nothing after the malformed line is stored');

    await assertCanaries();
    assert.equal((await h.http.health()).status, 'ok');
  });
});
