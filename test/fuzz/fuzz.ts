/**
 * One fuzz run: a gateway in a child process in front of a local memcached fleet (or one already
 * running, `target`), WebSocket and HTTP fuzz workers and the canary driving it at once, the watcher on
 * the process and its log, and at the end a graceful stop that must exit 0. Returns the report.
 */
import { testConfig } from '../helpers/harness';
import { LocalFleet } from '../../src/fleet/local-fleet';
import { spawnGateway, GatewayProcess } from '../helpers/gateway-process';
import { httpCanary, wsCanary } from './canary';
import type { FuzzCtx } from './context';
import { sleep } from './context';
import type { Limits } from './gen-ws';
import { genHttpInput } from './gen-http';
import { runHttpInput, httpWorker } from './http-driver';
import { Rng } from './prng';
import { Report } from './report';
import { healthz, LogWatch, rssMb } from './watch';
import { wsWorker } from './ws-driver';

export interface FuzzOptions {
  seed: number;
  seconds: number;
  /** Stop after this many fuzz inputs (WebSocket and HTTP together). */
  frames: number;
  /** host:port of a running gateway; otherwise one is started here. */
  target?: string;
  wsWorkers: number;
  httpWorkers: number;
  canaries: number;
  answerMs: number;
  stallMs: number;
  maxRssMb: number;
  itemSizeMb: number;
  /** Only this stream ('ws' or 'http'). */
  only?: string;
  /** Replays one input, 'ws:N' or 'http:N'; 'ws:A,B,C' sends those in order on one connection. */
  replay?: string;
  log?: (line: string) => void;
}

export const DEFAULTS: FuzzOptions = {
  seed: 1,
  seconds: 60,
  frames: Infinity,
  wsWorkers: 8,
  httpWorkers: 64,
  canaries: 1,
  answerMs: 5000,
  stallMs: 3000,
  maxRssMb: 400,
  itemSizeMb: 2,
};

