/**
 * The ketama consistent-hash ring, placing every key on the same server as twemproxy 0.5.0 with
 * `distribution: ketama` and `auto_eject_hosts: false` (`src/hashkit/nc_ketama.c`, `src/nc_conf.c`,
 * `src/nc_server.c`), proven against a real nutcracker in test/ketama.test.ts.
 *
 * How twemproxy builds it:
 * - A server's ring name is its configured `name`, else `host` when the port is 11211 (libmemcached
 *   compatibility), else `host:port`. Renaming a host moves its keys unless it has a `name`.
 * - Points per server: `floorf(pct * 160 / 4 * n + 1e-10) * 4`, evaluated in float32 (`pct` = weight /
 *   total weight, `n` = number of servers). Float32 rounding matters and the 1e-10 does not save it:
 *   see `ketamaPoints`.
 * - For i in 0 .. points/4 - 1: md5 of "<name>-<i>", its 16 bytes read as four little-endian uint32
 *   points.
 * - All points sorted; a key belongs to the first point >= hash(key), wrapping past the last point to
 *   the first.
 * - Ties between equal points of different servers: twemproxy sorts its servers by name (length first,
 *   then bytes) while validating the config, appends points in that order and sorts the continuum with
 *   glibc's qsort, a stable merge sort: the server whose name sorts first wins. We do the same.
 * - With a single server it skips hashing; an empty key hashes to 0.
 *
 * What we leave out: `hash_tag`. `auto_eject_hosts` is not here: with `failure.mode: eject` the backend
 * (index.ts, ejection.ts) builds another ring over the servers still in, as twemproxy does.
 */
import { createHash } from 'node:crypto';
import { fnv1a32Signed, md5First32, type HashName } from './hash';

export interface RingServer {
  host: string;
  port: number;
  weight: number;
  /** twemproxy's `name`: when set it replaces host[:port] on the ring. */
  name?: string;
}

const POINTS_PER_SERVER = 160;
const POINTS_PER_HASH = 4;
/** twemproxy formats "<name>-<i>" into a char[86]: longer strings would be hashed with stack garbage. */
const MAX_POINT_NAME_BYTES = 85;
const KETAMA_DEFAULT_PORT = 11211;
const TWO_POW_32 = 4294967296;

/** The string twemproxy hashes to place a server's points. */
export function ketamaName(s: RingServer): string {
  if (s.name !== undefined) return s.name;
  return s.port === KETAMA_DEFAULT_PORT ? s.host : `${s.host}:${s.port}`;
}

/**
 * Points a server gets, exactly as twemproxy's float32 arithmetic gives them:
 * `(uint32_t)(floorf((float)(pct * 160 / 4 * (float)n + 0.0000000001)) * 4)` with
 * `pct = (float)weight / (float)total`. Every intermediate is rounded to float32 (SSE, FLT_EVAL_METHOD 0);
 * only the `+ 1e-10` is done in double, too small to change a float32 near 40. Examples: 25 (or 47, 50,
 * 55, 61) servers of equal weight get 156 points each, not 160; five servers of weights 1, 3, 5, 6, 10
 * get 28, 92, 160, 188, 320 points where exact arithmetic says 32, 96, 160, 192, 320.
 */
export function ketamaPoints(weight: number, totalWeight: number, nServers: number): number {
  const f = Math.fround;
  const pct = f(f(weight) / f(totalWeight));
  const perServer = f(f(f(pct * POINTS_PER_SERVER) / 4) * f(nServers));
  return Math.floor(f(perServer + 0.0000000001)) * 4;
}

/** twemproxy's `string_compare`: shorter first, then bytes as unsigned chars. */
function compareNames(a: Buffer, b: Buffer): number {
  if (a.length !== b.length) return a.length - b.length;
  return Buffer.compare(a, b);
}

export class KetamaRing {
  /** Sorted ring points. */
  private readonly points: Uint32Array;
  /** `owners[i]`: index into the constructor's servers array of the server owning `points[i]`. */
  private readonly owners: Int32Array;
  /**
   * Search accelerator: `starts[b]` is the first point >= b << shift, so the point a hash h needs lies in
   * `[starts[h >>> shift], starts[(h >>> shift) + 1]]`: the binary search runs over about one point
   * instead of ~log2(points) unpredictable branches. At least two buckets per point.
   */
  private readonly starts: Int32Array;
  private readonly shift: number;
  private readonly useMd5: boolean;
  private readonly single: boolean;
  private readonly servers: readonly RingServer[];
  private readonly pointsPerServer: number[];

  constructor(servers: RingServer[], hash: HashName) {
    if (hash !== 'fnv1a_64' && hash !== 'md5') {
      throw new RangeError(`unknown hash ${JSON.stringify(hash)} (expected "fnv1a_64" or "md5")`);
    }
    const n = servers.length;
    if (n === 0) throw new RangeError('a ketama ring needs at least one server');
    this.useMd5 = hash === 'md5';
    this.single = n === 1;
    this.servers = servers.map((s) => ({ ...s }));

    let total = 0;
    const names: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const s = servers[i];
      if (!Number.isInteger(s.weight) || s.weight < 1) {
        throw new RangeError(`server ${i} (${s.host}:${s.port}): weight must be a positive integer`);
      }
      if (s.name === undefined && (!Number.isInteger(s.port) || s.port < 0 || s.port > 65535)) {
        throw new RangeError(`server ${i} (${s.host}:${s.port}): port must be an integer from 0 to 65535`);
      }
      const name = ketamaName(s);
      if (name === '' || name.includes(' ')) {
        // twemproxy's "host:port:weight [name]" line takes the name after the last space
        throw new RangeError(`server ${i}: ring name ${JSON.stringify(name)} must be non-empty and without spaces`);
      }
      total += s.weight;
      names.push(Buffer.from(name, 'utf8'));
    }
    if (total > 0xffffffff) throw new RangeError('total server weight must fit in 32 bits');

