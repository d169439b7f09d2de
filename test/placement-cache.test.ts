/**
 * The placement cache in front of the ketama ring (src/backends/memcached/placement-cache.ts): it never
 * answers differently from the ring it caches, whatever the keys (long, binary, colliding in one slot or
 * on the full slot hash), and after the ring changes it answers for the new ring. The backend-level test
 * ejects a real memcached and brings it back.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemcachedBackend } from '../src/backends/memcached';
import { KetamaRing, type RingServer } from '../src/backends/memcached/ketama';
import {
  BYPASS_LOOKUPS,
  DEFAULT_MAX_CACHED_KEY_BYTES,
  PlacementCache,
  TRIAL_LOOKUPS,
  slotHash,
  type PlacementSource,
} from '../src/backends/memcached/placement-cache';
import { quietEvents } from '../src/core/events';
import type { MemcachedPoolConfig } from '../src/core/pools';
import { LocalFleet } from '../src/fleet/local-fleet';
import { until } from './helpers/harness';

const servers = (n: number, base = 1): RingServer[] =>
  Array.from({ length: n }, (_, i) => ({ host: `10.9.0.${base + i}`, port: 11211, weight: 1 }));

/** A source that answers a different number per key (its bytes' sum and length) and counts its calls. */
class CountingSource implements PlacementSource {
  calls = 0;
  lookup(buf: Uint8Array, off: number, len: number): number {
    this.calls++;
    let s = len * 1_000_003;
    for (let i = off; i < off + len; i++) s = (Math.imul(s, 31) + buf[i]) | 0;
    return s;
  }
}

/** Keys: short and sequential, binary, exactly at and around the stored-length limit, long. */
const keyArb = fc.oneof(
  fc.integer({ min: 0, max: 50 }).map((i) => Buffer.from(`k100:${i}`)),
  fc.uint8Array({ minLength: 0, maxLength: 80 }).map((a) => Buffer.from(a)),
  fc
    .integer({ min: DEFAULT_MAX_CACHED_KEY_BYTES - 2, max: DEFAULT_MAX_CACHED_KEY_BYTES + 2 })
    .chain((n) => fc.uint8Array({ minLength: n, maxLength: n }).map((a) => Buffer.from(a))),
  fc.uint8Array({ minLength: 200, maxLength: 250 }).map((a) => Buffer.from(a)),
);

