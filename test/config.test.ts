/**
 * Configuration from the outside: every bad flag and every bad config-file setting is named in one run, with
 * the flag or the file that gave it, and the process exits 2 without starting anything. Also the `kvgate`
 * launcher (bin/kvgate) and how defaults, file and flags combine.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, defaultConfig, mergeConfig, validateConfig } from '../src/config/schema';
import { loadConfig } from '../src/main';
import { testConfig } from './helpers/harness';

const ROOT = join(__dirname, '..', '..');
const MAIN = join(ROOT, 'dist', 'src', 'main.js');
const BIN = join(ROOT, 'bin', 'kvgate');

/**
 * Runs the CLI to its exit. A run that wrongly started would listen until killed: the timeout turns that into
 * a failure (SIGTERM drains and stops any local fleet it started) instead of a hang.
 */
function cli(args: string[], entry = MAIN): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', timeout: 20_000, killSignal: 'SIGTERM' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The "  - " lines of a ConfigError message (one per problem). */
const problemLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('  - '));

function withFile<T>(content: unknown, fn: (file: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'kvgate-config-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  try {
    return fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, not ${String(e)}`);
    return e.problems.map((p) => p.text);
  }
  assert.fail('expected a ConfigError');
}

describe('configuration: every bad setting named at once', () => {
  it('the CLI names each bad flag in one run and exits 2 without starting', () => {
    const r = cli(['--max-ops', 'abc', '--window-ms', '-5', '--hash', 'sha1', '--bogus', '1', '--port']);
    assert.equal(r.status, 2, `exit code; stderr: ${r.stderr}`);
    const lines = problemLines(r.stderr);
    for (const flag of [
      '--max-ops "abc"',
      '--window-ms "-5"',
      '--hash "sha1"',
      'unknown flag --bogus',
      '--port needs a value',
    ]) {
      assert.equal(lines.filter((l) => l.includes(flag)).length, 1, `${flag} named once in: ${r.stderr}`);
    }
    assert.equal(lines.length, 5, `one line per problem: ${r.stderr}`);
    assert.doesNotMatch(r.stdout, /listening|local fleet/, 'nothing was started');
  });

  it('names the flag and the setting it sets when a flag value is out of range', () => {
    const r = cli(['--max-ops=0', '--max-bytes', '10', '--port', '70000']);
    assert.equal(r.status, 2, r.stderr);
    const lines = problemLines(r.stderr);
    assert.ok(
      lines.some((l) => l.includes('--max-ops "0"') && l.includes('batch.maxOps')),
      r.stderr,
    );
    assert.ok(
      lines.some((l) => l.includes('--max-bytes "10"') && l.includes('batch.maxBytes')),
      r.stderr,
    );
    assert.ok(
      lines.some((l) => l.includes('--port "70000"') && l.includes('port must be')),
      r.stderr,
    );
    assert.equal(lines.length, 3, r.stderr);
  });

  it('names every bad browser-safety entry at once (security.allowedOrigins, security.allowedHosts)', () => {
    const raw = mergeConfig(testConfig(), {
      security: { allowedOrigins: ['http://x/path', 'ftp://y', 'https://ok.example'], allowedHosts: [3] },
    });
    const e = (() => {
      try {
        validateConfig(raw);
      } catch (err) {
        return err as ConfigError;
      }
      return null;
    })();
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(
      e.problems.map((p) => p.path),
      ['security.allowedOrigins[0]', 'security.allowedOrigins[1]', 'security.allowedHosts[0]'],
    );
  });

  it('names every bad server of --servers, not only the first', () => {
    const r = cli(['--servers', 'a:1,nohost,c:x:2,d:1:0,e:2']);
    assert.equal(r.status, 2, r.stderr);
    const lines = problemLines(r.stderr);
    for (const at of ['servers[1]', 'servers[2]', 'servers[3].weight']) {
      assert.ok(
        lines.some((l) => l.includes('--servers') && l.includes(at)),
        `${at} in: ${r.stderr}`,
      );
    }
    assert.equal(lines.length, 3, r.stderr);
  });

  it('names bad and unknown config-file fields (at any depth) together with bad flags, each with its source', () => {
    const content = {
      port: 'eighty',
      batch: { maxOps: 0, windwMs: 3 },
      ws: 5,
      servers: [{ host: 'h', port: 1, wieght: 2 }, null],
      typo: true,
    };
    withFile(content, (file) => {
      const r = cli(['--config', file, '--hash', 'sha1', '--nope=1']);
      assert.equal(r.status, 2, r.stderr);
      const lines = problemLines(r.stderr);
      const expect = [
        [file, 'port must be'],
        [file, 'batch.maxOps'],
        [file, 'unknown setting "batch.windwMs"'],
        [file, 'ws must be an object'],
        [file, 'unknown setting "servers[0].wieght"'],
        [file, 'servers[1] must be'],
        [file, 'unknown setting "typo"'],
        ['--hash "sha1"', 'hash must be'],
        ['unknown flag --nope', ''],
      ];
      for (const [source, what] of expect) {
        assert.ok(
          lines.some((l) => l.includes(source) && l.includes(what)),
          `"${source}" "${what}" in: ${r.stderr}`,
        );
      }
      // `ws: 5` is one problem, not one per ws field.
      assert.equal(lines.length, expect.length, r.stderr);
    });
  });

  it('an unreadable or non-JSON --config file is named along with the bad flags', () => {
    withFile('{ "port": 1,', (file) => {
      const r = cli(['--config', file, '--max-ops', 'x']);
      assert.equal(r.status, 2, r.stderr);
      const lines = problemLines(r.stderr);
      assert.ok(
        lines.some((l) => l.includes(`--config ${file}: not valid JSON`)),
        r.stderr,
      );
      assert.ok(
        lines.some((l) => l.includes('--max-ops "x"')),
        r.stderr,
      );
    });
    const missing = join(tmpdir(), 'kvgate-no-such-dir', 'config.json');
    const r = cli(['--config', missing, 'stray']);
    assert.equal(r.status, 2, r.stderr);
    assert.ok(
      problemLines(r.stderr).some((l) => l.includes(`--config ${missing}: cannot read it`)),
      r.stderr,
    );
    assert.ok(
      problemLines(r.stderr).some((l) => l.includes('unexpected argument "stray"')),
      r.stderr,
    );
  });

  it('validateConfig names unknown nested keys and __proto__, and a non-object section once', () => {
    const over = JSON.parse('{"limits": {"maxConections": 5}, "shard": [1], "__proto__": {"x": 1}}');
    const problems = problemsOf(() => validateConfig(mergeConfig(testConfig(), over)));
    assert.deepEqual(problems.sort(), [
      'shard must be an object of settings (got [1])',
      'unknown setting "__proto__"',
      'unknown setting "limits.maxConections"',
    ]);
  });

  it('defaults, then the file, then the flags: a good setup loads', () => {
    withFile({ batch: { maxOps: 7, maxWaitMs: 80 }, servers: [{ host: '10.0.0.9', port: 11211 }] }, (file) => {
      const c = loadConfig([
        '--config',
        file,
        '--max-ops=9',
        '--window-ms',
        '20',
        '--servers',
        '10.0.0.1:11211:2,10.0.0.2:11212',
      ]);
      assert.equal(c.batch.maxOps, 9, 'the flag overrides the file');
      assert.equal(c.batch.maxWaitMs, 80, 'the file overrides the default');
      assert.equal(c.batch.windowMs, 20);
      assert.equal(c.batch.maxBytes, defaultConfig().batch.maxBytes);
      assert.deepEqual(
        c.servers.map((s) => [s.host, s.port, s.weight]),
        [
          ['10.0.0.1', 11211, 2],
          ['10.0.0.2', 11212, 1],
        ],
      );
    });
  });
});

describe('kvgate launcher (bin/kvgate)', () => {
  it('runs the CLI: --help exits 0 with the usage, a bad flag exits 2 naming it', () => {
    const help = cli(['--help'], BIN);
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^usage: kvgate /);
    const bad = cli(['--max-ops', 'abc', '--hash', 'sha1'], BIN);
    assert.equal(bad.status, 2, bad.stderr);
    assert.equal(problemLines(bad.stderr).length, 2, bad.stderr);
  });
});

describe('package.json', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

  it('main and exports resolve to built files that export the public API', () => {
    // Self-reference by name goes through "exports", as a dependent's require('kvgate') would.
    const load = createRequire(__filename);
    assert.equal(load.resolve('kvgate'), join(ROOT, pkg.main));
    const api = load('kvgate');
    for (const name of [
      'startGateway',
      'validateConfig',
      'defaultConfig',
      'loadConfig',
      'ConfigError',
      'GatewayError',
    ]) {
      assert.equal(typeof api[name], 'function', `kvgate exports ${name}`);
    }
    assert.equal(typeof api.ErrorTable.BAD_KEY.status, 'number');
    // The client is its own package (@kvgate/client); the server neither exports one nor depends on ws.
    assert.throws(() => load.resolve('kvgate/client'), /ERR_PACKAGE_PATH_NOT_EXPORTED|not exported/);
    assert.equal((pkg.dependencies as Record<string, string>).ws, undefined, 'ws is not a server dependency');
    assert.ok(existsSync(join(ROOT, pkg.types)), `${pkg.types} is built`);
  });

  it('bin kvgate is a node script, and engines allow only Node majors the uWS binding ships a binary for', () => {
    const bin = readFileSync(join(ROOT, pkg.bin.kvgate), 'utf8');
    assert.ok(bin.startsWith('#!/usr/bin/env node\n'), 'shebang');
    const majors = /^\^(\d+)$/.exec(pkg.engines.node);
    assert.ok(majors, `engines.node is one major (^N): ${pkg.engines.node}`);
    // Node's module ABI (process.versions.modules) per major, as the binary names carry it.
    const abiOf: Record<string, string> = { '16': '93', '18': '108', '20': '115', '22': '127' };
    const abi = abiOf[majors[1]];
    const binaries = readdirSync(join(ROOT, 'node_modules', '@trufflesuite', 'uws-js-unofficial', 'binaries'));
    assert.ok(binaries.includes(`uws_${process.platform}_${process.arch}_${abi}.node`), `a binary for ABI ${abi}`);
    assert.equal(process.version.split('.')[0], `v${majors[1]}`, 'this test runs on the Node that engines names');
  });
});

describe('--help and --print-config', () => {
  it('--help lists every flag with the default of the setting it sets', () => {
    const r = cli(['--help']);
    assert.equal(r.status, 0, r.stderr);
    const d = defaultConfig();
    for (const [flag, shown] of [
      ['--port', String(d.port)],
      ['--admin-port', String(d.admin.port)],
      ['--admin-host', d.admin.host],
      ['--log-level', d.log.level],
      ['--workers', String(d.workers)],
      ['--failure-mode', d.failure.mode],
      ['--max-ops', String(d.batch.maxOps)],
      ['--window-ms', String(d.batch.windowMs)],
    ]) {
      const line = r.stdout.split('\n').find((l) => l.trimStart().startsWith(`${flag} `));
      assert.ok(line, `${flag} is listed`);
      assert.ok(line.endsWith(`(default: ${shown})`), `${flag} shows its default ${shown}: ${line}`);
    }
    for (const flag of ['--config', '--servers', '--hash', '--print-config', '--max-bytes', '--max-wait-ms'])
      assert.match(r.stdout, new RegExp(`^  ${flag} `, 'm'));
  });

  it('--print-config prints the effective configuration, flags and file merged, and starts nothing', () => {
    withFile({ batch: { maxOps: 77 }, failure: { mode: 'eject' } }, (file) => {
      const r = cli(['--config', file, '--port', '8123', '--log-level', 'warn', '--print-config']);
      assert.equal(r.status, 0, r.stderr);
      const c = JSON.parse(r.stdout);
      assert.equal(c.port, 8123);
      assert.equal(c.batch.maxOps, 77);
      assert.equal(c.log.level, 'warn');
      assert.equal(c.failure.mode, 'eject');
      assert.equal(c.failure.failureLimit, defaultConfig().failure.failureLimit, 'defaults filled in');
      assert.doesNotMatch(r.stdout + r.stderr, /listening|local fleet/);
    });
    const bad = cli(['--print-config', '--workers', 'many', '--log-level', 'loud', '--admin-port', '8080']);
    assert.equal(bad.status, 2);
    const lines = problemLines(bad.stderr);
    assert.equal(lines.length, 3, bad.stderr);
    assert.ok(lines.some((l) => /workers must be "auto" or an integer/.test(l)));
    assert.ok(lines.some((l) => /log\.level must be one of/.test(l)));
    assert.ok(lines.some((l) => /admin\.port \(8080\) must differ from port/.test(l)));
  });
});
