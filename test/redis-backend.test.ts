/**
 * The Redis backend on its own (no gateway, no coalescer): flushes built by hand from the Shard seam
 * against a real redis-server and a real 3-master + 3-replica Redis Cluster on loopback, both started
 * here (test/helpers/redis-local.ts was not there yet when this was written: a minimal private starter
 * follows). Results are read from a small Request subclass; what Redis did is read from Redis itself
 * (INFO commandstats / stats, a separate ioredis client, redis-cli).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Request } from '../src/core/request';
import type { ErrorCode } from '../src/core/errors';
import type { Backend, GetOps, MutOps, Ops, Shard } from '../src/core/backend';
import { createRedisBackend, crc16, keySlot, RedisShard } from '../src/backends/redis';
import { PART_BYTES } from '../src/backends/redis/ops';
import { freePort, waitForPort } from '../src/fleet/local-fleet';
import { until } from './helpers/harness';
import { SplitProxy } from './helpers/split-proxy';

// ioredis's own slot function (a dependency of ioredis, without types).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const calculateSlot = require('cluster-key-slot') as (key: string | Buffer) => number;

// ---- a minimal private Redis starter ----------------------------------------------------------------

function ensureRedis(): void {
  if (spawnSync('sh', ['-c', 'command -v redis-server && command -v redis-cli']).status === 0) return;
  const r = spawnSync('sh', ['-c', 'apt-get install -y -qq redis-server redis-tools >/dev/null'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('redis-server/redis-cli missing: apt-get install -y redis-server redis-tools');
}

/** Every server still running: killed when the test process exits, whatever failed before `stop()`. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

class RedisProc {
  proc: ChildProcess | null = null;
  constructor(
    readonly port: number,
    readonly dir: string,
    private readonly extra: string[] = [],
  ) {}

  async start(): Promise<void> {
    this.proc = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.dir,
      ].concat(this.extra),
      { stdio: 'ignore' },
    );
    const p = this.proc;
    live.add(p);
    p.once('exit', () => live.delete(p));
    await waitForPort(this.port, Date.now() + 10_000);
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (p === null || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  }
}

async function startServer(): Promise<RedisProc> {
  const dir = mkdtempSync(join(tmpdir(), 'kvgate-redis-'));
  const r = new RedisProc(await freePort(), dir);
  await r.start();
  return r;
}

interface LocalCluster {
  nodes: RedisProc[];
  dir: string;
  seeds: string[];
  stop(): Promise<void>;
}

async function startCluster(): Promise<LocalCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'kvgate-rcluster-'));
  const nodes: RedisProc[] = [];
  for (let j = 0; j < 6; j++) {
    const port = await freePort();
    const bus = await freePort();
    nodes.push(
      new RedisProc(port, dir, [
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--cluster-port',
        String(bus),
        '--cluster-node-timeout',
        '1000',
      ]),
    );
  }
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    return await formCluster(nodes, dir, stop);
  } catch (e) {
    await stop(); // a cluster that never formed leaves no server behind
    throw e;
  }
}

async function formCluster(nodes: RedisProc[], dir: string, stop: () => Promise<void>): Promise<LocalCluster> {
  await Promise.all(nodes.map((n) => n.start()));
  const addrs = nodes.map((n) => `127.0.0.1:${n.port}`);
  const create = spawnSync('redis-cli', ['--cluster', 'create', ...addrs, '--cluster-replicas', '1', '--cluster-yes'], {
    encoding: 'utf8',
  });
  if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout} ${create.stderr}`);
  const check = async (): Promise<boolean> => {
    for (const n of nodes) {
      const c = new Redis({ port: n.port, lazyConnect: true, maxRetriesPerRequest: 0 });
      try {
        await c.connect();
        const info = await c.cluster('INFO');
        if (!/cluster_state:ok/.test(info) || !/cluster_known_nodes:6/.test(info)) return false;
        const slots = (await c.cluster('SLOTS')) as [number, number, ...unknown[]][];
        let covered = 0;
        for (const s of slots) covered += s[1] - s[0] + 1;
        if (covered !== 16384 || slots.some((s) => s.length < 4)) return false; // every range has a replica
      } catch {
        return false;
      } finally {
        c.disconnect();
      }
    }
    return true;
  };
  await until(check, 30_000, 'the cluster to agree on its slots');
  return {
    nodes,
    dir,
    seeds: addrs.slice(0, 3),
    stop,
  };
}

// ---- driving a shard the way the coalescer does ------------------------------------------------------

type Outcome =
  { kind: 'value'; value: Buffer } | { kind: 'miss' } | { kind: 'ok' } | { kind: 'error'; code: ErrorCode };

class Collector extends Request {
  readonly out = new Map<number, Outcome>();
  readonly messages = new Map<number, string>();
  readonly parts = new Map<number, number[]>();
  /** Items whose value is refused once (flow control), and the keys handed back by redo. */
  readonly refuse = new Set<number>();
  readonly redone = new Map<number, Buffer>();
  private chunks = new Map<number, Buffer[]>();
  private resolveDone!: () => void;
  readonly done = new Promise<void>((r) => (this.resolveDone = r));

  protected override accepts(i: number): boolean {
    if (this.refuse.has(i)) {
      this.refuse.delete(i);
      return false;
    }
    return true;
  }
  protected override onRedo(i: number, key: Uint8Array, off: number, len: number): void {
    this.redone.set(i, Buffer.from(key.subarray(off, off + len)));
  }
  protected onValue(
    i: number,
    flags: number,
    total: number,
    offset: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void {
    assert.equal(flags, 0);
    let c = this.chunks.get(i);
    if (c === undefined) this.chunks.set(i, (c = []));
    assert.equal(
      offset,
      c.reduce((s, b) => s + b.length, 0),
      'parts arrive in order',
    );
    c.push(Buffer.from(buf.subarray(off, off + len)));
    let p = this.parts.get(i);
    if (p === undefined) this.parts.set(i, (p = []));
    p.push(len);
    if (offset + len === total) this.out.set(i, { kind: 'value', value: Buffer.concat(c) });
  }
  protected onMiss(i: number): void {
    this.out.set(i, { kind: 'miss' });
  }
  protected onOk(i: number): void {
    this.out.set(i, { kind: 'ok' });
  }
  protected onError(i: number, code: ErrorCode, message?: string): void {
    this.out.set(i, { kind: 'error', code });
    if (message !== undefined) this.messages.set(i, message);
  }
  protected onFinish(): void {
    this.resolveDone();
  }
}

