/**
 * Wires the data path together: uWS server -> front (decode) -> Router (pool by key prefix, then the
 * pool's placement) -> the pool's Coalescer (batches) -> the backend's Shard (its codec on the socket) ->
 * Request sinks -> pooled output (docs/ARCHITECTURE.md). `startGateway` builds every pool from the
 * backend registry, and the one context the fronts share (buffer pool, budget, connection gate); it is
 * what main.ts and the tests call. `drain` is the graceful stop (docs/PROTOCOL.md, "Shutdown"); `stop` the quick one.
 */
import { randomBytes } from 'node:crypto';
import { Coalescer } from './core/coalescer';
import { ConfigError, resolvedPools, type Config } from './config/schema';
import type { GatewayContext } from './front/context';
import { MemoryBudget } from './flow/budget';
import { ConnectionGate } from './flow/connection-gate';
import { FdReserve } from './flow/fd-reserve';
import { mountBulk } from './front/http-bulk';
import { mountKv } from './front/http-kv';
import { mountWebSocket, WsFront } from './front/ws';
import { MemcachedBackend } from './backends/memcached';
import type { ShardConnection } from './backends/memcached/shard-connection';
import type { KetamaRing } from './backends/memcached/ketama';
import { backendEntry } from './backends/registry';
import type { Backend } from './core/backend';
import { Router, type Pool } from './core/router';
import { BufferPool } from './stream/buffer-pool';
import { ErrorCode, ErrorTable, errorBody } from './core/errors';
import { refuseFraming } from './front/framing';
import { errorHeaders, statusLine } from './stream/http-out';
import { uws, us_listen_socket, HttpRequest, HttpResponse, listenOn, ListenMode } from './uws';
import type { Registry } from 'prom-client';
import { Front, Tally, TallyOp } from './core/tally';
import { createMetrics } from './ops/metrics';
import { diffConfig } from './ops/reload';
import { BrowserPolicy } from './security/browser-policy';
import { Access } from './security/access';
import { answerPreflight } from './front/browser-gate';
import { Events } from './core/events';
import { createLogger, loggerSink } from './ops/logger';
import { startAdmin, type AdminHandlers, type AdminServer } from './ops/admin';
import { consoleApi, consoleRoutes, type ConsoleApi } from './ops/console';

export interface StartOptions {
  /** Start the admin listener (config.admin.enabled). A worker process leaves it to its supervisor. */
  admin?: boolean;
  /** Names this gateway in events and logs (a worker's number; tests run several in one process). */
  name?: string;
  /**
   * Listen with SO_REUSEPORT so that other workers listen on the same port (a supervised worker).
   * Otherwise the listen is exclusive: a second gateway on the port fails to start instead of sharing it.
   */
  sharedPort?: boolean;
  /**
   * Reads the configuration again for a reload (SIGHUP, POST /admin/reload): main.ts re-reads its --config
   * file with the same command-line flags. Throws ConfigError when the new settings are bad.
   */
  reloadConfig?: () => Config | Promise<Config>;
}

/** What a reload did: `applied`, `unchanged`, or `failed` with why (then nothing changed). */
export interface ReloadOutcome {
  result: 'applied' | 'unchanged' | 'failed';
  /** The HTTP status POST /admin/reload answers with: 200, 400 (a bad file) or 409 (not applicable). */
  status: number;
  generation: number;
  message: string;
  /** Setting paths that differ (applied, or refused as restart-only). */
  changed: string[];
  problems: string[];
}

