/**
 * The failure policy of a memcached pool (docs/OPERATIONS.md, "Failure policy"): `fail-fast` keeps the ring
 * and fails a dead shard's keys with SHARD_DOWN; `eject` takes a failing shard out of the ring, places its
 * keys as a ring over the survivors would, probes it and brings it back. Real memcached processes, killed
 * and restarted on their port; the policy's counting and anti-flap timing against a fake clock.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { freeze, startHarness, until, type Harness } from './helpers/harness';
import { keysByShard, rawGet } from './helpers/mc-raw';
import type { ItemResult } from './client';
import { channelName, quietEvents, type OpsEvent } from '../src/core/events';
import { MemcachedBackend } from '../src/backends/memcached';
import { Ejection } from '../src/backends/memcached/ejection';
import { KetamaRing } from '../src/backends/memcached/ketama';
import { freePort } from '../src/fleet/local-fleet';

const FAST_RECONNECT = { reconnectMinMs: 20, reconnectMaxMs: 200 };
const DEAD = 1;

const errCode = (r: ItemResult | undefined): string | undefined => (r && 'error' in r ? r.error.code : undefined);
const hitValue = (r: ItemResult | undefined, what: string): string => {
  assert.ok(r && 'hit' in r && r.hit, `${what}: expected a hit, got ${JSON.stringify(r)}`);
  return (r as { value: Buffer }).value.toString();
};

function backendOf(h: Harness): MemcachedBackend {
  const b = h.gw.pools[0].backend;
  assert.ok(b instanceof MemcachedBackend);
  return b;
}

const shardOfKey = (b: MemcachedBackend, k: string): number => {
  const buf = Buffer.from(k);
  return b.shardOf(buf, 0, buf.length);
};

/** Every shard event of gateway `gw` published on `kvgate:shard` while `fn` runs (and after, until stop). */
function recordShardEvents(gw: string): { events: OpsEvent[]; stop(): void } {
  const events: OpsEvent[] = [];
  const fn = (m: unknown): void => {
    const e = m as OpsEvent;
    if (e.gateway === gw) events.push(e);
  };
  subscribe(channelName('shard'), fn);
  return { events, stop: () => unsubscribe(channelName('shard'), fn) };
}

/** One round: set every key to `<key>:<round>`, then get them all. */
async function round(h: Harness, keys: string[], n: number): Promise<{ set: ItemResult[]; got: ItemResult[] }> {
  const ws = await wsOf(h);
  const set = await ws.mset(keys.map((k) => ({ key: k, value: `${k}:${n}` })));
  const got = await ws.mget(keys);
  return { set, got };
}

const clients = new WeakMap<Harness, Awaited<ReturnType<Harness['ws']>>>();
async function wsOf(h: Harness): Promise<Awaited<ReturnType<Harness['ws']>>> {
  let c = clients.get(h);
  if (c === undefined) {
    c = await h.ws();
    clients.set(h, c);
  }
  return c;
}

