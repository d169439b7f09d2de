import { describe, it } from 'node:test';
import { testConfig } from './helpers/harness';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pack, unpackMultiple } from 'msgpackr';
import { INCOMPLETE, MAX_DEPTH, MsgpackError, MsgpackReader, MpType, TOO_DEEP } from '../src/decode/msgpack-reader';
import { isValidKey } from '../src/core/key';
import { percentDecode } from '../src/decode/key';
import { BodyTooLarge, MsgpackItems, NdjsonLines } from '../src/decode/body-stream';
import { ItemFields, Op, RequestFields } from '../src/decode/request-fields';
import { RateLimitedLog } from '../src/core/log';
import { EntryWriter, Kind } from '../src/stream/entry-writer';
import { BUFFER_SIZE, BufferPool } from '../src/stream/buffer-pool';
import { mergeConfig, validateConfig, ConfigError } from '../src/config/schema';
import { uws } from '../src/uws';

const MAIN = join(__dirname, '..', 'src', 'main.js');

describe('msgpack reader', () => {
  it('reads every integer width and float the same as msgpackr wrote it', () => {
    const values = [
      0,
      1,
      127,
      128,
      255,
      256,
      65535,
      65536,
      2 ** 32 - 1,
      2 ** 32,
      2 ** 40,
      -1,
      -32,
      -33,
      -128,
      -129,
      -32768,
      -32769,
      -(2 ** 31),
      3.5,
    ];
    const r = new MsgpackReader();
    for (const v of values) {
      const b = pack(v);
      r.reset(b, 0, b.length);
      assert.equal(r.readNumber(), v, `value ${v}`);
      assert.equal(r.remaining, 0);
    }
  });

  it('finds strings and bins in place, skips nested values, and reports truncation at every cut', () => {
    const doc = pack({
      a: [1, 'two', Buffer.from([3]), { x: null, y: true }],
      key: 'k'.repeat(300),
      bin: Buffer.alloc(70000, 1),
    });
    const r = new MsgpackReader();
    r.reset(doc, 0, doc.length);
    r.skip();
    assert.equal(r.pos, doc.length);
    for (const cut of [1, 2, 5, 20, 300, doc.length - 1]) {
      r.reset(doc, 0, cut);
      assert.throws(
        () => r.skip(),
        (e) => e === INCOMPLETE,
        `cut at ${cut}`,
      );
    }
    r.reset(doc, 0, doc.length);
    const n = r.readMapHeader();
    assert.equal(n, 3);
    r.readBytes();
    r.skip();
    assert.ok(r.readBytes() && r.bytesEqual('key'));
    assert.ok(r.readBytes());
    assert.equal(r.len, 300);
    assert.equal(r.peekType(), MpType.Str);
  });

  it('hands out concatenated and array-wrapped items from a body split at every byte', () => {
    const items = [pack('a'), pack({ key: 'b', value: Buffer.from('vv') }), pack('c'.repeat(40))];
    for (const body of [Buffer.concat(items), pack(['a', { key: 'b', value: Buffer.from('vv') }, 'c'.repeat(40)])]) {
      for (let cut = 0; cut <= body.length; cut++) {
        const acc = new MsgpackItems(1 << 20);
        let count = 0;
        for (const part of [body.subarray(0, cut), body.subarray(cut)]) {
          acc.append(part);
          while (acc.next()) {
            acc.reader.skip();
            acc.consumed();
            count++;
          }
        }
        acc.finish();
        assert.equal(count, 3, `cut at ${cut}`);
      }
    }
  });
});

