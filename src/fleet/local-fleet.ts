/**
 * Starts memcached processes on loopback from the system's `memcached` binary, for the zero-config start,
 * the tests and the benchmarks. Every process is killed when the fleet stops or this process exits.
 */
import { spawn, ChildProcess, execFileSync } from 'node:child_process';
import { createConnection, createServer } from 'node:net';
import type { ServerSpec } from '../config/schema';

export interface LocalFleetOptions {
  count: number;
  memoryMb?: number;
  threads?: number;
  /** memcached's -I: must exceed the gateway's max value plus item overhead. */
  itemSizeMb?: number;
  ports?: number[];
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function killAll(): void {
  for (const p of live) p.kill('SIGKILL');
  live.clear();
}

export function findMemcached(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v memcached'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('memcached is not installed: run `apt-get install -y memcached` (or configure servers)');
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * `n` distinct free ports: all held open at once, then released. One `freePort` after another may get
 * the same port back (it is free again once closed), and two members on one port is a fleet of one.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const srv = createServer();
          srv.once('error', reject);
          srv.listen(0, '127.0.0.1', () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((srv) => (srv.address() as { port: number }).port);
  await Promise.all(servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
  return ports;
}

/**
 * Polls 127.0.0.1:`port` until something accepts a connection; rejects once `deadlineMs` (an absolute
 * `Date.now()` time, not a duration) has passed.
 */
export function waitForPort(port: number, deadlineMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const tryOnce = (): void => {
      const s = createConnection({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadlineMs) reject(new Error(`memcached on port ${port} did not start`));
        else setTimeout(tryOnce, 20);
      });
    };
    tryOnce();
  });
}

export class MemcachedProcess {
  proc: ChildProcess | null = null;
  constructor(
    readonly port: number,
    private readonly args: string[],
    private readonly bin: string,
  ) {}

  async start(): Promise<void> {
    if (this.proc) return;
    const proc = spawn(this.bin, this.args, { stdio: ['ignore', 'ignore', 'inherit'] });
    this.proc = proc;
    live.add(proc);
    proc.once('exit', () => {
      live.delete(proc);
      if (this.proc === proc) this.proc = null;
    });
    await waitForPort(this.port, Date.now() + 5000);
  }

  /** Kills the process and waits until it is gone, so the port is free for a restart. */
  stop(): Promise<void> {
    const p = this.proc;
    if (!p) return Promise.resolve();
    return new Promise((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  }
}

export class LocalFleet {
  readonly members: MemcachedProcess[] = [];

  static async start(opts: LocalFleetOptions): Promise<LocalFleet> {
    const bin = findMemcached();
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', killAll);
    }
    const fleet = new LocalFleet();
    const free = await freePorts(opts.count);
    for (let i = 0; i < opts.count; i++) {
      const port = opts.ports?.[i] ?? free[i];
      const args = [
        '-l',
        '127.0.0.1',
        '-p',
        String(port),
        '-U',
        '0',
        '-m',
        String(opts.memoryMb ?? 64),
        '-t',
        String(opts.threads ?? 1),
        '-I',
        `${opts.itemSizeMb ?? 2}m`,
        '-c',
        '4096',
      ];
      if (process.getuid?.() === 0) args.push('-u', 'root');
      fleet.members.push(new MemcachedProcess(port, args, bin));
    }
    try {
      await Promise.all(fleet.members.map((m) => m.start()));
    } catch (e) {
      await fleet.stop();
      throw e;
    }
    return fleet;
  }

  servers(): ServerSpec[] {
    return this.members.map((m) => ({ host: '127.0.0.1', port: m.port, weight: 1 }));
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.stop()));
  }
}
