/**
 * Real Redis servers on loopback for the tests and the benchmarks, from Debian's `redis-server` and
 * `redis-tools` (scripts/ensure-system.sh installs them): a standalone server (`startRedis`) and a Redis
 * Cluster of masters and replicas built with `redis-cli --cluster create` (`startRedisCluster`). Every server
 * runs on a free port with nothing persisted (`--save '' --appendonly no`) in a temp dir of its own, and is
 * killed on stop() or when this process exits; never on 6379, so a distro service can never be mistaken for
 * ours. Every wait polls a condition against a deadline.
 */
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HOST = '127.0.0.1';
/** Redis Cluster's bus listens on the client port plus this (redis-cli --cluster create assumes it). */
const BUS_OFFSET = 10000;
const SLOTS = 16384;

const live = new Map<ChildProcess, string>();
let hooked = false;

/** Kills every server still running and removes its temp dir: on exit nothing async can run. */
function killAllNow(): void {
  for (const [p, dir] of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* gone */
    }
    rmSync(dir, { recursive: true, force: true });
  }
  live.clear();
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', killAllNow);
}

export function findRedisServer(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('redis-server is not installed: run `bash scripts/ensure-system.sh redis-server redis-tools`');
  }
}

/** Whether `port` can be bound on loopback right now. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, HOST, () => srv.close(() => resolve(true)));
  });
}

/** A port the kernel hands out as free; with `bus`, one whose cluster bus port (port + 10000) is free too. */
async function pickPort(bus: boolean): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, HOST, () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    if (port === 6379 || port === 6379 - BUS_OFFSET) continue;
    if (!bus) return port;
    if (port + BUS_OFFSET <= 65535 && (await bindable(port + BUS_OFFSET))) return port;
  }
  throw new Error('no free port pair (port, port + 10000) found on loopback');
}

