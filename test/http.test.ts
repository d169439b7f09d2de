import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, Harness, memcachedCommand } from './helpers/harness';

const SIZES = [0, 1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 64 * 1024 + 3, 1024 * 1024];

async function raw(
  base: string,
  method: string,
  path: string,
  body?: Buffer | string,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON of several shapes, read field by field
): Promise<{ status: number; json: any; bytes: Buffer; headers: Headers }> {
  const res = await fetch(base + path, { method, body });
  const bytes = Buffer.from(await res.arrayBuffer());
  let json: unknown = null;
  if ((res.headers.get('content-type') ?? '').includes('json')) json = JSON.parse(bytes.toString());
  return { status: res.status, json, bytes, headers: res.headers };
}

describe('HTTP single key', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.stop());

  it('PUT 204, GET 200 with bytes and flags, DELETE 204 then 404, GET 404 with a JSON error', async () => {
    let r = await raw(h.base, 'PUT', '/v1/kv/http:a?ttl=60&flags=7', 'hello');
    assert.equal(r.status, 204);
    r = await raw(h.base, 'GET', '/v1/kv/http:a');
    assert.equal(r.status, 200);
    assert.equal(r.bytes.toString(), 'hello');
    assert.equal(r.headers.get('x-kv-flags'), '7');
    assert.equal(r.headers.get('content-length'), '5');
    assert.equal((await raw(h.base, 'DELETE', '/v1/kv/http:a')).status, 204);
    r = await raw(h.base, 'DELETE', '/v1/kv/http:a');
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'NOT_FOUND');
    r = await raw(h.base, 'GET', '/v1/kv/http:a');
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'NOT_FOUND');
  });

  it('round-trips binary values of 0 bytes to 1 MiB, across 16 KiB boundaries', async () => {
    for (const n of SIZES) {
      const v = Buffer.alloc(n);
      for (let i = 0; i < n; i++) v[i] = (i * 7 + n) & 0xff;
      assert.equal((await raw(h.base, 'PUT', `/v1/kv/http:size:${n}`, v)).status, 204, `PUT ${n}`);
      const r = await raw(h.base, 'GET', `/v1/kv/http:size:${n}`);
      assert.equal(r.status, 200);
      assert.ok(r.bytes.equals(v), `size ${n} differs`);
    }
  });

  it('percent-decodes keys, including bytes that are not UTF-8', async () => {
    await h.http.set(Buffer.from([0x6b, 0xff, 0xfe]), 'raw-bytes');
    const r = await raw(h.base, 'GET', '/v1/kv/k%FF%FE');
    assert.equal(r.bytes.toString(), 'raw-bytes');
    await h.http.set('ключ/слэш', 'utf8');
    assert.equal((await raw(h.base, 'GET', `/v1/kv/${encodeURIComponent('ключ/слэш')}`)).bytes.toString(), 'utf8');
  });

  it('rejects bad keys, bad numbers and oversized values with stable codes, and stores nothing', async () => {
    const port = h.fleet.members[0].port;
    await memcachedCommand(port, 'set http:canary 0 0 3\r\nyes\r\n');
    const cases: [string, string, string | undefined, number, string][] = [
      ['GET', '/v1/kv/a%0D%0Aflush_all', undefined, 400, 'BAD_KEY'],
      ['PUT', '/v1/kv/a%20b', 'x', 400, 'BAD_KEY'],
      ['GET', `/v1/kv/${'k'.repeat(251)}`, undefined, 400, 'BAD_KEY'],
      ['GET', '/v1/kv/bad%zz', undefined, 400, 'BAD_KEY'],
      ['PUT', '/v1/kv/http:t?ttl=abc', 'x', 400, 'BAD_TTL'],
      ['PUT', '/v1/kv/http:t?ttl=2592001', 'x', 400, 'BAD_TTL'],
      ['PUT', '/v1/kv/http:t?flags=-1', 'x', 400, 'BAD_FLAGS'],
      ['GET', '/v1/kv/http:t?wait=99999', undefined, 400, 'BAD_WAIT'],
      ['PUT', '/v1/kv/http:big', 'x'.repeat(1024 * 1024 + 1), 413, 'TOO_LARGE'],
      ['GET', '/v1/nothing', undefined, 404, 'NO_ROUTE'],
    ];
    for (const [m, p, body, status, code] of cases) {
      const r = await raw(h.base, m, p, body);
      assert.equal(r.status, status, `${m} ${p}`);
      assert.equal(r.json.error.code, code, `${m} ${p}`);
    }
    assert.match(await memcachedCommand(port, 'get http:canary\r\n'), /VALUE http:canary 0 3\r\nyes/);
    assert.equal((await raw(h.base, 'GET', '/v1/kv/http:big')).status, 404);
    assert.equal((await raw(h.base, 'GET', '/v1/kv/http:t')).status, 404);
  });

  it('reports health', async () => {
    const r = await raw(h.base, 'GET', '/healthz');
    assert.equal(r.status, 200);
    assert.equal(r.json.status, 'ok');
    assert.equal(r.json.shards.length, 3);
  });
});
