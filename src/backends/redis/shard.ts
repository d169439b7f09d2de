/**
 * A Redis shard: turns one flush (RedisMuts + RedisGets) into one ioredis pipeline per Redis node and
 * settles every item from the replies. A standalone server is one node; a Redis Cluster is one shard whose
 * `send` groups the flush per master node from ioredis's slot table at the moment of sending (see
 * index.ts for why the cluster is one shard and not one per master).
 *
 * In each node's pipeline the writes come first, in arrival order (`SET key value [EX ttl]`, `UNLINK key`),
 * then the gets: the keys of one slot as one `MGET` (a standalone server: every key is in "one slot"), a
 * key alone in its slot as `GET`. So a get sees every write of its flush, as on memcached.
 *
 * Pipelines go straight to the node's connection (`node.pipeline()`), not through `Cluster.pipeline()`:
 * ioredis follows MOVED/ASK for single commands, but a cluster pipeline is redirected only when every
 * failed command failed with the same error and every other command is read-only, and then the whole
 * pipeline is resent to one node (Pipeline.js, fillResult). Here each command's reply is read on its own:
 *  - MOVED slot host:port / ASK slot host:port: the command was not executed, so it is sent again (a
 *    write too) to the node named, after `ASKING` for ASK, in a pipeline of the redirected items for that
 *    node, at most MAX_HOPS times; a MOVED also rereads the slot table. An MGET that is redirected or
 *    answered `TRYAGAIN` (a slot being migrated holds only some of its keys) is split into GETs.
 *  - a get whose connection was lost after it was sent, or that met CLUSTERDOWN, is sent once more, through
 *    the slot table of the time, once its node is reachable again (bounded by the command timeout); a write
 *    never is (it may have been applied): SHARD_DOWN.
 *  - LOADING, MASTERDOWN, READONLY, CLUSTERDOWN (writes), an unreachable node, a lost connection: SHARD_DOWN;
 *    no answer within the command timeout: TIMEOUT; any other error reply (WRONGTYPE...): SHARD_ERROR. Only
 *    the items of the node concerned fail.
 *
 * Ordering limit: while a slot moves, a write answered MOVED is resent after its reply is read; a write to
 * the same key in a later flush that was routed with an already refreshed slot table can reach the new
 * owner first. Every cluster client has this window; no wrong value is read from it, but the later of two
 * writes racing a slot move may be the one overwritten.
 *
 * What allocates per key on this backend (memcached: nothing, the codec writes into reused buffers):
 *  - here: a Buffer view (subarray) of the key for each command, and of the value for each set: the batch
 *    buffers themselves are reused;
 *  - ioredis, per command: a Command (its args array, a Promise with its resolve/reject closures), the
 *    serialised command (a string for its header plus, with Buffer arguments, a MixedBuffers and one Buffer
 *    holding the whole command, value included), the pipeline's per-command `.then` closures and its
 *    `[error, result]` pair; per pipeline one Buffer.concat of every command (the value is copied twice on
 *    its way out: into the command's Buffer, then into the pipeline's);
 *  - ioredis's parser, per reply: a Buffer view of the read chunk for each bulk string (a value that spans
 *    reads is concatenated: one copy), an array for an MGET's reply, the string 'OK' for each SET.
 *  - per flush and node (not per key): the routing Map, a Round and its arrays, the ioredis Pipeline
 *    (its queue, result arrays and Promise), the exec callback; per MGET an array of key views.
 * A value is checked against maxValueBytes only once ioredis has read all of it. The lead's bench measures
 * what this costs against the memcached path.
 */
import type { ChainableCommander, Redis } from 'ioredis';
import type { ErrorCode } from '../../core/errors';
import type { GetOps, MutOps, Ops, Shard, ShardStats } from '../../core/backend';
import type { Request } from '../../core/request';
import { performance } from 'node:perf_hooks';
import { Histogram, LATENCY_BUCKETS } from '../../core/histogram';
import { MutKind, RedisGets, RedisMuts } from './ops';
import { keySlot } from './slot';

/** Redirections (MOVED, ASK, TRYAGAIN) one item may follow before it fails. */
export const MAX_HOPS = 5;
/** How often a get waiting to be retried looks whether its node is back. */
const RETRY_LOOK_MS = 25;

