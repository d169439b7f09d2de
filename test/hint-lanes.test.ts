/**
 * A `wait` hint holds only the requests that sent it: each shard has an immediate lane (end of turn, or
 * batch.windowMs) and a held lane (hints longer than windowMs), each with its own deadline and caps,
 * while sets and deletes for one shard still reach memcached in arrival order. Against the real gateway
 * and memcached; latencies are compared with bounds, never slept on.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { memcachedCommand, startHarness, until, type Harness } from './helpers/harness';
import { KvWsClient } from './client';

type ShardStat = { writes: number; keys: number; cuts: number; batches: number };
const shardStat = (h: Harness): ShardStat => (h.gw.stats().shards as ShardStat[])[0];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
};

/** Resolves to how long `p` took, in ms, from now. */
const timed = <T>(p: Promise<T>): Promise<{ ms: number; r: T }> => {
  const t0 = performance.now();
  return p.then((r) => ({ ms: performance.now() - t0, r }));
};

/** The value memcached itself holds for `key`, or null. */
async function stored(h: Harness, key: string): Promise<string | null> {
  const text = await memcachedCommand(h.fleet.members[0].port, `get ${key}\r\n`);
  const m = /^VALUE \S+ \d+ \d+\r\n([^\r]*)\r\nEND\r\n$/.exec(text);
  if (m) return m[1];
  assert.equal(text, 'END\r\n');
  return null;
}

