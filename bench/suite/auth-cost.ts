/**
 * What the security checks cost (issue 10 item 7): single-key gets of 100 B values against four kvgate
 * processes that differ only in their `security` section (bench/suite/auth.ts):
 *
 *   off         no authentication (the anonymous principal: no namespace, one rule)
 *   key         an API key with namespace `bench:` and three permission rules
 *   key+limits  the same plus per-principal and per-tenant rate limits high enough never to refuse, so
 *               TenantLimits.admit runs on every request and charge on every answer
 *   jwt         an HS256 JWT with the same namespace and rules
 *
 * All four gateways run at once (pinned like every front, so only the one under load uses the core), each
 * with its own load generator, connected and warmed up once; windows then go round-robin over the
 * variants (the starting variant rotates every round), so every variant sees the same machine noise. The
 * same for HTTP GET with `wrk -t1 -c50` (the token sent with `-H`). Reported per variant: medians of
 * keys/s and of the gateway process's CPU per key (user + system from /proc over the window, divided by
 * the keys served); and throughput ratios and CPU-per-key ratios against `off`. When the load generator
 * saturates its core the throughput ratio says little (the load generator sets the rate): CPU per key
 * is the figure for the gateway's cost.
 */
import { LoadGen, sleep } from '../loadgen';
import { procSnap, cpuPct, machineSnap, machineCpu } from '../lib/proc';
import { spread, type Spread } from '../lib/stats';
import { cpus } from 'node:os';
import { runWrk, wrkLoadMetrics } from './wrk';
import { fmt, summarize, type Log, type Runner } from './runner';
import { ADMIN_HEADERS, AUTH_VARIANTS, describeAuth, type AuthVariant } from './auth';
import type { Front } from './peers';
import type { RunMetrics, Scenario, Summary } from './types';

export interface AuthRun extends RunMetrics {
  /** Gateway CPU (user + system) over the window divided by the keys served, microseconds. */
  frontUsPerKey: number;
  /** Position of this window in its round (0: first). */
  order: number;
}

export interface AuthVariantResult {
  variant: AuthVariant;
  auth: Record<string, unknown>;
  runs: AuthRun[];
  summary: Summary;
  usPerKey: Spread;
  /** Median keys/s of this variant / median keys/s of `off`. */
  throughputRatio: number;
  /** Median CPU per key of this variant / that of `off` (above 1: costs more). */
  cpuPerKeyRatio: number;
  /** The gateway's /debug/stats at the end (security counters: auth ok, rate admitted). */
  stats?: unknown;
}

export interface AuthCostResult {
  ws: { conns: number; depth: number; variants: AuthVariantResult[] };
  http: { conns: number; tool: string; variants: AuthVariantResult[] } | null;
  windowSeconds: number;
  rounds: number;
  /** The bar: the checks cost under 5% of single-key throughput. */
  target: string;
}

const CORES = cpus().length;

function withRatios(
  rows: { variant: AuthVariant; front: Front; runs: AuthRun[]; stats?: unknown }[],
): AuthVariantResult[] {
  const base = rows.find((r) => r.variant === 'off');
  const med = (xs: number[]): number => spread(xs).median;
  const baseKeys = base ? med(base.runs.map((r) => r.keysPerSec)) : NaN;
  const baseUs = base ? med(base.runs.map((r) => r.frontUsPerKey)) : NaN;
  return rows.map((r) => {
    const us = spread(r.runs.map((x) => x.frontUsPerKey));
    return {
      variant: r.variant,
      auth: describeAuth(r.variant),
      runs: r.runs,
      summary: summarize(r.runs),
      usPerKey: us,
      throughputRatio: med(r.runs.map((x) => x.keysPerSec)) / baseKeys,
      cpuPerKeyRatio: us.median / baseUs,
      stats: r.stats,
    };
  });
}

async function adminStats(front: Front): Promise<unknown> {
  if (!front.statsUrl) return undefined;
  try {
    return await (await fetch(front.statsUrl, { headers: ADMIN_HEADERS })).json();
  } catch {
    return undefined;
  }
}

