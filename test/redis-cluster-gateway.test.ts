/**
 * A Redis Cluster of 3 masters and 3 replicas behind the gateway (issue 8, deliverable 4), built here with
 * `redis-cli --cluster create` on loopback (test/helpers/redis-local.ts). What it proves:
 *  - every op over both fronts (get/set/del, mget/mset/mdel, ttl, every byte value, sizes 0 to 1 MiB,
 *    BAD_FLAGS) works on keys spread over all three masters: each key's slot is asked of Redis (`CLUSTER
 *    KEYSLOT`), and the key is found on the master serving that slot and on no other (DBSIZE adds up); one
 *    mget spanning every master answers each key; keys sharing a hash tag are read with one MGET;
 *  - a slot range resharded with `redis-cli --cluster reshard` under load (an independent loop of WebSocket
 *    and HTTP clients, single-key and bulk, writing and reading back their own keys, half of them in the
 *    slots being moved, checking every value): no wrong or stale value, no error but the transient codes
 *    SHARD_DOWN/TIMEOUT (reported; none expected), the load keys really moved, and every key reads its
 *    last written value afterwards through both fronts and through ioredis;
 *  - a master killed (SIGKILL) under the same load: its keys fail with SHARD_DOWN or TIMEOUT only, keys on
 *    the other masters keep succeeding meanwhile (no error at all), once its replica is promoted every one
 *    of its keys succeeds again within a bounded time and no error follows; no value is ever wrong (another
 *    key's, corrupt, never written) and none is stale except a write acknowledged by the dead master that
 *    its replica had not received yet (Redis replicates asynchronously: that loss is Redis's, not the
 *    gateway's, and only writes sent before the kill qualify).
 * The cluster runs with cluster-require-full-coverage off, as a gateway's cluster should: otherwise Redis
 * itself refuses every key (CLUSTERDOWN) while one master's slots are uncovered.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, Redis } from 'ioredis';
import { isItemError, KvError, type KvHttpClient, type KvWsClient, type ItemResult, type MgetResult } from './client';
import { startPoolsHarness, until, type PoolsHarness } from './helpers/harness';
import { parseInfo, startRedisCluster, type RedisCluster } from './helpers/redis-local';
import { ALL_BYTES, assertHit, KIB16, MIB, pattern, show } from './helpers/redis-values';

// ioredis's own slot function (a dependency of ioredis, without types).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const calculateSlot = require('cluster-key-slot') as (key: string | Buffer) => number;

const SLOTS = 16384;
/** The codes a key may get while its master is down or its slot moves (docs/PROTOCOL.md, retry `idempotent`). */
const TRANSIENT = new Set(['SHARD_DOWN', 'TIMEOUT']);

/** Which master port serves each slot, from CLUSTER SLOTS of one node. */
async function slotMap(port: number): Promise<Int32Array> {
  const r = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  try {
    const ranges = (await r.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, string]][];
    const map = new Int32Array(SLOTS).fill(-1);
    for (const [from, to, [, owner]] of ranges) map.fill(owner, from, to + 1);
    return map;
  } finally {
    r.disconnect();
  }
}

// ---- the load: independent clients writing and reading back their own keys -----------------------------

/** A value that names its key and version and whose filler follows from both: any mix-up shows. */
function loadValue(key: string, version: number, size: number): Buffer {
  const head = Buffer.from(`${key}|${version}|`);
  const b = Buffer.allocUnsafe(head.length + size);
  head.copy(b);
  const seed = (version * 13 + key.length * 101) & 0xff;
  for (let i = 0; i < size; i++) b[head.length + i] = (seed + i * 31) & 0xff;
  return b;
}

/** The version a load value carries, or a reason it is not one of `key`'s values. */
function readVersion(key: string, v: Buffer): number | string {
  const text = v.subarray(0, 300).toString('latin1');
  const a = text.indexOf('|');
  const b = text.indexOf('|', a + 1);
  if (a < 0 || b < 0) return 'no header';
  if (text.slice(0, a) !== key) return `the value of ${text.slice(0, a)}`;
  const version = Number(text.slice(a + 1, b));
  if (!Number.isInteger(version)) return 'bad version';
  const want = loadValue(key, version, v.length - (b + 1));
  return want.equals(v) ? version : `corrupt bytes for version ${version}`;
}

