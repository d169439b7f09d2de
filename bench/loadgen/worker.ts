/**
 * One load-generator process (forked by index.ts). It opens its share of the connections, then drives them
 * closed-loop (every connection keeps `depth` requests in flight) or at a fixed rate, checks every answer,
 * and reports counters, a latency histogram and its own CPU and RSS when asked.
 */
import { KeySpace, Rng } from '../lib/keys';
import { Histogram } from '../lib/hist';
import { ReqOp, type Conn, type Sink } from './conn';
import { WsConn } from './ws-conn';
import { McConn } from './mc-conn';
import { HttpConn } from './http-conn';
import { MemjsConn } from './memjs-conn';
import type { FromWorker, ToWorker, WorkerConfig, WorkerSample } from './types';

const base = process.hrtime.bigint();
const nowNs = (): number => Number(process.hrtime.bigint() - base);

class Engine implements Sink {
  readonly ks: KeySpace;
  readonly framesPerWrite: number;
  readonly conns: Conn[] = [];
  private readonly rng: Rng;
  private readonly hist = new Histogram();
  private requests = 0;
  private keys = 0;
  private misses = 0;
  private badValues = 0;
  private errors: Record<string, number> = {};
  private windowStart = nowNs();
  private cpuStart = process.cpuUsage();
  private dirtyList: Conn[] = [];
  private flushScheduled = false;
  private mode: 'idle' | 'closed' | 'rate' | 'preload' = 'idle';
  private rate = 0;
  private rateStart = 0;
  private issued = 0;
  private rr = 0;
  private ticker: NodeJS.Timeout | null = null;
  private onIdle: (() => void) | null = null;
  private preloadQueues: number[][] = [];
  private preloadErrors: Record<string, number> = {};
  private lostCount = 0;
  private readonly serverCount: number;

  constructor(readonly cfg: WorkerConfig) {
    this.ks = KeySpace.forSize(cfg.keyCount, cfg.valueSize);
    this.rng = new Rng(cfg.seed * 7919 + cfg.index + 1);
    this.serverCount = cfg.ceiling ? cfg.servers.length : 1;
    this.framesPerWrite = cfg.framesPerWrite ?? 0;
  }

  now(): number {
    return nowNs();
  }

