/**
 * Runs scenarios against peers: starts the peer, preloads the keys through it, drives it for a warm-up and
 * then `runs` measured windows, sampling the front process, memcached and the load generator, and stops
 * everything it started.
 */
import { LoadGen, sleep, type LoadSample } from '../loadgen';
import { cpus } from 'node:os';
import { procSnap, cpuPct, RssPeak, machineSnap, machineCpu } from '../lib/proc';
import { spread } from '../lib/stats';
import { Peers, PEER_LABEL, type Front } from './peers';
import { runWrk, wrkLoadMetrics } from './wrk';
import type { PeerName, PeerResult, RunMetrics, Scenario, Summary, SuiteSettings } from './types';
import { ADMIN_HEADERS } from './auth';

export type Log = (msg: string) => void;

interface GcSnap {
  young: number;
  major: number;
  pauseMs: number;
}

async function gcOf(front: Front | null): Promise<GcSnap | null> {
  if (!front?.statsUrl) return null;
  try {
    const r = await fetch(front.statsUrl, { headers: ADMIN_HEADERS });
    const j = (await r.json()) as { gc?: { young?: number; major?: number; pauseMs?: number } | null };
    if (!j.gc) return null;
    return { young: j.gc.young ?? 0, major: j.gc.major ?? 0, pauseMs: j.gc.pauseMs ?? 0 };
  } catch {
    return null;
  }
}

async function statsOf(front: Front | null): Promise<unknown> {
  if (!front?.statsUrl) return undefined;
  try {
    return await (await fetch(front.statsUrl, { headers: ADMIN_HEADERS })).json();
  } catch {
    return undefined;
  }
}

export function summarize(runs: RunMetrics[]): Summary {
  const out: Summary = {};
  if (runs.length === 0) return out;
  for (const k of Object.keys(runs[0]) as (keyof RunMetrics)[]) {
    if (typeof runs[0][k] !== 'number') continue;
    out[k] = spread(runs.map((r) => r[k] as number));
  }
  return out;
}

export class Runner {
  /** Noisy windows redone so far in this run. */
  retried = 0;

  constructor(
    readonly peers: Peers,
    readonly s: SuiteSettings,
    private readonly log: Log,
  ) {}

  async preload(peer: PeerName, front: Front | null, valueSize: number, keyCount?: number): Promise<void> {
    const plan = await this.peers.preloadPlan(peer, front, valueSize, keyCount);
    if (!plan) return;
    const gen = await LoadGen.start(plan);
    try {
      const r = await gen.preload();
      const errs = Object.entries(r.errors);
      if (errs.length) throw new Error(`preload through ${peer} failed: ${JSON.stringify(r.errors)}`);
    } finally {
      await gen.close();
    }
  }

  /** Measures one window while the load generator is running. */
  async window(
    gen: LoadGen,
    front: Front | null,
    valueSize: number,
    ms: number,
  ): Promise<{ m: RunMetrics; sample: LoadSample }> {
    const gc0 = await gcOf(front);
    const mcPids = this.peers.memcachedPids;
    const f0 = front ? procSnap(front.proc.pid) : null;
    const mc0 = mcPids.map(procSnap);
    const peak = new RssPeak(front ? [front.proc.pid] : [], 200);
    const ma = machineSnap();
    const sample = await gen.measure(ms);
    const mb = machineSnap();
    const peakBytes = peak.stop();
    const f1 = front ? procSnap(front.proc.pid) : null;
    const mc1 = mcPids.map(procSnap);
    const gc1 = await gcOf(front);
    const m: RunMetrics = {
      keysPerSec: sample.keysPerSec,
      reqPerSec: sample.reqPerSec,
      p50Ms: sample.p50Ms,
      p99Ms: sample.p99Ms,
      p999Ms: sample.p999Ms,
      maxMs: sample.maxMs,
      requests: sample.requests,
      keys: sample.keys,
      errors: sample.errors,
      errorCount: sample.errorCount,
      misses: sample.misses,
      badValues: sample.badValues,
      loadgenCpuPct: sample.cpuPct,
      loadgenMaxWorkerPct: sample.cpuMaxWorkerPct,
      loadgenRssMb: sample.rssMb,
      frontCpuPct: f0 && f1 ? cpuPct(f0, f1) : NaN,
      frontUsPerKey: f0 && f1 ? usPerKey(f1.cpuSec - f0.cpuSec, sample.keys) : NaN,
      loadgenUsPerKey: usPerKey((sample.cpuPct / 100) * sample.durationS, sample.keys),
      frontRssMb: f1 ? f1.rssBytes / 1048576 : NaN,
      frontRssPeakMb: front ? peakBytes / 1048576 : NaN,
      memcachedCpuPct: mc0.reduce((a, s, i) => a + cpuPct(s, mc1[i]), 0),
      otherCpuPct: 0,
      stealPct: 0,
      irqPct: 0,
      retries: 0,
      valueBytes: sample.keys * valueSize,
    };
    setOther(m, ma, mb);
    if (gc0 && gc1) {
      m.gcYoung = gc1.young - gc0.young;
      m.gcMajor = gc1.major - gc0.major;
      m.gcPauseMs = gc1.pauseMs - gc0.pauseMs;
    }
    return { m, sample };
  }