/** One Redis server the shard writes pipelines to. */
export class RedisNode {
  pipelines = 0;
  commands = 0;
  constructor(
    readonly label: string,
    readonly redis: Redis,
  ) {}

  /**
   * A pipeline may be written. A cluster node connection that is still opening takes it (ioredis queues
   * it, bounded by the command timeout); one that was lost does not: its keys fail at once.
   */
  get usable(): boolean {
    const s = this.redis.status;
    return s === 'ready' || s === 'wait' || s === 'connecting' || s === 'connect';
  }
}

/** Where a key's commands go: the one server, or the node the cluster's slot table names now. */
export interface Placement {
  readonly cluster: boolean;
  readonly up: boolean;
  /** Connections lost so far. */
  readonly resets: number;
  /** Reconnect attempts so far. */
  readonly reconnects: number;
  nodeOf(slot: number): RedisNode | null;
  /** The node a MOVED/ASK names (host:port); null when it is not known (yet). */
  nodeNamed(hostPort: string): RedisNode | null;
  /** The slot table is stale (MOVED, CLUSTERDOWN, READONLY, a node gone): have it reread. */
  refresh(): void;
  nodes(): readonly RedisNode[];
  connect(): Promise<void>;
  close(): void;
}

export interface RedisShardOptions {
  maxValueBytes: number;
  commandTimeoutMs: number;
  /** Keys per MGET at most (a longer run of one slot is split). */
  maxKeysPerMget: number;
}

const enum Cmd {
  Set = 0,
  Del = 1,
  Get = 2,
  MGet = 3,
  Asking = 4,
}

/** What went wrong with one command, from its error. */
const enum Fault {
  Moved,
  Ask,
  TryAgain,
  ClusterDown,
  /** LOADING, MASTERDOWN, READONLY: the node cannot serve it now. */
  Unavailable,
  /** The connection closed after the command was written. */
  Lost,
  /** Never written: the node's connection is not open. */
  NotSent,
  Timeout,
  /** Any other error reply. */
  Reply,
}

function faultOf(e: Error): Fault {
  const m = e.message;
  if (e.name === 'ReplyError') {
    if (m.startsWith('MOVED ')) return Fault.Moved;
    if (m.startsWith('ASK ')) return Fault.Ask;
    if (m.startsWith('TRYAGAIN')) return Fault.TryAgain;
    if (m.startsWith('CLUSTERDOWN')) return Fault.ClusterDown;
    if (m.startsWith('LOADING') || m.startsWith('MASTERDOWN') || m.startsWith('READONLY')) return Fault.Unavailable;
    return Fault.Reply;
  }
  if (m === 'Command timed out') return Fault.Timeout;
  if (m.startsWith("Stream isn't writeable") || m.startsWith("Cluster isn't ready")) return Fault.NotSent;
  // "Connection is closed.", MaxRetriesPerRequestError (maxRetriesPerRequest 0: failed at the first close).
  return Fault.Lost;
}

/** The `host:port` of a MOVED/ASK reply (`MOVED 3999 127.0.0.1:6381`). */
function redirectTarget(m: string): string {
  return m.slice(m.lastIndexOf(' ') + 1);
}

/** One pipeline to one node: what each of its commands is for, in order. */
class Round {
  readonly kinds: number[] = [];
  /** The op or key index (Set, Del, Get), or where the MGET's keys start in `mkeys`. */
  readonly refs: number[] = [];
  readonly counts: number[] = [];
  readonly mkeys: number[] = [];
  /** Gets to add after the writes (routing collects them first). */
  readonly gets: number[] = [];
  readonly pipe: ChainableCommander;
  readonly mutEpoch: number;
  readonly getEpoch: number;
  /** performance.now() at exec, for the shard's round-trip histogram. */
  sentHr = 0;

  constructor(
    readonly node: RedisNode,
    readonly mut: RedisMuts | null,
    readonly get: RedisGets | null,
  ) {
    this.pipe = node.redis.pipeline();
    this.mutEpoch = mut === null ? -1 : mut.epoch;
    this.getEpoch = get === null ? -1 : get.epoch;
  }

  private push(kind: Cmd, ref: number, count: number): void {
    this.kinds.push(kind);
    this.refs.push(ref);
    this.counts.push(count);
  }

  asking(): void {
    this.pipe.asking();
    this.push(Cmd.Asking, -1, 0);
  }

