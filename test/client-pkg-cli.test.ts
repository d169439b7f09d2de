/**
 * kvgate-cli (packages/client's `bin`, dist/cli.cjs) run as a child process against real gateways:
 *  - set from stdin, then get: the exact bytes (binary, past 16 KiB); flags kept; del; a miss exits 1;
 *  - mget streams NDJSON: the first result is out before stdin ends; hits (UTF-8 and base64), misses,
 *    keys the gateway refuses (BAD_KEY) and lines that are not keys (BAD_INPUT);
 *  - bench for 2 s: progress lines on stderr, a JSON summary whose ops the gateway's own
 *    /debug/stats ws.requests counter covers;
 *  - usage errors exit 2, an unreachable gateway 3 (CONNECTION_FAILED);
 *  - with authentication on: --token-file and KVGATE_TOKEN work, a wrong or missing token exits 3 with
 *    UNAUTHORIZED (and the token is never printed).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type KvClient } from '@kvgate/client/node';
import { adminJson, startHarness, type Harness } from './helpers/harness';
import { Authenticator } from '../src/security/authenticator';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'packages/client/dist/cli.cjs');

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

const cleanEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env };
  delete env.KVGATE_URL;
  delete env.KVGATE_TOKEN;
  delete env.NODE_V8_COVERAGE;
  return env;
};

/** Asynchronous: the gateway runs in this process and must keep answering. */
function cli(args: string[], input: string | Buffer = '', env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...cleanEnv(), ...env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.end(input);
  });
}

