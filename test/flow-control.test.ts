/**
 * Credit-based fetching and the global budget, against real memcached: large bulk reads complete for
 * clients that read, at their pace; clients that do not read stop costing fetches; bystanders keep being
 * served without TIMEOUT; the gateway's held memory stays within the documented bounds.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createConnection, Socket } from 'node:net';
import { pack } from 'msgpackr';
import { startHarness, Harness, memcachedStats, until } from './helpers/harness';
import { frame, nonReadingWs } from './helpers/raw-ws';

const KB100 = 100 * 1024;
const valueOf = (i: number): Buffer => {
  const b = Buffer.alloc(KB100, i & 0xff);
  b.writeUInt32BE(i, 0);
  return b;
};

async function cmdGets(h: Harness): Promise<number> {
  let n = 0;
  for (const m of h.fleet.members) n += (await memcachedStats(m.port)).cmd_get;
  return n;
}

/** cmd_get stops growing: sampled twice, `ms` apart. */
async function fetchesStopped(h: Harness, ms = 300): Promise<boolean> {
  const a = await cmdGets(h);
  await new Promise((r) => setTimeout(r, ms));
  return (await cmdGets(h)) === a;
}

/** A bystander: single gets in a loop while `busy()` holds; returns latencies and error codes. */
async function bystander(
  h: Harness,
  key: string,
  expect: Buffer,
  busy: () => boolean,
): Promise<{ ms: number[]; errors: string[] }> {
  const c = await h.ws();
  const ms: number[] = [];
  const errors: string[] = [];
  for (let n = 0; n < 100_000 && busy(); n++) {
    const t = performance.now();
    try {
      const r = await c.get(key);
      if (!r.hit || !r.value.equals(expect)) errors.push('WRONG');
    } catch (e) {
      errors.push((e as { code?: string }).code ?? String(e));
    }
    ms.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 2));
  }
  return { ms, errors };
}

/** POST /v1/mget with an NDJSON body over a raw socket that reads nothing back. */
function nonReadingMget(port: number, keys: string[]): Socket {
  const body = keys.map((k) => JSON.stringify(k)).join('\n') + '\n';
  const s = createConnection({ host: '127.0.0.1', port }, () => {
    s.write(
      `POST /v1/mget HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/x-ndjson\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`,
    );
    s.write(body);
  });
  s.pause();
  s.on('error', () => {});
  return s;
}

