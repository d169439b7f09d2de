/**
 * The Redis scenarios (issue 8): peers side by side in one run on the same redis-server.
 *
 *   kvgate-redis     kvgate with a config whose default pool is `{"backend":"redis","servers":["127.0.0.1:P"]}`
 *   naive-redis      the same uWS front and protocol, one ioredis call per request (baselines/naive-redis-gateway.ts)
 *   autopipe-redis   the same with ioredis `enableAutoPipelining: true`
 *   webdis           Debian's webdis, `GET /GET/{key}.bin` (HTTP GET only)
 *   redis-benchmark  `redis-benchmark -P 64 -t get` on the same server: the ceiling (no front)
 *
 * One redis-server per scenario (loopback, free port, nothing persisted; test/helpers/redis-local.ts),
 * filled once directly with ioredis: the load generator's keys `k<size>:<i>` with its checkable values, and
 * redis-benchmark's `key:<12 digits>` with the same values, so every peer reads the same bytes from the same
 * server. Each measured window records the front process's and redis-server's CPU from /proc and divides
 * it by the keys served: front CPU microseconds per key.
 */
import { spawn } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { freePort } from '../../src/fleet/local-fleet';
import { startRedis, type RedisServer } from '../../test/helpers/redis-local';
import { LoadGen, sleep, type LoadOptions } from '../loadgen';
import { KeySpace } from '../lib/keys';
import { procSnap, machineSnap, machineCpu, RssPeak, startServer, type ServerProc, type ProcSnap } from '../lib/proc';
import { startWebdis } from '../baselines/webdis';
import { runWrk, wrkLoadMetrics } from './wrk';
import { summarize, fmt, type Log, type Runner } from './runner';
import { ROOT } from './env';
import type { LoadMetrics, RunMetrics, Scenario, Summary, SuiteSettings } from './types';
import { ADMIN_HEADERS, describeAuth, kvgateSecurity, storedKey, suiteVariant, tokenFor } from './auth';

export type RedisPeer = 'kvgate-redis' | 'naive-redis' | 'autopipe-redis' | 'webdis' | 'redis-benchmark';

export const REDIS_PEER_LABEL: Record<RedisPeer, string> = {
  'kvgate-redis': 'kvgate on Redis',
  'naive-redis': 'naive gateway (ioredis)',
  'autopipe-redis': 'naive + auto-pipelining',
  webdis: 'webdis',
  'redis-benchmark': 'redis-benchmark -P 64',
};

/** redis-benchmark's settings for the ceiling: its default 50 clients, 64 commands pipelined on each. */
export const REDIS_CEILING = { clients: 50, pipeline: 64 };

/** One measured window: the suite's metrics (memcachedCpuPct stays 0) plus Redis's side and CPU per key. */
export interface RedisRun extends RunMetrics {
  redisCpuPct: number;
  /** Front process CPU (user + system) over the window divided by the keys served, in microseconds. */
  frontUsPerKey: number;
  redisUsPerKey: number;
}

export interface RedisPeerResult {
  peer: RedisPeer;
  note?: string;
  skipped?: string;
  setup?: Record<string, unknown>;
  runs: RedisRun[];
  summary: Summary & Partial<Record<'redisCpuPct' | 'frontUsPerKey' | 'redisUsPerKey', Summary['keysPerSec']>>;
  stats?: unknown;
}

export interface RedisExtra {
  redis: { version: string; port: number; args: string[]; pinned: string };
  versions: { ioredis: string; webdis: string; redisBenchmark: string };
  peers: RedisPeerResult[];
  error?: string;
}

const DIST = join(__dirname, '..', '..');
const CORES = cpus().length;

const base = (name: string, title: string, over: Partial<Scenario>, peers: RedisPeer[]): Scenario => ({
  name,
  title,
  kind: 'redis',
  transport: 'ws',
  op: 'get',
  conns: 1000,
  depth: 8,
  valueSize: 100,
  bulk: 1,
  getPct: 100,
  peers: [],
  redis: { peers },
  ...over,
});

