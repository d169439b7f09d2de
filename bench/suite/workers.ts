/**
 * `workers` (issue 9 item 6): keys/s and the front's CPU per key with 1 and 2 gateway workers, standalone:
 *   node_modules/.bin/tsc -p bench && node dist/bench/suite/workers.js [--seconds 5] [--runs 3] [--auth on|off]
 * Writes bench/results/<stamp>-workers.json and prints a table.
 *
 * Pinned as the suite pins on a 2-core machine (bench/run.ts): the load generator on the last core, the
 * gateway on core 0, memcached anywhere. Two workers have one core each only if the gateway may use both
 * cores, and then the worker on the last core shares it with the load generator: the table shows the load
 * generator's CPU and the machine's idle share, so what the second core gave is visible rather than
 * assumed. The "2 workers, core 0" row is the cost of two processes on one core.
 * The front's CPU is the supervisor's and every worker's (user + system, /proc/<pid>/stat) over each window.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalFleet, freePort } from '../../src/fleet/local-fleet';
import { LoadGen, type LoadSample } from '../loadgen';
import { machineCpu, machineSnap, procSnap } from '../lib/proc';
import { ROOT, machine, versions } from './env';
import { ADMIN_HEADERS, describeAuth, kvgateSecurity, suiteVariant, tokenFor, type AuthVariant } from './auth';

interface Case {
  name: string;
  workers: number;
  /** taskset CPU list of the gateway (the supervisor and its workers inherit it). */
  gatewayCpus: string;
}

interface Window {
  keysPerSec: number;
  p99Ms: number;
  errors: number;
  badValues: number;
  frontCpuPct: number;
  frontUsPerKey: number;
  loadgenCpuPct: number;
  /** The three memcached together (fewer keys per multi-get when the gets are split over workers). */
  memcachedCpuPct: number;
  machineProcPct: number;
  machineIrqPct: number;
  machineIdlePct: number;
}

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
};
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)];
};