  write(m: RedisMuts, k: number): void {
    if (m.kinds[k] === MutKind.Del) {
      this.pipe.unlink(m.keyView(k));
      this.push(Cmd.Del, k, 1);
    } else {
      const ttl = m.ttl[k];
      // ttl 0: no expiry (and a SET without EX clears an earlier one, as a memcached set with exptime 0).
      if (ttl > 0) this.pipe.set(m.keyView(k), m.valueView(k), 'EX', ttl);
      else this.pipe.set(m.keyView(k), m.valueView(k));
      this.push(Cmd.Set, k, 1);
    }
  }

  read(g: RedisGets, k: number): void {
    this.pipe.getBuffer(g.keyView(k));
    this.push(Cmd.Get, k, 1);
  }

  mget(g: RedisGets, keys: number[], from: number, to: number): void {
    const views: Buffer[] = [];
    const start = this.mkeys.length;
    for (let j = from; j < to; j++) {
      views.push(g.keyView(keys[j]));
      this.mkeys.push(keys[j]);
    }
    this.pipe.mgetBuffer(views);
    this.push(Cmd.MGet, start, to - from);
  }
}

/** Items a reply sent elsewhere, sent on in a pipeline per node. */
class Redirects {
  readonly kinds: number[] = [];
  readonly refs: number[] = [];
  readonly nodes: RedisNode[] = [];
  readonly ask: boolean[] = [];
  add(kind: Cmd.Set | Cmd.Get, ref: number, node: RedisNode, ask: boolean): void {
    this.kinds.push(kind);
    this.refs.push(ref);
    this.nodes.push(node);
    this.ask.push(ask);
  }
}

export class RedisShard implements Shard {
  onBatchDone: (b: Ops) => void = () => {};
  readonly rtt = new Histogram(LATENCY_BUCKETS);
  private timeouts = 0;
  private retries = 0;
  private writes = 0;
  private batches = 0;
  private keys = 0;
  private inflight = 0;
  private stopped = false;
  /** Gets waiting to be sent once more (a lost connection, CLUSTERDOWN), with when they give up. */
  private retryGets: RedisGets[] = [];
  private retryKeys: number[] = [];
  private retryUntil: number[] = [];
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly runRetries = (): void => this.sendRetries();

  constructor(
    readonly label: string,
    private readonly placement: Placement,
    private readonly opts: RedisShardOptions,
  ) {}

  get up(): boolean {
    return !this.stopped && this.placement.up;
  }

  newGets(maxOps: number): RedisGets {
    return new RedisGets(maxOps);
  }

  newMuts(maxOps: number): RedisMuts {
    return new RedisMuts(maxOps);
  }

  admitSet(req: Request, i: number, _klen: number, vlen: number, flags: number): boolean {
    if (flags !== 0) {
      req.reject(
        i,
        'BAD_FLAGS',
        `pool ${this.label} is Redis, which stores no flags: only flags 0 are accepted (the value is stored as is)`,
      );
      return false;
    }
    if (vlen > this.opts.maxValueBytes) {
      req.reject(i, 'TOO_LARGE', `value of ${vlen} bytes is over the gateway's limit of ${this.opts.maxValueBytes}`);
      return false;
    }
    return true;
  }

  /** The batches are this shard's own (newGets/newMuts): the coalescer hands back what it was given. */
  send(mutOps: MutOps | null, getOps: GetOps | null): void {
    const mut = mutOps as RedisMuts | null;
    const get = getOps as RedisGets | null;
    const cluster = this.placement.cluster;
    const rounds = new Map<RedisNode, Round>();
    if (mut !== null) {
      mut.live = true;
      this.inflight++;
      this.batches++;
      for (let k = 0; k < mut.n; k++) {
        if (mut.isDone(k)) continue;
        // An abandoned request's writes are not sent (as on memcached: MutationBatch.prune).
        if (mut.req[k]!.abandoned) {
          mut.dropOp(k);
          continue;
        }
        const slot = cluster ? keySlot(mut.data, mut.keyOff[k], mut.keyLen[k]) : 0;
        mut.slot[k] = slot;
        const node = this.routable(slot);
        if (node === null) mut.failOp(k, 'SHARD_DOWN', this.downMessage(slot));
        else {
          this.roundFor(rounds, node, mut, get).write(mut, k);
          this.keys++;
        }
      }
    }
    if (get !== null) {
      get.live = true;
      this.inflight++;
      this.batches++;
      for (let k = 0; k < get.n; k++) {
        const slot = cluster ? keySlot(get.keys, get.keyOff[k], get.keyLen[k]) : 0;
        get.slot[k] = slot;
        const node = this.routable(slot);
        if (node === null) get.failKey(k, 'SHARD_DOWN', this.downMessage(slot));
        else {
          this.roundFor(rounds, node, mut, get).gets.push(k);
          this.keys++;
        }
      }
    }
    for (const r of rounds.values()) {
      if (get !== null && r.gets.length > 0) this.addGets(r, get);
      this.exec(r);
    }
    this.finishIfDone(mut);
    this.finishIfDone(get);
  }