// -------------------------------------------------------------------------------------------------------
describe('hint lanes: one shard, default window (end of turn), maxWaitMs 50', () => {
  let h: Harness;
  const hint = 50;
  before(async () => {
    h = await startHarness({ batch: { windowMs: 0, maxWaitMs: hint } }, 1);
  });
  after(() => h.stop());

  it("a client hinting 50 ms on every get does not delay another client's gets on the same shard", async () => {
    const victim = await h.ws();
    const hammer = await h.ws();
    await victim.set('lanes:victim', 'v');
    await hammer.set('lanes:hammer', 'h');
    // One get a millisecond, like the hammer, so the victim's gets meet the hammer's held batch at every age.
    const victimRun = async (): Promise<number[]> => {
      const ms: number[] = [];
      for (let n = 0; n < 200; n++) {
        await new Promise((r) => setTimeout(r, 1));
        const t = await timed(victim.get('lanes:victim'));
        assert.ok(t.r.hit && t.r.value.toString() === 'v');
        ms.push(t.ms);
      }
      return ms;
    };
    const alone = median(await victimRun());

    const hammerMs: number[] = [];
    const hammering: Promise<void>[] = [];
    // The gateway runs in this process: a turn the loaded machine stretches delays every answer by as
    // much, so the bound on a held get allows the worst event-loop delay seen while it ran.
    const lag = monitorEventLoopDelay({ resolution: 1 });
    lag.enable();
    const tick = setInterval(() => {
      hammering.push(
        timed(hammer.get('lanes:hammer', { wait: hint })).then((t) => {
          assert.ok(t.r.hit && t.r.value.toString() === 'h');
          hammerMs.push(t.ms);
        }),
      );
    }, 1);
    let withHammer: number;
    let sentDuring: number;
    try {
      await until(() => hammerMs.length > 0, 2000, 'a first hinted get answered');
      const sentBefore = hammering.length;
      withHammer = median(await victimRun());
      sentDuring = hammering.length - sentBefore;
    } finally {
      clearInterval(tick);
    }
    await Promise.all(hammering);
    lag.disable();
    const lagMs = lag.max / 1e6;

    const hammerMedian = median(hammerMs);
    const hammerMax = Math.max(...hammerMs);
    const what =
      `victim median ${alone.toFixed(2)} ms alone, ${withHammer.toFixed(2)} ms with the hammer; ` +
      `hammer: ${hammerMs.length} gets, median ${hammerMedian.toFixed(1)} ms, max ${hammerMax.toFixed(1)} ms; ` +
      `worst event-loop delay ${lagMs.toFixed(1)} ms`;
    assert.ok(sentDuring >= 100, `the hammer kept hinting while the victim ran (${sentDuring} gets): ${what}`);
    assert.ok(withHammer < 15, `the victim's gets were held by another client's hint: ${what}`);
    // The hammer's own gets are held: its batch leaves `hint` after its first op, so the first get of each
    // batch waits about the hint and the later ones less; none waits much past maxWaitMs.
    assert.ok(hammerMax >= hint * 0.9, `the hint held nothing: ${what}`);
    assert.ok(hammerMedian >= hint * 0.3, `the hammer's gets were not held: ${what}`);
    assert.ok(hammerMax < hint + 40 + lagMs, `a hinted get waited past maxWaitMs: ${what}`);
  });

  it('a hinted set then an un-hinted set of the same key leaves the later value in memcached', async () => {
    const c = await h.ws();
    const first = timed(c.set('lanes:order:a', '1', { wait: hint }));
    const second = c.set('lanes:order:a', '2');
    const [t] = await Promise.all([first, second]);
    assert.equal(await stored(h, 'lanes:order:a'), '2');
    // The held write was sent at once, ahead of the un-hinted one, not held until after it.
    assert.ok(t.ms < hint, `the hinted set took ${t.ms.toFixed(1)} ms`);
  });

  it('a held write never leaves before an older un-hinted one when a later un-hinted write releases it', async () => {
    const c = await h.ws();
    // immediate lane: x=old; held lane: x=new; then an un-hinted write to another key of the same shard
    // sends the held write at once: the older immediate one must go ahead of it.
    await Promise.all([
      c.set('lanes:order:x', 'old'),
      c.set('lanes:order:x', 'new', { wait: hint }),
      c.set('lanes:order:y', 'y'),
    ]);
    assert.equal(await stored(h, 'lanes:order:x'), 'new');
    // the same for deletes
    await Promise.all([
      c.set('lanes:order:d', 'kept'),
      c.del('lanes:order:d', { wait: hint }),
      c.set('lanes:order:d', 'again'),
    ]);
    assert.equal(await stored(h, 'lanes:order:d'), 'again');
    await Promise.all([c.set('lanes:order:e', 'gone'), c.del('lanes:order:e', { wait: hint })]);
    assert.equal(await stored(h, 'lanes:order:e'), null);
  });

  it('an un-hinted get does not see a hinted set still held; a hinted get after it does', async () => {
    const c = await h.ws();
    const set = c.set('lanes:seen', 'held', { wait: 40 });
    const plain = c.get('lanes:seen');
    const hinted = c.get('lanes:seen', { wait: 40 });
    assert.deepEqual(await plain, { hit: false });
    assert.deepEqual(await hinted, { hit: true, value: Buffer.from('held'), flags: 0 });
    await set;
  });
});

// -------------------------------------------------------------------------------------------------------
describe('hint lanes with a window: the held lane leaving first takes the older writes with it', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ batch: { windowMs: 20, maxWaitMs: 200 } }, 1);
  });
  after(() => h.stop());

  it('an un-hinted set held by the window goes ahead of a later hinted set whose hold ends first', async () => {
    const c = await h.ws();
    const old = c.set('lanes:win:x', 'old');
    const fresh = timed(c.set('lanes:win:x', 'new', { wait: 22 }));
    // Un-hinted gets every 5 ms keep extending the immediate lane's window past the held lane's deadline.
    const gets: Promise<unknown>[] = [];
    const tick = setInterval(() => gets.push(c.get('lanes:win:other')), 5);
    let t: { ms: number };
    try {
      t = await fresh;
    } finally {
      clearInterval(tick);
    }
    await Promise.all([old, ...gets]);
    assert.ok(t.ms < 100, `the held set left after ${t.ms.toFixed(1)} ms`);
    assert.equal(await stored(h, 'lanes:win:x'), 'new');
  });
});