describe('flow control', () => {
  let h: Harness;
  const keys = Array.from({ length: 500 }, (_, i) => `fc:${i}`);
  before(async () => {
    h = await startHarness({ limits: { maxBufferedBytesTotal: 64 * 1024 * 1024 } });
    const c = await h.ws();
    for (let k = 0; k < keys.length; k += 10) {
      const r = await c.mset(keys.slice(k, k + 10).map((key, j) => ({ key, value: valueOf(k + j) })));
      assert.ok(r.every((x) => 'ok' in x && x.ok));
    }
  });
  after(() => h.stop());

  it('a fast WebSocket reader gets every value of a 500 x 100 KB mget (49 MiB), never SLOW_CONSUMER', async () => {
    const c = await h.ws();
    let peak = 0;
    const probe = setInterval(() => {
      peak = Math.max(peak, h.gw.ctx.budget.heldBytes);
    }, 5);
    const got = await c.mget(keys);
    clearInterval(probe);
    assert.equal(got.length, 500);
    got.forEach((r, i) => assert.ok('hit' in r && r.hit && r.value.equals(valueOf(i)), `item ${i}`));
    const window = h.config.limits.maxBufferedBytesPerConnection;
    // What the gateway held for this client: its window plus one value's overshoot and uWS's share.
    assert.ok(peak <= window + KB100 + 512 * 1024, `peak held ${peak} bytes for a ${window}-byte window`);
    await until(() => h.gw.ctx.budget.used === 0, 3000, 'the budget to return to zero');
  });

  it('a reading NDJSON client gets all 2,000 x 100 KB items, no TIMEOUT, while bystanders are served', async () => {
    const many = Array.from({ length: 2000 }, (_, i) => keys[i % 500]);
    let done = false;
    const side = bystander(h, keys[7], valueOf(7), () => !done);
    const lines = await new Promise<string[]>((resolve, reject) => {
      const body = many.map((k) => JSON.stringify(k)).join('\n');
      const req = request(
        {
          host: '127.0.0.1',
          port: h.gw.port,
          method: 'POST',
          path: '/v1/mget',
          headers: { 'content-type': 'application/x-ndjson' },
        },
        (res) => {
          let acc = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            acc += d;
          });
          res.on('end', () => resolve(acc.trim().split('\n')));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    done = true;
    const { ms, errors } = await side;
    assert.equal(lines.length, 2001);
    const seen = new Set<number>();
    for (const l of lines.slice(0, 2000)) {
      const o = JSON.parse(l) as { i: number; value?: string; base64?: string; error?: unknown };
      assert.equal(o.error, undefined, `item ${o.i}: ${JSON.stringify(o.error)}`);
      const v = o.base64 !== undefined ? Buffer.from(o.base64, 'base64') : Buffer.from(o.value!, 'latin1');
      assert.ok(v.equals(valueOf(o.i % 500)), `item ${o.i}`);
      seen.add(o.i);
    }
    assert.equal(seen.size, 2000);
    assert.deepEqual(JSON.parse(lines[2000]), { done: true, count: 2000 });
    assert.deepEqual(errors, [], 'bystander errors');
    assert.ok(ms.length > 0);
    assert.equal(
      h.gw.coalescer.stats().reduce((n, s) => n + s.resets, 0),
      0,
      'no shard connection was reset',
    );
  });

  it('a non-reading HTTP bulk client over 8,000 x 100 KB keys holds a bounded amount, and costs no fetch once gone', async () => {
    const many = Array.from({ length: 8000 }, (_, i) => keys[i % 500]);
    const rss0 = process.memoryUsage().rss;
    const s = nonReadingMget(h.gw.port, many);
    await until(() => fetchesStopped(h), 15_000, 'fetches for the non-reader to stop');
    const held = h.gw.ctx.budget.heldBytes;
    const window = h.config.limits.maxBufferedBytesPerConnection;
    // The window, one value over it (as base64 in NDJSON), a part-filled frame and uWS's chunk, parked keys.
    // (A value already encoded when its frames are counted may add a few part-filled 16 KiB buffers.)
    if (held > window + 2 * Math.ceil(KB100 * 1.34) + 256 * 1024) s.destroy();
    assert.ok(
      held <= window + 2 * Math.ceil(KB100 * 1.34) + 256 * 1024,
      `held ${held} bytes for one non-reader (window ${window})`,
    );
    // The gateway runs in this process: its growth is bounded by what it holds, not by 800 MB asked for.
    const grown = process.memoryUsage().rss - rss0;
    assert.ok(grown < 96 * 1024 * 1024, `RSS grew by ${(grown / 1048576).toFixed(1)} MiB`);
    const before = await cmdGets(h);
    assert.ok(before < 8000 + 1000, 'far fewer gets than asked for reached memcached');
    s.destroy();
    await until(() => h.gw.ctx.gate.http === 0, 5000, 'the response to be aborted');
    await until(() => h.gw.ctx.budget.used === 0 && h.gw.ctx.pool.inUse === 0, 5000, 'everything held to come back');
    assert.ok(await fetchesStopped(h, 500), 'no gets reach memcached for a client that is gone');
  });

  it('2,000 WebSocket clients that never read stay within the global budget, and a bystander is served', async () => {
    const limit = h.gw.ctx.budget.limit;
    const clientsBefore = h.gw.ctx.gate.ws;
    const socks: Socket[] = [];
    for (let k = 0; k < 2000; k++) socks.push(await nonReadingWs(h.gw.port));
    for (const [k, s] of socks.entries())
      s.write(frame(pack({ id: 1, op: 'mget', keys: [keys[k % 500], keys[(k + 1) % 500], keys[(k + 2) % 500]] })));
    let peak = 0;
    await until(
      async () => {
        peak = Math.max(peak, h.gw.ctx.budget.heldBytes);
        return fetchesStopped(h, 200);
      },
      20_000,
      'fetches to stop',
    );
    peak = Math.max(peak, h.gw.ctx.budget.heldBytes);
    assert.ok(
      peak <= limit + 2000 * 1024,
      `peak held ${(peak / 1048576).toFixed(1)} MiB with a ${(limit / 1048576).toFixed(0)} MiB budget`,
    );
    const c = await h.ws();
    const r = await c.get(keys[3]);
    assert.ok(r.hit && r.value.equals(valueOf(3)), 'a bystander is still served');
    for (const s of socks) s.destroy();
    await until(() => h.gw.ctx.gate.ws <= clientsBefore + 1, 10_000, 'the non-readers to be gone');
    await until(() => h.gw.ctx.budget.used === 0, 5000, 'the budget to return to zero').catch((e) => {
      throw new Error(
        `${(e as Error).message}: ${JSON.stringify(h.gw.ctx.budget.stats())} ${JSON.stringify(h.gw.stats().pool)}`,
      );
    });
  });
});

describe('global budget under clients that stopped reading', () => {
  let h: Harness;
  const keys = Array.from({ length: 300 }, (_, i) => `gb:${i}`);
  before(async () => {
    h = await startHarness({ limits: { maxBufferedBytesTotal: 16 * 1024 * 1024, stallTimeoutMs: 2000 } });
    const c = await h.ws();
    for (let k = 0; k < keys.length; k += 10)
      await c.mset(keys.slice(k, k + 10).map((key, j) => ({ key, value: valueOf(k + j) })));
  });
  after(() => h.stop());

  it('holds to the budget (plus its reserve), still serves a client that reads, and cuts off the stalled ones', async () => {
    const budget = h.gw.ctx.budget;
    const before = h.gw.ctx.gate.ws;
    // Each asks for 30 MB: more than the kernel's socket buffers absorb, so the gateway holds the rest.
    const socks: Socket[] = [];
    for (let k = 0; k < 8; k++) {
      const s = await nonReadingWs(h.gw.port);
      s.write(frame(pack({ id: 1, op: 'mget', keys })));
      socks.push(s);
    }
    let peak = 0;
    await until(
      () => {
        peak = Math.max(peak, budget.heldBytes);
        return budget.waiting > 0;
      },
      10_000,
      'the budget to be spent',
    );
    const c = await h.ws();
    const t = performance.now();
    const r = await c.get(keys[5]);
    const ms = performance.now() - t;
    assert.ok(r.hit && r.value.equals(valueOf(5)), 'a client that reads is served from the reserve');
    assert.ok(ms < 1000, `its get took ${ms.toFixed(0)} ms`);
    const got = await c.mget(keys.slice(0, 20));
    assert.ok(
      got.every((x, i) => 'hit' in x && x.hit && x.value.equals(valueOf(i))),
      'and its bulk reads go through, one value at a time',
    );
    peak = Math.max(peak, budget.heldBytes);
    assert.ok(peak <= budget.limit + budget.reserve + 2 * 1024 * 1024, `peak held ${(peak / 1048576).toFixed(1)} MiB`);
    await until(() => h.gw.ctx.gate.ws === before + 1, 10_000, 'the stalled clients to be cut off');
    assert.ok(h.gw.ws.counters.stalled >= 8, `stalled cut-offs: ${h.gw.ws.counters.stalled}`);
    await until(() => budget.used === 0, 5000, 'the budget to return to zero');
    for (const s of socks) s.destroy();
  });
});