// -------------------------------------------------------------------------------------------------------
describe('fail-fast (the default)', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ shard: FAST_RECONNECT });
  });
  after(async () => {
    await h?.stop();
  });

  it("fails the dead shard's keys with SHARD_DOWN, never moves a key, and serves them again after a restart", async () => {
    const b = backendOf(h);
    assert.equal(b.failure.mode, 'fail-fast');
    const keys = keysByShard(b.ring, 3, 'ff:', 8).flat();
    const home = keys.map((k) => shardOfKey(b, k));
    const dead = b.shards[DEAD];

    let r = await round(h, keys, 0);
    keys.forEach((k, i) => assert.equal(hitValue(r.got[i], k), `${k}:0`));

    await h.fleet.members[DEAD].stop();
    // The client keeps writing and reading; every round is checked, while the gateway notices the kill and
    // while it reconnects in vain, until at least 10 rounds ran with the shard known down and it failed
    // more reconnects than `eject` would have allowed (failureLimit 3).
    let roundsDown = 0;
    const reconnectsBefore = dead.reconnects;
    const deadline = Date.now() + 10_000;
    for (let n = 1; roundsDown < 10 || dead.reconnects - reconnectsBefore < 6; n++) {
      assert.ok(Date.now() < deadline, 'rounds took too long');
      const sawDown = !dead.up;
      r = await round(h, keys, n);
      keys.forEach((k, i) => {
        assert.equal(shardOfKey(b, k), home[i], `${k} moved`);
        if (home[i] === DEAD) {
          assert.equal(errCode(r.set[i]), 'SHARD_DOWN', `set ${k}: ${JSON.stringify(r.set[i])}`);
          assert.equal(errCode(r.got[i]), 'SHARD_DOWN', `get ${k}: ${JSON.stringify(r.got[i])}`);
        } else {
          assert.deepEqual(r.set[i], { ok: true }, `set ${k}`);
          assert.equal(hitValue(r.got[i], k), `${k}:${n}`);
        }
      });
      if (sawDown) roundsDown++;
    }
    assert.equal(dead.stats().ejected, false);
    assert.ok(dead.reconnects > 0, 'the dead shard was retried');

    await h.fleet.members[DEAD].start();
    await until(() => dead.up, 5000, 'the shard to reconnect');
    r = await round(h, keys, 1000);
    keys.forEach((k, i) => {
      assert.equal(shardOfKey(b, k), home[i], `${k} moved after the restart`);
      assert.equal(hitValue(r.got[i], k), `${k}:1000`);
    });
    // served by the same shard: the restarted server holds its keys' new values
    for (let i = 0; i < keys.length; i++) {
      if (home[i] !== DEAD) continue;
      const v = await rawGet(h.fleet.members[DEAD].port, keys[i]);
      assert.equal(v?.value.toString(), `${keys[i]}:1000`);
    }
  });
});

