/**
 * `npm run bench` (scripts/bench.sh): the whole benchmark suite on loopback. Starts a local memcached fleet,
 * runs every scenario against every peer, writes bench/results/<stamp>-<scenario>.json and bench/RESULTS.md
 * with SVG charts, and stops everything it started.
 *
 *   npm run bench                      full run (about 28 minutes)
 *   npm run bench -- --quick           quick run (under 2 minutes)
 *   npm run bench -- --only 'ws-get'   scenarios whose name matches a regular expression
 *   npm run bench -- --only flow       the flow-control scenarios (bench/suite/flow.ts), about 2.5 minutes
 *   options: --runs N --seconds S --warmup S --keys N --workers N --noise-limit PCT --retries N --retry-budget N
 *            --pin-gateway CPUS --pin-loadgen CPUS --pin-memcached CPUS --no-pin --no-profile --no-micro
 *            --tag NAME (result files <stamp>-<scenario>-NAME.json) --report PATH
 *            --auth on|off (default on, or KVGATE_BENCH_AUTH: kvgate requires the bench's API key, bench/suite/auth.ts)
 * A run with --only writes its report to bench/results/<stamp>-report.md, so that a partial run never
 * replaces the full run's bench/RESULTS.md.
 */
import { mkdirSync, writeFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { LocalFleet } from '../src/fleet/local-fleet';
import { killAll } from './lib/proc';
import { machine, versions, ROOT } from './suite/env';
import { Peers, PEER_LABEL } from './suite/peers';
import { Runner } from './suite/runner';
import { runC10k } from './suite/c10k';
import { runFlow } from './suite/flow';
import { runRedis } from './suite/redis';
import { runMetricsCost } from './suite/metrics-cost';
import { runAuthCost } from './suite/auth-cost';
import { profileGateway, allocProfile, type ProfileResult } from './suite/profile';
import { fullScenarios, quickScenarios } from './suite/scenarios';
import { writeReport, type MicroResult } from './report/report';
import type { Env, PeerResult, ScenarioResult, SuiteSettings } from './suite/types';

const argv = process.argv.slice(2);
const flag = (n: string): boolean => argv.includes(`--${n}`);
const opt = (n: string): string | undefined => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? argv[i + 1] : undefined;
};

