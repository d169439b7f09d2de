/**
 * What /metrics costs (issue 9): one kvgate, one load generator, windows alternating between no scraping
 * and a scrape of the admin listener's /metrics every second, so both sides share the same process, warm
 * state and machine noise. Reported: the median keys/s of each side, their ratio (the target: scraped is
 * within 3% of not scraped), and the front's CPU per key on each side.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LoadGen } from '../loadgen';
import { ADMIN_HEADERS } from './auth';
import type { Log, Runner } from './runner';
import { fmt, summarize } from './runner';
import type { RunMetrics, Scenario, Summary } from './types';

export interface MetricsCostResult {
  off: RunMetrics[];
  on: RunMetrics[];
  summaryOff: Summary;
  summaryOn: Summary;
  /** median keys/s scraped / median keys/s not scraped. */
  ratio: number;
  scrapes: number;
  /** Median bytes of one scrape. */
  scrapeBytes: number;
  scrapeEveryMs: number;
}

export async function runMetricsCost(runner: Runner, sc: Scenario, log: Log): Promise<MetricsCostResult> {
  const s = runner.s;
  const front = await runner.peers.startFront('kvgate');
  if (front === null || front.statsUrl === undefined) throw new Error('kvgate did not start with an admin listener');
  const metricsUrl = front.statsUrl.replace('/debug/stats', '/metrics');
  const everyMs = 1000;
  try {
    const plan = runner.peers.loadPlan('kvgate', sc, front);
    if ('skip' in plan) throw new Error(plan.skip);
    await runner.preload('kvgate', front, sc.valueSize);
    const gen = await LoadGen.start(plan.opts);
    const off: RunMetrics[] = [];
    const on: RunMetrics[] = [];
    const sizes: number[] = [];
    try {
      gen.run();
      await sleep(s.warmupSeconds * 1000);
      for (let k = 0; k < s.runs; k++) {
        for (const scraped of [false, true]) {
          let stop = false;
          const scraper = scraped
            ? (async () => {
                while (!stop) {
                  const t0 = Date.now();
                  const text = await (await fetch(metricsUrl, { headers: ADMIN_HEADERS })).text();
                  sizes.push(text.length);
                  await sleep(Math.max(0, everyMs - (Date.now() - t0)));
                }
              })()
            : null;
          const { m } = await runner.window(gen, front, sc.valueSize, s.seconds * 1000);
          stop = true;
          await scraper;
          (scraped ? on : off).push(m);
          log(`    ${scraped ? 'scraped 1/s' : 'not scraped'}  run ${k + 1}: ${fmt(m)}`);
        }
      }
      await gen.pause();
    } finally {
      await gen.close();
    }
    const summaryOff = summarize(off);
    const summaryOn = summarize(on);
    const ratio = (summaryOn.keysPerSec?.median ?? NaN) / (summaryOff.keysPerSec?.median ?? NaN);
    sizes.sort((a, b) => a - b);
    log(`    scraped / not scraped keys/s: ${ratio.toFixed(3)} (${sizes.length} scrapes)`);
    return {
      off,
      on,
      summaryOff,
      summaryOn,
      ratio,
      scrapes: sizes.length,
      scrapeBytes: sizes[sizes.length >> 1] ?? 0,
      scrapeEveryMs: everyMs,
    };
  } finally {
    await front.stop();
  }
}