// -------------------------------------------------------------------------------------------------------
describe('eject', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      shard: { ...FAST_RECONNECT, timeoutMs: 200, connectTimeoutMs: 200 },
      failure: { mode: 'eject', failureLimit: 3, retryTimeoutMs: 200, maxRetryTimeoutMs: 2000 },
    });
  });
  after(async () => {
    await h?.stop();
  });

  it('ejects a dead shard after failureLimit failures, places its keys on the survivors, and returns it', async () => {
    const b = backendOf(h);
    const keys = keysByShard(b.ring, 3, 'ej:', 8).flat();
    const home = keys.map((k) => shardOfKey(b, k));
    const dead = b.shards[DEAD];
    const label = dead.label;
    const rec = recordShardEvents(h.gw.events.gateway);
    try {
      let r = await round(h, keys, 0);
      keys.forEach((k, i) => assert.equal(hitValue(r.got[i], k), `${k}:0`));

      await h.fleet.members[DEAD].stop();
      await until(() => dead.stats().ejected, 5000, 'the dead shard to be ejected');
      const mine = rec.events.filter((e) => e.shard === label);
      const ejectedAt = mine.findIndex((e) => e.event === 'shard.ejected');
      assert.ok(ejectedAt >= 0, `shard.ejected seen: ${JSON.stringify(mine.map((e) => e.event))}`);
      const downs = mine.slice(0, ejectedAt).filter((e) => e.event === 'shard.down');
      assert.equal(downs.length, 3, 'ejected at the third consecutive failure');
      assert.equal(downs[0].reason, 'lost connection');
      assert.equal(downs[1].reason, 'connect refused');
      assert.equal(mine[ejectedAt].failures, 3);
      assert.equal(mine[ejectedAt].retryMs, 200);

      // Placement is a ring over the two survivors, in the original shard numbering.
      const survivors = [0, 2];
      const ring2 = new KetamaRing(
        survivors.map((i) => h.fleet.servers()[i]),
        h.config.hash,
      );
      let moved = 0;
      keys.forEach((k, i) => {
        const want = survivors[ring2.lookupKey(k)];
        assert.equal(shardOfKey(b, k), want, `${k} placed as a ring over the survivors places it`);
        if (home[i] === DEAD) moved++;
      });
      assert.ok(moved >= 8, 'the dead shard had keys to move');
      r = await round(h, keys, 1);
      keys.forEach((k, i) => {
        assert.deepEqual(r.set[i], { ok: true }, `set ${k}: ${JSON.stringify(r.set[i])}`);
        assert.equal(hitValue(r.got[i], k), `${k}:1`);
      });
      // the moved keys really live on their new shard
      for (let i = 0; i < keys.length; i++) {
        if (home[i] !== DEAD) continue;
        const port = h.fleet.members[shardOfKey(b, keys[i])].port;
        assert.equal((await rawGet(port, keys[i]))?.value.toString(), `${keys[i]}:1`);
      }

      await h.fleet.members[DEAD].start();
      await until(
        () => rec.events.some((e) => e.shard === label && e.event === 'shard.returned'),
        5000,
        'shard.returned',
      );
      assert.equal(dead.stats().ejected, false);
      assert.equal(dead.up, true, 'returned only with its connection up');
      keys.forEach((k, i) => assert.equal(shardOfKey(b, k), home[i], `${k} back on the original ring`));
      r = await round(h, keys, 2);
      keys.forEach((k, i) => assert.equal(hitValue(r.got[i], k), `${k}:2`));
      for (let i = 0; i < keys.length; i++) {
        if (home[i] !== DEAD) continue;
        assert.equal((await rawGet(h.fleet.members[DEAD].port, keys[i]))?.value.toString(), `${keys[i]}:2`);
      }
    } finally {
      rec.stop();
    }
  });

  it('counts timeouts of a frozen shard as failures, and a probe brings it back once it answers again', async () => {
    const b = backendOf(h);
    const frozen = b.shards[2];
    const keys = keysByShard(b.ring, 3, 'ejf:', 4)[2];
    const rec = recordShardEvents(h.gw.events.gateway);
    const pid = h.fleet.members[2].proc!.pid!;
    let thawed = false;
    try {
      await freeze(pid);
      // Only traffic can time out: keep reading the frozen shard's keys until it is ejected.
      const ws = await wsOf(h);
      const deadline = Date.now() + 15_000;
      while (!frozen.stats().ejected) {
        assert.ok(Date.now() < deadline, 'the frozen shard was not ejected');
        const got = await ws.mget(keys);
        for (const g of got) assert.ok(!('hit' in g), `a frozen shard answered: ${JSON.stringify(g)}`);
      }
      const mine = rec.events.filter((e) => e.shard === frozen.label);
      const ejected = mine.find((e) => e.event === 'shard.ejected');
      assert.equal(ejected?.reason, 'timeout');
      assert.ok(mine.filter((e) => e.event === 'shard.timeout').length >= 3, 'three timeouts in a row');
      // its keys are served by the others now
      await ws.mset(keys.map((k) => ({ key: k, value: `${k}:moved` })));
      const got = await ws.mget(keys);
      keys.forEach((k, i) => {
        assert.notEqual(shardOfKey(b, k), 2);
        assert.equal(hitValue(got[i], k), `${k}:moved`);
      });
      const probesBefore = rec.events.length;
      process.kill(pid, 'SIGCONT');
      thawed = true;
      await until(
        () => rec.events.slice(probesBefore).some((e) => e.shard === frozen.label && e.event === 'shard.returned'),
        10_000,
        'shard.returned after SIGCONT',
      );
      keys.forEach((k) => assert.equal(shardOfKey(b, k), 2, `${k} back on its shard`));
    } finally {
      if (!thawed) process.kill(pid, 'SIGCONT');
      rec.stop();
    }
  });

  it('with every shard failing, keeps the configured ring and fails with SHARD_DOWN', async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const servers = ports.map((port) => ({ host: '127.0.0.1', port, weight: 1 }));
    const b = new MemcachedBackend(
      'all-down',
      {
        backend: 'memcached',
        servers,
        hash: 'md5',
        failure: { mode: 'eject', failureLimit: 1, retryTimeoutMs: 60_000, maxRetryTimeoutMs: 60_000 },
      },
      {
        maxValueBytes: 1 << 20,
        maxOps: 100,
        shard: { timeoutMs: 500, connectTimeoutMs: 500, reconnectMinMs: 20, reconnectMaxMs: 200 },
        fds: null,
        events: quietEvents(),
      },
    );
    try {
      await b.connect();
      await until(() => b.shards.every((s) => s.stats().ejected), 5000, 'every shard ejected');
      const keys = Array.from({ length: 50 }, (_, i) => `all:${i}`);
      for (const k of keys) assert.equal(shardOfKey(b, k), b.ring.lookupKey(k), `${k} on its configured shard`);
      assert.ok(
        b.shards.every((s) => !s.up),
        'all down: the coalescer fails their items with SHARD_DOWN',
      );
    } finally {
      b.close();
    }
  });
});