describe('PlacementCache', () => {
  it('answers exactly what the ring answers, keys read in place at an offset, any slot count', () => {
    const rings = [new KetamaRing(servers(3), 'md5'), new KetamaRing(servers(5), 'fnv1a_64')];
    fc.assert(
      fc.property(
        fc.array(keyArb, { minLength: 1, maxLength: 60 }),
        fc.constantFrom(1, 2, 4, 4096),
        fc.nat({ max: 1 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 300 }),
        (keys, slots, r, picks) => {
          const ring = rings[r];
          const cache = new PlacementCache(ring, slots);
          // Pack with a junk byte before each key, so a wrong offset would show.
          const buf = Buffer.concat(keys.flatMap((k) => [Buffer.from([0xa5]), k]));
          const offs: number[] = [];
          let p = 0;
          for (const k of keys) {
            offs.push(p + 1);
            p += 1 + k.length;
          }
          for (const pick of picks) {
            const i = pick % keys.length;
            const want = ring.lookup(keys[i], 0, keys[i].length);
            assert.equal(cache.lookup(buf, offs[i], keys[i].length), want);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('with one slot, every key collides and each still gets its own answer', () => {
    fc.assert(
      fc.property(fc.array(keyArb, { minLength: 2, maxLength: 20 }), (keys) => {
        const src = new CountingSource();
        const oracle = new CountingSource();
        const cache = new PlacementCache(src, 1);
        for (let round = 0; round < 3; round++) {
          for (const k of keys) assert.equal(cache.lookup(k, 0, k.length), oracle.lookup(k, 0, k.length));
        }
      }),
    );
  });

  it('keys with the same length and the same full slot hash are told apart by their bytes', () => {
    // Birthday search: ~80k six-digit keys give two with equal 32-bit slot hashes.
    const seen = new Map<number, Buffer>();
    let pair: [Buffer, Buffer] | null = null;
    for (let i = 100_000; i < 1_000_000 && pair === null; i++) {
      const k = Buffer.from(`c:${i}`);
      const h = slotHash(k, 0, k.length);
      const other = seen.get(h);
      if (other !== undefined) pair = [other, k];
      else seen.set(h, k);
    }
    assert.ok(pair !== null, 'found two keys with one slot hash');
    const [a, b] = pair;
    const src = new CountingSource();
    const want = [src.lookup(a, 0, a.length), src.lookup(b, 0, b.length)];
    assert.notEqual(want[0], want[1]);
    for (const slots of [1, 4096, 1 << 20]) {
      const cache = new PlacementCache(new CountingSource(), slots);
      for (let round = 0; round < 3; round++) {
        assert.equal(cache.lookup(a, 0, a.length), want[0], `${a} with ${slots} slots`);
        assert.equal(cache.lookup(b, 0, b.length), want[1], `${b} with ${slots} slots`);
      }
    }
  });

  it('answers a repeated key from the cache; keys over maxKeyBytes always go to the ring', () => {
    const src = new CountingSource();
    const cache = new PlacementCache(src, 64, 16);
    const short = Buffer.from('k100:1234');
    const long = Buffer.from('x'.repeat(17));
    for (let i = 0; i < 5; i++) cache.lookup(short, 0, short.length);
    assert.equal(src.calls, 1);
    for (let i = 0; i < 5; i++) cache.lookup(long, 0, long.length);
    assert.equal(src.calls, 6);
    assert.equal(cache.hits, 4);
    assert.equal(cache.misses, 6);
  });

  it('use(ring) forgets the previous ring: every answer is the new ring`s', () => {
    const before = new KetamaRing(servers(3), 'md5');
    const next = new KetamaRing(servers(2), 'md5');
    const cache = new PlacementCache(before, 256);
    const keys = Array.from({ length: 500 }, (_, i) => Buffer.from(`mv:${i}`));
    for (const k of keys) assert.equal(cache.lookup(k, 0, k.length), before.lookup(k, 0, k.length));
    cache.use(next);
    let moved = 0;
    for (const k of keys) {
      const want = next.lookup(k, 0, k.length);
      if (want !== before.lookup(k, 0, k.length)) moved++;
      assert.equal(cache.lookup(k, 0, k.length), want);
    }
    assert.ok(moved > 100, `the rings disagree on enough keys (${moved})`);
  });

  it('steps aside while keys do not repeat, and caches again once they do', () => {
    const src = new CountingSource();
    const oracle = new CountingSource();
    const cache = new PlacementCache(src, 1024);
    const check = (k: Buffer): void => assert.equal(cache.lookup(k, 0, k.length), oracle.lookup(k, 0, k.length));
    for (let i = 0; i < TRIAL_LOOKUPS; i++) check(Buffer.from(`d:${i}`));
    assert.equal(cache.bypassing, true, 'a trial of distinct keys stops the caching');
    const hot = Array.from({ length: 16 }, (_, i) => Buffer.from(`hot:${i}`));
    const calls = src.calls;
    for (let i = 0; i < BYPASS_LOOKUPS; i++) check(hot[i % hot.length]);
    assert.equal(src.calls - calls, BYPASS_LOOKUPS, 'bypassed lookups all go to the ring');
    assert.equal(cache.bypassing, false);
    for (let i = 0; i < 2 * TRIAL_LOOKUPS; i++) check(hot[i % hot.length]);
    assert.equal(cache.bypassing, false, 'a trial of hot keys keeps it caching');
    const before = src.calls;
    for (let i = 0; i < 100; i++) check(hot[i % hot.length]);
    assert.equal(src.calls, before, 'hot keys come from the cache');
  });

  it('refuses a slot count that is not a power of two', () => {
    const ring = new KetamaRing(servers(2), 'md5');
    assert.throws(() => new PlacementCache(ring, 0), RangeError);
    assert.throws(() => new PlacementCache(ring, 3000), RangeError);
    assert.throws(() => new PlacementCache(ring, 8, -1), RangeError);
  });
});

// -------------------------------------------------------------------------------------------------------
describe('MemcachedBackend.shardOf with the placement cache', () => {
  let fleet: LocalFleet;
  before(async () => {
    fleet = await LocalFleet.start({ count: 3 });
  });
  after(async () => {
    await fleet?.stop();
  });

  const options = {
    maxValueBytes: 1 << 20,
    maxOps: 100,
    shard: { timeoutMs: 300, connectTimeoutMs: 300, reconnectMinMs: 20, reconnectMaxMs: 200 },
    fds: null,
    events: quietEvents(),
  };
  const shardOf = (b: MemcachedBackend, k: Buffer): number => b.shardOf(k, 0, k.length);

  it('places every key as the bare ring does', () => {
    const b = new MemcachedBackend(
      'prop',
      {
        backend: 'memcached',
        servers: servers(4),
        hash: 'md5',
        failure: { mode: 'fail-fast', failureLimit: 3, retryTimeoutMs: 1000, maxRetryTimeoutMs: 1000 },
      },
      options,
    );
    try {
      fc.assert(
        fc.property(fc.array(keyArb, { minLength: 1, maxLength: 100 }), (keys) => {
          for (let round = 0; round < 2; round++) {
            for (const k of keys) assert.equal(shardOf(b, k), b.ring.lookup(k, 0, k.length));
          }
        }),
      );
    } finally {
      b.close();
    }
  });

  it('follows the live ring when a shard is ejected and when it returns', async () => {
    const DEAD = 1;
    const pool: MemcachedPoolConfig = {
      backend: 'memcached',
      servers: fleet.servers(),
      hash: 'md5',
      failure: { mode: 'eject', failureLimit: 1, retryTimeoutMs: 100, maxRetryTimeoutMs: 200 },
    };
    const b = new MemcachedBackend('ejecting', pool, options);
    const keys = Array.from({ length: 600 }, (_, i) => Buffer.from(`pc:${i}`));
    try {
      await b.connect();
      // Fill the cache on the configured ring.
      for (const k of keys) assert.equal(shardOf(b, k), b.ring.lookup(k, 0, k.length));
      const home = keys.map((k) => shardOf(b, k));
      assert.ok(home.filter((s) => s === DEAD).length > 50, 'the shard to eject owns keys');

      await fleet.members[DEAD].stop();
      await until(() => b.shards[DEAD].stats().ejected, 5000, 'the stopped shard to be ejected');
      const survivors = [0, 2];
      const ring2 = new KetamaRing(
        survivors.map((i) => pool.servers[i]),
        'md5',
      );
      keys.forEach((k, i) => {
        const s = shardOf(b, k);
        assert.equal(s, survivors[ring2.lookup(k, 0, k.length)], `${k} on the ring over the survivors`);
        if (home[i] !== DEAD) assert.equal(s, home[i], `${k} stays where it was`);
      });

      await fleet.members[DEAD].start();
      await until(() => !b.shards[DEAD].stats().ejected, 5000, 'the shard to return');
      keys.forEach((k, i) => assert.equal(shardOf(b, k), home[i], `${k} back on the configured ring`));
    } finally {
      b.close();
    }
  });
});
