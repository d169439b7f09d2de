/**
 * A keep-alive HTTP/1.1 client over a `net` socket for `GET /v1/kv/{key}` and `POST /v1/mget`
 * (msgpack body: one array of keys; response: the WebSocket entries with id 0). Requests on one
 * connection are pipelined up to the configured depth and answered in order.
 */
import { Writer, Reader, arrayHeader, str } from '../lib/mp';
import { ReqOp, type Sink } from './conn';
import { StreamConn } from './stream-conn';
import { authHeader, type Endpoint } from './types';

interface Pending {
  op: ReqOp;
  t: number;
  idx: number;
  idxs: number[] | null;
  n: number;
}

const HEAD_END = Buffer.from('\r\n\r\n');

export class HttpConn extends StreamConn {
  readonly server = 0;
  private readonly body = new Writer(4 * 1024);
  private readonly reader = new Reader();
  private readonly queue: Pending[] = [];
  private readonly hostHeader: string;

  constructor(sink: Sink, target: Endpoint, localAddress: string | undefined) {
    super(sink, target, localAddress);
    this.hostHeader = `Host: ${target.host}:${target.port}\r\n${authHeader(target)}`;
  }

  send(op: ReqOp, idx: number, idxs: number[] | null, startNs: number): void {
    if (!this.open) return;
    const ks = this.sink.ks;
    const w = this.out;
    let n = 1;
    if (op === ReqOp.Get) {
      w.bytes(
        Buffer.from(
          `GET /v1/kv/${encodeURIComponent(ks.keyStrings[idx])} HTTP/1.1\r\n${this.hostHeader}\r\n`,
          'latin1',
        ),
      );
    } else if (op === ReqOp.Mget) {
      const list = idxs as number[];
      n = list.length;
      const b = this.body;
      b.pos = 0;
      arrayHeader(b, n);
      for (let i = 0; i < n; i++) str(b, ks.keys[list[i]]);
      w.bytes(
        Buffer.from(
          `POST /v1/mget HTTP/1.1\r\n${this.hostHeader}Content-Type: application/msgpack\r\n` +
            `Content-Length: ${b.pos}\r\n\r\n`,
          'latin1',
        ),
      );
      w.ensure(b.pos);
      b.buf.copy(w.buf, w.pos, 0, b.pos);
      w.pos += b.pos;
    } else {
      throw new Error('the HTTP driver does single-key GET and mget only');
    }
    this.queue.push({ op, t: startNs, idx, idxs, n });
    this.inflight++;
    this.staged();
  }

  protected parse(buf: Buffer, now: number): number {
    let off = 0;
    for (;;) {
      const used = this.response(buf, off, now);
      if (used < 0) {
        this.die('bad HTTP response');
        return -1;
      }
      if (used === 0) break;
      off += used;
      if (off >= buf.length) break;
    }
    return off;
  }

  /** Parses one complete response at buf[off]: bytes used, 0 if incomplete, -1 if malformed. */
  private response(buf: Buffer, off: number, now: number): number {
    const he = buf.indexOf(HEAD_END, off);
    if (he < 0) return 0;
    const head = buf.toString('latin1', off, he);
    const status = Number(head.slice(9, 12));
    let bodyStart = he + 4;
    let bodyEnd: number;
    let end: number;
    const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
    let body: Buffer = buf;
    if (cl) {
      bodyEnd = bodyStart + Number(cl[1]);
      if (bodyEnd > buf.length) return 0;
      end = bodyEnd;
    } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      const parts: Buffer[] = [];
      let q = bodyStart;
      for (;;) {
        const le = buf.indexOf(13, q);
        if (le < 0 || le + 1 >= buf.length) return 0;
        const size = parseInt(buf.toString('latin1', q, le), 16);
        if (!Number.isFinite(size)) return -1;
        if (le + 2 + size + 2 > buf.length) return 0;
        if (size === 0) {
          end = le + 4;
          break;
        }
        parts.push(buf.subarray(le + 2, le + 2 + size));
        q = le + 2 + size + 2;
      }
      body = Buffer.concat(parts);
      bodyStart = 0;
      bodyEnd = body.length;
    } else {
      bodyEnd = bodyStart;
      end = bodyStart;
    }
    const p = this.queue.shift();
    if (!p) return -1;
    this.inflight--;
    const sink = this.sink;
    let ok = 0;
    if (p.op === ReqOp.Get) {
      if (status === 200) {
        if (sink.ks.check(p.idx, body, bodyStart, bodyEnd)) ok = 1;
        else sink.bad(1);
      } else if (status === 404) sink.miss(1);
      else sink.error(`HTTP_${status}`);
    } else if (status !== 200) {
      sink.error(`HTTP_${status}`, p.n);
    } else ok = this.entries(p, body, bodyStart, bodyEnd);
    sink.done(this, p.t, ok, now);
    return end - off;
  }

  private entries(p: Pending, buf: Buffer, start: number, end: number): number {
    const r = this.reader;
    const sink = this.sink;
    const ks = sink.ks;
    const seen = new Uint8Array(p.n);
    const parts = new Map<number, number>();
    let settled = 0;
    let ok = 0;
    let ended = false;
    const item = (i: number): boolean => {
      if (i < 0 || i >= p.n || seen[i]) {
        sink.error('DUPLICATE_ITEM');
        return false;
      }
      seen[i] = 1;
      settled++;
      return true;
    };
    r.reset(buf, start, end);
    try {
      while (r.pos < end) {
        const fields = r.arrayLen();
        r.int();
        const i = r.int();
        const kind = r.int();
        let used = 3;
        const idx = p.idxs ? p.idxs[i] : p.idx;
        if (kind === 0) {
          r.int();
          r.bytes();
          used += 2;
          if (item(i)) {
            if (ks.check(idx, r.buf, r.s, r.e)) ok++;
            else sink.bad(1);
          }
        } else if (kind === 1) {
          r.int();
          const total = r.int();
          const offset = r.int();
          r.bytes();
          used += 4;
          const got = parts.get(i) ?? 0;
          if (offset !== got || !ks.checkRange(idx, offset, r.buf, r.s, r.e)) {
            sink.bad(1);
            parts.set(i, -1e15);
          } else parts.set(i, got + r.e - r.s);
          if (offset + r.e - r.s >= total && item(i) && parts.get(i) === total) ok++;
        } else if (kind === 2) {
          if (item(i)) sink.miss(1);
        } else if (kind === 3) {
          if (item(i)) ok++;
        } else if (kind === 4) {
          const code = r.text();
          r.skip();
          used += 2;
          if (i === -1) {
            sink.error(code, p.n - settled);
            settled = p.n;
          } else if (item(i)) sink.error(code);
        } else if (kind === 5) {
          ended = true;
        }
        for (; used < fields; used++) r.skip();
      }
    } catch {
      sink.error('BAD_RESPONSE', p.n - settled);
      return ok;
    }
    if (!ended) sink.error('NO_END');
    if (settled < p.n) sink.error('INCOMPLETE', p.n - settled);
    return ok;
  }

  protected failInflight(): void {
    for (const p of this.queue) this.sink.error('CONNECTION_LOST', p.n);
    this.queue.length = 0;
  }
}