/** The same three in quick and full mode (quick mode has shorter windows and fewer keys). */
export function redisScenarios(): Scenario[] {
  return [
    base('redis-ws-get-c1000', 'Redis: WebSocket single-key get, 1,000 connections x 8, 100 B', {}, [
      'kvgate-redis',
      'naive-redis',
      'autopipe-redis',
    ]),
    base(
      'redis-http-get-c50',
      'Redis: HTTP GET of one key with wrk, 50 connections, 100 B',
      { kind: 'redis', transport: 'http', conns: 50, depth: 1 },
      ['kvgate-redis', 'webdis'],
    ),
    base(
      'redis-mget100',
      'Redis: WebSocket bulk get of 100 keys, 50 connections, 100 B, vs redis-benchmark -P 64 GET',
      { op: 'mget', bulk: 100, conns: 50, depth: 1 },
      ['kvgate-redis', 'naive-redis', 'autopipe-redis', 'redis-benchmark'],
    ),
  ];
}

function version(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.error ? 'missing' : `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] || 'unknown';
}

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return 'missing';
  }
}

/** redis-benchmark's key for index i with `-r`: `key:` and the index in 12 digits. */
const benchKey = (i: number): string => `key:${String(i).padStart(12, '0')}`;

/** Writes every key the peers read, in pipelines of 1,000 SETs. */
/** `prefix`: kvgate's namespace (bench/suite/auth.ts), whose copies of the keys kvgate reads; '' for none. */
async function fill(
  r: RedisServer,
  ks: KeySpace,
  sentinel: { key: string; value: Buffer },
  prefix: string,
): Promise<void> {
  const c = new Redis(r.port, r.host, { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await c.connect();
    for (let i = 0; i < ks.count; i += 1000) {
      const p = c.pipeline();
      for (let j = i; j < Math.min(ks.count, i + 1000); j++) {
        const v = ks.value(j);
        p.set(ks.keys[j], v);
        p.set(benchKey(j), v);
        if (prefix !== '') p.set(prefix + ks.keyStrings[j], v);
      }
      const res = await p.exec();
      const bad = res?.find(([e]) => e);
      if (bad) throw bad[0] as Error;
    }
    await c.set(sentinel.key, sentinel.value);
    if (prefix !== '') await c.set(prefix + sentinel.key, sentinel.value);
  } finally {
    c.disconnect();
  }
}

/** What the load side of a window measured; the CPU side is added by Measure.window. */
type LoadPart = LoadMetrics;

class Measure {
  constructor(
    private readonly runner: Runner,
    private readonly s: SuiteSettings,
    private readonly log: Log,
  ) {}

  /** One window around `run`, with the front's and redis-server's CPU from /proc and the machine's. */
  async window(front: ServerProc | null, redisPid: number, run: () => Promise<LoadPart>): Promise<RedisRun> {
    const f0: ProcSnap | null = front ? procSnap(front.pid) : null;
    const r0 = procSnap(redisPid);
    const peak = new RssPeak(front ? [front.pid] : [], 200);
    const ma = machineSnap();
    const w = await run();
    const mb = machineSnap();
    const peakBytes = peak.stop();
    const f1 = front ? procSnap(front.pid) : null;
    const r1 = procSnap(redisPid);
    const secs = (r1.at - r0.at) / 1000;
    const frontSec = f0 && f1 ? f1.cpuSec - f0.cpuSec : NaN;
    const redisSec = r1.cpuSec - r0.cpuSec;
    const m: RedisRun = {
      ...w,
      frontCpuPct: (frontSec / secs) * 100,
      frontRssMb: f1 ? f1.rssBytes / 1048576 : NaN,
      frontRssPeakMb: front ? peakBytes / 1048576 : NaN,
      memcachedCpuPct: 0,
      redisCpuPct: (redisSec / secs) * 100,
      // the CPU window brackets the load generator's by a few ms: keys over the CPU window at its measured rate
      frontUsPerKey: (frontSec * 1e6) / ((w.keysPerSec || NaN) * secs),
      redisUsPerKey: (redisSec * 1e6) / ((w.keysPerSec || NaN) * secs),
      otherCpuPct: 0,
      stealPct: 0,
      irqPct: 0,
      retries: 0,
    };
    const { procPct, irqPct, stealPct } = machineCpu(ma, mb, CORES);
    const ours =
      (Number.isFinite(m.frontCpuPct) ? m.frontCpuPct : 0) +
      (Number.isFinite(m.loadgenCpuPct) ? m.loadgenCpuPct : 0) +
      m.redisCpuPct;
    m.otherCpuPct = Math.max(0, procPct - ours);
    m.irqPct = irqPct;
    m.stealPct = stealPct;
    return m;
  }

  /** `runs` windows; a window spoiled by other processes is measured again, within the suite's budgets. */
  async windows(label: string, one: () => Promise<RedisRun>): Promise<RedisRun[]> {
    const out: RedisRun[] = [];
    let retries = 0;
    while (out.length < this.s.runs) {
      const m = await one();
      if (
        m.otherCpuPct > this.s.noiseLimitPct &&
        retries < this.s.maxRetries &&
        this.runner.retried < this.s.retryBudget
      ) {
        retries++;
        this.runner.retried++;
        this.log(`    ${label.padEnd(24)} window discarded: other processes used ${m.otherCpuPct.toFixed(0)}% CPU`);
        continue;
      }
      m.retries = retries;
      out.push(m);
      this.log(
        `    ${label.padEnd(24)} run ${out.length}: ${fmt(m).replace(/, memcached \d+%/, `, redis ${m.redisCpuPct.toFixed(0)}%`)}, ` +
          `front ${Number.isFinite(m.frontUsPerKey) ? m.frontUsPerKey.toFixed(2) : '–'} us/key, redis ${m.redisUsPerKey.toFixed(2)} us/key`,
      );
    }
    return out;
  }
}

/** Why the front cannot be measured (it is not serving this Redis), or null. */
async function servesFromRedis(
  port: number,
  sentinel: { key: string; value: Buffer },
  headers: Record<string, string>,
): Promise<string | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/v1/kv/${encodeURIComponent(sentinel.key)}`, { headers });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status === 200 && body.equals(sentinel.value)) return null;
    return `GET of a key written only to this Redis answered ${res.status} ${body.toString('latin1').slice(0, 120)}`;
  } catch (e) {
    return `GET of a key written only to this Redis failed: ${(e as Error).message}`;
  }
}