  async connect(): Promise<{ conns: number; failed: number; firstError?: string }> {
    const cfg = this.cfg;
    const specs: (() => Conn)[] = [];
    const addrs = cfg.localAddresses;
    let a = cfg.index;
    const local = (): string | undefined => (addrs.length ? addrs[a++ % addrs.length] : undefined);
    for (let i = 0; i < cfg.conns; i++) {
      if (cfg.proto === 'ws') specs.push(() => new WsConn(this, cfg.target, cfg.wsPath, local(), cfg.waitMs ?? 0));
      else if (cfg.proto === 'http') specs.push(() => new HttpConn(this, cfg.target, local()));
      else if (cfg.proto === 'memjs') specs.push(() => new MemjsConn(this, cfg.servers));
      else if (cfg.ceiling) cfg.servers.forEach((s, si) => specs.push(() => new McConn(this, s, si, local())));
      else specs.push(() => new McConn(this, cfg.target, 0, local()));
    }
    let failed = 0;
    let firstError: string | undefined;
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < specs.length) {
        const c = specs[next++]();
        try {
          await c.connect();
          this.conns.push(c);
        } catch (e) {
          failed++;
          firstError ??= (e as Error).message;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, cfg.connectConcurrency) }, lane));
    return { conns: this.conns.length, failed, firstError };
  }

  // ---- issuing -------------------------------------------------------------------------------------

  private pickKey(server: number): number {
    const S = this.serverCount;
    if (S === 1) return this.rng.below(this.ks.count);
    const perServer = Math.floor((this.ks.count - 1 - server) / S) + 1;
    return server + S * this.rng.below(perServer);
  }

  private pickKeys(server: number, n: number): number[] {
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = this.pickKey(server);
    return out;
  }

  private issue(c: Conn, startNs: number): void {
    const cfg = this.cfg;
    let op: ReqOp;
    switch (cfg.op) {
      case 'get':
        op = ReqOp.Get;
        break;
      case 'set':
        op = ReqOp.Set;
        break;
      case 'mget':
        op = ReqOp.Mget;
        break;
      case 'mset':
        op = ReqOp.Mset;
        break;
      default:
        op = this.rng.below(100) < cfg.getPct ? ReqOp.Get : ReqOp.Set;
    }
    if (cfg.ceiling && cfg.bulk > 1) {
      // the ceiling: the same work, but `bulk` keys of one server per request
      const batched = op === ReqOp.Get || op === ReqOp.Mget ? ReqOp.Mget : ReqOp.Mset;
      if (cfg.op === 'mix') {
        // 90/10 as a batch: a multi-get and a pipelined run of sets in the same proportion
        const gets = Math.round((cfg.bulk * cfg.getPct) / 100);
        c.send(ReqOp.Mget, 0, this.pickKeys(c.server, gets), startNs);
        c.send(ReqOp.Mset, 0, this.pickKeys(c.server, cfg.bulk - gets), startNs);
        return;
      }
      c.send(batched, 0, this.pickKeys(c.server, cfg.bulk), startNs);
      return;
    }
    if (op === ReqOp.Mget || op === ReqOp.Mset) c.send(op, 0, this.pickKeys(c.server, cfg.bulk), startNs);
    else c.send(op, this.pickKey(c.server), null, startNs);
  }

  run(rate: number): void {
    this.stopTicker();
    const depth = this.cfg.depth;
    if (rate > 0) {
      this.mode = 'rate';
      this.rate = rate;
      this.rateStart = nowNs();
      this.issued = 0;
      this.ticker = setInterval(() => this.tick(), 1);
      return;
    }
    this.mode = 'closed';
    const t = nowNs();
    for (const c of this.conns)
      while (c.inflight < depth) {
        const before = c.inflight;
        this.issue(c, t);
        if (c.inflight === before) break; // connection is gone
      }
  }

  private tick(): void {
    const now = nowNs();
    const interval = 1e9 / this.rate;
    const due = Math.floor((now - this.rateStart) / interval);
    const n = this.conns.length;
    const depth = this.cfg.depth;
    while (this.issued < due) {
      let found: Conn | null = null;
      for (let k = 0; k < n; k++) {
        const c = this.conns[this.rr];
        this.rr = (this.rr + 1) % n;
        if (c.inflight < depth) {
          found = c;
          break;
        }
      }
      if (!found) break; // every connection is full: the rest stays due and is sent late (and timed from when it was due)
      const intended = this.rateStart + this.issued * interval;
      this.issue(found, intended);
      this.issued++;
    }
  }

  private stopTicker(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
  }

  pause(): Promise<void> {
    this.stopTicker();
    this.mode = 'idle';
    return this.whenIdle();
  }

  private whenIdle(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.conns.every((c) => c.inflight === 0)) {
          this.onIdle = null;
          resolve();
        }
      };
      this.onIdle = check;
      check();
    });
  }

  preload(): Promise<void> {
    const S = this.serverCount;
    const { index, workers } = this.cfg;
    this.preloadQueues = Array.from({ length: S }, () => []);
    for (let k = index; k < this.ks.count; k += workers) this.preloadQueues[k % S].push(k);
    for (const q of this.preloadQueues) q.reverse();
    this.errors = {};
    this.mode = 'preload';
    const t = nowNs();
    for (const c of this.conns) while (c.inflight < this.cfg.depth && this.preloadNext(c, t));
    return this.whenIdle().then(() => {
      this.preloadErrors = this.errors;
      this.errors = {};
      this.mode = 'idle';
    });
  }

  private preloadNext(c: Conn, t: number): boolean {
    const q = this.preloadQueues[c.server];
    if (!q || q.length === 0) return false;
    // at most about 1 MiB of values per mset, so 100 KB values still fit kvgate's 2 MiB frames
    const batch = Math.min(
      q.length,
      this.cfg.proto === 'memjs' ? 10 : 50,
      Math.max(1, Math.floor(1048576 / this.ks.valueSize)),
    );
    const idxs = q.splice(q.length - batch, batch);
    c.send(ReqOp.Mset, 0, idxs, t);
    return true;
  }

  preloadReport(): { keys: number; errors: Record<string, number> } {
    let keys = 0;
    for (let k = this.cfg.index; k < this.ks.count; k += this.cfg.workers) keys++;
    return { keys, errors: this.preloadErrors };
  }

  // ---- Sink ----------------------------------------------------------------------------------------

  done(conn: Conn, startNs: number, ok: number, now: number): void {
    this.hist.record(now - startNs);
    this.requests++;
    this.keys += ok;
    if (this.mode === 'closed') {
      if (conn.inflight < this.cfg.depth) this.issue(conn, now);
    } else if (this.mode === 'preload') {
      this.preloadNext(conn, now);
    }
    if (this.onIdle && conn.inflight === 0) this.onIdle();
  }

  error(code: string, n = 1): void {
    this.errors[code] = (this.errors[code] ?? 0) + n;
  }

  miss(n: number): void {
    this.misses += n;
  }

  bad(n: number): void {
    this.badValues += n;
  }

  dirty(conn: Conn): void {
    this.dirtyList.push(conn);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushAll);
    }
  }

  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    const list = this.dirtyList;
    this.dirtyList = [];
    for (let i = 0; i < list.length; i++) list[i].flush();
  };

  lost(conn: Conn, why: string): void {
    this.lostCount++;
    this.error(`LOST:${why.slice(0, 60)}`);
    const i = this.conns.indexOf(conn);
    if (i >= 0) this.conns.splice(i, 1);
    if (this.onIdle) this.onIdle();
  }

  // ---- windows -------------------------------------------------------------------------------------

  reset(): void {
    this.hist.reset();
    this.requests = 0;
    this.keys = 0;
    this.misses = 0;
    this.badValues = 0;
    this.errors = {};
    this.windowStart = nowNs();
    this.cpuStart = process.cpuUsage();
  }

  sample(): WorkerSample {
    const cpu = process.cpuUsage(this.cpuStart);
    let inflight = 0;
    for (const c of this.conns) inflight += c.inflight;
    return {
      elapsedNs: nowNs() - this.windowStart,
      requests: this.requests,
      keys: this.keys,
      hist: this.hist.toSparse(),
      histMax: this.hist.max,
      errors: this.errors,
      misses: this.misses,
      badValues: this.badValues,
      cpuUserUs: cpu.user,
      cpuSystemUs: cpu.system,
      rssBytes: process.memoryUsage.rss(),
      inflight,
      conns: this.conns.length,
    };
  }

  close(): void {
    this.stopTicker();
    this.mode = 'idle';
    for (const c of this.conns) c.close();
    this.conns.length = 0;
  }
}

let engine: Engine | null = null;

function reply(m: FromWorker): void {
  process.send?.(m);
}

process.on('message', (raw: unknown) => {
  const msg = raw as ToWorker | { cmd: 'init'; cfg: WorkerConfig };
  void (async () => {
    try {
      switch (msg.cmd) {
        case 'init':
          engine = new Engine(msg.cfg);
          break;
        case 'connect':
          reply({ ev: 'connected', ...(await engine!.connect()) });
          break;
        case 'preload':
          await engine!.preload();
          reply({ ev: 'preloaded', ...engine!.preloadReport() });
          break;
        case 'run':
          engine!.run(msg.rate);
          break;
        case 'reset':
          engine!.reset();
          break;
        case 'collect':
          reply({ ev: 'sample', sample: engine!.sample() });
          break;
        case 'pause':
          await engine!.pause();
          reply({ ev: 'paused' });
          break;
        case 'close':
          engine?.close();
          setImmediate(() => process.exit(0));
          break;
      }
    } catch (e) {
      reply({ ev: 'fatal', message: (e as Error).stack ?? String(e) });
    }
  })();
});

process.on('disconnect', () => process.exit(0));
