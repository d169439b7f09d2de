/**
 * What the three socket drivers (WebSocket, memcached ASCII, HTTP) share: dialing, staging requests in
 * one output buffer written once per turn, keeping an incomplete answer's bytes until the next read,
 * and failing what is in flight when the socket dies. A driver adds its request encoding and `parse`.
 */
import { connect as netConnect, Socket } from 'node:net';
import { Writer } from '../lib/mp';
import type { Conn, ReqOp, Sink } from './conn';
import type { Endpoint } from './types';

export abstract class StreamConn implements Conn {
  inflight = 0;
  abstract readonly server: number;
  protected sock: Socket | null = null;
  protected readonly out = new Writer(16 * 1024);
  protected open = false;
  private dirtyFlag = false;
  /** Requests staged since the last write, against the sink's framesPerWrite. */
  private stagedFrames = 0;
  private rest: Buffer | null = null;

  constructor(
    protected readonly sink: Sink,
    protected readonly target: Endpoint,
    protected readonly localAddress: string | undefined,
  ) {}

  /** Plain TCP; a driver with a handshake (WebSocket) overrides it. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = this.dial();
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.removeListener('error', reject);
        this.attach(sock);
        resolve();
      });
    });
  }
  abstract send(op: ReqOp, idx: number, idxs: number[] | null, startNs: number): void;

  /** Parses whole answers from buf[0, length): the bytes used (the rest waits for more), or -1 after die(). */
  protected abstract parse(buf: Buffer, now: number): number;

  /** Reports every request in flight as lost and forgets it. */
  protected abstract failInflight(): void;

  protected dial(): Socket {
    const sock = netConnect({ host: this.target.host, port: this.target.port, localAddress: this.localAddress });
    this.sock = sock;
    sock.setNoDelay(true);
    return sock;
  }

  /** The connection is ready: answers now go to parse(). */
  protected attach(sock: Socket): void {
    sock.on('data', (c: Buffer) => this.onData(c));
    sock.on('error', (e) => this.die(e.message));
    sock.on('close', () => this.die('closed'));
    this.open = true;
  }

  /** Bytes were added to `out`: write them at the end of this turn. */
  protected staged(): void {
    const per = this.sink.framesPerWrite;
    if (per > 0 && ++this.stagedFrames >= per) {
      // Written now, not at the end of the turn: each write leaves as its own segment (no delay).
      this.stagedFrames = 0;
      this.flush();
      return;
    }
    if (!this.dirtyFlag) {
      this.dirtyFlag = true;
      this.sink.dirty(this);
    }
  }

  flush(): void {
    this.dirtyFlag = false;
    this.stagedFrames = 0;
    if (this.out.pos === 0 || !this.sock || !this.open) {
      this.out.pos = 0;
      return;
    }
    this.sock.write(this.out.take());
  }

  protected onData(chunk: Buffer): void {
    let buf = chunk;
    if (this.rest) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = null;
    }
    const used = this.parse(buf, this.sink.now());
    if (used < 0) return;
    if (used < buf.length) this.rest = used === 0 ? buf : buf.subarray(used);
  }

  protected die(why: string): void {
    if (!this.open && !this.sock) return;
    const wasOpen = this.open;
    this.open = false;
    this.sock?.destroy();
    this.sock = null;
    this.failInflight();
    this.inflight = 0;
    if (wasOpen) this.sink.lost(this, why);
  }

  close(): void {
    this.open = false;
    if (this.sock) {
      this.sock.removeAllListeners('close');
      this.sock.removeAllListeners('error');
      this.sock.on('error', () => undefined);
      this.sock.destroy();
      this.sock = null;
    }
  }
}