export interface Gateway {
  port: number;
  /** The admin listener's port (0 when it is not started). */
  adminPort: number;
  events: Events;
  /** This gateway's Prometheus metrics (its own registry, never prom-client's global one). */
  registry: Registry;
  /** The handlers the admin listener serves (a supervisor calls them over IPC for its workers). */
  admin: AdminHandlers;
  /** The console's data and key routes (a supervisor asks its workers for them over IPC). */
  console: ConsoleApi;
  /** The configuration running now (a reload replaces it). */
  readonly config: Config;
  /** Every pool, in configuration order (`default` first when the top-level servers make it). */
  readonly pools: readonly Pool[];
  /** The default pool's memcached connections (none when that pool is not memcached). */
  readonly shards: ShardConnection[];
  /** The default pool's coalescer. */
  readonly coalescer: Coalescer;
  /** 1 at start, one more per applied reload. */
  readonly generation: number;
  /**
   * Applies `next` (validated), or what `reloadConfig` reads: new rings for changed pools, batches in
   * flight finish on their old connections, old shards close once idle; client connections stay.
   */
  reload(next?: Config): Promise<ReloadOutcome>;
  /** The default pool's ketama ring (throws when that pool is not memcached). */
  readonly ring: KetamaRing;
  ctx: GatewayContext;
  ws: WsFront;
  stats(): Record<string, unknown>;
  /** Graceful: answer what was received, refuse what comes, close, within shutdown.drainMs. */
  drain(): Promise<void>;
  /** Quick: send what is batched, wait for in-flight answers up to the shard timeout, close. */
  stop(): Promise<void>;
}

