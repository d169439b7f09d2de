/**
 * The supported TLS deployment (docs/SECURITY.md): haproxy from Debian, configured from
 * deploy/haproxy.cfg, terminating TLS in front of a real gateway and memcached fleet. https:// and wss://
 * end to end with the certificate verified against its CA; then, with a small uWS echo app behind the same
 * configurations, what a backend sees as the client's address (X-Forwarded-For in mode http, PROXY v2 in
 * mode tcp) and what ClientAddress makes of it, including spoofing from an untrusted peer.
 *
 * The client connects from 127.0.0.3 where it matters, so that the client's address (127.0.0.3) and
 * haproxy's (127.0.0.1, the only trusted proxy) differ.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import WebSocket from 'ws';
import { startHarness, type Harness } from './helpers/harness';
import { holders } from './helpers/holders';
import { startTlsProxy, type TlsProxy } from './helpers/tls-proxy';
import { KvWsClient, parseNdjsonBulk, type MgetResult } from './client';
import { uws, type TemplatedApp, type us_listen_socket } from '../src/uws';
import { ClientAddress, forwardedFor } from '../src/security/client-address';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The negotiated TLS version ("TLSv1.3"). */
  tls: string | null;
}

interface Call {
  method?: string;
  body?: Buffer | string;
  headers?: Record<string, string>;
  localAddress?: string;
}

/** One request over https to haproxy, verified against `proxy.caPem` (never rejectUnauthorized: false). */
function https(proxy: TlsProxy, path: string, call: Call = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: proxy.port,
        path,
        method: call.method ?? 'GET',
        ca: proxy.caPem,
        headers: call.headers,
        localAddress: call.localAddress,
        agent: false,
      },
      (res) => {
        const tls = (res.socket as import('node:tls').TLSSocket).getProtocol();
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), tls }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(call.body);
  });
}

const key = (i: number): string => `tls:key:${i}`;
const valueOf = (i: number): string => `value ${i} `.repeat(1 + (i % 17));
/** A 1 MiB value (limits.maxValueBytes) that is printable, so memcached's copy compares as text. */
const BIG = Buffer.alloc(1024 * 1024, 'abcdefghijklmnopqrstuvwxyz0123456789');