// -------------------------------------------------------------------------------------------------------
describe('the held lane keeps its bounds: maxWaitMs from its first op, maxOps per lane', () => {
  let h: Harness;
  const maxWaitMs = 60;
  before(async () => {
    h = await startHarness({ batch: { windowMs: 0, maxWaitMs, maxOps: 10 } }, 1);
  });
  after(() => h.stop());

  it('later hints extend the hold, never past maxWaitMs after the first op', async () => {
    const c = await h.ws();
    // wait 40 every 10 ms: each asks for 40 ms from its own arrival, so the first is held about 60 ms
    // (extended, bounded by maxWaitMs from the first op), not 40, and not until the last hint runs out.
    const got: Promise<{ ms: number }>[] = [];
    const t0 = performance.now();
    for (let n = 0; n < 8; n++) {
      got.push(timed(c.get(`lanes:bound:${n}`, { wait: 40 })));
      await new Promise((r) => setTimeout(r, 10));
    }
    const all = await Promise.all(got);
    const firstMs = all[0].ms;
    const what = `latencies ${all.map((t) => t.ms.toFixed(0)).join(', ')} ms (${(performance.now() - t0).toFixed(0)} ms in all)`;
    assert.ok(firstMs >= maxWaitMs * 0.9, `the first hinted get was not extended: ${what}`);
    assert.ok(firstMs < maxWaitMs + 30, `the first hinted get was held past maxWaitMs: ${what}`);
    for (const t of all) assert.ok(t.ms < maxWaitMs + 30, `a hinted get was held past maxWaitMs: ${what}`);
  });

  it('cuts the held lane at maxOps; the rest waits its hint', async () => {
    const c = await KvWsClient.connect(h.wsUrl, { batchSends: true });
    try {
      const before = shardStat(h);
      const all = await Promise.all(
        Array.from({ length: 25 }, (_, n) => timed(c.get(`lanes:cap:${n}`, { wait: maxWaitMs }))),
      );
      const after1 = shardStat(h);
      const ms = all.map((t) => t.ms);
      const what = `latencies ${ms.map((x) => x.toFixed(0)).join(', ')} ms`;
      assert.equal(after1.cuts - before.cuts, 2, what);
      assert.equal(after1.batches - before.batches, 3, what);
      for (const x of ms.slice(0, 20)) assert.ok(x < maxWaitMs / 2, `a full held batch did not leave at once: ${what}`);
      for (const x of ms.slice(20)) assert.ok(x >= maxWaitMs * 0.9, `the rest did not wait its hint: ${what}`);

      // held writes are cut the same way
      const b2 = shardStat(h);
      await Promise.all(Array.from({ length: 25 }, (_, n) => c.set(`lanes:cap:set:${n}`, 'x', { wait: maxWaitMs })));
      assert.equal(shardStat(h).cuts - b2.cuts, 2);
    } finally {
      c.terminate();
    }
  });

  it('a cut of the immediate lane leaves the held lane held', async () => {
    const c = await KvWsClient.connect(h.wsUrl, { batchSends: true });
    try {
      const before = shardStat(h);
      const held = timed(c.get('lanes:percut:held', { wait: maxWaitMs }));
      const plain = await Promise.all(Array.from({ length: 25 }, (_, n) => timed(c.get(`lanes:percut:${n}`))));
      const t = await held;
      const after1 = shardStat(h);
      assert.equal(after1.cuts - before.cuts, 2, 'the immediate lane was cut twice');
      for (const p of plain) assert.ok(p.ms < maxWaitMs / 2, `an un-hinted get took ${p.ms.toFixed(1)} ms`);
      assert.ok(t.ms >= maxWaitMs * 0.9, `the held get left with a cut of the other lane after ${t.ms.toFixed(1)} ms`);
    } finally {
      c.terminate();
    }
  });
});