  private noisy(m: RunMetrics, retries: number): boolean {
    if (m.otherCpuPct <= this.s.noiseLimitPct || retries >= this.s.maxRetries || this.retried >= this.s.retryBudget)
      return false;
    this.retried++;
    return true;
  }

  /** `runs` windows; one spoiled by other processes' CPU is measured again (maxRetries in all, per peer). */
  async windows(gen: LoadGen, front: Front | null, valueSize: number, label: string): Promise<RunMetrics[]> {
    const out: RunMetrics[] = [];
    let retries = 0;
    while (out.length < this.s.runs) {
      const { m } = await this.window(gen, front, valueSize, this.s.seconds * 1000);
      if (this.noisy(m, retries)) {
        retries++;
        this.log(
          `    ${label.padEnd(18)} window discarded: other processes used ${m.otherCpuPct.toFixed(0)}% CPU (${fmt(m)})`,
        );
        continue;
      }
      m.retries = retries;
      out.push(m);
      this.log(`    ${label.padEnd(18)} run ${out.length}: ${fmt(m)}`);
    }
    return out;
  }

  /** One peer through one load scenario. */
  async loadPeer(
    sc: Scenario,
    peer: PeerName,
    gatewayArgs: string[] = [],
    nodeFlags: string[] = [],
  ): Promise<PeerResult> {
    const front = await this.peers.startFront(peer, gatewayArgs, nodeFlags);
    try {
      const plan = this.peers.loadPlan(peer, sc, front);
      if ('skip' in plan) return { peer, skipped: plan.skip, runs: [], summary: {} };
      await this.preload(peer, front, sc.valueSize);
      const gen = await LoadGen.start(plan.opts);
      const runs: RunMetrics[] = [];
      try {
        gen.run();
        await sleep(this.s.warmupSeconds * 1000);
        runs.push(...(await this.windows(gen, front, sc.valueSize, PEER_LABEL[peer])));
        await gen.pause();
      } finally {
        await gen.close();
      }
      const { opts } = plan;
      return {
        peer,
        note: plan.note,
        runs,
        summary: summarize(runs),
        stats: await statsOf(front),
        setup: {
          proto: opts.proto,
          conns: opts.conns,
          depth: opts.depth,
          inFlight: opts.conns * opts.depth * (opts.ceiling ? opts.servers.length : 1),
          bulk: opts.bulk,
          workers: Math.min(opts.workers, opts.conns),
          loadgenCpus: opts.cpus,
          frontCpus: front ? this.s.pin.gateway : '',
          gatewayArgs,
          auth: front?.auth ?? null,
        },
      };
    } finally {
      await front?.stop();
    }
  }