describe('TLS through haproxy in front of the gateway', () => {
  let h: Harness;
  let xff: TlsProxy;
  let tcp: TlsProxy;
  const clients: KvWsClient[] = [];

  before(async () => {
    h = await startHarness();
    xff = await startTlsProxy(h.gw.port, 'http');
    tcp = await startTlsProxy(h.gw.port, 'tcp');
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.terminate()));
    await xff?.stop();
    await tcp?.stop();
    await h?.stop();
  });

  const wss = async (proxy: TlsProxy): Promise<KvWsClient> => {
    const c = await KvWsClient.connect(`wss://127.0.0.1:${proxy.port}/v1/ws`, { ws: { ca: proxy.caPem } });
    clients.push(c);
    return c;
  };

  it('the port speaks TLS only, with the test certificate, verified against its CA', async () => {
    for (const proxy of [xff, tcp]) {
      // Plain HTTP to the TLS port gets no HTTP answer.
      await assert.rejects(
        new Promise((resolve, reject) => {
          const req = httpRequest({ host: '127.0.0.1', port: proxy.port, path: '/healthz', agent: false }, resolve);
          req.on('error', reject);
          req.end();
        }),
        (e: NodeJS.ErrnoException) =>
          ['ECONNRESET', 'EPIPE', 'HPE_INVALID_CONSTANT'].includes(e.code ?? '') || /hang up/.test(e.message),
      );
      // Without the CA the self-signed certificate is refused: verification is really on.
      await assert.rejects(
        new Promise((resolve, reject) => {
          const s = tlsConnect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost' }, () => resolve(s));
          s.on('error', reject);
        }),
        (e: NodeJS.ErrnoException) => /SELF_SIGNED|UNABLE_TO_VERIFY/.test(e.code ?? ''),
      );
      const peer = await new Promise<{ fingerprint: string; protocol: string | null }>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: proxy.port, ca: proxy.caPem }, () => {
          const info = { fingerprint: s.getPeerX509Certificate()!.fingerprint256, protocol: s.getProtocol() };
          s.destroy();
          resolve(info);
        });
        s.on('error', reject);
      });
      assert.equal(peer.fingerprint, new X509Certificate(proxy.caPem).fingerprint256);
      assert.match(peer.protocol ?? '', /^TLSv1\.[23]$/);
      const health = await https(proxy, '/healthz');
      assert.equal(health.status, 200, `${proxy.mode}: ${health.body.toString()}`);
      assert.equal((JSON.parse(health.body.toString()) as { status: string }).status, 'ok');
    }
  });

  it("haproxy's health check of the gateway passes: the gateway stays in service", async () => {
    // Checks run every 100 ms here and 3 failures take the server out (haproxy then answers 503 itself),
    // so a second of answers from the gateway means its checks pass.
    for (const proxy of [xff, tcp]) {
      const end = Date.now() + 1000;
      let n = 0;
      while (Date.now() < end) {
        const r = await https(proxy, '/healthz');
        assert.equal(r.status, 200, `${proxy.mode} after ${n} requests: ${r.body.toString()}`);
        assert.match(r.body.toString(), /"status"/);
        n++;
      }
    }
  });

  it('https PUT then GET a key, and it is really in memcached', async () => {
    for (const proxy of [xff, tcp]) {
      const k = `tls:https:${proxy.mode}`;
      const put = await https(proxy, `/v1/kv/${k}?flags=7`, { method: 'PUT', body: `hello over ${proxy.mode}` });
      assert.equal(put.status, 204, put.body.toString());
      assert.match(put.tls ?? '', /^TLSv1\.[23]$/);
      const get = await https(proxy, `/v1/kv/${k}`);
      assert.equal(get.status, 200);
      assert.equal(get.body.toString(), `hello over ${proxy.mode}`);
      assert.equal(get.headers['x-kv-flags'], '7');
      assert.deepEqual(
        (await holders(h.fleet, k)).map((x) => x.value),
        [`hello over ${proxy.mode}`],
      );
      const miss = await https(proxy, `/v1/kv/tls:absent:${proxy.mode}`);
      assert.equal(miss.status, 404);
    }
  });

  it('https PUT and GET of a 1 MiB value', async () => {
    const put = await https(xff, '/v1/kv/tls:big:https', { method: 'PUT', body: BIG });
    assert.equal(put.status, 204, put.body.toString());
    const get = await https(xff, '/v1/kv/tls:big:https');
    assert.equal(get.status, 200);
    assert.ok(get.body.equals(BIG), `got ${get.body.length} bytes`);
    const over = await https(xff, '/v1/kv/tls:big:over', {
      method: 'PUT',
      body: Buffer.concat([BIG, Buffer.from('x')]),
    });
    assert.equal(over.status, 413);
  });

  it('a bulk mget over https (NDJSON) answers every key, hits and misses in order', async () => {
    const n = 40;
    for (let i = 0; i < n; i += 10)
      await Promise.all(
        Array.from({ length: 10 }, (_, j) =>
          https(xff, `/v1/kv/${key(1000 + i + j)}`, { method: 'PUT', body: valueOf(i + j) }).then((r) =>
            assert.equal(r.status, 204),
          ),
        ),
      );
    const keys = [...Array.from({ length: n }, (_, i) => key(1000 + i)), 'tls:nope:1', 'tls:nope:2'];
    const res = await https(xff, '/v1/mget', {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', accept: 'application/x-ndjson' },
      body: keys.map((k) => JSON.stringify(k)).join('\n') + '\n',
    });
    assert.equal(res.status, 200, res.body.toString());
    const results = parseNdjsonBulk('mget', res.body.toString(), keys) as MgetResult[];
    assert.equal(results.length, keys.length);
    results.forEach((r, i) => {
      if (i < n) assert.deepEqual(r, { hit: true, value: Buffer.from(valueOf(i)), flags: 0 }, keys[i]);
      else assert.deepEqual(r, { hit: false }, keys[i]);
    });
  });

  it('wss:// with the project client: many keys set and read back, checked in memcached', async () => {
    for (const proxy of [xff, tcp]) {
      const c = await wss(proxy);
      const n = 500;
      const base = proxy.mode === 'http' ? 0 : 10_000;
      await Promise.all(Array.from({ length: n }, (_, i) => c.set(key(base + i), valueOf(i))));
      const got = await c.mget(Array.from({ length: n }, (_, i) => key(base + i)));
      got.forEach((r, i) =>
        assert.deepEqual(r, { hit: true, value: Buffer.from(valueOf(i)), flags: 0 }, key(base + i)),
      );
      for (const i of [0, 123, n - 1])
        assert.deepEqual(
          (await holders(h.fleet, key(base + i))).map((x) => x.value),
          [valueOf(i)],
        );
      const one = await c.get(key(base + 7));
      assert.ok(one.hit && one.value.toString() === valueOf(7));
    }
  });

  it('wss:// carries a 1 MiB value both ways', async () => {
    for (const proxy of [xff, tcp]) {
      const c = await wss(proxy);
      const k = `tls:big:wss:${proxy.mode}`;
      await c.set(k, BIG);
      const r = await c.get(k);
      assert.ok(r.hit, 'hit');
      assert.ok(r.value.equals(BIG), `got ${r.value.length} bytes`);
      const held = await holders(h.fleet, k);
      assert.equal(held.length, 1);
      assert.ok(held[0].value === BIG.toString(), `memcached holds ${held[0].value.length} bytes`);
    }
  });
});