describe('msgpack nesting', () => {
  const nested = (depth: number): Buffer => {
    const b = Buffer.alloc(depth + 1, 0x91);
    b[depth] = 0xc0;
    return b;
  };

  it('skips values nested up to MAX_DEPTH and refuses deeper ones with its own error, not a stack overflow', () => {
    const r = new MsgpackReader();
    for (const depth of [0, 1, MAX_DEPTH]) {
      const b = nested(depth);
      r.reset(b, 0, b.length);
      r.skip();
      assert.equal(r.pos, b.length, `depth ${depth}`);
    }
    for (const depth of [MAX_DEPTH + 1, 200_000]) {
      const b = nested(depth);
      r.reset(b, 0, b.length);
      assert.throws(
        () => r.skip(),
        (e) => e === TOO_DEEP && e instanceof MsgpackError,
        `depth ${depth}`,
      );
    }
    // Maps nest too, and a wide shallow value is no problem: 100,000 siblings in one array.
    const deepMaps = Buffer.concat([
      ...Array.from({ length: MAX_DEPTH + 1 }, () => Buffer.from([0x81, 0xc0])),
      Buffer.from([0xc0]),
    ]);
    r.reset(deepMaps, 0, deepMaps.length);
    assert.throws(
      () => r.skip(),
      (e) => e === TOO_DEEP,
    );
    const wide = pack(Array.from({ length: 100_000 }, (_, k) => [k]));
    r.reset(wide, 0, wide.length);
    r.skip();
    assert.equal(r.pos, wide.length);
  });

  it("request fields turn deep nesting in an ignored field into the reader's error", () => {
    const doc = Buffer.concat([
      Buffer.from([0x83]),
      ...['id', 1, 'op', 'get', 'x'].map((v) => pack(v)),
      nested(100_000),
    ]);
    const r = new MsgpackReader().reset(doc, 0, doc.length);
    assert.throws(
      () => new RequestFields().read(r),
      (e) => e === TOO_DEEP,
    );
  });
});

