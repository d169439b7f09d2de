/**
 * Runs the load generator by hand against something already listening, e.g.
 *   node dist/bench/loadgen/cli.js --proto ws --target 127.0.0.1:8080 --conns 1000 --op get --preload --seconds 5
 *   node dist/bench/loadgen/cli.js --proto mc --ceiling --servers 127.0.0.1:11211 --op mget --bulk 100
 * `--token T` (or KVGATE_TOKEN) sends `Authorization: Bearer T` (kvgate requires a credential by default).
 * `--front-pid P` reads process P's CPU (utime + stime, /proc) over each measured window and prints it
 * beside the sample as `frontCpuPct` and `frontUsPerKey`: the gateway's own CPU per key, by hand.
 */
import { LoadGen } from './index';
import { procSnap } from '../lib/proc';
import type { Endpoint, Op, Proto } from './types';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);
const ep = (s: string): Endpoint => ({ host: s.split(':')[0], port: Number(s.split(':')[1]) });

async function main(): Promise<void> {
  const gen = await LoadGen.start({
    proto: arg('proto', 'ws') as Proto,
    target: {
      ...ep(arg('target', '127.0.0.1:8080')),
      token: arg('token', process.env.KVGATE_TOKEN ?? '') || undefined,
    },
    servers: arg('servers', '').split(',').filter(Boolean).map(ep),
    ceiling: flag('ceiling'),
    conns: Number(arg('conns', '100')),
    depth: Number(arg('depth', '1')),
    op: arg('op', 'get') as Op,
    getPct: Number(arg('get-pct', '90')),
    bulk: Number(arg('bulk', '100')),
    keyCount: Number(arg('keys', '10000')),
    valueSize: Number(arg('value-size', '100')),
    localAddresses: arg('local', '').split(',').filter(Boolean),
    connectConcurrency: Number(arg('connect-concurrency', '64')),
    wsPath: arg('path', '/v1/ws'),
    workers: Number(arg('workers', '2')),
    framesPerWrite: Number(arg('frames-per-write', '0')),
    cpus: arg('cpus', ''),
  });
  if (flag('preload')) console.log('preload', await gen.preload());
  gen.run(Number(arg('rate', '0')));
  const seconds = Number(arg('seconds', '5'));
  for (let i = 0; i < Number(arg('runs', '1')); i++) {
    const frontPid = Number(arg('front-pid', '0'));
    const a = frontPid > 0 ? procSnap(frontPid) : null;
    const s = await gen.measure(seconds * 1000);
    if (a === null) {
      console.log(JSON.stringify(s));
      continue;
    }
    const b = procSnap(frontPid);
    const cpuSec = b.cpuSec - a.cpuSec;
    const front = { frontCpuPct: (cpuSec / s.durationS) * 100, frontUsPerKey: (cpuSec * 1e6) / s.keys };
    console.log(JSON.stringify({ ...s, ...front }));
  }
  await gen.pause();
  await gen.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
