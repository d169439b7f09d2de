/**
 * The ketama ring against a real twemproxy: memcached processes on loopback, a nutcracker in front of
 * them with one pool per hash, a few thousand keys stored through nutcracker, then every memcached asked
 * directly which keys it holds. `KetamaRing.lookup` must name the same server for every key.
 * Plus unit checks of the hashes against deliberately naive oracles (BigInt FNV, node:crypto MD5).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { LocalFleet } from '../src/fleet/local-fleet';
import { fnv1a32Signed, hashFunction, md5First32, type HashName } from '../src/backends/memcached/hash';
import { KetamaRing, ketamaPoints, type RingServer } from '../src/backends/memcached/ketama';
import { prng } from './helpers/mc-raw';
import { NutcrackerProcess } from './helpers/nutcracker-runner';

const HASHES: HashName[] = ['fnv1a_64', 'md5'];

// ---------------------------------------------------------------------------------------------------
// Oracles, written the slow and obvious way

/** twemproxy's hash_fnv1a_64 transcribed literally: `(uint32_t)key[x]` with a signed char. */
function naiveFnv(bytes: Uint8Array): number {
  let hash = BigInt.asUintN(32, 0xcbf29ce484222325n);
  const prime = BigInt.asUintN(32, 0x100000001b3n);
  for (const byte of bytes) {
    const signedChar = byte >= 128 ? byte - 256 : byte;
    hash ^= BigInt.asUintN(32, BigInt(signedChar));
    hash = BigInt.asUintN(32, hash * prime);
  }
  return Number(hash);
}

function cryptoMd5First32(bytes: Uint8Array): number {
  return createHash('md5').update(bytes).digest().readUInt32LE(0);
}

/** Bytes memcached's and twemproxy's text parsers accept in a key: no controls, no space, no DEL. */
function keyByte(rnd: () => number, high: boolean): number {
  return high ? 0x80 + Math.floor(rnd() * 128) : 0x21 + Math.floor(rnd() * 94);
}

function testKeys(seed: number): Buffer[] {
  const rnd = prng(seed);
  const keys = new Map<string, Buffer>();
  const add = (b: Buffer): void => {
    keys.set(b.toString('latin1'), b);
  };
  for (let i = 0; i < 300; i++) add(Buffer.from(`sd:${i}`));
  for (let i = 0; i < 1000; i++) {
    const len = 1 + Math.floor(rnd() * 40);
    add(Buffer.from(Array.from({ length: len }, () => keyByte(rnd, false))));
  }
  for (let i = 0; i < 300; i++) {
    const len = 200 + Math.floor(rnd() * 51); // up to memcached's 250
    add(Buffer.from(Array.from({ length: len }, () => keyByte(rnd, rnd() < 0.3))));
  }
  for (let i = 0; i < 600; i++) {
    const len = 1 + Math.floor(rnd() * 60);
    const b = Buffer.from(Array.from({ length: len }, () => keyByte(rnd, rnd() < 0.5)));
    b[Math.floor(rnd() * len)] = keyByte(rnd, true);
    add(b);
  }
  for (let c = 0x80; c <= 0xff; c++) add(Buffer.from([0x6b, c])); // "k" + one high byte
  return [...keys.values()];
}

// ---------------------------------------------------------------------------------------------------
// Raw memcached text protocol over one socket

/**
 * Writes `payload` on a new connection and collects the answer until `done` returns a result, then
 * closes. `done` sees everything received so far and returns undefined while it is incomplete.
 */
function exchange<T>(port: number, payload: Buffer, done: (acc: Buffer) => T | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => fail(new Error(`no complete answer from port ${port} in 10 s`)), 10_000);
    const fail = (e: Error): void => {
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error(`port ${port} closed the connection early`)));
    sock.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      let result: T | undefined;
      try {
        result = done(Buffer.concat(chunks, size));
      } catch (e) {
        fail(e as Error);
        return;
      }
      if (result !== undefined) {
        clearTimeout(timer);
        sock.removeAllListeners('close');
        sock.destroy();
        resolve(result);
      }
    });
    sock.write(payload);
  });
}

const CRLF = Buffer.from('\r\n');

