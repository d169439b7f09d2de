/**
 * Just enough msgpack for the load generator, written by hand so the client side stays lean: encoding
 * the request maps of docs/PROTOCOL.md into a growable buffer, and reading the response entries in place.
 */
export class Writer {
  buf: Buffer;
  pos = 0;
  constructor(size = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(size);
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }
  bytes(b: Buffer): void {
    this.ensure(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }
  /** Copies out what was written and resets. The copy is the caller's to keep (socket.write holds it). */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    this.pos = 0;
    return out;
  }
}

export function mapHeader(w: Writer, n: number): void {
  if (n < 16) w.byte(0x80 | n);
  else {
    w.ensure(3);
    w.buf[w.pos++] = 0xde;
    w.buf.writeUInt16BE(n, w.pos);
    w.pos += 2;
  }
}

export function arrayHeader(w: Writer, n: number): void {
  w.ensure(5);
  if (n < 16) w.buf[w.pos++] = 0x90 | n;
  else if (n < 0x10000) {
    w.buf[w.pos++] = 0xdc;
    w.buf.writeUInt16BE(n, w.pos);
    w.pos += 2;
  } else {
    w.buf[w.pos++] = 0xdd;
    w.buf.writeUInt32BE(n, w.pos);
    w.pos += 4;
  }
}

export function uint(w: Writer, n: number): void {
  w.ensure(5);
  if (n < 128) w.buf[w.pos++] = n;
  else if (n < 256) {
    w.buf[w.pos++] = 0xcc;
    w.buf[w.pos++] = n;
  } else if (n < 0x10000) {
    w.buf[w.pos++] = 0xcd;
    w.buf.writeUInt16BE(n, w.pos);
    w.pos += 2;
  } else {
    w.buf[w.pos++] = 0xce;
    w.buf.writeUInt32BE(n >>> 0, w.pos);
    w.pos += 4;
  }
}

/** A str of ASCII bytes (field names, keys). */
export function str(w: Writer, b: Buffer): void {
  const n = b.length;
  w.ensure(n + 3);
  if (n < 32) w.buf[w.pos++] = 0xa0 | n;
  else if (n < 256) {
    w.buf[w.pos++] = 0xd9;
    w.buf[w.pos++] = n;
  } else {
    w.buf[w.pos++] = 0xda;
    w.buf.writeUInt16BE(n, w.pos);
    w.pos += 2;
  }
  b.copy(w.buf, w.pos);
  w.pos += n;
}

export function binHeader(w: Writer, n: number): void {
  w.ensure(5);
  if (n < 256) {
    w.buf[w.pos++] = 0xc4;
    w.buf[w.pos++] = n;
  } else if (n < 0x10000) {
    w.buf[w.pos++] = 0xc5;
    w.buf.writeUInt16BE(n, w.pos);
    w.pos += 2;
  } else {
    w.buf[w.pos++] = 0xc6;
    w.buf.writeUInt32BE(n, w.pos);
    w.pos += 4;
  }
}

export const F = {
  id: Buffer.from('id'),
  op: Buffer.from('op'),
  key: Buffer.from('key'),
  keys: Buffer.from('keys'),
  value: Buffer.from('value'),
  items: Buffer.from('items'),
  get: Buffer.from('get'),
  set: Buffer.from('set'),
  mget: Buffer.from('mget'),
  mset: Buffer.from('mset'),
  wait: Buffer.from('wait'),
};

/** Thrown by Reader when the entry is cut short: wait for more bytes. */
export class NeedMore extends Error {}
const NEED_MORE = new NeedMore('need more');

/**
 * Reads msgpack values in place. `str`/`bin` leave their byte range in `start`/`end` instead of copying.
 */
export class Reader {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;
  /** Range of the last str/bin read. */
  s = 0;
  e = 0;

  reset(buf: Buffer, start: number, end: number): void {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw NEED_MORE;
  }

  arrayLen(): number {
    this.need(1);
    const b = this.buf[this.pos++];
    if ((b & 0xf0) === 0x90) return b & 0x0f;
    if (b === 0xdc) {
      this.need(2);
      const n = this.buf.readUInt16BE(this.pos);
      this.pos += 2;
      return n;
    }
    if (b === 0xdd) {
      this.need(4);
      const n = this.buf.readUInt32BE(this.pos);
      this.pos += 4;
      return n;
    }
    throw new Error(`expected array, got 0x${b.toString(16)}`);
  }