interface KeyState {
  key: string;
  /** Last version sent. */
  issued: number;
  /** Last version whose set was answered OK, and when that set was sent. */
  acked: number;
  ackedSentAt: number;
  size: number;
}

interface Outcome {
  /** When the op was sent, and when its answer came. */
  sent: number;
  t: number;
  key: string;
  op: 'set' | 'get';
  /** '' for success, else the error code. */
  code: string;
}

type Front = { kind: 'ws'; c: KvWsClient } | { kind: 'http'; c: KvHttpClient };

class Load {
  readonly outcomes: Outcome[] = [];
  readonly wrong: string[] = [];
  readonly stale: string[] = [];
  rounds = new Map<string, number>();
  private stopped = false;
  private running: Promise<void>[] = [];
  /** May a read of `key` return a version older than its last acknowledged one? (Default: never.) */
  staleAllowed: (s: KeyState) => boolean = () => false;

  constructor(readonly keys: Map<string, KeyState>) {}

  /** Writes version 0 of every key and waits for it, so that a miss is always wrong. */
  static async prepare(front: Front, keys: string[], size: (k: string) => number): Promise<Load> {
    const states = new Map<string, KeyState>();
    for (const key of keys) states.set(key, { key, issued: 0, acked: -1, ackedSentAt: 0, size: size(key) });
    const items = keys.map((key) => ({ key, value: loadValue(key, 0, states.get(key)!.size) }));
    const res = await front.c.mset(items);
    for (const [i, r] of res.entries()) {
      assert.equal(show(r), 'ok', `preparing ${keys[i]}`);
      states.get(keys[i])!.acked = 0;
    }
    return new Load(states);
  }

  /** Single-key worker: set a key's next version, read it back, next key. */
  single(name: string, front: Front, keys: string[]): void {
    this.running.push(
      (async () => {
        while (!this.stopped) {
          for (const key of keys) {
            const s = this.keys.get(key)!;
            const version = ++s.issued;
            const sentAt = Date.now();
            try {
              await front.c.set(key, loadValue(key, version, s.size));
              this.acked(s, version, sentAt);
            } catch (e) {
              this.failed(key, 'set', e, sentAt);
            }
            const readAt = Date.now();
            try {
              const r = await front.c.get(key);
              this.check(s, r, readAt);
            } catch (e) {
              this.failed(key, 'get', e, readAt);
            }
          }
          this.rounds.set(name, (this.rounds.get(name) ?? 0) + 1);
        }
      })(),
    );
  }

  /** Bulk worker: one mset of all its keys' next versions, then one mget of them all. */
  bulk(name: string, front: Front, keys: string[]): void {
    this.running.push(
      (async () => {
        while (!this.stopped) {
          const states = keys.map((k) => this.keys.get(k)!);
          const versions = states.map((s) => ++s.issued);
          const sentAt = Date.now();
          try {
            const res = await front.c.mset(
              states.map((s, i) => ({ key: s.key, value: loadValue(s.key, versions[i], s.size) })),
            );
            for (const [i, r] of res.entries()) {
              if (isItemError(r)) this.record(states[i].key, 'set', r.error.code, sentAt);
              else this.acked(states[i], versions[i], sentAt);
            }
          } catch (e) {
            for (const s of states) this.failed(s.key, 'set', e, sentAt);
          }
          const readAt = Date.now();
          try {
            const res = await front.c.mget(keys);
            for (const [i, r] of res.entries()) {
              if (isItemError(r)) this.record(keys[i], 'get', r.error.code, readAt);
              else this.check(states[i], r, readAt);
            }
          } catch (e) {
            for (const k of keys) this.failed(k, 'get', e, readAt);
          }
          this.rounds.set(name, (this.rounds.get(name) ?? 0) + 1);
        }
      })(),
    );
  }

  /** Rounds each worker has finished. */
  minRounds(): number {
    return this.running.length === 0 || this.rounds.size < this.running.length ? 0 : Math.min(...this.rounds.values());
  }