/** Expects `n` lines, each `STORED`. */
function storedReplies(n: number): (acc: Buffer) => true | undefined {
  return (acc) => {
    let lines = 0;
    let pos = 0;
    for (;;) {
      const eol = acc.indexOf(CRLF, pos);
      if (eol < 0) break;
      const line = acc.toString('latin1', pos, eol);
      if (line !== 'STORED') throw new Error(`reply ${lines} to a set: ${JSON.stringify(line)}`);
      lines++;
      pos = eol + 2;
    }
    return lines === n ? true : undefined;
  };
}

/** Parses `n` answers to single-key `get`s: the value as a string, or null for a miss. */
function getReplies(n: number): (acc: Buffer) => (string | null)[] | undefined {
  return (acc) => {
    const out: (string | null)[] = [];
    let pos = 0;
    while (out.length < n) {
      const eol = acc.indexOf(CRLF, pos);
      if (eol < 0) return undefined;
      const line = acc.toString('latin1', pos, eol);
      if (line === 'END') {
        out.push(null);
        pos = eol + 2;
        continue;
      }
      if (!line.startsWith('VALUE ')) throw new Error(`unexpected reply to a get: ${JSON.stringify(line)}`);
      const bytes = Number(line.slice(line.lastIndexOf(' ') + 1));
      const dataEnd = eol + 2 + bytes;
      if (acc.length < dataEnd + 2 + 5) return undefined;
      if (acc.toString('latin1', dataEnd, dataEnd + 7) !== '\r\nEND\r\n') throw new Error('malformed VALUE block');
      out.push(acc.toString('latin1', eol + 2, dataEnd));
      pos = dataEnd + 7;
    }
    return out;
  };
}

function setPayload(keys: Buffer[], value: (i: number) => string): Buffer {
  const parts: Buffer[] = [];
  keys.forEach((k, i) => {
    const v = value(i);
    parts.push(Buffer.from('set '), k, Buffer.from(` 0 0 ${Buffer.byteLength(v)}\r\n${v}\r\n`));
  });
  return Buffer.concat(parts);
}

function getPayload(keys: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const k of keys) parts.push(Buffer.from('get '), k, CRLF);
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------------
// Against a real nutcracker

/** memcached processes, and a nutcracker in front of them with one pool per hash. */
class Rig {
  servers: RingServer[] = [];
  private fleet: LocalFleet | undefined;
  private nut: NutcrackerProcess | undefined;

  async start(weights: number[], names: (string | undefined)[] = []): Promise<void> {
    this.fleet = await LocalFleet.start({ count: weights.length, memoryMb: 16 });
    this.servers = this.fleet.members.map((m, i) => {
      const s: RingServer = { host: '127.0.0.1', port: m.port, weight: weights[i] };
      if (names[i] !== undefined) s.name = names[i];
      return s;
    });
    this.nut = await NutcrackerProcess.start(
      HASHES.map((hash) => ({ name: `pool_${hash}`, hash, servers: this.servers })),
    );
  }

  async stop(): Promise<void> {
    await this.nut?.stop();
    await this.fleet?.stop();
  }

  /**
   * Stores the keys through the nutcracker pool using `hash`, then asks every memcached directly:
   * returns the index of the server holding each key (each must be on exactly one).
   */
  async holders(hash: HashName, keys: Buffer[]): Promise<Int32Array> {
    const pool = this.nut!.pools.find((p) => p.hash === hash)!;
    // the value names the hash, so copies left by the other pool's run are not mistaken for ours
    const tag = (i: number): string => `${hash}/${i}`;
    await exchange(pool.port, setPayload(keys, tag), storedReplies(keys.length));
    const holder = new Int32Array(keys.length).fill(-1);
    const request = getPayload(keys);
    const answers = await Promise.all(
      this.fleet!.members.map((m) => exchange(m.port, request, getReplies(keys.length))),
    );
    answers.forEach((values, server) => {
      values.forEach((v, i) => {
        if (v !== tag(i)) return;
        assert.equal(holder[i], -1, `key ${keys[i].toString('hex')} is on servers ${holder[i]} and ${server}`);
        holder[i] = server;
      });
    });
    const lost = keys.filter((_, i) => holder[i] === -1).length;
    assert.equal(lost, 0, `${lost} keys stored through nutcracker were found on no server`);
    return holder;
  }
}