  /** Per-node counters (a cluster has several nodes behind its one shard). */
  nodeStats(): { node: string; up: boolean; pipelines: number; commands: number }[] {
    return this.placement.nodes().map((n) => ({
      node: n.label,
      up: n.redis.status === 'ready',
      pipelines: n.pipelines,
      commands: n.commands,
    }));
  }

  stats(): ShardStats {
    return {
      shard: this.label,
      up: this.up,
      writes: this.writes,
      batches: this.batches,
      keys: this.keys,
      resets: this.placement.resets,
      inflightBatches: this.inflight,
      reconnects: this.placement.reconnects,
      retries: this.retries,
      timeouts: this.timeouts,
      ejected: false,
    };
  }

  connect(): Promise<void> {
    return this.placement.connect();
  }

  close(): void {
    this.stopped = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const gets = this.retryGets;
    const keys = this.retryKeys;
    this.retryGets = [];
    this.retryKeys = [];
    this.retryUntil = [];
    for (let j = 0; j < gets.length; j++) {
      gets[j].failKey(keys[j], 'SHUTTING_DOWN', 'gateway stopping');
      this.finishIfDone(gets[j]);
    }
    // What is in flight fails through its replies ("Connection is closed." while stopped: SHUTTING_DOWN).
    this.placement.close();
  }

  private routable(slot: number): RedisNode | null {
    const node = this.placement.nodeOf(slot);
    return node !== null && node.usable ? node : null;
  }

  private downMessage(slot: number): string {
    if (!this.placement.cluster) return `Redis ${this.label} is unreachable`;
    const node = this.placement.nodeOf(slot);
    return node === null
      ? `no reachable Redis Cluster node serves slot ${slot}`
      : `Redis ${node.label} (slot ${slot}) is unreachable`;
  }

  private roundFor(
    rounds: Map<RedisNode, Round>,
    node: RedisNode,
    mut: RedisMuts | null,
    get: RedisGets | null,
  ): Round {
    let r = rounds.get(node);
    if (r === undefined) rounds.set(node, (r = new Round(node, mut, get)));
    return r;
  }

  /** The round's gets after its writes: one MGET per run of keys sharing a slot, GET for a key alone. */
  private addGets(r: Round, get: RedisGets): void {
    const keys = r.gets;
    if (this.placement.cluster && keys.length > 1) {
      const slot = get.slot;
      keys.sort((a, b) => slot[a] - slot[b] || a - b);
    }
    const max = this.opts.maxKeysPerMget;
    for (let j = 0; j < keys.length;) {
      let end = j + 1;
      const s = get.slot[keys[j]];
      while (end < keys.length && end - j < max && get.slot[keys[end]] === s) end++;
      if (end - j === 1) r.read(get, keys[j]);
      else r.mget(get, keys, j, end);
      j = end;
    }
  }

  private exec(r: Round): void {
    this.writes++;
    r.node.pipelines++;
    r.node.commands += r.kinds.length;
    r.sentHr = performance.now();
    r.pipe.exec((err, results) => this.answered(r, err ?? null, results ?? null));
  }