type Item =
  | { op: 'get'; key: string | Buffer }
  | { op: 'set'; key: string | Buffer; value: Buffer; ttl?: number; flags?: number }
  | { op: 'del'; key: string | Buffer };

const b = (s: string | Buffer): Buffer => (typeof s === 'string' ? Buffer.from(s) : s);

/**
 * One flush: the items go into one MutOps and one GetOps of the shard, sent together (as the coalescer
 * sends a lane). Resolves once every item settled and every batch was handed back through onBatchDone.
 */
async function flush(shard: Shard, items: Item[], deadlineMs = 15_000): Promise<Collector> {
  const req = new Collector();
  const get: GetOps = shard.newGets(4096);
  const mut: MutOps = shard.newMuts(4096);
  let gets = 0;
  let muts = 0;
  items.forEach((it, i) => {
    const key = b(it.key);
    // The caller's bytes are only valid during the call: scribble over them afterwards.
    if (it.op === 'get') {
      get.add(req, i, key, 0, key.length);
      gets++;
    } else if (it.op === 'del') {
      mut.addDel(req, i, key, 0, key.length);
      muts++;
    } else {
      const flags = it.flags ?? 0;
      if (!shard.admitSet(req, i, key.length, it.value.length, flags)) return;
      const v = Buffer.from(it.value);
      mut.beginSet(req, i, key, 0, key.length, it.ttl ?? 0, flags, v.length);
      const half = v.length >> 1;
      mut.appendValue(v, 0, half);
      mut.appendValue(v, half, v.length - half);
      mut.endSet();
      v.fill(0x55);
      muts++;
    }
    if (typeof it.key !== 'string') key.fill(0x2a);
  });
  req.seal();
  const handedBack = new Set<Ops>();
  shard.onBatchDone = (x) => {
    assert.ok(!handedBack.has(x), 'a batch is handed back once');
    handedBack.add(x);
  };
  const m = muts > 0 ? mut : null;
  const g = gets > 0 ? get : null;
  if (!shard.up) {
    // The coalescer's rule: a shard that is down fails the batch itself.
    m?.fail('SHARD_DOWN', 'down');
    g?.fail('SHARD_DOWN', 'down');
  } else shard.send(m, g);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    req.done,
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('flush did not settle')), deadlineMs))),
  ]);
  clearTimeout(timer);
  if (shard.up || handedBack.size > 0) {
    await until(() => handedBack.size === (m ? 1 : 0) + (g ? 1 : 0), deadlineMs, 'batches handed back');
  }
  return req;
}

function value(r: Collector, i: number): Buffer {
  const o = r.out.get(i);
  assert.ok(o !== undefined && o.kind === 'value', `item ${i}: expected a value, got ${JSON.stringify(o)}`);
  return o.value;
}

function kindOf(r: Collector, i: number): string {
  const o = r.out.get(i);
  if (o === undefined) return 'none';
  return o.kind === 'error' ? o.code : o.kind;
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 1);
  }
  return out;
}

/** calls= of a command in INFO commandstats (0 when absent). */
function calls(info: Record<string, string>, cmd: string): number {
  const s = info[`cmdstat_${cmd}`];
  const m = s === undefined ? null : /calls=(\d+)/.exec(s);
  return m === null ? 0 : Number(m[1]);
}

async function serverInfo(c: Redis): Promise<Record<string, string>> {
  return parseInfo(await c.info('all'));
}

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(rand: () => number, n: number): Buffer {
  const v = Buffer.allocUnsafe(n);
  for (let j = 0; j < n; j++) v[j] = (rand() * 256) | 0;
  return v;
}

const OPTS = { commandTimeoutMs: 1000, maxValueBytes: 2 * 1024 * 1024, batchMaxOps: 1000 };

// ---- slots ---------------------------------------------------------------------------------------------

