/**
 * Test harness: a real local memcached fleet and an in-process gateway in front of it, on free loopback
 * ports, torn down by `stop()`. Config overrides go through the same validation as production.
 */
import { defaultConfig, mergeConfig, validateConfig, Config } from '../../src/config/schema';
import { LocalFleet } from '../../src/fleet/local-fleet';
import { startGateway, Gateway } from '../../src/gateway';
import { KvHttpClient, KvWsClient, type KvWsClientOptions } from '../client';
import { createConnection } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';

export interface Harness {
  fleet: LocalFleet;
  gw: Gateway;
  config: Config;
  http: KvHttpClient;
  base: string;
  wsUrl: string;
  ws(): Promise<KvWsClient>;
  stop(): Promise<void>;
}

/**
 * The defaults with authentication explicitly off, as a loopback gateway may run: for tests that are not
 * about credentials (test/security.test.ts is).
 */
export function testConfig(): Config {
  const d = defaultConfig();
  d.security.auth.mode = 'off';
  return d;
}

export async function startHarness(over: Record<string, unknown> = {}, shards = 3): Promise<Harness> {
  const fleet = await LocalFleet.start({ count: shards, memoryMb: 64, itemSizeMb: 2 });
  let config: Config;
  let gw: Gateway;
  try {
    config = validateConfig(
      mergeConfig(testConfig(), {
        port: 0,
        admin: { port: 0 },
        log: { level: 'silent' },
        ...over,
        servers: fleet.servers(),
      }),
    );
    gw = await startGateway(config);
  } catch (e) {
    // The memcached children would keep the test file's process alive until its timeout.
    await fleet.stop();
    throw e;
  }
  const base = `http://127.0.0.1:${gw.port}`;
  const wsUrl = `ws://127.0.0.1:${gw.port}/v1/ws`;
  const clients: KvWsClient[] = [];
  return {
    fleet,
    gw,
    config,
    base,
    wsUrl,
    http: new KvHttpClient(base),
    async ws() {
      const c = await KvWsClient.connect(wsUrl);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.terminate();
      await gw.stop();
      await fleet.stop();
    },
  };
}

/** A gateway over pools the test started itself (no local fleet): what `startPoolsHarness` returns. */
export interface PoolsHarness {
  gw: Gateway;
  config: Config;
  http: KvHttpClient;
  base: string;
  wsUrl: string;
  /** A WebSocket client, terminated by stop(). */
  ws(opts?: KvWsClientOptions): Promise<KvWsClient>;
  stop(): Promise<void>;
}

/**
 * An in-process gateway in front of the `pools` (with `routes` and `defaultPool`) that `over` names, on a
 * free port, without a fleet of its own: the caller starts and stops the servers (Redis, a LocalFleet).
 */
export async function startPoolsHarness(over: Record<string, unknown>): Promise<PoolsHarness> {
  const config = validateConfig(
    mergeConfig(testConfig(), { port: 0, admin: { port: 0 }, log: { level: 'silent' }, ...over }),
  );
  const gw = await startGateway(config);
  const base = `http://127.0.0.1:${gw.port}`;
  const wsUrl = `ws://127.0.0.1:${gw.port}/v1/ws`;
  const clients: KvWsClient[] = [];
  return {
    gw,
    config,
    base,
    wsUrl,
    http: new KvHttpClient(base),
    async ws(opts) {
      const c = await KvWsClient.connect(wsUrl, opts);
      clients.push(c);
      return c;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.terminate()));
      await gw.stop();
    },
  };
}

/** Sends one memcached text command to a server and returns the raw reply up to `until`. */
export function memcachedCommand(
  port: number,
  cmd: string | Buffer,
  until = /(END|STORED|DELETED|NOT_FOUND|OK|ERROR[^\r]*)\r\n$/,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port });
    let acc = '';
    s.on('data', (d) => {
      acc += d.toString('latin1');
      if (until.test(acc)) {
        s.destroy();
        resolve(acc);
      }
    });
    s.on('error', reject);
    s.write(cmd);
  });
}

/** memcached's `stats` as numbers. */
export async function memcachedStats(port: number): Promise<Record<string, number>> {
  const text = await memcachedCommand(port, 'stats\r\n', /END\r\n$/);
  const out: Record<string, number> = {};
  for (const line of text.split('\r\n')) {
    const m = /^STAT (\S+) (\S+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** Polls `check` until it returns true or `ms` pass; for waiting on a server state, never to make a test pass. */
export async function until(check: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * SIGSTOP takes effect only once a thread of the target handles it; until then, on a busy machine, its
 * other threads can still answer. So after sending it, poll /proc until every thread is stopped.
 */
export async function freeze(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  const stopped = (): boolean =>
    readdirSync(`/proc/${pid}/task`).every((t) => {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      return /^\S+ \(.*\) [Tt] /s.test(stat);
    });
  await until(stopped, 5000, `memcached ${pid} stopped`);
}

/** A JSON document from a gateway's admin listener (`/debug/stats`, `/readyz`): the public port has none. */
export async function adminJson(gw: { adminPort: number }, path: string): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${gw.adminPort}${path}`);
  if (!res.ok) throw new Error(`admin ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, unknown>;
}
