/**
 * A WebSocket client over a raw loopback socket that can send what no library would (unmasked, reserved
 * bits, bad opcodes, lying lengths, fragments) and reads the server's frames itself: binary messages
 * decoded with msgpackr (an oracle apart from the gateway's code), close codes, pongs.
 */
import { createConnection, Socket } from 'node:net';
import { unpackMultiple } from 'msgpackr';

export const enum Op {
  Cont = 0,
  Text = 1,
  Bin = 2,
  Close = 8,
  Ping = 9,
  Pong = 10,
}

export interface FrameOpts {
  fin?: boolean;
  mask?: boolean;
  rsv?: number;
  /** Announce this length instead. */ claim?: number;
}

/** A client frame (masked unless told otherwise). */
export function wsFrame(opcode: number, payload: Buffer, o: FrameOpts = {}): Buffer {
  const fin = o.fin ?? true;
  const masked = o.mask ?? true;
  const n = o.claim ?? payload.length;
  let head: Buffer;
  const b0 = (fin ? 0x80 : 0) | ((o.rsv ?? 0) << 4) | (opcode & 0x0f);
  const m = masked ? 0x80 : 0;
  if (n < 126) head = Buffer.from([b0, m | n]);
  else if (n < 65536) head = Buffer.from([b0, m | 126, n >> 8, n & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = m | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  if (!masked) return Buffer.concat([head, payload]);
  const mask = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
  const body = Buffer.allocUnsafe(payload.length);
  for (let i = 0; i < payload.length; i++) body[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

export type Entry = unknown[];

export interface WsEvents {
  /** One decoded binary message: its entries, or the error that kept it from decoding. */
  onMessage(entries: Entry[] | null, raw: Buffer, error: string | null): void;
  onText(text: string): void;
  onPong(payload: Buffer): void;
  onClose(code: number | null, reason: string, byFrame: boolean): void;
}

const UPGRADE = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
  'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

export class RawWs {
  private acc: Buffer = Buffer.alloc(0);
  private frag: Buffer[] = [];
  private fragOp = 0;
  closed = false;
  closeCode: number | null = null;
  gotCloseFrame = false;
  /** Server messages that did not decode as msgpack, and frames that broke the framing rules. */
  bad = 0;
  bytesIn = 0;

  private constructor(
    readonly socket: Socket,
    private readonly ev: WsEvents,
  ) {
    socket.on('data', (d: Buffer) => this.data(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.closed) return;
      this.closed = true;
      ev.onClose(this.closeCode, '', this.gotCloseFrame);
    });
  }

  /** Upgrades; rejects with the status line (or the reason) when that fails. */
  static connect(host: string, port: number, ev: WsEvents, timeoutMs = 5000): Promise<RawWs> {
    return new Promise((resolve, reject) => {
      const s = createConnection({ host, port });
      s.setNoDelay(true);
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`no upgrade answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const onData = (d: Buffer): void => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        clearTimeout(timer);
        s.off('data', onData);
        s.off('error', onErr);
        s.off('close', onClose);
        const line = head.toString('latin1', 0, head.indexOf('\r\n'));
        if (!line.startsWith('HTTP/1.1 101')) {
          s.destroy();
          reject(new Error(`upgrade refused: ${line}`));
          return;
        }
        const ws = new RawWs(s, ev);
        resolve(ws);
        if (head.length > end + 4) ws.data(head.subarray(end + 4));
      };
      const onErr = (e: Error): void => {
        clearTimeout(timer);
        reject(e);
      };
      const onClose = (): void => {
        clearTimeout(timer);
        reject(new Error('closed during the upgrade'));
      };
      s.on('data', onData);
      s.once('error', onErr);
      s.once('close', onClose);
      s.write(UPGRADE('/v1/ws'));
    });
  }

  write(b: Buffer): void {
    if (!this.closed && !this.socket.destroyed) this.socket.write(b);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private data(d: Buffer): void {
    this.bytesIn += d.length;
    this.acc = this.acc.length === 0 ? d : Buffer.concat([this.acc, d]);
    for (;;) {
      const a = this.acc;
      if (a.length < 2) return;
      const fin = (a[0] & 0x80) !== 0;
      const op = a[0] & 0x0f;
      if ((a[1] & 0x80) !== 0 || (a[0] & 0x70) !== 0) {
        this.bad++;
      } // a server must not mask or set RSV
      let n = a[1] & 0x7f;
      let p = 2;
      if (n === 126) {
        if (a.length < 4) return;
        n = a.readUInt16BE(2);
        p = 4;
      } else if (n === 127) {
        if (a.length < 10) return;
        n = Number(a.readBigUInt64BE(2));
        p = 10;
      }
      if ((a[1] & 0x80) !== 0) p += 4;
      if (a.length < p + n) return;
      const payload = a.subarray(p, p + n);
      this.acc = a.subarray(p + n);
      this.frame(fin, op, payload);
    }
  }

  private frame(fin: boolean, op: number, payload: Buffer): void {
    if (op === Op.Close) {
      this.gotCloseFrame = true;
      this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      // the closing handshake is done for us once the server's close frame is here: no need to wait for its FIN
      if (!this.closed) {
        this.closed = true;
        this.ev.onClose(this.closeCode, payload.toString('utf8', 2), true);
      }
      return;
    }
    if (op === Op.Pong) return this.ev.onPong(Buffer.from(payload));
    if (op === Op.Ping) return;
    if (op === Op.Cont) {
      this.frag.push(Buffer.from(payload));
      if (!fin) return;
      const whole = Buffer.concat(this.frag);
      this.frag = [];
      return this.message(this.fragOp, whole);
    }
    if (!fin) {
      this.fragOp = op;
      this.frag = [Buffer.from(payload)];
      return;
    }
    this.message(op, Buffer.from(payload));
  }

  private message(op: number, m: Buffer): void {
    if (op === Op.Text) return this.ev.onText(m.toString('utf8'));
    if (op !== Op.Bin) {
      this.bad++;
      return;
    }
    let entries: Entry[] | null = null;
    let error: string | null = null;
    try {
      entries = unpackMultiple(m) as Entry[];
    } catch (e) {
      error = (e as Error).message;
    }
    this.ev.onMessage(entries, m, error);
  }
}