/** An error answered inside the handler, for requests that never reach a front (no gate count, no body read). */
function answerNow(
  res: HttpResponse,
  req: HttpRequest,
  code: ErrorCode,
  message?: string,
  headers: [string, string][] = [],
): void {
  if (refuseFraming(res, req)) return;
  // A HEAD answer has no body (one would be read as the next response).
  const body = req.getMethod() === 'head' ? undefined : errorBody(code, message);
  res.cork(() => {
    res.writeStatus(statusLine(ErrorTable[code].status)).writeHeader('content-type', 'application/json');
    for (const [k, v] of [...headers, ...(errorHeaders(code) ?? [])]) res.writeHeader(k, v);
    res.end(body);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

export async function startGateway(config: Config, start: StartOptions = {}): Promise<Gateway> {
  const name = start.name ?? randomBytes(3).toString('hex');
  const log = createLogger(config.log.level, { gateway: name });
  const events = new Events(name, loggerSink(log));
  const fds = new FdReserve(config.limits.reservedDescriptors);
  /** The backends of `cfg`'s pools named in `only` (all when absent), not connected yet. */
  const buildBackends = (cfg: Config, only?: readonly string[]): Backend[] => {
    const options = {
      maxValueBytes: cfg.limits.maxValueBytes,
      maxOps: cfg.batch.maxOps,
      shard: cfg.shard,
      fds,
      events,
    };
    const out: Backend[] = [];
    for (const [name, spec] of Object.entries(resolvedPools(cfg))) {
      if (only !== undefined && !only.includes(name)) continue;
      const entry = backendEntry(spec.backend);
      // validateConfig names a backend without a factory; this is for a config that skipped it.
      if (entry === undefined) throw new Error(`kvgate: pool ${name}: no factory registered for "${spec.backend}"`);
      out.push(entry.create(name, spec, options));
    }
    return out;
  };
  const backends = buildBackends(config);
  try {
    await Promise.all(backends.map((b) => b.connect()));
  } catch (e) {
    for (const b of backends) b.close();
    throw e;
  }
  let current = config;
  let pools: readonly Pool[] = backends.map((backend) => ({
    name: backend.name,
    backend,
    coalescer: new Coalescer(backend.shards, config.batch),
  }));
  const router = new Router(pools, config.routes, config.defaultPool, config.limits);
  const mainPool = (): Pool => router.pools.find((p) => p.name === current.defaultPool)!;
  const shardCount = pools.reduce((n, p) => n + p.backend.shards.length, 0);
  const flushAll = (): void => router.flushAll();
  /** Backends a reload replaced, closed once nothing is in flight on them. */
  const retiring = new Set<Backend>();
  const closeBackends = (): void => {
    for (const p of pools) p.backend.close();
    for (const b of retiring) b.close();
    retiring.clear();
  };
  const pool = new BufferPool(config.pool.maxFreeBuffers);
  const ctx: GatewayContext = {
    config,
    events,
    pool,
    budget: new MemoryBudget(config.limits.maxBufferedBytesTotal, pool),
    router,
    gate: new ConnectionGate(config.limits.maxConnections, shardCount),
    bulk: new Set(),
    draining: false,
    tally: new Tally(),
    browser: new BrowserPolicy({ ...config.security, listenHost: config.host }),
    access: new Access(config.security),
  };
  if (ctx.gate.clampedBy) events.emit('config', 'config.clamped', 'warn', ctx.gate.clampedBy, {}, null);
  const started = Date.now();

  const app = uws.App();
  const ws = mountWebSocket(app, ctx);
  mountKv(app, ctx);
  mountBulk(app, ctx);

  const stats = (): Record<string, unknown> => ({
    uptimeMs: Date.now() - started,
    ws: { ...ws.counters },
    connections: { ws: ctx.gate.ws, http: ctx.gate.http, max: ctx.gate.max, refused: ctx.gate.refused },
    descriptors: { reserved: fds.held, lentToShards: fds.lent, listenPauses: fdPauses, paused: pausedForFds },
    budget: ctx.budget.stats(),
    // Every pool's shards in one list (each names its pool), then per pool: its backend and ring spread.
    shards: pools.flatMap((p) => p.coalescer.stats().map((s) => ({ pool: p.name, ...s }))),
    pools: Object.fromEntries(
      pools.map((p) => [
        p.name,
        {
          backend: p.backend.kind,
          shards: p.coalescer.stats(),
          ring: p.backend instanceof MemcachedBackend ? p.backend.ring.spread() : null,
        },
      ]),
    ),
    routes: current.routes,
    defaultPool: current.defaultPool,
    ring:
      mainPool().backend instanceof MemcachedBackend ? (mainPool().backend as MemcachedBackend).ring.spread() : null,
    generation,
    retiring: retiring.size,
    pool: pool.stats(),
    memory: process.memoryUsage(),
    gc: config.debugStats ? metrics.gcCounts() : null,
    batch: current.batch,
    draining: ctx.draining,
  });

  app.get('/healthz', (res, req) => {
    if (refuseFraming(res, req)) return;
    const list = pools.flatMap((p) => p.backend.shards.map((s) => ({ pool: p.name, server: s.label, up: s.up })));
    const up = list.filter((s) => s.up).length;
    const byPool = Object.fromEntries(
      pools.map((p) => {
        const n = p.backend.shards.length,
          k = p.backend.shards.filter((s) => s.up).length;
        return [
          p.name,
          { backend: p.backend.kind, status: k === n ? 'ok' : k === 0 ? 'down' : 'degraded', up: k, of: n },
        ];
      }),
    );
    const status = ctx.draining ? 'draining' : up === list.length ? 'ok' : up === 0 ? 'down' : 'degraded';
    const b = ctx.budget;
    res.cork(() => {
      res
        .writeStatus(statusLine(ctx.draining || up === 0 ? 503 : 200))
        .writeHeader('content-type', 'application/json')
        .end(
          JSON.stringify({
            status,
            shards: list,
            pools: byPool,
            memory: {
              bufferedBytes: b.used,
              limitBytes: b.limit,
              pressure: Math.round(b.pressure * 1000) / 1000,
              waiting: b.waiting,
            },
            connections: { current: ctx.gate.total, max: ctx.gate.max, refused: ctx.gate.refused },
          }),
          ctx.draining,
        );
    });
  });
  // A known path asked with another method: 405 with the methods it has (uWS tries `any` handlers after
  // the method's own). Then everything else: 404. Both answered at once, the connection kept.
  const routes: [string, string][] = [
    ['/v1/kv/*', 'GET, PUT, DELETE'],
    ['/v1/mget', 'POST'],
    ['/v1/mset', 'POST'],
    ['/v1/ws', 'GET'],
    ['/healthz', 'GET'],
  ];
  for (const [path, allow] of routes) {
    const notAllowed = (res: HttpResponse, req: HttpRequest): void => {
      ctx.tally.request(Front.Http, TallyOp.Unknown, 'METHOD_NOT_ALLOWED');
      answerNow(
        res,
        req,
        'METHOD_NOT_ALLOWED',
        `${req.getMethod().toUpperCase()} is not allowed on ${path}; allowed: ${allow}`,
        [['allow', allow]],
      );
    };
    // An OPTIONS with an Origin is a page's CORS preflight; without one it is a method like any other.
    if (path !== '/v1/ws' && path !== '/healthz')
      app.options(path, (res, req) => {
        if (req.getHeader('origin') === '') return notAllowed(res, req);
        if (refuseFraming(res, req)) return;
        answerPreflight(res, req, ctx.browser);
      });
    app.any(path, notAllowed);
  }
  app.any('/*', (res, req) => {
    ctx.tally.request(Front.Http, TallyOp.Unknown, 'NO_ROUTE');
    answerNow(res, req, 'NO_ROUTE');
  });

  const listenMode = start.sharedPort === true ? ListenMode.Shared : ListenMode.Exclusive;
  let listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    listenOn(app, config.host, config.port, listenMode, (ls) => {
      if (ls) resolve(ls);
      else
        reject(
          new Error(
            `kvgate: cannot listen on ${config.host}:${config.port} (in use? ` +
              (listenMode === ListenMode.Exclusive
                ? 'with one worker the port is not shared: is another kvgate running on it?)'
                : 'workers share the port only with processes that share it too)'),
          ),
        );
    });
  });
  const port = uws.us_socket_local_port(listenSocket as never) as number;
  let listening = true;
  const stopListening = (): void => {
    if (listening) {
      listening = false;
      uws.us_listen_socket_close(listenSocket);
    }
  };

  // Out of descriptors (clients holding connections that never send a request, which nothing else
  // counts): stop listening, since uSockets retries a failing accept in a busy loop; listen again once
  // descriptors are free and the shard reserve is whole. Two syscalls per look.
  let pausedForFds = false;
  let fdPauses = 0;
  const fdWatch = setInterval(() => {
    if (ctx.draining) return;
    if (!pausedForFds && listening && fds.atLimit()) {
      pausedForFds = true;
      fdPauses++;
      stopListening();
      events.emit(
        'gateway',
        'listen.paused',
        'warn',
        'out of file descriptors: not accepting connections until some close (limits.maxConnections, ulimit -n)',
        { reserved: fds.held },
      );
    } else if (pausedForFds) {
      fds.restock();
      if (fds.held < config.limits.reservedDescriptors || fds.atLimit()) return;
      listenOn(app, config.host, port, listenMode, (ls) => {
        if (!ls) return; // try again at the next look
        listenSocket = ls;
        listening = true;
        pausedForFds = false;
      });
    }
  }, 250);
  fdWatch.unref();

  // Watchdog: clients whose held output has not moved for limits.stallTimeoutMs are cut off, so that
  // clients that stopped reading cannot keep the global budget from those that read.
  // It looks once a second whatever the setting, since a reload may turn it on (0 is off).
  const kicked = (what: string): void =>
    events.emit('client', 'client.kicked', 'warn', `a slow consumer was disconnected: its ${what} did not read`, {
      stallTimeoutMs: current.limits.stallTimeoutMs,
      kicked: ws.counters.stalled,
    });
  const watchdog = setInterval(() => {
    const stallMs = current.limits.stallTimeoutMs;
    if (stallMs === 0) return;
    const looks = Math.max(1, Math.ceil(stallMs / 1000));
    for (const { s } of ws.sessions)
      if (s.stalled(looks)) {
        ws.counters.stalled++;
        s.kick();
        kicked('WebSocket session');
      }
    for (const b of ctx.bulk)
      if (b.out.stalled(looks)) {
        ws.counters.stalled++;
        b.out.kill();
        kicked('bulk HTTP response');
      }
  }, 1000);
  watchdog.unref();
  // Rate and connection limiters keep entries for principals and addresses seen lately: full idle ones go.
  const sweeper = setInterval(() => ctx.access.sweep(), 10_000);
  sweeper.unref();

  // The admin listener: what an operator needs and a client must not see (ops/admin.ts).
  const ready = (): boolean => listening && !ctx.draining && pools.every((p) => p.backend.shards.some((s) => s.up));
  let generation = 1;
  const reloads: Record<string, number> = { applied: 0, failed: 0, unchanged: 0 };
  const metrics = createMetrics({
    tally: ctx.tally,
    pools: () => pools,
    connections: () => ({
      ws: ctx.gate.ws,
      http: ctx.gate.http,
      refused: ctx.gate.refused,
      kicked: ws.counters.stalled,
    }),
    buffered: () => ({ used: ctx.budget.used, limit: ctx.budget.limit }),
    buffers: () => pool.stats(),
    draining: () => ctx.draining,
    generation: () => generation,
    reloads: () => reloads,
    access: ctx.access,
  });
  const registry = metrics.registry;
  const opsConsole = consoleApi({
    router,
    pools: () => pools,
    routes: () => current.routes,
    defaultPool: () => current.defaultPool,
    tally: ctx.tally,
    connections: () => ({
      ws: ctx.gate.ws,
      http: ctx.gate.http,
      max: ctx.gate.max,
      refused: ctx.gate.refused,
      kicked: ws.counters.stalled,
    }),
    buffered: () => ({ used: ctx.budget.used, limit: ctx.budget.limit }),
    buffers: () => pool.stats(),
    generation: () => generation,
    draining: () => ctx.draining,
    maxValueBytes: () => current.limits.maxValueBytes,
    ketama: (p, key) => (p.backend instanceof MemcachedBackend ? p.backend.explain(key) : null),
    spread: (p) => (p.backend instanceof MemcachedBackend ? p.backend.ring.spread() : null),
  });
  const adminHandlers: AdminHandlers = {
    metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    stats: config.debugStats ? async () => stats() : undefined,
    ready: async () => ({
      status: ready() ? 200 : 503,
      body: { ready: ready(), draining: ctx.draining, listening },
    }),
    reload: async () => {
      const o = await reload();
      return { status: o.status, body: o };
    },
    authorize: (authorization) => ctx.access.admin(authorization),
    routes: consoleRoutes(opsConsole),
  };
  let admin: AdminServer | null = null;
  if (config.admin.enabled && start.admin !== false) {
    try {
      admin = await startAdmin(config.admin.host, config.admin.port, adminHandlers);
    } catch (e) {
      stopListening();
      (app as unknown as { close?: () => void }).close?.();
      closeBackends();
      throw e;
    }
  }

  let closed = false;
  const closeAll = (): void => {
    if (closed) return;
    closed = true;
    admin?.close();
    metrics.close();
    clearInterval(watchdog);
    clearInterval(sweeper);
    clearInterval(fdWatch);
    fds.close();
    (app as unknown as { close?: () => void }).close?.();
    closeBackends();
    ctx.budget.stop();
  };

  // Reload: validate and compare first (ops/reload.ts), build and connect what is new, then switch the
  // router in one step. What the old coalescers hold is sent at the switch, on the old connections; a
  // replaced backend closes once nothing is in flight on it (bounded by the shard timeout, which fails
  // what it still owes). Reloads run one at a time.
  const retire = (b: Backend): void => {
    retiring.add(b);
    const deadline = Date.now() + current.shard.timeoutMs + 1000;
    const look = setInterval(() => {
      const busy = b.shards.some((s) => s.stats().inflightBatches > 0);
      if (busy && Date.now() < deadline) return;
      clearInterval(look);
      if (retiring.delete(b)) b.close();
    }, 20);
    look.unref();
  };
  const outcome = (
    result: ReloadOutcome['result'],
    status: number,
    message: string,
    changed: string[] = [],
    problems: string[] = [],
  ): ReloadOutcome => {
    reloads[result]++;
    const level = result === 'failed' ? 'error' : 'info';
    events.emit('reload', `reload.${result}`, level, message, { generation, changed, problems }, null);
    return { result, status, generation, message, changed, problems };
  };
  const applyReload = async (given?: Config): Promise<ReloadOutcome> => {
    if (ctx.draining || closed) return outcome('failed', 409, 'the gateway is stopping: nothing changed');
    let next: Config;
    try {
      if (given !== undefined) next = given;
      else if (start.reloadConfig !== undefined) next = await start.reloadConfig();
      else return outcome('failed', 409, 'this gateway was started without a configuration file to read again');
    } catch (e) {
      const problems = e instanceof ConfigError ? e.problems.map((p) => p.text) : [(e as Error).message];
      return outcome('failed', 400, 'the new configuration is not valid: nothing changed', [], problems);
    }
    const d = diffConfig(current, next);
    if (d.restartOnly.length > 0)
      return outcome(
        'failed',
        409,
        `a reload cannot change ${d.restartOnly.join(', ')} (restart for that): nothing changed`,
        d.changed,
        d.restartOnly.map((p) => `${p} takes a restart`),
      );
    // The identity provider's keys may have rotated: the JWKS file is read again on every reload.
    const jwks = ctx.access.reloadJwks();
    if (jwks.length > 0)
      return outcome(
        'failed',
        400,
        'the JWKS file could not be read again: the keys in use stay, nothing changed',
        [],
        jwks.map((p) => `${p.path}: ${p.message}`),
      );
    const jwksFile = (current.security.auth.jwt?.jwksFile ?? null) !== null;
    if (d.changed.length === 0) {
      if (jwksFile) ws.recheck();
      return outcome('unchanged', 200, 'the configuration is unchanged');
    }
    const fresh = buildBackends(next, d.rebuilt);
    await Promise.all(fresh.map((b) => b.connect()));
    if (ctx.draining || closed) {
      for (const b of fresh) b.close();
      return outcome('failed', 409, 'the gateway began stopping during the reload: nothing changed', d.changed);
    }
    const nextPools: Pool[] = Object.keys(resolvedPools(next)).map((name) => {
      const built = fresh.find((b) => b.name === name);
      if (built !== undefined) return { name, backend: built, coalescer: new Coalescer(built.shards, next.batch) };
      const kept = pools.find((p) => p.name === name)!;
      return d.batchChanged
        ? { name, backend: kept.backend, coalescer: new Coalescer(kept.backend.shards, next.batch) }
        : kept;
    });
    for (const p of pools) p.coalescer.flushAll();
    router.replace(nextPools, next.routes, next.defaultPool);
    // Limits for new requests (the fronts read ctx.config per request); connections open stay open.
    router.limits = next.limits;
    ctx.config = next;
    ctx.budget.limit = next.limits.maxBufferedBytesTotal;
    ctx.gate.resize(next.limits.maxConnections);
    if (ctx.gate.clampedBy) events.emit('config', 'config.clamped', 'warn', ctx.gate.clampedBy, {}, null);
    log.level = next.log.level;
    const securityChanged = d.changed.some((p) => p.startsWith('security.'));
    if (securityChanged) {
      ctx.access.reload(current.security, next.security);
      ctx.browser = new BrowserPolicy({ ...next.security, listenHost: next.host });
    }
    const before = pools;
    pools = nextPools;
    current = next;
    generation++;
    if (securityChanged || jwksFile) {
      const closed = ws.recheck();
      if (closed > 0)
        events.emit(
          'reload',
          'auth.revoked',
          'warn',
          `closed ${closed} WebSocket connections whose credential a reload revoked`,
          { closed },
          null,
        );
    }
    for (const p of before) if (!nextPools.some((q) => q.backend === p.backend)) retire(p.backend);
    return outcome('applied', 200, `configuration generation ${generation} applied`, d.changed);
  };
  let reloadChain: Promise<unknown> = Promise.resolve();
  const reload = (next?: Config): Promise<ReloadOutcome> => {
    const run = reloadChain.then(() => applyReload(next));
    reloadChain = run.catch(() => undefined);
    return run;
  };

  const stop = async (): Promise<void> => {
    // Stop taking connections, send what is batched, let in-flight answers arrive (bounded by the
    // shard timeout, which fails them anyway), then close every client and shard connection.
    stopListening();
    flushAll();
    const deadline = Date.now() + config.shard.timeoutMs;
    const inflight = (): boolean => pools.some((p) => p.backend.shards.some((s) => s.stats().inflightBatches > 0));
    while (inflight() && Date.now() < deadline) await sleep(5);
    await nextTurn();
    closeAll();
  };

  let draining: Promise<void> | null = null;
  const drain = (): Promise<void> => {
    draining ??= (async () => {
      const deadline = Date.now() + config.shutdown.drainMs;
      ctx.draining = true;
      events.emit(
        'drain',
        'drain.start',
        'info',
        'draining: new requests are refused',
        {
          drainMs: config.shutdown.drainMs,
          sessions: ws.sessions.size,
          http: ctx.gate.http,
        },
        null,
      );
      stopListening();
      for (const { s } of ws.sessions) {
        s.closeWhenIdle = true;
        s.closeIfIdle();
      }
      for (const b of ctx.bulk) b.out.closeAfter = true; // a response that starts now says Connection: close
      flushAll();
      // Everything received is answered while time allows; the last 10% of it is kept for the rest.
      const answerBy = deadline - Math.min(1000, config.shutdown.drainMs / 10);
      while (Date.now() < answerBy && (ws.sessions.size > 0 || ctx.gate.http > 0)) {
        for (const { s } of ws.sessions) s.closeIfIdle();
        await sleep(5);
      }
      // Out of time: what is still parked gets SHUTTING_DOWN, so does what the shards still owe (close()).
      const left = ws.sessions.size + ctx.gate.http;
      events.emit(
        'drain',
        left > 0 ? 'drain.timeout' : 'drain.idle',
        left > 0 ? 'warn' : 'info',
        left > 0 ? `drain time is up: ${left} connections still busy get SHUTTING_DOWN` : 'every connection is idle',
        { left },
        null,
      );
      for (const { w } of ws.sessions) w.failParked('SHUTTING_DOWN');
      for (const b of ctx.bulk) b.window?.failParked('SHUTTING_DOWN');
      flushAll();
      closeBackends();
      await nextTurn(); // the flush list sends those answers
      await nextTurn();
      for (const { s } of [...ws.sessions]) s.end(1001, 'SHUTTING_DOWN');
      await nextTurn();
      closeAll();
    })();
    return draining;
  };

  return {
    port,
    adminPort: admin?.port ?? 0,
    events,
    admin: adminHandlers,
    console: opsConsole,
    registry,
    get config(): Config {
      return current;
    },
    get pools(): readonly Pool[] {
      return pools;
    },
    get shards(): ShardConnection[] {
      const b = mainPool().backend;
      return b instanceof MemcachedBackend ? b.shards : [];
    },
    get coalescer(): Coalescer {
      return mainPool().coalescer;
    },
    get generation(): number {
      return generation;
    },
    reload,
    get ring(): KetamaRing {
      const b = mainPool().backend;
      if (!(b instanceof MemcachedBackend)) throw new Error(`the default pool is not memcached`);
      return b.ring;
    },
    ctx,
    ws,
    stats,
    drain,
    stop,
  };
}
