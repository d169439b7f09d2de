/**
 * The Redis part of the report (bench/suite/redis.ts): the issue 8 targets and one table per scenario with
 * keys/s, the ratio to kvgate, latency, and front and redis-server CPU per key for every peer.
 */
import { fmtNum } from './svg';
import { REDIS_PEER_LABEL, type RedisExtra, type RedisPeer, type RedisPeerResult } from '../suite/redis';
import type { Spread } from '../lib/stats';
import type { Env, ScenarioResult } from '../suite/types';

export interface RedisTarget {
  name: string;
  figure: string;
  met: boolean | null;
}

const med = (s: Spread | undefined): number => s?.median ?? NaN;
const f1 = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '–');
const f2 = (v: number): string => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v.toFixed(1)) : '–');
const range = (s: Spread | undefined, f: (v: number) => string): string =>
  s && Number.isFinite(s.median) ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : '–';

function extraOf(results: ScenarioResult[], name: string): RedisExtra | undefined {
  const r = results.find((x) => x.scenario.name === name && x.scenario.kind === 'redis');
  return r?.extra as RedisExtra | undefined;
}

const measured = (p: RedisPeerResult | undefined): boolean => !!p && !p.skipped && p.runs.length > 0;

function peerOf(results: ScenarioResult[], sc: string, peer: RedisPeer): RedisPeerResult | undefined {
  return extraOf(results, sc)?.peers?.find((p) => p.peer === peer);
}

/** A load generator at 90% of its core or more limits the figure: the peer may be faster. */
function saturated(p: RedisPeerResult, env: Env): boolean {
  const cap = env.settings.pin.loadgen ? 100 : env.machine.cores * 100;
  return med(p.summary.loadgenCpuPct) >= 0.9 * cap;
}

function ratioTarget(
  results: ScenarioResult[],
  env: Env,
  name: string,
  sc: string,
  other: RedisPeer,
  want: number,
  asPct: boolean,
  also: RedisPeer[] = [],
): RedisTarget {
  if (!extraOf(results, sc)) return { name, met: null, figure: 'not measured in this run' };
  const k = peerOf(results, sc, 'kvgate-redis');
  const o = peerOf(results, sc, other);
  const ks = (p: RedisPeerResult | undefined): number => (measured(p) ? med(p!.summary.keysPerSec) : NaN);
  const ctx = [other, ...also]
    .map((p) => {
      const pr = peerOf(results, sc, p);
      return measured(pr)
        ? `${REDIS_PEER_LABEL[p]} ${fmtNum(ks(pr))} keys/s`
        : `${REDIS_PEER_LABEL[p]}: ${pr?.skipped ?? 'not run'}`;
    })
    .join('; ');
  if (!measured(k))
    return { name, met: null, figure: `kvgate on Redis not measured (${k?.skipped ?? 'not run'}); ${ctx}` };
  const r = ks(k) / ks(o);
  if (!Number.isFinite(r)) return { name, met: null, figure: `kvgate on Redis ${fmtNum(ks(k))} keys/s; ${ctx}` };
  const sat = [k!, o!].filter((p) => saturated(p, env)).map((p) => REDIS_PEER_LABEL[p.peer]);
  return {
    name,
    met: r >= want,
    figure:
      `${asPct ? `${(r * 100).toFixed(0)}%` : `${r.toFixed(2)}x`} (kvgate on Redis ${fmtNum(ks(k))} keys/s; ${ctx})` +
      (sat.length ? ` (load generator saturated on ${sat.join(', ')}: a floor for it)` : ''),
  };
}

export function redisTargets(results: ScenarioResult[], env: Env): RedisTarget[] {
  if (!results.some((r) => r.scenario.kind === 'redis')) return [];
  return [
    ratioTarget(
      results,
      env,
      'kvgate on Redis: WebSocket single-key gets >= 5x the naive ioredis gateway at 1,000 connections (redis-ws-get-c1000)',
      'redis-ws-get-c1000',
      'naive-redis',
      5,
      false,
      ['autopipe-redis'],
    ),
    ratioTarget(
      results,
      env,
      'kvgate on Redis: HTTP GET >= 2x webdis, same wrk command (redis-http-get-c50)',
      'redis-http-get-c50',
      'webdis',
      2,
      false,
    ),
    ratioTarget(
      results,
      env,
      'kvgate on Redis: bulk 100-key gets >= 40% of the redis-benchmark -P 64 GET ceiling (redis-mget100)',
      'redis-mget100',
      'redis-benchmark',
      0.4,
      true,
    ),
  ];
}