describe('Redis Cluster key slots', () => {
  it('CRC16 is the XMODEM variant Redis uses, and hash tags follow cluster.c', () => {
    const s = (x: string): number => keySlot(Buffer.from(x), 0, Buffer.byteLength(x));
    assert.equal(crc16(Buffer.from('123456789'), 0, 9), 0x31c3);
    assert.equal(crc16(Buffer.alloc(0), 0, 0), 0);
    // Vectors from the Redis Cluster specification and CLUSTER KEYSLOT.
    assert.equal(s('foo'), 12182);
    assert.equal(s('bar'), 5061);
    assert.equal(s('{user1000}.following'), s('user1000'));
    assert.equal(s('{user1000}.followers'), s('user1000'));
    assert.equal(s('foo{}{bar}'), s('foo{}{bar}'.slice(0)), 'empty tag: whole key');
    assert.equal(s('foo{{bar}}zap'), s('{bar'));
    assert.equal(s('foo{bar}{zap}'), s('bar'));
    // Offsets are honoured.
    const framed = Buffer.from('xx{user1000}.followingyy');
    assert.equal(keySlot(framed, 2, framed.length - 4), s('user1000'));
  });

  it('agrees with ioredis\'s cluster-key-slot on random byte keys without an empty "{}" tag', () => {
    const rand = prng(7);
    const alphabet = Buffer.from('ab{}x\u0000\u00ff');
    for (let n = 0; n < 20_000; n++) {
      const len = 1 + ((rand() * 20) | 0);
      const k = Buffer.allocUnsafe(len);
      for (let j = 0; j < len; j++) k[j] = rand() < 0.5 ? alphabet[(rand() * alphabet.length) | 0] : (rand() * 256) | 0;
      const open = k.indexOf(0x7b);
      // cluster-key-slot differs from Redis when the first tag is empty ("{}" then a later "}"): it hashes
      // the bytes up to that later brace; Redis hashes the whole key. The real server settles those below.
      if (open >= 0 && k[open + 1] === 0x7d) continue;
      assert.equal(keySlot(k, 0, len), calculateSlot(k), `key ${k.toString('hex')}`);
    }
  });
});

// ---- standalone ------------------------------------------------------------------------------------------

