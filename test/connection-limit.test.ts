/**
 * Connection limits (issue 6): limits.maxConnections counts WebSocket connections and HTTP requests in
 * progress together; past it, upgrades and HTTP requests are refused at once with 503 and a JSON error,
 * and counted; once clients leave, new ones are let in again. Shard connections stay out of the count:
 * a memcached restarted while clients fill the gate is reconnected and served. Under a low open-file limit
 * the gate is lowered so that the reserve for shard connections stays free, and TCP connections that never
 * send a request (which no gate can count) neither take that reserve nor make the gateway spin.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createConnection, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { KvError, KvWsClient } from './client';
import { LocalFleet } from '../src/fleet/local-fleet';
import { KetamaRing } from '../src/backends/memcached/ketama';
import { startHarness, until, type Harness } from './helpers/harness';
import { keysByShard } from './helpers/mc-raw';
import { head, RawHttp, type RawResponse } from './helpers/raw-http';
import { spawnGateway, type GatewayProcess } from './helpers/gateway-process';

const UPGRADE = head('GET', '/v1/ws', {
  Upgrade: 'websocket',
  Connection: 'Upgrade',
  'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
  'Sec-WebSocket-Version': 13,
});

/** One request on a fresh connection: the response, how long it took, and whether the server closed. */
async function once(port: number, request: string | Buffer): Promise<{ r: RawResponse; ms: number; c: RawHttp }> {
  const c = await RawHttp.connect(port);
  const t = performance.now();
  await c.send(request);
  const r = await c.response(3000);
  return { r, ms: performance.now() - t, c };
}

/** A refusal: 503 BUSY with a JSON error body and a retry-after, answered quickly. */
function assertRefused(what: string, x: { r: RawResponse; ms: number }): void {
  assert.equal(x.r.status, 503, `${what}: status`);
  assert.match(x.r.headers['content-type'] ?? '', /application\/json/, `${what}: content-type`);
  const body = JSON.parse(x.r.body.toString('utf8')) as { error?: { code?: string; message?: string } };
  assert.equal(body.error?.code, 'BUSY', `${what}: ${x.r.body.toString('utf8')}`);
  assert.ok(typeof body.error?.message === 'string' && body.error.message.length > 0, `${what}: a message`);
  assert.equal(x.r.headers['retry-after'], '1', `${what}: retry-after`);
  assert.ok(x.ms < 1000, `${what}: refused in ${x.ms.toFixed(0)} ms`);
}

