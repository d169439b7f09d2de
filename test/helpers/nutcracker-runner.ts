/**
 * A real twemproxy (`nutcracker`) in front of memcached servers, for interop tests: writes its YAML (one
 * or more pools, each ketama with its own hash and server list, no auto-eject), starts it with every pool
 * on a free port, and kills it on stop().
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitForPort } from '../../src/fleet/local-fleet';
import type { HashName } from '../../src/backends/memcached/hash';

export function findNutcrackerBinary(): string {
  for (const p of ['/usr/bin/nutcracker', '/usr/sbin/nutcracker']) if (existsSync(p)) return p;
  try {
    return execFileSync('sh', ['-c', 'command -v nutcracker'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('nutcracker is not installed: run `apt-get install -y nutcracker`');
  }
}

/** One server line, twemproxy's `host:port:weight [name]` (a name replaces host[:port] on the ring). */
export interface NutcrackerServer {
  host: string;
  port: number;
  weight: number;
  name?: string;
}

export interface NutcrackerPoolSpec {
  hash: HashName;
  /** In config order. */
  servers: NutcrackerServer[];
  /** The pool's YAML key; `pool_<index>` when omitted. */
  name?: string;
}

export interface NutcrackerPool extends NutcrackerPoolSpec {
  name: string;
  /** Where this pool listens, on 127.0.0.1. */
  port: number;
}

function serverLine(s: NutcrackerServer): string {
  return `${s.host}:${s.port}:${s.weight}${s.name === undefined ? '' : ' ' + s.name}`;
}

export class NutcrackerProcess {
  pools: NutcrackerPool[] = [];
  yaml = '';
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private readonly dir = mkdtempSync(join(tmpdir(), 'kvgate-nc-'));

  /** Starts one nutcracker serving every pool; resolves once all of them accept connections. */
  static async start(pools: NutcrackerPoolSpec[]): Promise<NutcrackerProcess> {
    if (pools.length === 0) throw new Error('nutcracker needs at least one pool');
    const nc = new NutcrackerProcess();
    try {
      await nc.launch(pools);
    } catch (e) {
      await nc.stop();
      throw e;
    }
    return nc;
  }

  /** The listening port of the only pool. */
  get port(): number {
    if (this.pools.length !== 1) throw new Error(`nutcracker has ${this.pools.length} pools: use pools[i].port`);
    return this.pools[0].port;
  }

  private async launch(specs: NutcrackerPoolSpec[]): Promise<void> {
    for (const [i, p] of specs.entries())
      this.pools.push({ ...p, name: p.name ?? `pool_${i}`, port: await freePort() });
    this.yaml =
      this.pools
        .map((p) =>
          [
            `${p.name}:`,
            `  listen: 127.0.0.1:${p.port}`,
            `  hash: ${p.hash}`,
            '  distribution: ketama',
            '  auto_eject_hosts: false',
            '  timeout: 5000',
            '  servers:',
            ...p.servers.map((s) => `    - ${serverLine(s)}`),
          ].join('\n'),
        )
        .join('\n') + '\n';
    const conf = join(this.dir, 'nutcracker.yml');
    const log = join(this.dir, 'nutcracker.log');
    writeFileSync(conf, this.yaml);
    const statsPort = await freePort();
    const proc = spawn(
      findNutcrackerBinary(),
      ['-c', conf, '-o', log, '-p', join(this.dir, 'nutcracker.pid'), '-a', '127.0.0.1', '-s', String(statsPort)],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.proc = proc;
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    let failStart: ((e: Error) => void) | null = null;
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        this.proc = null;
        let logText = '';
        try {
          logText = readFileSync(log, 'utf8');
        } catch {
          /* no log yet */
        }
        failStart?.(
          new Error(`nutcracker exited (${code ?? signal}) while starting:\n${stderr}${logText}\n${this.yaml}`),
        );
        resolve();
      }),
    );
    const deadline = Date.now() + 5000;
    await new Promise<void>((resolve, reject) => {
      failStart = reject;
      Promise.all(
        this.pools.map((p) =>
          waitForPort(p.port, deadline).catch(() => {
            throw new Error(`nutcracker did not listen on ${p.port} (pool ${p.name}) within 5 s`);
          }),
        ),
      ).then(() => resolve(), reject);
    });
    failStart = null;
  }

  async stop(): Promise<void> {
    this.proc?.kill('SIGKILL');
    await this.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
