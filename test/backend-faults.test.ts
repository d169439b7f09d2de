/**
 * A broken or hostile memcached (test/helpers/fake-memcached.ts) next to a real one: for each fault, the
 * fake shard's items get the documented per-item error (docs/PROTOCOL.md), never a wrong value; the real
 * shard's items in the same requests are answered; and the fake shard's connection recovers (a later
 * request to it succeeds). Conditions are polled with deadlines, never slept on.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mergeConfig, validateConfig } from '../src/config/schema';
import { startGateway, type Gateway } from '../src/gateway';
import { LocalFleet } from '../src/fleet/local-fleet';
import { KvWsClient, type MgetResult, type MsetResult } from './client';
import { FakeMemcached, type FakeCommand } from './helpers/fake-memcached';
import { keysByShard, rawGet } from './helpers/mc-raw';
import { until, testConfig } from './helpers/harness';

const FAKE = 0;
const REAL = 1;
const timeoutMs = 400;

const errCode = (r: MgetResult | MsetResult | undefined): string | undefined =>
  r && 'error' in r ? r.error.code : undefined;

describe('backend faults: a fake memcached beside a real one', () => {
  let fake: FakeMemcached;
  let fleet: LocalFleet;
  let gw: Gateway;
  let ws: KvWsClient;
  let keys: string[][];
  let round = 0;

  before(async () => {
    fake = await FakeMemcached.start();
    fleet = await LocalFleet.start({ count: 1 });
    const config = validateConfig(
      mergeConfig(testConfig(), {
        port: 0,
        admin: { port: 0 },
        log: { level: 'silent' },
        servers: [{ host: '127.0.0.1', port: fake.port, weight: 1 }, ...fleet.servers()],
        shard: { timeoutMs, connectTimeoutMs: 500, reconnectMinMs: 10, reconnectMaxMs: 50 },
      }),
    );
    gw = await startGateway(config);
    ws = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
    keys = keysByShard(gw.ring, 2, 'bf:', 200);
  });
  after(async () => {
    ws?.terminate();
    await gw?.stop();
    await fake?.stop();
    await fleet?.stop();
  });
  beforeEach(() => {
    fake.script = null;
    round++;
  });

  /** Two fresh keys per shard for this test, with values stored (straight into the fake's map for it). */
  async function seed(valueOf: (k: string) => Buffer): Promise<{ fk: string[]; rk: string[] }> {
    const fk = keys[FAKE].splice(0, 2);
    const rk = keys[REAL].splice(0, 2);
    for (const k of fk) fake.data.set(k, { flags: 7, value: valueOf(k) });
    const stored = await ws.mset(rk.map((k) => ({ key: k, value: valueOf(k), flags: 7 })));
    assert.deepEqual(
      stored,
      rk.map(() => ({ ok: true })),
    );
    return { fk, rk };
  }

  /** Gets fk and rk in one mget: rk must be hits with their values; returns the fake keys' results. */
  async function mgetBoth(fk: string[], rk: string[], valueOf: (k: string) => Buffer): Promise<MgetResult[]> {
    const res = await ws.mget([...fk, ...rk]);
    rk.forEach((k, n) =>
      assert.deepEqual(res[fk.length + n], { hit: true, value: valueOf(k), flags: 7 }, `real shard key ${k}`),
    );
    return res.slice(0, fk.length);
  }

  /** Each fake-shard result is the error `code` or, where allowed, the true value: never anything else. */
  function onlyErrorOrTruth(
    res: MgetResult[],
    fk: string[],
    code: string,
    valueOf: (k: string) => Buffer,
    what: string,
  ): number {
    let errors = 0;
    res.forEach((r, n) => {
      if (errCode(r) !== undefined) {
        assert.equal(errCode(r), code, `${what}: ${fk[n]} ${JSON.stringify(r)}`);
        errors++;
        return;
      }
      assert.deepEqual(r, { hit: true, value: valueOf(fk[n]), flags: 7 }, `${what}: ${fk[n]} must be its true value`);
    });
    return errors;
  }

  /** The fake shard answers again: a get and a set through it succeed (on a new connection when `reset`). */
  async function recovers(connsBefore: number, reset: boolean): Promise<void> {
    fake.script = null;
    if (reset)
      await until(
        () => fake.connections > connsBefore && gw.shards[FAKE].up,
        3000,
        'the gateway reconnected to the fake',
      );
    const k = keys[FAKE].shift()!;
    assert.deepEqual(await ws.mset([{ key: k, value: Buffer.from(`after ${round}`) }]), [{ ok: true }]);
    assert.deepEqual(await ws.mget([k]), [{ hit: true, value: Buffer.from(`after ${round}`), flags: 0 }]);
    if (!reset) assert.equal(fake.connections, connsBefore, 'an in-step error does not cost the connection');
  }

  const small = (k: string): Buffer => Buffer.from(`value of ${k}`);

  it('a garbage line in a get reply: SHARD_ERROR on the fake shard items only, then recovery', async () => {
    const { fk, rk } = await seed(small);
    const conns = fake.connections;
    fake.script = (c) => (c.op === 'get' ? { reply: 'WHAT IS THIS\r\n' } : undefined);
    const res = await mgetBoth(fk, rk, small);
    assert.equal(onlyErrorOrTruth(res, fk, 'SHARD_ERROR', small, 'garbage'), fk.length);
    await recovers(conns, true);
  });

  it('SERVER_ERROR, NS and EX for single writes: that item only, the batch and connection stay in step', async () => {
    const conns = fake.connections;
    const fk = keys[FAKE].splice(0, 4);
    const rk = keys[REAL].splice(0, 1);
    const answer: Record<string, (c: FakeCommand) => string> = {
      [fk[0]]: () => 'SERVER_ERROR out of memory storing object\r\n',
      [fk[1]]: (c) => `NS O${c.opaque}\r\n`,
      [fk[2]]: (c) => `EX O${c.opaque}\r\n`,
    };
    fake.script = (c) => (c.op === 'ms' && answer[c.keys[0]] ? { reply: answer[c.keys[0]](c) } : undefined);
    const res = await ws.mset([...fk, ...rk].map((k) => ({ key: k, value: small(k) })));
    assert.equal(errCode(res[0]), 'SHARD_ERROR', JSON.stringify(res[0]));
    assert.equal(errCode(res[1]), 'NOT_STORED', JSON.stringify(res[1]));
    assert.equal(errCode(res[2]), 'NOT_STORED', JSON.stringify(res[2]));
    assert.deepEqual(res[3], { ok: true });
    assert.deepEqual(res[4], { ok: true });
    assert.ok(fake.data.has(fk[3]) && !fake.data.has(fk[0]) && !fake.data.has(fk[1]) && !fake.data.has(fk[2]));
    await recovers(conns, false);
  });

  it('a VALUE for a key not asked: SHARD_ERROR, never that value', async () => {
    const { fk, rk } = await seed(small);
    const conns = fake.connections;
    fake.script = (c) => (c.op === 'get' ? { reply: 'VALUE bf:someone-else 7 5\r\nother\r\nEND\r\n' } : undefined);
    const res = await mgetBoth(fk, rk, small);
    assert.equal(onlyErrorOrTruth(res, fk, 'SHARD_ERROR', small, 'wrong key'), fk.length);
    await recovers(conns, true);
  });

  it("a write acknowledged with another opaque (a stray HD O0, or the next op's): SHARD_ERROR, not ok", async () => {
    const conns = fake.connections;
    const fk = keys[FAKE].splice(0, 2);
    // The first write on the connection goes through, so a batch-local counter would be at O0 again.
    assert.deepEqual(await ws.mset([{ key: fk[0], value: Buffer.from('first') }]), [{ ok: true }]);
    fake.script = (c) => (c.op === 'ms' ? { reply: 'HD O0\r\n' } : undefined);
    const [r] = await ws.mset([{ key: fk[1], value: Buffer.from('never stored') }]);
    assert.equal(errCode(r), 'SHARD_ERROR', `a stray HD O0 acknowledged a write: ${JSON.stringify(r)}`);
    assert.ok(!fake.data.has(fk[1]));
    await recovers(conns, true);
    const conns2 = fake.connections;
    fake.script = (c) => (c.op === 'ms' ? { reply: `HD O${Number(c.opaque) + 1}\r\n` } : undefined);
    const k = keys[FAKE].shift()!;
    assert.equal(errCode((await ws.mset([{ key: k, value: Buffer.from('x') }]))[0]), 'SHARD_ERROR');
    await recovers(conns2, true);
  });

  it('a value longer than announced: SHARD_ERROR, never the announced prefix as a value', async () => {
    const { fk, rk } = await seed(small);
    const conns = fake.connections;
    fake.script = (c) => {
      if (c.op !== 'get') return undefined;
      // announces 5 bytes, sends 7: "value" then "XX" where \r\n should be
      return { reply: `VALUE ${c.keys[0]} 7 5\r\nvalueXX\r\nEND\r\n` };
    };
    const res = await mgetBoth(fk, rk, small);
    assert.equal(errCode(res[0]), 'SHARD_ERROR', JSON.stringify(res[0]));
    onlyErrorOrTruth(res, fk, 'SHARD_ERROR', small, 'longer');
    await recovers(conns, true);
  });

  it('a large value longer than announced: its parts were streamed, then an ERROR for it, never a hit', async () => {
    const big = (k: string): Buffer => Buffer.alloc(100_000, k.length);
    const { fk, rk } = await seed(big);
    const conns = fake.connections;
    fake.script = (c) => {
      if (c.op !== 'get') return undefined;
      const v = fake.data.get(c.keys[0])!.value;
      return {
        reply: Buffer.concat([Buffer.from(`VALUE ${c.keys[0]} 7 ${v.length - 1}\r\n`), v, Buffer.from('\r\nEND\r\n')]),
      };
    };
    const res = await mgetBoth(fk, rk, big);
    assert.equal(errCode(res[0]), 'SHARD_ERROR', 'the cut value is an error');
    onlyErrorOrTruth(res, fk, 'SHARD_ERROR', big, 'large longer');
    await recovers(conns, true);
  });

  it('a value shorter than announced: SHARD_ERROR when the framing shows it, TIMEOUT when the reply just ends', async () => {
    const { fk, rk } = await seed(small);
    let conns = fake.connections;
    fake.script = (c) => {
      if (c.op !== 'get') return undefined;
      // announces 8, sends "short": the 8 bytes run into the next line, whose bytes are not \r\n
      return { reply: Buffer.from(`VALUE ${fk[0]} 7 8\r\nshort\r\nVALUE ${fk[1]} 7 5\r\nsecond\r\nEND\r\n`) };
    };
    let res = await mgetBoth(fk, rk, small);
    assert.equal(onlyErrorOrTruth(res, fk, 'SHARD_ERROR', small, 'shorter, framed'), fk.length);
    await recovers(conns, true);
    conns = fake.connections;
    fake.script = (c) => (c.op === 'get' ? { reply: `VALUE ${fk[0]} 7 100\r\nshort\r\nEND\r\n` } : undefined);
    res = await mgetBoth(fk, rk, small);
    assert.equal(onlyErrorOrTruth(res, fk, 'TIMEOUT', small, 'shorter, unframed'), fk.length);
    await recovers(conns, true);
  });

  it("a VALUE over the gateway's maximum value size: SHARD_ERROR, not buffered", async () => {
    const { fk, rk } = await seed(small);
    const conns = fake.connections;
    const huge = gw.config.limits.maxValueBytes + 1;
    fake.script = (c) =>
      c.op === 'get'
        ? { reply: Buffer.concat([Buffer.from(`VALUE ${c.keys[0]} 7 ${huge}\r\n`), Buffer.alloc(64 * 1024, 0x41)]) }
        : undefined;
    const res = await mgetBoth(fk, rk, small);
    assert.equal(onlyErrorOrTruth(res, fk, 'SHARD_ERROR', small, 'oversized'), fk.length);
    await recovers(conns, true);
  });

  it('a reply split byte by byte: every value exact', async () => {
    const mixed = (k: string): Buffer =>
      k.endsWith('0') || k.endsWith('5') ? Buffer.alloc(20_000, 0x0d) : Buffer.from(`a\r\nEND\r\n${k}`);
    const { fk, rk } = await seed(mixed);
    const conns = fake.connections;
    fake.script = (c) => (c.op === 'get' || c.op === 'ms' ? { reply: fake.normal(c), drip: true } : undefined);
    const res = await mgetBoth(fk, rk, mixed);
    res.forEach((r, n) => assert.deepEqual(r, { hit: true, value: mixed(fk[n]), flags: 7 }, fk[n]));
    const k = keys[FAKE].shift()!;
    assert.deepEqual(await ws.mset([{ key: k, value: Buffer.from('dripped') }]), [{ ok: true }]);
    assert.deepEqual(fake.data.get(k)?.value, Buffer.from('dripped'));
    await recovers(conns, false);
  });

  it("a stall: TIMEOUT for the fake shard's items after timeoutMs, the real shard answers, then recovery", async () => {
    const { fk, rk } = await seed(small);
    const conns = fake.connections;
    fake.script = (c) => (c.op === 'get' || c.op === 'ms' ? { stall: true } : undefined);
    const res = await mgetBoth(fk, rk, small);
    assert.equal(onlyErrorOrTruth(res, fk, 'TIMEOUT', small, 'stall'), fk.length);
    await recovers(conns, true);
  });

  it('a close mid-value: SHARD_DOWN for the cut item (after its parts), never a truncated hit', async () => {
    const big = (k: string): Buffer => Buffer.alloc(60_000, 0x30 + (k.length % 10));
    const { fk, rk } = await seed(big);
    const conns = fake.connections;
    fake.script = (c) => {
      if (c.op !== 'get') return undefined;
      const whole = fake.normal(c);
      return { reply: whole.subarray(0, 40_000), close: true };
    };
    const res = await mgetBoth(fk, rk, big);
    assert.equal(onlyErrorOrTruth(res, fk, 'SHARD_DOWN', big, 'close mid-value'), fk.length);
    await recovers(conns, true);
  });

  it('a close at the very end of a value, before its \\r\\n: the value is not taken as whole', async () => {
    const { fk, rk } = await seed(small);
    const conns = fake.connections;
    fake.script = (c) => {
      if (c.op !== 'get') return undefined;
      const v = fake.data.get(c.keys[0])!.value;
      return { reply: Buffer.concat([Buffer.from(`VALUE ${c.keys[0]} 7 ${v.length}\r\n`), v]), close: true };
    };
    const res = await mgetBoth(fk, rk, small);
    assert.equal(errCode(res[0]), 'SHARD_DOWN', JSON.stringify(res[0]));
    await recovers(conns, true);
  });

  it('shard socket write failures (reset as soon as a command arrives): SHARD_DOWN, the real shard answers, then recovery', async () => {
    const { fk, rk } = await seed(small);
    const conns = fake.connections;
    fake.script = (c) => (c.op === 'get' || c.op === 'ms' ? { reset: true } : undefined);
    const res = await mgetBoth(fk, rk, small);
    assert.equal(onlyErrorOrTruth(res, fk, 'SHARD_DOWN', small, 'reset on get'), fk.length);
    await until(() => gw.shards[FAKE].up, 3000, 'the fake shard reconnected');
    const k = keys[FAKE].shift()!;
    const rset = keys[REAL].shift()!;
    const out = await ws.mset([
      { key: k, value: Buffer.from('x') },
      { key: rset, value: Buffer.from('y') },
    ]);
    assert.equal(errCode(out[0]), 'SHARD_DOWN', JSON.stringify(out[0]));
    assert.deepEqual(out[1], { ok: true });
    assert.deepEqual((await rawGet(fleet.members[0].port, rset))?.value, Buffer.from('y'));
    await recovers(conns, true);
  });
});

