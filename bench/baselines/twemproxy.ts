/**
 * twemproxy (nutcracker) in front of the same fleet: writes its YAML config and starts it. Configured like
 * kvgate's ring (ketama, md5 by default), one server connection per shard, hosts never ejected.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, type ServerProc } from '../lib/proc';
import type { Endpoint } from '../loadgen/types';

export interface TwemproxyOptions {
  port: number;
  statsPort: number;
  servers: Endpoint[];
  hash?: 'md5' | 'fnv1a_64';
  cpus?: string;
  dir: string;
}

export function twemproxyConfig(o: TwemproxyOptions): string {
  return [
    'kvgate_bench:',
    `  listen: 127.0.0.1:${o.port}`,
    `  hash: ${o.hash ?? 'md5'}`,
    '  distribution: ketama',
    '  timeout: 2000',
    '  backlog: 4096',
    '  preconnect: true',
    '  redis: false',
    '  auto_eject_hosts: false',
    '  server_connections: 1',
    '  servers:',
    ...o.servers.map((s) => `    - ${s.host}:${s.port}:1`),
    '',
  ].join('\n');
}

export async function startTwemproxy(o: TwemproxyOptions): Promise<ServerProc> {
  mkdirSync(o.dir, { recursive: true });
  const conf = join(o.dir, `nutcracker-${o.port}.yml`);
  const log = join(o.dir, `nutcracker-${o.port}.log`);
  writeFileSync(conf, twemproxyConfig(o));
  const proc = await startServer({
    name: 'twemproxy',
    cmd: 'nutcracker',
    args: ['-c', conf, '-s', String(o.statsPort), '-a', '127.0.0.1', '-o', log, '-v', '4'],
    cpus: o.cpus,
    readyPort: o.port,
  });
  const stop = proc.stop;
  proc.stop = async () => {
    await stop();
    rmSync(conf, { force: true });
    rmSync(log, { force: true });
  };
  return proc;
}
