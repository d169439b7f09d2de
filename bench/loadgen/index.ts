/**
 * The load generator's coordinator: forks worker processes (optionally pinned with taskset), splits the
 * connections between them, and merges their counters and histograms into one sample per window.
 */
import { fork, ChildProcess, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Histogram } from '../lib/hist';
import type { FromWorker, ToWorker, WorkerConfig, WorkerSample } from './types';

export interface LoadOptions extends Omit<WorkerConfig, 'index' | 'workers' | 'conns' | 'seed'> {
  workers: number;
  /** Total connections (ceiling mode: per server, over all workers). */
  conns: number;
  /** taskset CPU list for the workers, e.g. "1"; empty for no pinning. */
  cpus: string;
  seed?: number;
}

export interface LoadSample {
  durationS: number;
  requests: number;
  keys: number;
  reqPerSec: number;
  keysPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  errors: Record<string, number>;
  errorCount: number;
  misses: number;
  badValues: number;
  /** Percent of one core, summed over workers, and the busiest worker. */
  cpuPct: number;
  cpuMaxWorkerPct: number;
  rssMb: number;
  conns: number;
}

class Worker {
  private waiters: { ev: FromWorker['ev']; resolve: (m: FromWorker) => void; reject: (e: Error) => void }[] = [];
  exited = false;

  constructor(readonly proc: ChildProcess) {
    proc.on('message', (m: FromWorker) => {
      if (m.ev === 'fatal') {
        const err = new Error(`load worker failed: ${m.message}`);
        for (const w of this.waiters.splice(0)) w.reject(err);
        return;
      }
      const i = this.waiters.findIndex((w) => w.ev === m.ev);
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(m);
    });
    proc.on('exit', (code) => {
      this.exited = true;
      for (const w of this.waiters.splice(0)) w.reject(new Error(`load worker exited (${code})`));
    });
  }

  send(m: ToWorker | { cmd: 'init'; cfg: WorkerConfig }): void {
    if (!this.exited) this.proc.send(m);
  }

  ask<T extends FromWorker>(m: ToWorker, ev: T['ev']): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiters.push({ ev, resolve: resolve as (m: FromWorker) => void, reject });
      this.send(m);
    });
  }
}

export class LoadGen {
  private constructor(
    private readonly workers: Worker[],
    readonly opts: LoadOptions,
  ) {}

  get pids(): number[] {
    return this.workers.map((w) => w.proc.pid ?? 0);
  }

  /** Forks the workers and opens every connection. */
  static async start(opts: LoadOptions): Promise<LoadGen> {
    const n = Math.max(1, Math.min(opts.workers, opts.conns));
    const workers: Worker[] = [];
    for (let i = 0; i < n; i++) {
      const proc = fork(join(__dirname, 'worker.js'), [], {
        // BENCH_LOADGEN_PROF=dir profiles the workers themselves (to keep the load generator lean)
        execArgv: [
          '--max-semi-space-size=32',
          ...(process.env.BENCH_LOADGEN_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_LOADGEN_PROF}`] : []),
        ],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      if (opts.cpus && proc.pid) {
        try {
          execFileSync('taskset', ['-p', '-c', opts.cpus, String(proc.pid)], { stdio: 'ignore' });
        } catch {
          // pinning is best effort; the report records what was asked
        }
      }
      const w = new Worker(proc);
      const conns = Math.floor(opts.conns / n) + (i < opts.conns % n ? 1 : 0);
      w.send({ cmd: 'init', cfg: { ...opts, index: i, workers: n, conns, seed: opts.seed ?? 1 } });
      workers.push(w);
    }
    const gen = new LoadGen(workers, opts);
    try {
      const res = await Promise.all(
        workers.map((w) => w.ask<Extract<FromWorker, { ev: 'connected' }>>({ cmd: 'connect' }, 'connected')),
      );
      const failed = res.reduce((a, r) => a + r.failed, 0);
      if (failed > 0)
        throw new Error(`${failed} of ${opts.conns} connections failed: ${res.find((r) => r.firstError)?.firstError}`);
    } catch (e) {
      await gen.close();
      throw e;
    }
    return gen;
  }

  async preload(): Promise<{ keys: number; errors: Record<string, number> }> {
    const res = await Promise.all(
      this.workers.map((w) => w.ask<Extract<FromWorker, { ev: 'preloaded' }>>({ cmd: 'preload' }, 'preloaded')),
    );
    const errors: Record<string, number> = {};
    for (const r of res) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
    return { keys: res.reduce((a, r) => a + r.keys, 0), errors };
  }

  /** Starts issuing: closed loop (rate 0) or `rate` requests/s in total. */
  run(rate = 0): void {
    const n = this.workers.length;
    for (const w of this.workers) w.send({ cmd: 'run', rate: rate > 0 ? rate / n : 0 });
  }

  reset(): void {
    for (const w of this.workers) w.send({ cmd: 'reset' });
  }

  async collect(): Promise<LoadSample> {
    const samples = (
      await Promise.all(
        this.workers.map((w) => w.ask<Extract<FromWorker, { ev: 'sample' }>>({ cmd: 'collect' }, 'sample')),
      )
    ).map((m) => m.sample);
    return merge(samples);
  }

  async measure(ms: number): Promise<LoadSample> {
    this.reset();
    await sleep(ms);
    return this.collect();
  }

  async pause(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.ask({ cmd: 'pause' }, 'paused')));
  }

  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.exited) return resolve();
            const t = setTimeout(() => {
              w.proc.kill('SIGKILL');
            }, 5000);
            w.proc.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            w.send({ cmd: 'close' });
          }),
      ),
    );
  }
}

export function merge(samples: WorkerSample[]): LoadSample {
  const h = new Histogram();
  let requests = 0;
  let keys = 0;
  let misses = 0;
  let badValues = 0;
  let elapsed = 0;
  let cpu = 0;
  let cpuMax = 0;
  let rss = 0;
  let conns = 0;
  const errors: Record<string, number> = {};
  for (const s of samples) {
    h.addSparse(s.hist, s.histMax);
    requests += s.requests;
    keys += s.keys;
    misses += s.misses;
    badValues += s.badValues;
    elapsed = Math.max(elapsed, s.elapsedNs);
    for (const [k, v] of Object.entries(s.errors)) errors[k] = (errors[k] ?? 0) + v;
    const pct = ((s.cpuUserUs + s.cpuSystemUs) / 1000 / (s.elapsedNs / 1e6)) * 100;
    cpu += pct;
    cpuMax = Math.max(cpuMax, pct);
    rss += s.rssBytes;
    conns += s.conns;
  }
  const durationS = elapsed / 1e9;
  return {
    durationS,
    requests,
    keys,
    reqPerSec: requests / durationS,
    keysPerSec: keys / durationS,
    p50Ms: h.quantile(0.5) / 1e6,
    p99Ms: h.quantile(0.99) / 1e6,
    p999Ms: h.quantile(0.999) / 1e6,
    maxMs: h.max / 1e6,
    errors,
    errorCount: Object.values(errors).reduce((a, b) => a + b, 0),
    misses,
    badValues,
    cpuPct: cpu,
    cpuMaxWorkerPct: cpuMax,
    rssMb: rss / 1048576,
    conns,
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