    // twemproxy's server order: sorted by name while validating the config (duplicates are refused).
    const order = names.map((_, i) => i).sort((a, b) => compareNames(names[a], names[b]) || a - b);
    for (let k = 1; k < n; k++) {
      if (compareNames(names[order[k - 1]], names[order[k]]) === 0) {
        throw new RangeError(`servers ${order[k - 1]} and ${order[k]} have the same ring name "${names[order[k]]}"`);
      }
    }

    this.pointsPerServer = servers.map((s) => ketamaPoints(s.weight, total, n));
    let count = 0;
    for (const p of this.pointsPerServer) count += p;

    // Build the continuum in twemproxy's order, then sort it stably by value.
    const values = new Uint32Array(count);
    const ownerOf = new Int32Array(count);
    let c = 0;
    for (const si of order) {
      const prefix = names[si].toString('utf8');
      const hashes = this.pointsPerServer[si] / POINTS_PER_HASH;
      for (let i = 0; i < hashes; i++) {
        const label = Buffer.from(`${prefix}-${i}`, 'utf8');
        if (label.length > MAX_POINT_NAME_BYTES) {
          throw new RangeError(
            `server ${si}: ring name "${prefix}" is too long for twemproxy ` +
              `("${prefix}-${i}" exceeds ${MAX_POINT_NAME_BYTES} bytes)`,
          );
        }
        const d = createHash('md5').update(label).digest();
        for (let x = 0; x < POINTS_PER_HASH; x++) {
          values[c] = d.readUInt32LE(x * 4);
          ownerOf[c] = si;
          c++;
        }
      }
    }
    const idx = Array.from({ length: count }, (_, i) => i);
    idx.sort((a, b) => values[a] - values[b] || a - b);
    this.points = new Uint32Array(count);
    this.owners = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      this.points[i] = values[idx[i]];
      this.owners[i] = ownerOf[idx[i]];
    }

    let bits = 10;
    while (bits < 16 && 1 << bits < 2 * count) bits++;
    this.shift = 32 - bits;
    this.starts = new Int32Array((1 << bits) + 1);
    for (let b = 0, i = 0; b <= 1 << bits; b++) {
      const floor = b * 2 ** this.shift;
      while (i < count && this.points[i] < floor) i++;
      this.starts[b] = i;
    }
  }

  /** Index into the servers array that owns the key bytes `buf[off, off+len)`. Allocates nothing. */
  lookup(buf: Uint8Array, off: number, len: number): number {
    if (this.single) return 0;
    return this.owners[this.pointFor(this.hashOf(buf, off, len))];
  }

  /** The key's hash on this ring (0 for an empty key, as twemproxy). */
  private hashOf(buf: Uint8Array, off: number, len: number): number {
    if (len === 0) return 0;
    return this.useMd5 ? md5First32(buf, off, len) : fnv1a32Signed(buf, off, len);
  }

  /** The index in `points` of the first point >= h (twemproxy's ketama_dispatch), wrapping to the first. */
  private pointFor(h: number): number {
    const points = this.points;
    const bucket = h >>> this.shift;
    let lo = this.starts[bucket];
    let hi = this.starts[bucket + 1];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === points.length ? 0 : lo;
  }

  /**
   * Why a key lands where it does, for tools (the admin console): the key's hash, the ring point chosen
   * (the first >= the hash, wrapping) and its server. With one server twemproxy does not hash at all: the
   * hash is still shown, and the server is the only one. Allocates.
   */
  locate(key: Uint8Array): { hash: number; pointIndex: number; point: number; server: number; name: string } {
    const hash = this.hashOf(key, 0, key.length);
    const pointIndex = this.pointFor(hash);
    const server = this.single ? 0 : this.owners[pointIndex];
    return { hash, pointIndex, point: this.points[pointIndex], server, name: ketamaName(this.servers[server]) };
  }

  /** How many points the ring holds. */
  get size(): number {
    return this.points.length;
  }

  /** Convenience for tests and tools: a string key is taken as its UTF-8 bytes. Allocates. */
  lookupKey(key: string | Uint8Array): number {
    const buf = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
    return this.lookup(buf, 0, buf.length);
  }

  /**
   * Each server's share of the 2^32 hash space (the arc ending at each of its points) and its point
   * count, in the servers array's order. Uniformly hashed keys spread in these proportions; twemproxy's
   * fnv1a_64 on short sequential keys does not hash uniformly, so real spreads can be far worse.
   */
  spread(): { server: string; share: number; points: number }[] {
    const arcs = new Float64Array(this.servers.length);
    const points = this.points;
    const m = points.length;
    for (let i = 0; i < m; i++) {
      const prev = i === 0 ? points[m - 1] - TWO_POW_32 : points[i - 1];
      arcs[this.owners[i]] += points[i] - prev;
    }
    return this.servers.map((s, i) => ({
      server: s.name === undefined ? `${s.host}:${s.port}` : `${s.host}:${s.port} ${s.name}`,
      share: this.single ? 1 : arcs[i] / TWO_POW_32,
      points: this.pointsPerServer[i],
    }));
  }
}
