/**
 * Wires the data path together: uWS server -> ingress (decode) -> Router (ketama) -> Coalescer (batches)
 * -> ShardConnection (memcached codec on the socket) -> Request sinks -> pooled output. `startGateway`
 * builds the one context the fronts share (pool, budget, connection gate) and is what main.ts and the
 * tests call. `drain` is the graceful stop (docs/PROTOCOL.md, "Shutdown"); `stop` the quick one.
 */
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { Coalescer } from './core/coalescer';
import type { Config } from './config/schema';
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
import { Router } from './core/router';
import { BufferPool } from './stream/buffer-pool';
import { ErrorCode, ErrorTable, errorBody } from './core/errors';
import { refuseFraming } from './front/framing';
import { errorHeaders, statusLine } from './stream/http-out';
import { uws, us_listen_socket, HttpRequest, HttpResponse } from './uws';

export interface Gateway {
  port: number;
  config: Config;
  shards: ShardConnection[];
  coalescer: Coalescer;
  ring: KetamaRing;
  ctx: GatewayContext;
  ws: WsFront;
  stats(): Record<string, unknown>;
  /** Graceful: answer what was received, refuse what comes, close, within shutdown.drainMs. */
  drain(): Promise<void>;
  /** Quick: send what is batched, wait for in-flight answers up to the shard timeout, close. */
  stop(): Promise<void>;
}

function gcCounters(): { counts: { young: number; major: number; other: number; pauseMs: number }; stop: () => void } {
  const counts = { young: 0, major: 0, other: 0, pauseMs: 0 };
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) counts.young++;
      else if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) counts.major++;
      else counts.other++;
      counts.pauseMs += e.duration;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  return { counts, stop: () => obs.disconnect() };
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

