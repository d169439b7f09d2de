/** Shapes of the suite's settings, scenarios and the JSON result files. */
import type { Spread } from '../lib/stats';
import type { Machine, Versions } from './env';
import type { Op } from '../loadgen/types';

export type PeerName = 'kvgate' | 'naive' | 'memjs' | 'twemproxy' | 'uws-floor' | 'ceiling' | 'plain-http';
export const ALL_PEERS: PeerName[] = ['kvgate', 'naive', 'memjs', 'twemproxy', 'uws-floor', 'ceiling'];

export interface SuiteSettings {
  mode: 'quick' | 'full';
  runs: number;
  seconds: number;
  warmupSeconds: number;
  keyCount: number;
  fleet: { count: number; memoryMb: number; threads: number };
  pin: { gateway: string; loadgen: string; memcached: string };
  loadgenWorkers: number;
  /** A window during which other processes used more than this (percent of one core) is measured again. */
  noiseLimitPct: number;
  /** Noisy windows redone per peer and scenario, at most... */
  maxRetries: number;
  /** ...and in the whole run, so a machine busy for long cannot stretch the run without bound. */
  retryBudget: number;
  /** Source addresses the load generator spreads big connection counts over. */
  localAddresses: string[];
  command: string;
  /** kvgate authenticates (an API key with a namespace and rules, bench/suite/auth.ts) or not: `--auth on|off`. */
  auth: 'on' | 'off';
}

export interface Env {
  machine: Machine;
  versions: Versions;
  settings: SuiteSettings;
}

export type ScenarioKind = 'load' | 'wrk' | 'curve' | 'c10k' | 'flow' | 'redis' | 'metrics' | 'auth';

export interface Scenario {
  name: string;
  title: string;
  kind: ScenarioKind;
  transport: 'ws' | 'http';
  op: Op;
  conns: number;
  depth: number;
  valueSize: number;
  bulk: number;
  getPct: number;
  peers: PeerName[];
  /** curve: which gateway flag varies, and its values (0 window = end of turn). */
  curve?: { flag: 'window-ms' | 'max-ops'; values: number[] };
  /** flow: which flow-control scenario (bench/suite/flow.ts). */
  flow?: { kind: 'slow-reader' | 'large-mget' | 'hint' | 'nonreaders' };
  /**
   * Requests per socket write of the load generator (its `framesPerWrite`): 1 is a browser's one frame per
   * write; absent or 0 writes a turn's requests together. Applies to every peer driven over a socket.
   */
  framesPerWrite?: number;
  /** redis: the Redis peers (bench/suite/redis.ts), whose results go to `extra.peers`. */
  redis?: { peers: string[] };
  note?: string;
}

/** One measured window. */
export interface RunMetrics {
  keysPerSec: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  requests: number;
  keys: number;
  errors: Record<string, number>;
  errorCount: number;
  misses: number;
  badValues: number;
  loadgenCpuPct: number;
  loadgenMaxWorkerPct: number;
  loadgenRssMb: number;
  /** The front process (kvgate, naive, twemproxy, uWS floor, plain http); NaN when there is none. */
  frontCpuPct: number;
  /** The front's CPU (utime + stime over the window, /proc) per key answered, in µs; NaN without a front. */
  frontUsPerKey: number;
  /** The load generator's CPU per key, in µs (all its processes; wrk's for HTTP GET); the suite's own runner sets it. */
  loadgenUsPerKey?: number;
  frontRssMb: number;
  frontRssPeakMb: number;
  memcachedCpuPct: number;
  /** CPU used on the machine by processes outside the benchmark (other users' jobs), percent of one core. */
  otherCpuPct: number;
  /** CPU stolen by the hypervisor, percent of one core. */
  stealPct: number;
  /** Interrupt and softirq time (loopback TCP), charged to no process, percent of one core. */
  irqPct: number;
  /** Windows discarded before this one because other processes were busy. */
  retries: number;
  gcYoung?: number;
  gcMajor?: number;
  gcPauseMs?: number;
  /** Bytes of values returned, for GC per chunk. */
  valueBytes?: number;
}

/** What the load side of a window measures (load generator, wrk, redis-benchmark); the CPU side is added after. */
export type LoadMetrics = Pick<
  RunMetrics,
  | 'keysPerSec'
  | 'reqPerSec'
  | 'p50Ms'
  | 'p99Ms'
  | 'p999Ms'
  | 'maxMs'
  | 'requests'
  | 'keys'
  | 'errors'
  | 'errorCount'
  | 'misses'
  | 'badValues'
  | 'loadgenCpuPct'
  | 'loadgenMaxWorkerPct'
  | 'loadgenRssMb'
>;

export type Summary = Partial<Record<keyof RunMetrics, Spread>>;

export interface PeerResult {
  peer: PeerName;
  /** The x value of a curve point, with its label. */
  x?: number;
  label?: string;
  note?: string;
  skipped?: string;
  setup?: Record<string, unknown>;
  runs: RunMetrics[];
  summary: Summary;
  stats?: unknown;
}

export interface ScenarioResult {
  suite: 'kvgate-bench';
  stamp: string;
  scenario: Scenario;
  env: Env;
  startedAt: string;
  wallSeconds: number;
  peers: PeerResult[];
  extra?: Record<string, unknown>;
  /** `--tag NAME` (e.g. `before`): the result file is <stamp>-<scenario>-NAME.json. */
  tag?: string;
}