/** What a backend behind haproxy sees: one JSON object per HTTP request, and per WebSocket at open. */
interface Seen {
  peer: string;
  proxied: string;
  /** Every X-Forwarded-For header, joined (forwardedFor). */
  xff: string | null;
  /** What req.getHeader gives: only the first header. */
  first: string;
}

const td = new TextDecoder();

function startEcho(): Promise<{ app: TemplatedApp; port: number; listen: us_listen_socket }> {
  const app = uws.App();
  const seen = (res: import('../src/uws').HttpResponse, req: import('../src/uws').HttpRequest): Seen => ({
    peer: td.decode(res.getRemoteAddressAsText()),
    proxied: td.decode(res.getProxiedRemoteAddressAsText()),
    xff: forwardedFor(req) ?? null,
    first: req.getHeader('x-forwarded-for'),
  });
  app.ws<Seen>('/ws', {
    upgrade: (res, req, ctx) => {
      // This build's WebSocket has no getProxiedRemoteAddressAsText: capture everything here.
      const s = seen(res, req);
      res.upgrade(
        s,
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        ctx,
      );
    },
    open: (ws) => {
      ws.send(JSON.stringify({ ...ws.getUserData(), wsPeer: td.decode(ws.getRemoteAddressAsText()) }));
    },
  });
  app.any('/*', (res, req) => {
    res.writeHeader('content-type', 'application/json').end(JSON.stringify(seen(res, req)));
  });
  return new Promise((resolve, reject) =>
    app.listen('127.0.0.1', 0, (ls) => {
      if (!ls) reject(new Error('echo app did not listen'));
      else resolve({ app, port: uws.us_socket_local_port(ls), listen: ls });
    }),
  );
}

/** A PROXY protocol v2 header (PROXY command, TCP over IPv4) claiming `src`: what a spoofer would send. */
function proxyV2(src: string, dst = '127.0.0.1', srcPort = 40000, dstPort = 80): Buffer {
  const sig = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
  const addr = Buffer.alloc(12);
  src.split('.').forEach((o, i) => (addr[i] = Number(o)));
  dst.split('.').forEach((o, i) => (addr[4 + i] = Number(o)));
  addr.writeUInt16BE(srcPort, 8);
  addr.writeUInt16BE(dstPort, 10);
  return Buffer.concat([sig, Buffer.from([0x21, 0x11, 0, 12]), addr]);
}

/** A raw plain-TCP HTTP request from `localAddress`, optionally led by `prefix`; the JSON body back. */
function rawRequest(port: number, localAddress: string, head: string, prefix?: Buffer): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port, localAddress });
    let acc = '';
    s.on('data', (d: Buffer) => (acc += d.toString('latin1')));
    s.on('end', () => {
      const at = acc.indexOf('\r\n\r\n');
      if (!acc.startsWith('HTTP/1.1 200') || at < 0) reject(new Error(`echo answered ${JSON.stringify(acc)}`));
      else resolve(JSON.parse(acc.slice(at + 4)) as Seen);
    });
    s.on('error', reject);
    s.write(prefix ? Buffer.concat([prefix, Buffer.from(head)]) : head);
  });
}

