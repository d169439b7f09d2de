import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { pack, unpackMultiple } from 'msgpackr';
import { startHarness, Harness } from './helpers/harness';

describe('HTTP bulk', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.stop());

  for (const format of ['msgpack', 'ndjson'] as const) {
    it(`mset then mget in ${format}, with binary values, misses and a bad key`, async () => {
      const items = Array.from({ length: 300 }, (_, i) => ({
        key: `bulk:${format}:${i}`,
        value: Buffer.from([i & 0xff, 0, 0xff, 10, 13]),
        flags: i,
      }));
      const set = await h.http.mset([...items, { key: 'bad key', value: Buffer.from('x') }], { format });
      assert.equal(set.length, 301);
      assert.ok(set.slice(0, 300).every((r) => 'ok' in r && r.ok));
      assert.equal((set[300] as { error: { code: string } }).error.code, 'BAD_KEY');
      const keys = [...items.map((x) => x.key), `bulk:${format}:absent`, 'a\r\nflush_all'];
      const got = await h.http.mget(keys, { format });
      items.forEach((x, i) => assert.deepEqual(got[i], { hit: true, value: x.value, flags: x.flags }));
      assert.deepEqual(got[300], { hit: false });
      assert.equal((got[301] as { error: { code: string } }).error.code, 'BAD_KEY');
    });
  }

  it('answers in the format Accept asks for', async () => {
    await h.http.set('bulk:accept', 'text value');
    const res = await fetch(`${h.base}/v1/mget`, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack', accept: 'application/x-ndjson' },
      body: pack('bulk:accept'),
    });
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(lines[0], { i: 0, key: 'bulk:accept', value: 'text value', flags: 0 });
    assert.deepEqual(lines[1], { done: true, count: 1 });
  });

  it('streams: results for the first keys arrive before the request body is finished', async () => {
    const keys = Array.from({ length: 20 }, (_, i) => `bulk:stream:${i}`);
    await h.http.mset(keys.map((key) => ({ key, value: Buffer.from(key) })));
    const firstResults = await new Promise<{ before: Buffer; after: Buffer }>((resolve, reject) => {
      const req = request(
        `${h.base}/v1/mget`,
        { method: 'POST', headers: { 'content-type': 'application/msgpack' } },
        (res) => {
          let first: Buffer | null = null;
          const rest: Buffer[] = [];
          res.on('data', (d: Buffer) => {
            if (first === null) {
              first = d;
              // Only now send the second half and end the body.
              for (const k of keys.slice(10)) req.write(pack(k));
              req.end();
            } else rest.push(d);
          });
          res.on('end', () => resolve({ before: first!, after: Buffer.concat(rest) }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.flushHeaders();
      for (const k of keys.slice(0, 10)) req.write(pack(k));
    });
    const early = unpackMultiple(firstResults.before) as unknown[][];
    assert.ok(
      early.length >= 1 && early.every((e) => (e[1] as number) < 10),
      'first chunk holds only results of the first half',
    );
    const all = [...early, ...(unpackMultiple(firstResults.after) as unknown[][])];
    const values = all.filter((e) => e[2] === 0);
    assert.equal(values.length, 20);
    for (const e of values) assert.equal(Buffer.from(e[4] as Uint8Array).toString(), keys[e[1] as number]);
    assert.deepEqual(all[all.length - 1], [0, -1, 5]);
  });

  it('streams a large mset body item by item and holds bounded memory', async () => {
    const value = Buffer.alloc(100 * 1024, 0x61);
    const n = 200; // 20 MB of body
    const before = h.gw.stats().pool as { allocated: number };
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        `${h.base}/v1/mset`,
        { method: 'POST', headers: { 'content-type': 'application/msgpack' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      let i = 0;
      const pump = (): void => {
        while (i < n) {
          if (!req.write(pack({ key: `bulk:large:${i++}`, value }))) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    });
    assert.equal(status, 200);
    const got = await h.http.mget([`bulk:large:0`, `bulk:large:${n - 1}`]);
    assert.ok(got.every((r) => 'hit' in r && r.hit && r.value.equals(value)));
    const afterStats = h.gw.stats().pool as { allocated: number; inUse: number };
    assert.ok(
      afterStats.allocated - before.allocated < 64,
      `pool grew by ${afterStats.allocated - before.allocated} buffers`,
    );
  });

  it('rejects a wrong content type, malformed bodies and oversized items with stable codes', async () => {
    let res = await fetch(`${h.base}/v1/mget`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'k',
    });
    assert.equal(res.status, 415);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'BAD_CONTENT_TYPE');
    res = await fetch(`${h.base}/v1/mget`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: 'not json\n',
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'BAD_REQUEST');
    res = await fetch(`${h.base}/v1/mset`, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack' },
      body: Buffer.from([0x82, 0xa3]),
    });
    assert.equal(res.status, 400);
    res = await fetch(`${h.base}/v1/mset`, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack' },
      body: pack({ key: 'bulk:huge', value: Buffer.alloc(1024 * 1024 + 10) }),
    });
    const entries = res.status === 200 ? (unpackMultiple(Buffer.from(await res.arrayBuffer())) as unknown[][]) : [];
    const code =
      res.status === 200
        ? entries.find((e) => e[2] === 4)?.[3]
        : ((await res.json()) as { error: { code: string } }).error.code;
    assert.equal(code, 'TOO_LARGE');
    // An NDJSON body that goes bad after good lines: the good items are stored, the error is reported.
    res = await fetch(`${h.base}/v1/mset`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: '{"key":"bulk:nd:ok","value":"fine"}\n{"key":"bulk:nd:bad","value":42}\n{oops\n',
    });
    const text = await res.text();
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.i === 1 && l.error?.code === 'BAD_VALUE'));
    assert.ok(lines.some((l) => l.i === -1 && l.error?.code === 'BAD_REQUEST'));
    assert.deepEqual(await h.http.get('bulk:nd:ok'), { hit: true, value: Buffer.from('fine'), flags: 0 });
  });

  it('NDJSON sends text as "value" unless escaping it would be longer than base64, so no line exceeds ~4/3 of its value', async () => {
    const cases = [
      { key: 'bulk:esc:text', value: Buffer.from('plain text, "a quote" and a \\ backslash\n'), as: 'value' },
      { key: 'bulk:esc:nul', value: Buffer.alloc(100_000, 0), as: 'base64' },
      { key: 'bulk:esc:quotes', value: Buffer.alloc(30_000, 0x22), as: 'base64' },
      { key: 'bulk:esc:tabs', value: Buffer.alloc(3000, 0x09), as: 'base64' }, // \t: 2 bytes each
    ];
    // Escapes just under the base64 budget: a third of the bytes are newlines (2 bytes each) -> 4/3 exactly.
    const mixed = Buffer.from('ab\n'.repeat(3000));
    cases.push({ key: 'bulk:esc:mixed', value: mixed, as: 'value' });
    for (const c of cases) await h.http.set(c.key, c.value);
    const res = await fetch(`${h.base}/v1/mget`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: cases.map((c) => JSON.stringify(c.key)).join('\n'),
    });
    const lines = (await res.text()).trim().split('\n');
    assert.equal(lines.length, cases.length + 1);
    for (const line of lines.slice(0, -1)) {
      const o = JSON.parse(line) as { i: number; value?: string; base64?: string };
      const c = cases[o.i];
      assert.ok(c.as in o, `${c.key} comes as ${c.as}: ${line.slice(0, 80)}`);
      const v = o.base64 !== undefined ? Buffer.from(o.base64, 'base64') : Buffer.from(o.value!, 'utf8');
      assert.ok(v.equals(c.value), c.key);
      assert.ok(Buffer.byteLength(line) <= Math.ceil(c.value.length * 1.34) + 64, `${c.key}: ${line.length} bytes`);
    }
  });

  it('NDJSON carries binary values of every size around its frame boundaries as exact base64, with UTF-8 keys', async () => {
    const sizes = [0, 1, 2, 3, 12287, 12288, 12289, 16380, 16383, 16384, 16385, 32768, 49151, 65536, 100_000];
    const items = sizes.map((n, k) => {
      const value = Buffer.alloc(n);
      for (let j = 0; j < n; j++) value[j] = ((j * 131 + k) & 0xff) | 0x80; // never valid UTF-8 throughout
      return { key: `ключ:${k}:${'ü'.repeat(k)}`, value };
    });
    const set = await h.http.mset(items, { format: 'msgpack' });
    assert.ok(set.every((r) => 'ok' in r && r.ok));
    const got = await h.http.mget(
      items.map((x) => x.key),
      { format: 'ndjson' },
    );
    items.forEach((x, k) => assert.deepEqual(got[k], { hit: true, value: x.value, flags: 0 }, `size ${sizes[k]}`));
  });
});
