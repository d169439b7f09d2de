/** Runs wrk (pinned like the load generator) and reads its summary line and its CPU time. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { LoadMetrics } from './types';

export interface WrkResult {
  requests: number;
  durationS: number;
  reqPerSec: number;
  errors: Record<string, number>;
  errorCount: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  cpuPct: number;
}

const SCRIPT = join(__dirname, '..', '..', '..', 'bench', 'loadgen', 'wrk-get.lua');

/**
 * What a wrk run says in the fields every scenario's window records: one key per request, no value
 * checked per request (misses and bad values are checked before the run, not counted by wrk), and wrk's
 * own CPU as the load generator's.
 */
export function wrkLoadMetrics(w: WrkResult): LoadMetrics {
  return {
    keysPerSec: w.reqPerSec,
    reqPerSec: w.reqPerSec,
    p50Ms: w.p50Ms,
    p99Ms: w.p99Ms,
    p999Ms: w.p999Ms,
    maxMs: w.maxMs,
    requests: w.requests,
    keys: w.requests,
    errors: w.errors,
    errorCount: w.errorCount,
    misses: 0,
    badValues: 0,
    loadgenCpuPct: w.cpuPct,
    loadgenMaxWorkerPct: w.cpuPct,
    loadgenRssMb: NaN,
  };
}

export function runWrk(
  url: string,
  conns: number,
  seconds: number,
  cpus: string,
  keyCount: number,
  threads = 1,
  /** KV_PATH / KV_SUFFIX for the Lua script: the URL of a key is path + `k<size>:<index>` + suffix. */
  env: Record<string, string> = {},
  /** kvgate's token: every request carries `Authorization: Bearer <token>` (wrk -H; the Lua script's requests include it). */
  token?: string,
): Promise<WrkResult> {
  if (token !== undefined && !/^[A-Za-z0-9._~+/=-]+$/.test(token))
    throw new Error('runWrk: the token has characters a shell would read');
  const header = token === undefined ? [] : ['-H', `'Authorization: Bearer ${token}'`];
  const wrk = [
    'wrk',
    `-t${threads}`,
    `-c${conns}`,
    `-d${seconds}s`,
    '--timeout',
    '5s',
    ...header,
    '-s',
    SCRIPT,
    url,
  ].join(' ');
  const cmd = `${cpus ? `taskset -c ${cpus} ` : ''}${wrk}; times`;
  return new Promise((resolve, reject) => {
    const p = spawn('bash', ['-c', cmd], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, KV_KEYS: String(keyCount), KV_PREFIX: 'k100', ...env },
    });
    let out = '';
    p.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    p.stderr.on('data', (b: Buffer) => {
      out += b.toString();
    });
    p.once('exit', (code) => {
      const m = /WRKJSON (\{.*\})/.exec(out);
      if (!m) return reject(new Error(`wrk failed (${code}): ${out.slice(-1500)}`));
      const j = JSON.parse(m[1]) as Record<string, number>;
      // `times` prints the shell's and then its children's user and system time: "0m1.234s 0m0.567s"
      const t = [...out.matchAll(/(\d+)m([\d.]+)s (\d+)m([\d.]+)s/g)];
      const child = t[1] ?? t[0];
      const cpuSec = child ? Number(child[1]) * 60 + Number(child[2]) + Number(child[3]) * 60 + Number(child[4]) : NaN;
      const durationS = j.duration_us / 1e6;
      const errors: Record<string, number> = {};
      for (const k of ['connect', 'read', 'write', 'status', 'timeout'])
        if (j[`errors_${k}`]) errors[`wrk_${k}`] = j[`errors_${k}`];
      resolve({
        requests: j.requests,
        durationS,
        reqPerSec: j.requests / durationS,
        errors,
        errorCount: Object.values(errors).reduce((a, b) => a + b, 0),
        p50Ms: j.p50_us / 1000,
        p99Ms: j.p99_us / 1000,
        p999Ms: j.p999_us / 1000,
        maxMs: j.max_us / 1000,
        cpuPct: (cpuSec / durationS) * 100,
      });
    });
  });
}