describe("the client's address a backend sees through haproxy", () => {
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let xff: TlsProxy;
  let tcp: TlsProxy;
  const trusted = new ClientAddress(['127.0.0.1/32']);

  before(async () => {
    echo = await startEcho();
    xff = await startTlsProxy(echo.port, 'http');
    tcp = await startTlsProxy(echo.port, 'tcp');
  });
  after(async () => {
    await xff?.stop();
    await tcp?.stop();
    if (echo) uws.us_listen_socket_close(echo.listen);
  });

  const seenVia = async (proxy: TlsProxy, call: Call): Promise<Seen> => {
    const r = await https(proxy, '/whoami', call);
    assert.equal(r.status, 200, r.body.toString());
    return JSON.parse(r.body.toString()) as Seen;
  };

  it('mode http: X-Forwarded-For carries the client (127.0.0.1), and resolve yields it', async () => {
    const s = await seenVia(xff, {});
    assert.equal(s.peer, '127.0.0.1');
    assert.equal(s.xff, '127.0.0.1');
    assert.equal(trusted.resolve(s.peer, s.xff ?? undefined), '127.0.0.1');
  });

  it('mode http: a client at 127.0.0.3 sending its own X-Forwarded-For is seen as 127.0.0.3', async () => {
    const s = await seenVia(xff, { localAddress: '127.0.0.3', headers: { 'x-forwarded-for': '6.6.6.6' } });
    assert.equal(s.peer, '127.0.0.1', 'the peer is haproxy');
    // deploy/haproxy.cfg drops the client's header before adding its own.
    assert.equal(s.xff, '127.0.0.3');
    assert.equal(s.proxied, '', 'no PROXY header in mode http');
    assert.equal(trusted.resolve(s.peer, s.xff ?? undefined), '127.0.0.3');
    // Not trusting haproxy: the peer itself.
    assert.equal(new ClientAddress([]).resolve(s.peer, s.xff ?? undefined), '127.0.0.1');
  });

  it('mode http: a wss upgrade carries X-Forwarded-For too', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${xff.port}/ws`, { ca: xff.caPem, localAddress: '127.0.0.3' });
    const msg = await new Promise<Seen & { wsPeer: string }>((resolve, reject) => {
      ws.once('message', (d: Buffer) => resolve(JSON.parse(d.toString()) as Seen & { wsPeer: string }));
      ws.once('error', reject);
    });
    ws.terminate();
    assert.equal(msg.wsPeer, '127.0.0.1');
    assert.equal(trusted.resolve(msg.peer, msg.xff ?? undefined), '127.0.0.3');
  });

  it('mode tcp: the PROXY v2 address is the client; the headers are the client’s own, untouched', async () => {
    const s = await seenVia(tcp, { localAddress: '127.0.0.3', headers: { 'x-forwarded-for': '6.6.6.6' } });
    assert.equal(s.peer, '127.0.0.1');
    assert.equal(s.proxied, '127.0.0.3');
    assert.equal(trusted.resolveProxied(s.peer, s.proxied), '127.0.0.3');
    // haproxy in mode tcp passes the client's header through: behind it, X-Forwarded-For must not be read.
    assert.equal(s.xff, '6.6.6.6');
    const ws = new WebSocket(`wss://127.0.0.1:${tcp.port}/ws`, { ca: tcp.caPem, localAddress: '127.0.0.3' });
    const msg = await new Promise<Seen>((resolve, reject) => {
      ws.once('message', (d: Buffer) => resolve(JSON.parse(d.toString()) as Seen));
      ws.once('error', reject);
    });
    ws.terminate();
    assert.equal(trusted.resolveProxied(msg.peer, msg.proxied), '127.0.0.3');
  });

  it('an untrusted peer spoofing both X-Forwarded-For and a PROXY v2 header is seen as itself', async () => {
    const head = 'GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n';
    // uWS believes a PROXY header from anyone: the spoof reaches getProxiedRemoteAddressAsText.
    const s = await rawRequest(echo.port, '127.0.0.2', head, proxyV2('6.6.6.7'));
    assert.equal(s.peer, '127.0.0.2');
    assert.equal(s.proxied, '6.6.6.7');
    assert.equal(s.xff, '6.6.6.6');
    assert.equal(trusted.resolveProxied(s.peer, s.proxied), '127.0.0.2');
    assert.equal(trusted.resolve(s.peer, s.xff ?? undefined), '127.0.0.2');
  });

  it('two X-Forwarded-For headers: getHeader sees only the first (the client’s), forwardedFor both', async () => {
    const head =
      'GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n' +
      'X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 198.51.100.4\r\n\r\n';
    const s = await rawRequest(echo.port, '127.0.0.1', head);
    assert.equal(s.first, '6.6.6.6');
    assert.equal(s.xff, '6.6.6.6, 198.51.100.4');
    assert.equal(trusted.resolve(s.peer, s.xff ?? undefined), '198.51.100.4');
  });
});