/** Spot-checks `n` keys over HTTP against the values written: wrk counts status codes only. */
async function httpSpotCheck(
  url: (key: string) => string,
  ks: KeySpace,
  n: number,
  headers: Record<string, string>,
): Promise<string | null> {
  for (let k = 0; k < n; k++) {
    const i = Math.floor((k * ks.count) / n);
    const res = await fetch(url(ks.keyStrings[i]), { headers });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200 || !ks.check(i, body, 0, body.length))
      return `${ks.keyStrings[i]}: ${res.status}, ${body.length} bytes, not the value written`;
  }
  return null;
}

async function startFront(
  peer: RedisPeer,
  r: RedisServer,
  s: SuiteSettings,
  tmpDir: string,
): Promise<{
  proc: ServerProc;
  port: number;
  statsPort: number;
  setup: Record<string, unknown>;
  token?: string;
} | null> {
  const port = await freePort();
  const cpusList = s.pin.gateway;
  switch (peer) {
    case 'kvgate-redis': {
      // kvgate serves /debug/stats on its admin listener only.
      const statsPort = await freePort();
      const config = {
        port,
        admin: { port: statsPort },
        pools: { redis: { backend: 'redis', servers: [`${r.host}:${r.port}`] } },
        defaultPool: 'redis',
        security: kvgateSecurity(suiteVariant(s.auth)),
      };
      const file = join(tmpDir, `kvgate-redis-${port}.json`);
      writeFileSync(file, JSON.stringify(config, null, 1) + '\n');
      try {
        const proc = await startServer({
          name: 'kvgate',
          cmd: process.execPath,
          cpus: cpusList,
          readyText: 'listening',
          args: [join(DIST, 'src', 'main.js'), '--config', file],
        });
        const v = suiteVariant(s.auth);
        // The config in the result file without the hashes of the bench's keys.
        return {
          proc,
          port,
          statsPort,
          setup: { config: { ...config, security: describeAuth(v) }, auth: describeAuth(v) },
          token: tokenFor(v),
        };
      } catch (e) {
        // the config problems kvgate printed, without the file's path: `- <file>: unknown setting "pools"`
        const msg = (e as Error).message;
        const problems = [...msg.matchAll(/^\s*- [^:]*: (.*)$/gm)].map((m) => m[1]);
        throw new Skip(
          'kvgate refused a config whose default pool is Redis (is the Redis backend merged?): ' +
            (problems.length ? problems.join('; ') : msg.split('\n').slice(0, 3).join(' ').slice(0, 300)),
        );
      }
    }
    case 'naive-redis':
    case 'autopipe-redis': {
      const args = [
        join(DIST, 'bench', 'baselines', 'naive-redis-gateway.js'),
        '--port',
        String(port),
        '--redis',
        `${r.host}:${r.port}`,
        ...(peer === 'autopipe-redis' ? ['--auto-pipelining'] : []),
      ];
      const proc = await startServer({
        name: peer,
        cmd: process.execPath,
        cpus: cpusList,
        readyText: 'listening',
        args,
      });
      return {
        proc,
        port,
        statsPort: port,
        setup: { enableAutoPipelining: peer === 'autopipe-redis', mget: 'one MGET per request' },
      };
    }
    case 'webdis': {
      const proc = await startWebdis({ port, redis: { host: r.host, port: r.port }, cpus: cpusList, dir: tmpDir });
      return { proc, port, statsPort: port, setup: { webdisJson: proc.config } };
    }
    default:
      return null;
  }
}

