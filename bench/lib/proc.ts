/**
 * Child processes for the suite: start a server (optionally pinned with taskset), wait until it is ready,
 * read its CPU time and RSS from /proc, and stop it. Everything started here is killed on exit.
 */
import { spawn, ChildProcess, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';

const live = new Set<ChildProcess>();
let hooked = false;

function killAllNow(): void {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
  live.clear();
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', killAllNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAllNow();
      process.exit(130);
    });
  }
}

export interface ServerProc {
  name: string;
  proc: ChildProcess;
  pid: number;
  output: string[];
  stop(): Promise<void>;
}

export interface SpawnOptions {
  name: string;
  cmd: string;
  args: string[];
  /** taskset CPU list, e.g. "0"; empty for none. */
  cpus?: string;
  /** Resolve once stdout/stderr shows this text... */
  readyText?: string;
  /** ...or once this TCP port accepts connections. */
  readyPort?: number;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export async function startServer(o: SpawnOptions): Promise<ServerProc> {
  hook();
  const cmd = o.cpus ? 'taskset' : o.cmd;
  const args = o.cpus ? ['-c', o.cpus, o.cmd, ...o.args] : o.args;
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: o.env ?? process.env });
  live.add(proc);
  const output: string[] = [];
  let exited = false;
  proc.once('exit', () => {
    exited = true;
    live.delete(proc);
  });
  const server: ServerProc = {
    name: o.name,
    proc,
    pid: proc.pid ?? 0,
    output,
    stop: () =>
      new Promise<void>((resolve) => {
        if (exited) return resolve();
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        proc.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        proc.kill('SIGTERM');
      }),
  };
  await new Promise<void>((resolve, reject) => {
    const deadline = Date.now() + (o.timeoutMs ?? 15000);
    let done = false;
    const finish = (e?: Error): void => {
      if (done) return;
      done = true;
      if (e) reject(e);
      else resolve();
    };
    const onOut = (b: Buffer): void => {
      const s = b.toString();
      output.push(s);
      if (output.length > 200) output.splice(0, output.length - 200);
      if (o.readyText && s.includes(o.readyText)) finish();
    };
    proc.stdout?.on('data', onOut);
    proc.stderr?.on('data', onOut);
    proc.once('exit', (code) =>
      finish(new Error(`${o.name} exited (${code}) before it was ready: ${output.join('').slice(-2000)}`)),
    );
    if (o.readyPort) {
      const tryPort = (): void => {
        if (done) return;
        const s = createConnection({ host: '127.0.0.1', port: o.readyPort as number });
        s.once('connect', () => {
          s.destroy();
          finish();
        });
        s.once('error', () => {
          s.destroy();
          if (Date.now() > deadline) finish(new Error(`${o.name}: port ${o.readyPort} never opened`));
          else setTimeout(tryPort, 25);
        });
      };
      tryPort();
    }
    setTimeout(
      () =>
        finish(new Error(`${o.name} was not ready within ${o.timeoutMs ?? 15000} ms: ${output.join('').slice(-2000)}`)),
      o.timeoutMs ?? 15000,
    ).unref();
  });
  return server;
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();
const PAGE = (() => {
  try {
    return Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096;
  } catch {
    return 4096;
  }
})();

export interface ProcSnap {
  cpuSec: number;
  rssBytes: number;
  at: number;
}

/** CPU seconds (user + system) and RSS of a process, from /proc. */
export function procSnap(pid: number): ProcSnap {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields after "(comm) ": state=0, ..., utime=11, stime=12, rss=21
    const cpuSec = (Number(f[11]) + Number(f[12])) / CLK_TCK;
    const rssBytes = Number(f[21]) * PAGE;
    return { cpuSec, rssBytes, at: performance.now() };
  } catch {
    return { cpuSec: NaN, rssBytes: NaN, at: performance.now() };
  }
}

export function cpuPct(a: ProcSnap, b: ProcSnap): number {
  return ((b.cpuSec - a.cpuSec) / ((b.at - a.at) / 1000)) * 100;
}