async function startGateway(
  c: Case,
  servers: { host: string; port: number }[],
  auth: AuthVariant,
): Promise<{ proc: ChildProcess; port: number; pids: number[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'kvgate-bench-workers-'));
  const file = join(dir, 'config.json');
  const port = await freePort();
  const adminPort = await freePort();
  writeFileSync(
    file,
    JSON.stringify({
      host: '127.0.0.1',
      port,
      admin: { host: '127.0.0.1', port: adminPort },
      servers,
      workers: c.workers,
      log: { level: 'warn' },
      security: kvgateSecurity(auth),
    }),
  );
  const main = join(ROOT, 'dist', 'src', 'main.js');
  const proc = spawn('taskset', ['-c', c.gatewayCpus, process.execPath, main, '--config', file], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // Ready when the admin listener answers /readyz 200 (log level warn: no listening line).
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`the gateway exited (${proc.exitCode}) before it was ready`);
    try {
      const r = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('the gateway was not ready within 20 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  let pids = [proc.pid ?? 0];
  if (c.workers > 1) {
    const stats = (await (
      await fetch(`http://127.0.0.1:${adminPort}/debug/stats`, { headers: ADMIN_HEADERS })
    ).json()) as Record<string, { pid: number }>;
    pids = [...pids, ...Object.values(stats).map((w) => w.pid)];
  }
  return { proc, port, pids };
}

async function measureCase(
  c: Case,
  fleet: LocalFleet,
  o: {
    seconds: number;
    runs: number;
    conns: number;
    depth: number;
    loadgenCpus: string;
    loadgenWorkers: number;
    auth: AuthVariant;
  },
): Promise<{ windows: Window[]; median: Window }> {
  const gw = await startGateway(c, fleet.servers(), o.auth);
  const token = tokenFor(o.auth);
  const gen = await LoadGen.start({
    proto: 'ws',
    target: { host: '127.0.0.1', port: gw.port, ...(token === undefined ? {} : { token }) },
    servers: [],
    ceiling: false,
    conns: o.conns,
    depth: o.depth,
    op: 'get',
    getPct: 100,
    bulk: 1,
    keyCount: 10_000,
    valueSize: 100,
    localAddresses: [],
    connectConcurrency: 64,
    wsPath: '/v1/ws',
    workers: o.loadgenWorkers,
    cpus: o.loadgenCpus,
  });
  const windows: Window[] = [];
  try {
    await gen.preload();
    gen.run(0);
    await gen.measure(2000); // warm-up
    const cores = cpus().length;
    for (let r = 0; r < o.runs; r++) {
      const mcPids = fleet.members.map((m) => m.proc?.pid ?? 0);
      const before = gw.pids.map(procSnap);
      const mc0 = mcPids.map(procSnap);
      const m0 = machineSnap();
      const s: LoadSample = await gen.measure(o.seconds * 1000);
      const after = gw.pids.map(procSnap);
      const mc1 = mcPids.map(procSnap);
      const m = machineCpu(m0, machineSnap(), cores);
      const cpuSec = after.reduce((n, a, k) => n + a.cpuSec - before[k].cpuSec, 0);
      const wall = (after[0].at - before[0].at) / 1000;
      windows.push({
        keysPerSec: s.keysPerSec,
        p99Ms: s.p99Ms,
        errors: s.errorCount,
        badValues: s.badValues,
        frontCpuPct: (cpuSec / wall) * 100,
        frontUsPerKey: (cpuSec * 1e6) / s.keys,
        loadgenCpuPct: s.cpuPct,
        memcachedCpuPct: (mc1.reduce((n, a, k) => n + a.cpuSec - mc0[k].cpuSec, 0) / wall) * 100,
        machineProcPct: m.procPct,
        machineIrqPct: m.irqPct,
        machineIdlePct: Math.max(0, cores * 100 - m.procPct - m.irqPct - m.stealPct),
      });
    }
  } finally {
    await gen.pause();
    await gen.close();
    gw.proc.kill('SIGKILL');
  }
  const med = Object.fromEntries(
    (Object.keys(windows[0]) as (keyof Window)[]).map((k) => [k, median(windows.map((w) => w[k]))]),
  ) as unknown as Window;
  return { windows, median: med };
}

async function main(): Promise<void> {
  const cores = cpus().length;
  const last = String(cores - 1);
  const all = cores > 1 ? `0-${last}` : '0';
  const o = {
    seconds: Number(arg('seconds', '5')),
    runs: Number(arg('runs', '3')),
    conns: Number(arg('conns', '200')),
    depth: Number(arg('depth', '8')),
    loadgenCpus: last,
    loadgenWorkers: 2,
    auth: suiteVariant(arg('auth', process.env.KVGATE_BENCH_AUTH ?? 'on') === 'off' ? 'off' : 'on'),
  };
  const cases: Case[] = [
    { name: '1 worker, core 0', workers: 1, gatewayCpus: '0' },
    { name: '2 workers, core 0', workers: 2, gatewayCpus: '0' },
    { name: `2 workers, cores ${all}`, workers: 2, gatewayCpus: all },
  ];
  const fleet = await LocalFleet.start({ count: 3, memoryMb: 64, threads: 1 });
  const results: { case: Case; windows: Window[]; median: Window }[] = [];
  try {
    for (const c of cases) {
      process.stdout.write(`${c.name}: `);
      const r = await measureCase(c, fleet, o);
      results.push({ case: c, ...r });
      console.log(`${Math.round(r.median.keysPerSec)} keys/s`);
    }
  } finally {
    await fleet.stop();
  }
  const stamp = new Date().toISOString().slice(0, 16).replace(/:/g, '').replace('T', 'T');
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `${stamp}-workers.json`);
  writeFileSync(
    out,
    JSON.stringify(
      {
        scenario: 'workers',
        what: `WebSocket single-key gets, 100 B values, ${o.conns} connections x ${o.depth} in flight, 10,000 keys`,
        settings: {
          ...o,
          auth: describeAuth(o.auth),
          loadgenPinned: o.loadgenCpus,
          memcached: '3 x 1 thread, unpinned',
        },
        machine: machine(),
        versions: versions(),
        results,
      },
      null,
      2,
    ),
  );
  const row = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  console.log(
    row([
      'case',
      'keys/s',
      'p99 ms',
      'front CPU %',
      'front µs/key',
      'loadgen CPU %',
      'memcached CPU %',
      'machine idle %',
      'errors',
    ]),
  );
  console.log(row(Array(9).fill('---')));
  for (const r of results) {
    const m = r.median;
    console.log(
      row([
        r.case.name,
        String(Math.round(m.keysPerSec)),
        m.p99Ms.toFixed(2),
        m.frontCpuPct.toFixed(0),
        m.frontUsPerKey.toFixed(2),
        m.loadgenCpuPct.toFixed(0),
        m.memcachedCpuPct.toFixed(0),
        m.machineIdlePct.toFixed(0),
        String(m.errors + m.badValues),
      ]),
    );
  }
  console.log(
    `(medians of ${o.runs} windows of ${o.seconds} s; load generator pinned to cpu ${o.loadgenCpus}) -> ${out}`,
  );
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