class Skip extends Error {}

/** redis-benchmark for `n` GETs; its requests/s and latency from --csv, its own CPU from the shell's `times`. */
function redisBenchmark(
  r: RedisServer,
  n: number,
  valueSize: number,
  keyCount: number,
  cpusList: string,
): Promise<{ rps: number; p50Ms: number; p99Ms: number; maxMs: number; seconds: number; cpuPct: number }> {
  const cmd = [
    'redis-benchmark',
    `-h ${r.host}`,
    `-p ${r.port}`,
    `-c ${REDIS_CEILING.clients}`,
    `-P ${REDIS_CEILING.pipeline}`,
    '-t get',
    `-n ${n}`,
    `-d ${valueSize}`,
    `-r ${keyCount}`,
    '--csv',
  ].join(' ');
  const line = `${cpusList ? `taskset -c ${cpusList} ` : ''}${cmd}; times`;
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn('bash', ['-c', line], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.stderr.on('data', (b: Buffer) => (out += b.toString()));
    p.once('exit', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      const row = /^"GET","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)"/m.exec(out);
      if (!row) return reject(new Error(`redis-benchmark failed (${code}): ${out.slice(-800)}`));
      const t = [...out.matchAll(/(\d+)m([\d.]+)s (\d+)m([\d.]+)s/g)];
      const child = t[1] ?? t[0];
      const cpuSec = child ? Number(child[1]) * 60 + Number(child[2]) + Number(child[3]) * 60 + Number(child[4]) : NaN;
      resolve({
        rps: Number(row[1]),
        p50Ms: Number(row[4]),
        p99Ms: Number(row[6]),
        maxMs: Number(row[7]),
        seconds,
        cpuPct: (cpuSec / seconds) * 100,
      });
    });
  });
}

