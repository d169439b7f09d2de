/**
 * Micro-benchmark of the ketama ring: 1M lookups of pre-made keys (packed in one Buffer, read in place at
 * an offset as the request path does) over 3 and 30 servers, for both hashes. Also the hash alone, to
 * show what the ring search adds. Prints JSON to stdout; no assertions.
 *
 *   node dist/bench/micro/ketama.bench.js
 */
import { fnv1a32Signed, md5First32, type HashName } from '../../src/backends/memcached/hash';
import { KetamaRing, type RingServer } from '../../src/backends/memcached/ketama';

const LOOKUPS = 1_000_000;
const KEY_COUNT = 10_000;
const ROUNDS = 5;

/** Keys like a cache sees: "user:123:profile"-style and random ones, 8 to 64 bytes. */
function makeKeys(): { buf: Buffer; off: Int32Array; len: Int32Array } {
  let seed = 12345;
  const rnd = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
  const keys: Buffer[] = [];
  for (let i = 0; i < KEY_COUNT; i++) {
    if (i % 2 === 0) keys.push(Buffer.from(`user:${i * 7919}:profile`));
    else
      keys.push(Buffer.from(Array.from({ length: 8 + Math.floor(rnd() * 57) }, () => 0x21 + Math.floor(rnd() * 94))));
  }
  const off = new Int32Array(KEY_COUNT);
  const len = new Int32Array(KEY_COUNT);
  let p = 0;
  keys.forEach((k, i) => {
    off[i] = p;
    len[i] = k.length;
    p += k.length;
  });
  return { buf: Buffer.concat(keys), off, len };
}

function servers(n: number): RingServer[] {
  return Array.from({ length: n }, (_, i) => ({ host: `10.0.${i >> 8}.${i & 255}`, port: 11211, weight: 1 }));
}

/** Best of ROUNDS, in operations per second; the checksum keeps the work from being optimised away. */
function time(fn: () => number): { opsPerSec: number; checksum: number } {
  let best = Infinity;
  let checksum = 0;
  fn(); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    checksum = fn();
    const ns = Number(process.hrtime.bigint() - t0);
    if (ns < best) best = ns;
  }
  return { opsPerSec: Math.round(LOOKUPS / (best / 1e9)), checksum };
}

function main(): void {
  const { buf, off, len } = makeKeys();
  const results: Record<string, unknown>[] = [];
  let totalLen = 0;
  for (let i = 0; i < KEY_COUNT; i++) totalLen += len[i];

  for (const hash of ['fnv1a_64', 'md5'] as HashName[]) {
    const h = hash === 'md5' ? md5First32 : fnv1a32Signed;
    const hashOnly = time(() => {
      let acc = 0;
      for (let i = 0, k = 0; i < LOOKUPS; i++, k = k + 1 === KEY_COUNT ? 0 : k + 1) acc ^= h(buf, off[k], len[k]);
      return acc >>> 0;
    });
    results.push({ what: 'hash only', hash, opsPerSec: hashOnly.opsPerSec });
    for (const n of [3, 30]) {
      const ring = new KetamaRing(servers(n), hash);
      const r = time(() => {
        let acc = 0;
        for (let i = 0, k = 0; i < LOOKUPS; i++, k = k + 1 === KEY_COUNT ? 0 : k + 1)
          acc += ring.lookup(buf, off[k], len[k]);
        return acc;
      });
      const points = ring.spread().reduce((a, s) => a + s.points, 0);
      results.push({
        what: 'lookup',
        hash,
        servers: n,
        points,
        opsPerSec: r.opsPerSec,
        nsPerLookup: +(1e9 / r.opsPerSec).toFixed(1),
      });
    }
  }
  process.stdout.write(
    JSON.stringify(
      {
        bench: 'ketama',
        node: process.version,
        lookups: LOOKUPS,
        distinctKeys: KEY_COUNT,
        meanKeyBytes: +(totalLen / KEY_COUNT).toFixed(1),
        bestOfRounds: ROUNDS,
        results,
      },
      null,
      2,
    ) + '\n',
  );
}

main();
