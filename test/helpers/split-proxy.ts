/**
 * A TCP proxy between the gateway and a real memcached that re-chunks the server -> gateway byte stream,
 * so the gateway's reply parser sees replies cut at arbitrary offsets. Gateway -> server bytes pass
 * through untouched.
 *
 * Modes (settable at any time, they apply to bytes not yet forwarded):
 * - `pass`: forward as received;
 * - `bytes`: fixed-size chunks (size 1 = one byte per write);
 * - `random`: chunk sizes drawn from a seeded PRNG in [1, max];
 * - `hold`: keep everything until `release()`, which forwards all of it in ONE write;
 * - `stall`: forward `after` more bytes, then nothing (a server that stops mid-reply);
 * - `cut`: forward `after` more bytes, then close that connection (FIN after the bytes) and go back to
 *   `pass` for the connections that follow (a server or network that dies mid-reply).
 *
 * Pacing: in `bytes` and `random` mode each chunk is one write, and the next write waits for a full turn
 * of the event loop (a setImmediate issued from the check phase runs only after the next poll phase),
 * so a gateway in this same process gets a read in between: one chunk per read, not coalesced.
 */
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { prng } from './mc-raw';

export type SplitMode =
  | { kind: 'pass' }
  | { kind: 'bytes'; size: number }
  | { kind: 'random'; seed: number; max: number }
  | { kind: 'hold' }
  | { kind: 'stall'; after: number }
  | { kind: 'cut'; after: number };

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

class Link {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private pumping = false;

  constructor(
    private readonly proxy: SplitProxy,
    readonly client: Socket,
    readonly server: Socket,
  ) {}

  push(d: Buffer): void {
    this.queue.push(d);
    this.queued += d.length;
    void this.pump();
  }

  get held(): number {
    return this.queued;
  }

  heldBytes(): Buffer {
    return Buffer.concat(this.queue, this.queued);
  }

  /** Takes up to n queued bytes. */
  private take(n: number): Buffer {
    if (n >= this.queued) {
      const all = this.queue.length === 1 ? this.queue[0] : Buffer.concat(this.queue, this.queued);
      this.queue.length = 0;
      this.queued = 0;
      return all;
    }
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const head = this.queue[0];
      if (head.length <= left) {
        parts.push(head);
        this.queue.shift();
        left -= head.length;
      } else {
        parts.push(head.subarray(0, left));
        this.queue[0] = head.subarray(left);
        left = 0;
      }
    }
    this.queued -= n;
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, n);
  }

  /**
   * One write to the gateway. On loopback a small write normally completes at once (the bytes are in the
   * gateway's receive queue when write() returns); if it could not, wait until Node has flushed it, so
   * no later chunk is merged into it. (Waiting for every write callback would cost a loop turn each.)
   */
  private write(b: Buffer): Promise<void> {
    this.proxy.writes++;
    this.proxy.forwarded += b.length;
    if (this.client.destroyed) return Promise.resolve();
    this.client.write(b);
    if (this.client.writableLength === 0) return Promise.resolve();
    this.proxy.slowWrites++;
    return new Promise((resolve) => {
      const done = (): void => {
        this.client.off('drain', done);
        this.client.off('close', done);
        resolve();
      };
      this.client.on('drain', done);
      this.client.on('close', done);
    });
  }

  /** Forwards everything queued in one write, whatever the mode. */
  async flushAll(): Promise<void> {
    if (this.queued > 0) await this.write(this.take(this.queued));
  }

  async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      let paced = false;
      while (this.queued > 0 && !this.client.destroyed) {
        const m = this.proxy.mode;
        if (m.kind === 'hold') break;
        if (m.kind === 'stall' && this.proxy.stallLeft <= 0) break;
        if (m.kind === 'pass') {
          await this.write(this.take(this.queued));
          continue;
        }
        if (m.kind === 'cut') {
          const n = Math.min(this.queued, this.proxy.stallLeft);
          this.proxy.stallLeft -= n;
          if (n > 0) await this.write(this.take(n));
          if (this.proxy.stallLeft === 0) {
            this.proxy.mode = { kind: 'pass' };
            this.proxy.cuts++;
            this.client.end();
            this.server.destroy();
            break;
          }
          continue;
        }
        if (m.kind === 'stall') {
          const n = Math.min(this.queued, this.proxy.stallLeft);
          this.proxy.stallLeft -= n;
          await this.write(this.take(n));
          continue;
        }
        // bytes / random: one chunk per turn of the event loop
        if (!paced) {
          await nextTurn();
          paced = true;
        }
        const n = m.kind === 'bytes' ? m.size : 1 + Math.floor(this.proxy.rand() * m.max);
        await this.write(this.take(Math.min(n, this.queued)));
        await nextTurn();
      }
    } finally {
      this.pumping = false;
    }
  }

  destroy(): void {
    this.client.destroy();
    this.server.destroy();
  }
}

export class SplitProxy {
  port = 0;
  mode: SplitMode = { kind: 'pass' };
  /** Bytes and writes sent to the gateway, connections accepted. */
  forwarded = 0;
  writes = 0;
  connections = 0;
  stallLeft = 0;
  /** Connections closed by `cut` mode. */
  cuts = 0;
  /** Writes that did not complete at once (their chunk may have reached the gateway with a later one). */
  slowWrites = 0;
  rand: () => number = prng(1);
  private readonly links = new Set<Link>();
  private server!: Server;

  private constructor(
    private readonly targetPort: number,
    private readonly targetHost: string,
  ) {}

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<SplitProxy> {
    const p = new SplitProxy(targetPort, targetHost);
    p.server = createServer((client) => p.accept(client));
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen(0, '127.0.0.1', () => resolve());
    });
    p.port = (p.server.address() as { port: number }).port;
    return p;
  }

  setMode(m: SplitMode): void {
    this.mode = m;
    if (m.kind === 'random') this.rand = prng(m.seed);
    if (m.kind === 'stall' || m.kind === 'cut') this.stallLeft = m.after;
    for (const l of this.links) void l.pump();
  }

  /** Bytes from the server not yet forwarded, over all connections. */
  get held(): number {
    let n = 0;
    for (const l of this.links) n += l.held;
    return n;
  }

  heldBytes(): Buffer {
    return Buffer.concat([...this.links].map((l) => l.heldBytes()));
  }

  /** In `hold` mode: forwards everything held in one write per connection, then passes through. */
  async release(): Promise<void> {
    this.mode = { kind: 'pass' };
    await Promise.all([...this.links].map((l) => l.flushAll()));
    for (const l of this.links) void l.pump();
  }

  /** Cuts every current connection (both sides), as a network failure would; keeps listening. */
  dropConnections(): void {
    for (const l of this.links) l.destroy();
    this.links.clear();
  }

  get liveConnections(): number {
    return this.links.size;
  }

  private accept(client: Socket): void {
    this.connections++;
    client.setNoDelay(true);
    const server = createConnection({ host: this.targetHost, port: this.targetPort });
    server.setNoDelay(true);
    const link = new Link(this, client, server);
    this.links.add(link);
    const drop = (): void => {
      if (!this.links.delete(link)) return;
      link.destroy();
    };
    client.on('data', (d: Buffer) => server.write(d));
    server.on('data', (d: Buffer) => link.push(d));
    client.on('close', drop);
    server.on('close', drop);
    client.on('error', drop);
    server.on('error', drop);
  }

  async close(): Promise<void> {
    for (const l of this.links) l.destroy();
    this.links.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