function stampNow(): string {
  const d = new Date();
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}${p(d.getMinutes())}`;
}

function log(msg: string): void {
  const t = ((performance.now() - t0) / 1000).toFixed(0).padStart(4);
  process.stdout.write(`[${t}s] ${msg}\n`);
}

const t0 = performance.now();

async function main(): Promise<void> {
  const quick = flag('quick');
  const cores = machine().cores;
  // --spread-load: the load generator's processes run on every core (the front stays on its own), so the
  // generator is not the limit; the front's CPU per key is read from /proc either way.
  const spreadLoad = flag('spread-load');
  const pin =
    flag('no-pin') || cores < 2
      ? { gateway: '', loadgen: '', memcached: '' }
      : {
          gateway: opt('pin-gateway') ?? '0',
          loadgen: opt('pin-loadgen') ?? (spreadLoad ? `0-${cores - 1}` : String(cores - 1)),
          memcached: opt('pin-memcached') ?? '',
        };
  const auth = opt('auth') ?? process.env.KVGATE_BENCH_AUTH ?? 'on';
  if (auth !== 'on' && auth !== 'off') throw new Error(`--auth ${auth}: on or off`);
  const settings: SuiteSettings = {
    mode: quick ? 'quick' : 'full',
    runs: Number(opt('runs') ?? 3),
    seconds: Number(opt('seconds') ?? (quick ? 1 : 3)),
    warmupSeconds: Number(opt('warmup') ?? (quick ? 0.5 : 1)),
    keyCount: Number(opt('keys') ?? (quick ? 5000 : 10000)),
    fleet: { count: 3, memoryMb: 1024, threads: 1 },
    pin,
    loadgenWorkers: Number(opt('workers') ?? (spreadLoad ? 2 * cores : 2)),
    noiseLimitPct: Number(opt('noise-limit') ?? 25),
    maxRetries: Number(opt('retries') ?? (quick ? 1 : 2)),
    retryBudget: Number(opt('retry-budget') ?? (quick ? 6 : 40)),
    localAddresses: Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`),
    command: `npm run bench --${argv.length ? ' ' + argv.join(' ') : ''}`.replace(/ --$/, ''),
    auth,
  };
  if (settings.runs < 3) log(`warning: --runs ${settings.runs}: the issue asks for medians of at least 3 runs`);
  const only = opt('only');
  let scenarios = quick ? quickScenarios() : fullScenarios();
  if (only) scenarios = scenarios.filter((s) => new RegExp(only).test(s.name));
  const stamp = stampNow();
  const tag = opt('tag');
  if (tag !== undefined && !/^[a-z0-9][a-z0-9-]*$/.test(tag))
    throw new Error(`--tag ${tag}: lower-case letters, digits and dashes only`);
  const resultsDir = join(ROOT, 'bench', 'results');
  const reportPath =
    opt('report') ?? (only ? join(resultsDir, `${stamp}-report.md`) : join(ROOT, 'bench', 'RESULTS.md'));
  const tmpDir = join(resultsDir, 'tmp');
  mkdirSync(tmpDir, { recursive: true });
  const env: Env = { machine: machine(), versions: versions(), settings };
  log(
    `kvgate bench (${settings.mode}), stamp ${stamp}: ${scenarios.length} scenarios, ${settings.runs} x ${settings.seconds} s windows; ` +
      `pinning: gateway cpu ${pin.gateway || 'any'}, load generator cpu ${pin.loadgen || 'any'}, memcached ${pin.memcached || 'any'}; ` +
      `kvgate auth ${auth === 'on' ? 'on (API key, namespace bench:, rules)' : 'off'}`,
  );

  const fleet = await LocalFleet.start({ ...settings.fleet, itemSizeMb: 2 });
  if (pin.memcached)
    for (const m of fleet.members) spawnSync('taskset', ['-p', '-c', pin.memcached, String(m.proc?.pid)]);
  log(
    `memcached fleet: ${fleet
      .servers()
      .map((s) => `${s.host}:${s.port}`)
      .join(', ')}`,
  );
  const peers = new Peers(fleet, settings, tmpDir);
  const runner = new Runner(peers, settings, log);
  const results: ScenarioResult[] = [];
  let profile: ProfileResult | undefined;
  let micro: MicroResult[] | undefined;
  try {
    for (const sc of scenarios) {
      const started = new Date();
      const st = performance.now();
      log(`${sc.name}: ${sc.title}`);
      let peerResults: PeerResult[] = [];
      let extra: Record<string, unknown> | undefined;
      try {
        if (sc.kind === 'load') {
          for (const p of sc.peers) peerResults.push(await guard(p, () => runner.loadPeer(sc, p)));
        } else if (sc.kind === 'wrk') {
          for (const p of sc.peers) peerResults.push(await guard(p, () => runner.wrkPeer(sc, p)));
        } else if (sc.kind === 'curve' && sc.curve) {
          const { flag: f, values } = sc.curve;
          for (const v of values) {
            log(`  --${f} ${v}`);
            const r = await guard('kvgate', () => runner.loadPeer(sc, 'kvgate', [`--${f}`, String(v)]));
            r.x = v;
            r.label = f === 'window-ms' && v === 0 ? 'end of turn' : `${v}${f === 'window-ms' ? ' ms' : ''}`;
            peerResults.push(r);
          }
        } else if (sc.kind === 'c10k') {
          const r = await runC10k(runner, sc, log);
          peerResults = r.peers;
          extra = r.extra as unknown as Record<string, unknown>;
        } else if (sc.kind === 'flow') {
          extra = (await runFlow(runner, sc, log)) as unknown as Record<string, unknown>;
        } else if (sc.kind === 'redis') {
          extra = (await runRedis(runner, sc, log, tmpDir)) as unknown as Record<string, unknown>;
        } else if (sc.kind === 'metrics') {
          extra = (await runMetricsCost(runner, sc, log)) as unknown as Record<string, unknown>;
        } else if (sc.kind === 'auth') {
          extra = (await runAuthCost(runner, sc, log)) as unknown as Record<string, unknown>;
        }
      } catch (e) {
        log(`  ${sc.name} failed: ${(e as Error).message}`);
        extra = { error: (e as Error).message };
      }
      const res: ScenarioResult = {
        suite: 'kvgate-bench',
        stamp,
        scenario: sc,
        env,
        startedAt: started.toISOString(),
        wallSeconds: (performance.now() - st) / 1000,
        peers: peerResults,
        extra,
        ...(tag ? { tag } : {}),
      };
      results.push(res);
      writeFileSync(
        join(resultsDir, `${stamp}-${sc.name}${tag ? `-${tag}` : ''}.json`),
        JSON.stringify(res, null, 1) + '\n',
      );
    }

    if (!flag('no-profile') && !only) {
      const sc = quick ? quickScenarios()[0] : fullScenarios().find((s) => s.name === 'ws-get-c1000')!;
      log(`profile: kvgate under ${sc.name} with --cpu-prof`);
      try {
        profile = await profileGateway(runner, sc, quick ? 2 : 5, tmpDir);
        log(
          `  top: ${profile.top
            .slice(0, 5)
            .map((e) => `${e.fn} ${e.selfPct.toFixed(1)}%`)
            .join(', ')}`,
        );
        log(`allocation profile: kvgate under ${sc.name} with V8's sampling heap profiler`);
        try {
          profile.alloc = await allocProfile(runner, sc, quick ? 2 : 4, tmpDir);
          log(
            `  top: ${profile.alloc.top
              .slice(0, 3)
              .map((e) => `${e.fn} ${e.bytesPct.toFixed(1)}%`)
              .join(', ')}`,
          );
        } catch (e) {
          log(`  allocation profile failed: ${(e as Error).message}`);
        }
        writeFileSync(
          join(resultsDir, `${stamp}-profile.json`),
          JSON.stringify({ stamp, env, profile }, null, 1) + '\n',
        );
      } catch (e) {
        log(`  profile failed: ${(e as Error).message}`);
      }
    }
  } finally {
    await fleet.stop();
  }

  if (!flag('no-micro') && !only) {
    micro = runMicro(quick);
    writeFileSync(join(resultsDir, `${stamp}-micro.json`), JSON.stringify({ stamp, env, micro }, null, 1) + '\n');
  }

  const wall = (performance.now() - t0) / 1000;
  const report = writeReport({ stamp, env, results, profile, micro, wallSeconds: wall, resultsDir, reportPath });
  log(
    `wrote ${report.files.length} chart(s), ${results.length} result file(s) and ${relative(ROOT, reportPath)} in ${wall.toFixed(0)} s`,
  );
  for (const t of report.targets)
    log(`  target: ${t.met === true ? 'MET    ' : t.met === false ? 'NOT MET' : 'n/a    '} ${t.name}: ${t.figure}`);
}

