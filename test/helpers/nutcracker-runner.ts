/**
 * A real twemproxy (`nutcracker`) in front of a list of memcached servers, for interop tests: writes its
 * YAML (ketama, the given hash, servers in the given order, no auto-eject), starts it on a free port and
 * kills it on stop().
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/fleet/local-fleet';

export function findNutcrackerBinary(): string {
  for (const p of ['/usr/bin/nutcracker', '/usr/sbin/nutcracker']) if (existsSync(p)) return p;
  try {
    return execFileSync('sh', ['-c', 'command -v nutcracker'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('nutcracker is not installed: run `apt-get install -y nutcracker`');
  }
}

export class NutcrackerProcess {
  port = 0;
  yaml = '';
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private readonly dir = mkdtempSync(join(tmpdir(), 'kvgate-nc-'));

  /** `servers`: memcached ports on 127.0.0.1, in ring order (weight 1 each). */
  static async start(hash: 'fnv1a_64' | 'md5', servers: number[]): Promise<NutcrackerProcess> {
    const nc = new NutcrackerProcess();
    await nc.launch(hash, servers);
    return nc;
  }

  private async launch(hash: string, servers: number[]): Promise<void> {
    this.port = await freePort();
    this.yaml = [
      'kvgate_interop:',
      `  listen: 127.0.0.1:${this.port}`,
      `  hash: ${hash}`,
      '  distribution: ketama',
      '  auto_eject_hosts: false',
      '  timeout: 5000',
      '  servers:',
      ...servers.map((p) => `    - 127.0.0.1:${p}:1`),
      '',
    ].join('\n');
    const conf = join(this.dir, 'nutcracker.yml');
    const log = join(this.dir, 'nutcracker.log');
    writeFileSync(conf, this.yaml);
    const statsPort = await freePort();
    const proc = spawn(findNutcrackerBinary(), ['-c', conf, '-o', log, '-p', join(this.dir, 'nutcracker.pid'), '-a', '127.0.0.1', '-s', String(statsPort)],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    let failStart: ((e: Error) => void) | null = null;
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
      this.proc = null;
      let logText = '';
      try { logText = readFileSync(log, 'utf8'); } catch { /* none */ }
      failStart?.(new Error(`nutcracker exited (${code ?? signal}) while starting:\n${stderr}${logText}\n${this.yaml}`));
      resolve();
    }));
    const deadline = Date.now() + 5000;
    await new Promise<void>((resolve, reject) => {
      failStart = reject;
      const attempt = (): void => {
        const s = createConnection({ host: '127.0.0.1', port: this.port });
        s.once('connect', () => { s.destroy(); resolve(); });
        s.once('error', () => {
          s.destroy();
          if (Date.now() > deadline) reject(new Error(`nutcracker did not listen on ${this.port}`));
          else setTimeout(attempt, 10);
        });
      };
      attempt();
    });
    failStart = null;
  }

  async stop(): Promise<void> {
    this.proc?.kill('SIGKILL');
    await this.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