  /** Stops the workers; an op that never answered shows up here as a hang, named. */
  async stop(ms = 15000): Promise<void> {
    this.stopped = true;
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`a load worker did not finish within ${ms} ms: an op hung`)), ms);
    });
    try {
      await Promise.race([Promise.all(this.running), hang]);
    } finally {
      clearTimeout(timer);
    }
  }

  errors(): Outcome[] {
    return this.outcomes.filter((o) => o.code !== '');
  }

  private acked(s: KeyState, version: number, sentAt: number): void {
    // answers for one key come in the order its worker sent them: only this worker writes it
    s.acked = version;
    s.ackedSentAt = sentAt;
    this.record(s.key, 'set', '', sentAt);
  }

  private check(s: KeyState, r: ItemResult, readAt: number): void {
    this.record(s.key, 'get', '', readAt);
    if (isItemError(r) || !('hit' in r)) return void this.wrong.push(`${s.key}: not a get result (${show(r)})`);
    if (!r.hit) return void this.wrong.push(`${s.key}: miss, last acknowledged version ${s.acked}`);
    if (r.flags !== 0) this.wrong.push(`${s.key}: flags ${r.flags}`);
    const v = readVersion(s.key, r.value);
    if (typeof v === 'string') return void this.wrong.push(`${s.key}: ${v}`);
    if (v > s.issued) return void this.wrong.push(`${s.key}: version ${v} was never written (last ${s.issued})`);
    if (v < s.acked) {
      const what = `${s.key}: read version ${v} at ${readAt} after version ${s.acked} was acknowledged`;
      if (this.staleAllowed(s)) this.stale.push(what);
      else this.wrong.push(what);
    }
  }

  private failed(key: string, op: 'set' | 'get', e: unknown, sent: number): void {
    this.record(key, op, e instanceof KvError ? e.code : `exception ${String(e)}`, sent);
  }

  private record(key: string, op: 'set' | 'get', code: string, sent: number): void {
    this.outcomes.push({ sent, t: Date.now(), key, op, code });
  }
}

/** `n` keys named `prefix`... whose slots satisfy `want`, each in a slot of its own. */
function keysIn(prefix: string, n: number, want: (slot: number) => boolean): string[] {
  const out: string[] = [];
  const used = new Set<number>();
  for (let i = 0; out.length < n; i++) {
    if (i > 1_000_000) throw new Error(`no ${n} keys found for ${prefix}`);
    const key = `${prefix}${i}`;
    const slot = calculateSlot(key);
    if (want(slot) && !used.has(slot)) {
      used.add(slot);
      out.push(key);
    }
  }
  return out;
}