  async wrkPeer(sc: Scenario, peer: PeerName): Promise<PeerResult> {
    const front = await this.peers.startFront(peer);
    if (!front) return { peer, skipped: 'no HTTP front', runs: [], summary: {} };
    try {
      await this.preload(peer, front, 100);
      const url = `http://127.0.0.1:${front.endpoint.port}/v1/kv/`;
      const threads = 1;
      const token = front.endpoint.token;
      await runWrk(
        url,
        sc.conns,
        Math.max(1, Math.round(this.s.warmupSeconds)),
        this.s.pin.loadgen,
        this.s.keyCount,
        threads,
        {},
        token,
      );
      const runs: RunMetrics[] = [];
      let retries = 0;
      while (runs.length < this.s.runs) {
        const gc0 = await gcOf(front);
        const f0 = procSnap(front.proc.pid);
        const mc0 = this.peers.memcachedPids.map(procSnap);
        const peak = new RssPeak([front.proc.pid]);
        const ma = machineSnap();
        const w = await runWrk(url, sc.conns, this.s.seconds, this.s.pin.loadgen, this.s.keyCount, threads, {}, token);
        const mb = machineSnap();
        const peakBytes = peak.stop();
        const f1 = procSnap(front.proc.pid);
        const mc1 = this.peers.memcachedPids.map(procSnap);
        const gc1 = await gcOf(front);
        const load = wrkLoadMetrics(w);
        const m: RunMetrics = {
          ...load,
          frontCpuPct: cpuPct(f0, f1),
          frontUsPerKey: usPerKey(f1.cpuSec - f0.cpuSec, load.keys),
          loadgenUsPerKey: usPerKey((load.loadgenCpuPct / 100) * this.s.seconds, load.keys),
          frontRssMb: f1.rssBytes / 1048576,
          frontRssPeakMb: peakBytes / 1048576,
          memcachedCpuPct: peer === 'plain-http' ? 0 : mc0.reduce((a, s, i) => a + cpuPct(s, mc1[i]), 0),
          otherCpuPct: 0,
          stealPct: 0,
          irqPct: 0,
          retries: 0,
        };
        setOther(m, ma, mb);
        if (gc0 && gc1) {
          m.gcYoung = gc1.young - gc0.young;
          m.gcMajor = gc1.major - gc0.major;
          m.gcPauseMs = gc1.pauseMs - gc0.pauseMs;
        }
        if (this.noisy(m, retries)) {
          retries++;
          this.log(
            `    ${PEER_LABEL[peer].padEnd(18)} window discarded: other processes used ${m.otherCpuPct.toFixed(0)}% CPU (${fmt(m)})`,
          );
          continue;
        }
        m.retries = retries;
        runs.push(m);
        this.log(`    ${PEER_LABEL[peer].padEnd(18)} run ${runs.length}: ${fmt(m)}`);
      }
      return {
        peer,
        runs,
        summary: summarize(runs),
        stats: await statsOf(front),
        note:
          peer === 'plain-http'
            ? 'Node.js http server answering every request with a fixed 100-byte body (no memcached)'
            : undefined,
        setup: {
          tool: `wrk -t${threads} -c${sc.conns} -d${this.s.seconds}s${token ? " -H 'Authorization: Bearer <token>'" : ''} (Lua: rotating keys)`,
          auth: front.auth,
          loadgenCpus: this.s.pin.loadgen,
          frontCpus: this.s.pin.gateway,
        },
      };
    } finally {
      await front.stop();
    }
  }
}

const CORES = cpus().length;

/** CPU seconds per key, in µs (NaN when no key was answered). */
export function usPerKey(cpuSec: number, keys: number): number {
  return keys > 0 ? (cpuSec * 1e6) / keys : NaN;
}

/** Whatever the machine did beyond the front, the load generator and memcached: someone else's work. */
function setOther(m: RunMetrics, a: ReturnType<typeof machineSnap>, b: ReturnType<typeof machineSnap>): void {
  const { procPct, irqPct, stealPct } = machineCpu(a, b, CORES);
  const ours =
    (Number.isFinite(m.frontCpuPct) ? m.frontCpuPct : 0) +
    (Number.isFinite(m.loadgenCpuPct) ? m.loadgenCpuPct : 0) +
    m.memcachedCpuPct;
  m.otherCpuPct = Math.max(0, procPct - ours);
  m.irqPct = irqPct;
  m.stealPct = stealPct;
}

export function fmt(m: RunMetrics): string {
  const k = (v: number): string => (v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : `${(v / 1e3).toFixed(1)}k`);
  return (
    `${k(m.keysPerSec)} keys/s p50 ${m.p50Ms.toFixed(2)} p99 ${m.p99Ms.toFixed(2)} ms, front ${m.frontCpuPct.toFixed(0)}% ` +
    `${m.frontRssMb.toFixed(0)} MB, loadgen ${m.loadgenCpuPct.toFixed(0)}%, memcached ${m.memcachedCpuPct.toFixed(0)}%, irq ${m.irqPct.toFixed(0)}%, other ${m.otherCpuPct.toFixed(0)}%` +
    (m.errorCount || m.badValues || m.misses
      ? `, errors ${m.errorCount} bad ${m.badValues} miss ${m.misses} ${JSON.stringify(m.errors)}`
      : '') +
    (m.gcYoung !== undefined ? `, gc young ${m.gcYoung}` : '')
  );
}
