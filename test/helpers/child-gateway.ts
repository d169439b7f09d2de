/**
 * The gateway as its own process (`node dist/src/main.js --config FILE`), for what only an outside view
 * can measure: its RSS, signals, exit codes. The port comes from its "listening on" line (port 0 in the
 * config lets it pick a free one).
 */
import { spawn, ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ChildGateway {
  proc: ChildProcess;
  port: number;
  /** Resident set size now, from /proc. */
  rss(): number;
  output(): string;
  exited: Promise<number | null>;
  kill(): Promise<void>;
}

const MAIN = join(__dirname, '..', '..', 'src', 'main.js');

export async function startChildGateway(config: Record<string, unknown>): Promise<ChildGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'kvgate-child-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ port: 0, ...config }));
  const proc = spawn(process.execPath, [MAIN, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`gateway did not start: ${out}`)), 15_000);
    const look = (): void => {
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(out);
      if (m) { clearTimeout(t); proc.stdout!.off('data', look); resolve(Number(m[1])); }
    };
    proc.stdout!.on('data', look);
    void exited.then((code) => { clearTimeout(t); reject(new Error(`gateway exited ${code}: ${out}`)); });
  });
  return {
    proc, port, exited,
    output: () => out,
    rss: () => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))![1]) * 1024,
    async kill() {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}
