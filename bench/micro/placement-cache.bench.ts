/**
 * The placement cache (src/backends/memcached/placement-cache.ts) against the bare ketama lookup it sits
 * in front of, on a 3-server ring, both hashes, keys packed in one Buffer and read in place:
 * - hot: 10,000 keys like `k100:1234`, drawn at random as the load generator does (the cache's hit rate
 *   is in the row's note);
 * - distinct: 1M keys in turn (every lookup a miss: what the cache costs when it cannot help).
 *
 *   node dist/bench/micro/placement-cache.bench.js
 */
import { measure, print, type MicroRow } from './harness';
import type { HashName } from '../../src/backends/memcached/hash';
import { KetamaRing, type RingServer } from '../../src/backends/memcached/ketama';
import { PlacementCache } from '../../src/backends/memcached/placement-cache';

const HOT_KEYS = 10_000;
const DISTINCT_KEYS = 1_000_000;
const SERVERS = 3;
/** Length of the precomputed random order the hot keys are drawn in. */
const HOT_DRAWS = 1 << 20;

/** Keys packed in one buffer, visited in the order `order` (indices into off/len). */
interface Keys {
  buf: Buffer;
  off: Int32Array;
  len: Int32Array;
  order: Int32Array;
}

function pack(keys: string[], order: Int32Array): Keys {
  const bufs = keys.map((k) => Buffer.from(k));
  const off = new Int32Array(keys.length);
  const len = new Int32Array(keys.length);
  let p = 0;
  bufs.forEach((b, i) => {
    off[i] = p;
    len[i] = b.length;
    p += b.length;
  });
  return { buf: Buffer.concat(bufs), off, len, order };
}

function servers(n: number): RingServer[] {
  return Array.from({ length: n }, (_, i) => ({ host: `10.0.0.${i + 1}`, port: 11211, weight: 1 }));
}

/** `lookups` lookups cycling over `keys`, through `place`. */
function run(place: { lookup(b: Uint8Array, o: number, l: number): number }, keys: Keys, lookups: number): number {
  const { buf, off, len, order } = keys;
  const n = order.length;
  let acc = 0;
  for (let i = 0, j = 0; i < lookups; i++, j = j + 1 === n ? 0 : j + 1) {
    const k = order[j];
    acc += place.lookup(buf, off[k], len[k]);
  }
  return acc;
}

function main(): void {
  let seed = 12345;
  const draws = new Int32Array(HOT_DRAWS);
  for (let i = 0; i < HOT_DRAWS; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    draws[i] = Math.floor((seed / 4294967296) * HOT_KEYS);
  }
  const hot = pack(
    Array.from({ length: HOT_KEYS }, (_, i) => `k${100 + (i % 100)}:${1000 + i}`),
    draws,
  );
  const distinct = pack(
    Array.from({ length: DISTINCT_KEYS }, (_, i) => `k${100 + (i % 100)}:${1_000_000 + i}`),
    Int32Array.from({ length: DISTINCT_KEYS }, (_, i) => i),
  );
  const rows: MicroRow[] = [];
  for (const hash of ['md5', 'fnv1a_64'] as HashName[]) {
    const ring = new KetamaRing(servers(SERVERS), hash);
    rows.push(measure(`${hash}: ring lookup, ${HOT_KEYS} hot keys`, (n) => run(ring, hot, n)));
    const hotCache = new PlacementCache(ring);
    run(hotCache, hot, HOT_DRAWS); // fill
    hotCache.hits = hotCache.misses = 0;
    const row = measure(`${hash}: cached lookup, ${HOT_KEYS} hot keys`, (n) => run(hotCache, hot, n));
    row.note = `${hotCache.slots} slots, hit rate ${(hotCache.hits / (hotCache.hits + hotCache.misses)).toFixed(3)}`;
    rows.push(row);
    // Distinct keys: 1M of them cycle through the cache's slots far too often for any to survive a lap,
    // so every lookup misses.
    rows.push(measure(`${hash}: ring lookup, distinct keys`, (n) => run(ring, distinct, n)));
    const missCache = new PlacementCache(ring);
    rows.push(measure(`${hash}: cached lookup, distinct keys (all misses)`, (n) => run(missCache, distinct, n)));
  }
  print('placement-cache', rows, { servers: SERVERS, hotKeys: HOT_KEYS, distinctKeys: DISTINCT_KEYS });
}

main();
