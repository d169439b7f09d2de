/**
 * A WebSocket client for kvgate's protocol written straight over a `net` socket: handshake, masked
 * binary frames (a fixed all-zero mask, which RFC 6455 permits and which costs the client nothing), many
 * frames per socket write, and in-place parsing of the response entries with every value checked.
 */
import { Writer, Reader, mapHeader, arrayHeader, uint, str, binHeader, F } from '../lib/mp';
import { ReqOp, type Sink } from './conn';
import { StreamConn } from './stream-conn';
import { authHeader, type Endpoint } from './types';

interface Pending {
  op: ReqOp;
  t: number;
  idx: number;
  idxs: number[] | null;
  n: number;
  settled: number;
  ok: number;
  /** Per item: 0 open, 1 settled (bulk only). */
  itemDone: Uint8Array | null;
  /** Bytes received so far of a value arriving in VALUE_PART pieces, per item. */
  parts: Map<number, number> | null;
}

const HS_END = Buffer.from('\r\n\r\n');
const MASK_BIT = 0x80;

export class WsConn extends StreamConn {
  readonly server = 0;
  private readonly payload = new Writer(4 * 1024);
  private readonly reader = new Reader();
  private pending = new Map<number, Pending>();
  /** Finished Pending records, reused so the load generator does not feed its own garbage collector. */
  private free: Pending[] = [];
  private nextId = 1;
  private fragments: Buffer[] | null = null;

  /** `waitMs` > 0 adds the batching hint `wait` to every request (docs/PROTOCOL.md). */
  constructor(
    sink: Sink,
    target: Endpoint,
    private readonly path: string,
    localAddress: string | undefined,
    private readonly waitMs = 0,
  ) {
    super(sink, target, localAddress);
  }