describe('connection limit', () => {
  let h: Harness;
  const max = 5;
  before(async () => {
    h = await startHarness({ limits: { maxConnections: max } });
  });
  after(() => h.stop());

  const gate = (): { ws: number; http: number; refused: number } => ({
    ws: h.gw.ctx.gate.ws,
    http: h.gw.ctx.gate.http,
    refused: h.gw.ctx.gate.refused,
  });

  it('refuses upgrades and HTTP requests past the limit quickly, counts them, and lets clients in once others leave', async () => {
    assert.equal(h.gw.ctx.gate.max, max);
    const clients: KvWsClient[] = [];
    for (let k = 0; k < max; k++) clients.push(await KvWsClient.connect(h.wsUrl));
    await until(() => h.gw.ctx.gate.ws === max, 3000, `${max} WebSocket connections`);
    const refused0 = gate().refused;

    for (let k = 0; k < 3; k++) {
      const x = await once(h.gw.port, UPGRADE);
      assertRefused(`upgrade ${k + 1} past the limit`, x);
      await x.c.closedByPeer(2000);
    }
    await assert.rejects(KvWsClient.connect(h.wsUrl), /503/, 'a real WebSocket client sees the 503');
    const requests: [string, string | Buffer][] = [
      ['GET', head('GET', '/v1/kv/limit:a')],
      ['DELETE', head('DELETE', '/v1/kv/limit:a')],
      ['PUT', head('PUT', '/v1/kv/limit:a', { 'content-length': 5 }) + 'hello'],
      [
        'POST /v1/mget',
        head('POST', '/v1/mget', { 'content-type': 'application/x-ndjson', 'content-length': 9 }) + '"limit:a"',
      ],
      [
        'POST /v1/mset',
        head('POST', '/v1/mset', { 'content-type': 'application/x-ndjson', 'content-length': 30 }) +
          '{"key":"limit:a","value":"xy"}',
      ],
    ];
    for (const [what, req] of requests) {
      const x = await once(h.gw.port, req);
      assertRefused(`${what} past the limit`, x);
      x.c.destroy();
    }
    assert.equal(gate().refused - refused0, 4 + requests.length, 'every refusal is counted');
    assert.deepEqual({ ws: gate().ws, http: gate().http }, { ws: max, http: 0 }, 'refusals hold no place in the gate');
    const health = (await (await fetch(`${h.base}/healthz`)).json()) as {
      connections: { current: number; max: number; refused: number };
    };
    assert.deepEqual(health.connections, { current: max, max, refused: gate().refused }, '/healthz reports the gate');

    // The clients already in are served as usual.
    await clients[0].set('limit:a', 'inside');
    assert.deepEqual(await clients[1].get('limit:a'), { hit: true, value: Buffer.from('inside'), flags: 0 });

    // Two leave: two may come in, a third may not.
    await clients.pop()!.close();
    await clients.pop()!.close();
    await until(() => h.gw.ctx.gate.ws === max - 2, 3000, 'two connections to be gone');
    const viaHttp = await once(h.gw.port, head('GET', '/v1/kv/limit:a'));
    assert.equal(viaHttp.r.status, 200, 'an HTTP request is let in again');
    assert.equal(viaHttp.r.body.toString(), 'inside');
    viaHttp.c.destroy();
    clients.push(await KvWsClient.connect(h.wsUrl));
    clients.push(await KvWsClient.connect(h.wsUrl));
    await until(() => h.gw.ctx.gate.ws === max, 3000, 'the gate full again');
    assertRefused('an upgrade once the gate is full again', await once(h.gw.port, UPGRADE));
    for (const c of clients) await c.close();
    await until(() => h.gw.ctx.gate.ws === 0 && h.gw.ctx.gate.http === 0, 3000, 'everyone gone');
  });

  it('counts HTTP requests in progress with the WebSockets', async () => {
    const clients: KvWsClient[] = [];
    for (let k = 0; k < max - 2; k++) clients.push(await KvWsClient.connect(h.wsUrl));
    // Two uploads in progress: their bodies are not finished.
    const uploads = await Promise.all(
      [0, 1].map(async (k) => {
        const c = await RawHttp.connect(h.gw.port);
        await c.send(head('PUT', `/v1/kv/limit:upload:${k}`, { 'content-length': 10 }) + 'hello');
        return c;
      }),
    );
    await until(
      () => h.gw.ctx.gate.ws === max - 2 && h.gw.ctx.gate.http === 2,
      3000,
      `${max - 2} WebSockets and 2 uploads in the gate`,
    );
    assertRefused('an upgrade past WebSockets + uploads', await once(h.gw.port, UPGRADE));
    assertRefused('a GET past WebSockets + uploads', await once(h.gw.port, head('GET', '/v1/kv/limit:upload:0')));
    // The uploads finish: their places come back.
    for (const c of uploads) await c.send('world');
    for (const c of uploads) assert.equal((await c.response()).status, 204, 'the upload in progress completes');
    await until(() => h.gw.ctx.gate.http === 0, 3000, 'the uploads to leave the gate');
    const got = await once(h.gw.port, head('GET', '/v1/kv/limit:upload:1'));
    assert.equal(got.r.status, 200);
    assert.equal(got.r.body.toString(), 'helloworld');
    got.c.destroy();
    for (const c of uploads) c.destroy();
    for (const c of clients) await c.close();
    await until(() => h.gw.ctx.gate.ws === 0, 3000, 'everyone gone');
  });

  it('a burst of refused clients leaves the count exact', async () => {
    const clients: KvWsClient[] = [];
    for (let k = 0; k < max; k++) clients.push(await KvWsClient.connect(h.wsUrl));
    await until(() => h.gw.ctx.gate.ws === max, 3000, 'the gate full');
    const refused0 = gate().refused;
    const burst = await Promise.all(
      Array.from({ length: 100 }, (_, k) => once(h.gw.port, k % 2 === 0 ? UPGRADE : head('GET', '/v1/kv/limit:a'))),
    );
    for (const x of burst) {
      assert.equal(x.r.status, 503);
      x.c.destroy();
    }
    assert.equal(gate().refused - refused0, 100);
    assert.deepEqual({ ws: gate().ws, http: gate().http }, { ws: max, http: 0 });
    for (const c of clients) c.terminate();
    await until(() => h.gw.ctx.gate.ws === 0, 3000, 'everyone gone');
    const c = await KvWsClient.connect(h.wsUrl);
    assert.deepEqual(await c.get('limit:a'), { hit: true, value: Buffer.from('inside'), flags: 0 });
    await c.close();
  });

  it('reopens a shard connection while clients fill the gate', async () => {
    const clients: KvWsClient[] = [];
    for (let k = 0; k < max; k++) clients.push(await KvWsClient.connect(h.wsUrl));
    await until(() => h.gw.ctx.gate.ws === max, 3000, 'the gate full');
    const keys = keysByShard(h.gw.ring, 3, 'limit:shard:', 4)[1];
    const member = h.fleet.members[1];
    await member.stop();
    await until(() => !h.gw.shards[1].up, 5000, 'the gateway to see shard 1 down');
    const down = await clients[0].mget(keys);
    assert.ok(
      down.every((r) => 'error' in r && r.error.code === 'SHARD_DOWN'),
      `keys of the stopped shard fail: ${JSON.stringify(down)}`,
    );
    await member.start();
    await until(() => h.gw.shards[1].up, 10_000, 'the gateway to reconnect shard 1 with the gate full');
    assert.equal(h.gw.ctx.gate.ws, max, 'the gate is still full');
    for (const [n, key] of keys.entries()) await clients[n % max].set(key, `back ${n}`);
    const back = await clients[4].mget(keys);
    assert.deepEqual(
      back,
      keys.map((_, n) => ({ hit: true, value: Buffer.from(`back ${n}`), flags: 0 })),
    );
    assertRefused('a new client while the gate is full', await once(h.gw.port, UPGRADE));
    for (const c of clients) await c.close();
  });
});

