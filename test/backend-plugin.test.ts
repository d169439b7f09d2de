/**
 * The seam from the outside, as docs/ARCHITECTURE.md's "how to add a backend" describes it: a backend
 * that is not memcached (an in-memory map standing in for the Redis factory the lead plugs in), registered
 * with registerBackend, configured as a pool and routed to by prefix next to a real memcached pool. The
 * gateway, its coalescer and the fronts are the same code; only the Backend/Shard/GetOps/MutOps are new.
 * Checks the contract: batches come from the shard, writes are sent before reads in a flush, each batch
 * is handed back through onBatchDone once settled, admitSet can refuse an item, and one settlement each.
 */
import { after, before, describe, it } from 'node:test';
import { testConfig } from './helpers/harness';
import assert from 'node:assert/strict';
import { mergeConfig, validateConfig } from '../src/config/schema';
import { registerBackend } from '../src/backends/registry';
import type { Backend, GetOps, MutOps, Ops, Shard, ShardStats } from '../src/core/backend';
import type { ErrorCode } from '../src/core/errors';
import type { BackendOptions, RedisPoolConfig } from '../src/core/pools';
import type { Request } from '../src/core/request';
import { Histogram, LATENCY_BUCKETS } from '../src/core/histogram';
import { LocalFleet } from '../src/fleet/local-fleet';
import { startGateway, type Gateway } from '../src/gateway';
import { KvWsClient, isItemError, type MgetResult } from './client';

interface Item {
  req: Request;
  i: number;
  key: string;
  value?: Buffer;
  del?: boolean;
}

class MapGets implements GetOps {
  readonly kind = 0 as const;
  items: Item[] = [];
  bytes = 0;
  constructor(private readonly maxOps: number) {}
  get full(): boolean {
    return this.items.length >= this.maxOps;
  }
  add(req: Request, i: number, key: Uint8Array, koff: number, klen: number): void {
    this.items.push({ req, i, key: Buffer.from(key.subarray(koff, koff + klen)).toString('latin1') });
    this.bytes += klen;
    req.submitted();
  }
  fail(code: ErrorCode, message?: string): void {
    for (const it of this.items.splice(0)) it.req.error(it.i, code, message);
  }
  reset(): void {
    this.items = [];
    this.bytes = 0;
  }
}

class MapMuts implements MutOps {
  readonly kind = 1 as const;
  items: Item[] = [];
  bytes = 0;
  private parts: Buffer[] = [];
  constructor(private readonly maxOps: number) {}
  get full(): boolean {
    return this.items.length >= this.maxOps;
  }
  beginSet(req: Request, i: number, key: Uint8Array, koff: number, klen: number): void {
    this.items.push({ req, i, key: Buffer.from(key.subarray(koff, koff + klen)).toString('latin1') });
    this.parts = [];
    req.submitted();
  }
  appendValue(src: Uint8Array, off: number, len: number): void {
    this.parts.push(Buffer.from(src.subarray(off, off + len)));
    this.bytes += len;
  }
  endSet(): void {
    this.items[this.items.length - 1].value = Buffer.concat(this.parts);
  }
  addDel(req: Request, i: number, key: Uint8Array, koff: number, klen: number): void {
    this.items.push({ req, i, key: Buffer.from(key.subarray(koff, koff + klen)).toString('latin1'), del: true });
    req.submitted();
  }
  fail(code: ErrorCode, message?: string): void {
    for (const it of this.items.splice(0)) it.req.error(it.i, code, message);
  }
  reset(): void {
    this.items = [];
    this.bytes = 0;
  }
}

/** Answers on the next turn, as a socket would; keeps what each flush held to check the order. */
class MapShard implements Shard {
  up = true;
  readonly data = new Map<string, Buffer>();
  readonly flushes: string[][] = [];
  private sent = { batches: 0, keys: 0, writes: 0 };
  onBatchDone: (b: Ops) => void = () => {};
  readonly rtt = new Histogram(LATENCY_BUCKETS);
  constructor(readonly label: string) {}
  newGets(maxOps: number): GetOps {
    return new MapGets(maxOps);
  }
  newMuts(maxOps: number): MutOps {
    return new MapMuts(maxOps);
  }
  admitSet(req: Request, i: number, _klen: number, _vlen: number, flags: number): boolean {
    if (flags === 0) return true;
    req.reject(i, 'BAD_FLAGS', 'this pool stores no flags');
    return false;
  }
  send(mut: MutOps | null, get: GetOps | null): void {
    const m = mut as MapMuts | null,
      g = get as MapGets | null;
    this.sent.writes++;
    this.flushes.push([...(m?.items.map((it) => `w:${it.key}`) ?? []), ...(g?.items.map((it) => `r:${it.key}`) ?? [])]);
    setImmediate(() => {
      if (m !== null) {
        this.sent.batches++;
        for (const it of m.items) {
          this.sent.keys++;
          if (it.del) {
            if (this.data.delete(it.key)) it.req.ok(it.i);
            else it.req.miss(it.i);
          } else {
            this.data.set(it.key, it.value!);
            it.req.ok(it.i);
          }
        }
        this.onBatchDone(m);
      }
      if (g !== null) {
        this.sent.batches++;
        for (const it of g.items) {
          this.sent.keys++;
          const v = this.data.get(it.key);
          if (v === undefined) it.req.miss(it.i);
          else if (!it.req.value(it.i, 0, v.length, 0, v, 0, v.length))
            it.req.redo(it.i, Buffer.from(it.key), 0, it.key.length);
        }
        this.onBatchDone(g);
      }
    });
  }
  stats(): ShardStats {
    return {
      shard: this.label,
      up: this.up,
      resets: 0,
      inflightBatches: 0,
      reconnects: 0,
      retries: 0,
      timeouts: 0,
      ejected: false,
      ...this.sent,
    };
  }
  close(): void {
    this.up = false;
  }
}

