/**
 * The gateway as a child process on a port chosen here (`node dist/src/main.js --config FILE`), for what
 * only the outside can see: signals, exit codes and times, and limits of the process itself (its open-file
 * limit, set with the shell's `ulimit -n` before exec). Loopback only.
 */
import { spawn, ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { freePort } from '../../src/fleet/local-fleet';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

export interface GatewayProcess {
  proc: ChildProcess;
  port: number;
  /** The admin listener's port, from the listening line (0 when spawned with `listening: false`). */
  adminPort: number;
  /** Everything it printed (stdout and stderr). */
  output(): string;
  /** Resolves on exit; `at` is performance.now() of this process when the exit was seen. */
  exited: Promise<Exit>;
  /** Sends a signal; returns performance.now() just before sending. */
  signal(sig: NodeJS.Signals): number;
  /** SIGKILL unless already gone; waits for the exit. */
  kill(): Promise<Exit>;
}

const MAIN = join(__dirname, '..', '..', 'src', 'main.js');

/**
 * `openFiles`: the child's open-file limit. `listening: false` returns as soon as it is spawned, without
 * waiting for its "listening on" line (to catch it while it starts). `port`: this public port rather than
 * a free one (to start a second gateway on a port that is taken).
 */
export async function spawnGateway(
  config: Record<string, unknown>,
  opts: { openFiles?: number; listening?: boolean; port?: number } = {},
): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'kvgate-proc-'));
  const file = join(dir, 'config.json');
  const port = opts.port ?? (await freePort());
  // Authentication off unless the test configures it (a loopback test gateway may run so).
  const sec = (config.security ?? {}) as Record<string, unknown>;
  const security = { ...sec, auth: { mode: 'off', ...((sec.auth ?? {}) as Record<string, unknown>) } };
  writeFileSync(file, JSON.stringify({ host: '127.0.0.1', admin: { port: 0 }, ...config, security, port }));
  const proc =
    opts.openFiles === undefined
      ? spawn(process.execPath, [MAIN, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(
          'bash',
          ['-c', `ulimit -n ${opts.openFiles} && exec "$0" "$@"`, process.execPath, MAIN, '--config', file],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const exited = new Promise<Exit>((resolve) => {
    proc.once('exit', (code, signal) => {
      const at = performance.now();
      rmSync(dir, { recursive: true, force: true });
      resolve({ code, signal, at });
    });
  });
  let adminPort = 0;
  if (opts.listening !== false) {
    try {
      adminPort = await listening();
    } catch (e) {
      proc.kill('SIGKILL');
      throw e;
    }
  }
  return {
    proc,
    port,
    adminPort,
    exited,
    output: () => out,
    signal(sig) {
      const at = performance.now();
      proc.kill(sig);
      return at;
    },
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      return exited;
    },
  };

  async function listening(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`gateway did not start within 15 s: ${out}`)), 15_000);
      const look = (): void => {
        if (!/"event":"listening"/.test(out)) return;
        clearTimeout(timer);
        proc.stdout!.off('data', look);
        resolve();
      };
      proc.stdout!.on('data', look);
      void exited.then((e) => {
        clearTimeout(timer);
        reject(new Error(`gateway exited (${e.code ?? e.signal}) before listening: ${out}`));
      });
    });
    const line = out.split('\n').find((l) => l.includes('"event":"listening"'))!;
    const rec = JSON.parse(line) as { port: number; adminPort: number };
    if (rec.port !== port) throw new Error(`gateway is not listening on the port it was given (${port}): ${out}`);
    return rec.adminPort;
  }
}