export async function runAuthCost(runner: Runner, sc: Scenario, log: Log): Promise<AuthCostResult> {
  const s = runner.s;
  const variants = [...AUTH_VARIANTS];
  const fronts: Front[] = [];
  const out: AuthCostResult = {
    ws: { conns: sc.conns, depth: sc.depth, variants: [] },
    http: null,
    windowSeconds: s.seconds,
    rounds: s.runs,
    target:
      'key and key+limits: single-key throughput within 5% of off (ratio >= 0.95), judged on CPU per key when the load generator saturates',
  };
  try {
    for (const v of variants) {
      const f = await runner.peers.startFront('kvgate', [], [], v);
      if (!f) throw new Error('kvgate did not start');
      fronts.push(f);
      // Each variant writes its own keys (off: k100:<i>; the others: bench:k100:<i>).
      runner.peers.forgetPreloads();
      await runner.preload('kvgate', f, sc.valueSize);
    }

    // ---- WebSocket single-key gets
    const gens: LoadGen[] = [];
    try {
      for (let i = 0; i < variants.length; i++) {
        const plan = runner.peers.loadPlan('kvgate', sc, fronts[i]);
        if ('skip' in plan) throw new Error(plan.skip);
        const gen = await LoadGen.start(plan.opts);
        gens.push(gen);
        gen.run();
        await sleep(Math.max(1000, s.warmupSeconds * 1000));
        await gen.pause();
      }
      const runs: AuthRun[][] = variants.map(() => []);
      for (let k = 0; k < s.runs; k++) {
        for (let j = 0; j < variants.length; j++) {
          const i = (k + j) % variants.length;
          const gen = gens[i];
          let m: RunMetrics | null = null;
          for (let attempt = 0; ; attempt++) {
            gen.run();
            await sleep(500); // the connections were idle: let them reach their steady state
            m = (await runner.window(gen, fronts[i], sc.valueSize, s.seconds * 1000)).m;
            await gen.pause();
            if (m.otherCpuPct <= s.noiseLimitPct || attempt >= s.maxRetries || runner.retried >= s.retryBudget) {
              m.retries = attempt;
              break;
            }
            runner.retried++;
            log(
              `    ws ${variants[i].padEnd(10)} window discarded: other processes used ${m.otherCpuPct.toFixed(0)}% CPU`,
            );
          }
          const run: AuthRun = { ...m, frontUsPerKey: (m.frontCpuPct * 1e4) / (m.keysPerSec || NaN), order: j };
          runs[i].push(run);
          log(`    ws ${variants[i].padEnd(10)} round ${k + 1}: ${fmt(m)}, ${run.frontUsPerKey.toFixed(2)} us/key`);
        }
      }
      const rows = [];
      for (let i = 0; i < variants.length; i++)
        rows.push({ variant: variants[i], front: fronts[i], runs: runs[i], stats: await adminStats(fronts[i]) });
      out.ws.variants = withRatios(rows);
      for (const r of out.ws.variants)
        log(
          `    ws ${r.variant.padEnd(10)} ${(r.summary.keysPerSec?.median ?? NaN).toFixed(0)} keys/s, ` +
            `${r.usPerKey.median.toFixed(3)} us/key; vs off: throughput x${r.throughputRatio.toFixed(3)}, CPU per key x${r.cpuPerKeyRatio.toFixed(3)}`,
        );
    } finally {
      for (const g of gens) await g.close();
    }

    // ---- HTTP GET with wrk (the token as a header)
    const conns = 50;
    const runs: AuthRun[][] = variants.map(() => []);
    const url = (f: Front): string => `http://127.0.0.1:${f.endpoint.port}/v1/kv/`;
    for (const f of fronts) await runWrk(url(f), conns, 1, s.pin.loadgen, s.keyCount, 1, {}, f.endpoint.token);
    for (let k = 0; k < s.runs; k++) {
      for (let j = 0; j < variants.length; j++) {
        const i = (k + j) % variants.length;
        const f = fronts[i];
        const f0 = procSnap(f.proc.pid);
        const mc0 = runner.peers.memcachedPids.map(procSnap);
        const ma = machineSnap();
        const w = await runWrk(url(f), conns, s.seconds, s.pin.loadgen, s.keyCount, 1, {}, f.endpoint.token);
        const mb = machineSnap();
        const f1 = procSnap(f.proc.pid);
        const mc1 = runner.peers.memcachedPids.map(procSnap);
        const front = cpuPct(f0, f1);
        const memcached = mc0.reduce((a, x, n) => a + cpuPct(x, mc1[n]), 0);
        const { procPct, irqPct, stealPct } = machineCpu(ma, mb, CORES);
        const m: AuthRun = {
          ...wrkLoadMetrics(w),
          frontCpuPct: front,
          frontRssMb: f1.rssBytes / 1048576,
          frontRssPeakMb: NaN,
          memcachedCpuPct: memcached,
          otherCpuPct: Math.max(0, procPct - front - w.cpuPct - memcached),
          stealPct,
          irqPct,
          retries: 0,
          frontUsPerKey: (front * 1e4) / (w.reqPerSec || NaN),
          order: j,
        };
        runs[i].push(m);
        log(`    http ${variants[i].padEnd(10)} round ${k + 1}: ${fmt(m)}, ${m.frontUsPerKey.toFixed(2)} us/req`);
      }
    }
    const rows = [];
    for (let i = 0; i < variants.length; i++)
      rows.push({ variant: variants[i], front: fronts[i], runs: runs[i], stats: await adminStats(fronts[i]) });
    out.http = {
      conns,
      tool: `wrk -t1 -c${conns} -d${s.seconds}s -H 'Authorization: Bearer <token>' (Lua: rotating keys)`,
      variants: withRatios(rows),
    };
    for (const r of out.http.variants)
      log(
        `    http ${r.variant.padEnd(10)} ${(r.summary.keysPerSec?.median ?? NaN).toFixed(0)} req/s, ` +
          `${r.usPerKey.median.toFixed(3)} us/req; vs off: throughput x${r.throughputRatio.toFixed(3)}, CPU per request x${r.cpuPerKeyRatio.toFixed(3)}`,
      );
  } finally {
    for (const f of fronts) await f.stop();
  }
  return out;
}
