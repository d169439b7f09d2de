/**
 * webdis (Debian's package) in front of the bench's Redis: writes its webdis.json (the given Redis, its
 * own loopback port, one worker thread, in the foreground, logging to the bench's scratch dir) and starts
 * it. It serves `GET /GET/{key}.bin` as the raw value bytes with `binary/octet-stream`: the equivalent of
 * kvgate's `GET /v1/kv/{key}`.
 */
import { rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, type ServerProc } from '../lib/proc';

export interface WebdisOptions {
  port: number;
  redis: { host: string; port: number };
  /** webdis's worker threads; one, like the single event loop of the gateways it is compared with. */
  threads?: number;
  /** Connections to Redis per thread. */
  poolSize?: number;
  cpus?: string;
  dir: string;
}

export function webdisConfig(o: WebdisOptions, log: string): Record<string, unknown> {
  return {
    redis_host: o.redis.host,
    redis_port: o.redis.port,
    redis_auth: null,
    http_host: '127.0.0.1',
    http_port: o.port,
    threads: o.threads ?? 1,
    pool_size: o.poolSize ?? 20,
    daemonize: false,
    database: 0,
    // the bench reads keys only; nothing else is reachable through this webdis
    acl: [{ disabled: ['*'] }, { enabled: ['GET', 'PING'] }],
    verbosity: 1,
    logfile: log,
  };
}

export async function startWebdis(o: WebdisOptions): Promise<ServerProc & { config: Record<string, unknown> }> {
  mkdirSync(o.dir, { recursive: true });
  const conf = join(o.dir, `webdis-${o.port}.json`);
  const log = join(o.dir, `webdis-${o.port}.log`);
  const config = webdisConfig(o, log);
  writeFileSync(conf, JSON.stringify(config, null, 1) + '\n');
  const proc = await startServer({ name: 'webdis', cmd: 'webdis', args: [conf], cpus: o.cpus, readyPort: o.port });
  const stop = proc.stop;
  proc.stop = async () => {
    await stop();
    rmSync(conf, { force: true });
    rmSync(log, { force: true });
  };
  return Object.assign(proc, { config });
}
