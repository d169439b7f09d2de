import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import { startHarness, Harness, memcachedStats, until } from './helpers/harness';
import { frame, nonReadingWs } from './helpers/raw-ws';
import { HIGH_WATER } from '../src/stream/ws-session';
import type { WsConn } from '../src/front/ws';

const poolInUse = (h: Harness): number => (h.gw.stats().pool as { inUse: number }).inUse;
const cmdGets = async (h: Harness): Promise<number> => {
  let n = 0;
  for (const m of h.fleet.members) n += (await memcachedStats(m.port)).cmd_get;
  return n;
};

describe('backpressure', () => {
  let h: Harness;
  const window = 256 * 1024;
  before(async () => {
    h = await startHarness({ limits: { maxBufferedBytesPerConnection: window } });
  });
  after(() => h.stop());

  it('stops fetching for a client that does not read, holds bounded buffers, and never stalls the others', async () => {
    const fast = await h.ws();
    const value = Buffer.alloc(100 * 1024, 0x5a);
    const keys = Array.from({ length: 10 }, (_, i) => `bp:${i}`);
    await fast.mset(keys.map((key) => ({ key, value })));
    const slow = await nonReadingWs(h.gw.port);
    await until(() => h.gw.ctx.gate.ws === 2, 2000, 'two connections');
    // 300 requests x 1 MB of answers: far beyond what the kernel and the window can hold.
    let sent = 0;
    const pump = (): void => {
      while (sent < 300) {
        sent++;
        if (!slow.write(frame(pack({ id: sent, op: 'mget', keys })))) {
          slow.once('drain', pump);
          return;
        }
      }
    };
    pump();
    let peakInUse = 0;
    for (let k = 0; k < 50; k++) {
      const r = await fast.get(keys[k % 10]);
      assert.ok(r.hit && r.value.equals(value), 'the other client is served');
      peakInUse = Math.max(peakInUse, poolInUse(h));
    }
    // Once the kernel's and uWS's buffers are full, the gateway stops asking memcached for this client.
    await until(
      async () => {
        const a = await cmdGets(h);
        await new Promise((r) => setTimeout(r, 300));
        return (await cmdGets(h)) === a;
      },
      10_000,
      'gets for the non-reader to stop',
    );
    const stalledAt = await cmdGets(h);
    assert.ok(stalledAt < 300 * 10, `memcached served ${stalledAt} gets, not all 3,000 asked for`);
    // The window (256 KiB = 16 buffers) plus one value's overshoot, plus a few in use elsewhere.
    peakInUse = Math.max(peakInUse, poolInUse(h));
    assert.ok(peakInUse <= 40, `peak pool buffers in use: ${peakInUse}`);
    assert.equal(h.gw.ctx.gate.ws, 2, 'a client that reads nothing is not cut off for it');
    slow.destroy();
    await until(() => h.gw.ctx.gate.ws === 1, 5000, 'the slow client to be gone');
    await until(() => poolInUse(h) === 0 && h.gw.ctx.budget.used === 0, 3000, 'all buffers and reservations back');
    const settled = await cmdGets(h);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await cmdGets(h), settled, 'nothing more is fetched for a client that is gone');
    const r = await fast.get(keys[0]);
    assert.ok(r.hit);
  });

  it('resumes a client that stopped reading from drain: every answer arrives whole, in order, once', async () => {
    const c = await h.ws();
    // Values with a pattern per key, so a frame sent twice, lost or out of order shows as wrong bytes
    // (the client also checks that the parts of a value come in order and end exactly at its length).
    const value = (k: number): Buffer =>
      Buffer.from(Array.from({ length: 60 * 1024 + k }, (_, j) => (j * 7 + k) & 0xff));
    const keys = Array.from({ length: 40 }, (_, k) => `bp:resume:${k}`);
    for (let k = 0; k < keys.length; k += 10)
      await c.mset(keys.slice(k, k + 10).map((key, j) => ({ key, value: value(k + j) })));
    const conn = (): WsConn | undefined => [...h.gw.ws.sessions].find((x) => x.s.queuedFrames > 0);
    c.socket.pause();
    // 8 x 40 values of about 60 KiB: ~19 MiB, more than loopback's socket buffers and the window hold.
    const ends: number[] = [];
    const asked = Array.from({ length: 8 }, (_, r) =>
      c.mget(keys).then((got) => {
        ends.push(r);
        return got;
      }),
    );
    await until(
      () => {
        const x = conn();
        return x !== undefined && x.s.transportBytes >= HIGH_WATER;
      },
      10_000,
      'the session to queue frames past its high water mark',
    );
    const held = conn()!;
    const drainsBefore = held.s.drainEvents;
    assert.ok(held.s.queuedFrames > 0);
    assert.equal(ends.length, 0, 'nothing completes while the client reads nothing');
    c.socket.resume();
    let timer: NodeJS.Timeout | undefined;
    const all = await Promise.race([
      Promise.all(asked),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('answers stopped after the client resumed')), 20_000);
      }),
    ]);
    clearTimeout(timer);
    all.forEach((got, r) =>
      got.forEach((g, k) => {
        assert.ok('hit' in g && g.hit, `request ${r} key ${k}`);
        assert.ok(g.value.equals(value(k)), `request ${r} key ${k}: bytes differ`);
      }),
    );
    assert.equal(ends.length, 8);
    assert.ok(held.s.drainEvents > drainsBefore, 'the queued frames went out on drain');
    await until(() => held.s.queuedFrames === 0 && held.s.heldBytes() === 0, 3000, 'nothing left held');
    assert.ok((await c.get(keys[0])).hit, 'the connection goes on');
  });
});