describe('Redis backend, standalone server', () => {
  let server: RedisProc;
  let backend: Backend;
  let shard: RedisShard;
  let direct: Redis;

  before(async () => {
    ensureRedis();
    server = await startServer();
    backend = createRedisBackend('r', { backend: 'redis', servers: [`127.0.0.1:${server.port}`] }, OPTS);
    shard = backend.shards[0] as RedisShard;
    await backend.connect();
    direct = new Redis({ port: server.port });
  });

  after(async () => {
    backend?.close();
    direct?.disconnect();
    await server?.stop();
    if (server) rmSync(server.dir, { recursive: true, force: true });
  });

  it('is one shard labelled host:port that owns every key', () => {
    assert.equal(backend.kind, 'redis');
    assert.equal(backend.shards.length, 1);
    assert.equal(backend.shardOf(Buffer.from('anything'), 0, 8), 0);
    assert.equal(shard.label, `127.0.0.1:${server.port}`);
    assert.equal(shard.up, true);
  });

  it('sets, gets, deletes and misses, with writes applied before the reads of their flush', async () => {
    const r = await flush(shard, [
      { op: 'get', key: 's:a' },
      { op: 'set', key: 's:a', value: Buffer.from('one') },
      { op: 'set', key: 's:b', value: Buffer.from('two') },
      { op: 'del', key: 's:b' },
      { op: 'del', key: 's:never' },
      { op: 'get', key: 's:b' },
      { op: 'get', key: 's:never' },
    ]);
    assert.equal(value(r, 0).toString(), 'one', 'a write goes before a read of the same flush');
    assert.equal(kindOf(r, 1), 'ok');
    assert.equal(kindOf(r, 2), 'ok');
    assert.equal(kindOf(r, 3), 'ok', 'a delete of a present key');
    assert.equal(kindOf(r, 4), 'miss', 'a delete of an absent key');
    assert.equal(kindOf(r, 5), 'miss', 'set then deleted in order');
    assert.equal(kindOf(r, 6), 'miss');
    assert.equal((await direct.getBuffer('s:a'))?.toString(), 'one');
  });

  it('ttl N is SET ... EX N; ttl 0 stores without expiry (and clears an earlier one)', async () => {
    await flush(shard, [{ op: 'set', key: 't:1', value: Buffer.from('x'), ttl: 100 }]);
    const ttl = await direct.ttl('t:1');
    assert.ok(ttl > 90 && ttl <= 100, `ttl ${ttl}`);
    await flush(shard, [{ op: 'set', key: 't:1', value: Buffer.from('y'), ttl: 0 }]);
    assert.equal(await direct.ttl('t:1'), -1);
    await flush(shard, [{ op: 'set', key: 't:2', value: Buffer.from('z'), ttl: 1 }]);
    const pttl = await direct.pttl('t:2');
    assert.ok(pttl > 0 && pttl <= 1000, `pttl ${pttl}`);
  });

  it('values are bytes: every byte value and sizes 0, 1, 16 KiB-1, 16 KiB, 16 KiB+1, 1 MiB round-trip', async () => {
    const all = Buffer.alloc(256);
    for (let j = 0; j < 256; j++) all[j] = j;
    const rand = prng(11);
    const sizes = [0, 1, PART_BYTES - 1, PART_BYTES, PART_BYTES + 1, 1024 * 1024];
    const vals = [all, ...sizes.map((n) => randomBytes(rand, n))];
    const keys = vals.map((_, j) => Buffer.from(`bin:\u00e9\u00ff:${j}`));
    const w = await flush(
      shard,
      vals.map((v, j) => ({ op: 'set' as const, key: keys[j], value: v })),
    );
    vals.forEach((_, j) => assert.equal(kindOf(w, j), 'ok'));
    for (let j = 0; j < vals.length; j++) {
      const stored = await direct.getBuffer(Buffer.from(`bin:\u00e9\u00ff:${j}`));
      assert.ok(stored !== null && stored.equals(vals[j]), `stored bytes of value ${j}`);
    }
    const r = await flush(
      shard,
      vals.map((_, j) => ({ op: 'get' as const, key: Buffer.from(`bin:\u00e9\u00ff:${j}`) })),
    );
    for (let j = 0; j < vals.length; j++) {
      assert.ok(value(r, j).equals(vals[j]), `value ${j} (${vals[j].length} bytes) read back`);
      const parts = r.parts.get(j)!;
      assert.ok(
        parts.every((p) => p <= PART_BYTES),
        `parts of at most 16 KiB: ${parts}`,
      );
      assert.equal(parts.length, Math.max(1, Math.ceil(vals[j].length / PART_BYTES)));
    }
  });

  it('reads values written by ioredis and redis-cli byte for byte, and the reverse', async () => {
    const rand = prng(3);
    const v1 = randomBytes(rand, 5000);
    await direct.set(Buffer.from('io:1'), v1);
    const v2 = randomBytes(rand, 3000);
    const cli = spawnSync('redis-cli', ['-p', String(server.port), '-x', 'SET', 'cli:1'], { input: v2 });
    assert.equal(cli.status, 0);
    const r = await flush(shard, [
      { op: 'get', key: 'io:1' },
      { op: 'get', key: 'cli:1' },
    ]);
    assert.ok(value(r, 0).equals(v1), 'written by ioredis');
    assert.ok(value(r, 1).equals(v2), 'written by redis-cli');

    const v3 = randomBytes(rand, 4000);
    await flush(shard, [{ op: 'set', key: 'gw:1', value: v3 }]);
    assert.ok((await direct.getBuffer('gw:1'))!.equals(v3), 'read by ioredis');
    const out = spawnSync('redis-cli', ['-p', String(server.port), '--raw', 'GET', 'gw:1']);
    assert.equal(out.status, 0);
    // redis-cli ends its output with a newline.
    assert.ok(out.stdout.subarray(0, out.stdout.length - 1).equals(v3), 'read by redis-cli');
  });

  it('one flush is one pipeline: writes then one MGET, a duplicated key fetched once, per Redis counters', async () => {
    const checker = new Redis({ port: server.port });
    try {
      const keys = Array.from({ length: 50 }, (_, j) => `dup:${j}`);
      await Promise.all(keys.slice(0, 25).map((k) => checker.set(k, `v-${k}`)));
      await checker.config('RESETSTAT');
      const items: Item[] = [];
      for (let j = 0; j < 10; j++) items.push({ op: 'set', key: `dup:w${j}`, value: Buffer.from(`w${j}`) });
      for (let rep = 0; rep < 4; rep++) for (const k of keys) items.push({ op: 'get', key: k });
      const before = shard.stats();
      const r = await flush(shard, items);
      const info = await serverInfo(checker);
      for (let j = 10; j < items.length; j++) {
        const k = (items[j] as { key: string }).key;
        const n = Number(k.slice(4));
        if (n < 25) assert.equal(value(r, j).toString(), `v-${k}`);
        else assert.equal(kindOf(r, j), 'miss');
      }
      assert.equal(calls(info, 'mget'), 1, 'one MGET for the flush');
      assert.equal(calls(info, 'get'), 0, 'no single GETs');
      assert.equal(calls(info, 'set'), 10);
      // keyspace_hits + misses count keys looked up: 50 unique keys, though 200 items asked for them.
      assert.equal(Number(info.keyspace_hits) + Number(info.keyspace_misses), 50);
      // Our pipeline and the INFO above: a few network reads, not one per command.
      assert.ok(Number(info.total_reads_processed) <= 3, `reads ${info.total_reads_processed}`);
      const after = shard.stats();
      assert.equal(after.writes - before.writes, 1, 'one pipeline written');
      assert.equal(after.batches - before.batches, 2);
      assert.equal(after.keys - before.keys, 60, '10 writes + 50 unique keys');
      assert.equal(after.inflightBatches, 0);
    } finally {
      checker.disconnect();
    }
  });

  it('a value refused by flow control is handed back through redo; the other waiters still get it', async () => {
    await direct.set('fc:1', 'flow');
    const req = new Collector();
    req.refuse.add(0);
    const get = shard.newGets(16);
    const key = Buffer.from('fc:1');
    get.add(req, 0, key, 0, key.length);
    get.add(req, 1, key, 0, key.length);
    req.seal();
    let back = 0;
    shard.onBatchDone = () => back++;
    shard.send(null, get);
    await req.done;
    assert.equal(req.redone.get(0)?.toString(), 'fc:1', 'item 0 refused: its key comes back');
    assert.equal(req.out.has(0), false, 'a refused value is not a settlement');
    assert.equal(value(req, 1).toString(), 'flow');
    await until(() => back === 1, 5000, 'batch handed back');
  });

  it('refuses non-zero flags with BAD_FLAGS before sending anything', async () => {
    const r = await flush(shard, [
      { op: 'set', key: 'fl:1', value: Buffer.from('x'), flags: 7 },
      { op: 'set', key: 'fl:2', value: Buffer.from('y'), flags: 0 },
    ]);
    assert.equal(kindOf(r, 0), 'BAD_FLAGS');
    assert.match(r.messages.get(0)!, /no flags/);
    assert.equal(kindOf(r, 1), 'ok');
    assert.equal(await direct.exists('fl:1'), 0, 'the refused set was not sent');
  });

  it('fails a value longer than maxValueBytes written by another client (TOO_LARGE), others unharmed', async () => {
    const small = createRedisBackend(
      'small',
      { backend: 'redis', servers: [`127.0.0.1:${server.port}`] },
      { ...OPTS, maxValueBytes: 1000 },
    );
    await small.connect();
    try {
      await direct.set('big:1', Buffer.alloc(1001, 1));
      await direct.set('big:2', Buffer.alloc(1000, 2));
      const r = await flush(small.shards[0], [
        { op: 'get', key: 'big:1' },
        { op: 'get', key: 'big:2' },
        { op: 'set', key: 'big:3', value: Buffer.alloc(1001) },
      ]);
      assert.equal(kindOf(r, 0), 'TOO_LARGE');
      assert.equal(value(r, 1).length, 1000);
      assert.equal(kindOf(r, 2), 'TOO_LARGE', 'nor is a longer one written');
    } finally {
      small.close();
    }
  });

  it('maps an error reply to SHARD_ERROR for its item only', async () => {
    await direct.del('wt:list');
    await direct.rpush('wt:list', 'a');
    await direct.set('wt:str', 'fine');
    const r = await flush(shard, [{ op: 'get', key: 'wt:list' }]);
    assert.equal(kindOf(r, 0), 'SHARD_ERROR', 'GET on a list: WRONGTYPE');
    assert.match(r.messages.get(0)!, /WRONGTYPE/);
    const r2 = await flush(shard, [
      { op: 'get', key: 'wt:list' },
      { op: 'get', key: 'wt:str' },
    ]);
    // In an MGET a key of another type reads as nil (Redis's MGET semantics).
    assert.equal(kindOf(r2, 0), 'miss');
    assert.equal(value(r2, 1).toString(), 'fine');
  });
});