async function guard(peer: string, fn: () => Promise<PeerResult>): Promise<PeerResult> {
  try {
    return await fn();
  } catch (e) {
    log(`  ${PEER_LABEL[peer as keyof typeof PEER_LABEL] ?? peer} failed: ${(e as Error).message.split('\n')[0]}`);
    return {
      peer: peer as PeerResult['peer'],
      skipped: `failed: ${(e as Error).message.split('\n')[0]}`,
      runs: [],
      summary: {},
    };
  }
}

/** Runs every compiled bench/micro/*.bench.js, each in its own process. */
function runMicro(quick: boolean): MicroResult[] {
  const dir = join(ROOT, 'dist', 'bench', 'micro');
  let files: string[] = [];
  try {
    files = readdirSync(dir)
      .filter((f) => f.endsWith('.bench.js'))
      .sort();
  } catch {
    return [];
  }
  const out: MicroResult[] = [];
  for (const f of files) {
    log(`micro: ${f}`);
    const r = spawnSync(process.execPath, [join(dir, f)], {
      encoding: 'utf8',
      timeout: quick ? 30_000 : 120_000,
      env: { ...process.env, BENCH_QUICK: quick ? '1' : '' },
    });
    const results = microRows(`${r.stdout ?? ''}`);
    out.push({
      file: `bench/micro/${f.replace(/\.js$/, '.ts')}`,
      status: r.status === 0 ? 'ok' : r.error ? `failed: ${r.error.message}` : `exit ${r.status}`,
      results,
      text: results.length ? undefined : `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().slice(0, 2000),
    });
  }
  return out;
}

const METRICS = new Set(['opsPerSec', 'nsPerOp', 'nsPerLookup', 'note', 'name']);

/** Rows from a micro-benchmark's stdout: one JSON document with `results` (ketama.bench.ts, harness.ts) or JSON lines. */
function microRows(stdout: string): Record<string, unknown>[] {
  let rows: Record<string, unknown>[] = [];
  try {
    const doc = JSON.parse(stdout) as { results?: Record<string, unknown>[]; skipped?: string };
    rows = doc.results ?? [];
    if (doc.skipped) rows.push({ name: 'skipped', note: doc.skipped });
  } catch {
    rows = stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return null;
        }
      })
      .filter((x): x is Record<string, unknown> => x !== null);
  }
  return rows.map((r) => {
    const name =
      typeof r.name === 'string'
        ? r.name
        : Object.entries(r)
            .filter(([k]) => !METRICS.has(k) && !/PerSec$/.test(k))
            .map(([k, v]) => (k === 'what' ? String(v) : `${k} ${String(v)}`))
            .join(', ');
    const ops = typeof r.opsPerSec === 'number' ? r.opsPerSec : NaN;
    const ns =
      typeof r.nsPerOp === 'number'
        ? r.nsPerOp
        : typeof r.nsPerLookup === 'number'
          ? r.nsPerLookup
          : Number.isFinite(ops)
            ? 1e9 / ops
            : NaN;
    return { ...r, name, opsPerSec: ops, nsPerOp: ns };
  });
}

main().then(
  () => {
    killAll();
    process.exit(0);
  },
  (e) => {
    console.error(e);
    killAll();
    process.exit(1);
  },
);
