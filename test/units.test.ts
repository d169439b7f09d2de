import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { INCOMPLETE, MsgpackReader, MpType } from '../src/decode/msgpack-reader';
import { isValidKey, percentDecode } from '../src/decode/key';
import { MsgpackItems } from '../src/decode/body-stream';
import { defaultConfig, mergeConfig, validateConfig, ConfigError } from '../src/config/schema';
import { uws } from '../src/uws';

const MAIN = join(__dirname, '..', 'src', 'main.js');

describe('msgpack reader', () => {
  it('reads every integer width and float the same as msgpackr wrote it', () => {
    const values = [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 40, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), 3.5];
    const r = new MsgpackReader();
    for (const v of values) {
      const b = pack(v);
      r.reset(b, 0, b.length);
      assert.equal(r.readNumber(), v, `value ${v}`);
      assert.equal(r.remaining, 0);
    }
  });

  it('finds strings and bins in place, skips nested values, and reports truncation at every cut', () => {
    const doc = pack({ a: [1, 'two', Buffer.from([3]), { x: null, y: true }], key: 'k'.repeat(300), bin: Buffer.alloc(70000, 1) });
    const r = new MsgpackReader();
    r.reset(doc, 0, doc.length);
    r.skip();
    assert.equal(r.pos, doc.length);
    for (const cut of [1, 2, 5, 20, 300, doc.length - 1]) {
      r.reset(doc, 0, cut);
      assert.throws(() => r.skip(), (e) => e === INCOMPLETE, `cut at ${cut}`);
    }
    r.reset(doc, 0, doc.length);
    const n = r.readMapHeader();
    assert.equal(n, 3);
    r.readBytes(); r.skip();
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
          while (acc.next()) { acc.reader.skip(); acc.consumed(); count++; }
        }
        acc.finish();
        assert.equal(count, 3, `cut at ${cut}`);
      }
    }
  });
});

describe('keys', () => {
  it('accepts printable and UTF-8 bytes, refuses whitespace, control bytes and bad lengths', () => {
    const ok = (s: string | Buffer): boolean => { const b = Buffer.from(s as string); return isValidKey(b, 0, b.length); };
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
    assert.doesNotThrow(() => validateConfig(defaultConfig()));
    const bad = mergeConfig(defaultConfig(), {
      port: 70000, hash: 'crc32', servers: ['h:1:0', 'nohost'], batch: { windowMs: 100, maxWaitMs: 10 },
      ws: { idleTimeoutSeconds: 7 }, typo: 1,
    } as never);
    assert.throws(() => validateConfig(bad), (e: Error) => {
      assert.ok(e instanceof ConfigError);
      for (const s of ['port', 'hash', 'weight', 'host:port', 'windowMs', 'idleTimeoutSeconds', 'unknown setting "typo"']) {
        assert.ok(e.message.includes(s), `message mentions ${s}: ${e.message}`);
      }
      return true;
    });
  });

  it('refuses servers that would share a ring name, as twemproxy would', () => {
    const cfg = mergeConfig(defaultConfig(), { servers: ['10.0.0.1:11211', '10.0.0.2:11211 10.0.0.1'] } as never);
    assert.throws(() => validateConfig(cfg), /same ring name "10\.0\.0\.1"/);
  });

  it('the CLI exits 2 with a clear message on a bad flag or setting', () => {
    for (const args of [['--port', 'x'], ['--servers', 'a:b:c:d'], ['--hash', 'crc'], ['--bogus', '1']]) {
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