describe('Redis backend, faults on a standalone server', () => {
  let server: RedisProc;
  let proxy: SplitProxy;
  let backend: Backend;
  let shard: RedisShard;

  before(async () => {
    ensureRedis();
    server = await startServer();
    proxy = await SplitProxy.start(server.port);
    backend = createRedisBackend(
      'f',
      { backend: 'redis', servers: [`127.0.0.1:${proxy.port}`], commandTimeoutMs: 300 },
      OPTS,
    );
    shard = backend.shards[0] as RedisShard;
    await backend.connect();
  });

  after(async () => {
    backend?.close();
    await proxy?.close();
    await server?.stop();
    if (server) rmSync(server.dir, { recursive: true, force: true });
  });

  it('reads values split over many reads (a 100 KiB value in random chunks)', async () => {
    const v = randomBytes(prng(5), 100 * 1024);
    await flush(shard, [{ op: 'set', key: 'split:1', value: v }]);
    proxy.setMode({ kind: 'random', seed: 9, max: 700 });
    try {
      const r = await flush(shard, [
        { op: 'get', key: 'split:1' },
        { op: 'get', key: 'split:none' },
      ]);
      assert.ok(value(r, 0).equals(v));
      assert.equal(kindOf(r, 1), 'miss');
    } finally {
      proxy.setMode({ kind: 'pass' });
    }
  });

  it('a slow server: TIMEOUT after commandTimeoutMs, and the connection stays in step afterwards', async () => {
    await flush(shard, [
      { op: 'set', key: 'slow:1', value: Buffer.from('one') },
      { op: 'set', key: 'slow:2', value: Buffer.from('two') },
    ]);
    proxy.setMode({ kind: 'hold' });
    const t0 = Date.now();
    const r = await flush(shard, [
      { op: 'get', key: 'slow:1' },
      { op: 'set', key: 'slow:3', value: Buffer.from('three') },
    ]);
    const took = Date.now() - t0;
    assert.equal(kindOf(r, 0), 'TIMEOUT');
    assert.equal(kindOf(r, 1), 'TIMEOUT');
    assert.ok(took >= 250, `timed out after ${took} ms`);
    // The late replies arrive now and are consumed by the timed-out commands, not taken for the next ones.
    proxy.setMode({ kind: 'pass' });
    const r2 = await flush(shard, [
      { op: 'get', key: 'slow:2' },
      { op: 'get', key: 'slow:1' },
    ]);
    assert.equal(value(r2, 0).toString(), 'two');
    assert.equal(value(r2, 1).toString(), 'one');
  });

  it('a connection lost after sending: the write fails SHARD_DOWN (never resent), the get is retried once', async () => {
    const direct = new Redis({ port: server.port });
    try {
      await direct.set('lost:1', 'kept');
      await direct.config('RESETSTAT');
      const resets = shard.stats().resets;
      // The next reply bytes are not forwarded: the connection closes with the flush in flight.
      proxy.setMode({ kind: 'cut', after: 0 });
      const r = await flush(shard, [
        { op: 'set', key: 'lost:2', value: Buffer.from('maybe') },
        { op: 'get', key: 'lost:1' },
      ]);
      assert.equal(kindOf(r, 0), 'SHARD_DOWN', 'a write whose answer was lost');
      assert.equal(value(r, 1).toString(), 'kept', 'the get, sent again once the connection was back');
      assert.equal(shard.stats().resets, resets + 1);
      const info = await serverInfo(direct);
      assert.equal(calls(info, 'set'), 1, 'the write was not resent');
      assert.equal(calls(info, 'get'), 2, 'the get was sent twice');
      // (Redis did apply the write: SHARD_DOWN's retry hint says "may have been applied".)
      assert.equal(await direct.get('lost:2'), 'maybe');
    } finally {
      direct.disconnect();
    }
  });

  it('a stopped server fails its items with SHARD_DOWN at once, and the shard recovers when it returns', async () => {
    await server.stop();
    await until(() => !shard.up, 5000, 'the shard to see the server gone');
    const t0 = Date.now();
    const r = await flush(shard, [
      { op: 'get', key: 'down:1' },
      { op: 'set', key: 'down:2', value: Buffer.from('x') },
    ]);
    assert.equal(kindOf(r, 0), 'SHARD_DOWN');
    assert.equal(kindOf(r, 1), 'SHARD_DOWN');
    // Sent anyway (bypassing the coalescer's check): the shard itself must not queue them.
    const req = new Collector();
    const g = shard.newGets(4);
    g.add(req, 0, Buffer.from('down:1'), 0, 6);
    req.seal();
    let back = 0;
    shard.onBatchDone = () => back++;
    shard.send(null, g);
    await req.done;
    assert.equal(kindOf(req, 0), 'SHARD_DOWN');
    assert.equal(back, 1);
    assert.ok(Date.now() - t0 < 1000, 'no waiting for a timeout');

    await server.start();
    await until(() => shard.up, 10_000, 'the shard to reconnect');
    const r2 = await flush(shard, [
      { op: 'set', key: 'down:2', value: Buffer.from('back') },
      { op: 'get', key: 'down:2' },
    ]);
    assert.equal(kindOf(r2, 0), 'ok');
    assert.equal(value(r2, 1).toString(), 'back');
  });

  it('close() fails what is pending with SHUTTING_DOWN and the shard reports down', async () => {
    proxy.setMode({ kind: 'hold' });
    const req = new Collector();
    const g = shard.newGets(4);
    g.add(req, 0, Buffer.from('bye'), 0, 3);
    req.seal();
    shard.send(null, g);
    backend.close();
    await req.done;
    assert.equal(kindOf(req, 0), 'SHUTTING_DOWN');
    assert.equal(shard.up, false);
    proxy.setMode({ kind: 'pass' });
  });
});