  private answered(r: Round, err: Error | null, results: [Error | null, unknown][] | null): void {
    this.rtt.observe((performance.now() - r.sentHr) / 1000);
    // A reply for a batch already handed back (every item settled some other way) is not its reply.
    const mut = r.mut !== null && r.mut.epoch === r.mutEpoch ? r.mut : null;
    const get = r.get !== null && r.get.epoch === r.getEpoch ? r.get : null;
    let redirects: Redirects | null = null;
    for (let c = 0; c < r.kinds.length; c++) {
      const res = results !== null ? results[c] : undefined;
      const e = err ?? (res === undefined ? new Error('no reply') : res[0]);
      const v = res === undefined ? undefined : res[1];
      const ref = r.refs[c];
      switch (r.kinds[c] as Cmd) {
        case Cmd.Asking:
          break;
        case Cmd.Set:
        case Cmd.Del:
          if (mut === null || mut.isDone(ref)) break;
          if (e !== null) redirects = this.writeFailed(r, mut, ref, e, redirects);
          else if (r.kinds[c] === Cmd.Del && v === 0) mut.miss(ref);
          else mut.ok(ref);
          break;
        case Cmd.Get:
          if (get === null || get.isDone(ref)) break;
          if (e !== null) redirects = this.readFailed(r, get, ref, e, redirects);
          else this.hit(r, get, ref, v);
          break;
        case Cmd.MGet: {
          if (get === null) break;
          const n = r.counts[c];
          const arr = e === null && Array.isArray(v) && v.length === n ? (v as unknown[]) : null;
          for (let j = 0; j < n; j++) {
            const k = r.mkeys[ref + j];
            if (get.isDone(k)) continue;
            if (e !== null) redirects = this.readFailed(r, get, k, e, redirects);
            else if (arr === null) get.failKey(k, 'SHARD_ERROR', `Redis ${r.node.label} answered MGET out of shape`);
            else this.hit(r, get, k, arr[j]);
          }
          break;
        }
      }
    }
    if (redirects !== null) this.sendRedirects(redirects, mut, get);
    this.finishIfDone(mut);
    this.finishIfDone(get);
  }

  private hit(r: Round, get: RedisGets, k: number, v: unknown): void {
    if (v === null) get.miss(k);
    else if (!Buffer.isBuffer(v)) get.failKey(k, 'SHARD_ERROR', `Redis ${r.node.label} answered GET with no string`);
    else if (v.length > this.opts.maxValueBytes) {
      get.failKey(
        k,
        'TOO_LARGE',
        `Redis holds ${v.length} bytes for this key, over the gateway's limit of ${this.opts.maxValueBytes}`,
      );
    } else get.deliver(k, v);
  }

  private writeFailed(r: Round, mut: RedisMuts, k: number, e: Error, acc: Redirects | null): Redirects | null {
    const f = faultOf(e);
    if (f === Fault.Moved || f === Fault.Ask) {
      const to = this.redirect(e, f, mut.hops[k]);
      if (typeof to === 'string') mut.failOp(k, this.stopped ? 'SHUTTING_DOWN' : 'SHARD_DOWN', to);
      else {
        mut.hops[k]++;
        (acc ??= new Redirects()).add(Cmd.Set, k, to, f === Fault.Ask);
      }
      return acc;
    }
    if (f === Fault.ClusterDown || f === Fault.Unavailable) this.placement.refresh();
    const [code, message] = this.failure(r, f, e);
    mut.failOp(k, code, message);
    return acc;
  }

  private readFailed(r: Round, get: RedisGets, k: number, e: Error, acc: Redirects | null): Redirects | null {
    const f = faultOf(e);
    if (f === Fault.Moved || f === Fault.Ask || f === Fault.TryAgain) {
      const to =
        f === Fault.TryAgain
          ? get.hops[k] < MAX_HOPS
            ? r.node
            : 'too many TRYAGAIN'
          : this.redirect(e, f, get.hops[k]);
      if (typeof to === 'string') get.failKey(k, this.stopped ? 'SHUTTING_DOWN' : 'SHARD_DOWN', to);
      else {
        get.hops[k]++;
        (acc ??= new Redirects()).add(Cmd.Get, k, to, f === Fault.Ask);
      }
      return acc;
    }
    if (f === Fault.ClusterDown) this.placement.refresh();
    if ((f === Fault.Lost || f === Fault.ClusterDown) && get.retried[k] === 0 && !this.stopped) {
      get.retried[k] = 1;
      this.retryLater(get, k);
      return acc;
    }
    const [code, message] = this.failure(r, f, e);
    get.failKey(k, code, message);
    return acc;
  }

