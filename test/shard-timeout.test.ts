/**
 * shard.timeoutMs means "no byte of reply for timeoutMs", measured so the gateway's own busy time is not
 * blamed on the shard: a reply that reached the kernel while the event loop was blocked is read before
 * any timeout is decided, and a reply still arriving is progress however long it takes in all. A shard
 * that really stops (SIGSTOP, or a server that stops mid-reply) still fails with TIMEOUT about timeoutMs
 * after its last byte. The gateway runs in this process, so a synchronous loop here blocks it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { freeze, startHarness, type Harness, testConfig } from './helpers/harness';
import { keysByShard } from './helpers/mc-raw';
import { KvError, KvWsClient } from './client';
import { mergeConfig, validateConfig } from '../src/config/schema';
import { startGateway, type Gateway } from '../src/gateway';
import type { ShardConnection } from '../src/backends/memcached/shard-connection';

const timeoutMs = 100;
const shardOpts = { timeoutMs, connectTimeoutMs: 500, reconnectMinMs: 20, reconnectMaxMs: 200 };

const busy = (ms: number): void => {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* the gateway cannot run */
  }
};

const resets = (gw: Gateway, shard: number): number => (gw.coalescer.stats()[shard] as { resets: number }).resets;

const settle = <T>(p: Promise<T>): Promise<{ ok: T } | { code: string }> =>
  p.then(
    (ok) => ({ ok }),
    (e: unknown) => {
      if (e instanceof KvError) return { code: e.code };
      throw e;
    },
  );

/** Blocks the event loop for `ms` right after the next batch is written to `conn`, then behaves as usual. */
function blockAfterNextSend(conn: ShardConnection, ms: number): { blocked: () => boolean } {
  let done = false;
  const own = conn as unknown as { send: ShardConnection['send'] };
  own.send = (mut, get) => {
    delete (own as { send?: unknown }).send; // back to the prototype's
    conn.send(mut, get);
    done = true;
    busy(ms);
  };
  return { blocked: () => done };
}

// -------------------------------------------------------------------------------------------------------
describe("shard timeout: the gateway's busy loop is not the shard's silence", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ shard: shardOpts }, 1);
  });
  after(() => h.stop());

  it('a blocked event loop (3x timeoutMs right after the write) costs no TIMEOUT and no reset', async () => {
    const c = await KvWsClient.connect(h.wsUrl, { batchSends: true });
    try {
      const keys = Array.from({ length: 16 }, (_, n) => `timeout:busy:${n}`);
      const valueOf = (n: number): Buffer => Buffer.alloc(64 * 1024, 0x41 + n);
      await c.mset(keys.map((key, n) => ({ key, value: valueOf(n) })));
      const resetsBefore = resets(h.gw, 0);
      const conn = h.gw.shards[0];
      // Let the connection go idle, so the write below arms its timeout afresh: no earlier read can pass
      // for progress, and only reading what came during the block can save the batches.
      await new Promise((r) => setTimeout(r, 2 * timeoutMs));

      // One WebSocket message: sets and gets leave in one flush, then the loop stays blocked.
      const block = blockAfterNextSend(conn, 3 * timeoutMs);
      const t0 = performance.now();
      const mget = settle(c.mget(keys));
      const singles = keys.map((k) => settle(c.get(k)));
      const sets = Array.from({ length: 8 }, (_, n) => settle(c.set(`timeout:busy:set:${n}`, `v${n}`)));
      const [mg, ...rest] = await Promise.all([mget, ...singles, ...sets]);
      const ms = performance.now() - t0;

      assert.ok(block.blocked(), 'the loop was blocked after the write');
      assert.ok(ms >= 3 * timeoutMs, `the requests took ${ms.toFixed(0)} ms, less than the block`);
      assert.ok('ok' in mg, `mget failed: ${JSON.stringify(mg)}`);
      mg.ok.forEach((r, n) =>
        assert.ok(
          'hit' in r && r.hit && r.value.equals(valueOf(n)),
          `mget ${keys[n]}: ${JSON.stringify(r).slice(0, 200)}`,
        ),
      );
      rest.slice(0, keys.length).forEach((r, n) => {
        assert.ok('ok' in r, `get ${keys[n]} failed: ${JSON.stringify(r)}`);
        const g = r.ok as { hit: boolean; value?: Buffer };
        assert.ok(g.hit && g.value!.equals(valueOf(n)), `get ${keys[n]}`);
      });
      rest.slice(keys.length).forEach((r, n) => assert.deepEqual(r, { ok: undefined }, `set ${n}`));
      assert.equal(resets(h.gw, 0), resetsBefore, 'the shard connection was not reset');
      assert.ok(conn.up);
    } finally {
      c.terminate();
    }
  });
});

// -------------------------------------------------------------------------------------------------------
/**
 * A stand-in for memcached that answers `get <key>` with a value of `plan.bytes` bytes sent in
 * `plan.slices` writes `plan.gapMs` apart, then END; with `plan.stopAfter`, it falls silent after that
 * many slices (a server stuck mid-reply).
 */