const lines = (b: Buffer): Record<string, unknown>[] =>
  b
    .toString('utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('kvgate-cli against a gateway', () => {
  let h: Harness;
  let c: KvClient;
  let url: string[];
  const p = `cli:${randomBytes(4).toString('hex')}:`;
  before(async () => {
    h = await startHarness({}, 3);
    c = await connect(h.wsUrl);
    url = ['--url', h.wsUrl];
  });
  after(async () => {
    await c?.close();
    await h?.stop();
  });

  it('is built as an executable with a shebang, outside the browser build', () => {
    assert.ok(readFileSync(CLI, 'utf8').startsWith('#!/usr/bin/env node\n'));
    assert.ok(statSync(CLI).mode & 0o111, 'executable');
    const pkg = JSON.parse(readFileSync(join(ROOT, 'packages/client/package.json'), 'utf8')) as {
      bin: Record<string, string>;
    };
    assert.equal(pkg.bin['kvgate-cli'], 'dist/cli.cjs');
    const browser = readFileSync(join(ROOT, 'packages/client/dist/kvgate-client.min.mjs'), 'utf8');
    for (const marker of ['kvgate-cli:', 'unexpected-response', 'SIGINT']) assert.ok(!browser.includes(marker), marker);
  });

  it('set from stdin, get prints the exact bytes (binary, past 16 KiB); flags; del; a miss exits 1', async () => {
    const value = randomBytes(100 * 1024 + 7);
    const set = await cli([...url, 'set', `${p}bin`, '--flags', '7', '--ttl', '600'], value);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout.length, 0);
    const got = await cli(['get', `${p}bin`], '', { KVGATE_URL: h.wsUrl });
    assert.equal(got.code, 0, got.stderr);
    assert.ok(got.stdout.equals(value), `got ${got.stdout.length} bytes`);
    const item = await c.getItem(`${p}bin`);
    assert.ok(item.hit && item.flags === 7);

    const del = await cli([...url, 'del', `${p}bin`]);
    assert.equal(del.code, 0, del.stderr);
    const again = await cli([...url, 'del', `${p}bin`]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not found/);
    const miss = await cli([...url, 'get', `${p}bin`]);
    assert.equal(miss.code, 1);
    assert.equal(miss.stdout.length, 0);
    assert.match(miss.stderr, /not found/);
    const empty = await cli([...url, 'set', `${p}empty`], '');
    assert.equal(empty.code, 0, empty.stderr);
    const e = await cli([...url, 'get', `${p}empty`]);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(e.stdout.length, 0);
    // A key the gateway refuses: its code, exit 3.
    const bad = await cli([...url, 'get', 'has space']);
    assert.equal(bad.code, 3);
    assert.match(bad.stderr, /BAD_KEY/);
  });

  it('mget streams NDJSON: results before stdin ends; hits, base64, misses, bad keys, bad lines', async () => {
    await c.set(`${p}a`, 'alpha', { flags: 3 });
    await c.set(`${p}b`, new Uint8Array([0xff, 0x00, 0xfe]));
    await c.set(`${p}big`, 'x'.repeat(40 * 1024));
    // Streaming: the first key's line comes back while stdin is still open.
    const child = spawn(process.execPath, [CLI, ...url, 'mget'], { env: cleanEnv() });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
    const closed = new Promise<number | null>((r) => child.on('close', r));
    child.stdin.write(JSON.stringify(`${p}a`) + '\n');
    const t0 = Date.now();
    while (!out.includes('\n') && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(JSON.parse(out.split('\n')[0]), { key: `${p}a`, value: 'alpha', flags: 3 }, err);
    const rest = [
      JSON.stringify({ key: `${p}b` }),
      '',
      JSON.stringify(`${p}none`),
      JSON.stringify('has space'),
      '{oops',
      '42',
      JSON.stringify(`${p}big`),
    ];
    child.stdin.end(rest.join('\n') + '\n');
    assert.equal(await closed, 0, err);
    const got = lines(Buffer.from(out));
    const byKey = new Map(got.filter((l) => 'key' in l).map((l) => [l.key as string, l]));
    assert.equal(got.length, 7); // five keys, two lines that are not keys
    assert.deepEqual(byKey.get(`${p}b`), { key: `${p}b`, base64: Buffer.from([0xff, 0, 0xfe]).toString('base64') });
    assert.deepEqual(byKey.get(`${p}none`), { key: `${p}none`, miss: true });
    assert.equal((byKey.get('has space')?.error as { code: string }).code, 'BAD_KEY');
    assert.equal(byKey.get(`${p}big`)?.value, 'x'.repeat(40 * 1024));
    const badLines = got.filter((l) => !('key' in l));
    assert.deepEqual(
      badLines.map((l) => [l.line, (l.error as { code: string }).code]),
      [
        [6, 'BAD_INPUT'],
        [7, 'BAD_INPUT'],
      ],
    );

    // Many keys: every one answered once, in bounded batches.
    const keys = Array.from({ length: 5000 }, (_, i) => `${p}many:${i}`);
    await c.mset(keys.filter((_, i) => i % 2 === 0).map((key) => ({ key, value: key })));
    const many = await cli([...url, 'mget'], keys.map((k) => JSON.stringify({ key: k })).join('\n'));
    assert.equal(many.code, 0, many.stderr);
    const res = lines(many.stdout);
    assert.equal(res.length, keys.length);
    assert.equal(new Set(res.map((r) => r.key)).size, keys.length);
    for (const r of res) {
      const i = Number(String(r.key).split(':').pop());
      if (i % 2 === 0) assert.equal(r.value, r.key);
      else assert.equal(r.miss, true);
    }
  });

  it('bench for 2 s: progress lines on stderr, a JSON summary the gateway counters cover', async () => {
    const before = ((await adminJson(h.gw, '/debug/stats')).ws as { requests: number }).requests;
    const t0 = Date.now();
    const r = await cli([
      ...url,
      'bench',
      '--seconds',
      '2',
      '--concurrency',
      '16',
      '--keys',
      '200',
      '--value-bytes',
      '64',
      '--set-ratio',
      '0.2',
      '--json',
    ]);
    const took = Date.now() - t0;
    assert.equal(r.code, 0, r.stderr);
    const after = ((await adminJson(h.gw, '/debug/stats')).ws as { requests: number }).requests;
    const progress = r.stderr.split('\n').filter((l) => /ops\/s p50 [\d.]+ ms p99 [\d.]+ ms errors \d+$/.test(l));
    assert.ok(progress.length >= 1, r.stderr);
    const s = JSON.parse(r.stdout.toString('utf8')) as {
      ops: number;
      gets: number;
      sets: number;
      hits: number;
      errors: number;
      seconds: number;
      opsPerSec: number;
      latencyMs: { p50: number; p99: number };
    };
    assert.ok(s.ops > 0);
    assert.equal(s.errors, 0);
    assert.equal(s.gets + s.sets, s.ops);
    assert.equal(s.hits, s.gets, 'the keys were written first');
    assert.ok(s.sets > 0 && s.gets > s.sets);
    assert.ok(s.seconds >= 1.9 && s.seconds < 4, String(s.seconds));
    assert.ok(s.latencyMs.p50 > 0 && s.latencyMs.p99 >= s.latencyMs.p50);
    // Every op was one request at the gateway (the preloading msets are a few more).
    assert.ok(after - before >= s.ops, `gateway ${after - before} requests, cli ${s.ops} ops`);
    assert.ok(after - before <= s.ops + 10, `gateway ${after - before} requests, cli ${s.ops} ops`);
    assert.ok(took < 10_000);

    const text = await cli([...url, 'bench', '--seconds', '0.5', '--concurrency', '2']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout.toString(), /^kvgate-cli bench: [\d.]+ s, \d+ ops \(\d+ ops\/s;.*p99 .* 0 errors\n$/);
  });

  it('usage errors exit 2; --help exits 0; an unreachable gateway exits 3', async () => {
    for (const args of [
      [],
      ['frob'],
      ['get'],
      ['get', 'a', 'b'],
      ['set', 'k', '--ttl', 'abc'],
      ['set', 'k', '--flags', '-1'],
      ['get', 'k', '--ttl', '5'],
      ['bench', '--concurrency', '0'],
      ['bench', '--set-ratio', '2'],
      ['get', 'k', '--nope'],
      ['get', 'k', '--url'],
      ['get', 'k', '--url', 'http://x'],
      ['mget', 'k'],
      ['get', 'k', '--json'],
      ['get', 'k', '--token', 'a', '--token-file', '/nonexistent'],
      ['get', 'k', '--token-file', '/nonexistent'],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^kvgate-cli: .*--help for usage/, args.join(' '));
    }
    const help = await cli(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout.toString(), /kvgate-cli get KEY/);
    const down = await cli(['--url', 'ws://127.0.0.1:1/v1/ws', 'get', 'k']);
    assert.equal(down.code, 3);
    assert.match(down.stderr, /CONNECTION_FAILED.*ECONNREFUSED/);
  });
});