/** Polls an async condition every 100 ms (each probe opens connections) until true or `ms` pass. */
async function poll(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function countBy<T>(xs: T[], f: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[f(x)] = (out[f(x)] ?? 0) + 1;
  return out;
}

describe('a Redis Cluster pool (3 masters, 3 replicas) behind the gateway', () => {
  let c: RedisCluster;
  let h: PoolsHarness;
  let ws: KvWsClient;
  let direct: Cluster;

  before(async () => {
    c = await startRedisCluster({ masters: 3, replicasPerMaster: 1, args: ['--cluster-require-full-coverage', 'no'] });
    h = await startPoolsHarness({ pools: { c: { backend: 'redis', cluster: c.seeds() } }, defaultPool: 'c' });
    ws = await h.ws({ maxMessageBytes: KIB16 });
    direct = new Cluster(
      c.seeds().map((s) => ({ host: '127.0.0.1', port: Number(s.split(':')[1]) })),
      {
        redisOptions: { connectTimeout: 2000, maxRetriesPerRequest: 2 },
        clusterRetryStrategy: (n) => (n > 20 ? null : 100),
      },
    );
    const health = await h.http.health();
    assert.equal(health.pools.c?.status, 'ok', JSON.stringify(health));
  });

  after(async () => {
    direct?.disconnect();
    await h?.stop();
    await c?.stop();
  });

  it('every op over both fronts, on keys spread over all three masters', async () => {
    const map = await slotMap(c.masters()[0].port);
    const masters = c.masters().map((m) => m.port);
    const keys = Array.from({ length: 24 }, (_, i) => `spread:${i}`);
    // Redis's own slot for each key, and the gateway's ioredis agrees
    const slots = await Promise.all(
      keys.map(async (k) => Number((await c.cli(masters[0], 'CLUSTER', 'KEYSLOT', k)).trim())),
    );
    for (const [i, k] of keys.entries()) assert.equal(slots[i], calculateSlot(k), k);
    const owners = slots.map((s) => map[s]);
    for (const m of masters) assert.ok(owners.includes(m), `no key on master ${m}: ${owners.join(',')}`);

    // single-key ops, alternating fronts, every size
    const sizes = [0, 1, KIB16 - 1, KIB16, KIB16 + 1, MIB];
    const values = keys.map((_, i) => (i < 6 ? pattern(sizes[i], i) : i === 6 ? ALL_BYTES : pattern(100 + i, i)));
    for (const [i, k] of keys.entries()) {
      if (i % 2 === 0) await ws.set(k, values[i]);
      else await h.http.set(k, values[i]);
    }
    for (const [i, k] of keys.entries()) {
      assertHit(await ws.get(k), values[i], `ws get ${k}`);
      assertHit(await h.http.get(k), values[i], `http get ${k}`);
    }
    // each key on the master serving its slot, and on no other
    for (const [i, k] of keys.entries()) {
      const own = new Redis(owners[i], '127.0.0.1', { maxRetriesPerRequest: 0 });
      try {
        assert.ok((await own.getBuffer(k))?.equals(values[i]), `${k} on its master ${owners[i]}`);
      } finally {
        own.disconnect();
      }
    }
    const dbsize = await Promise.all(masters.map(async (m) => Number((await c.cli(m, 'DBSIZE')).trim())));
    for (const [j, m] of masters.entries())
      assert.equal(dbsize[j], owners.filter((o) => o === m).length, `DBSIZE of master ${m}`);

    // bulk over both fronts, spanning every master, with absent keys
    const all = [...keys, 'spread:absent:1', 'spread:absent:2'];
    const want = [...values, null, null];
    const check = (res: MgetResult[], what: string): void => {
      for (const [i, r] of res.entries())
        if (want[i] === null) assert.deepEqual(r, { hit: false }, `${what} ${all[i]}`);
        else assertHit(r, want[i]!, `${what} ${all[i]}`);
    };
    check(await ws.mget(all), 'ws mget');
    check(await h.http.mget(all), 'http mget');
    check(await h.http.mget(all, { format: 'ndjson' }), 'http ndjson mget');
    const next = keys.map((k, i) => ({ key: k, value: pattern(200, 50 + i), ttl: i % 3 === 0 ? 500 : undefined }));
    assert.deepEqual(
      (await ws.mset(next.slice(0, 12))).map(show),
      next.slice(0, 12).map(() => 'ok'),
    );
    assert.deepEqual(
      (await h.http.mset(next.slice(12))).map(show),
      next.slice(12).map(() => 'ok'),
    );
    for (const it of next) {
      assert.ok((await direct.getBuffer(it.key))?.equals(it.value), `${it.key} after mset`);
      const ttl = await direct.ttl(it.key);
      if (it.ttl) assert.ok(ttl > 400 && ttl <= 500, `${it.key} ttl ${ttl}`);
      else assert.equal(ttl, -1, `${it.key} ttl`);
    }
    // flags refused per item, on every master
    const mixed = keys.slice(0, 6).map((k, i) => ({ key: k, value: Buffer.from('flagged'), flags: i % 2 }));
    assert.deepEqual(
      (await ws.mset(mixed)).map(show),
      mixed.map((it) => (it.flags ? 'error:BAD_FLAGS' : 'ok')),
    );
    for (const it of mixed) {
      const v = await direct.getBuffer(it.key);
      assert.ok(v?.equals(it.flags ? next[keys.indexOf(it.key)].value : it.value), `${it.key} after flags`);
    }
    // deletes over both fronts, and mdel spanning every master
    assert.equal(await ws.del(keys[0]), true);
    assert.equal(await h.http.del(keys[1]), true);
    assert.equal(await h.http.del(keys[1]), false);
    const res = await ws.mdel([...keys.slice(2), 'spread:absent:1']);
    assert.deepEqual(res.map(show), [...keys.slice(2).map(() => 'deleted:true'), 'deleted:false']);
    const left = await Promise.all(masters.map(async (m) => Number((await c.cli(m, 'DBSIZE')).trim())));
    assert.deepEqual(left, [0, 0, 0]);

    // keys of one hash tag share a slot: one MGET on their master, however many keys
    const tagged = Array.from({ length: 20 }, (_, i) => `{tag}:${i}`);
    const tagMaster = map[calculateSlot('{tag}')];
    assert.deepEqual(
      (await ws.mset(tagged.map((k) => ({ key: k, value: k })))).map(show),
      tagged.map(() => 'ok'),
    );
    const calls = async (): Promise<number> => {
      const info = parseInfo(await c.info(tagMaster, 'commandstats'));
      return ['get', 'mget'].reduce(
        (n, cmd) => n + Number(/calls=(\d+)/.exec(info[`cmdstat_${cmd}`] ?? '')?.[1] ?? 0),
        0,
      );
    };
    const before = await calls();
    const got = await ws.mget(tagged);
    assert.deepEqual(
      got.map(show),
      tagged.map((k) => `hit:${k.length}`),
    );
    assert.equal((await calls()) - before, 1, 'one command for 20 keys of one slot');
  });

  it('a slot range resharded under load: no wrong value, only transient codes, every key readable after', async (t) => {
    await c.waitForHealthy();
    const [from, to] = c.masters();
    const MOVE = 256;
    const before = await slotMap(from.port);
    // redis-cli's reshard takes the source's lowest slots first: the load keys sit half in those
    const fromSlots = [...before.keys()].filter((s) => before[s] === from.port);
    const moving = new Set(fromSlots.slice(0, MOVE));
    // Hash tags put a load key and its fillers in one slot: 40 fillers per moving slot make redis-cli
    // migrate each in several MIGRATE batches, so a load key meets its slot half moved (ASK); the bulk
    // workers' keys come in pairs sharing a slot, one MGET per pair (TRYAGAIN while the pair is split).
    const singleTags = keysIn('rsm', 18, (s) => moving.has(s));
    const pairTags = keysIn('rsp', 8, (s) => moving.has(s));
    const others = keysIn('rs:o:', 22, (s) => !moving.has(s));
    const singles = singleTags.map((tg) => `{${tg}}:k`);
    const pairs = pairTags.flatMap((tg) => [`{${tg}}:a`, `{${tg}}:b`]);
    const slices = [
      ...Array.from({ length: 5 }, (_, w) => [
        ...singles.filter((_, i) => i % 5 === w),
        ...others.slice(0, 18).filter((_, i) => i % 5 === w),
      ]),
      [...pairs.slice(0, 8), ...others.slice(18, 20)],
      [...pairs.slice(8), ...others.slice(20)],
    ];
    const keys = slices.flat();
    const movingKeys = [...singles, ...pairs];
    const otherKeys = others;
    for (const tg of [...singleTags, ...pairTags]) {
      const flat: (string | Buffer)[] = [];
      for (let j = 0; j < 40; j++) flat.push(`{${tg}}:f${j}`, pattern(512, j));
      await direct.mset(...flat);
    }
    const errorstats = async (): Promise<Record<string, number>> => {
      const out: Record<string, number> = {};
      for (const m of c.masters()) {
        const info = parseInfo(await c.info(m.port, 'errorstats'));
        for (const e of ['MOVED', 'ASK', 'TRYAGAIN'])
          out[e] = (out[e] ?? 0) + Number(/count=(\d+)/.exec(info[`errorstat_${e}`] ?? '')?.[1] ?? 0);
      }
      return out;
    };
    const fronts = await workers(slices, 'rs');
    const load = await Load.prepare(fronts.prep, keys, (k) => (k.endsWith('7') ? KIB16 + 10 : 200));
    fronts.start(load);
    let opsBefore = 0;
    let reshardAt = 0;
    let movedAt = 0;
    try {
      await until(() => load.minRounds() >= 2, 20000, 'every load worker to finish two rounds');
      opsBefore = load.outcomes.length;
      // The helper's reshard ends by waiting for every replica to catch up with its master, which a write
      // load never lets happen: the load runs until the slots have moved (as every node but the last
      // told sees it), and two rounds more (the gateway's slot table is stale then: MOVED), then stops.
      reshardAt = Date.now();
      const resharding = c.reshard(from.port, to.port, MOVE);
      resharding.catch(() => {});
      await poll(
        async () => {
          const [a, b] = await Promise.all([slotMap(to.port), slotMap(from.port)]);
          return [...moving].every((s) => a[s] === to.port && b[s] === to.port);
        },
        40000,
        'the slots to move',
      );
      movedAt = Date.now();
      const rounds = load.minRounds();
      await until(() => load.minRounds() >= rounds + 2, 20000, 'two more rounds after the reshard');
      await load.stop();
      await resharding;
    } finally {
      await load.stop();
    }
    const after = await slotMap(to.port);
    for (const k of movingKeys) assert.equal(after[calculateSlot(k)], to.port, `${k} moved`);
    for (const k of otherKeys) assert.equal(after[calculateSlot(k)], before[calculateSlot(k)], `${k} stayed`);

    const redirects = await errorstats();
    const errors = load.errors();
    const migrating = load.outcomes.filter((o) => o.t > reshardAt && o.t < movedAt);
    t.diagnostic(
      `${load.outcomes.length} ops (${load.outcomes.length - opsBefore} from the reshard on, ${migrating.length} ` +
        `during the ${movedAt - reshardAt} ms the slots took to move), redirects answered by Redis ` +
        `${JSON.stringify(redirects)}, errors ${JSON.stringify(countBy(errors, (o) => o.code))}`,
    );
    assert.ok(
      migrating.some((o) => o.code === '' && moving.has(calculateSlot(o.key))),
      'no op on a moving key succeeded while the slots moved: the reshard was not under load',
    );
    assert.deepEqual(load.wrong, [], 'wrong values');
    assert.deepEqual(load.stale, []);
    assert.deepEqual(
      errors.filter((o) => !TRANSIENT.has(o.code)),
      [],
      'only transient codes',
    );
    // every key, read through both fronts and directly: its last acknowledged version or a later one sent
    await verifyAll(load, fronts.ws, fronts.http, direct);
  });

  it('a master killed under load: its keys fail with SHARD_DOWN/TIMEOUT until its replica takes over, then succeed', async (t) => {
    await c.waitForHealthy();
    const map = await slotMap(c.masters()[0].port);
    const victim = c.masters()[0];
    const heir = c.replicas().find((r) => r.masterId === victim.id)?.port;
    assert.ok(heir !== undefined, 'the victim has a replica');
    const others = c
      .masters()
      .filter((m) => m.port !== victim.port)
      .map((m) => m.port);
    const keys = [
      ...keysIn('kill:v:', 24, (s) => map[s] === victim.port),
      ...keysIn('kill:a:', 12, (s) => map[s] === others[0]),
      ...keysIn('kill:b:', 12, (s) => map[s] === others[1]),
    ];
    // shuffled into the workers, so that each worker holds keys of every master
    keys.sort((a, b) => calculateSlot(a) - calculateSlot(b));
    const onVictim = (k: string): boolean => k.startsWith('kill:v:');
    const okSince = (k: string, since: number, op: 'set' | 'get'): boolean =>
      load.outcomes.some((o) => o.key === k && o.op === op && o.code === '' && o.sent > since);
    // After the promotion the gateway finds the new owner at its next slot refresh (every 1 s, each given at
    // most 1 s) and opens a connection to it (connect timeout 1 s): about 3 s; five times that on a machine
    // that stalls processes.
    const RECOVERY_MS = 15000;
    const victimKeys = keys.filter(onVictim);
    const fronts = await workers(
      Array.from({ length: 7 }, (_, w) => keys.filter((_, i) => i % 7 === w)),
      'kill',
    );
    const load = await Load.prepare(fronts.prep, keys, (k) => (k.endsWith('3') ? KIB16 + 10 : 200));
    // Replicas are caught up now (waitForHealthy): from here, only writes sent before the kill can be lost.
    await c.waitForHealthy();
    let killedAt = Infinity;
    load.staleAllowed = (s) => onVictim(s.key) && s.ackedSentAt < killedAt;
    fronts.start(load);
    let killStart = 0;
    let promotedAt = 0;
    let recoveredAt = 0;
    try {
      await until(() => load.minRounds() >= 2, 20000, 'every load worker to finish two rounds');
      killStart = Date.now();
      await c.killNode(victim.port);
      killedAt = Date.now();
      // The helper's waitForFailover also waits for replicas to catch up, which the load never lets happen:
      // wait for the promotion itself (a replica of the victim serving its slots, as the cluster says).
      await poll(
        async () => {
          const n = (await c.topology()).find((x) => x.port === heir)!;
          return n.role === 'master' && n.slots > 0;
        },
        30000,
        `a replica of ${victim.port} to be promoted`,
      );
      promotedAt = Date.now();
      // recovered: every key of the dead master was written and read back since the promotion
      await until(
        () => victimKeys.every((k) => okSince(k, promotedAt, 'set') && okSince(k, promotedAt, 'get')),
        RECOVERY_MS,
        'every key of the dead master to succeed again',
      );
      recoveredAt = Date.now();
      const rounds = load.minRounds();
      await until(() => load.minRounds() >= rounds + 3, 20000, 'three more rounds after recovery');
    } finally {
      await load.stop();
    }
    const errors = load.errors();
    const during = load.outcomes.filter((o) => o.t > killedAt && o.t <= promotedAt);
    t.diagnostic(
      `killed ${victim.port}, ${heir} promoted after ${promotedAt - killedAt} ms, keys back ` +
        `${recoveredAt - promotedAt} ms later; ${load.outcomes.length} ops, errors ` +
        `${JSON.stringify(countBy(errors, (o) => o.code))}, ${load.stale.length} stale reads of writes the dead ` +
        `master acknowledged before dying`,
    );
    assert.deepEqual(load.wrong, [], 'wrong values');
    assert.deepEqual(
      errors.filter((o) => !TRANSIENT.has(o.code)),
      [],
      'errors other than SHARD_DOWN/TIMEOUT',
    );
    assert.deepEqual(
      errors.filter((o) => !onVictim(o.key)),
      [],
      'keys of the masters still up failed',
    );
    assert.ok(
      errors.some((o) => onVictim(o.key) && o.t > killStart),
      'no key of the dead master failed: the kill was not seen',
    );
    assert.deepEqual(
      errors.filter((o) => o.t < killStart),
      [],
      'errors before the kill',
    );
    // the errors stopped: once every key of the dead master succeeded again, nothing sent failed any more
    assert.deepEqual(
      errors.filter((o) => o.sent > recoveredAt),
      [],
      'errors after the recovery',
    );
    for (const m of others)
      assert.ok(
        during.some((o) => o.code === '' && map[calculateSlot(o.key)] === m),
        `keys of master ${m} did not succeed while the victim was down`,
      );
    await verifyAll(load, fronts.ws, fronts.http, direct);
  });

  /**
   * The load's clients: three single-key WebSocket workers, two single-key HTTP workers, one bulk worker on
   * each front, each with its own connection and its own keys (`slices`, in that order).
   */
  async function workers(
    slices: string[][],
    tag: string,
  ): Promise<{ prep: Front; ws: KvWsClient; http: KvHttpClient; start: (l: Load) => void }> {
    const wsClients = await Promise.all([0, 1, 2, 3].map(() => h.ws({ maxMessageBytes: KIB16 })));
    return {
      prep: { kind: 'ws', c: wsClients[0] },
      ws: wsClients[0],
      http: h.http,
      start(load) {
        for (let w = 0; w < 3; w++) load.single(`${tag}:ws${w}`, { kind: 'ws', c: wsClients[w] }, slices[w]);
        for (let w = 3; w < 5; w++) load.single(`${tag}:http${w}`, { kind: 'http', c: h.http }, slices[w]);
        load.bulk(`${tag}:wsbulk`, { kind: 'ws', c: wsClients[3] }, slices[5]);
        load.bulk(`${tag}:httpbulk`, { kind: 'http', c: h.http }, slices[6]);
      },
    };
  }

  /** Every load key, read through both fronts and ioredis: a version between its last acknowledged and last sent. */
  async function verifyAll(load: Load, wsc: KvWsClient, http: KvHttpClient, cl: Cluster): Promise<void> {
    const keys = [...load.keys.keys()];
    const reads = [await wsc.mget(keys), await http.mget(keys)];
    for (const [f, res] of reads.entries()) {
      for (const [i, r] of res.entries()) {
        const s = load.keys.get(keys[i])!;
        assert.ok(!isItemError(r) && r.hit, `${['ws', 'http'][f]} ${keys[i]}: ${show(r)}`);
        const v = readVersion(s.key, r.value);
        assert.equal(typeof v, 'number', `${s.key}: ${v}`);
        assert.ok((v as number) >= s.acked && (v as number) <= s.issued, `${s.key}: version ${v}, acked ${s.acked}`);
        const d = await cl.getBuffer(s.key);
        assert.ok(d?.equals(r.value), `${s.key}: ioredis reads other bytes than the gateway`);
      }
    }
  }
});