/** Samples RSS of some processes every `ms` while a window runs, keeping the peak. */
export class RssPeak {
  peak = 0;
  private t: NodeJS.Timeout;
  constructor(
    private readonly pids: number[],
    ms = 200,
  ) {
    this.t = setInterval(() => this.sample(), ms);
    this.sample();
  }
  private sample(): void {
    let total = 0;
    for (const p of this.pids) total += procSnap(p).rssBytes || 0;
    if (total > this.peak) this.peak = total;
  }
  stop(): number {
    clearInterval(this.t);
    this.sample();
    return this.peak;
  }
}

export interface MachineSnap {
  /** user + nice + system: time charged to processes. */
  proc: number;
  /** irq + softirq: kernel work (loopback networking mostly) charged to no process. */
  irq: number;
  steal: number;
  total: number;
}

/** Whole-machine CPU counters from /proc/stat (jiffies). */
export function machineSnap(): MachineSnap {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = v;
    const total = user + nice + system + idle + iowait + irq + softirq + (steal || 0);
    return { proc: user + nice + system, irq: irq + softirq, steal: steal || 0, total };
  } catch {
    return { proc: NaN, irq: NaN, steal: NaN, total: NaN };
  }
}

/** Process, interrupt and stolen CPU between two snapshots, in percent of one core. */
export function machineCpu(
  a: MachineSnap,
  b: MachineSnap,
  cores: number,
): { procPct: number; irqPct: number; stealPct: number } {
  const dt = b.total - a.total;
  const pct = (x: number): number => (x / dt) * 100 * cores;
  return { procPct: pct(b.proc - a.proc), irqPct: pct(b.irq - a.irq), stealPct: pct(b.steal - a.steal) };
}

export function killAll(): void {
  killAllNow();
}

/** VmRSS of a process from /proc/<pid>/status, in bytes; NaN when the process is gone. */
export function vmRssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Memory the kernel holds in TCP socket buffers, machine-wide, from /proc/net/sockstat (bytes). */
export function tcpBufferBytes(): number {
  try {
    const m = /^TCP:.* mem (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
    return m ? Number(m[1]) * PAGE : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Reads one process's VmRSS (and the kernel's TCP buffer memory) every `ms` (100 by default) until
 * stopped: the peaks, and every sample as [ms since start, RSS MB, TCP buffers MB], so a result can show
 * when memory rose, whether it came back down, and how much of what a client did not read sat in the kernel.
 */
export class RssTrace {
  peakBytes = 0;
  readonly samples: [number, number, number][] = [];
  private readonly t0 = performance.now();
  private readonly t: NodeJS.Timeout;
  constructor(
    private readonly pid: number,
    ms = 100,
  ) {
    this.t = setInterval(() => this.sample(), ms);
    this.sample();
  }

  /** Samples now and returns the RSS in bytes (NaN if the process is gone). */
  sample(): number {
    const b = vmRssBytes(this.pid);
    if (Number.isFinite(b)) {
      if (b > this.peakBytes) this.peakBytes = b;
      const r = (x: number): number => Math.round((x / 1048576) * 10) / 10;
      this.samples.push([Math.round(performance.now() - this.t0), r(b), r(tcpBufferBytes())]);
    }
    return b;
  }

  /** The peak RSS (column 1) or TCP buffer memory (column 2) since `fromMs` (ms since start), in MB. */
  peakSinceMb(fromMs: number, column: 1 | 2 = 1): number {
    let p = NaN;
    for (const s of this.samples) if (s[0] >= fromMs && !(s[column] <= p)) p = s[column];
    return p;
  }

  /** The latest TCP buffer memory sampled, MB. */
  get lastTcpMb(): number {
    return this.samples.length ? this.samples[this.samples.length - 1][2] : NaN;
  }

  get elapsedMs(): number {
    return performance.now() - this.t0;
  }

  stop(): void {
    clearInterval(this.t);
    this.sample();
  }
}