describe('kvgate-cli with authentication on', () => {
  let h: Harness;
  let dir: string;
  const key = `kvg_cli_${randomBytes(16).toString('hex')}`;
  before(async () => {
    h = await startHarness({
      security: {
        auth: {
          mode: 'required',
          apiKeys: [{ id: 'cli', hash: Authenticator.hashKey(key), namespace: 'cli:', perms: 'all' }],
        },
      },
    });
    dir = mkdtempSync(join(tmpdir(), 'kvgate-cli-'));
  });
  after(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('--token-file and KVGATE_TOKEN work; a wrong or missing token exits 3 with UNAUTHORIZED', async () => {
    const file = join(dir, 'token');
    writeFileSync(file, key + '\n');
    const value = randomBytes(20_000);
    const set = await cli(['--url', h.wsUrl, '--token-file', file, 'set', 'k'], value);
    assert.equal(set.code, 0, set.stderr);
    const get = await cli(['get', 'k'], '', { KVGATE_URL: h.wsUrl, KVGATE_TOKEN: key });
    assert.equal(get.code, 0, get.stderr);
    assert.ok(get.stdout.equals(value));
    const viaOption = await cli(['--url', h.wsUrl, '--token', key, 'mget'], '"k"\n"nope"\n');
    assert.equal(viaOption.code, 0, viaOption.stderr);
    assert.equal(lines(viaOption.stdout).length, 2);

    const wrong = `kvg_cli_${randomBytes(16).toString('hex')}`;
    for (const args of [
      ['--token', wrong, 'get', 'k'],
      ['--token', wrong, 'bench', '--seconds', '1'],
      ['get', 'k'],
    ]) {
      const r = await cli(['--url', h.wsUrl, ...args]);
      assert.equal(r.code, 3, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /UNAUTHORIZED/);
      assert.ok(!r.stderr.includes(wrong) && !r.stdout.toString().includes(wrong), 'the token is not printed');
      assert.equal(r.stdout.length, 0);
    }
  });
});
