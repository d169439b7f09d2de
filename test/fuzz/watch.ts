/**
 * Watches the gateway from outside: the process stays alive, its RSS stays under a bound, its log shows
 * no stack trace, no INTERNAL and no flood, and /healthz keeps answering.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import type { Report } from './report';

export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

/** Events the gateway logs in normal operation (its log is JSON lines, src/ops/logger.ts). */
const EXPECTED_EVENTS = new Set(['listening', 'fleet.started', 'drain.start', 'drain.idle', 'drain.done', 'signal']);

/** True for a log line of normal operation: a JSON line with one of those events, below warn. */
function expected(line: string): boolean {
  if (line === '') return true;
  try {
    const rec = JSON.parse(line) as { level?: number; event?: string };
    return (rec.level ?? 100) < 40 && EXPECTED_EVENTS.has(rec.event ?? '');
  } catch {
    return false;
  }
}
const FLOOD_BYTES = 256 * 1024;

export class LogWatch {
  private at = 0;
  private flooded = false;
  constructor(
    private readonly output: () => string,
    private readonly report: Report,
    private readonly recent: () => string,
  ) {}

  look(): void {
    const out = this.output();
    if (out.length <= this.at) return;
    const text = out.slice(this.at);
    const end = text.lastIndexOf('\n');
    if (end < 0) return;
    this.at += end + 1;
    for (const line of text.slice(0, end).split('\n')) {
      if (expected(line)) continue;
      const shape = line.replace(/\d+/g, 'N').slice(0, 100);
      let kind: string;
      if (/^\s+at \S/.test(line)) kind = 'gateway log: stack trace';
      else if (/INTERNAL/.test(line)) kind = 'gateway log: INTERNAL';
      else if (/\b[A-Z]\w*Error\b/.test(line)) kind = `gateway log: error: ${shape.slice(0, 60)}`;
      else kind = `gateway log: unexpected line: ${shape.slice(0, 60)}`;
      this.report.anomaly(kind, {
        stream: 'log',
        n: -1,
        inputKind: 'log',
        what: `${line.slice(0, 300)} (recent inputs: ${this.recent()})`,
      });
    }
    if (!this.flooded && out.length > FLOOD_BYTES) {
      this.flooded = true;
      this.report.anomaly('gateway log: flood', {
        stream: 'log',
        n: -1,
        inputKind: 'log',
        what: `more than ${FLOOD_BYTES} bytes of log`,
      });
    }
  }
}

/** GET /healthz once; null when it answered 200 in time, else what went wrong. */
export function healthz(host: string, port: number, ms: number): Promise<string | null> {
  return new Promise((resolve) => {
    const req = request({ host, port, path: '/healthz', agent: false }, (res) => {
      res.resume();
      res.on('end', () => {
        clearTimeout(timer);
        resolve(res.statusCode === 200 ? null : `status ${res.statusCode}`);
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      resolve(`no answer within ${ms} ms`);
    }, ms);
    req.on('error', (e) => {
      clearTimeout(timer);
      resolve(e.message);
    });
    req.end();
  });
}
