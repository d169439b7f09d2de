/**
 * One TCP connection to one memcached server, the memcached backend's Shard: builds its batches, writes
 * them, feeds replies to its ReplyParser, whose sink (Inflight) matches them to the batches in flight, and
 * owns what a broken connection means. In-flight batches form a FIFO: memcached answers in order, so the
 * head batch is the one every reply line belongs to. Anything unexpected (a reply with nothing in flight, a key or opaque
 * out of step, CLIENT_ERROR) means the stream can no longer be trusted: the connection is closed, every
 * in-flight item fails, and a new connection starts clean. A timeout does the same, since on a
 * pipelined text connection a late reply would otherwise be taken for the next request's.
 *
 * A timeout means "something is in flight and no byte of reply was read for timeoutMs", never "the head
 * batch is old": a long reply still arriving is progress, and so is a reply that came while this process
 * was busy (checkTimeout lets the socket be read before it decides). No clock is read per read: the timer
 * compares the `reads` counter with what it saw last time.
 *
 * The first command on every connection is `stats settings`, before any batch: its `item_size_max` tells
 * which sets this shard cannot store (admitSet refuses them as TOO_LARGE before they join a batch). Its reply
 * is read here, ahead of the reply parser; the batches written behind it are answered after it, in order.
 */
import { NetConnectOpts, Socket, createConnection } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Ops, Shard, ShardStats } from '../../core/backend';
import type { ErrorCode } from '../../core/errors';
import { quietEvents, type Events } from '../../core/events';
import type { Request } from '../../core/request';
import { Histogram, LATENCY_BUCKETS } from '../../core/histogram';
import { GetBatch } from './get-batch';
import { Inflight, type Batch } from './inflight';
import { MutationBatch, OpaqueCounter } from './mutation-batch';
import { ReplyParser } from './reply-parser';

export type { Batch } from './inflight';

/**
 * Bytes memcached needs in an item besides the value and the key, plus a margin. Measured against
 * memcached 1.6.18 (`-I 1m`, then `-I 2m`, flags non-zero, CAS on): the largest value `ms` stores is
 * item_size_max - klen - 63 (1048512 bytes with a 1-byte key, 1048263 with a 250-byte key; one byte
 * more answers `SERVER_ERROR object too large for cache`). 33 bytes of margin cover header fields other
 * builds add; a set over item_size_max - klen - 96 is refused as TOO_LARGE before it is sent.
 */
export const ITEM_OVERHEAD = 96;

const STATS_SETTINGS = Buffer.from('stats settings\r\n');
/** A `stats settings` reply is about 3 KiB; one much longer is not one. */
const MAX_SETTINGS_BYTES = 64 * 1024;

export interface ShardOptions {
  timeoutMs: number;
  connectTimeoutMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** Where shard.up / shard.down / shard.reset / shard.timeout / shard.retry go (none but their channel if absent). */
  events?: Events;
}

export class ShardConnection implements Shard {
  up = false;
  /** Out of its pool's ring by the failure policy (set by the backend; reported in stats()). */
  ejected = false;
  private socket: Socket | null = null;
  private connecting = false;
  /** A connection was open once (a later shard.up is a recovery). */
  private everUp = false;
  private stopped = false;
  private backoff: number;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private timeoutTimer: NodeJS.Timeout | null = null;
  /** The last look at an overdue head, deferred until after the next poll phase (see checkTimeout). */
  private timeoutConfirm: NodeJS.Immediate | null = null;
  /** `reads` at the timer's last look, and when (ms) it last saw them grow (0: not since it was armed). */
  private readsSeen = 0;
  private progressAt = 0;
  private readonly runCheck = (): void => this.checkTimeout();
  private readonly runConfirm = (): void => this.confirmTimeout();
  private readonly inflight: Inflight;
  /** Gets that were unanswered when the connection broke: sent again once on the next connection. */
  private readonly retryQueue: GetBatch[] = [];