async function trickleServer(): Promise<{
  port: number;
  plan: { bytes: number; slices: number; gapMs: number; stopAfter: number };
  lastByteAt: number;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const srv = {
    port: 0,
    admin: { port: 0 },
    log: { level: 'silent' },
    plan: { bytes: 0, slices: 1, gapMs: 0, stopAfter: Infinity },
    lastByteAt: 0,
    async close(): Promise<void> {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const valueOf = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => i % 251));
  const answer = (s: Socket, key: string): void => {
    const { bytes, slices, gapMs, stopAfter } = srv.plan;
    const v = valueOf(bytes);
    const size = Math.ceil(bytes / slices);
    const send = (k: number): void => {
      if (s.destroyed || k >= stopAfter) return;
      const head = k === 0 ? Buffer.from(`VALUE ${key} 0 ${bytes}\r\n`) : Buffer.alloc(0);
      const tail = k === slices - 1 ? Buffer.from('\r\nEND\r\n') : Buffer.alloc(0);
      s.write(Buffer.concat([head, v.subarray(k * size, Math.min(bytes, (k + 1) * size)), tail]));
      srv.lastByteAt = performance.now();
      if (k < slices - 1) {
        const t = setTimeout(() => {
          timers.delete(t);
          send(k + 1);
        }, gapMs);
        timers.add(t);
      }
    };
    send(0);
  };
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.setNoDelay(true);
    let acc = '';
    s.on('data', (d) => {
      acc += d.toString('latin1');
      for (let nl = acc.indexOf('\r\n'); nl >= 0; nl = acc.indexOf('\r\n')) {
        const line = acc.slice(0, nl);
        acc = acc.slice(nl + 2);
        if (line.startsWith('get ')) answer(s, line.split(' ')[1]);
      }
    });
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  srv.port = (server.address() as { port: number }).port;
  return srv;
}

describe('shard timeout: a reply still arriving is progress', () => {
  let srv: Awaited<ReturnType<typeof trickleServer>>;
  let gw: Gateway;
  let c: KvWsClient;
  before(async () => {
    srv = await trickleServer();
    const config = validateConfig(
      mergeConfig(testConfig(), {
        port: 0,
        admin: { port: 0 },
        log: { level: 'silent' },
        servers: [{ host: '127.0.0.1', port: srv.port, weight: 1 }],
        shard: shardOpts,
      }),
    );
    gw = await startGateway(config);
    c = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
  });
  after(async () => {
    c?.terminate();
    await gw?.stop();
    await srv?.close();
  });

  it('a value trickling in over 4x timeoutMs, a slice every 0.3x, arrives whole', async () => {
    srv.plan = { bytes: 40_000, slices: 14, gapMs: 0.3 * timeoutMs, stopAfter: Infinity };
    const before = resets(gw, 0);
    const t0 = performance.now();
    const r = await settle(c.get('timeout:trickle'));
    const ms = performance.now() - t0;
    assert.ok('ok' in r, `the trickling get failed after ${ms.toFixed(0)} ms: ${JSON.stringify(r)}`);
    const g = r.ok as { hit: boolean; value: Buffer };
    assert.ok(
      g.hit && g.value.equals(Buffer.from(Array.from({ length: 40_000 }, (_, i) => i % 251))),
      'the value arrived whole',
    );
    assert.ok(ms >= 3.5 * timeoutMs, `the reply took ${ms.toFixed(0)} ms: it did not really trickle`);
    assert.equal(resets(gw, 0), before);
  });

  it('a server that stops mid-reply gets its TIMEOUT about timeoutMs after its last byte', async () => {
    srv.plan = { bytes: 40_000, slices: 14, gapMs: 0.3 * timeoutMs, stopAfter: 6 };
    const before = resets(gw, 0);
    const r = await settle(c.get('timeout:stuck'));
    const quiet = performance.now() - srv.lastByteAt;
    assert.deepEqual(r, { code: 'TIMEOUT' });
    assert.ok(quiet >= timeoutMs * 0.9, `TIMEOUT after only ${quiet.toFixed(0)} ms of silence`);
    assert.ok(quiet < timeoutMs * 2, `TIMEOUT only after ${quiet.toFixed(0)} ms of silence`);
    assert.equal(resets(gw, 0), before + 1);
  });
});

// -------------------------------------------------------------------------------------------------------
describe('shard timeout: a frozen shard still times out', () => {
  let h: Harness;
  let frozenPid: number | undefined;
  before(async () => {
    h = await startHarness({ shard: shardOpts }, 2);
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

  it('a shard stopped with SIGSTOP fails its items with TIMEOUT within about timeoutMs; the other shard answers', async () => {
    const frozen = 1;
    const [live, cold] = keysByShard(h.gw.ring, 2, 'timeout:frozen:', 2);
    const c = await h.ws();
    await c.mset([...live, ...cold].map((key) => ({ key, value: key })));
    frozenPid = h.fleet.members[frozen].proc!.pid!;
    await freeze(frozenPid);
    const t0 = performance.now();
    const outcomes = await Promise.all(
      [...live, ...cold].map(async (k) => {
        const r = await settle(c.get(k));
        return { k, r, ms: performance.now() - t0 };
      }),
    );
    for (const o of outcomes) {
      if (h.gw.ring.lookupKey(o.k) === frozen) {
        assert.deepEqual(o.r, { code: 'TIMEOUT' }, o.k);
        assert.ok(o.ms >= timeoutMs * 0.9, `${o.k} timed out after ${o.ms.toFixed(0)} ms, before timeoutMs`);
        assert.ok(o.ms < timeoutMs * 2, `${o.k} timed out only after ${o.ms.toFixed(0)} ms`);
      } else {
        assert.deepEqual(o.r, { ok: { hit: true, value: Buffer.from(o.k), flags: 0 } }, o.k);
      }
    }
    assert.ok(resets(h.gw, frozen) >= 1, 'the timed-out connection was reset');
    process.kill(frozenPid, 'SIGCONT');
    frozenPid = undefined;
  });
});