describe("backend faults: a shard's item_size_max", () => {
  it('a set the fake shard cannot store (item_size_max 4096) is refused with TOO_LARGE and never sent', async () => {
    const fake = await FakeMemcached.start();
    fake.itemSizeMax = 4096;
    const gw = await startGateway(
      validateConfig(
        mergeConfig(testConfig(), {
          port: 0,
          admin: { port: 0 },
          log: { level: 'silent' },
          servers: [{ host: '127.0.0.1', port: fake.port, weight: 1 }],
        }),
      ),
    );
    const ws = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
    try {
      const res = await ws.mset([
        { key: 'ism:big', value: Buffer.alloc(4096 - 7 - 96 + 1) },
        { key: 'ism:fits', value: Buffer.alloc(4096 - 8 - 96) },
      ]);
      assert.equal(errCode(res[0]), 'TOO_LARGE', JSON.stringify(res[0]));
      assert.deepEqual(res[1], { ok: true });
      assert.ok(!fake.commands.some((c) => c.keys[0] === 'ism:big'), 'the refused set never reached the shard');
      assert.equal(fake.data.get('ism:fits')?.value.length, 4096 - 8 - 96);
      assert.equal(gw.shards[0].itemSizeMax, 4096, 'read from stats settings at connect');
    } finally {
      ws.terminate();
      await gw.stop();
      await fake.stop();
    }
  });

  it('a real memcached with -I 1m: a value just under the gateway limit is TOO_LARGE, not SHARD_ERROR; the largest allowed is stored', async () => {
    const fleet = await LocalFleet.start({ count: 1, itemSizeMb: 1 });
    const gw = await startGateway(
      validateConfig(
        mergeConfig(testConfig(), {
          port: 0,
          admin: { port: 0 },
          log: { level: 'silent' },
          servers: fleet.servers(),
        }),
      ),
    );
    const ws = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
    try {
      const max = gw.config.limits.maxValueBytes;
      const key = 'k'.repeat(250);
      const under = await ws.mset([{ key, value: Buffer.alloc(max - 100, 0x61) }]);
      assert.equal(errCode(under[0]), 'TOO_LARGE', JSON.stringify(under[0]));
      assert.equal(gw.shards[0].itemSizeMax, 1024 * 1024);
      const largest = 1024 * 1024 - 250 - 96;
      assert.deepEqual(await ws.mset([{ key, value: Buffer.alloc(largest, 0x62), flags: 0xffffffff }]), [{ ok: true }]);
      assert.equal((await rawGet(fleet.members[0].port, key))?.value.length, largest);
    } finally {
      ws.terminate();
      await gw.stop();
      await fleet.stop();
    }
  });
});
