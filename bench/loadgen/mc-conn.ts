/**
 * A pipelining memcached ASCII client: used against twemproxy (one key per `get`, at the same concurrency
 * as the WebSocket peers) and against memcached directly for the ceiling (`get k1 ... kN` multi-gets and
 * N pipelined `set`s per request). Answers are matched FIFO and every value is checked.
 */
import { ReqOp, type Sink } from './conn';
import { StreamConn } from './stream-conn';
import type { Endpoint } from './types';

interface Pending {
  op: ReqOp;
  t: number;
  n: number;
  /** Set requests: STORED lines still expected. Get requests: values seen. */
  left: number;
  ok: number;
}

const GET = Buffer.from('get ');
const SET = Buffer.from('set ');
const CRLF = Buffer.from('\r\n');
const SP = 0x20;

export class McConn extends StreamConn {
  private readonly queue: Pending[] = [];
  private head = 0;
  private readonly setTail: Buffer;

  constructor(
    sink: Sink,
    target: Endpoint,
    readonly server: number,
    localAddress: string | undefined,
  ) {
    super(sink, target, localAddress);
    this.setTail = Buffer.from(` 0 0 ${sink.ks.valueSize}\r\n`);
  }

  send(op: ReqOp, idx: number, idxs: number[] | null, startNs: number): void {
    if (!this.open) return;
    const ks = this.sink.ks;
    const w = this.out;
    let n = 1;
    if (op === ReqOp.Get || op === ReqOp.Mget) {
      w.bytes(GET);
      if (idxs) {
        n = idxs.length;
        for (let i = 0; i < n; i++) {
          if (i) w.byte(SP);
          w.bytes(ks.keys[idxs[i]]);
        }
      } else w.bytes(ks.keys[idx]);
      w.bytes(CRLF);
    } else {
      const list = idxs ?? [idx];
      n = list.length;
      for (let i = 0; i < n; i++) {
        w.bytes(SET);
        w.bytes(ks.keys[list[i]]);
        w.bytes(this.setTail);
        w.ensure(ks.valueSize + 2);
        w.pos = ks.writeValue(list[i], w.buf, w.pos);
        w.bytes(CRLF);
      }
    }
    this.queue.push({ op, t: startNs, n, left: op === ReqOp.Set || op === ReqOp.Mset ? n : 0, ok: 0 });
    this.inflight++;
    this.staged();
  }

  private finish(p: Pending, now: number): void {
    this.queue[this.head] = undefined as unknown as Pending;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.inflight--;
    this.sink.done(this, p.t, p.ok, now);
  }

  protected parse(buf: Buffer, now: number): number {
    const sink = this.sink;
    const ks = sink.ks;
    const len = buf.length;
    let off = 0;
    while (off < len) {
      const p = this.queue[this.head];
      if (!p) {
        this.die('answer with nothing in flight');
        return -1;
      }
      const eol = buf.indexOf(13, off);
      if (eol < 0 || eol + 1 >= len) break;
      const c0 = buf[off];
      if (p.op === ReqOp.Set || p.op === ReqOp.Mset) {
        // expect STORED
        if (c0 === 0x53 && buf[off + 1] === 0x54)
          p.ok++; // "STORED"
        else sink.error(errorName(buf, off, eol));
        off = eol + 2;
        if (--p.left === 0) this.finish(p, now);
        continue;
      }
      if (c0 === 0x56) {
        // "VALUE <key> <flags> <bytes>"
        let q = off + 6;
        const ks0 = q;
        while (buf[q] !== SP) q++;
        const keyEnd = q;
        q++;
        while (buf[q] !== SP) q++; // flags
        q++;
        let bytes = 0;
        while (q < eol && buf[q] !== SP) bytes = bytes * 10 + (buf[q++] - 48);
        const dataStart = eol + 2;
        const dataEnd = dataStart + bytes;
        if (dataEnd + 2 > len) break;
        // the key is "<prefix>:<index>": read the index back to know which value to expect
        let idx = 0;
        let r = keyEnd - 1;
        let mul = 1;
        while (r > ks0 && buf[r] !== 0x3a) {
          idx += (buf[r] - 48) * mul;
          mul *= 10;
          r--;
        }
        if (idx < ks.count && ks.keys[idx].equals(buf.subarray(ks0, keyEnd)) && ks.check(idx, buf, dataStart, dataEnd))
          p.ok++;
        else sink.bad(1);
        p.left--; // count values seen as negative left
        off = dataEnd + 2;
        continue;
      }
      if (c0 === 0x45 && buf[off + 1] === 0x4e && buf[off + 2] === 0x44) {
        // "END"
        const seen = -p.left;
        if (seen < p.n) sink.miss(p.n - seen);
        p.left = 0;
        off = eol + 2;
        this.finish(p, now);
        continue;
      }
      sink.error(errorName(buf, off, eol), p.n);
      off = eol + 2;
      p.left = 0;
      this.finish(p, now);
    }
    return off;
  }

  protected failInflight(): void {
    for (let i = this.head; i < this.queue.length; i++) this.sink.error('CONNECTION_LOST', this.queue[i].n);
    this.queue.length = 0;
    this.head = 0;
  }
}

function errorName(buf: Buffer, start: number, end: number): string {
  const line = buf.toString('latin1', start, Math.min(end, start + 40));
  return line.split(' ')[0] || 'MC_ERROR';
}
