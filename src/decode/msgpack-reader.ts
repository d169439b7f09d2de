/**
 * A msgpack reader over a byte range with an explicit cursor, for the few shapes requests use. Strings and
 * bins are not materialised: readBytes() leaves their position in `off` / `len`, so a key can be validated,
 * hashed and copied into a shard's command buffer without a JS string or a Buffer per key.
 *
 * Truncated input throws INCOMPLETE (streaming bodies wait for more bytes); malformed input throws a
 * MsgpackError with a message for the client. Nothing here recurses: client bytes decide how deep values
 * nest, so skip() walks with an explicit, bounded stack and refuses nesting past MAX_DEPTH.
 */
export class MsgpackError extends Error {}
export const INCOMPLETE = new MsgpackError('incomplete msgpack value');

/**
 * Containers one skip() may have open at once. A request is at most a map of arrays of maps of scalars
 * (4 levels); the slack is for whatever a client puts in fields we ignore.
 */
export const MAX_DEPTH = 32;
export const TOO_DEEP = new MsgpackError(`msgpack nested deeper than ${MAX_DEPTH} levels`);

export const enum MpType {
  Nil,
  Bool,
  Int,
  Float,
  Str,
  Bin,
  Array,
  Map,
  Ext,
}

export class MsgpackReader {
  buf: Uint8Array = new Uint8Array(0);
  pos = 0;
  end = 0;
  /** Set by readBytes(): where the last str/bin's bytes are. */
  off = 0;
  len = 0;
  /** After INCOMPLETE: the value cannot be whole before buf[want] (a streaming caller waits for that). */
  want = 0;
  /** Containers a skip() that ran out of bytes left open; resumeSkip() carries on from there. */
  open = 0;
  /** Values left in each open container (maps count keys and values). */
  private readonly left = new Float64Array(MAX_DEPTH);
  /** Value headers read by skip(): a measure of work, for tests that check it stays linear. */
  steps = 0;

  reset(buf: Uint8Array, pos: number, end: number): this {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
    return this;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): void {
    if (this.pos + n > this.end) {
      this.want = this.pos + n;
      throw INCOMPLETE;
    }
  }

  private u8(): number {
    this.need(1);
    return this.buf[this.pos++];
  }

  private be(n: number): number {
    this.need(n);
    const b = this.buf;
    let p = this.pos;
    let v = 0;
    for (let k = 0; k < n; k++) v = v * 256 + b[p++];
    this.pos = p;
    return v;
  }

  peekType(): MpType {
    this.need(1);
    const c = this.buf[this.pos];
    if (c <= 0x7f || c >= 0xe0) return MpType.Int;
    if (c <= 0x8f) return MpType.Map;
    if (c <= 0x9f) return MpType.Array;
    if (c <= 0xbf) return MpType.Str;
    switch (c) {
      case 0xc0:
        return MpType.Nil;
      case 0xc2:
      case 0xc3:
        return MpType.Bool;
      case 0xc4:
      case 0xc5:
      case 0xc6:
        return MpType.Bin;
      case 0xca:
      case 0xcb:
        return MpType.Float;
      case 0xd9:
      case 0xda:
      case 0xdb:
        return MpType.Str;
      case 0xdc:
      case 0xdd:
        return MpType.Array;
      case 0xde:
      case 0xdf:
        return MpType.Map;
      case 0xc7:
      case 0xc8:
      case 0xc9:
      case 0xd4:
      case 0xd5:
      case 0xd6:
      case 0xd7:
      case 0xd8:
        return MpType.Ext;
      default:
        if (c >= 0xcc && c <= 0xd3) return MpType.Int;
        throw new MsgpackError(`invalid msgpack byte 0x${c.toString(16)}`);
    }
  }

  readMapHeader(): number {
    const c = this.u8();
    if (c >= 0x80 && c <= 0x8f) return c & 0x0f;
    if (c === 0xde) return this.be(2);
    if (c === 0xdf) return this.be(4);
    this.pos--;
    throw new MsgpackError('expected a map');
  }

  readArrayHeader(): number {
    const c = this.u8();
    if (c >= 0x90 && c <= 0x9f) return c & 0x0f;
    if (c === 0xdc) return this.be(2);
    if (c === 0xdd) return this.be(4);
    this.pos--;
    throw new MsgpackError('expected an array');
  }

  /** Reads an integer; floats with an integral value are accepted since some encoders emit them. */
  readNumber(): number {
    const c = this.u8();
    if (c <= 0x7f) return c;
    if (c >= 0xe0) return c - 0x100;
    const b = this.buf;
    switch (c) {
      case 0xcc:
        return this.be(1);
      case 0xcd:
        return this.be(2);
      case 0xce:
        return this.be(4);
      case 0xcf: {
        const hi = this.be(4);
        return hi * 4294967296 + this.be(4);
      }
      case 0xd0: {
        const v = this.be(1);
        return v > 0x7f ? v - 0x100 : v;
      }
      case 0xd1: {
        const v = this.be(2);
        return v > 0x7fff ? v - 0x10000 : v;
      }
      case 0xd2: {
        const v = this.be(4);
        return v > 0x7fffffff ? v - 0x100000000 : v;
      }
      case 0xd3: {
        const hi = this.be(4);
        const lo = this.be(4);
        return (hi > 0x7fffffff ? hi - 0x100000000 : hi) * 4294967296 + lo;
      }
      case 0xca: {
        this.need(4);
        const v = new DataView(b.buffer, b.byteOffset + this.pos, 4).getFloat32(0);
        this.pos += 4;
        return v;
      }
      case 0xcb: {
        this.need(8);
        const v = new DataView(b.buffer, b.byteOffset + this.pos, 8).getFloat64(0);
        this.pos += 8;
        return v;
      }
    }
    this.pos--;
    throw new MsgpackError('expected a number');
  }

