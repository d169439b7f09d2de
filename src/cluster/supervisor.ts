/**
 * `workers` > 1: this process serves no client. It forks the workers (node:cluster, worker.ts), each a
 * gateway on the same public port: uWS listens with SO_REUSEPORT in every one (it does not use cluster's
 * shared handle), and the kernel spreads new connections over them. The supervisor:
 *  - restarts a worker that exits without being asked, after a backoff (100 ms doubling to 10 s; back to
 *    100 ms once a worker has lived 10 s), so a crash loop does not spin;
 *  - runs the admin listener: /metrics sums the workers' families (prom-client's AggregatorRegistry, by
 *    each family's aggregator) and adds its own (`kvgate_worker_up`, `kvgate_worker_restarts_total`),
 *    /readyz is ready when every worker is, /debug/stats maps each worker to its stats, /admin/reload
 *    asks every worker; the console (ops/console.ts): the page from here, /console/data summed over
 *    the workers (ops/console-merge.ts) with each worker's health, and the key routes (placement, get,
 *    set, delete) answered by one worker that is up: every worker has the same pools and fleet;
 *  - drains every worker on SIGTERM/SIGINT, then exits; forwards SIGHUP to every worker as a reload.
 * A worker that exits before it first listens fails the whole start (a port taken, a bad setting).
 */
import cluster, { type Worker } from 'node:cluster';
import { join } from 'node:path';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';

type WorkerMetrics = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;
import type { Config } from '../config/schema';
import { Events } from '../core/events';
import { startAdmin, type AdminAnswer, type AdminHandlers, type AdminReply, type AdminServer } from '../ops/admin';
import {
  consoleForwardRoutes,
  consoleJson,
  consolePageRoutes,
  type ConsoleCall,
  type ConsoleData,
} from '../ops/console';
import { mergeConsoleData } from '../ops/console-merge';
import { Access } from '../security/access';
import {
  ENV_CONFIG,
  ENV_NAME,
  isFromWorker,
  type CallMessage,
  type CallReply,
  type Question,
  type ToWorker,
} from './protocol';
import { ENV_WORKERS } from './share';

/** How long a question to a worker may take before it counts as unanswered. */
const ASK_TIMEOUT_MS = 5_000;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;
/** A worker that lived this long before it exited is restarted after the shortest backoff again. */
const STABLE_MS = 10_000;

interface Slot {
  name: string;
  worker: Worker | null;
  pid: number;
  /** Listening (its `listening` message came), until it exits. */
  up: boolean;
  restarts: number;
  /** Consecutive short lives: the backoff's exponent. */
  failures: number;
  startedAt: number;
  timer: NodeJS.Timeout | null;
  pending: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>;
}

export interface Supervisor {
  readonly port: number;
  readonly adminPort: number;
  readonly workers: number;
  /** Drains every worker (bounded by shutdown.drainMs, then SIGKILL), closes the admin listener. */
  stop(): Promise<void>;
  /** Asks every worker to reload (SIGHUP); resolves with each one's answer. */
  reload(): Promise<Record<string, AdminAnswer>>;
}