function assertSamePlacement(ring: KetamaRing, keys: Buffer[], holder: Int32Array): void {
  const wrong: string[] = [];
  keys.forEach((k, i) => {
    const ours = ring.lookup(k, 0, k.length);
    if (ours !== holder[i]) wrong.push(`${k.toString('hex')}: nutcracker ${holder[i]}, ours ${ours}`);
  });
  assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} of ${keys.length} keys disagree`);
}

interface Scenario {
  title: string;
  weights: number[];
  names?: (string | undefined)[];
  /** points twemproxy gives each server, when the scenario is about them */
  points?: number[];
}

const SCENARIOS: Scenario[] = [
  { title: '3 equal servers', weights: [1, 1, 1] },
  // names are hashed instead of host:port; twemproxy sorts servers by name (length first) internally
  {
    title: '4 servers, unequal weights, two named',
    weights: [1, 2, 3, 5],
    names: [undefined, 'cache-b', undefined, 'z'],
  },
  // float32: 28, 92, 160, 188, 320 points where exact arithmetic gives 32, 96, 160, 192, 320
  {
    title: '5 servers whose point counts only float32 explains',
    weights: [1, 3, 5, 6, 10],
    points: [28, 92, 160, 188, 320],
  },
];

const KEYS = testKeys(20240611);

for (const sc of SCENARIOS) {
  describe(`ketama vs nutcracker: ${sc.title}`, () => {
    const rig = new Rig();
    before(() => rig.start(sc.weights, sc.names));
    after(() => rig.stop());

    if (sc.points) {
      it('gives each server the float32 point count', () => {
        assert.deepEqual(
          new KetamaRing(rig.servers, 'md5').spread().map((s) => s.points),
          sc.points,
        );
      });
    }

    for (const hash of HASHES) {
      it(`places every key where nutcracker puts it (hash: ${hash})`, async () => {
        const holder = await rig.holders(hash, KEYS);
        // a ring that sends everything to one server would make the comparison meaningless
        const held = rig.servers.map((_, s) => holder.filter((h) => h === s).length);
        for (let s = 0; s < held.length; s++) assert.ok(held[s] > 0, `server ${s} holds no key: ${held.join('/')}`);
        assertSamePlacement(new KetamaRing(rig.servers, hash), KEYS, holder);
      });
    }
  });
}

/** The 40 md5 digests' points of a server with 160 points ("<name>-0" .. "<name>-39"). */
function pointsOf(name: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < 40; i++) {
    const d = createHash('md5').update(`${name}-${i}`).digest();
    for (let x = 0; x < 4; x++) out.push(d.readUInt32LE(4 * x));
  }
  return out;
}

/**
 * Two server names with one ring point in common (a birthday search over 32-bit points, a few thousand
 * md5s). `short` is shorter but bytewise greater than `long`, so only twemproxy's rule (servers sorted
 * by name length first, then bytes; stable sort of the continuum) decides the tie for it.
 */
function tiedNames(): { short: string; long: string; value: number } {
  const shortOf = new Map<number, string>();
  for (let k = 0; k < 600; k++) for (const v of pointsOf(`z${k}`)) shortOf.set(v, `z${k}`);
  for (let k = 0; ; k++) {
    const long = `aaaaaaaa${k}`;
    for (const v of pointsOf(long)) {
      const short = shortOf.get(v);
      if (short !== undefined) return { short, long, value: v };
    }
  }
}

describe('ketama vs nutcracker: two servers sharing a ring point', () => {
  const rig = new Rig();
  const tie = tiedNames();
  // config order puts the tie's winner second, so neither "first in config" nor plain memcmp order passes
  before(() => rig.start([1, 1], [tie.long, tie.short]));
  after(() => rig.stop());

  for (const hash of HASHES) {
    it(`gives keys hashing onto the tied point to the shorter name (hash: ${hash})`, async () => {
      const all = [...pointsOf(tie.short), ...pointsOf(tie.long)].sort((a, b) => a - b);
      const below = all.filter((v) => v < tie.value);
      const prev = below.length ? below[below.length - 1] : -1;
      // keys whose hash lands in (prev, tie.value]: in the tied point's arc (the point is not the lowest)
      assert.ok(prev >= 0, 'the tied point is the lowest on the ring; pick other names');
      const h = hashFunction(hash);
      const keys: Buffer[] = [];
      for (let n = 0; keys.length < 20; n++) {
        const k = Buffer.from(`tie:${n}`);
        const v = h(k, 0, k.length);
        if (v > prev && v <= tie.value) keys.push(k);
      }
      const holder = await rig.holders(hash, keys);
      assert.deepEqual(
        [...holder],
        keys.map(() => 1),
        'nutcracker gave the tied arc to server 1',
      );
      assertSamePlacement(new KetamaRing(rig.servers, hash), keys, holder);
    });
  }
});

// ---------------------------------------------------------------------------------------------------
// Unit checks

describe('hashes', () => {
  it('fnv1a32Signed matches a literal transcription of twemproxy hash_fnv1a_64', () => {
    const fixed = ['', 'a', 'foobar', 'sd:0', 'sd:299', 'key with spaces is fine for a hash'].map((s) =>
      Buffer.from(s),
    );
    fixed.push(Buffer.from([0x80]), Buffer.from([0xff, 0x00, 0x7f]), Buffer.from('caf\u00e9'), Buffer.alloc(250, 0xaa));
    const rnd = prng(7);
    for (let i = 0; i < 2000; i++)
      fixed.push(Buffer.from(Array.from({ length: Math.floor(rnd() * 300) }, () => Math.floor(rnd() * 256))));
    for (const b of fixed) assert.equal(fnv1a32Signed(b, 0, b.length), naiveFnv(b), b.toString('hex'));
    // the offset basis alone, and sign extension making 0x80 differ from an unsigned-char FNV
    assert.equal(fnv1a32Signed(Buffer.alloc(0), 0, 0), 0x84222325);
    assert.equal(fnv1a32Signed(Buffer.from([0x80]), 0, 1), Math.imul(0x84222325 ^ 0xffffff80, 0x1b3) >>> 0);
    assert.notEqual(fnv1a32Signed(Buffer.from([0x80]), 0, 1), Math.imul(0x84222325 ^ 0x80, 0x1b3) >>> 0);
  });

  it('md5First32 equals the first 4 bytes of node:crypto md5, little-endian, at every padding boundary', () => {
    const big = randomBytes(4096);
    for (let len = 0; len <= 300; len++) {
      for (const off of [0, 5]) {
        assert.equal(
          md5First32(big, off, len),
          cryptoMd5First32(big.subarray(off, off + len)),
          `len ${len} off ${off}`,
        );
      }
    }
    assert.equal(md5First32(big, 3, 4000), cryptoMd5First32(big.subarray(3, 4003)));
    // RFC 1321 vector: md5("abc") = 900150983cd24fb0...
    assert.equal(md5First32(Buffer.from('abc'), 0, 3), 0x98500190);
  });

  it('hashFunction names both', () => {
    assert.equal(hashFunction('fnv1a_64'), fnv1a32Signed);
    assert.equal(hashFunction('md5'), md5First32);
    assert.throws(() => hashFunction('crc32' as HashName), RangeError);
  });
});

describe('KetamaRing', () => {
  const three: RingServer[] = [1, 2, 3].map((i) => ({ host: '10.0.0.' + i, port: 11311, weight: 1 }));

  it('lookup at an offset equals lookup of the copied key', () => {
    const rnd = prng(11);
    for (const hash of HASHES) {
      const ring = new KetamaRing(three, hash);
      for (const key of KEYS.slice(0, 1500)) {
        const off = 1 + Math.floor(rnd() * 40);
        const buf = Buffer.alloc(off + key.length + 17, 0x5a);
        key.copy(buf, off);
        assert.equal(ring.lookup(buf, off, key.length), ring.lookupKey(Buffer.from(key)));
      }
      assert.equal(ring.lookupKey('sd:1'), ring.lookup(Buffer.from('xxsd:1yy'), 2, 4));
    }
  });

  it('spread() shares sum to 1 and point counts follow weights', () => {
    for (const hash of HASHES) {
      for (const servers of [three, three.map((s, i) => ({ ...s, weight: i + 1 }))]) {
        const spread = new KetamaRing(servers, hash).spread();
        const sum = spread.reduce((a, s) => a + s.share, 0);
        assert.ok(Math.abs(sum - 1) < 1e-12, `shares sum to ${sum}`);
        for (const s of spread) assert.ok(s.share > 0 && s.share < 1);
      }
    }
    assert.deepEqual(
      new KetamaRing(three, 'md5').spread().map((s) => s.points),
      [160, 160, 160],
    );
    assert.deepEqual(new KetamaRing([three[0]], 'md5').spread(), [{ server: '10.0.0.1:11311', share: 1, points: 160 }]);
  });

  it('computes points in float32 like twemproxy', () => {
    assert.equal(ketamaPoints(1, 3, 3), 160);
    assert.equal(ketamaPoints(1, 25, 25), 156); // 39.999996 in float32
    assert.deepEqual(
      [1, 3, 5, 6, 10].map((w) => ketamaPoints(w, 25, 5)),
      [28, 92, 160, 188, 320],
    );
  });

  it('hashes host alone for port 11211, host:port otherwise, name when given', () => {
    const a = new KetamaRing(
      [
        { host: '10.0.0.1', port: 11211, weight: 1 },
        { host: '10.0.0.2', port: 11211, weight: 1 },
      ],
      'md5',
    );
    const b = new KetamaRing(
      [
        { host: 'x', port: 1, weight: 1, name: '10.0.0.1' },
        { host: 'y', port: 2, weight: 1, name: '10.0.0.2' },
      ],
      'md5',
    );
    const c = new KetamaRing(
      [
        { host: '10.0.0.1', port: 11212, weight: 1 },
        { host: 'z', port: 3, weight: 1, name: '10.0.0.2:11212' },
      ],
      'md5',
    );
    const d = new KetamaRing(
      [
        { host: 'w', port: 4, weight: 1, name: '10.0.0.1:11212' },
        { host: '10.0.0.2', port: 11212, weight: 1 },
      ],
      'md5',
    );
    let differ = 0;
    for (const k of KEYS) {
      assert.equal(a.lookupKey(k), b.lookupKey(k));
      assert.equal(c.lookupKey(k), d.lookupKey(k));
      if (a.lookupKey(k) !== c.lookupKey(k)) differ++;
    }
    assert.ok(differ > 0);
  });

  it('a single server takes every key', () => {
    const ring = new KetamaRing([three[0]], 'fnv1a_64');
    for (const k of KEYS.slice(0, 100)) assert.equal(ring.lookupKey(k), 0);
  });

  it('refuses what twemproxy refuses or cannot hash', () => {
    assert.throws(() => new KetamaRing([], 'md5'), RangeError);
    assert.throws(() => new KetamaRing([{ ...three[0], weight: 0 }], 'md5'), RangeError);
    assert.throws(() => new KetamaRing([{ ...three[0], weight: 1.5 }], 'md5'), RangeError);
    // same ring name twice: 10.0.0.1 on 11211 and a server named 10.0.0.1
    assert.throws(
      () =>
        new KetamaRing(
          [
            { host: '10.0.0.1', port: 11211, weight: 1 },
            { host: 'b', port: 1, weight: 1, name: '10.0.0.1' },
          ],
          'md5',
        ),
      /same ring name/,
    );
    // "<name>-<i>" must fit twemproxy's 86-byte buffer
    assert.throws(() => new KetamaRing([{ host: 'h', port: 1, weight: 1, name: 'n'.repeat(83) }], 'md5'), /too long/);
    assert.doesNotThrow(() => new KetamaRing([{ host: 'h', port: 1, weight: 1, name: 'n'.repeat(82) }], 'md5'));
    assert.throws(() => new KetamaRing([{ host: 'h', port: 1, weight: 1, name: 'a b' }], 'md5'), RangeError);
  });
});