// -------------------------------------------------------------------------------------------------------
describe('the policy state machine (ejection.ts, fake clock)', () => {
  const policy = { failureLimit: 3, retryTimeoutMs: 100, maxRetryTimeoutMs: 700 };

  it('counts consecutive failures; an answered batch resets the count', () => {
    let t = 0;
    const e = new Ejection(policy, () => t);
    assert.equal(e.failure(), false);
    assert.equal(e.failure(), false);
    e.success();
    assert.equal(e.failures, 0);
    assert.equal(e.failure(), false);
    assert.equal(e.failure(), false);
    t = 50;
    assert.equal(e.failure(), true, 'the third in a row ejects');
    assert.equal(e.ejected, true);
    assert.equal(e.retryMs, 100);
    assert.equal(e.probeAt, 150);
    assert.equal(e.failure(), false, 'failures while ejected do not eject again');
    t = 150;
    e.probeFailed();
    assert.equal(e.probeAt, 250, 'a failed probe waits one more retry timeout');
    assert.equal(e.retryMs, 100, 'without doubling');
    t = 250;
    assert.equal(e.returned(), 200, 'out for 200 ms');
    assert.equal(e.ejected, false);
  });

  it('doubles the retry timeout on flapping, caps it at the maximum, and resets it once stable', () => {
    let t = 1000;
    const e = new Ejection(policy, () => t);
    const ejectNow = (): void => {
      for (let i = 0; i < policy.failureLimit - 1; i++) assert.equal(e.failure(), false);
      assert.equal(e.failure(), true);
    };
    ejectNow();
    assert.equal(e.retryMs, 100, 'first ejection: the base timeout');
    const seen: number[] = [];
    for (let k = 0; k < 5; k++) {
      t = e.probeAt;
      e.returned();
      t += 2 * e.retryMs - 1; // ejected again just inside the flap window
      ejectNow();
      seen.push(e.retryMs);
      assert.equal(e.probeAt, t + e.retryMs);
    }
    assert.deepEqual(seen, [200, 400, 700, 700, 700], 'doubling, capped at maxRetryTimeoutMs');

    // Back, then stable for 2x the current timeout: the next ejection starts from the base again.
    t = e.probeAt;
    e.returned();
    t += 2 * e.retryMs;
    ejectNow();
    assert.equal(e.retryMs, 100);

    // Stability is also noticed by a success: the state shows the base timeout before any ejection.
    for (const _ of [1, 2]) {
      t = e.probeAt;
      e.returned();
      t += 1;
      ejectNow();
    }
    assert.equal(e.retryMs, 400);
    t = e.probeAt;
    e.returned();
    t += 799;
    e.success();
    assert.equal(e.retryMs, 400, 'not yet stable');
    t += 1;
    e.success();
    assert.equal(e.retryMs, 100, 'stable for 2x 400 ms');
  });
});
