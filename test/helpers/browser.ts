/**
 * A real headless Chromium for tests: Debian's /usr/bin/chromium driven by playwright-core (which never
 * downloads a browser of its own here), one browser per test file (`startBrowser()` in `before`,
 * `close()` in `after`). Pages are served by a node:http server of the test's own on 127.0.0.1:0, so a page
 * is of another origin than whatever the test points it at: `http://127.0.0.1:<pagePort>` and
 * `http://localhost:<pagePort>` are two origins, and each differs from `http://127.0.0.1:<gateway port>`.
 *
 * `startRecorder()` is a second server that records every request and WebSocket upgrade it gets (headers
 * and body) and answers without any CORS header, as the gateway does today: what a browser sends can be
 * seen there, where the gateway itself shows nothing.
 *
 * Everything stays on loopback: the browser runs with the background networking it would do off
 * (component updates, sync, QUIC), and a fresh temporary profile of Playwright's, removed on close.
 */
import { chromium, type Browser } from 'playwright-core';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { WebSocketServer } from 'ws';
import { until } from './harness';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Why the browser tests cannot run on this machine, for `describe(..., { skip })`; false when they can.
 * Only a machine without Chromium where we are not root skips: as root, scripts/test.sh installs Debian's
 * chromium first, and a run without it (the test started some other way) fails in `startBrowser` saying so.
 */
export function browserSkip(path = CHROMIUM, uid = process.getuid?.()): string | false {
  if (existsSync(path)) return false;
  if (uid === 0) return false;
  return `${path} is missing and we are not root to install it: sudo apt-get install -y chromium (Debian's package)`;
}

/** Node functions a page may call by name, through `BrowserKit.run`'s `hooks`. */
export type PageHooks = Record<string, (...args: never[]) => unknown>;

/** The name a page is served under: two names of one server are two origins. */
export type PageHost = '127.0.0.1' | 'localhost';

export interface BrowserKit {
  browser: Browser;
  /** Port of the server the pages come from. */
  pagePort: number;
  /** `http://<host>:<pagePort>`: the Origin a page served under `host` sends. */
  pageOrigin(host?: PageHost): string;
  /**
   * Runs `fn(arg)` in a blank page served under `host` (default 127.0.0.1), in a browser context of its
   * own (nothing cached from another run: cookies, preflight answers), and returns its result (which must
   * be JSON-like, as page.evaluate carries it). `fn` is serialised into the page: it may use only its
   * argument and the page's globals, and must bound its own waits.
   *
   * `hooks` are Node functions the page can call as `globalThis[name](...args)` (Playwright's
   * exposeFunction: each call returns a promise of the hook's JSON-like result), so a page can ask the test
   * to act at a moment of its choosing (restart the gateway, cut a connection) and wait until it has.
   */
  run<R, A>(fn: (arg: A) => R | Promise<R>, arg: A, host?: PageHost, hooks?: PageHooks): Promise<R>;
  close(): Promise<void>;
}

const PAGE =
  '<!doctype html><html><head><meta charset="utf-8"><title>kvgate browser test</title></head><body></body></html>';

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

export async function startBrowser(): Promise<BrowserKit> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `${CHROMIUM} is missing: scripts/test.sh installs it (bash scripts/ensure-system.sh chromium); ` +
        "run the browser tests through it, or install Debian's chromium first",
    );
  const pages = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  const pagePort = await listen(pages);
  let browser: Browser;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30_000 });
  } catch (e) {
    await closeServer(pages);
    throw e;
  }
  const pageOrigin = (host: PageHost = '127.0.0.1'): string => `http://${host}:${pagePort}`;
  return {
    browser,
    pagePort,
    pageOrigin,
    async run<R, A>(
      fn: (arg: A) => R | Promise<R>,
      arg: A,
      host: PageHost = '127.0.0.1',
      hooks: PageHooks = {},
    ): Promise<R> {
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        for (const [name, hook] of Object.entries(hooks)) await page.exposeFunction(name, hook);
        page.setDefaultTimeout(15_000);
        const res = await page.goto(`${pageOrigin(host)}/`);
        if (res === null || res.status() !== 200) throw new Error(`page ${pageOrigin(host)}/ did not load`);
        // Playwright types the argument as it arrives (`Unboxed<A>`); the data we pass is plain JSON, the same.
        return await page.evaluate(fn as (a: unknown) => R | Promise<R>, arg as unknown);
      } finally {
        await context.close();
      }
    },
    async close() {
      await browser.close();
      await closeServer(pages);
    },
  };
}

/**
 * The browser globals page scripts use beyond what Node has too (the project compiles against Node's types,
 * without the DOM library): a page function reads them as `globalThis as unknown as PageGlobals`, which
 * compiles to plain `globalThis` and so works in the page.
 */
export interface PageGlobals {
  WebSocket: new (url: string) => PageWebSocket;
  location: { origin: string; href: string };
}

/** The part of a browser WebSocket the page scripts use. */
export interface PageWebSocket {
  binaryType: 'blob' | 'arraybuffer';
  readonly readyState: number;
  onopen: (() => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: (() => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  send(data: Uint8Array | string): void;
  close(): void;
}

/** One request (or WebSocket upgrade) a recorder got. */
export interface Recorded {
  upgrade: boolean;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Recorder {
  port: number;
  /** `http://127.0.0.1:<port><path>` */
  url(path: string): string;
  /** `ws://127.0.0.1:<port><path>` */
  wsUrl(path: string): string;
  /** Everything recorded so far, in arrival order (an HTTP request once its body has ended). */
  readonly seen: Recorded[];
  /** Polls until a recorded request matches, then returns it; fails after `ms`. */
  waitFor(match: (r: Recorded) => boolean, what: string, ms?: number): Promise<Recorded>;
  close(): Promise<void>;
}

/**
 * A server that records what comes and answers like a server without CORS: HTTP requests get 200
 * `recorded` (an `OPTIONS` too, with no `Access-Control-*` header, so a preflight fails), and WebSocket
 * upgrades complete (any Origin) and send one text message, `hello`.
 */
export async function startRecorder(): Promise<Recorder> {
  const seen: Recorded[] = [];
  const wss = new WebSocketServer({ noServer: true });
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      seen.push({
        upgrade: false,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(parts).toString('utf8'),
      });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('recorded');
    });
  });
  server.on('upgrade', (req, socket, head) => {
    seen.push({ upgrade: true, method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '' });
    wss.handleUpgrade(req, socket, head, (ws) => ws.send('hello'));
  });
  const port = await listen(server);
  return {
    port,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    wsUrl: (path) => `ws://127.0.0.1:${port}${path}`,
    seen,
    async waitFor(match, what, ms = 5000) {
      let hit: Recorded | undefined;
      await until(() => (hit = seen.find(match)) !== undefined, ms, what);
      return hit!;
    },
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      await closeServer(server);
    },
  };
}