  /** Reads a str or bin, leaving its bytes at buf[off, off+len). Returns false for anything else (cursor unmoved). */
  readBytes(): boolean {
    this.need(1);
    const c = this.buf[this.pos];
    let n: number;
    if (c >= 0xa0 && c <= 0xbf) {
      this.pos++;
      n = c & 0x1f;
    } else if (c === 0xd9 || c === 0xc4) {
      this.pos++;
      n = this.be(1);
    } else if (c === 0xda || c === 0xc5) {
      this.pos++;
      n = this.be(2);
    } else if (c === 0xdb || c === 0xc6) {
      this.pos++;
      n = this.be(4);
    } else return false;
    this.need(n);
    this.off = this.pos;
    this.len = n;
    this.pos += n;
    return true;
  }

  /** Compares the last readBytes() result with an ASCII literal. */
  bytesEqual(lit: string): boolean {
    if (this.len !== lit.length) return false;
    const b = this.buf,
      o = this.off;
    for (let k = 0; k < lit.length; k++) if (b[o + k] !== lit.charCodeAt(k)) return false;
    return true;
  }

  /** Skips one whole value of any type. */
  skip(): void {
    this.open = 0;
    this.resumeSkip();
  }

  /**
   * Skips values until every container open in this skip is closed. On INCOMPLETE, `pos` is left at the
   * start of the value that did not fit and `open` / `left` say what is still open, so a streaming caller
   * can move `pos` (by as much as it moves its bytes) and call this again once more bytes have arrived,
   * instead of skipping the whole item from its start on every chunk.
   */
  resumeSkip(): void {
    const left = this.left;
    const buf = this.buf;
    let depth = this.open;
    let at = this.pos;
    let steps = 0;
    try {
      for (;;) {
        at = this.pos;
        steps++;
        // Scalars and short strings, most of what requests hold, without a call.
        const c = at < this.end ? buf[at] : -1;
        let n = 0;
        if (c >= 0 && (c <= 0x7f || c >= 0xe0 || c === 0xc0 || c === 0xc2 || c === 0xc3)) this.pos = at + 1;
        else if (c >= 0xa0 && c <= 0xbf) {
          this.pos = at + 1;
          this.advance(c & 0x1f);
        } else n = this.head();
        if (n > 0) {
          if (depth === MAX_DEPTH) throw TOO_DEEP;
          left[depth++] = n;
          continue;
        }
        // One value done (a scalar or an empty container): close every container it completes.
        for (;;) {
          if (depth === 0) {
            this.open = 0;
            this.steps += steps;
            return;
          }
          if (--left[depth - 1] > 0) break;
          depth--;
        }
      }
    } catch (e) {
      this.pos = at;
      this.open = depth;
      this.steps += steps;
      throw e;
    }
  }

  /** Reads one value's header and skips its bytes; returns how many values a container holds, else 0. */
  private head(): number {
    const c = this.u8();
    if (c <= 0x7f || c >= 0xe0 || c === 0xc0 || c === 0xc2 || c === 0xc3) return 0;
    if (c <= 0x8f) return (c & 0x0f) * 2;
    if (c <= 0x9f) return c & 0x0f;
    if (c <= 0xbf) return this.advance(c & 0x1f);
    switch (c) {
      case 0xcc:
      case 0xd0:
        return this.advance(1);
      case 0xcd:
      case 0xd1:
        return this.advance(2);
      case 0xce:
      case 0xd2:
      case 0xca:
        return this.advance(4);
      case 0xcf:
      case 0xd3:
      case 0xcb:
        return this.advance(8);
      case 0xd9:
      case 0xc4:
        return this.advance(this.be(1));
      case 0xda:
      case 0xc5:
        return this.advance(this.be(2));
      case 0xdb:
      case 0xc6:
        return this.advance(this.be(4));
      case 0xdc:
        return this.be(2);
      case 0xdd:
        return this.be(4);
      case 0xde:
        return this.be(2) * 2;
      case 0xdf:
        return this.be(4) * 2;
      case 0xd4:
        return this.advance(2);
      case 0xd5:
        return this.advance(3);
      case 0xd6:
        return this.advance(5);
      case 0xd7:
        return this.advance(9);
      case 0xd8:
        return this.advance(17);
      case 0xc7:
        return this.advance(this.be(1) + 1);
      case 0xc8:
        return this.advance(this.be(2) + 1);
      case 0xc9:
        return this.advance(this.be(4) + 1);
    }
    this.pos--;
    throw new MsgpackError(`invalid msgpack byte 0x${c.toString(16)}`);
  }

  private advance(n: number): number {
    this.need(n);
    this.pos += n;
    return 0;
  }
}