/** Starts `count` workers on config.port (which must not be 0: they would each take another port). */
export async function startSupervisor(config: Config, count: number, events: Events): Promise<Supervisor> {
  if (config.port === 0) throw new Error('kvgate: workers share one port: give a port other than 0');
  cluster.setupPrimary({ exec: join(__dirname, 'worker.js'), args: [], silent: false });
  const env = { [ENV_CONFIG]: JSON.stringify(config), [ENV_WORKERS]: String(count) };
  const slots: Slot[] = Array.from({ length: count }, (_, k) => ({
    name: `w${k + 1}`,
    worker: null,
    pid: 0,
    up: false,
    restarts: 0,
    failures: 0,
    startedAt: 0,
    timer: null,
    pending: new Map(),
  }));
  let stopping = false;
  let starting = true;
  let nextId = 1;
  let failStart: ((e: Error) => void) | null = null;
  const listeners = new Set<() => void>();

  const fork = (s: Slot): void => {
    const w = cluster.fork({ ...env, [ENV_NAME]: s.name });
    s.worker = w;
    s.pid = w.process.pid ?? 0;
    s.startedAt = Date.now();
    w.on('message', (m: unknown) => {
      if (!isFromWorker(m)) return;
      if (m.kvgate === 'listening') {
        s.up = true;
        s.pid = m.pid;
        events.emit(
          'worker',
          'worker.started',
          'info',
          `worker ${s.name} listens`,
          { worker: s.name, workerPid: m.pid },
          null,
        );
        for (const l of listeners) l();
        return;
      }
      const p = s.pending.get(m.id);
      if (p === undefined) return;
      s.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.error !== undefined) p.reject(new Error(`${s.name}: ${m.error}`));
      else p.resolve(m.value);
    });
    w.on('exit', (code, signal) => onExit(s, w, code, signal));
  };

  const onExit = (s: Slot, w: Worker, code: number | null, signal: string | null): void => {
    if (s.worker !== w) return;
    s.worker = null;
    s.up = false;
    for (const p of s.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(`${s.name} exited`));
    }
    s.pending.clear();
    for (const l of listeners) l();
    if (stopping) return;
    const lived = Date.now() - s.startedAt;
    events.emit(
      'worker',
      'worker.exited',
      'warn',
      `worker ${s.name} (pid ${s.pid}) exited (${signal ?? `code ${code}`})`,
      { worker: s.name, workerPid: s.pid, code, signal, livedMs: lived },
      null,
    );
    if (starting) {
      failStart?.(new Error(`kvgate: worker ${s.name} exited (${signal ?? `code ${code}`}) before it listened`));
      return;
    }
    if (lived >= STABLE_MS) s.failures = 0;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** s.failures);
    s.failures++;
    s.timer = setTimeout(() => {
      s.timer = null;
      if (stopping) return;
      s.restarts++;
      fork(s);
      events.emit(
        'worker',
        'worker.restarted',
        'info',
        `worker ${s.name} restarted (pid ${s.pid}) after ${delay} ms`,
        { worker: s.name, workerPid: s.pid, afterMs: delay, restarts: s.restarts },
        null,
      );
    }, delay);
  };

  const ask = (s: Slot, what: Question, call?: CallMessage): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const w = s.worker;
      if (w === null || !s.up || !w.isConnected()) {
        reject(new Error(`${s.name} is not running`));
        return;
      }
      const id = nextId++;
      const timer = setTimeout(() => {
        s.pending.delete(id);
        reject(new Error(`${s.name} did not answer ${what} within ${ASK_TIMEOUT_MS} ms`));
      }, ASK_TIMEOUT_MS);
      s.pending.set(id, { resolve, reject, timer });
      w.send({ kvgate: 'ask', id, what, ...(call === undefined ? {} : { call }) } satisfies ToWorker);
    });

  const killAll = (): void => {
    for (const s of slots) s.worker?.process.kill('SIGKILL');
  };

  // Start every worker; the first that exits before it listens fails the start.
  for (const s of slots) fork(s);
  try {
    await new Promise<void>((resolve, reject) => {
      failStart = reject;
      const look = (): void => {
        if (slots.every((s) => s.up)) resolve();
      };
      listeners.add(look);
    });
  } catch (e) {
    stopping = true;
    killAll();
    throw e;
  } finally {
    failStart = null;
    starting = false;
  }

  // The supervisor's own families: per worker, what the sums hide.
  const own = new Registry();
  new Gauge({
    name: 'kvgate_worker_up',
    help: 'Per worker (supervisor only): 1 while the worker process listens.',
    labelNames: ['worker'],
    registers: [own],
    collect() {
      for (const s of slots) this.set({ worker: s.name }, s.up ? 1 : 0);
    },
  });
  new Counter({
    name: 'kvgate_worker_restarts_total',
    help: 'Per worker (supervisor only): times the supervisor restarted it after it exited unasked.',
    labelNames: ['worker'],
    registers: [own],
    collect() {
      this.reset();
      for (const s of slots) this.inc({ worker: s.name }, s.restarts);
    },
  });

  const settled = async <T>(what: Question): Promise<{ slot: Slot; value?: T; error?: string }[]> =>
    Promise.all(
      slots.map(async (slot) => {
        try {
          return { slot, value: (await ask(slot, what)) as T };
        } catch (e) {
          return { slot, error: (e as Error).message };
        }
      }),
    );

  /** A console answer when no worker could give one (the code /admin/reload uses for a worker that is down). */
  const workerDown = (message: string, extra: Record<string, unknown> = {}): AdminReply =>
    consoleJson(503, { ...extra, error: { code: 'WORKER_DOWN', message, retry: 'after' } });

  /** /console/data: every worker's, summed (ops/console-merge.ts); a worker that does not answer is listed. */
  const consoleData = async (): Promise<AdminReply> => {
    const got = await settled<ConsoleData>('console-data');
    const workers = got.map((g) => ({
      name: g.slot.name,
      pid: g.slot.pid,
      up: g.slot.up,
      restarts: g.slot.restarts,
      ...(g.error === undefined ? {} : { error: g.error }),
    }));
    const answers = got.flatMap((g) => (g.value === undefined ? [] : [g.value]));
    if (answers.length === 0)
      return workerDown(`no worker answered: ${workers.map((w) => `${w.name}: ${w.error}`).join('; ')}`, { workers });
    return consoleJson(200, mergeConsoleData(answers, workers, stopping));
  };

  /**
   * A console key route: answered by the first worker that is up (placement and values are the same in
   * every worker). Not retried on another: a PUT that timed out may have been applied.
   */
  const consoleCall = async (c: ConsoleCall): Promise<AdminReply> => {
    const slot = slots.find((s) => s.up);
    if (slot === undefined) return workerDown('no worker is up');
    try {
      const call: CallMessage = { method: c.method, path: c.path, query: c.query, body64: c.body.toString('base64') };
      const a = (await ask(slot, 'console-call', call)) as CallReply;
      return {
        status: a.status,
        contentType: a.contentType,
        body: Buffer.from(a.body64, 'base64'),
        headers: a.headers,
      };
    } catch (e) {
      return workerDown((e as Error).message);
    }
  };

  // The admin role is checked here, where the admin listener is, with the same credentials the workers hold.
  const access = new Access(config.security);
  const handlers: AdminHandlers = {
    async metrics() {
      const got = await settled<WorkerMetrics>('metrics');
      const summed = AggregatorRegistry.aggregate(got.flatMap((g) => (g.value === undefined ? [] : [g.value])));
      const merged = Registry.merge([summed as Registry, own]);
      return { contentType: merged.contentType, body: await merged.metrics() };
    },
    stats: config.debugStats
      ? async () => {
          const got = await settled<Record<string, unknown>>('stats');
          return Object.fromEntries(
            got.map((g) => [
              g.slot.name,
              { pid: g.slot.pid, up: g.slot.up, restarts: g.slot.restarts, stats: g.value ?? null, error: g.error },
            ]),
          );
        }
      : undefined,
    async ready() {
      const got = await settled<AdminAnswer>('ready');
      const ready = !stopping && got.every((g) => g.value?.status === 200);
      return {
        status: ready ? 200 : 503,
        body: {
          ready,
          draining: stopping,
          workers: Object.fromEntries(got.map((g) => [g.slot.name, g.value?.body ?? { up: false, error: g.error }])),
        },
      };
    },
    async reload() {
      const all = await reload();
      const statuses = Object.values(all).map((a) => a.status);
      const status = statuses.every((c) => c >= 200 && c < 300) ? 200 : Math.max(...statuses);
      return { status, body: { workers: all } };
    },
    authorize: (authorization) => access.admin(authorization),
    routes: [
      ...consolePageRoutes(),
      { method: 'get', path: '/console/data', handle: consoleData },
      // The supervisor's own bound on a PUT's body; the worker applies its running one again (after a reload).
      ...consoleForwardRoutes(consoleCall, () => config.limits.maxValueBytes),
    ],
  };

  const reload = async (): Promise<Record<string, AdminAnswer>> => {
    const got = await settled<AdminAnswer>('reload');
    return Object.fromEntries(
      got.map((g) => [
        g.slot.name,
        g.value ?? { status: 503, body: { error: { code: 'WORKER_DOWN', message: g.error ?? 'no answer' } } },
      ]),
    );
  };

  let admin: AdminServer | null = null;
  if (config.admin.enabled) {
    try {
      admin = await startAdmin(config.admin.host, config.admin.port, handlers);
    } catch (e) {
      stopping = true;
      killAll();
      throw e;
    }
  }

  const stop = async (): Promise<void> => {
    stopping = true;
    for (const s of slots) if (s.timer !== null) clearTimeout(s.timer);
    const gone = (): boolean => slots.every((s) => s.worker === null);
    const allGone = new Promise<void>((resolve) => {
      const look = (): void => {
        if (gone()) resolve();
      };
      listeners.add(look);
      look();
    });
    for (const s of slots) {
      const w = s.worker;
      if (w === null) continue;
      if (w.isConnected()) w.send({ kvgate: 'drain' } satisfies ToWorker);
      else w.process.kill('SIGTERM');
    }
    // Each worker's drain is bounded by drainMs; a worker still there well after that is killed.
    const bound = setTimeout(killAll, config.shutdown.drainMs + 5_000);
    await allGone;
    clearTimeout(bound);
    admin?.close();
  };

  return {
    port: config.port,
    adminPort: admin?.port ?? 0,
    workers: count,
    stop,
    reload,
  };
}