describe('request fields', () => {
  const read = (v: unknown, f = new RequestFields({ maxTtlSeconds: 2592000, maxWaitMs: 50 })): RequestFields => {
    const b = pack(v);
    const r = new MsgpackReader().reset(b, 0, b.length);
    f.read(r);
    assert.equal(r.pos, b.length, 'the whole map is consumed');
    return f;
  };
  const f64 = (x: number): Buffer => {
    const b = Buffer.alloc(9);
    b[0] = 0xcb;
    b.writeDoubleBE(x, 1);
    return b;
  };
  const u64max = Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  /** A request map with one field given as raw msgpack bytes. */
  const withRaw = (name: string, raw: Buffer): RequestFields => {
    const b = Buffer.concat([Buffer.from([0x83]), pack('id'), pack(9), pack('op'), pack('set'), pack(name), raw]);
    const f = new RequestFields({ maxTtlSeconds: 2592000, maxWaitMs: 50 });
    const r = new MsgpackReader().reset(b, 0, b.length);
    f.read(r);
    assert.equal(r.pos, b.length);
    return f;
  };

  it('reads a valid request, key as str or bin, and integral floats', () => {
    const f = read({ id: 7, op: 'set', key: 'k', value: Buffer.from('v'), ttl: 60, flags: 4294967295, wait: 50 });
    assert.equal(f.error, null);
    assert.deepEqual([f.id, f.op, f.keyLen, f.valueLen, f.ttl, f.flags, f.wait], [7, Op.Set, 1, 1, 60, 4294967295, 50]);
    assert.equal(read({ id: 1, op: 'get', key: Buffer.from('kk') }).keyLen, 2);
    assert.equal(withRaw('ttl', f64(30)).ttl, 30);
    assert.equal(
      read({ id: 1, op: 'get', key: 'k', extra: { any: [1, 2] } }).error,
      null,
      'unknown fields are ignored',
    );
  });

  it('gives each bad field its own code, with the configured limit in the message, and never throws', () => {
    const cases: [string, Buffer, string, RegExp][] = [
      ['ttl', pack(-1), 'BAD_TTL', /from 0 to 2592000$/],
      ['ttl', pack(2592001), 'BAD_TTL', /from 0 to 2592000$/],
      ['ttl', pack(1.5), 'BAD_TTL', /2592000/],
      ['ttl', f64(NaN), 'BAD_TTL', /2592000/],
      ['ttl', f64(Infinity), 'BAD_TTL', /2592000/],
      ['ttl', u64max, 'BAD_TTL', /2592000/],
      ['ttl', pack(null), 'BAD_TTL', /2592000/],
      ['ttl', pack('60'), 'BAD_TTL', /2592000/],
      ['flags', pack(-1), 'BAD_FLAGS', /4294967295/],
      ['flags', pack(2 ** 32), 'BAD_FLAGS', /4294967295/],
      ['flags', pack(0.25), 'BAD_FLAGS', /4294967295/],
      ['wait', pack(51), 'BAD_WAIT', /from 0 to 50$/],
      ['wait', pack(-3), 'BAD_WAIT', /from 0 to 50$/],
      ['key', pack(12), 'BAD_KEY', /str or bin/],
      ['key', pack(['k']), 'BAD_KEY', /str or bin/],
      ['value', pack(12), 'BAD_VALUE', /bin or str/],
      ['value', pack(null), 'BAD_VALUE', /bin or str/],
      ['op', pack(1), 'UNKNOWN_OP', /string/],
    ];
    for (const [name, raw, code, msg] of cases) {
      const f = withRaw(name, raw);
      assert.equal(f.error, code, `${name} = ${raw.toString('hex')}`);
      assert.match(f.errorMessage, msg, `${name} = ${raw.toString('hex')}`);
      assert.equal(f.id, 9, 'the id is still known, so the answer carries it');
    }
    assert.equal(read({ id: 1, op: 'frob' }).error, 'UNKNOWN_OP');
  });

  it('an id that is not a uint32 is no id', () => {
    for (const id of [-1, 1.5, 2 ** 32, 'one', null]) {
      const f = read({ id, op: 'get', key: 'k' });
      assert.equal(f.id, -1, `id ${String(id)}`);
      assert.equal(f.error, 'BAD_REQUEST');
    }
    const f = read({ op: 'get', key: 'k' });
    assert.equal(f.id, -1);
    assert.equal(read([1, 2]).error, 'BAD_REQUEST');
    assert.equal(read('get').error, 'BAD_REQUEST');
    assert.equal(
      read(
        new Map<unknown, unknown>([
          [1, 2],
          ['id', 3],
        ]),
      ).error,
      'BAD_REQUEST',
    );
  });

  it('items: missing or mistyped key and value, and ttl past the configured limit', () => {
    const item = (v: unknown, limits = { maxTtlSeconds: 100 }): ItemFields => {
      const b = pack(v);
      const f = new ItemFields(limits);
      const r = new MsgpackReader().reset(b, 0, b.length);
      f.read(r);
      assert.equal(r.pos, b.length);
      return f;
    };
    assert.equal(item({ key: 'k', value: 'v', ttl: 100, flags: 3 }).error, null);
    assert.deepEqual([item({ value: 'v' }).error, item({ value: 'v' }).errorMessage], ['BAD_KEY', 'key missing']);
    assert.equal(item({ key: 'k' }).error, 'BAD_VALUE');
    assert.equal(item({ key: 1, value: 'v' }).error, 'BAD_KEY');
    assert.equal(item({ key: 'k', value: {} }).error, 'BAD_VALUE');
    const t = item({ key: 'k', value: 'v', ttl: 101 });
    assert.equal(t.error, 'BAD_TTL');
    assert.match(t.errorMessage!, /from 0 to 100$/);
    assert.equal(item({ key: 'k', value: 'v', flags: -1 }).error, 'BAD_FLAGS');
    assert.equal(item(['k', 'v']).error, 'BAD_REQUEST');
  });
});

describe('rate-limited log', () => {
  it('writes one line per period with the count of what it held back, and no stack', () => {
    let now = 1_000_000;
    const lines: string[] = [];
    const log = new RateLimitedLog(
      'request handling failed',
      10_000,
      (l) => lines.push(l),
      () => now,
    );
    for (let k = 0; k < 1000; k++) log.report(new Error(`boom\nsecond line ${k}`));
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^kvgate: request handling failed: Error: boom second line 0 at /);
    now += 9_999;
    log.report(new Error('boom'));
    assert.equal(lines.length, 1);
    now += 1;
    log.report('not an error');
    assert.equal(lines.length, 2);
    assert.match(lines[1], /not an error \(and 1000 more in the last 10 s\)$/);
    for (const l of lines) assert.doesNotMatch(l, /\n/);
  });
});

