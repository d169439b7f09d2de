/**
 * The peers of every comparison. A peer may have a front process (kvgate, the naive gateway, twemproxy,
 * the plain http server) whose CPU and RSS are measured; memjs-direct and the ceiling talk to memcached
 * themselves. `loadPlan` says how each peer drives a scenario, and notes where it can only do the nearest
 * equivalent.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { freePort, type LocalFleet } from '../../src/fleet/local-fleet';
import { startServer, type ServerProc } from '../lib/proc';
import { startTwemproxy } from '../baselines/twemproxy';
import type { LoadOptions } from '../loadgen';
import type { Endpoint } from '../loadgen/types';
import type { PeerName, Scenario, SuiteSettings } from './types';
import { describeAuth, kvgateSecurity, suiteVariant, tokenFor, type AuthVariant } from './auth';

export const PEER_LABEL: Record<PeerName, string> = {
  kvgate: 'kvgate (batched)',
  naive: 'naive gateway',
  memjs: 'memjs direct',
  twemproxy: 'twemproxy',
  'uws-floor': 'uWS floor',
  ceiling: 'memcached ceiling',
  'plain-http': 'plain Node http',
};

export interface Front {
  peer: PeerName;
  endpoint: Endpoint;
  proc: ServerProc;
  /** kvgate and the naive gateway expose /debug/stats (kvgate's needs ADMIN_HEADERS, bench/suite/auth.ts). */
  statsUrl?: string;
  /** kvgate: how it authenticates (the token is on `endpoint`); null for every other peer. */
  auth: Record<string, unknown> | null;
  stop(): Promise<void>;
}

const DIST = join(__dirname, '..', '..');

export class Peers {
  private preloaded = new Set<string>();

  constructor(
    private readonly fleet: LocalFleet,
    private readonly s: SuiteSettings,
    private readonly tmpDir: string,
  ) {}

  get servers(): Endpoint[] {
    return this.fleet.servers().map((x) => ({ host: x.host, port: x.port }));
  }

  get serverList(): string {
    return this.servers.map((x) => `${x.host}:${x.port}`).join(',');
  }

  get memcachedPids(): number[] {
    return this.fleet.members.map((m) => m.proc?.pid ?? 0).filter(Boolean);
  }

  /** How kvgate authenticates in this run (`--auth`): the API key with namespace and rules, or off. */
  get authVariant(): AuthVariant {
    return suiteVariant(this.s.auth);
  }

  /**
   * Starts the peer's front process; null for peers that have none. kvgate gets a `--config` file with
   * the `security` section of `auth` (default: the run's `--auth`), and its endpoint the token to send.
   */
  async startFront(
    peer: PeerName,
    gatewayArgs: string[] = [],
    nodeFlags: string[] = [],
    auth: AuthVariant = this.authVariant,
  ): Promise<Front | null> {
    const port = await freePort();
    // kvgate serves /debug/stats on its admin listener only; the naive gateway on its one port.
    const adminPort = await freePort();
    const cpus = this.s.pin.gateway;
    let proc: ServerProc;
    switch (peer) {
      case 'kvgate': {
        const file = join(this.tmpDir, `kvgate-security-${port}.json`);
        writeFileSync(file, JSON.stringify({ security: kvgateSecurity(auth) }, null, 1) + '\n');
        proc = await startServer({
          name: 'kvgate',
          cmd: process.execPath,
          cpus,
          readyText: 'listening',
          args: [
            ...nodeFlags,
            join(DIST, 'src', 'main.js'),
            '--config',
            file,
            '--port',
            String(port),
            '--admin-port',
            String(adminPort),
            '--servers',
            this.serverList,
            ...gatewayArgs,
          ],
        });
        break;
      }
      case 'naive':
        proc = await startServer({
          name: 'naive',
          cmd: process.execPath,
          cpus,
          readyText: 'listening',
          args: [
            ...nodeFlags,
            join(DIST, 'bench', 'baselines', 'naive-gateway.js'),
            '--port',
            String(port),
            '--servers',
            this.serverList,
          ],
        });
        break;
      case 'uws-floor':
        proc = await startServer({
          name: 'uws-floor',
          cmd: process.execPath,
          cpus,
          readyText: 'listening',
          args: [join(DIST, 'bench', 'baselines', 'uws-floor.js'), '--port', String(port)],
        });
        break;
      case 'plain-http':
        proc = await startServer({
          name: 'plain-http',
          cmd: process.execPath,
          cpus,
          readyText: 'listening',
          args: [join(DIST, 'bench', 'baselines', 'plain-http.js'), '--port', String(port)],
        });
        break;
      case 'twemproxy':
        proc = await startTwemproxy({
          port,
          statsPort: await freePort(),
          servers: this.servers,
          hash: 'md5',
          cpus,
          dir: this.tmpDir,
        });
        break;
      default:
        return null;
    }
    const token = peer === 'kvgate' ? tokenFor(auth) : undefined;
    const endpoint = { host: '127.0.0.1', port, ...(token === undefined ? {} : { token }) };
    return {
      peer,
      endpoint,
      proc,
      auth: peer === 'kvgate' ? describeAuth(auth) : null,
      statsUrl:
        peer === 'kvgate'
          ? `http://127.0.0.1:${adminPort}/debug/stats`
          : peer === 'naive' || peer === 'uws-floor'
            ? `http://127.0.0.1:${port}/debug/stats`
            : undefined,
      stop: () => proc.stop(),
    };
  }