  override connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = this.dial();
      let head: Buffer | null = null;
      const fail = (e: Error): void => {
        sock.destroy();
        reject(e);
      };
      sock.once('error', fail);
      sock.once('connect', () => {
        sock.write(
          `GET ${this.path} HTTP/1.1\r\nHost: ${this.target.host}:${this.target.port}\r\n${authHeader(this.target)}` +
            'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
            'Sec-WebSocket-Version: 13\r\n\r\n',
        );
      });
      const onHandshake = (chunk: Buffer): void => {
        head = head ? Buffer.concat([head, chunk]) : chunk;
        const end = head.indexOf(HS_END);
        if (end < 0) return;
        const status = head.toString('latin1', 0, head.indexOf(13));
        if (!/^HTTP\/1\.1 101/.test(status)) return fail(new Error(`upgrade refused: ${status}`));
        sock.removeListener('data', onHandshake);
        sock.removeListener('error', fail);
        this.attach(sock);
        const after = head.subarray(end + 4);
        if (after.length) this.onData(after);
        resolve();
      };
      sock.on('data', onHandshake);
    });
  }

  send(op: ReqOp, idx: number, idxs: number[] | null, startNs: number): void {
    if (!this.open) return;
    const id = this.nextId;
    this.nextId = id >= 0xfffffff0 ? 1 : id + 1;
    const ks = this.sink.ks;
    const p = this.payload;
    p.pos = 0;
    let n = 1;
    const extra = this.waitMs > 0 ? 1 : 0;
    switch (op) {
      case ReqOp.Get:
        mapHeader(p, 3 + extra);
        str(p, F.id);
        uint(p, id);
        str(p, F.op);
        str(p, F.get);
        str(p, F.key);
        str(p, ks.keys[idx]);
        break;
      case ReqOp.Set:
        mapHeader(p, 4 + extra);
        str(p, F.id);
        uint(p, id);
        str(p, F.op);
        str(p, F.set);
        str(p, F.key);
        str(p, ks.keys[idx]);
        str(p, F.value);
        binHeader(p, ks.valueSize);
        p.ensure(ks.valueSize);
        p.pos = ks.writeValue(idx, p.buf, p.pos);
        break;
      case ReqOp.Mget: {
        const list = idxs as number[];
        n = list.length;
        mapHeader(p, 3 + extra);
        str(p, F.id);
        uint(p, id);
        str(p, F.op);
        str(p, F.mget);
        str(p, F.keys);
        arrayHeader(p, n);
        for (let i = 0; i < n; i++) str(p, ks.keys[list[i]]);
        break;
      }
      case ReqOp.Mset: {
        const list = idxs as number[];
        n = list.length;
        mapHeader(p, 3 + extra);
        str(p, F.id);
        uint(p, id);
        str(p, F.op);
        str(p, F.mset);
        str(p, F.items);
        arrayHeader(p, n);
        for (let i = 0; i < n; i++) {
          mapHeader(p, 2);
          str(p, F.key);
          str(p, ks.keys[list[i]]);
          str(p, F.value);
          binHeader(p, ks.valueSize);
          p.ensure(ks.valueSize);
          p.pos = ks.writeValue(list[i], p.buf, p.pos);
        }
        break;
      }
    }
    if (extra) {
      str(p, F.wait);
      uint(p, this.waitMs);
    }
    this.frame(p.buf, p.pos);
    const rec = this.free.pop();
    if (rec) {
      rec.op = op;
      rec.t = startNs;
      rec.idx = idx;
      rec.idxs = idxs;
      rec.n = n;
      rec.settled = 0;
      rec.ok = 0;
      rec.itemDone = n > 1 ? new Uint8Array(n) : null;
      rec.parts = null;
      this.pending.set(id, rec);
    } else {
      this.pending.set(id, {
        op,
        t: startNs,
        idx,
        idxs,
        n,
        settled: 0,
        ok: 0,
        itemDone: n > 1 ? new Uint8Array(n) : null,
        parts: null,
      });
    }
    this.inflight++;
  }

  /** Appends one masked binary frame (mask key 0) holding payload[0, len). */
  private frame(payload: Buffer, len: number): void {
    const w = this.out;
    w.ensure(len + 14);
    const b = w.buf;
    b[w.pos++] = 0x82;
    if (len < 126) b[w.pos++] = MASK_BIT | len;
    else if (len < 0x10000) {
      b[w.pos++] = MASK_BIT | 126;
      b.writeUInt16BE(len, w.pos);
      w.pos += 2;
    } else {
      b[w.pos++] = MASK_BIT | 127;
      b.writeUInt32BE(0, w.pos);
      b.writeUInt32BE(len, w.pos + 4);
      w.pos += 8;
    }
    b.writeUInt32BE(0, w.pos);
    w.pos += 4;
    payload.copy(b, w.pos, 0, len);
    w.pos += len;
    this.staged();
  }

  protected parse(buf: Buffer, now: number): number {
    let off = 0;
    const len = buf.length;
    while (len - off >= 2) {
      const b0 = buf[off];
      const b1 = buf[off + 1];
      let plen = b1 & 0x7f;
      let hl = 2;
      if (plen === 126) {
        if (len - off < 4) break;
        plen = buf.readUInt16BE(off + 2);
        hl = 4;
      } else if (plen === 127) {
        if (len - off < 10) break;
        plen = buf.readUInt32BE(off + 2) * 0x100000000 + buf.readUInt32BE(off + 6);
        hl = 10;
      }
      if (b1 & MASK_BIT) hl += 4; // servers must not mask; tolerate it
      if (len - off < hl + plen) break;
      const start = off + hl;
      if (b1 & MASK_BIT) {
        const m = off + hl - 4;
        for (let i = 0; i < plen; i++) buf[start + i] ^= buf[m + (i & 3)];
      }
      off = start + plen;
      const opcode = b0 & 0x0f;
      const fin = (b0 & 0x80) !== 0;
      if (opcode === 0x2 || opcode === 0x1) {
        if (fin) this.onMessage(buf, start, start + plen, now);
        else this.fragments = [Buffer.from(buf.subarray(start, start + plen))];
      } else if (opcode === 0x0) {
        if (!this.fragments) {
          this.die('continuation without a first fragment');
          return -1;
        }
        this.fragments.push(Buffer.from(buf.subarray(start, start + plen)));
        if (fin) {
          const whole = Buffer.concat(this.fragments);
          this.fragments = null;
          this.onMessage(whole, 0, whole.length, now);
        }
      } else if (opcode === 0x8) {
        const code = plen >= 2 ? buf.readUInt16BE(start) : 1005;
        this.die(`server closed the WebSocket (${code} ${buf.toString('utf8', start + 2, start + plen)})`);
        return -1;
      } else if (opcode === 0x9) {
        this.frameControl(0x8a, buf.subarray(start, start + plen));
      }
    }
    return off;
  }

  private frameControl(b0: number, payload: Buffer): void {
    const w = this.out;
    w.ensure(payload.length + 6);
    w.buf[w.pos++] = b0;
    w.buf[w.pos++] = MASK_BIT | payload.length;
    w.buf.writeUInt32BE(0, w.pos);
    w.pos += 4;
    w.bytes(payload);
    this.staged();
  }

  private onMessage(buf: Buffer, start: number, end: number, now: number): void {
    const r = this.reader;
    const sink = this.sink;
    const ks = sink.ks;
    r.reset(buf, start, end);
    try {
      while (r.pos < end) {
        const fields = r.arrayLen();
        const id = r.int();
        const i = r.int();
        const kind = r.int();
        let used = 3;
        const p = this.pending.get(id);
        if (!p) throw new Error(`entry for unknown id ${id}`);
        switch (kind) {
          case 0: {
            // VALUE
            r.int();
            r.bytes();
            used += 2;
            const idx = p.idxs ? p.idxs[i] : p.idx;
            if (this.item(p, i)) {
              if (ks.check(idx, r.buf, r.s, r.e)) p.ok++;
              else sink.bad(1);
            }
            break;
          }
          case 1: {
            // VALUE_PART
            r.int();
            const total = r.int();
            const offset = r.int();
            r.bytes();
            used += 4;
            const idx = p.idxs ? p.idxs[i] : p.idx;
            if (!p.parts) p.parts = new Map();
            const got = p.parts.get(i) ?? 0;
            if (offset !== got || total !== ks.valueSize || !ks.checkRange(idx, offset, r.buf, r.s, r.e)) {
              sink.bad(1);
              p.parts.set(i, -1e15);
            } else p.parts.set(i, got + (r.e - r.s));
            if (offset + (r.e - r.s) >= total) {
              const whole = (p.parts.get(i) ?? 0) === total;
              if (this.item(p, i) && whole) p.ok++;
            }
            break;
          }
          case 2: // MISS
            if (this.item(p, i)) sink.miss(1);
            break;
          case 3: // OK
            if (this.item(p, i)) p.ok++;
            break;
          case 4: {
            // ERROR
            const code = r.text();
            r.skip();
            used += 2;
            if (i === -1) {
              sink.error(code, p.n - p.settled);
              p.settled = p.n;
            } else if (this.item(p, i)) sink.error(code);
            break;
          }
          case 5: // END
            this.pending.delete(id);
            this.inflight--;
            if (p.settled !== p.n) sink.error('INCOMPLETE', p.n - p.settled);
            p.idxs = null;
            p.itemDone = null;
            p.parts = null;
            this.free.push(p);
            sink.done(this, p.t, p.ok, now);
            break;
          default:
            throw new Error(`unknown entry kind ${kind}`);
        }
        for (; used < fields; used++) r.skip();
      }
    } catch (e) {
      this.die(`bad response: ${(e as Error).message}`);
    }
  }

  /** Marks item i of p settled; false (and an error) when it already was. */
  private item(p: Pending, i: number): boolean {
    if (p.itemDone) {
      if (i < 0 || i >= p.n || p.itemDone[i]) {
        this.sink.error('DUPLICATE_ITEM');
        return false;
      }
      p.itemDone[i] = 1;
    } else if (p.settled >= 1 || i !== 0) {
      this.sink.error('DUPLICATE_ITEM');
      return false;
    }
    p.settled++;
    return true;
  }

  protected failInflight(): void {
    for (const p of this.pending.values()) this.sink.error('CONNECTION_LOST', p.n - p.settled);
    this.pending.clear();
  }
}