export async function startGateway(config: Config): Promise<Gateway> {
  const fds = new FdReserve(config.limits.reservedDescriptors);
  const backend = new MemcachedBackend(
    'default',
    { backend: 'memcached', servers: config.servers, hash: config.hash },
    { maxValueBytes: config.limits.maxValueBytes, shard: config.shard, fds },
  );
  await backend.connect();
  const { shards, ring } = backend;
  const coalescer = new Coalescer(shards, config.batch);
  const router = new Router(backend, coalescer, config.limits);
  const pool = new BufferPool(config.pool.maxFreeBuffers);
  const ctx: GatewayContext = {
    config,
    pool,
    budget: new MemoryBudget(config.limits.maxBufferedBytesTotal, pool),
    router,
    gate: new ConnectionGate(config.limits.maxConnections, shards.length),
    bulk: new Set(),
    draining: false,
  };
  if (ctx.gate.clampedBy) console.warn(`kvgate: ${ctx.gate.clampedBy}`);
  const gc = config.debugStats ? gcCounters() : null;
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
    shards: coalescer.stats(),
    ring: ring.spread(),
    pool: pool.stats(),
    memory: process.memoryUsage(),
    gc: gc ? { ...gc.counts } : null,
    batch: config.batch,
    draining: ctx.draining,
  });

  app.get('/healthz', (res, req) => {
    if (refuseFraming(res, req)) return;
    const list = shards.map((s) => ({ server: s.label, up: s.up }));
    const up = list.filter((s) => s.up).length;
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
  if (config.debugStats) {
    app.get('/debug/stats', (res, req) => {
      if (refuseFraming(res, req)) return;
      res.cork(() => res.writeHeader('content-type', 'application/json').end(JSON.stringify(stats())));
    });
  }
  // A known path asked with another method: 405 with the methods it has (uWS tries `any` handlers after
  // the method's own). Then everything else: 404. Both answered at once, the connection kept.
  const routes: [string, string][] = [
    ['/v1/kv/*', 'GET, PUT, DELETE'],
    ['/v1/mget', 'POST'],
    ['/v1/mset', 'POST'],
    ['/v1/ws', 'GET'],
    ['/healthz', 'GET'],
  ];
  if (config.debugStats) routes.push(['/debug/stats', 'GET']);
  for (const [path, allow] of routes) {
    app.any(path, (res, req) =>
      answerNow(
        res,
        req,
        'METHOD_NOT_ALLOWED',
        `${req.getMethod().toUpperCase()} is not allowed on ${path}; allowed: ${allow}`,
        [['allow', allow]],
      ),
    );
  }
  app.any('/*', (res, req) => answerNow(res, req, 'NO_ROUTE'));

  let listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(config.host, config.port, (ls) => {
      if (ls) resolve(ls);
      else reject(new Error(`kvgate: cannot listen on ${config.host}:${config.port} (in use?)`));
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
      console.warn(
        `kvgate: out of file descriptors: not accepting connections until some close (limits.maxConnections, ulimit -n)`,
      );
    } else if (pausedForFds) {
      fds.restock();
      if (fds.held < config.limits.reservedDescriptors || fds.atLimit()) return;
      app.listen(config.host, port, (ls) => {
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
  const looks = Math.max(1, Math.ceil(config.limits.stallTimeoutMs / 1000));
  const watchdog =
    config.limits.stallTimeoutMs === 0
      ? null
      : setInterval(() => {
          for (const { s } of ws.sessions)
            if (s.stalled(looks)) {
              ws.counters.stalled++;
              s.kick();
            }
          for (const b of ctx.bulk)
            if (b.out.stalled(looks)) {
              ws.counters.stalled++;
              b.out.kill();
            }
        }, 1000);
  watchdog?.unref();

  let closed = false;
  const closeAll = (): void => {
    if (closed) return;
    closed = true;
    if (watchdog !== null) clearInterval(watchdog);
    clearInterval(fdWatch);
    fds.close();
    (app as unknown as { close?: () => void }).close?.();
    backend.close();
    ctx.budget.stop();
    gc?.stop();
  };

  const stop = async (): Promise<void> => {
    // Stop taking connections, send what is batched, let in-flight answers arrive (bounded by the
    // shard timeout, which fails them anyway), then close every client and shard connection.
    stopListening();
    coalescer.flushAll();
    const deadline = Date.now() + config.shard.timeoutMs;
    while (shards.some((s) => s.inflightBatches > 0) && Date.now() < deadline) await sleep(5);
    await nextTurn();
    closeAll();
  };

  let draining: Promise<void> | null = null;
  const drain = (): Promise<void> => {
    draining ??= (async () => {
      const deadline = Date.now() + config.shutdown.drainMs;
      ctx.draining = true;
      stopListening();
      for (const { s } of ws.sessions) {
        s.closeWhenIdle = true;
        s.closeIfIdle();
      }
      for (const b of ctx.bulk) b.out.closeAfter = true; // a response that starts now says Connection: close
      coalescer.flushAll();
      // Everything received is answered while time allows; the last 10% of it is kept for the rest.
      const answerBy = deadline - Math.min(1000, config.shutdown.drainMs / 10);
      while (Date.now() < answerBy && (ws.sessions.size > 0 || ctx.gate.http > 0)) {
        for (const { s } of ws.sessions) s.closeIfIdle();
        await sleep(5);
      }
      // Out of time: what is still parked gets SHUTTING_DOWN, so does what the shards still owe (close()).
      for (const { w } of ws.sessions) w.failParked('SHUTTING_DOWN');
      for (const b of ctx.bulk) b.window?.failParked('SHUTTING_DOWN');
      coalescer.flushAll();
      backend.close();
      await nextTurn(); // the flush list sends those answers
      await nextTurn();
      for (const { s } of [...ws.sessions]) s.end(1001, 'SHUTTING_DOWN');
      await nextTurn();
      closeAll();
    })();
    return draining;
  };

  return { port, config, shards, coalescer, ring, ctx, ws, stats, drain, stop };
}
