/**
 * @kvgate/client's browser build (packages/client/dist/kvgate-client.min.mjs) in a real headless Chromium
 * (test/helpers/browser.ts), served by a static server of the test's own and imported by a page of another
 * origin, against a real gateway (startHarness) that lists the page's 127.0.0.1 origin in
 * security.allowedOrigins: every op over WebSocket and HTTP, binary values past 16 KiB, 1,000 calls in one
 * tick as one frame (counted at the gateway), abort, timeout; a connection cut while requests are held at
 * the gateway and a real gateway restart (behind a TCP proxy, as behind a load balancer), which the page
 * lives through; the same page under localhost (not listed) cannot connect.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startHarness, until, type Harness } from './helpers/harness';
import { browserSkip, startBrowser, type BrowserKit } from './helpers/browser';
import { startTcpProxy } from './helpers/tcp-proxy';
import { mergeConfig, validateConfig } from '../src/config/schema';
import { startGateway, type Gateway } from '../src/gateway';

type ClientModule = typeof import('@kvgate/client');

const BUNDLE = join(__dirname, '..', '..', 'packages', 'client', 'dist', 'kvgate-client.min.mjs');

/** Serves the browser build, with CORS open (a page of another origin imports it as a module). */
async function startStatic(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.url === '/kvgate-client.min.mjs') {
      res.writeHead(200, { 'content-type': 'text/javascript', 'access-control-allow-origin': '*' });
      res.end(readFileSync(BUNDLE));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/kvgate-client.min.mjs`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

interface PageArg {
  module: string;
  ws: string;
  base: string;
  prefix: string;
}

// Page functions are serialised into the page, so each imports the build itself, through Function: tsc
// (CommonJS output) would turn a plain import() into require().
async function everyOp(arg: PageArg): Promise<Record<string, unknown>> {
  const m = await (new Function('u', 'return import(u)') as (u: string) => Promise<ClientModule>)(arg.module);
  const out: Record<string, unknown> = {};
  const text = (b: Uint8Array | null): string | null => (b === null ? null : new TextDecoder().decode(b));
  const fill = (n: number, seed: number): Uint8Array => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
    return b;
  };
  const eq = (a: Uint8Array | null, b: Uint8Array): boolean =>
    a !== null && a.length === b.length && a.every((x, i) => x === b[i]);
  const c = await m.connect(arg.ws, { timeoutMs: 10_000 });
  const p = arg.prefix;
  await c.set(`${p}a`, 'hello', { flags: 3 });
  out.get = text(await c.get(`${p}a`));
  out.getItem = await c.getItem(`${p}a`).then((r) => (r.hit ? r.flags : -1));
  out.miss = await c.get(`${p}absent`);
  out.del = [await c.del(`${p}a`), await c.del(`${p}a`)];
  out.mset = await c.mset([
    { key: `${p}m1`, value: 'one' },
    { key: `${p}m2`, value: new Uint8Array([0, 255]) },
  ]);
  const mg = await c.mget([`${p}m1`, `${p}m2`, `${p}none`]);
  out.mget = mg.map((r) => ('hit' in r ? (r.hit ? Array.from(r.value) : 'miss') : r.error.code));
  const seen: number[] = [];
  for await (const it of c.mgetIter([`${p}m1`, `${p}m2`, `${p}none`])) seen.push(it.i);
  out.mgetIter = seen.sort();
  out.mdel = await c.mdel([`${p}m1`, `${p}none`]);
  const sizes = [0, 1, 16 * 1024, 16 * 1024 + 1, 50_000, 300_000];
  await Promise.all(sizes.map((n, i) => c.set(`${p}size:${n}`, fill(n, i))));
  out.sizes = await Promise.all(sizes.map(async (n, i) => eq(await c.get(`${p}size:${n}`), fill(n, i))));
  // 1,000 calls in one tick.
  const f0 = c.stats.framesSent;
  const many = await Promise.all(Array.from({ length: 1000 }, (_, i) => c.set(`${p}b:${i}`, `v${i}`)));
  out.batchFrames = c.stats.framesSent - f0;
  out.batchOk = many.length;
  const back = await Promise.all(Array.from({ length: 1000 }, (_, i) => c.get(`${p}b:${i}`)));
  out.batchBack = back.every((v, i) => text(v) === `v${i}`);
  // Abort: before sending, and after (held at the gateway by the wait hint).
  const ctl = new AbortController();
  ctl.abort();
  out.abortBefore = await c.get(`${p}x`, { signal: ctl.signal }).then(
    () => 'resolved',
    (e: InstanceType<ClientModule['KvError']>) => `${e.code}/${e.retry}`,
  );
  const ctl2 = new AbortController();
  const held = c.set(`${p}held`, 'x', { wait: 1500, signal: ctl2.signal });
  setTimeout(() => ctl2.abort(), 50);
  out.abortAfter = await held.then(
    () => 'resolved',
    (e: InstanceType<ClientModule['KvError']>) => `${e.code}/${e.maybeApplied}`,
  );
  const t0 = Date.now();
  out.timeout = await c.get(`${p}x`, { wait: 1500, timeout: 100 }).then(
    () => 'resolved',
    (e: InstanceType<ClientModule['KvError']>) => `${e.code}/${e.source}`,
  );
  out.timeoutMs = Date.now() - t0;
  out.isKvError = await c.set('bad key', 'x').then(
    () => false,
    (e: unknown) => e instanceof m.KvError && (e as InstanceType<ClientModule['KvError']>).code === 'BAD_KEY',
  );
  await c.close();
  // HTTP, cross-origin through CORS.
  const http = m.createHttpClient(arg.base);
  await http.set(`${p}h`, fill(40_000, 9));
  out.httpGet = eq(await http.get(`${p}h`), fill(40_000, 9));
  out.httpMiss = await http.get(`${p}h:absent`);
  const hm = await http.mget([`${p}h`, `${p}h:absent`]);
  out.httpMget = hm.map((r) => ('hit' in r ? r.hit : r.error.code));
  out.httpMset = await http.mset([{ key: `${p}h2`, value: 'x' }], { format: 'ndjson' });
  out.httpDel = await http.del(`${p}h2`);
  return out;
}

async function batchOnly(arg: PageArg): Promise<number> {
  const m = await (new Function('u', 'return import(u)') as (u: string) => Promise<ClientModule>)(arg.module);
  const c = await m.connect(arg.ws);
  const got = await Promise.all(Array.from({ length: 1000 }, (_, i) => c.get(`${arg.prefix}b:${i}`)));
  await c.close();
  return got.filter((v) => v !== null).length;
}

/** The Node side of `acrossRestart`: what the page asks the test to do, and waits for. (A type, not an
 * interface: it must fit PageHooks's index signature.) */
type RestartHooks = {
  /** Resolves once `n` more requests than at the previous call reached the gateway. */
  requestsAtGateway(n: number): Promise<void>;
  /** Drops the connection (no close frame), as a network would. */
  cut(): Promise<void>;
  /** Drains the gateway (its clients get 1001) and stops it. */
  stopGateway(): Promise<void>;
  /** Starts a new gateway over the same fleet, behind the same proxy address. */
  startGateway(): Promise<void>;
};

async function acrossRestart(arg: PageArg): Promise<Record<string, unknown>> {
  const m = await (new Function('u', 'return import(u)') as (u: string) => Promise<ClientModule>)(arg.module);
  const g = globalThis as unknown as RestartHooks;
  const text = (b: Uint8Array | null): string | null => (b === null ? null : new TextDecoder().decode(b));
  const failure = (e: InstanceType<ClientModule['KvError']>): string => `${e.code}/${e.maybeApplied}/${e.retry}`;
  const out: Record<string, unknown> = {};
  const p = arg.prefix;
  const c = await m.connect(arg.ws, { timeoutMs: 10_000, reconnect: { minMs: 20, maxMs: 200, jitter: 0.5 } });
  await c.set(`${p}r:k`, 'before');
  await g.requestsAtGateway(0);
  // Both held at the gateway (the wait hint) when the connection drops.
  const get = c.get(`${p}r:k`, { wait: 2000 });
  const set = c.set(`${p}r:w`, 'maybe', { wait: 2000 });
  await g.requestsAtGateway(2);
  await g.cut();
  out.setInFlight = await set.then(() => 'resolved', failure);
  out.getInFlight = text(await get);
  out.reconnectedAfterCut = c.stats.reconnects >= 1;
  const reconnects = c.stats.reconnects;
  await g.stopGateway();
  // The close reaches the page a moment after the gateway has stopped: wait for the client to see it.
  for (let t = 0; t < 500 && c.stats.state === 'open'; t++) await new Promise((r) => setTimeout(r, 10));
  out.stateWhileDown = c.stats.state;
  const during = c.get(`${p}r:k`); // asked while no gateway listens
  await g.startGateway();
  out.getWhileDown = text(await during);
  await c.set(`${p}r:k`, 'after');
  out.afterRestart = text(await c.get(`${p}r:k`));
  out.reconnectedAfterRestart = c.stats.reconnects > reconnects;
  out.state = c.stats.state;
  await c.close();
  out.afterClose = await c.get(`${p}r:k`).then(() => 'resolved', failure);
  return out;
}

async function connectOutcome(arg: PageArg): Promise<string> {
  const m = await (new Function('u', 'return import(u)') as (u: string) => Promise<ClientModule>)(arg.module);
  return m.connect(arg.ws).then(
    async (c) => {
      await c.close();
      return 'connected';
    },
    (e: InstanceType<ClientModule['KvError']>) => e.code,
  );
}

const skip = browserSkip();

describe('@kvgate/client in Chromium', { skip }, () => {
  let kit: BrowserKit;
  let h: Harness;
  let files: { url: string; close(): Promise<void> };
  const prefix = `br:${Date.now()}:`;
  let arg: PageArg;

  before(async () => {
    [kit, files] = await Promise.all([startBrowser(), startStatic()]);
    h = await startHarness({ security: { allowedOrigins: [kit.pageOrigin()] }, batch: { maxWaitMs: 3000 } }, 2);
    arg = { module: files.url, ws: h.wsUrl, base: h.base, prefix };
  });
  after(async () => {
    await Promise.all([kit?.close(), h?.stop(), files?.close()]);
  });

  it('every op, binary values past 16 KiB, 1,000 batched calls, abort and timeout, and HTTP', async () => {
    const r = await kit.run(everyOp, arg);
    assert.deepEqual(r, {
      get: 'hello',
      getItem: 3,
      miss: null,
      del: [true, false],
      mset: [{ ok: true }, { ok: true }],
      mget: [[111, 110, 101], [0, 255], 'miss'],
      mgetIter: [0, 1, 2],
      mdel: [{ deleted: true }, { deleted: false }],
      sizes: [true, true, true, true, true, true],
      batchFrames: 1,
      batchOk: 1000,
      batchBack: true,
      abortBefore: 'ABORTED/after',
      abortAfter: 'ABORTED/true',
      timeout: 'TIMEOUT/client',
      timeoutMs: r.timeoutMs,
      isKvError: true,
      httpGet: true,
      httpMiss: null,
      httpMget: [true, false],
      httpMset: [{ ok: true }],
      httpDel: true,
    });
    assert.ok((r.timeoutMs as number) >= 100 && (r.timeoutMs as number) < 1000, `timeout took ${r.timeoutMs} ms`);
  });

  it('1,000 gets issued in one tick arrive at the gateway as one frame', async () => {
    const before = h.gw.ws.counters.messages;
    assert.equal(await kit.run(batchOnly, arg), 1000);
    assert.equal(h.gw.ws.counters.messages - before, 1);
  });

  it('a page lives through a dropped connection and a gateway restart: gets resent, writes maybe applied', async () => {
    const config = validateConfig(mergeConfig(h.config, { shutdown: { drainMs: 2000 } }));
    let gw: Gateway | undefined = await startGateway(config);
    const proxy = await startTcpProxy(() => gw?.port ?? 1);
    let mark = gw.ws.counters.requests;
    const hooks: RestartHooks = {
      async requestsAtGateway(n) {
        await until(() => gw!.ws.counters.requests - mark >= n, 5000, `${n} requests at the gateway`);
        mark = gw!.ws.counters.requests;
      },
      cut: async () => proxy.cut(),
      async stopGateway() {
        const old = gw!;
        gw = undefined;
        await old.drain();
        await old.stop();
      },
      async startGateway() {
        gw = await startGateway(config);
      },
    };
    try {
      const r = await kit.run(acrossRestart, { ...arg, ws: `ws://127.0.0.1:${proxy.port}/v1/ws` }, '127.0.0.1', hooks);
      assert.deepEqual(r, {
        setInFlight: 'CONNECTION_CLOSED/true/idempotent',
        getInFlight: 'before',
        reconnectedAfterCut: true,
        stateWhileDown: 'reconnecting',
        getWhileDown: 'before',
        afterRestart: 'after',
        reconnectedAfterRestart: true,
        state: 'open',
        afterClose: 'CLOSED/false/no',
      });
    } finally {
      await proxy.close();
      await gw?.stop();
    }
  });

  it('a page of an origin the gateway does not list cannot connect', async () => {
    assert.equal(await kit.run(connectOutcome, arg), 'connected');
    assert.equal(await kit.run(connectOutcome, arg, 'localhost'), 'CONNECTION_FAILED');
  });
});
