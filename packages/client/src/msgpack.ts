/**
 * The msgpack this client needs, and nothing more: encoding request maps (str, bin, uint, arrays, maps)
 * and decoding the gateway's entry arrays. Written here rather than bundled from a library so that the
 * browser build stays a few KiB and runs on plain Uint8Array (no Buffer).
 *
 * Ownership: `encode` returns a fresh Uint8Array the caller owns. `Decoder` returns bin values as views
 * into the bytes it was given (no copy): callers that keep one past the message must copy it.
 */

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Thrown by `Decoder` when the bytes end inside a value: more input may complete it. */
export class Incomplete extends Error {
  constructor() {
    super('msgpack value incomplete');
  }
}

/** A growable byte buffer that encodes msgpack values. */
export class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  pos = 0;

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  private u8(b: number): void {
    this.room(1);
    this.buf[this.pos++] = b;
  }

  private head(small: number, smallMax: number, codes: [number, number, number], n: number): void {
    this.room(5);
    if (n <= smallMax && small >= 0) this.buf[this.pos++] = small | n;
    else if (n < 0x100 && codes[0] !== 0) {
      this.buf[this.pos++] = codes[0];
      this.buf[this.pos++] = n;
    } else if (n < 0x10000) {
      this.buf[this.pos++] = codes[1];
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = codes[2];
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
  }

  value(v: unknown): void {
    if (v === null || v === undefined) this.u8(0xc0);
    else if (typeof v === 'boolean') this.u8(v ? 0xc3 : 0xc2);
    else if (typeof v === 'number') this.number(v);
    else if (typeof v === 'string') this.bytes(utf8.encode(v), 0xa0);
    else if (v instanceof Uint8Array) this.bytes(v, -1);
    else if (Array.isArray(v)) {
      this.head(0x90, 15, [0, 0xdc, 0xdd], v.length);
      for (const x of v) this.value(x);
    } else if (typeof v === 'object') {
      const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
      this.head(0x80, 15, [0, 0xde, 0xdf], entries.length);
      for (const [k, x] of entries) {
        this.value(k);
        this.value(x);
      }
    } else throw new TypeError(`cannot encode a ${typeof v} as msgpack`);
  }

  private number(n: number): void {
    this.room(9);
    if (Number.isInteger(n) && n >= 0 && n <= 0xffffffff) {
      if (n < 0x80) this.buf[this.pos++] = n;
      else if (n < 0x100) {
        this.buf[this.pos++] = 0xcc;
        this.buf[this.pos++] = n;
      } else if (n < 0x10000) {
        this.buf[this.pos++] = 0xcd;
        this.view.setUint16(this.pos, n);
        this.pos += 2;
      } else {
        this.buf[this.pos++] = 0xce;
        this.view.setUint32(this.pos, n);
        this.pos += 4;
      }
    } else if (Number.isInteger(n) && n < 0 && n >= -0x80000000) {
      if (n >= -32) this.buf[this.pos++] = n & 0xff;
      else {
        this.buf[this.pos++] = 0xd2;
        this.view.setInt32(this.pos, n);
        this.pos += 4;
      }
    } else {
      this.buf[this.pos++] = 0xcb;
      this.view.setFloat64(this.pos, n);
      this.pos += 8;
    }
  }

  /** str (`strBase` 0xa0) or bin (`strBase` -1) */
  private bytes(b: Uint8Array, strBase: number): void {
    if (strBase >= 0) this.head(0xa0, 31, [0xd9, 0xda, 0xdb], b.length);
    else this.head(-1, -1, [0xc4, 0xc5, 0xc6], b.length);
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** The bytes written so far, as a copy; the writer is reset. */
  take(): Uint8Array {
    const out = this.buf.slice(0, this.pos);
    this.pos = 0;
    return out;
  }
}

export function encode(v: unknown): Uint8Array {
  const w = new Writer();
  w.value(v);
  return w.take();
}

/** Decodes a msgpack stream (concatenated values). */
export class Decoder {
  private view: DataView;
  pos = 0;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get done(): boolean {
    return this.pos >= this.bytes.length;
  }

  private need(n: number): number {
    const at = this.pos;
    if (at + n > this.bytes.length) throw new Incomplete();
    this.pos += n;
    return at;
  }

  private len(size: 1 | 2 | 4): number {
    const at = this.need(size);
    return size === 1 ? this.bytes[at] : size === 2 ? this.view.getUint16(at) : this.view.getUint32(at);
  }

  private raw(n: number): Uint8Array {
    const at = this.need(n);
    return this.bytes.subarray(at, at + n);
  }

  private str(n: number): string {
    return fromUtf8.decode(this.raw(n));
  }

  private array(n: number, depth: number): unknown[] {
    const out = new Array<unknown>(n);
    for (let k = 0; k < n; k++) out[k] = this.value(depth + 1);
    return out;
  }

  private map(n: number, depth: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (let k = 0; k < n; k++) {
      const key = this.value(depth + 1);
      out[String(key)] = this.value(depth + 1);
    }
    return out;
  }

  /** One value; throws Incomplete when the bytes end inside it (the position is then unspecified). */
  value(depth = 0): unknown {
    if (depth > 32) throw new Error('msgpack nested too deep');
    const t = this.bytes[this.need(1)];
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 0x100;
    if (t < 0x90) return this.map(t & 0x0f, depth);
    if (t < 0xa0) return this.array(t & 0x0f, depth);
    if (t < 0xc0) return this.str(t & 0x1f);
    const v = this.view;
    switch (t) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.raw(this.len(1));
      case 0xc5:
        return this.raw(this.len(2));
      case 0xc6:
        return this.raw(this.len(4));
      case 0xca:
        return v.getFloat32(this.need(4));
      case 0xcb:
        return v.getFloat64(this.need(8));
      case 0xcc:
        return this.len(1);
      case 0xcd:
        return this.len(2);
      case 0xce:
        return this.len(4);
      case 0xcf: {
        const at = this.need(8);
        return v.getUint32(at) * 0x100000000 + v.getUint32(at + 4);
      }
      case 0xd0:
        return v.getInt8(this.need(1));
      case 0xd1:
        return v.getInt16(this.need(2));
      case 0xd2:
        return v.getInt32(this.need(4));
      case 0xd3: {
        const at = this.need(8);
        return v.getInt32(at) * 0x100000000 + v.getUint32(at + 4);
      }
      case 0xd9:
        return this.str(this.len(1));
      case 0xda:
        return this.str(this.len(2));
      case 0xdb:
        return this.str(this.len(4));
      case 0xdc:
        return this.array(this.len(2), depth);
      case 0xdd:
        return this.array(this.len(4), depth);
      case 0xde:
        return this.map(this.len(2), depth);
      case 0xdf:
        return this.map(this.len(4), depth);
      default:
        throw new Error(`unsupported msgpack type 0x${t.toString(16)}`);
    }
  }
}

/** Every value of a complete msgpack stream; throws if the stream ends inside a value. */
export function decodeAll(bytes: Uint8Array): unknown[] {
  const d = new Decoder(bytes);
  const out: unknown[] = [];
  while (!d.done) out.push(d.value());
  return out;
}