function table(r: ScenarioResult, x: RedisExtra, env: Env): string[] {
  const http = r.scenario.transport === 'http';
  const k = x.peers.find((p) => p.peer === 'kvgate-redis');
  const kk = measured(k) ? med(k!.summary.keysPerSec) : NaN;
  const out = [
    `| peer | ${http ? 'req/s' : 'keys/s'} median (min–max) | kvgate ÷ peer | p50 ms | p99 ms | front CPU % | **front µs per key** | redis CPU % | redis µs per key | load gen CPU % | other CPU % | in flight | answers checked |`,
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const notes: string[] = [];
  for (const p of x.peers) {
    const label = REDIS_PEER_LABEL[p.peer];
    if (!measured(p)) {
      out.push(`| ${label} | ${p.skipped ?? 'no data'} | | | | | | | | | | | |`);
      continue;
    }
    const s = p.summary;
    const n = p.note ? notes.push(`${notes.length + 1}. ${label}: ${p.note}`) : 0;
    const ratio = kk / med(s.keysPerSec);
    const errs = p.runs.reduce((a, m) => a + m.errorCount, 0);
    const bad = p.runs.reduce((a, m) => a + m.badValues, 0);
    const miss = p.runs.reduce((a, m) => a + m.misses, 0);
    const reqs = p.runs.reduce((a, m) => a + m.requests, 0);
    const checked =
      p.peer === 'redis-benchmark'
        ? `${fmtNum(reqs)} (redis-benchmark's own count)`
        : http
          ? `${fmtNum(reqs)} (status only, 20 checked by value first; ${errs} errors)`
          : errs + bad + miss
            ? `${fmtNum(reqs)}; **${errs} errors, ${bad} wrong values, ${miss} misses**`
            : `${fmtNum(reqs)} ok`;
    out.push(
      `| ${label}${n ? ` [${n}]` : ''} | ${range(s.keysPerSec, fmtNum)} | ${p.peer === 'kvgate-redis' ? '1' : Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : '–'} | ` +
        `${range(s.p50Ms, f2)} | ${range(s.p99Ms, f2)} | ${f1(med(s.frontCpuPct))} | **${f2(med(s.frontUsPerKey))}** | ${f1(med(s.redisCpuPct))} | ${f2(med(s.redisUsPerKey))} | ` +
        `${f1(med(s.loadgenCpuPct))}${saturated(p, env) ? ' **(saturated)**' : ''} | ${f1(med(s.otherCpuPct))} | ${(p.setup?.inFlight as number | undefined) ?? ''} | ${checked} |`,
    );
  }
  if (notes.length) out.push('', ...notes);
  return out;
}

/** The "Redis" section: what ran, then one table per Redis scenario. */
export function redisSection(results: ScenarioResult[], env: Env): string[] {
  const rs = results.filter((r) => r.scenario.kind === 'redis');
  if (!rs.length) return [];
  const first = rs.map((r) => r.extra as RedisExtra | undefined).find((x) => x?.redis);
  const s = env.settings;
  const L: string[] = ['## Redis', ''];
  L.push(
    `Every peer of a scenario reads the same keys from the same redis-server (${first?.redis.version.replace(/ sha=.*/, '') ?? 'version unknown'}; ` +
      `loopback, nothing persisted, ${first?.redis.pinned ? `cpu ${first.redis.pinned}` : 'not pinned'}), started for the scenario and filled once with ioredis ` +
      `(${s.keyCount.toLocaleString('en-US')} keys of the scenario's value size). Front processes (kvgate, the naive gateways, webdis) on cpu ${s.pin.gateway || 'any'}; ` +
      `load generator, wrk and redis-benchmark on cpu ${s.pin.loadgen || 'any'}. ioredis ${first?.versions.ioredis ?? '?'}, webdis ${first?.versions.webdis ?? '?'}, ${first?.versions.redisBenchmark ?? 'redis-benchmark'}. ` +
      '**Front µs per key** is the front process\'s user + system CPU time (from /proc/<pid>/stat) over the measured window divided by the keys it served; "redis µs per key" the same for redis-server.',
    '',
  );
  for (const r of rs) {
    L.push(`### ${r.scenario.name}: ${r.scenario.title}`, '');
    const x = r.extra as RedisExtra | undefined;
    if (!x?.peers) {
      L.push(`**Failed:** ${(r.extra as { error?: string } | undefined)?.error ?? 'no data'}`, '');
      continue;
    }
    L.push(...table(r, x, env), '');
  }
  return L;
}
