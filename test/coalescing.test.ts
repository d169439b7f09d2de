import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, Harness, memcachedStats } from './helpers/harness';
import { KvWsClient } from './client';

type ShardStat = { writes: number; keys: number; cuts: number; batches: number };
const shardStats = (h: Harness): ShardStat[] => h.gw.stats().shards as ShardStat[];

describe('coalescing', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.stop());

  it('1,000 concurrent gets from 50 connections become a handful of multi-gets per shard, each key fetched once', async () => {
    const clients = await Promise.all(
      Array.from({ length: 50 }, () => KvWsClient.connect(h.wsUrl, { batchSends: true })),
    );
    const keys = Array.from({ length: 200 }, (_, i) => `co:${i}`);
    await clients[0].mset(keys.map((key) => ({ key, value: Buffer.from(`val-${key}`) })));
    const gwBefore = shardStats(h);
    const mcBefore = await Promise.all(h.fleet.members.map((m) => memcachedStats(m.port)));
    // 1,000 gets, each of the 200 keys asked 5 times, all in flight at once.
    const all = await Promise.all(Array.from({ length: 1000 }, (_, n) => clients[n % 50].get(keys[n % 200])));
    all.forEach((r, n) => assert.ok(r.hit && r.value.toString() === `val-${keys[n % 200]}`, `request ${n}`));
    const gwAfter = shardStats(h);
    const mcAfter = await Promise.all(h.fleet.members.map((m) => memcachedStats(m.port)));
    for (let s = 0; s < 3; s++) {
      const owned = keys.filter((k) => h.gw.ring.lookupKey(k) === s);
      const writes = gwAfter[s].writes - gwBefore[s].writes;
      assert.ok(owned.length > 0, `shard ${s} owns keys`);
      assert.ok(writes >= 1 && writes <= 5, `shard ${s}: ${writes} writes for ${owned.length} keys`);
      // memcached saw each key at most once per write (dedupe), never once per request.
      const cmdGet = mcAfter[s].cmd_get - mcBefore[s].cmd_get;
      assert.ok(
        cmdGet >= owned.length && cmdGet <= owned.length * writes,
        `shard ${s}: cmd_get ${cmdGet} for ${owned.length} keys`,
      );
      // Bytes memcached read: the multi-get lines only ("get" + " key"... + "\r\n" per write), far from 1,000 requests' worth.
      const keyBytes = owned.reduce((a, k) => a + 1 + k.length, 0);
      const read = mcAfter[s].bytes_read - mcBefore[s].bytes_read;
      assert.ok(read <= keyBytes * writes + 5 * writes + 10 /* "stats\r\n" */, `shard ${s}: ${read} bytes read`);
    }
    for (const c of clients) c.terminate();
  });

  it('pipelines a flush of sets and deletes into one write per shard, one reply each', async () => {
    const c = await KvWsClient.connect(h.wsUrl, { batchSends: true });
    const before = shardStats(h);
    const mcBefore = await Promise.all(h.fleet.members.map((m) => memcachedStats(m.port)));
    const sets = await Promise.all(Array.from({ length: 300 }, (_, i) => c.set(`co:set:${i}`, Buffer.from(`${i}`))));
    assert.equal(sets.length, 300);
    const after1 = shardStats(h);
    const mcAfter = await Promise.all(h.fleet.members.map((m) => memcachedStats(m.port)));
    let total = 0;
    for (let s = 0; s < 3; s++) {
      const writes = after1[s].writes - before[s].writes;
      const cmdSet = mcAfter[s].cmd_set - mcBefore[s].cmd_set;
      total += cmdSet;
      assert.ok(writes <= 3, `shard ${s}: ${writes} writes`);
      assert.equal(
        cmdSet,
        Array.from({ length: 300 }, (_, i) => `co:set:${i}`).filter((k) => h.gw.ring.lookupKey(k) === s).length,
      );
    }
    assert.equal(total, 300);
    const dels = await Promise.all(Array.from({ length: 300 }, (_, i) => c.del(`co:set:${i}`)));
    assert.ok(dels.every((d) => d === true));
    c.terminate();
  });

  it('cuts a batch at its op cap and at its byte cap', async () => {
    const h2 = await startHarness({ batch: { maxOps: 10, maxBytes: 2048 } }, 1);
    try {
      const c = await KvWsClient.connect(h2.wsUrl, { batchSends: true });
      let before = shardStats(h2)[0];
      await Promise.all(Array.from({ length: 100 }, (_, i) => c.get(`cap:${i}`)));
      let after1 = shardStats(h2)[0];
      assert.equal(after1.keys - before.keys, 100);
      assert.equal(after1.batches - before.batches, 10);
      assert.ok(after1.cuts - before.cuts >= 9);
      before = after1;
      const long = (i: number): string => `cap:${String(i).padStart(3, '0')}:${'x'.repeat(200)}`;
      await Promise.all(Array.from({ length: 9 }, (_, i) => c.get(long(i))));
      after1 = shardStats(h2)[0];
      // 2048-byte cap over ~206-byte keys: cut after ~10 keys' worth of bytes, so 9 keys fit in one... and 30 do not.
      assert.equal(after1.batches - before.batches, 1);
      before = after1;
      await Promise.all(Array.from({ length: 30 }, (_, i) => c.get(long(i))));
      after1 = shardStats(h2)[0];
      assert.ok(after1.batches - before.batches >= 3, `${after1.batches - before.batches} batches for 30 long keys`);
      c.terminate();
    } finally {
      await h2.stop();
    }
  });

  it('holds a flush for the configured window so requests of later turns join it', async () => {
    const h2 = await startHarness({ batch: { windowMs: 300, maxWaitMs: 500 } }, 1);
    try {
      const c = await KvWsClient.connect(h2.wsUrl);
      const before = shardStats(h2)[0];
      const first = Promise.all(Array.from({ length: 10 }, (_, i) => c.get(`win:a:${i}`)));
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      const second = Promise.all(Array.from({ length: 10 }, (_, i) => c.get(`win:b:${i}`)));
      await Promise.all([first, second]);
      const after1 = shardStats(h2)[0];
      assert.equal(after1.keys - before.keys, 20);
      assert.equal(after1.writes - before.writes, 1);
      c.terminate();
    } finally {
      await h2.stop();
    }
  });
});