  private base(
    sc: Pick<Scenario, 'valueSize'>,
  ): Pick<
    LoadOptions,
    | 'keyCount'
    | 'valueSize'
    | 'cpus'
    | 'workers'
    | 'localAddresses'
    | 'connectConcurrency'
    | 'wsPath'
    | 'seed'
    | 'servers'
    | 'getPct'
  > {
    return {
      keyCount: this.s.keyCount,
      valueSize: sc.valueSize,
      cpus: this.s.pin.loadgen,
      workers: this.s.loadgenWorkers,
      localAddresses: [],
      connectConcurrency: 64,
      wsPath: '/v1/ws',
      seed: 1,
      servers: this.servers,
      getPct: 90,
    };
  }

  /** How `peer` drives `sc`: load-generator settings plus a note, or why it cannot. */
  loadPlan(peer: PeerName, sc: Scenario, front: Front | null): { opts: LoadOptions; note?: string } | { skip: string } {
    const b = this.base(sc);
    const many = sc.conns >= 2000;
    const spread = many ? this.s.localAddresses : [];
    const common = {
      ...b,
      op: sc.op,
      getPct: sc.getPct,
      bulk: sc.bulk,
      conns: sc.conns,
      depth: sc.depth,
      ceiling: false,
      localAddresses: spread,
      framesPerWrite: sc.framesPerWrite ?? 0,
      connectConcurrency: many ? 128 : 64,
      target: front?.endpoint ?? { host: '127.0.0.1', port: 0 },
    };
    switch (peer) {
      case 'kvgate':
      case 'naive':
        return { opts: { ...common, proto: sc.transport === 'http' ? 'http' : 'ws' } };
      case 'uws-floor':
        if (sc.transport === 'http') return { skip: 'the uWS floor answers WebSocket only' };
        return {
          opts: { ...common, proto: 'ws' },
          note: 'the same uWS binding and wire protocol, answered from a Map in the process: no backend, no coalescing, one send per message',
        };
      case 'twemproxy':
        return {
          opts: { ...common, proto: 'mc' },
          note:
            sc.transport === 'http'
              ? 'nearest equivalent: twemproxy has no HTTP; the same multi-get as a memcached ASCII `get k1 ... k100` over TCP'
              : 'nearest equivalent: twemproxy has no WebSocket; memcached ASCII protocol over TCP, same connections and requests in flight',
        };
      case 'memjs': {
        const conns = Math.min(sc.conns, 1000);
        const depth = Math.ceil((sc.conns * sc.depth) / conns);
        const notes = ['one memjs call per key (memjs has no multi-get), one memjs client per connection'];
        if (conns !== sc.conns)
          notes.push(
            `capped at ${conns} clients x ${depth} in flight (same total in flight; each client opens a socket per memcached)`,
          );
        if (sc.transport === 'http') notes.push('nearest equivalent: no HTTP front');
        return { opts: { ...common, proto: 'memjs', conns, depth, localAddresses: [] }, note: notes.join('; ') };
      }
      case 'ceiling': {
        const bulk = sc.bulk > 1 ? sc.bulk : 100;
        // No front process here, so the generator may use every core (pinned to one it saturates first, and
        // a ratio against a saturated ceiling would flatter the gateway): two processes per core, each with
        // a connection to every server (a process with no connection would idle).
        const cores = availableParallelism();
        const workers = Math.max(b.workers, 2 * cores);
        return {
          opts: {
            ...common,
            proto: 'mc',
            ceiling: true,
            conns: workers,
            depth: 4,
            bulk,
            localAddresses: [],
            cpus: cores > 1 ? `0-${cores - 1}` : '',
            workers,
          },
          note:
            `memcached driven directly by ${workers} generator processes on every core (there is no front to leave a core to): ` +
            `${workers} connections per server, 4 requests in flight each, ${bulk} keys per request ` +
            `(${sc.op === 'set' || sc.op === 'mset' ? 'pipelined sets' : sc.op === 'mix' ? 'multi-get + pipelined sets, 90/10' : 'classic multi-get'}); not the same concurrency, an upper bound`,
        };
      }
      default:
        return { skip: `${PEER_LABEL[peer]} does not serve this scenario` };
    }
  }

  /**
   * Writes every key of the scenario's value size through the peer (once per placement and size);
   * `keyCount` other than the suite's writes a smaller key space (the flow scenarios' 100 KB values).
   */
  async preloadPlan(
    peer: PeerName,
    front: Front | null,
    valueSize: number,
    keyCount = this.s.keyCount,
  ): Promise<LoadOptions | null> {
    const placement = peer === 'naive' || peer === 'memjs' ? 'memjs' : peer;
    if (peer === 'plain-http') return null;
    const key = `${placement}:${valueSize}${keyCount === this.s.keyCount ? '' : `:${keyCount}`}`;
    // The uWS floor keeps its data in its own process, which each scenario starts afresh: fill it every time.
    if (this.preloaded.has(key)) return null;
    if (peer !== 'uws-floor') this.preloaded.add(key);
    const b = { ...this.base({ valueSize }), keyCount };
    const common = {
      ...b,
      workers: 1,
      op: 'mset' as const,
      bulk: 50,
      ceiling: false,
      conns: 8,
      depth: 2,
      target: front?.endpoint ?? { host: '127.0.0.1', port: 0 },
    };
    switch (peer) {
      case 'kvgate':
      case 'naive':
      case 'uws-floor':
        return { ...common, proto: 'ws' };
      case 'twemproxy':
        return { ...common, proto: 'mc' };
      case 'memjs':
        return { ...common, proto: 'memjs', depth: 8 };
      case 'ceiling':
        return { ...common, proto: 'mc', ceiling: true, conns: 1, depth: 4 };
      default:
        return null;
    }
  }

  forgetPreloads(): void {
    this.preloaded.clear();
  }
}