  private readonly readBuf = Buffer.allocUnsafeSlow(64 * 1024);
  private readonly parser: ReplyParser;
  /** Opaques of this shard's writes, unique for 2^32 writes (across reconnects too). */
  readonly opaques = new OpaqueCounter();
  /**
   * memcached's `item_size_max` as the shard last reported it (0: not known yet, or not reported). Kept
   * across reconnects: a restarted server most likely keeps its settings, and the next read corrects it.
   */
  itemSizeMax = 0;
  /** The `stats settings` reply is still arriving (text so far, latin1 so offsets are byte offsets). */
  private settingsText: string | null = null;
  private settingsDone: (() => void) | null = null;
  private settingsTimer: NodeJS.Timeout | null = null;
  private readonly runSettingsWaitOver = (): void => this.settingsWaitOver();

  // Counters for /debug/stats and the coalescing tests.
  writes = 0;
  reads = 0;
  bytesRead = 0;
  retries = 0;
  batchesSent = 0;
  keysSent = 0;
  resets = 0;
  reconnects = 0;
  timeouts = 0;
  readonly rtt = new Histogram(LATENCY_BUCKETS);

  /** Called once a batch is fully answered (or failed), to recycle it. */
  onBatchDone: (b: Ops) => void = () => {};
  onUp: () => void = () => {};
  /** Each failure (a failed connect, a lost connection, a timeout, a protocol reset), with its reason. */
  onFailure: (reason: string) => void = () => {};
  /** Each batch answered (the failure policy's success). */
  onAnswered: () => void = () => {};
  private readonly events: Events;

  /**
   * `fds`: descriptors held in reserve for shard connections; one is given up just before connecting
   * (so a process whose descriptors clients used up can still reach its shards) and taken back after.
   */
  constructor(
    readonly host: string,
    readonly port: number,
    private readonly opts: ShardOptions,
    private readonly fds: { lend(): void; restock(): void } | null = null,
  ) {
    this.backoff = opts.reconnectMinMs;
    this.events = opts.events ?? quietEvents();
    this.inflight = new Inflight({
      answered: (b) => this.answered(b),
      outOfStep: (why) => this.protocolError(why),
    });
    this.parser = new ReplyParser(this.inflight);
  }

  newGets(maxOps: number): GetBatch {
    return new GetBatch(maxOps);
  }

  newMuts(maxOps: number): MutationBatch {
    return new MutationBatch(maxOps, this.opaques);
  }

  /** Refuses a set this shard could not store (its item_size_max, read when it connected). */
  admitSet(req: Request, i: number, klen: number, vlen: number, _flags: number): boolean {
    const max = this.itemSizeMax;
    if (max === 0 || vlen + klen + ITEM_OVERHEAD <= max) return true;
    req.reject(
      i,
      'TOO_LARGE',
      `value of ${vlen} bytes is over what shard ${this.label} stores with this key (item_size_max ${max})`,
    );
    return false;
  }

  stats(): ShardStats {
    return {
      shard: this.label,
      up: this.up,
      writes: this.writes,
      batches: this.batchesSent,
      keys: this.keysSent,
      resets: this.resets,
      inflightBatches: this.inflightBatches,
      reconnects: this.reconnects,
      retries: this.retries,
      timeouts: this.timeouts,
      ejected: this.ejected,
    };
  }

  get label(): string {
    return `${this.host}:${this.port}`;
  }

  /** The largest value this gateway takes from a shard: a longer VALUE is out of step. */
  set maxValueBytes(n: number) {
    this.parser.maxValueBytes = n;
  }

  /** Resolves after the first attempt, connected or not: a shard down at start only degrades the gateway. */
  connect(): Promise<void> {
    return new Promise((resolve) => {
      this.open(resolve);
    });
  }