  mapLen(): number {
    this.need(1);
    const b = this.buf[this.pos++];
    if ((b & 0xf0) === 0x80) return b & 0x0f;
    if (b === 0xde) {
      this.need(2);
      const n = this.buf.readUInt16BE(this.pos);
      this.pos += 2;
      return n;
    }
    if (b === 0xdf) {
      this.need(4);
      const n = this.buf.readUInt32BE(this.pos);
      this.pos += 4;
      return n;
    }
    throw new Error(`expected map, got 0x${b.toString(16)}`);
  }

  int(): number {
    this.need(1);
    const b = this.buf[this.pos++];
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    let v: number;
    switch (b) {
      case 0xcc:
        this.need(1);
        v = this.buf[this.pos];
        this.pos += 1;
        return v;
      case 0xcd:
        this.need(2);
        v = this.buf.readUInt16BE(this.pos);
        this.pos += 2;
        return v;
      case 0xce:
        this.need(4);
        v = this.buf.readUInt32BE(this.pos);
        this.pos += 4;
        return v;
      case 0xcf:
        this.need(8);
        v = Number(this.buf.readBigUInt64BE(this.pos));
        this.pos += 8;
        return v;
      case 0xd0:
        this.need(1);
        v = this.buf.readInt8(this.pos);
        this.pos += 1;
        return v;
      case 0xd1:
        this.need(2);
        v = this.buf.readInt16BE(this.pos);
        this.pos += 2;
        return v;
      case 0xd2:
        this.need(4);
        v = this.buf.readInt32BE(this.pos);
        this.pos += 4;
        return v;
      case 0xd3:
        this.need(8);
        v = Number(this.buf.readBigInt64BE(this.pos));
        this.pos += 8;
        return v;
      default:
        throw new Error(`expected int, got 0x${b.toString(16)}`);
    }
  }

  /** A str or bin; its bytes are buf[s, e). */
  bytes(): void {
    this.need(1);
    const b = this.buf[this.pos++];
    let n: number;
    if ((b & 0xe0) === 0xa0) n = b & 0x1f;
    else if (b === 0xc4 || b === 0xd9) {
      this.need(1);
      n = this.buf[this.pos];
      this.pos += 1;
    } else if (b === 0xc5 || b === 0xda) {
      this.need(2);
      n = this.buf.readUInt16BE(this.pos);
      this.pos += 2;
    } else if (b === 0xc6 || b === 0xdb) {
      this.need(4);
      n = this.buf.readUInt32BE(this.pos);
      this.pos += 4;
    } else throw new Error(`expected str/bin, got 0x${b.toString(16)}`);
    this.need(n);
    this.s = this.pos;
    this.e = this.pos + n;
    this.pos += n;
  }

  /** Skips one value of any type (used for trailing fields a newer server might add). */
  skip(): void {
    this.need(1);
    const b = this.buf[this.pos];
    if (b < 0x80 || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) {
      this.int();
      return;
    }
    if ((b & 0xe0) === 0xa0 || (b >= 0xc4 && b <= 0xc6) || (b >= 0xd9 && b <= 0xdb)) {
      this.bytes();
      return;
    }
    if ((b & 0xf0) === 0x90 || b === 0xdc || b === 0xdd) {
      const n = this.arrayLen();
      for (let i = 0; i < n; i++) this.skip();
      return;
    }
    if ((b & 0xf0) === 0x80) {
      this.pos++;
      const n = (b & 0x0f) * 2;
      for (let i = 0; i < n; i++) this.skip();
      return;
    }
    if (b === 0xc0 || b === 0xc2 || b === 0xc3) {
      this.pos++;
      return;
    }
    if (b === 0xcb) {
      this.need(9);
      this.pos += 9;
      return;
    }
    if (b === 0xca) {
      this.need(5);
      this.pos += 5;
      return;
    }
    throw new Error(`cannot skip msgpack type 0x${b.toString(16)}`);
  }

  text(): string {
    this.bytes();
    return this.buf.toString('utf8', this.s, this.e);
  }
}