describe('drip-fed bulk bodies', () => {
  /** Feeds `body` in `piece`-byte chunks, taking whole items as they come; returns how many. */
  const dripMsgpack = (acc: MsgpackItems, body: Buffer, piece: number): number => {
    let items = 0;
    for (let p = 0; p < body.length; p += piece) {
      acc.append(body.subarray(p, p + piece));
      while (acc.next()) {
        acc.reader.skip();
        acc.consumed();
        items++;
      }
    }
    acc.finish();
    return items;
  };

  it('msgpack: a 600 KB item in 128-byte pieces costs work linear in its size, not in size x pieces', () => {
    // A big value (its header says how much is missing) and an item of 150,000 tiny values (nothing says
    // how much is missing: only resuming the scan where it stopped keeps it linear).
    const big = pack({ key: 'k', value: Buffer.alloc(600 * 1024, 7) });
    const tiny = pack({ key: 'k', value: Buffer.from('v'), pad: Array.from({ length: 150_000 }, (_, k) => k & 0x7f) });
    for (const [name, item, values] of [
      ['one big value', big, 5],
      ['150,000 tiny values', tiny, 150_006],
    ] as const) {
      const body = Buffer.concat([item, pack('after')]);
      const acc = new MsgpackItems(1 << 21);
      assert.equal(dripMsgpack(acc, body, 128), 2, name);
      const pieces = Math.ceil(body.length / 128);
      // Each header is read once when whole, plus at most one retry per piece for the one cut by a piece's end.
      const steps = acc.reader.steps;
      assert.ok(
        steps <= 2 * values + 2 * pieces + 16,
        `${name}: ${steps} value headers read for ${values} values in ${pieces} pieces`,
      );
    }
  });

  it('NDJSON: a 600 KB line in 128-byte pieces is searched for its newline about once', () => {
    const line = Buffer.from(JSON.stringify({ key: 'k', value: 'x'.repeat(600 * 1024) }) + '\n"next"\n');
    const acc = new NdjsonLines(1 << 21);
    const got: string[] = [];
    for (let p = 0; p < line.length; p += 128) {
      acc.append(line.subarray(p, p + 128));
      for (let l = acc.nextLine(); l !== null; l = acc.nextLine()) got.push(l);
    }
    assert.equal(acc.finish(), null);
    assert.equal(got.length, 2);
    assert.equal(got[1], '"next"');
    assert.equal((JSON.parse(got[0]) as { value: string }).value.length, 600 * 1024);
    assert.ok(acc.scanned <= 2 * line.length, `${acc.scanned} bytes searched for a ${line.length}-byte body`);
  });

  it('refuses an item over maxItemBytes with BodyTooLarge, however it is cut', () => {
    for (const piece of [1, 100, 5000]) {
      const mp = new MsgpackItems(4096);
      const nd = new NdjsonLines(4096);
      assert.throws(() => dripMsgpack(mp, pack({ key: 'k', value: Buffer.alloc(5000) }), piece), BodyTooLarge);
      assert.throws(() => {
        for (let p = 0; p < 5000; p += piece) {
          nd.append(Buffer.alloc(piece, 0x61));
          nd.nextLine();
        }
      }, BodyTooLarge);
    }
  });
});

describe('entry writer error messages', () => {
  class Frames extends EntryWriter {
    frames: Buffer[] = [];
    protected ship(buf: Buffer, len: number): void {
      this.frames.push(Buffer.from(buf.subarray(0, len)));
      this.pool.release(buf);
    }
    isClosed(): boolean {
      return false;
    }
  }
  /** What a backend line holding these bytes becomes (the reply parser reads lines as latin1). */
  const fromBackend = (bytes: number[]): string => Buffer.from(bytes).toString('latin1');
  const messages = [
    'héllo wörld ✓ 😀',
    fromBackend([0x62, 0x61, 0x64, 0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82, 0x80, 0x9f, 0x00, 0x0d, 0x0a]),
    'lone \ud800 surrogates \udfff here',
    'é'.repeat(20_000),
    '😀'.repeat(9_000),
    'x'.repeat(300),
    `${'a'.repeat(254)}é`,
    '',
  ];

  it('writes a str header that matches the bytes, cuts at 255 bytes on a character boundary, and replaces control bytes', () => {
    const w = new Frames(new BufferPool(8));
    // Many in a row, so some land at a frame's end: every frame must still decode, entry by entry.
    for (let k = 0; k < 200; k++) w.error(k, k % 3, 'SHARD_ERROR', messages[k % messages.length]);
    w.simple(1, -1, Kind.End);
    w.flush();
    const entries: unknown[][] = [];
    for (const f of w.frames) {
      assert.ok(f.length <= BUFFER_SIZE);
      entries.push(...(unpackMultiple(f) as unknown[][]));
    }
    assert.equal(entries.length, 201);
    for (let k = 0; k < 200; k++) {
      const [id, i, kind, code, msg] = entries[k] as [number, number, number, string, string];
      assert.deepEqual([id, i, kind, code], [k, k % 3, Kind.Error, 'SHARD_ERROR']);
      const want = messages[k % messages.length].replace(/[\u0000-\u001f\u007f-\u009f]/g, '\ufffd');
      const wellFormed = Buffer.from(want, 'utf8').toString('utf8'); // lone surrogates become U+FFFD
      assert.ok(Buffer.byteLength(msg) <= 255, `message ${k} is ${Buffer.byteLength(msg)} bytes`);
      assert.ok(wellFormed.startsWith(msg), `message ${k % messages.length} is a prefix of the sanitized text`);
      assert.ok(
        msg.length === wellFormed.length || Buffer.byteLength(wellFormed.slice(0, msg.length + 2)) > 255,
        `message ${k % messages.length} cut only at the cap`,
      );
      assert.doesNotMatch(msg, /[\u0000-\u001f\u007f-\u009f]/);
    }
    assert.deepEqual(entries[200], [1, -1, Kind.End]);
  });
});