const built: { name: string; pool: RedisPoolConfig; options: BackendOptions; shard: MapShard }[] = [];

function createMapBackend(name: string, pool: RedisPoolConfig, options: BackendOptions): Backend {
  const shard = new MapShard(pool.servers![0]);
  built.push({ name, pool, options, shard });
  return {
    name,
    kind: 'redis',
    shards: [shard],
    shardOf: () => 0,
    connect: async () => {},
    close: () => shard.close(),
  };
}

const valueOf = (r: MgetResult): string =>
  isItemError(r) ? `error:${r.error.code}` : r.hit ? r.value.toString() : 'miss';

describe('a second backend through the registry', () => {
  let fleet: LocalFleet;
  let gw: Gateway;
  let ws: KvWsClient;
  before(async () => {
    registerBackend('redis', createMapBackend);
    fleet = await LocalFleet.start({ count: 1 });
    const config = validateConfig(
      mergeConfig(testConfig(), {
        port: 0,
        admin: { port: 0 },
        log: { level: 'silent' },
        servers: fleet.servers(),
        pools: { profiles: { backend: 'redis', servers: ['127.0.0.1:6379'], commandTimeoutMs: 250 } },
        routes: [{ prefix: 'prof:', pool: 'profiles' }],
      }),
    );
    gw = await startGateway(config);
    ws = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
  });
  after(async () => {
    ws?.terminate();
    await gw?.stop();
    await fleet?.stop();
  });

  it('the factory gets the pool name, its normalised settings and the gateway options', () => {
    assert.equal(built.length, 1);
    assert.equal(built[0].name, 'profiles');
    assert.deepEqual(built[0].pool, { backend: 'redis', servers: ['127.0.0.1:6379'], commandTimeoutMs: 250 });
    assert.equal(built[0].options.maxValueBytes, gw.config.limits.maxValueBytes);
    assert.equal(built[0].options.shard.timeoutMs, gw.config.shard.timeoutMs);
  });

  it('one bulk request over a memcached pool and the other pool: every item its own result', async () => {
    const items = Array.from({ length: 10 }, (_, i) => ({ key: i % 2 ? `prof:${i}` : `mc:${i}`, value: `v${i}` }));
    assert.deepEqual(
      await ws.mset(items),
      items.map(() => ({ ok: true })),
    );
    const shard = built[0].shard;
    assert.deepEqual([...shard.data.keys()].sort(), ['prof:1', 'prof:3', 'prof:5', 'prof:7', 'prof:9']);
    const got = await ws.mget([...items.map((it) => it.key), 'prof:none', 'mc:none']);
    assert.deepEqual(got.map(valueOf), [...items.map((it) => it.value), 'miss', 'miss']);
    // admitSet refuses an item of its own pool only.
    const flagged = await ws.mset([
      { key: 'prof:f', value: 'x', flags: 7 },
      { key: 'mc:f', value: 'x', flags: 7 },
    ]);
    assert.deepEqual(
      flagged.map((r) => (isItemError(r) ? r.error.code : 'ok')),
      ['BAD_FLAGS', 'ok'],
    );
  });

  it('the shared coalescer batches this backend too: writes go before reads in one flush', async () => {
    const shard = built[0].shard;
    const before = shard.flushes.length;
    // Sent in one WebSocket frame burst: they reach the coalescer in one turn, so one flush.
    const [r1, , r3] = await Promise.all([
      ws.mget(['prof:a', 'prof:b']),
      ws.mset([{ key: 'prof:a', value: 'A' }]),
      ws.mget(['prof:a']),
    ]);
    const flushes = shard.flushes.slice(before);
    // (Fetching a key asked twice once is the backend's business: this one does not, memcached's GetBatch does.)
    assert.deepEqual(flushes, [['w:prof:a', 'r:prof:a', 'r:prof:b', 'r:prof:a']], 'one flush, the write first');
    assert.deepEqual(r1.map(valueOf), ['A', 'miss'], 'a get sees a write of the same flush (writes before reads)');
    assert.deepEqual(r3.map(valueOf), ['A']);
    const st = gw.stats() as { pools: Record<string, { backend: string; shards: { flushes: number }[] }> };
    assert.equal(st.pools.profiles.backend, 'redis');
    assert.ok(st.pools.profiles.shards[0].flushes >= 3);
  });
});