/** Runs `redis-cli` against one server and returns its stdout (non-tty: raw replies, one per line). */
export function redisCli(port: number, args: string[], timeoutMs = 10000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'redis-cli',
      ['-h', HOST, '-p', String(port), ...args],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`redis-cli -p ${port} ${args.join(' ')}: ${err.message}\n${stdout}${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** `INFO` text as a map of its `field:value` lines. */
export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

async function pollUntil<T>(
  what: string,
  deadlineMs: number,
  probe: () => Promise<T | undefined>,
  everyMs = 50,
): Promise<T> {
  let last = '';
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = (e as Error).message.split('\n')[0];
    }
    if (Date.now() > deadlineMs)
      throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface RedisOptions {
  /** Extra `redis-server` arguments, e.g. ['--maxmemory', '256mb']. */
  args?: string[];
  /** taskset CPU list for the server (the bench pins it); empty for none. */
  cpus?: string;
  /** How long to wait for the server to accept connections. */
  readyTimeoutMs?: number;
}

/** One redis-server process with its port and dir, restartable with the same arguments. */
class RedisProcess {
  proc: ChildProcess | null = null;
  output = '';
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly port: number,
    readonly dir: string,
    private readonly args: string[],
    private readonly cpus: string,
  ) {}

  get pid(): number {
    return this.proc?.pid ?? 0;
  }

  get running(): boolean {
    return this.proc !== null;
  }

  /** Starts the server and resolves once it answers PING; rejects if it exits first (a bind race). */
  async start(readyTimeoutMs: number): Promise<void> {
    if (this.proc) return;
    hook();
    const bin = findRedisServer();
    const cmd = this.cpus ? 'taskset' : bin;
    const argv = this.cpus ? ['-c', this.cpus, bin, ...this.args] : this.args;
    const proc = spawn(cmd, argv, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.output = '';
    live.set(proc, this.dir);
    const onOut = (b: Buffer): void => {
      this.output = (this.output + b.toString()).slice(-4000);
    };
    proc.stdout!.on('data', onOut);
    proc.stderr!.on('data', onOut);
    let gone = false;
    this.exited = new Promise((resolve) =>
      proc.once('exit', () => {
        gone = true;
        live.delete(proc);
        if (this.proc === proc) this.proc = null;
        resolve();
      }),
    );
    await pollUntil(`redis-server on ${this.port}`, Date.now() + readyTimeoutMs, async () => {
      if (gone) throw new Error(`redis-server on ${this.port} exited while starting: ${this.output.slice(-1500)}`);
      return (await redisCli(this.port, ['PING'], 2000)).trim() === 'PONG' ? true : undefined;
    }).catch(async (e: Error) => {
      await this.kill();
      throw gone ? new Error(`redis-server on ${this.port} exited while starting: ${this.output.slice(-1500)}`) : e;
    });
  }

  /** SIGKILL (nothing is persisted, so nothing is lost that a test relies on) and wait until it is gone. */
  async kill(): Promise<void> {
    this.proc?.kill('SIGKILL');
    await this.exited;
  }
}

function serverArgs(port: number, dir: string, extra: string[]): string[] {
  return [
    '--port',
    String(port),
    '--bind',
    HOST,
    '--protected-mode',
    'no',
    '--daemonize',
    'no',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
    '--logfile',
    '',
    ...extra,
  ];
}

/**
 * Picks ports and starts a process, again on fresh ports when the server could not bind (another process
 * took the port between the check and the bind).
 */
async function launch(
  bus: boolean,
  readyTimeoutMs: number,
  make: (port: number, dir: string) => RedisProcess,
): Promise<RedisProcess> {
  let lastErr: Error | null = null;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await pickPort(bus);
    const dir = mkdtempSync(join(tmpdir(), `kvgate-redis-${port}-`));
    const p = make(port, dir);
    try {
      await p.start(readyTimeoutMs);
      return p;
    } catch (e) {
      lastErr = e as Error;
      rmSync(dir, { recursive: true, force: true });
      if (!/address already in use|could not create server tcp listening socket/i.test(lastErr.message)) throw e;
    }
  }
  throw lastErr ?? new Error('redis-server did not start');
}

export interface RedisServer {
  host: string;
  port: number;
  pid: number;
  dir: string;
  /** `INFO [section]` as redis-cli prints it; `parseInfo` turns it into fields. */
  info(section?: string): Promise<string>;
  /** One redis-cli command against this server; its stdout. */
  cli(...args: string[]): Promise<string>;
  /** Kills the server, waits until it is gone and removes its dir. */
  stop(): Promise<void>;
}

/** A standalone redis-server on a free loopback port, nothing persisted, in a temp dir of its own. */
export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  const ready = opts.readyTimeoutMs ?? 10000;
  const p = await launch(
    false,
    ready,
    (port, dir) => new RedisProcess(port, dir, serverArgs(port, dir, opts.args ?? []), opts.cpus ?? ''),
  );
  return {
    host: HOST,
    port: p.port,
    pid: p.pid,
    dir: p.dir,
    info: (section) => redisCli(p.port, section ? ['INFO', section] : ['INFO']),
    cli: (...args) => redisCli(p.port, args),
    async stop() {
      await p.kill();
      rmSync(p.dir, { recursive: true, force: true });
    },
  };
}

export interface ClusterNode {
  host: string;
  port: number;
  /** As the cluster last reported it (refreshed by waitForHealthy / waitForFailover / topology). */
  role: 'master' | 'replica';
  id: string;
  /** The master this replica follows ('' for a master). */
  masterId: string;
  /** Slots this master serves (0 for a replica). */
  slots: number;
  pid: number;
  running: boolean;
  /** Its temp dir (nodes.conf), removed by stop(). */
  dir: string;
}

export interface ClusterOptions {
  masters?: number;
  replicasPerMaster?: number;
  /**
   * `cluster-node-timeout`: how long a node may be silent before it is marked failed and its replica
   * promoted. Short, so that a killed master fails over within a few seconds; long enough that a busy shared
   * machine does not fail nodes over by itself.
   */
  nodeTimeoutMs?: number;
  args?: string[];
  cpus?: string;
  /** Deadline for the whole cluster to start and become healthy. */
  timeoutMs?: number;
}

export interface RedisCluster {
  nodes: ClusterNode[];
  /** `host:port` of every running node, masters first: what to hand to a cluster client. */
  seeds(): string[];
  masters(): ClusterNode[];
  replicas(): ClusterNode[];
  node(port: number): ClusterNode;
  /** One redis-cli command against one node. */
  cli(port: number, ...args: string[]): Promise<string>;
  info(port: number, section?: string): Promise<string>;
  /** Kills one node (SIGKILL), keeping its nodes.conf so that restartNode brings back the same node. */
  killNode(port: number): Promise<void>;
  /** Starts a killed node again on its port; it rejoins with its old id (a replica, if it was failed over). */
  restartNode(port: number): Promise<void>;
  /**
   * Polls until every running node says cluster_state:ok with all 16384 slots ok, every running node sees
   * the same slot map, and every running replica is linked to its master and caught up with it.
   */
  waitForHealthy(timeoutMs?: number): Promise<void>;
  /**
   * After a master was killed: polls until a replica took over its slots and the cluster is healthy again.
   * Resolves with the promoted node.
   */
  waitForFailover(killedPort: number, timeoutMs?: number): Promise<ClusterNode>;
  /** Moves `slots` slots from one master to another with `redis-cli --cluster reshard`, keys included. */
  reshard(fromPort: number, toPort: number, slots: number): Promise<void>;
  /** Which master (its port) serves `slot` now, from CLUSTER SLOTS of a running node. */
  slotOwner(slot: number): Promise<number>;
  /** Refreshes `nodes` from CLUSTER NODES of a running node. */
  topology(): Promise<ClusterNode[]>;
  stop(): Promise<void>;
}

interface NodesLine {
  id: string;
  port: number;
  flags: string[];
  masterId: string;
  slots: number;
  /** Ranges as [from, to], for comparing slot maps between nodes. */
  ranges: string[];
}

/** Parses CLUSTER NODES: `<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`. */
export function parseClusterNodes(text: string): NodesLine[] {
  const out: NodesLine[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(' ');
    if (f.length < 8) continue;
    const addr = /:(\d+)@/.exec(f[1]);
    let slots = 0;
    const ranges: string[] = [];
    for (const s of f.slice(8)) {
      if (s.startsWith('[')) continue; // a slot being migrated or imported: not served yet
      const [a, b] = s.split('-').map(Number);
      slots += (b ?? a) - a + 1;
      ranges.push(s);
    }
    out.push({
      id: f[0],
      port: addr ? Number(addr[1]) : 0,
      flags: f[2].split(','),
      masterId: f[3] === '-' ? '' : f[3],
      slots,
      ranges,
    });
  }
  return out;
}

/** Starts `masters` x (1 + `replicasPerMaster`) cluster nodes and builds the cluster with redis-cli. */
export async function startRedisCluster(opts: ClusterOptions = {}): Promise<RedisCluster> {
  const masters = opts.masters ?? 3;
  const perMaster = opts.replicasPerMaster ?? 1;
  const timeoutMs = opts.timeoutMs ?? 30000;
  const deadline = Date.now() + timeoutMs;
  const extra = [
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    'nodes.conf',
    '--cluster-node-timeout',
    String(opts.nodeTimeoutMs ?? 1500),
    // A replica is always allowed to take over, however long it was cut off: the tests kill masters
    // on a machine that may stall processes for a while.
    '--cluster-replica-validity-factor',
    '0',
    // a replica's first full sync otherwise waits 5 s for more replicas to share the transfer
    '--repl-diskless-sync-delay',
    '0',
    ...(opts.args ?? []),
  ];
  const procs: RedisProcess[] = [];
  const byPort = new Map<number, RedisProcess>();
  const stopAll = async (): Promise<void> => {
    await Promise.all(procs.map((p) => p.kill()));
    for (const p of procs) rmSync(p.dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters * (1 + perMaster); i++) {
      // one at a time: two nodes picking ports at once could pick the same pair
      const p = await launch(
        true,
        Math.max(1000, deadline - Date.now()),
        (port, dir) => new RedisProcess(port, dir, serverArgs(port, dir, extra), opts.cpus ?? ''),
      );
      procs.push(p);
      byPort.set(p.port, p);
    }
    if (masters < 3) throw new Error('redis-cli --cluster create needs at least 3 masters');
    await new Promise<void>((resolve, reject) => {
      execFile(
        'redis-cli',
        [
          '--cluster',
          'create',
          ...procs.map((p) => `${HOST}:${p.port}`),
          '--cluster-replicas',
          String(perMaster),
          '--cluster-yes',
        ],
        { timeout: Math.max(1000, deadline - Date.now()), encoding: 'utf8' },
        (err, stdout, stderr) =>
          err ? reject(new Error(`redis-cli --cluster create failed: ${err.message}\n${stdout}${stderr}`)) : resolve(),
      );
    });
  } catch (e) {
    await stopAll();
    throw e;
  }

  const nodes: ClusterNode[] = procs.map((p) => ({
    host: HOST,
    port: p.port,
    role: 'master',
    id: '',
    masterId: '',
    slots: 0,
    pid: p.pid,
    running: true,
    dir: p.dir,
  }));
  const running = (): RedisProcess[] => procs.filter((p) => p.running);
  const proc = (port: number): RedisProcess => {
    const p = byPort.get(port);
    if (!p) throw new Error(`no cluster node on port ${port}`);
    return p;
  };
  const node = (port: number): ClusterNode => {
    const n = nodes.find((x) => x.port === port);
    if (!n) throw new Error(`no cluster node on port ${port}`);
    return n;
  };

  /** Updates `nodes` from one node's CLUSTER NODES, and returns what every running node reported. */
  const refresh = async (): Promise<Map<number, NodesLine[]>> => {
    const views = new Map<number, NodesLine[]>();
    await Promise.all(
      running().map(async (p) => {
        views.set(p.port, parseClusterNodes(await redisCli(p.port, ['CLUSTER', 'NODES'], 3000)));
      }),
    );
    const first = views.values().next().value as NodesLine[] | undefined;
    for (const n of nodes) {
      const p = proc(n.port);
      n.running = p.running;
      n.pid = p.pid;
      const line = first?.find((l) => l.port === n.port);
      if (!line) continue;
      n.id = line.id;
      n.role = line.flags.includes('master') ? 'master' : 'replica';
      n.masterId = line.masterId;
      n.slots = line.slots;
    }
    return views;
  };

  /** The reason the cluster is not healthy yet, or '' when it is. */
  const unhealthy = async (expectReplicas: number): Promise<string> => {
    const ps = running();
    const infos = await Promise.all(ps.map((p) => redisCli(p.port, ['CLUSTER', 'INFO'], 3000).then(parseInfo)));
    for (const [i, info] of infos.entries()) {
      if (info.cluster_state !== 'ok') return `node ${ps[i].port}: cluster_state ${info.cluster_state}`;
      if (Number(info.cluster_slots_ok) !== SLOTS) return `node ${ps[i].port}: ${info.cluster_slots_ok} slots ok`;
    }
    const views = await refresh();
    // every running node must agree on who serves which slots, and no running node may be seen failed
    // ...and on who follows whom: right after `--cluster create` some nodes still see replicas as masters
    const key = (v: NodesLine[]): string =>
      v
        .map((l) => `${l.id}:${l.flags.includes('master') ? 'm' : 's'}:${l.masterId}:${l.ranges.join(',')}`)
        .sort()
        .join(' ');
    let ref: string | null = null;
    for (const [port, v] of views) {
      const k = key(v);
      if (ref === null) ref = k;
      else if (k !== ref) return `node ${port} has another slot map`;
      for (const l of v) {
        const alive = byPort.get(l.port)?.running ?? false;
        if (alive && l.flags.some((f) => f === 'fail' || f === 'fail?' || f === 'handshake'))
          return `node ${port} sees ${l.port} as ${l.flags.join(',')}`;
      }
    }
    const replicas = nodes.filter((n) => n.role === 'replica').length;
    if (replicas < expectReplicas) return `${replicas} of ${expectReplicas} replicas joined`;
    // every running replica linked to its master and caught up with it
    for (const n of nodes) {
      if (!n.running || n.role !== 'replica') continue;
      const r = parseInfo(await redisCli(n.port, ['INFO', 'replication'], 3000));
      if (r.master_link_status !== 'up') return `replica ${n.port}: master link ${r.master_link_status}`;
      const m = nodes.find((x) => x.id === n.masterId);
      if (!m || !m.running) continue;
      const mi = parseInfo(await redisCli(m.port, ['INFO', 'replication'], 3000));
      if (Number(r.slave_repl_offset) < Number(mi.master_repl_offset))
        return `replica ${n.port} behind its master ${m.port}`;
    }
    return '';
  };

  const waitForHealthy = async (ms = 20000, expectReplicas = 0): Promise<void> => {
    let why = '';
    await pollUntil(
      'a healthy cluster',
      Date.now() + ms,
      async () => {
        why = await unhealthy(expectReplicas);
        return why === '' ? true : undefined;
      },
      100,
    ).catch((e: Error) => {
      throw new Error(`${e.message}${why ? `: ${why}` : ''}`);
    });
  };

  const cluster: RedisCluster = {
    nodes,
    seeds: () =>
      [...nodes]
        .filter((n) => n.running)
        .sort((a, b) => (a.role === b.role ? 0 : a.role === 'master' ? -1 : 1))
        .map((n) => `${n.host}:${n.port}`),
    masters: () => nodes.filter((n) => n.role === 'master' && n.running),
    replicas: () => nodes.filter((n) => n.role === 'replica' && n.running),
    node,
    cli: (port, ...args) => redisCli(port, args),
    info: (port, section) => redisCli(port, section ? ['INFO', section] : ['INFO']),
    async killNode(port) {
      await proc(port).kill();
      node(port).running = false;
      node(port).pid = 0;
    },
    async restartNode(port) {
      await proc(port).start(10000);
      node(port).running = true;
      node(port).pid = proc(port).pid;
    },
    waitForHealthy,
    async waitForFailover(killedPort, ms = 30000) {
      const killed = node(killedPort);
      if (killed.running) throw new Error(`node ${killedPort} is still running: kill it first`);
      const heirs = nodes.filter((n) => n.masterId === killed.id && n.running).map((n) => n.port);
      if (killed.role !== 'master' || heirs.length === 0)
        throw new Error(`node ${killedPort} was not a master with a running replica`);
      const end = Date.now() + ms;
      const promoted = await pollUntil(
        `a replica of ${killedPort} to be promoted`,
        end,
        async () => {
          await refresh();
          return nodes.find((n) => heirs.includes(n.port) && n.role === 'master' && n.slots > 0);
        },
        100,
      );
      await waitForHealthy(Math.max(1000, end - Date.now()));
      return promoted;
    },
    async reshard(fromPort, toPort, slots) {
      await refresh();
      const from = node(fromPort);
      const to = node(toPort);
      if (from.role !== 'master' || to.role !== 'master')
        throw new Error(`reshard ${fromPort} -> ${toPort}: both must be masters`);
      await new Promise<void>((resolve, reject) => {
        execFile(
          'redis-cli',
          [
            '--cluster',
            'reshard',
            `${HOST}:${fromPort}`,
            '--cluster-from',
            from.id,
            '--cluster-to',
            to.id,
            '--cluster-slots',
            String(slots),
            '--cluster-yes',
          ],
          { timeout: 60000, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
          (err, stdout, stderr) =>
            err
              ? reject(new Error(`redis-cli --cluster reshard failed: ${err.message}\n${stdout.slice(-2000)}${stderr}`))
              : resolve(),
        );
      });
      await waitForHealthy();
    },
    async slotOwner(slot) {
      const p = running()[0];
      if (!p) throw new Error('no cluster node is running');
      // CLUSTER SLOTS through redis-cli prints each range as: from, to, then host, port, id per node
      const lines = (await redisCli(p.port, ['CLUSTER', 'SLOTS'])).split('\n').map((l) => l.trim());
      for (let i = 0; i + 3 < lines.length; i++) {
        const a = Number(lines[i]);
        const b = Number(lines[i + 1]);
        if (/^\d+$/.test(lines[i]) && /^\d+$/.test(lines[i + 1]) && lines[i + 2] === HOST && a <= slot && slot <= b)
          return Number(lines[i + 3]);
      }
      throw new Error(`slot ${slot} is not served`);
    },
    async topology() {
      await refresh();
      return nodes;
    },
    stop: stopAll,
  };
  try {
    // right after `--cluster create`, until every replica has joined its master
    await waitForHealthy(Math.max(1000, deadline - Date.now()), masters * perMaster);
  } catch (e) {
    await stopAll();
    throw e;
  }
  return cluster;
}