  private open(done?: () => void): void {
    if (this.stopped || this.connecting || this.socket) {
      done?.();
      return;
    }
    this.connecting = true;
    // Replies are read into one buffer owned by this connection (onread), not a fresh Buffer per read:
    // everything parsed out of it is copied (into output frames, pool buffers, `partial`) before the
    // callback returns, so the bytes may be overwritten by the next read.
    this.fds?.lend();
    const s: Socket = createConnection({
      host: this.host,
      port: this.port,
      onread: {
        buffer: this.readBuf,
        callback: (n: number): boolean => {
          if (this.socket !== s) return true;
          this.reads++;
          this.bytesRead += n;
          try {
            if (this.settingsText !== null) this.readSettings(this.readBuf, n);
            else this.parser.feed(this.readBuf, n);
          } catch (e) {
            // A bug here must cost this connection's in-flight items, not the process.
            this.events.emit(
              'shard',
              'shard.error',
              'error',
              `reply handling failed on ${this.label}`,
              { shard: this.label, err: (e as Error).message, stack: (e as Error).stack },
              this.label,
            );
            this.protocolError(`internal error: ${(e as Error).message}`);
          }
          return true;
        },
      },
    } as NetConnectOpts);
    s.setNoDelay(true);
    const timer = setTimeout(() => s.destroy(new Error('connect timeout')), this.opts.connectTimeoutMs);
    let connected = false;
    s.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      if (this.stopped) {
        this.connecting = false;
        s.destroy();
        done?.();
        return;
      } // stop() came first
      this.connecting = false;
      this.socket = s;
      this.up = true;
      this.fds?.restock();
      this.backoff = this.opts.reconnectMinMs;
      // First on the wire, so its reply comes before any batch's. connect() resolves once it is read
      // (or the connection is gone), so a gateway starting up knows the limit before its first set.
      this.settingsText = '';
      this.settingsDone = done ?? null;
      this.settingsTimer = setTimeout(this.runSettingsWaitOver, this.opts.connectTimeoutMs);
      s.write(STATS_SETTINGS);
      // The first connection is the normal start (debug); one after a failure is news (info).
      const level = this.everUp ? 'info' : 'debug';
      this.everUp = true;
      this.events.emit('shard', 'shard.up', level, `${this.label} is up`, { shard: this.label }, this.label);
      this.resendRetries();
      this.onUp();
    });
    let error: NodeJS.ErrnoException | null = null;
    s.on('error', (e: NodeJS.ErrnoException) => {
      error = e; // 'close' follows and handles it
    });
    s.once('close', () => {
      clearTimeout(timer);
      this.fds?.restock(); // this socket's descriptor is free again
      if (!connected) {
        // A connect attempt failed: the shard is down; whatever waited for it fails now.
        this.connecting = false;
        this.failRetries(`${this.label} is unreachable`);
        if (!this.stopped) this.failed(connectReason(error));
        this.scheduleReconnect();
      } else if (this.socket === s) {
        this.dropConnection('SHARD_DOWN', `lost connection to ${this.label}`, 'lost connection');
      } // else: we dropped this socket ourselves and already dealt with it
      done?.();
    });
  }

  /**
   * Reads the `stats settings` reply at the start of chunk[0, n) and hands what follows to the parser.
   * A server that does not know the command answers ERROR; one that ignores it (a proxy, a test server)
   * answers the first batch instead: anything but `STAT ` or `ERROR` first means no settings, and the
   * bytes are the batches'. (A bare `END` is a get's reply: a real settings reply has STAT lines.)
   */
  private readSettings(chunk: Buffer, n: number): void {
    const before = this.settingsText!.length;
    const text = this.settingsText + chunk.toString('latin1', 0, n);
    const isStat = text.startsWith('STAT ');
    const isErr = text.startsWith('ERROR\r\n');
    if (!isStat && !isErr) {
      if (text.length < 7 && ('STAT '.startsWith(text) || 'ERROR\r\n'.startsWith(text))) {
        this.settingsText = text; // too short to tell yet
        return;
      }
      this.endSettings();
      if (before === 0) this.parser.feed(chunk, n);
      else {
        const all = Buffer.from(text, 'latin1');
        this.parser.feed(all, all.length);
      }
      return;
    }
    let end = 7;
    if (isStat) {
      const at = text.indexOf('\r\nEND\r\n');
      end = at < 0 ? -1 : at + 7;
      const body = end < 0 ? text.slice(0, text.lastIndexOf('\r\n') + 2) : text.slice(0, end - 7);
      for (const line of body.split('\r\n')) {
        if (line !== '' && !line.startsWith('STAT ')) {
          this.protocolError(`unexpected reply to stats settings: ${line.slice(0, 200)}`);
          return;
        }
      }
      if (end < 0) {
        if (text.length > MAX_SETTINGS_BYTES) {
          this.protocolError('stats settings reply too long');
          return;
        }
        this.settingsText = text;
        return;
      }
      const m = /(?:^|\r\n)STAT item_size_max (\d+)\r\n/.exec(text.slice(0, end));
      if (m) this.itemSizeMax = Number(m[1]);
    }
    this.endSettings();
    const from = end - before;
    if (from < n) this.parser.feed(chunk, n, from);
  }

  /** connect() need not wait longer for the settings (they are still read if they come). */
  private settingsWaitOver(): void {
    this.settingsTimer = null;
    const done = this.settingsDone;
    this.settingsDone = null;
    done?.();
  }

  private endSettings(): void {
    this.settingsText = null;
    if (this.settingsTimer !== null) {
      clearTimeout(this.settingsTimer);
      this.settingsTimer = null;
    }
    const done = this.settingsDone;
    this.settingsDone = null;
    done?.();
  }

  /** Reports one failure: the shard.down event, then the failure policy. */
  private failed(reason: string): void {
    this.events.emit(
      'shard',
      'shard.down',
      'warn',
      `${this.label} is down: ${reason}`,
      { shard: this.label, reason },
      this.label,
    );
    this.onFailure(reason);
  }

  /**
   * Connects now instead of when the backoff says (an ejected shard's probe just got an answer). Nothing
   * happens if a connection is open or being opened.
   */
  reconnectNow(): void {
    if (this.stopped || this.socket || this.connecting) return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.backoff = this.opts.reconnectMinMs;
    this.reconnects++;
    this.open();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.opts.reconnectMaxMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.reconnects++;
      this.open();
    }, wait);
  }

  /**
   * Writes a flush's mutations then its gets in one corked write. Caller checks `up` first. Writes of
   * abandoned requests are cut out first (MutationBatch.prune); a batch left empty is not sent. The
   * batches are this connection's own (newGets/newMuts).
   */
  send(mut: MutationBatch | null, get: GetBatch | null): void {
    if (mut !== null && mut.prune() === 0) {
      this.onBatchDone(mut);
      mut = null;
      if (get === null) return;
    }
    const s = this.socket!;
    const now = Date.now();
    const hr = performance.now();
    s.cork();
    if (mut !== null) {
      mut.sentAt = now;
      mut.sentHr = hr;
      this.inflight.push(mut);
      s.write(mut.bytesOut());
      this.keysSent += mut.n;
      this.batchesSent++;
    }
    if (get !== null) {
      get.sentAt = now;
      get.sentHr = hr;
      const bytes = get.seal();
      this.inflight.push(get);
      s.write(bytes);
      this.keysSent += get.n;
      this.batchesSent++;
    }
    s.uncork();
    this.writes++;
    if (this.timeoutTimer === null && this.timeoutConfirm === null) {
      // Neither is pending only while nothing was in flight: this batch is the head.
      this.readsSeen = this.reads;
      this.progressAt = 0;
      this.armTimeout(this.lookEvery());
    }
  }

  close(): void {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.dropConnection('SHUTTING_DOWN', 'gateway stopping');
    this.failRetries('gateway stopping');
  }

  get inflightBatches(): number {
    return this.inflight.size;
  }

  private armTimeout(ms: number): void {
    this.timeoutTimer = setTimeout(this.runCheck, ms);
  }

  /** Progress is dated when the timer sees it, up to one look late; a look every quarter bounds that. */
  private lookEvery(): number {
    return this.opts.timeoutMs >= 4 ? this.opts.timeoutMs >> 2 : 1;
  }

  /**
   * Quiet time runs from the later of the last progress seen and the head batch's send, so a shard that
   * stops answering gets its TIMEOUT between 1 and 1.25 timeoutMs after its last byte, never earlier.
   */
  private checkTimeout(): void {
    this.timeoutTimer = null;
    const head = this.inflight.head();
    if (head === null) return;
    const now = Date.now();
    if (this.reads !== this.readsSeen) {
      this.readsSeen = this.reads;
      this.progressAt = now;
      this.armTimeout(this.lookEvery());
      return;
    }
    const sentAt = head.sentAt;
    const left = this.opts.timeoutMs - (now - (this.progressAt > sentAt ? this.progressAt : sentAt));
    if (left > 0) {
      this.armTimeout(left < this.lookEvery() ? left : this.lookEvery());
      return;
    }
    // Overdue by the clock, but the clock also ran while this process was busy (a long synchronous
    // encode, a GC pause): the reply may be waiting in the kernel, unread. Timers run before the poll
    // phase; an immediate runs after it, once every readable socket has been read.
    this.timeoutConfirm = setImmediate(this.runConfirm);
  }

  private confirmTimeout(): void {
    this.timeoutConfirm = null;
    if (this.inflight.size === 0) return;
    if (this.reads !== this.readsSeen) {
      this.readsSeen = this.reads;
      this.progressAt = Date.now();
      this.armTimeout(this.lookEvery());
      return;
    }
    this.timeouts++;
    const msg = `${this.label} did not answer within ${this.opts.timeoutMs} ms`;
    this.events.emit(
      'shard',
      'shard.timeout',
      'warn',
      msg,
      { shard: this.label, timeoutMs: this.opts.timeoutMs },
      this.label,
    );
    this.dropConnection('TIMEOUT', msg, 'timeout');
  }

  /**
   * Fails everything in flight and closes the socket; reconnects unless stopped. `reason` (absent when the
   * gateway stops) is the failure reported to shard.down and the failure policy.
   */
  private dropConnection(code: ErrorCode, message: string, reason?: string): void {
    const s = this.socket;
    this.socket = null;
    this.up = false;
    if (s) {
      this.resets++;
      s.destroy();
    }
    if (this.timeoutTimer) clearTimeout(this.timeoutTimer);
    this.timeoutTimer = null;
    if (this.timeoutConfirm) clearImmediate(this.timeoutConfirm);
    this.timeoutConfirm = null;
    // A value cut mid-stream has not settled yet: its key fails too.
    const cutValue = this.parser.midValue;
    const failing = this.inflight.takeAll();
    this.parser.reset();
    this.endSettings();
    // A get no byte of whose answer arrived is safe to send again; a write is not (it may have happened),
    // nor is anything that timed out (the shard is slow, not gone) or a get half answered.
    const retryable = (code === 'SHARD_DOWN' || code === 'SHARD_ERROR') && !this.stopped;
    for (let j = 0; j < failing.length; j++) {
      const b = failing[j];
      if (b.kind === 0 && retryable && !b.retried && b.cursor === 0 && !(j === 0 && cutValue)) {
        b.retried = true;
        this.retryQueue.push(b);
        continue;
      }
      if (b.kind === 0 && j === 0 && cutValue) b.failFrom(b.cursor - 1, code, message);
      else b.fail(code, message);
      this.onBatchDone(b);
    }
    if (reason !== undefined && !this.stopped) this.failed(reason);
    if (this.retryQueue.length > 0) {
      // Reconnect at once: the retried gets are waiting for it.
      if (this.reconnectTimer) {
        clearTimeout(this.reconnectTimer);
        this.reconnectTimer = null;
      }
      this.reconnects++;
      this.open();
    } else {
      this.scheduleReconnect();
    }
  }

  private resendRetries(): void {
    if (this.retryQueue.length > 0) {
      const n = this.retryQueue.length;
      this.events.emit(
        'shard',
        'shard.retry',
        'info',
        `${n} get batch(es) unanswered when the connection to ${this.label} broke are sent again`,
        { shard: this.label, batches: n },
        this.label,
      );
    }
    while (this.retryQueue.length > 0) {
      this.retries++;
      this.send(null, this.retryQueue.shift()!);
    }
  }

  private failRetries(message: string): void {
    while (this.retryQueue.length > 0) {
      const b = this.retryQueue.shift()!;
      b.fail('SHARD_DOWN', message);
      this.onBatchDone(b);
    }
  }

  private answered(b: Batch): void {
    this.rtt.observe((performance.now() - b.sentHr) / 1000);
    this.onAnswered();
    this.onBatchDone(b);
  }

  private protocolError(why: string): void {
    this.events.emit(
      'shard',
      'shard.reset',
      'warn',
      `${this.label} reset: ${why}`,
      { shard: this.label, reason: why },
      this.label,
    );
    this.dropConnection('SHARD_ERROR', `${this.label}: ${why}`, why);
  }
}

/** Why a connect failed, in the words shard.down uses. */
function connectReason(e: NodeJS.ErrnoException | null): string {
  if (e === null) return 'connection closed while connecting';
  if (e.code === 'ECONNREFUSED') return 'connect refused';
  if (e.message === 'connect timeout') return 'connect timeout';
  return e.code ?? e.message;
}