async function runPeer(
  peer: RedisPeer,
  sc: Scenario,
  r: RedisServer,
  ks: KeySpace,
  runner: Runner,
  log: Log,
  tmpDir: string,
  sentinel: { key: string; value: Buffer },
): Promise<RedisPeerResult> {
  const s = runner.s;
  const meas = new Measure(runner, s, log);
  const label = REDIS_PEER_LABEL[peer];
  if (peer === 'redis-benchmark') {
    const cal = await redisBenchmark(r, 100_000, sc.valueSize, ks.count, s.pin.loadgen);
    // a window is a fixed number of GETs: as many as the warm-up's rate serves in --seconds
    const n = Math.max(50_000, Math.round(cal.rps * s.seconds));
    const runs = await meas.windows(label, () =>
      meas.window(null, r.pid, async () => {
        const b = await redisBenchmark(r, n, sc.valueSize, ks.count, s.pin.loadgen);
        return {
          keysPerSec: b.rps,
          reqPerSec: b.rps,
          p50Ms: b.p50Ms,
          p99Ms: b.p99Ms,
          p999Ms: NaN,
          maxMs: b.maxMs,
          requests: n,
          keys: n,
          errors: {},
          errorCount: 0,
          misses: 0,
          badValues: 0,
          loadgenCpuPct: b.cpuPct,
          loadgenMaxWorkerPct: b.cpuPct,
          loadgenRssMb: NaN,
        };
      }),
    );
    return {
      peer,
      runs,
      summary: summarize(runs),
      note:
        `redis-benchmark itself: ${REDIS_CEILING.clients} clients, ${REDIS_CEILING.pipeline} GETs pipelined on each, ` +
        `random keys of the same ${ks.count.toLocaleString('en-US')} values (key:<12 digits>), ${n.toLocaleString('en-US')} GETs a window; no front: the ceiling of this server`,
      setup: {
        command: `redis-benchmark -c ${REDIS_CEILING.clients} -P ${REDIS_CEILING.pipeline} -t get -n ${n} -d ${sc.valueSize} -r ${ks.count} --csv`,
        loadgenCpus: s.pin.loadgen,
        inFlight: REDIS_CEILING.clients * REDIS_CEILING.pipeline,
      },
    };
  }

  const front = await startFront(peer, r, s, tmpDir);
  if (!front) return { peer, skipped: `${label} does not serve this scenario`, runs: [], summary: {} };
  const headers: Record<string, string> = front.token ? { authorization: `Bearer ${front.token}` } : {};
  try {
    if (peer !== 'webdis') {
      const why = await servesFromRedis(front.port, sentinel, headers);
      if (why) throw new Skip(`${label} is not serving from the bench's Redis: ${why}`);
    }
    const stats = async (): Promise<unknown> => {
      if (peer === 'webdis') return undefined;
      try {
        return await (
          await fetch(`http://127.0.0.1:${front.statsPort}/debug/stats`, { headers: ADMIN_HEADERS })
        ).json();
      } catch {
        return undefined;
      }
    };
    if (sc.transport === 'http') {
      const path = peer === 'webdis' ? '/GET/' : '/v1/kv/';
      const suffix = peer === 'webdis' ? '.bin' : '';
      const bad = await httpSpotCheck((k) => `http://127.0.0.1:${front.port}${path}${k}${suffix}`, ks, 20, headers);
      if (bad) throw new Error(`wrong answer before measuring: ${bad}`);
      const url = `http://127.0.0.1:${front.port}/`;
      const env = { KV_PATH: path, KV_SUFFIX: suffix, KV_PREFIX: `k${sc.valueSize}` };
      await runWrk(
        url,
        sc.conns,
        Math.max(1, Math.round(s.warmupSeconds)),
        s.pin.loadgen,
        ks.count,
        1,
        env,
        front.token,
      );
      const runs = await meas.windows(label, () =>
        meas.window(front.proc, r.pid, async () => {
          const w = await runWrk(url, sc.conns, s.seconds, s.pin.loadgen, ks.count, 1, env, front.token);
          return wrkLoadMetrics(w);
        }),
      );
      return {
        peer,
        runs,
        summary: summarize(runs),
        stats: await stats(),
        note:
          peer === 'webdis'
            ? '`GET /GET/{key}.bin`: the raw value bytes (binary/octet-stream), 1 thread, 20 connections to Redis'
            : undefined,
        setup: {
          ...front.setup,
          tool: `wrk -t1 -c${sc.conns} -d${s.seconds}s (Lua: rotating keys, ${path}{key}${suffix}); 20 answers checked byte for byte first`,
          loadgenCpus: s.pin.loadgen,
          frontCpus: s.pin.gateway,
          inFlight: sc.conns,
        },
      };
    }

    const opts: LoadOptions = {
      proto: 'ws',
      target: { host: '127.0.0.1', port: front.port, ...(front.token ? { token: front.token } : {}) },
      servers: [],
      ceiling: false,
      conns: sc.conns,
      depth: sc.depth,
      op: sc.op,
      getPct: sc.getPct,
      bulk: sc.bulk,
      keyCount: ks.count,
      valueSize: sc.valueSize,
      localAddresses: [],
      connectConcurrency: 64,
      wsPath: '/v1/ws',
      seed: 1,
      cpus: s.pin.loadgen,
      workers: s.loadgenWorkers,
    };
    const gen = await LoadGen.start(opts);
    let runs: RedisRun[] = [];
    try {
      gen.run();
      await sleep(s.warmupSeconds * 1000);
      runs = await meas.windows(label, () =>
        meas.window(front.proc, r.pid, async () => {
          const x = await gen.measure(s.seconds * 1000);
          return {
            keysPerSec: x.keysPerSec,
            reqPerSec: x.reqPerSec,
            p50Ms: x.p50Ms,
            p99Ms: x.p99Ms,
            p999Ms: x.p999Ms,
            maxMs: x.maxMs,
            requests: x.requests,
            keys: x.keys,
            errors: x.errors,
            errorCount: x.errorCount,
            misses: x.misses,
            badValues: x.badValues,
            loadgenCpuPct: x.cpuPct,
            loadgenMaxWorkerPct: x.cpuMaxWorkerPct,
            loadgenRssMb: x.rssMb,
          };
        }),
      );
      await gen.pause();
    } finally {
      await gen.close();
    }
    return {
      peer,
      runs,
      summary: summarize(runs),
      stats: await stats(),
      note:
        peer === 'naive-redis'
          ? 'one ioredis call per request (GET, or one MGET for a bulk get), auto-pipelining off'
          : peer === 'autopipe-redis'
            ? 'the same front with ioredis `enableAutoPipelining: true`'
            : undefined,
      setup: {
        ...front.setup,
        proto: 'ws',
        conns: sc.conns,
        depth: sc.depth,
        inFlight: sc.conns * sc.depth,
        bulk: sc.bulk,
        workers: Math.min(s.loadgenWorkers, sc.conns),
        loadgenCpus: s.pin.loadgen,
        frontCpus: s.pin.gateway,
      },
    };
  } finally {
    await front.proc.stop();
  }
}