describe('keys', () => {
  it('accepts printable and UTF-8 bytes, refuses whitespace, control bytes and bad lengths', () => {
    const ok = (s: string | Buffer): boolean => {
      const b = Buffer.from(s as string);
      return isValidKey(b, 0, b.length);
    };
    assert.ok(ok('user:1'));
    assert.ok(ok('ключ'));
    assert.ok(ok('k'.repeat(250)));
    assert.ok(!ok(''));
    assert.ok(!ok('k'.repeat(251)));
    for (const c of [0, 9, 10, 13, 32, 127]) assert.ok(!ok(`a${String.fromCharCode(c)}b`), `byte ${c}`);
    assert.ok(!ok('a\r\nflush_all'));
  });

  it('percent-decodes to raw bytes and rejects malformed escapes', () => {
    assert.deepEqual(percentDecode('a%20b%FF'), Buffer.from([0x61, 0x20, 0x62, 0xff]));
    assert.equal(percentDecode('bad%2'), null);
    assert.equal(percentDecode('bad%zz'), null);
  });
});

describe('configuration', () => {
  it('accepts the defaults and names every bad setting at once', () => {
    assert.doesNotThrow(() => validateConfig(testConfig()));
    const bad = mergeConfig(testConfig(), {
      port: 70000,
      hash: 'crc32',
      servers: ['h:1:0', 'nohost'],
      batch: { windowMs: 100, maxWaitMs: 10 },
      ws: { idleTimeoutSeconds: 7 },
      typo: 1,
    } as never);
    assert.throws(
      () => validateConfig(bad),
      (e: Error) => {
        assert.ok(e instanceof ConfigError);
        for (const s of [
          'port',
          'hash',
          'weight',
          'host:port',
          'windowMs',
          'idleTimeoutSeconds',
          'unknown setting "typo"',
        ]) {
          assert.ok(e.message.includes(s), `message mentions ${s}: ${e.message}`);
        }
        return true;
      },
    );
  });

  it('refuses servers that would share a ring name, as twemproxy would', () => {
    const cfg = mergeConfig(testConfig(), { servers: ['10.0.0.1:11211', '10.0.0.2:11211 10.0.0.1'] } as never);
    assert.throws(() => validateConfig(cfg), /same ring name "10\.0\.0\.1"/);
  });

  it('the CLI exits 2 with a clear message on a bad flag or setting', () => {
    for (const args of [
      ['--port', 'x'],
      ['--servers', 'a:b:c:d'],
      ['--hash', 'crc'],
      ['--bogus', '1'],
    ]) {
      const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /kvgate: /);
    }
  });
});

describe('uWebSockets.js', () => {
  it('runs on the native binding, not the JavaScript fallback', () => {
    assert.equal(typeof uws.App, 'function');
    assert.equal(typeof (uws as unknown as { getParts?: unknown }).getParts, 'function', 'native-only export present');
  });
});
