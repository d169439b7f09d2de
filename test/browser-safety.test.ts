/**
 * Browser safety from raw clients (front/browser-gate.ts over security/browser-policy.ts): what a page of
 * another site, or a DNS-rebinding name, gets from the public routes. The browser's own behaviour is in
 * browser-harness.test.ts; here every header is set by hand.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request, type IncomingHttpHeaders } from 'node:http';
import WebSocket from 'ws';
import { startHarness, type Harness } from './helpers/harness';

const LISTED = 'https://app.example.com';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function send(
  h: Harness,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: h.gw.port, method, path, headers }, (res) => {
      let acc = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (acc += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: acc }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The status of a WebSocket upgrade with these headers: 101 when it opened. */
function upgrade(h: Harness, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(h.wsUrl, { headers });
    ws.on('open', () => {
      ws.close();
      resolve(101);
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
    });
    ws.on('error', (e) => (e.message.includes('Unexpected server response') ? undefined : reject(e)));
  });
}

const code = (a: Answer): string => (JSON.parse(a.body) as { error: { code: string } }).error.code;

describe('browser safety: Origin, Host and CORS on the public routes', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ security: { allowedOrigins: [LISTED, 'https://*.tenant.example'] } });
    await h.http.set('bs:k', 'value');
  });
  after(() => h.stop());

  it('a WebSocket upgrade from an unlisted, null or file:// origin is refused 403; a listed one or none opens', async () => {
    for (const origin of ['http://evil.example', 'null', 'file://', 'https://app.example.com.evil.example'])
      assert.equal(await upgrade(h, { origin }), 403, origin);
    assert.equal(await upgrade(h, { origin: LISTED }), 101);
    assert.equal(await upgrade(h, { origin: 'https://a.tenant.example' }), 101);
    assert.equal(await upgrade(h, {}), 101, 'a program sends no Origin');
  });

  it('a request from an unlisted origin is refused 403 FORBIDDEN on every route and method; nothing changes', async () => {
    const evil = { origin: 'http://evil.example' };
    const get = await send(h, 'GET', '/v1/kv/bs:k', evil);
    assert.equal(get.status, 403);
    assert.equal(code(get), 'FORBIDDEN');
    assert.equal(get.headers['access-control-allow-origin'], undefined);
    assert.equal((await send(h, 'PUT', '/v1/kv/bs:k', evil, 'overwritten')).status, 403);
    assert.equal((await send(h, 'DELETE', '/v1/kv/bs:k', evil)).status, 403);
    const mset = await send(
      h,
      'POST',
      '/v1/mset',
      { ...evil, 'content-type': 'application/x-ndjson' },
      '{"key":"bs:k","value":"x"}\n',
    );
    assert.equal(mset.status, 403);
    assert.deepEqual(await h.http.get('bs:k'), { hit: true, value: Buffer.from('value'), flags: 0 });
  });

  it('a DNS-rebinding Host is refused; addresses and localhost are answered', async () => {
    const rebound = await send(h, 'GET', '/v1/kv/bs:k', { host: `evil.example:${h.gw.port}` });
    assert.equal(rebound.status, 403);
    assert.match(JSON.parse(rebound.body).error.message, /Host/);
    assert.equal(await upgrade(h, { host: 'evil.example' }), 403);
    for (const host of [`127.0.0.1:${h.gw.port}`, `localhost:${h.gw.port}`, 'LOCALHOST'])
      assert.equal((await send(h, 'GET', '/v1/kv/bs:k', { host })).status, 200, host);
  });

  it('a CSRF-style text/plain POST is refused even from a listed origin; nothing is stored', async () => {
    for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const r = await send(
        h,
        'POST',
        '/v1/mset',
        { origin: LISTED, 'content-type': ct },
        '{"key":"bs:csrf","value":"x"}\n',
      );
      assert.equal(r.status, 403, ct);
      assert.equal(code(r), 'FORBIDDEN');
    }
    assert.equal((await h.http.get('bs:csrf')).hit, false);
  });

  it('CORS: a listed origin gets its preflight (204) and its origin echoed on answers; others get neither', async () => {
    const pre = await send(h, 'OPTIONS', '/v1/mset', {
      origin: LISTED,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type, authorization',
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], LISTED);
    assert.match(String(pre.headers['access-control-allow-methods']), /POST/);
    assert.match(String(pre.headers['access-control-allow-headers']), /authorization/);
    assert.equal(pre.headers['access-control-allow-credentials'], undefined);
    const badHeader = await send(h, 'OPTIONS', '/v1/mset', {
      origin: LISTED,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'x-evil',
    });
    assert.equal(badHeader.status, 403);
    const unlisted = await send(h, 'OPTIONS', '/v1/kv/bs:k', {
      origin: 'http://evil.example',
      'access-control-request-method': 'PUT',
    });
    assert.equal(unlisted.status, 403);
    assert.equal(unlisted.headers['access-control-allow-origin'], undefined);
    // Without an Origin, OPTIONS is no preflight: a method the route does not take.
    assert.equal((await send(h, 'OPTIONS', '/v1/kv/bs:k', {})).status, 405);

    const got = await send(h, 'GET', '/v1/kv/bs:k', { origin: LISTED });
    assert.equal(got.status, 200);
    assert.equal(got.body, 'value');
    assert.equal(got.headers['access-control-allow-origin'], LISTED);
    assert.match(String(got.headers['access-control-expose-headers']), /x-kv-flags/);
    assert.match(String(got.headers.vary), /Origin/);
    const bulk = await send(
      h,
      'POST',
      '/v1/mget',
      { origin: LISTED, 'content-type': 'application/x-ndjson' },
      '"bs:k"\n',
    );
    assert.equal(bulk.status, 200);
    assert.equal(bulk.headers['access-control-allow-origin'], LISTED);
    const plain = await send(h, 'GET', '/v1/kv/bs:k', {});
    assert.equal(plain.headers['access-control-allow-origin'], undefined);
  });
});
