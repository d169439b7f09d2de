/**
 * What npm publishes of @kvgate/client works when installed: `npm pack` of packages/client, installed
 * offline into an empty temporary project, then imported there from ESM (`import`) and CommonJS
 * (`require`), both entries. Node 20 has no global WebSocket, so the browser entry is checked by
 * constructing a client with a WebSocket class given as an option; the /node entry opens a real connection
 * to a gateway through the `ws` peer (linked from this repository's node_modules, as an installed peer).
 * And a page in headless Chromium imports the installed package by its name (an import map pointing at the
 * installed `dist/index.mjs`, as a browser app without a bundler would) and talks to the gateway with it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';
import { startHarness, type Harness } from './helpers/harness';
import { browserSkip, startBrowser } from './helpers/browser';

const ROOT = join(__dirname, '..', '..');

/** The page of an app without a bundler: an import map names where the installed package's ESM build is. */
const APP_PAGE =
  '<!doctype html><html><head><meta charset="utf-8"><title>app</title><script type="importmap">' +
  '{"imports":{"@kvgate/client":"/node_modules/@kvgate/client/dist/index.mjs"}}</script></head><body></body></html>';

/** Serves the app's page and, read-only, the files of the installed app directory under it. */
async function startAppServer(app: () => string): Promise<{ origin: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(APP_PAGE);
      return;
    }
    const file = normalize(join(app(), path));
    if (!file.startsWith(join(app(), 'node_modules')) || !file.endsWith('.mjs')) {
      res.writeHead(404);
      res.end();
      return;
    }
    try {
      const body = readFileSync(file);
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

describe('npm pack of @kvgate/client, installed into an empty project', () => {
  let dir: string;
  let h: Harness;
  let site: { origin: string; close(): Promise<void> };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kvgate-client-pack-'));
    const out = execFileSync('npm', ['pack', '--pack-destination', dir, '--json', join(ROOT, 'packages/client')], {
      encoding: 'utf8',
    });
    const tgz = (JSON.parse(out) as { filename: string }[])[0].filename;
    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', join(dir, tgz)], {
      cwd: app,
      stdio: 'pipe',
    });
    symlinkSync(join(ROOT, 'node_modules', 'ws'), join(app, 'node_modules', 'ws'));
    site = await startAppServer(() => app);
    h = await startHarness({ security: { allowedOrigins: [site.origin] } }, 1);
  });
  after(async () => {
    await h?.stop();
    await site?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ships dist/ (bundles, .d.ts, the browser build) and the README, not the sources', () => {
    const pkg = join(dir, 'app', 'node_modules', '@kvgate', 'client');
    const files = readdirSync(join(pkg, 'dist'));
    for (const f of [
      'index.mjs',
      'index.cjs',
      'index.d.ts',
      'node.mjs',
      'node.cjs',
      'node.d.ts',
      'kvgate-client.min.mjs',
      'cli.cjs',
    ])
      assert.ok(files.includes(f), `${f} is shipped`);
    assert.deepEqual(readdirSync(pkg).sort(), ['README.md', 'dist', 'package.json']);
  });

  // Asynchronous: the gateway runs in this process and must keep answering while the script runs.
  const run = async (file: string, code: string): Promise<string> => {
    writeFileSync(join(dir, 'app', file), code);
    const { stdout } = await promisify(execFile)(process.execPath, [file], {
      cwd: join(dir, 'app'),
      encoding: 'utf8',
      env: { ...process.env, WS: h.wsUrl },
      timeout: 20_000,
    });
    return stdout.trim();
  };

  const body = `
    class FakeWs { constructor(url, protocols) { FakeWs.made = [url, protocols]; } close() {} }
    const c = new main.KvClient('ws://example.invalid/v1/ws', { WebSocket: FakeWs, token: 'tok' });
    c.start().catch(() => {});
    const real = await node.connect(process.env.WS);
    await real.set('pack:k', 'from ' + kind);
    const v = new TextDecoder().decode(await real.get('pack:k'));
    await real.close();
    console.log(JSON.stringify({ kind, made: FakeWs.made, v, err: new main.KvError('BUSY', 'x').retry,
      http: typeof main.createHttpClient('http://x').mget }));`;

  it('imports from ESM', async () => {
    const out = await run(
      'esm.mjs',
      `import * as main from '@kvgate/client'; import * as node from '@kvgate/client/node'; const kind = 'esm';${body}`,
    );
    assert.deepEqual(JSON.parse(out), {
      kind: 'esm',
      made: ['ws://example.invalid/v1/ws', ['kvgate.v1', 'kvgate.bearer.tok']],
      v: 'from esm',
      err: 'after',
      http: 'function',
    });
  });

  it('requires from CommonJS', async () => {
    const out = await run(
      'cjs.cjs',
      `const main = require('@kvgate/client'); const node = require('@kvgate/client/node'); const kind = 'cjs';
       (async () => {${body}})();`,
    );
    assert.equal(JSON.parse(out).v, 'from cjs');
    assert.deepEqual(JSON.parse(out).made, ['ws://example.invalid/v1/ws', ['kvgate.v1', 'kvgate.bearer.tok']]);
  });

  it('a page in Chromium imports the installed package by name and uses it', { skip: browserSkip() }, async () => {
    const kit = await startBrowser();
    try {
      const context = await kit.browser.newContext();
      const page = await context.newPage();
      page.setDefaultTimeout(15_000);
      await page.goto(`${site.origin}/`);
      // Through Function: tsc (CommonJS output) would turn a plain import() into require().
      const got = await page.evaluate(async (ws: string) => {
        const load = new Function('u', 'return import(u)') as (u: string) => Promise<typeof import('@kvgate/client')>;
        const m = await load('@kvgate/client');
        const c = await m.connect(ws);
        await c.set('pack:browser', new Uint8Array([0, 1, 254, 255]));
        const v = await c.get('pack:browser');
        const miss = await c.get('pack:browser:absent');
        await c.close();
        return {
          v: v === null ? null : Array.from(v),
          miss,
          native: typeof (globalThis as Record<string, unknown>).WebSocket,
        };
      }, h.wsUrl);
      assert.deepEqual(got, { v: [0, 1, 254, 255], miss: null, native: 'function' });
      await context.close();
    } finally {
      await kit.close();
    }
  });

  it('installs the kvgate-cli bin (node_modules/.bin), which talks to a gateway', async () => {
    const bin = join(dir, 'app', 'node_modules', '.bin', 'kvgate-cli');
    const exec = promisify(execFile);
    const env = { ...process.env, KVGATE_URL: h.wsUrl };
    const help = await exec(bin, ['--help'], { env, encoding: 'utf8', timeout: 20_000 });
    assert.match(help.stdout, /kvgate-cli get KEY/);
    const mget = await new Promise<string>((resolve, reject) => {
      const child = execFile(bin, ['mget'], { env, encoding: 'utf8', timeout: 20_000 }, (e, stdout) =>
        e ? reject(e) : resolve(stdout),
      );
      child.stdin?.end('"pack:k"\n"pack:absent"\n');
    });
    const got = mget
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string; miss?: boolean });
    assert.deepEqual(
      got.find((l) => l.key === 'pack:absent'),
      { key: 'pack:absent', miss: true },
    );
    assert.ok(got.some((l) => l.key === 'pack:k'));
  });
});