export async function runFuzz(o: FuzzOptions): Promise<Report> {
  const report = new Report(o.seed);
  const log = o.log ?? (() => {});
  const cfg = testConfig();
  const lim: Limits = {
    maxValueBytes: cfg.limits.maxValueBytes,
    maxTtlSeconds: cfg.limits.maxTtlSeconds,
    maxWaitMs: cfg.batch.maxWaitMs,
    maxPayloadBytes: cfg.ws.maxPayloadBytes,
    maxItemsPerRequest: cfg.limits.maxItemsPerRequest,
  };
  let fleet: LocalFleet | null = null;
  let gw: GatewayProcess | null = null;
  let host = '127.0.0.1';
  let port: number;
  if (o.target) {
    const m = /^([^:]+):(\d+)$/.exec(o.target);
    if (!m) throw new Error(`--target must be host:port (got ${o.target})`);
    host = m[1];
    port = Number(m[2]);
    if (host !== '127.0.0.1' && host !== 'localhost' && host !== '::1') throw new Error('--target must be on loopback');
  } else {
    fleet = await LocalFleet.start({ count: 3, memoryMb: 64, itemSizeMb: o.itemSizeMb });
    gw = await spawnGateway({ servers: fleet.servers() });
    port = gw.port;
    log(`gateway pid ${gw.proc.pid} on 127.0.0.1:${port}, memcached on ${fleet.members.map((f) => f.port).join(', ')}`);
  }

  const started = Date.now();
  let stopped = false;
  let dead = false;
  const counters = new Map<string, number>();
  const recent: string[] = [];
  let spent = 0;
  let replayed = false;
  const replayStream = o.replay?.split(':')[0] ?? '';
  const replayList = o.replay ? o.replay.split(':')[1].split(',').map(Number) : [];
  const replayN = replayList[0] ?? 0;
  const ctx: FuzzCtx = {
    host,
    port,
    seed: o.seed,
    lim,
    report,
    answerMs: o.answerMs,
    next(stream) {
      if (stopped || dead) return null;
      if (o.replay) {
        if (stream !== replayStream || replayed) return null;
        const n = replayList.shift()!;
        if (replayList.length === 0) replayed = true;
        return n;
      }
      if (spent >= o.frames || Date.now() - started > o.seconds * 1000) {
        stopped = true;
        return null;
      }
      spent++;
      const n = counters.get(stream) ?? 0;
      counters.set(stream, n + 1);
      recent.push(`${stream}#${n}`);
      if (recent.length > 24) recent.shift();
      return n;
    },
    over: () => stopped || (o.replay !== undefined && replayed),
    dead: () => dead,
  };

  const pid = gw?.proc.pid ?? 0;
  const logWatch = gw ? new LogWatch(gw.output, report, () => recent.join(' ')) : null;
  if (gw) {
    report.rss.startMb = rssMb(pid);
    void gw.exited.then((e) => {
      if (stopped) return;
      dead = true;
      report.anomaly(`gateway: process exited (${e.code ?? e.signal})`, {
        stream: 'process',
        n: -1,
        inputKind: 'process',
        what: `last inputs: ${recent.join(' ')}; log tail: ${gw!.output().slice(-1500)}`,
      });
    });
  }
  let rssOver = false;
  const watcher = setInterval(() => {
    logWatch?.look();
    if (!gw || dead) return;
    const mb = rssMb(pid);
    report.rss.peakMb = Math.max(report.rss.peakMb, mb);
    if (mb > o.maxRssMb && !rssOver) {
      rssOver = true;
      report.anomaly(`gateway: RSS over ${o.maxRssMb} MB`, {
        stream: 'process',
        n: -1,
        inputKind: 'process',
        what: `${mb} MB; last inputs: ${recent.join(' ')}`,
      });
    }
  }, 250);
  const progress = setInterval(
    () =>
      log(
        `${Math.round((Date.now() - started) / 1000)} s: ${report.total} inputs, ${report.anomalyCount} anomalies, canary ${report.canary.ws}+${report.canary.http}, RSS ${rssMb(pid)} MB`,
      ),
    10_000,
  );
  const health = (async () => {
    while (!ctx.over() && !dead) {
      const bad = await healthz(host, port, o.answerMs);
      if (bad !== null && !ctx.over() && !dead)
        report.anomaly('gateway: /healthz failed', {
          stream: 'process',
          n: -1,
          inputKind: 'healthz',
          what: `${bad}; last inputs: ${recent.join(' ')}`,
        });
      await sleep(1000);
    }
  })();

  const jobs: Promise<void>[] = [health];
  if (o.replay) {
    if (replayStream === 'ws') jobs.push(wsWorker(ctx, 0));
    else {
      replayed = true;
      const input = genHttpInput(Rng.for(o.seed, 'http', replayN), lim);
      report.input(`http ${input.kind}`);
      jobs.push(runHttpInput(ctx, replayN, input));
    }
  } else {
    if (o.only !== 'http') for (let w = 0; w < o.wsWorkers; w++) jobs.push(wsWorker(ctx, w));
    if (o.only !== 'ws') for (let w = 0; w < o.httpWorkers; w++) jobs.push(httpWorker(ctx));
    for (let c = 0; c < o.canaries; c++) jobs.push(wsCanary(ctx, c, o.stallMs), httpCanary(ctx, c, o.stallMs));
  }
  const guard = (async () => {
    while (!ctx.over() && !dead) await sleep(100);
  })();
  await guard;
  stopped = true;
  await Promise.all(jobs);
  clearInterval(progress);
  if (gw && !dead) {
    // settle, look at the log once more, then the graceful stop must end the process with 0
    await sleep(300);
    logWatch!.look();
    report.rss.endMb = rssMb(pid);
    const t0 = Date.now();
    gw.signal('SIGTERM');
    const exit = await Promise.race([gw.exited, sleep(cfg.shutdown.drainMs + 5000).then(() => null)]);
    if (exit === null) {
      report.anomaly('gateway: SIGTERM did not end the process', {
        stream: 'process',
        n: -1,
        inputKind: 'process',
        what: `still running ${Date.now() - t0} ms after SIGTERM`,
      });
      await gw.kill();
    } else if (exit.code !== 0)
      report.anomaly(`gateway: exit ${exit.code ?? exit.signal} after SIGTERM`, {
        stream: 'process',
        n: -1,
        inputKind: 'process',
        what: gw.output().slice(-1000),
      });
    logWatch!.look();
  } else if (gw) await gw.kill();
  clearInterval(watcher);
  await fleet?.stop();
  return report;
}
