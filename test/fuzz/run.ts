/**
 * `node dist/test/fuzz/run.js [--seconds N] [--seed S] [--frames N] [--target host:port] [--out DIR]
 *   [--only ws|http] [--replay ws:N[,N...]|http:N] [--ws-workers N] [--http-workers N] [--answer-ms N]
 *   [--stall-ms N] [--max-rss-mb N] [--item-size-mb N]`
 * Prints the summary, saves it (and the inputs behind every anomaly) under --out, and exits 1 on any
 * anomaly. See docs/FUZZING.md.
 */
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { DEFAULTS, FuzzOptions, runFuzz } from './fuzz';

const USAGE = `usage: node dist/test/fuzz/run.js [--seconds N] [--seed S] [--frames N] [--target host:port] [--out DIR]
       [--only ws|http] [--replay ws:N[,N...]|http:N] [--ws-workers N] [--http-workers N] [--canaries N]
       [--answer-ms N] [--stall-ms N] [--max-rss-mb N] [--item-size-mb N]
--frames: stop after N fuzz inputs (WebSocket messages and HTTP connections together). See docs/FUZZING.md.`;

function parse(argv: string[]): FuzzOptions & { out: string } {
  const o: FuzzOptions & { out: string } = { ...DEFAULTS, seed: Math.floor(Math.random() * 2 ** 31), out: '' };
  const nums: Record<string, keyof FuzzOptions> = {
    '--seconds': 'seconds',
    '--seed': 'seed',
    '--frames': 'frames',
    '--ws-workers': 'wsWorkers',
    '--http-workers': 'httpWorkers',
    '--canaries': 'canaries',
    '--answer-ms': 'answerMs',
    '--stall-ms': 'stallMs',
    '--max-rss-mb': 'maxRssMb',
    '--item-size-mb': 'itemSizeMb',
  };
  const bad: string[] = [];
  for (let k = 0; k < argv.length; k++) {
    const flag = argv[k];
    const v = argv[++k];
    if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    if (v === undefined) {
      bad.push(`${flag} needs a value`);
      continue;
    }
    if (flag in nums) {
      if (!/^\d+$/.test(v)) bad.push(`${flag} must be a whole number (got "${v}")`);
      else (o as unknown as Record<string, number>)[nums[flag]] = Number(v);
    } else if (flag === '--target') o.target = v;
    else if (flag === '--out') o.out = v;
    else if (flag === '--only') {
      if (v !== 'ws' && v !== 'http') bad.push('--only must be ws or http');
      o.only = v;
    } else if (flag === '--replay') {
      if (!/^(ws:\d+(,\d+)*|http:\d+)$/.test(v)) bad.push('--replay must be ws:N[,N...] or http:N');
      o.replay = v;
    } else bad.push(`unknown flag ${flag}`);
  }
  if (bad.length) {
    console.error(`kvgate fuzz: ${bad.join('; ')}`);
    process.exit(2);
  }
  if (o.out === '') o.out = join(tmpdir(), `kvgate-fuzz-${o.seed}`);
  return o;
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  console.log(
    `kvgate fuzz: seed ${o.seed}, ${o.seconds} s${Number.isFinite(o.frames) ? `, at most ${o.frames} inputs` : ''}${o.target ? `, target ${o.target}` : ''}`,
  );
  const report = await runFuzz({ ...o, log: (l) => console.log(`  ${l}`) });
  const path = report.save(o.out);
  console.log(report.text());
  console.log(`summary: ${path}`);
  console.log(
    report.anomalyCount === 0
      ? 'no anomalies'
      : `${report.anomalyCount} anomalies (${report.anomalies.size} kinds): replay one with --seed ${o.seed} --replay STREAM:N`,
  );
  process.exit(report.anomalyCount === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