/** Runs one Redis scenario: a fresh redis-server, filled once, then every peer in turn. */
export async function runRedis(runner: Runner, sc: Scenario, log: Log, tmpDir: string): Promise<RedisExtra> {
  const s = runner.s;
  const peers = (sc.redis?.peers ?? []) as RedisPeer[];
  const args = ['--maxclients', '20000'];
  const r = await startRedis({ cpus: s.pin.memcached, args });
  const extra: RedisExtra = {
    redis: { version: version('redis-server', ['--version']), port: r.port, args, pinned: s.pin.memcached },
    versions: {
      ioredis: pkgVersion('ioredis'),
      webdis: version('dpkg-query', ['-W', '-f', '${Version}', 'webdis']),
      redisBenchmark: version('redis-benchmark', ['--version']),
    },
    peers: [],
  };
  try {
    const ks = KeySpace.forSize(s.keyCount, sc.valueSize);
    const sentinel = {
      key: `kvgate-bench:sentinel:${r.port}`,
      value: Buffer.from(`only in redis ${r.port} ${Date.now()}`),
    };
    await fill(r, ks, sentinel, storedKey(suiteVariant(s.auth), ''));
    log(
      `  redis-server ${r.host}:${r.port} (${extra.redis.version.replace(/ sha=.*/, '')}), ${ks.count.toLocaleString('en-US')} keys written`,
    );
    for (const peer of peers) {
      try {
        extra.peers.push(await runPeer(peer, sc, r, ks, runner, log, tmpDir, sentinel));
      } catch (e) {
        const msg = (e as Error).message.split('\n')[0];
        log(`  ${REDIS_PEER_LABEL[peer]} ${e instanceof Skip ? 'skipped' : 'failed'}: ${msg}`);
        extra.peers.push({ peer, skipped: e instanceof Skip ? msg : `failed: ${msg}`, runs: [], summary: {} });
      }
    }
  } finally {
    await r.stop();
  }
  return extra;
}