// ---- cluster --------------------------------------------------------------------------------------------

describe('Redis backend, 3-master + 3-replica Redis Cluster', () => {
  let cl: LocalCluster;
  let backend: Backend;
  let shard: RedisShard;
  const keys = Array.from({ length: 300 }, (_, j) => `ck:${j}`);
  const valOf = (k: string): string => `value of ${k}`;

  /** The master port serving each slot, read from a node. */
  async function ownerPorts(): Promise<Map<number, number>> {
    for (const n of cl.nodes) {
      if (n.proc === null) continue;
      const c = new Redis({ port: n.port, lazyConnect: true, maxRetriesPerRequest: 0 });
      try {
        await c.connect();
        const slots = (await c.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
        const m = new Map<number, number>();
        for (const [from, to, master] of slots) for (let s = from; s <= to; s++) m.set(s, master[1]);
        return m;
      } catch {
        /* next node */
      } finally {
        c.disconnect();
      }
    }
    throw new Error('no node answered CLUSTER SLOTS');
  }

  async function masters(): Promise<number[]> {
    return [...new Set((await ownerPorts()).values())];
  }

  before(async () => {
    ensureRedis();
    cl = await startCluster();
    backend = createRedisBackend('c', { backend: 'redis', cluster: cl.seeds, commandTimeoutMs: 1000 }, OPTS);
    shard = backend.shards[0] as RedisShard;
    await backend.connect();
  });

  after(async () => {
    backend?.close();
    await cl?.stop();
  });

  it('slots agree with CLUSTER KEYSLOT, empty and unclosed hash tags included', async () => {
    const c = new Redis({ port: cl.nodes[0].port });
    try {
      const samples = ['foo', '{}a}', 'a{}b{c}', '{a', 'x{y}z', '{{x}}', '\u00e9{\u00ff}', '{}', '}{', 'k{}'];
      const rand = prng(21);
      for (let n = 0; n < 200; n++) samples.push(randomBytes(rand, 1 + ((rand() * 12) | 0)).toString('latin1'));
      for (const s of samples) {
        const k = Buffer.from(s, 'latin1');
        const want = (await c.cluster('KEYSLOT', k)) as number;
        assert.equal(keySlot(k, 0, k.length), want, `key ${k.toString('hex')}`);
      }
    } finally {
      c.disconnect();
    }
  });

  it('one flush: keys spread over the masters, one pipeline per master, MGET for keys sharing a slot', async () => {
    const w = await flush(
      shard,
      keys.map((k) => ({ op: 'set' as const, key: k, value: Buffer.from(valOf(k)) })),
    );
    keys.forEach((_, j) => assert.equal(kindOf(w, j), 'ok', `set ${j}: ${w.messages.get(j)}`));
    const ports = await masters();
    assert.equal(ports.length, 3);
    const checkers = ports.map((p) => new Redis({ port: p }));
    try {
      const sizes = await Promise.all(checkers.map((c) => c.dbsize()));
      assert.ok(
        sizes.every((n) => n > 50),
        `keys on every master: ${sizes}`,
      );
      assert.equal(
        sizes.reduce((a, n) => a + n, 0),
        300,
      );
      const tagged = ['{grp}:1', '{grp}:2', '{grp}:3'];
      const owners = await ownerPorts();
      const owner = ports.indexOf(owners.get(keySlot(Buffer.from('{grp}'), 1, 3))!);
      await Promise.all(checkers.map((c) => c.config('RESETSTAT')));
      const before = new Map(shard.nodeStats().map((s) => [s.node, s.pipelines]));
      const items: Item[] = keys.map((k) => ({ op: 'get' as const, key: k }));
      for (const t of tagged) items.push({ op: 'get', key: t }, { op: 'get', key: t });
      const r = await flush(shard, items);
      keys.forEach((k, j) => assert.equal(value(r, j).toString(), valOf(k)));
      for (let j = keys.length; j < items.length; j++) assert.equal(kindOf(r, j), 'miss');
      const infos = await Promise.all(checkers.map(serverInfo));
      // Expected commands per master: one MGET per slot holding several of the asked keys, one GET per slot
      // holding one.
      const perSlot = new Map<number, number>();
      for (const k of [...keys, ...tagged]) {
        const s = keySlot(Buffer.from(k), 0, k.length);
        perSlot.set(s, (perSlot.get(s) ?? 0) + 1);
      }
      let looked = 0;
      infos.forEach((info, m) => {
        let mgets = 0;
        let gets = 0;
        for (const [s, n] of perSlot) {
          if (owners.get(s) !== ports[m]) continue;
          if (n > 1) mgets++;
          else gets++;
        }
        looked += Number(info.keyspace_hits) + Number(info.keyspace_misses);
        assert.equal(calls(info, 'mget'), mgets, `MGETs on master ${ports[m]}`);
        assert.equal(calls(info, 'get'), gets, `GETs on master ${ports[m]}`);
        if (m === owner) assert.ok(mgets >= 1, 'the hash-tagged keys share one MGET');
        // Network reads on that master: our one pipeline, the INFO above, and background traffic (a replica's
        // REPLCONF ACK each second, ioredis's slot table refresh): a handful, not one per command.
        const reads = Number(info.total_reads_processed);
        assert.ok(
          reads <= 6 && reads * 10 < gets + mgets,
          `reads on ${ports[m]}: ${reads} for ${gets + mgets} commands`,
        );
      });
      assert.equal(looked, 303, 'each unique key looked up once');
      const afterStats = shard.nodeStats();
      for (const p of ports) {
        const s = afterStats.find((x) => x.node === `127.0.0.1:${p}`)!;
        assert.equal(s.pipelines - (before.get(s.node) ?? 0), 1, `one pipeline to ${s.node}`);
      }
    } finally {
      checkers.forEach((c) => c.disconnect());
    }
  });

  it('follows MOVED per command: a pipeline to the wrong master is redirected item by item', async () => {
    // Point ioredis's slot table for two keys at a master that does not own them, then flush: routing is
    // synchronous in send(), so no refresh can come in between.
    const owners = await ownerPorts();
    const ports = await masters();
    const pick = (k: string): number => keySlot(Buffer.from(k), 0, k.length);
    const ka = keys[5];
    const kb = keys[6];
    const wrong = ports.find((p) => p !== owners.get(pick(ka)) && p !== owners.get(pick(kb)));
    const c = (shard as unknown as { placement: { c: { slots: string[][] } } }).placement.c;
    const wrongNode = ports.map((p) => new Redis({ port: p }));
    try {
      await Promise.all(wrongNode.map((x) => x.config('RESETSTAT')));
      const items: Item[] = [
        { op: 'set', key: ka, value: Buffer.from('moved-a') },
        { op: 'get', key: ka },
        { op: 'get', key: kb },
      ];
      if (wrong !== undefined) {
        c.slots[pick(ka)] = [`127.0.0.1:${wrong}`];
        c.slots[pick(kb)] = [`127.0.0.1:${wrong}`];
      }
      const r = await flush(shard, items);
      assert.ok(wrong !== undefined, 'a third master to misroute to');
      assert.equal(kindOf(r, 0), 'ok', `the write followed MOVED: ${r.messages.get(0)}`);
      assert.equal(value(r, 1).toString(), 'moved-a');
      assert.equal(value(r, 2).toString(), valOf(kb));
      const info = parseInfo(await wrongNode[ports.indexOf(wrong)].info('errorstats'));
      assert.ok(/count=([3-9]|\d\d)/.test(info.errorstat_MOVED ?? ''), `MOVED answered: ${info.errorstat_MOVED}`);
      await flush(shard, [{ op: 'set', key: ka, value: Buffer.from(valOf(ka)) }]);
    } finally {
      wrongNode.forEach((x) => x.disconnect());
    }
  });

  it('follows ASK and TRYAGAIN while a slot migrates, and MOVED once it moved', async () => {
    // Move the slot of one key to another master by hand; the backend's table still names the old one.
    const k = keys[0];
    const slot = keySlot(Buffer.from(k), 0, k.length);
    const owners = await ownerPorts();
    const from = owners.get(slot)!;
    const to = (await masters()).find((p) => p !== from)!;
    const src = new Redis({ port: from });
    const dst = new Redis({ port: to });
    try {
      const srcId = (await src.cluster('MYID')) as string;
      const dstId = (await dst.cluster('MYID')) as string;
      await dst.cluster('SETSLOT', slot, 'IMPORTING', srcId);
      await src.cluster('SETSLOT', slot, 'MIGRATING', dstId);
      // Halfway: the key is still on the source; a new key of that slot is asked for on the target (ASK).
      let sameSlot = '';
      for (let n = 0; sameSlot === ''; n++) {
        const cand = `mv:${n}`;
        if (keySlot(Buffer.from(cand), 0, cand.length) === slot) sameSlot = cand;
      }
      const mid = await flush(shard, [
        { op: 'set', key: sameSlot, value: Buffer.from('asked') },
        { op: 'get', key: k },
        { op: 'get', key: sameSlot },
      ]);
      assert.equal(kindOf(mid, 0), 'ok', `ASK followed for a write: ${mid.messages.get(0)}`);
      assert.equal(value(mid, 1).toString(), valOf(k), 'a key still on the source is read there');
      assert.equal(value(mid, 2).toString(), 'asked', 'a key already on the target is read there (ASK)');
      assert.equal(await dst.call('ASKING').then(() => dst.get(sameSlot)), 'asked');
      const errs = parseInfo(await src.info('errorstats'));
      assert.ok(errs.errorstat_ASK !== undefined, 'the source answered ASK');
      assert.ok(errs.errorstat_TRYAGAIN !== undefined, 'the MGET of a half-migrated slot met TRYAGAIN');
      // Finish the move: migrate the remaining keys of the slot, then assign the slot to the target.
      const left = (await src.cluster('GETKEYSINSLOT', slot, 1000)) as string[];
      if (left.length > 0) await src.call('MIGRATE', '127.0.0.1', to, '', 0, 5000, 'KEYS', ...left);
      // The new owner first, then the old one, then the rest (as redis-cli --cluster reshard does).
      for (const p of [to, from, ...(await masters()).filter((x) => x !== to && x !== from)]) {
        const c = new Redis({ port: p });
        await c.cluster('SETSLOT', slot, 'NODE', dstId);
        c.disconnect();
      }
      const r = await flush(shard, [
        { op: 'get', key: k },
        { op: 'get', key: sameSlot },
        { op: 'set', key: k, value: Buffer.from(valOf(k)) },
      ]);
      assert.equal(kindOf(r, 2), 'ok', `MOVED followed for a write: ${r.messages.get(2)}`);
      assert.equal(value(r, 0).toString(), valOf(k));
      assert.equal(value(r, 1).toString(), 'asked');
    } finally {
      src.disconnect();
      dst.disconnect();
    }
  });

  it('a master killed fails only its own keys (SHARD_DOWN), then its replica takes over and they succeed', async () => {
    const owners = await ownerPorts();
    const victimPort = owners.get(keySlot(Buffer.from(keys[1]), 0, keys[1].length))!;
    const victim = cl.nodes.find((n) => n.port === victimPort)!;
    const label = `127.0.0.1:${victimPort}`;
    await victim.stop();
    await until(() => !shard.nodeStats().some((s) => s.node === label && s.up), 10_000, 'the backend to see it gone');
    const onVictim = keys.map((k) => owners.get(keySlot(Buffer.from(k), 0, k.length)) === victimPort);
    const r = await flush(
      shard,
      keys.map((k) => ({ op: 'get' as const, key: k })),
    );
    keys.forEach((k, j) => {
      if (onVictim[j]) assert.equal(kindOf(r, j), 'SHARD_DOWN', `${k} on the killed master: ${r.messages.get(j)}`);
      else assert.equal(value(r, j).toString(), valOf(k), `${k} on a live master`);
    });
    assert.ok(onVictim.some(Boolean) && !onVictim.every(Boolean));
    // The replica is promoted (cluster-node-timeout 1 s); the backend follows the new slot table.
    await until(
      async () => {
        const x = await flush(
          shard,
          keys.map((k) => ({ op: 'get' as const, key: k })),
        );
        for (let j = 0; j < keys.length; j++) {
          const o = x.out.get(j)!;
          // Never a wrong value, whatever the moment.
          if (o.kind === 'value') assert.equal(o.value.toString(), valOf(keys[j]));
          else if (o.kind !== 'error' || (o.code !== 'SHARD_DOWN' && o.code !== 'TIMEOUT')) {
            assert.fail(`${keys[j]}: ${JSON.stringify(o)}`);
          }
        }
        return keys.every((_, j) => x.out.get(j)!.kind === 'value');
      },
      30_000,
      'the replica to take over',
    );
  });
});
