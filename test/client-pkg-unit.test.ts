/**
 * @kvgate/client without a gateway: its msgpack codec against msgpackr (a separate implementation), its
 * error codes against the gateway's table (src/core/errors.ts), and its browser build: minified + gzip
 * size within the budget stated in packages/client/README.md and README.md, and nothing Node-only in it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { pack, unpackMultiple } from 'msgpackr';
import { CLIENT_CODES, GATEWAY_CODES, KvError } from '@kvgate/client';
import { Decoder, Incomplete, decodeAll, encode } from '../packages/client/src/msgpack';
import { ErrorTable } from '../src/core/errors';

const ROOT = join(__dirname, '..', '..');
/** The budget, in bytes of the minified browser build after gzip -9 (README.md and packages/client/README.md). */
const BUDGET_GZIP = 10 * 1024;

const samples: unknown[] = [
  0,
  1,
  127,
  128,
  255,
  256,
  65535,
  65536,
  0xffffffff,
  -1,
  -32,
  -33,
  -2147483648,
  1.5,
  '',
  'a',
  'x'.repeat(31),
  'x'.repeat(32),
  'é'.repeat(200),
  'y'.repeat(70000),
  new Uint8Array(0),
  new Uint8Array([0, 255]),
  new Uint8Array(300).fill(7),
  new Uint8Array(70000).fill(9),
  [],
  [1, 2, 3],
  Array.from({ length: 20 }, (_, i) => i),
  Array.from({ length: 70000 }, () => 0),
  { id: 1, op: 'get', key: 'k' },
  Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`f${i}`, i])),
  null,
  true,
  false,
  { nested: [{ a: new Uint8Array([1]) }] },
];

const plain = (v: unknown): unknown => (v instanceof Uint8Array ? Buffer.from(v) : v);
/** Comparable JSON: bin (a Buffer or a Uint8Array, at any depth) as `{bin: [bytes]}`. */
const norm = (v: unknown): unknown =>
  JSON.parse(
    JSON.stringify(plain(v), (_k, x) =>
      x instanceof Uint8Array ? { bin: [...x] } : x?.type === 'Buffer' ? { bin: x.data } : x,
    ),
  );

test('the codec encodes what msgpackr decodes, and decodes what msgpackr encodes', () => {
  for (const v of samples) {
    const ours = encode(v);
    assert.deepEqual(
      norm(unpackMultiple(Buffer.from(ours))[0]),
      norm(plain(v)),
      `encode ${JSON.stringify(v)?.slice(0, 40)}`,
    );
    const theirs = pack(v);
    assert.deepEqual(
      norm(decodeAll(theirs).map(plain)[0]),
      norm(plain(v)),
      `decode ${JSON.stringify(v)?.slice(0, 40)}`,
    );
  }
});

test('a stream cut at any offset is Incomplete, never a wrong value', () => {
  const stream = Buffer.concat([pack([7, 0, 0, 3, Buffer.from('hello')]), pack([7, -1, 5]), pack({ k: 'v' })]);
  for (let cut = 0; cut < stream.length; cut++) {
    const d = new Decoder(stream.subarray(0, cut));
    let n = 0;
    try {
      while (!d.done) {
        d.value();
        n++;
      }
    } catch (e) {
      assert.ok(e instanceof Incomplete, `cut at ${cut}: ${String(e)}`);
    }
    assert.ok(n <= 3);
  }
});

test("the client's error codes and retry hints are the gateway's table", () => {
  const table = Object.fromEntries(Object.entries(ErrorTable).map(([code, row]) => [code, row.retry]));
  assert.deepEqual(GATEWAY_CODES, table);
  for (const code of Object.keys(CLIENT_CODES)) assert.ok(!(code in ErrorTable), `${code} is a gateway code too`);
  const e = new KvError('SHARD_DOWN', 'x');
  assert.equal(e.retry, 'idempotent');
  assert.equal(e.source, 'gateway');
  assert.equal(new KvError('CONNECTION_CLOSED', 'x').source, 'client');
});

test(`the browser build is within ${BUDGET_GZIP} bytes minified + gzip, and references nothing of Node`, async () => {
  const out = await build({
    entryPoints: [join(ROOT, 'packages/client/src/index.ts')],
    bundle: true,
    minify: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    write: false,
    metafile: true,
  });
  const code = out.outputFiles[0].text;
  const gz = gzipSync(code, { level: 9 }).length;
  console.log(`browser build: ${code.length} bytes minified, ${gz} bytes gzip`);
  assert.ok(gz <= BUDGET_GZIP, `${gz} bytes gzip, over the budget of ${BUDGET_GZIP}`);
  assert.deepEqual(
    Object.keys(out.metafile.inputs).filter((f) => !f.startsWith('packages/client/src/')),
    [],
  );
  for (const bad of [/\bws\b['"]/, /\brequire\(/, /\bBuffer\b/, /\bprocess\b/, /node:/]) assert.doesNotMatch(code, bad);
  // What the package ships is that build.
  const shipped = readFileSync(join(ROOT, 'packages/client/dist/kvgate-client.min.mjs'), 'utf8');
  assert.ok(gzipSync(shipped, { level: 9 }).length <= BUDGET_GZIP);
  assert.doesNotMatch(readFileSync(join(ROOT, 'packages/client/dist/index.mjs'), 'utf8'), /from ["']ws["']/);
});
