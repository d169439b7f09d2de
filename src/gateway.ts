/**
 * Wires the data path together: uWS server -> ingress (decode) -> Router (ketama) -> Coalescer (batches)
 * -> ShardConnection (memcached codec on the socket) -> Request sinks -> pooled output. `startGateway`
 * is what main.ts and the tests call.
 */
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { Coalescer } from './batch/coalescer';
import type { Config } from './config/schema';
import { mountBulk } from './ingress/http-bulk';
import { mountKv } from './ingress/http-kv';
import { mountWebSocket, WsCounters } from './ingress/ws';
import { ShardConnection } from './memcached/shard-connection';
import { KetamaRing } from './route/ketama';
import { Router } from './route/router';
import { pool } from './stream/buffer-pool';
import { errorBody } from './errors';
import { uws, us_listen_socket } from './uws';

export interface Gateway {
  port: number;
  config: Config;
  shards: ShardConnection[];
  coalescer: Coalescer;
  ring: KetamaRing;
  stats(): Record<string, unknown>;
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

export async function startGateway(config: Config): Promise<Gateway> {
  const shards = config.servers.map((s) => new ShardConnection(s.host, s.port, config.shard));
  await Promise.all(shards.map((s) => s.connect()));
  const ring = new KetamaRing(config.servers, config.hash);
  const coalescer = new Coalescer(shards, config.batch);
  const router = new Router(ring, coalescer, config.limits);
  const counters: WsCounters = { connections: 0, messages: 0, requests: 0, badFrames: 0 };
  const gc = config.debugStats ? gcCounters() : null;
  const started = Date.now();

  const app = uws.App();
  mountWebSocket(app, router, { ...config.limits, maxWaitMs: config.batch.maxWaitMs, ...config.ws }, counters);
  mountKv(app, router, config.batch.maxWaitMs);
  mountBulk(app, router, {
    maxWaitMs: config.batch.maxWaitMs,
    maxItemsPerRequest: config.limits.maxItemsPerRequest,
    maxInflightItems: config.limits.maxInflightPerConnection,
  });

  const stats = (): Record<string, unknown> => ({
    uptimeMs: Date.now() - started,
    ws: { ...counters },
    shards: coalescer.stats(),
    ring: ring.spread(),
    pool: pool.stats(),
    memory: process.memoryUsage(),
    gc: gc ? { ...gc.counts } : null,
    batch: config.batch,
  });

  app.get('/healthz', (res) => {
    const list = shards.map((s) => ({ server: s.label, up: s.up }));
    const up = list.filter((s) => s.up).length;
    res.cork(() => {
      res.writeStatus(up === 0 ? '503 Service Unavailable' : '200 OK').writeHeader('content-type', 'application/json')
        .end(JSON.stringify({ status: up === list.length ? 'ok' : up === 0 ? 'down' : 'degraded', shards: list }));
    });
  });
  if (config.debugStats) {
    app.get('/debug/stats', (res) => {
      res.cork(() => res.writeHeader('content-type', 'application/json').end(JSON.stringify(stats())));
    });
  }
  app.any('/*', (res) => {
    res.cork(() => res.writeStatus('404 Not Found').writeHeader('content-type', 'application/json')
      .end(errorBody('BAD_REQUEST', 'no such route; see docs/PROTOCOL.md')));
  });

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(config.host, config.port, (ls) => {
      if (ls) resolve(ls);
      else reject(new Error(`kvgate: cannot listen on ${config.host}:${config.port} (in use?)`));
    });
  });
  const port = uws.us_socket_local_port(listenSocket as never) as number;

  return {
    port,
    config,
    shards,
    coalescer,
    ring,
    stats,
    async stop() {
      // Stop taking connections, send what is batched, let in-flight answers arrive (bounded by the
      // shard timeout, which fails them anyway), then close every client and shard connection.
      uws.us_listen_socket_close(listenSocket);
      coalescer.flushAll();
      const deadline = Date.now() + config.shard.timeoutMs;
      while (shards.some((s) => s.inflightBatches > 0) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setImmediate(r));
      (app as unknown as { close?: () => void }).close?.();
      for (const s of shards) s.close();
      gc?.stop();
    },
  };
}
