/**
 * The Redis servers the other tests and the benchmarks stand on (test/helpers/redis-local.ts): a standalone
 * server and a cluster of 3 masters and 3 replicas serve byte-exact Buffers to ioredis; a killed master is
 * replaced by its replica with every key still there; resharding moves slots and their keys; and nothing is
 * left running or on disk afterwards.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import Redis, { Cluster } from 'ioredis';
import { parseInfo, startRedis, startRedisCluster, type RedisCluster, type RedisServer } from './helpers/redis-local';

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/** A value that differs per key and holds every byte value, CR LF and NUL included. */
function valueOf(i: number): Buffer {
  return Buffer.concat([Buffer.from(`v${i}:`), ALL_BYTES, Buffer.from([13, 10, 0, i & 0xff])]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

/** ioredis Cluster without its own retries piling up: the tests wait for the cluster, not the client. */
function clusterClient(seeds: string[]): Cluster {
  return new Cluster(
    seeds.map((s) => ({ host: s.split(':')[0], port: Number(s.split(':')[1]) })),
    {
      redisOptions: { connectTimeout: 2000, maxRetriesPerRequest: 2 },
      clusterRetryStrategy: (n) => (n > 20 ? null : 100),
    },
  );
}

describe('standalone redis-server', () => {
  let r: RedisServer | undefined;
  after(async () => {
    await r?.stop();
  });

  it('serves byte-exact Buffers on a free port, never 6379, and reports INFO', async () => {
    r = await startRedis();
    assert.notEqual(r.port, 6379);
    const client = new Redis(r.port, '127.0.0.1', { lazyConnect: true });
    try {
      await client.connect();
      for (let i = 0; i < 20; i++) await client.set(Buffer.from(`k:${i}`), valueOf(i));
      for (let i = 0; i < 20; i++) assert.deepEqual(await client.getBuffer(`k:${i}`), valueOf(i));
      // redis-cli sees the same bytes (it prints raw bytes when stdout is not a terminal)
      assert.equal(await r.cli('STRLEN', 'k:3'), `${valueOf(3).length}\n`);
      const stats = parseInfo(await r.info('stats'));
      assert.ok(Number(stats.total_commands_processed) >= 40, stats.total_commands_processed);
      const persistence = parseInfo(await r.info('persistence'));
      assert.equal(persistence.aof_enabled, '0');
      assert.equal((await r.cli('CONFIG', 'GET', 'save')).trim(), 'save');
    } finally {
      client.disconnect();
    }
    const { pid, port, dir } = r;
    await r.stop();
    r = undefined;
    assert.equal(alive(pid), false, 'redis-server still running after stop()');
    assert.equal(await refuses(port), true, `port ${port} still accepts connections`);
    assert.equal(existsSync(dir), false, `${dir} left behind`);
  });
});

describe('redis cluster of 3 masters and 3 replicas', () => {
  let c: RedisCluster | undefined;
  const clients: Cluster[] = [];
  const N = 200;
  after(async () => {
    for (const x of clients) x.disconnect();
    await c?.stop();
  });

  /** Every key written by the first test, read back byte for byte through `cl`. */
  async function readAll(cl: Cluster, when: string): Promise<void> {
    for (let i = 0; i < N; i++) assert.deepEqual(await cl.getBuffer(`key:${i}`), valueOf(i), `key:${i} ${when}`);
  }

  it('starts 6 nodes, 3 masters with a third of the slots each and one replica each, and serves Buffers', async () => {
    c = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
    assert.equal(c.nodes.length, 6);
    assert.equal(c.masters().length, 3);
    assert.equal(c.replicas().length, 3);
    assert.ok(
      c.nodes.every((n) => n.port !== 6379 && n.port + 10000 <= 65535),
      'ports leave room for the bus',
    );
    assert.equal(
      c.masters().reduce((a, m) => a + m.slots, 0),
      16384,
    );
    for (const m of c.masters()) assert.ok(m.slots === 5461 || m.slots === 5462, `${m.port}: ${m.slots} slots`);
    for (const m of c.masters()) assert.equal(c.replicas().filter((r) => r.masterId === m.id).length, 1);

    const cl = clusterClient(c.seeds());
    clients.push(cl);
    for (let i = 0; i < N; i++) await cl.set(Buffer.from(`key:${i}`), valueOf(i));
    await readAll(cl, 'after writing');
    // the keys really spread over every master
    for (const m of c.masters()) {
      const n = Number((await c.cli(m.port, 'DBSIZE')).trim());
      assert.ok(n > N / 6, `master ${m.port} holds ${n} keys`);
    }
  });

  it('replaces a killed master by its replica, with every key', async () => {
    assert.ok(c, 'cluster started');
    // waitForHealthy waits until every replica has caught up with its master
    await c.waitForHealthy();
    const victim = c.masters()[0];
    const heir = c.replicas().find((r) => r.masterId === victim.id)!;
    const pidBefore = victim.pid;
    await c.killNode(victim.port);
    assert.equal(alive(pidBefore), false);
    const promoted = await c.waitForFailover(victim.port);
    assert.equal(promoted.port, heir.port);
    assert.equal(c.node(heir.port).role, 'master');
    assert.equal(c.masters().length, 3);
    const cl = clusterClient(c.seeds());
    clients.push(cl);
    await readAll(cl, 'after failover');

    // the old master comes back as a replica of the one that replaced it
    await c.restartNode(victim.port);
    await c.waitForHealthy();
    await c.topology();
    assert.equal(c.node(victim.port).role, 'replica');
    assert.equal(c.node(victim.port).masterId, c.node(heir.port).id);
  });

  it('moves slots and their keys with redis-cli --cluster reshard; clients follow MOVED', async () => {
    assert.ok(c, 'cluster started');
    const [from, to] = c.masters();
    const fromSlots = from.slots;
    const toSlots = to.slots;
    await c.reshard(from.port, to.port, 100);
    await c.topology();
    assert.equal(c.node(from.port).slots, fromSlots - 100);
    assert.equal(c.node(to.port).slots, toSlots + 100);
    // a client whose slot map predates the move, and a fresh one
    await readAll(clients[clients.length - 1], 'after reshard (old client)');
    const cl = clusterClient(c.seeds());
    clients.push(cl);
    await readAll(cl, 'after reshard (new client)');
  });

  it('stops every node: no process, port or temp dir left', async () => {
    assert.ok(c, 'cluster started');
    const pids = c.nodes.map((n) => n.pid).filter(Boolean);
    assert.equal(pids.length, 6);
    const ports = c.nodes.map((n) => n.port);
    const dirs = c.nodes.map((n) => n.dir);
    for (const x of clients.splice(0)) x.disconnect();
    await c.stop();
    c = undefined;
    for (const pid of pids) assert.equal(alive(pid), false, `redis-server ${pid} still running`);
    for (const port of ports) assert.equal(await refuses(port), true, `port ${port} still open`);
    for (const dir of dirs) assert.equal(existsSync(dir), false, `${dir} left behind`);
  });
});