  /** The node a MOVED/ASK sends an item to, or why it cannot follow. */
  private redirect(e: Error, f: Fault, hops: number): RedisNode | string {
    if (f === Fault.Moved) this.placement.refresh();
    if (hops >= MAX_HOPS) return `Redis Cluster redirected this key ${hops} times (last: ${e.message})`;
    const node = this.placement.nodeNamed(redirectTarget(e.message));
    if (node === null || !node.usable) return `Redis Cluster sent this key to a node not reachable (${e.message})`;
    return node;
  }

  private failure(r: Round, f: Fault, e: Error): [ErrorCode, string] {
    if (this.stopped) return ['SHUTTING_DOWN', 'gateway stopping'];
    const where = `Redis ${r.node.label}`;
    switch (f) {
      case Fault.Timeout:
        this.timeouts++;
        return ['TIMEOUT', `${where} did not answer within ${this.opts.commandTimeoutMs} ms`];
      case Fault.Reply:
        return ['SHARD_ERROR', `${where} answered: ${e.message.slice(0, 200)}`];
      case Fault.NotSent:
        return ['SHARD_DOWN', `${where} is unreachable`];
      case Fault.Lost:
        return ['SHARD_DOWN', `lost connection to ${where}`];
      default:
        return ['SHARD_DOWN', `${where} cannot serve this key now: ${e.message.slice(0, 200)}`];
    }
  }

  /** Redirected items, one pipeline per node: writes first, in their order, then gets (as GETs). */
  private sendRedirects(d: Redirects, mut: RedisMuts | null, get: RedisGets | null): void {
    const rounds = new Map<RedisNode, Round>();
    for (let pass = 0; pass < 2; pass++) {
      const kind = pass === 0 ? Cmd.Set : Cmd.Get;
      for (let j = 0; j < d.kinds.length; j++) {
        if (d.kinds[j] !== kind) continue;
        const r = this.roundFor(rounds, d.nodes[j], mut, get);
        if (d.ask[j]) r.asking();
        if (kind === Cmd.Set) r.write(mut!, d.refs[j]);
        else r.read(get!, d.refs[j]);
      }
    }
    for (const r of rounds.values()) this.exec(r);
  }

  private retryLater(get: RedisGets, k: number): void {
    this.retries++;
    this.retryGets.push(get);
    this.retryKeys.push(k);
    this.retryUntil.push(Date.now() + this.opts.commandTimeoutMs);
    if (this.retryTimer === null) this.retryTimer = setTimeout(this.runRetries, RETRY_LOOK_MS);
  }

  /** Sends the waiting gets whose node is reachable again; fails those that waited a command timeout. */
  private sendRetries(): void {
    this.retryTimer = null;
    const gets = this.retryGets;
    const keys = this.retryKeys;
    const until = this.retryUntil;
    this.retryGets = [];
    this.retryKeys = [];
    this.retryUntil = [];
    const now = Date.now();
    const rounds = new Map<RedisNode, Round>();
    const touched = new Set<RedisGets>();
    for (let j = 0; j < gets.length; j++) {
      const g = gets[j];
      const k = keys[j];
      if (g.isDone(k)) continue;
      touched.add(g);
      const node = this.placement.nodeOf(g.slot[k]);
      if (node !== null && node.redis.status === 'ready') {
        // One round per node and batch: a round settles the items of one batch.
        let r = rounds.get(node);
        if (r !== undefined && r.get !== g) {
          this.exec(r);
          r = undefined;
        }
        if (r === undefined) rounds.set(node, (r = new Round(node, null, g)));
        r.read(g, k);
      } else if (now >= until[j]) {
        g.failKey(k, 'SHARD_DOWN', `${this.downMessage(g.slot[k])} (a retry found it still down)`);
      } else {
        this.retryGets.push(g);
        this.retryKeys.push(k);
        this.retryUntil.push(until[j]);
      }
    }
    for (const r of rounds.values()) this.exec(r);
    for (const g of touched) this.finishIfDone(g);
    if (this.retryGets.length > 0) this.retryTimer = setTimeout(this.runRetries, RETRY_LOOK_MS);
  }

  private finishIfDone(b: RedisMuts | RedisGets | null): void {
    if (b === null || !b.live || b.pending !== 0) return;
    b.live = false;
    this.inflight--;
    this.onBatchDone(b);
  }
}
