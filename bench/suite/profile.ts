/**
 * Profiles kvgate under load with V8's sampling profiler (`node --cpu-prof`) and ranks functions by self
 * time, so the report can name what is slow in the gateway.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { LoadGen, sleep } from '../loadgen';
import { ROOT } from './env';
import type { Runner } from './runner';
import type { Scenario } from './types';

export interface ProfileEntry {
  fn: string;
  where: string;
  selfPct: number;
  selfMs: number;
}

export interface ProfileResult {
  scenario: string;
  seconds: number;
  totalMs: number;
  idlePct: number;
  gcPct: number;
  top: ProfileEntry[];
  /** Self time summed per source file of the gateway (src/...). */
  byFile: { file: string; selfPct: number }[];
  keysPerSec: number;
  /** Where the gateway allocates (sampling heap profiler, collected objects included). */
  alloc?: {
    seconds: number;
    requests: number;
    totalBytes: number;
    bytesPerRequest: number;
    top: AllocEntry[];
    error?: string;
  };
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export async function profileGateway(
  runner: Runner,
  sc: Scenario,
  seconds: number,
  tmpDir: string,
): Promise<ProfileResult> {
  const dir = join(tmpDir, `prof-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const front = await runner.peers.startFront(
    'kvgate',
    [],
    ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=200'],
  );
  if (!front) throw new Error('kvgate did not start');
  let keysPerSec = NaN;
  try {
    await runner.preload('kvgate', front, sc.valueSize);
    const plan = runner.peers.loadPlan('kvgate', sc, front);
    if ('skip' in plan) throw new Error(plan.skip);
    const gen = await LoadGen.start(plan.opts);
    try {
      gen.run();
      const s = await gen.measure(seconds * 1000);
      keysPerSec = s.keysPerSec;
      await gen.pause();
    } finally {
      await gen.close();
    }
  } finally {
    await front.stop();
  }
  await sleep(200);
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('kvgate wrote no CPU profile (does it exit through process.exit on SIGTERM?)');
  const prof = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
  rmSync(dir, { recursive: true, force: true });
  return { ...analyse(prof), scenario: sc.name, seconds, keysPerSec };
}

function shortUrl(url: string): string {
  if (url.startsWith('file://')) return relative(ROOT, url.slice(7));
  if (url.startsWith('/')) return relative(ROOT, url);
  return url;
}

/** Runs kvgate with the allocation hook preloaded under the same load and ranks allocation sites. */
export async function allocProfile(
  runner: Runner,
  sc: Scenario,
  seconds: number,
  tmpDir: string,
): Promise<NonNullable<ProfileResult['alloc']>> {
  const file = join(tmpDir, `alloc-${process.pid}.json`);
  rmSync(file, { force: true });
  const hook = join(__dirname, 'alloc-hook.js');
  process.env.KVGATE_ALLOC_PROFILE = file;
  let requests = 0;
  try {
    const front = await runner.peers.startFront('kvgate', [], ['-r', hook]);
    if (!front) throw new Error('kvgate did not start');
    try {
      await runner.preload('kvgate', front, sc.valueSize);
      const plan = runner.peers.loadPlan('kvgate', sc, front);
      if ('skip' in plan) throw new Error(plan.skip);
      const gen = await LoadGen.start(plan.opts);
      try {
        gen.run();
        requests = (await gen.measure(seconds * 1000)).requests;
        await gen.pause();
      } finally {
        await gen.close();
      }
    } finally {
      await front.stop();
    }
  } finally {
    delete process.env.KVGATE_ALLOC_PROFILE;
  }
  await sleep(200);
  const r = analyseAlloc(JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode });
  rmSync(file, { force: true });
  // the profile covers the whole life of the process (start, connections, preload), the count only the window
  return {
    seconds,
    requests,
    totalBytes: r.totalBytes,
    bytesPerRequest: r.totalBytes / Math.max(1, requests),
    top: r.top,
  };
}

export function analyse(prof: CpuProfile): Omit<ProfileResult, 'scenario' | 'seconds' | 'keysPerSec'> {
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = (prof.timeDeltas[i + 1] ?? prof.timeDeltas[i] ?? 0) / 1000;
    self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + dt);
  }
  const agg = new Map<string, ProfileEntry>();
  const files = new Map<string, number>();
  let total = 0;
  let idle = 0;
  let gc = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id);
    if (!n) continue;
    total += ms;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') {
      idle += ms;
      continue;
    }
    if (functionName === '(garbage collector)') gc += ms;
    let where = shortUrl(url);
    if (where) where += `:${lineNumber + 1}`;
    const key = `${functionName}@${where}`;
    const e = agg.get(key) ?? { fn: functionName || '(anonymous)', where: where || '(native)', selfPct: 0, selfMs: 0 };
    e.selfMs += ms;
    agg.set(key, e);
    const f = where.split(':')[0];
    if (f.startsWith('dist/src/') || f.startsWith('src/')) files.set(f, (files.get(f) ?? 0) + ms);
  }
  const busy = total - idle;
  const top = [...agg.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, 15);
  for (const e of top) e.selfPct = (e.selfMs / busy) * 100;
  return {
    totalMs: total,
    idlePct: (idle / total) * 100,
    gcPct: (gc / busy) * 100,
    top,
    byFile: [...files.entries()]
      .map(([file, ms]) => ({ file, selfPct: (ms / busy) * 100 }))
      .sort((a, b) => b.selfPct - a.selfPct)
      .slice(0, 10),
  };
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

export interface AllocEntry {
  fn: string;
  where: string;
  bytesPct: number;
  bytes: number;
}

/** Ranks allocation sites of a sampling heap profile by bytes allocated. */
export function analyseAlloc(profile: { head: HeapNode }): { totalBytes: number; top: AllocEntry[] } {
  const agg = new Map<string, AllocEntry>();
  let total = 0;
  const walk = (n: HeapNode): void => {
    if (n.selfSize > 0) {
      const { functionName, url, lineNumber } = n.callFrame;
      let where = shortUrl(url);
      if (where) where += `:${lineNumber + 1}`;
      const key = `${functionName}@${where}`;
      const e = agg.get(key) ?? {
        fn: functionName || '(anonymous)',
        where: where || '(native)',
        bytesPct: 0,
        bytes: 0,
      };
      e.bytes += n.selfSize;
      agg.set(key, e);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c);
  };
  walk(profile.head);
  const top = [...agg.values()].sort((a, b) => b.bytes - a.bytes).slice(0, 12);
  for (const e of top) e.bytesPct = (e.bytes / total) * 100;
  return { totalBytes: total, top };
}
