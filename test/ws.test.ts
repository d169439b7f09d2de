import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import { startHarness, Harness, until } from './helpers/harness';
import { KvWsClient } from './client';

const SIZES = [
  0,
  1,
  100,
  16 * 1024 - 40,
  16 * 1024 - 30,
  16 * 1024 - 1,
  16 * 1024,
  16 * 1024 + 1,
  32 * 1024,
  48 * 1024 + 7,
  1024 * 1024,
];

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('WebSocket', () => {
  let h: Harness;
  let c: KvWsClient;
  before(async () => {
    h = await startHarness();
    c = await h.ws();
  });
  after(() => h.stop());

  it('set, get, del, and a miss', async () => {
    await c.set('ws:a', Buffer.from('alpha'), { ttl: 60, flags: 42 });
    assert.deepEqual(await c.get('ws:a'), { hit: true, value: Buffer.from('alpha'), flags: 42 });
    assert.equal(await c.del('ws:a'), true);
    assert.deepEqual(await c.get('ws:a'), { hit: false });
    assert.equal(await c.del('ws:a'), false);
  });

  it('round-trips binary values at every size around the 16 KiB frame boundary, and no frame exceeds 16 KiB', async () => {
    let biggest = 0;
    c.onMessage = (n: number) => {
      if (n > biggest) biggest = n;
    };
    for (const n of SIZES) {
      const v = pattern(n, n);
      await c.set(`ws:size:${n}`, v);
      const r = await c.get(`ws:size:${n}`);
      assert.ok(r.hit, `size ${n}`);
      assert.ok(r.value.equals(v), `size ${n} bytes differ`);
    }
    const all = await c.mget(SIZES.map((n) => `ws:size:${n}`));
    all.forEach((r, k) =>
      assert.ok('hit' in r && r.hit && r.value.equals(pattern(SIZES[k], SIZES[k])), `mget size ${SIZES[k]}`),
    );
    c.onMessage = undefined as never;
    assert.ok(biggest > 0 && biggest <= 16 * 1024, `largest frame ${biggest}`);
  });

  it('bulk mset / mget / mdel with per-item results, including duplicates and bad keys', async () => {
    const items = Array.from({ length: 50 }, (_, i) => ({
      key: `ws:bulk:${i}`,
      value: Buffer.from(`v${i}`),
      flags: i,
    }));
    const set = await c.mset([...items, { key: 'bad key', value: Buffer.from('x') }]);
    assert.equal(set.length, 51);
    set.slice(0, 50).forEach((r) => assert.deepEqual(r, { ok: true }));
    assert.equal((set[50] as { error: { code: string } }).error.code, 'BAD_KEY');
    const keys = ['ws:bulk:3', 'ws:bulk:3', 'ws:nope', 'ws:bulk:49', 'a\r\nflush_all', 'ws:bulk:3'];
    const got = await c.mget(keys);
    assert.deepEqual(got[0], { hit: true, value: Buffer.from('v3'), flags: 3 });
    assert.deepEqual(got[1], got[0]);
    assert.deepEqual(got[5], got[0]);
    assert.deepEqual(got[2], { hit: false });
    assert.deepEqual(got[3], { hit: true, value: Buffer.from('v49'), flags: 49 });
    assert.equal((got[4] as { error: { code: string } }).error.code, 'BAD_KEY');
    const del = await c.mdel(['ws:bulk:1', 'ws:bulk:1', 'ws:never']);
    assert.deepEqual(del[0], { deleted: true });
    assert.deepEqual(del[2], { deleted: false });
  });

  it('answers pipelined requests out of order: a request held by its wait hint finishes after a later one', async () => {
    // Two keys on different shards: the first request asks its shard to hold the batch 40 ms.
    const a = 'ws:order:0';
    let b = 'ws:order:1';
    for (let k = 2; h.gw.ring.lookupKey(a) === h.gw.ring.lookupKey(b); k++) b = `ws:order:${k}`;
    await c.set(a, Buffer.from('A'));
    await c.set(b, Buffer.from('B'));
    const ends: string[] = [];
    const p1 = c.get(a, { wait: 40 }).then((r) => {
      ends.push('first');
      return r;
    });
    const p2 = c.get(b).then((r) => {
      ends.push('second');
      return r;
    });
    const [r1, r2] = await Promise.all([p1, p2]);
    assert.deepEqual(ends, ['second', 'first']);
    assert.ok(r1.hit && r1.value.toString() === 'A');
    assert.ok(r2.hit && r2.value.toString() === 'B');
  });

  it('gives each bad request its own error and keeps the connection and the other requests working', async () => {
    await c.set('ws:keep', Buffer.from('kept'));
    const entries: { id: number; i: number; kind: string; code?: string }[] = [];
    c.onEntry = (e) => entries.push(e as never);
    c.sendRaw(Buffer.from([0xc1, 0xff, 0x00]));
    c.sendRaw('not binary');
    c.sendRaw(pack({ id: 900001, op: 'frobnicate', key: 'x' }));
    c.sendRaw(pack({ id: 900002, op: 'get' }));
    c.sendRaw(pack({ id: 900003, op: 'set', key: 'ws:x', value: Buffer.from('v'), ttl: 'soon' }));
    c.sendRaw(pack({ id: 900004, op: 'set', key: 'ws:x', value: Buffer.from('v'), ttl: 2592001 }));
    c.sendRaw(pack({ id: 900005, op: 'get', key: 'x'.repeat(251) }));
    c.sendRaw(pack({ id: 900006, op: 'get', key: 'ws:keep', wait: 1_000_000 }));
    c.sendRaw(pack({ op: 'get', key: 'ws:keep' }));
    c.sendRaw(pack({ id: 900007, op: 'set', key: 'ws:x', value: Buffer.from('v'), ttl: -1 }));
    c.sendRaw(
      pack({
        id: 900008,
        op: 'mset',
        items: [{ key: 'ws:x', value: Buffer.from('v'), ttl: 2592001 }, { value: Buffer.from('v') }],
      }),
    );
    const good = await c.get('ws:keep');
    assert.ok(good.hit && good.value.toString() === 'kept');
    await until(() => entries.filter((e) => e.kind === 'error').length >= 12, 2000, 'twelve error entries');
    const codeOf = (id: number): string | undefined => entries.find((e) => e.id === id && e.kind === 'error')?.code;
    assert.equal(codeOf(900001), 'UNKNOWN_OP');
    assert.equal(codeOf(900002), 'BAD_KEY');
    assert.equal(codeOf(900003), 'BAD_TTL');
    assert.equal(codeOf(900004), 'BAD_TTL');
    assert.equal(codeOf(900005), 'BAD_KEY');
    assert.equal(codeOf(900006), 'BAD_WAIT');
    // Messages name the real limits (maxTtlSeconds, maxWaitMs), not the width of the wire field.
    const messageOf = (id: number, i = -1): string | undefined =>
      (entries.find((e) => e.id === id && e.i === i && e.kind === 'error') as { message?: string } | undefined)
        ?.message;
    assert.equal(codeOf(900007), 'BAD_TTL');
    assert.match(messageOf(900007)!, /from 0 to 2592000$/);
    assert.match(messageOf(900004)!, /from 0 to 2592000$/);
    assert.match(messageOf(900006)!, /from 0 to 50$/);
    assert.equal(codeOf(900008), 'BAD_TTL');
    assert.match(messageOf(900008, 0)!, /from 0 to 2592000$/);
    assert.equal(messageOf(900008, 1), 'key missing');
    const anon = entries.filter((e) => e.id === 0 && e.kind === 'error').map((e) => e.code);
    assert.deepEqual(anon.sort(), ['BAD_REQUEST', 'BAD_REQUEST', 'BAD_REQUEST']);
    c.onEntry = undefined as never;
    const again = await c.get('ws:keep');
    assert.ok(again.hit);
  });

  it('refuses requests past the in-flight limit with BUSY, without breaking the connection', async () => {
    const h2 = await startHarness(
      { limits: { maxInflightPerConnection: 4 }, batch: { windowMs: 30, maxWaitMs: 50 } },
      1,
    );
    try {
      const c2 = await h2.ws();
      const results = await Promise.allSettled(Array.from({ length: 10 }, (_, k) => c2.get(`busy:${k}`)));
      const busy = results.filter(
        (r) => r.status === 'rejected' && (r.reason as { code: string }).code === 'BUSY',
      ).length;
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      assert.equal(ok, 4);
      assert.equal(busy, 6);
      assert.deepEqual(await c2.get('busy:0'), { hit: false });
    } finally {
      await h2.stop();
    }
  });

  it('keeps many clients independent', async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => h.ws()));
    await Promise.all(clients.map((cl, k) => cl.set(`ws:multi:${k}`, Buffer.from(`c${k}`))));
    const got = await Promise.all(clients.map((cl, k) => cl.get(`ws:multi:${(k + 1) % 20}`)));
    got.forEach((r, k) => assert.ok(r.hit && r.value.toString() === `c${(k + 1) % 20}`));
  });
});