describe('connection limit under a low open-file limit (gateway process)', () => {
  let fleet: LocalFleet;
  let gw: GatewayProcess;
  const openFiles = 120;
  const reserved = 32;
  before(async () => {
    fleet = await LocalFleet.start({ count: 3, memoryMb: 16 });
    gw = await spawnGateway({ servers: fleet.servers(), limits: { reservedDescriptors: reserved } }, { openFiles });
  });
  after(async () => {
    await gw.kill();
    await fleet.stop();
  });

  const descriptors = (): number => readdirSync(`/proc/${gw.proc.pid}/fd`).length;

  it('lowers the limit to keep the reserve free, refuses past it, and still reopens shard connections', async () => {
    // What is open at start (the held reserve among it), two per shard and a margin stay out of reach.
    const m = /limits.maxConnections lowered from \d+ to (\d+)/.exec(gw.output());
    assert.ok(m, 'the lowered limit is logged');
    const max = Number(m[1]);
    assert.ok(max <= openFiles - reserved - 2 * 3 && max > 0, `lowered to ${max}`);
    const clients: KvWsClient[] = [];
    for (let k = 0; k < max; k++) clients.push(await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`));
    assertRefused('an upgrade past the lowered limit', await once(gw.port, UPGRADE));
    assert.ok(descriptors() < openFiles, `${descriptors()} descriptors in use, limit ${openFiles}`);
    // Every shard restarted while the gate is full: each must be reconnected from the reserve.
    const keys = keysByShardOf(3);
    for (const [s, member] of fleet.members.entries()) {
      await member.stop();
      await until(
        async () => {
          try {
            await clients[0].get(keys[s][0]);
            return false;
          } catch (e) {
            return (e as KvError).code === 'SHARD_DOWN';
          }
        },
        5000,
        `shard ${s} to be seen down`,
      );
      await member.start();
      await until(
        async () => {
          try {
            await clients[s].set(keys[s][0], `v${s}`);
            return true;
          } catch {
            return false;
          }
        },
        10_000,
        `shard ${s} to be reconnected`,
      );
      assert.deepEqual(await clients[max - 1].get(keys[s][0]), { hit: true, value: Buffer.from(`v${s}`), flags: 0 });
    }
    for (const c of clients) c.terminate();
  });

  /** Opens `n` TCP connections that never send a request (so no HTTP request is in progress). */
  async function idleConnections(n: number): Promise<Socket[]> {
    const socks = Array.from({ length: n }, () => {
      const s = createConnection({ host: '127.0.0.1', port: gw.port });
      s.on('error', () => undefined);
      return s;
    });
    await until(
      () => descriptors() >= openFiles || socks.every((s) => !s.connecting),
      5000,
      'the idle connections to be accepted',
    );
    return socks;
  }

  /** CPU ticks (user + system) the gateway process has used. */
  const cpuTicks = (): number => {
    const f = readFileSync(`/proc/${gw.proc.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(f[11]) + Number(f[12]);
  };

  it('connections that never send a request cannot use up the shard reserve', async () => {
    const client = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
    const key = keysByShardOf(3)[1][0];
    const flood = await idleConnections(openFiles + 30);
    try {
      const member = fleet.members[1];
      await member.stop();
      await member.start();
      await until(
        async () => {
          try {
            await client.set(key, 'after the flood');
            return true;
          } catch {
            return false;
          }
        },
        5000,
        'shard 1 to be reconnected while idle connections hold the other descriptors',
      );
    } finally {
      for (const s of flood) s.destroy();
      client.terminate();
    }
  });

  it('a gateway at its open-file limit does not spin', async () => {
    /** Share of one CPU the gateway uses over about a second (100 ticks per second). */
    const cpuShare = async (): Promise<number> => {
      const t0 = cpuTicks();
      const w0 = performance.now();
      await until(() => performance.now() - w0 > 1000, 2000, 'a second');
      return (cpuTicks() - t0) / ((performance.now() - w0) / 10);
    };
    const quiet = await cpuShare();
    assert.ok(quiet < 0.2, `the idle gateway used ${(quiet * 100).toFixed(0)}% of a CPU before the flood`);
    const flood = await idleConnections(openFiles + 30);
    try {
      const share = await cpuShare();
      assert.ok(share < 0.5, `the idle gateway used ${(share * 100).toFixed(0)}% of a CPU at its descriptor limit`);
    } finally {
      for (const s of flood) s.destroy();
    }
    // Once the descriptors are free again, so is the door.
    let client: KvWsClient | null = null;
    await until(
      async () => {
        try {
          client = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
          return true;
        } catch {
          return false;
        }
      },
      5000,
      'the gateway to accept clients again',
    );
    await client!.set('limit:fd:after', 'in');
    client!.terminate();
  });

  /** Keys per shard on the child's ring (same servers and hash, so the same placement). */
  function keysByShardOf(n: number): string[][] {
    return keysByShard(new KetamaRing(fleet.servers(), 'md5'), n, 'limit:fd:', 1);
  }
});
