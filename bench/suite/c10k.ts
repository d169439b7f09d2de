/**
 * 10,000 live WebSocket connections against kvgate: gateway RSS at idle, with every connection open and
 * idle, and under load (all connections active, 90/10 mix, every answer checked); peak throughput, and
 * p99 latency at half of that peak (fixed-rate load, timed from when each request was due).
 */
import { LoadGen, sleep } from '../loadgen';
import { procSnap, RssPeak } from '../lib/proc';
import { PEER_LABEL } from './peers';
import { summarize, type Log, type Runner } from './runner';
import type { PeerResult, RunMetrics, Scenario } from './types';

export interface C10kExtra {
  conns: number;
  connected: number;
  connectSeconds: number;
  rssIdleMb: number;
  rssIdleConnsMb: number;
  rssPerIdleConnKiB: number;
  rssUnderLoadPeakMb: number;
  rssPerLoadedConnKiB: number;
  /** Gateway RSS at the end of every measured window, full load then half load. */
  rssByWindowMb: number[];
  rssAfterLoadMb: number;
  peakKeysPerSec: number;
  halfRate: number;
  half: RunMetrics[];
  halfP99Ms: number;
  halfAchievedKeysPerSec: number;
  checked: { requests: number; badValues: number; misses: number; errors: number };
}

const mb = (b: number): number => b / 1048576;

export async function runC10k(
  runner: Runner,
  sc: Scenario,
  log: Log,
): Promise<{ peers: PeerResult[]; extra: C10kExtra }> {
  const s = runner.s;
  const front = await runner.peers.startFront('kvgate');
  if (!front) throw new Error('kvgate did not start');
  try {
    await runner.preload('kvgate', front, sc.valueSize);
    await sleep(1000);
    const rssIdle = procSnap(front.proc.pid).rssBytes;
    const plan = runner.peers.loadPlan('kvgate', sc, front);
    if ('skip' in plan) throw new Error(plan.skip);
    const t0 = performance.now();
    const gen = await LoadGen.start({ ...plan.opts, workers: Math.max(2, s.loadgenWorkers) });
    const connectSeconds = (performance.now() - t0) / 1000;
    try {
      await sleep(2000);
      const rssIdleConns = procSnap(front.proc.pid).rssBytes;
      const idleSample = await gen.collect();
      log(
        `    ${idleSample.conns} connections open in ${connectSeconds.toFixed(1)} s: gateway RSS ${mb(rssIdle).toFixed(1)} MB idle, ` +
          `${mb(rssIdleConns).toFixed(1)} MB with the connections idle`,
      );
      const peak = new RssPeak([front.proc.pid], 100);
      gen.run();
      await sleep(s.warmupSeconds * 1000);
      const runs = await runner.windows(gen, front, sc.valueSize, PEER_LABEL.kvgate);
      await gen.pause();
      const summary = summarize(runs);
      const peakRate = summary.reqPerSec?.median ?? 0;
      const halfRate = Math.floor(peakRate / 2);
      gen.run(halfRate);
      await sleep(s.warmupSeconds * 1000);
      log(`    at half of peak: ${halfRate} req/s offered`);
      const half = await runner.windows(gen, front, sc.valueSize, 'half of peak');
      await gen.pause();
      const rssUnderLoad = peak.stop();
      await sleep(500);
      const rssAfter = procSnap(front.proc.pid).rssBytes;
      const hs = summarize(half);
      const all = [...runs, ...half];
      const extra: C10kExtra = {
        conns: sc.conns,
        connected: idleSample.conns,
        connectSeconds,
        rssIdleMb: mb(rssIdle),
        rssIdleConnsMb: mb(rssIdleConns),
        rssPerIdleConnKiB: (rssIdleConns - rssIdle) / 1024 / sc.conns,
        rssUnderLoadPeakMb: mb(rssUnderLoad),
        rssPerLoadedConnKiB: (rssUnderLoad - rssIdle) / 1024 / sc.conns,
        rssByWindowMb: all.map((w) => w.frontRssMb),
        rssAfterLoadMb: mb(rssAfter),
        peakKeysPerSec: summary.keysPerSec?.median ?? NaN,
        halfRate,
        half,
        halfP99Ms: hs.p99Ms?.median ?? NaN,
        halfAchievedKeysPerSec: hs.keysPerSec?.median ?? NaN,
        checked: {
          requests: all.reduce((a, m) => a + m.requests, 0),
          badValues: all.reduce((a, m) => a + m.badValues, 0),
          misses: all.reduce((a, m) => a + m.misses, 0),
          errors: all.reduce((a, m) => a + m.errorCount, 0),
        },
      };
      return {
        peers: [
          {
            peer: 'kvgate',
            runs,
            summary,
            stats: undefined,
            setup: {
              proto: 'ws',
              conns: plan.opts.conns,
              depth: 1,
              inFlight: plan.opts.conns,
              localAddresses: plan.opts.localAddresses,
              frontCpus: s.pin.gateway,
              loadgenCpus: s.pin.loadgen,
            },
          },
        ],
        extra,
      };
    } finally {
      await gen.close();
    }
  } finally {
    await front.stop();
  }
}
