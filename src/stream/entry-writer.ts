/**
 * Encodes result entries (docs/PROTOCOL.md: `[id, i, kind, ...]` msgpack arrays) straight into pooled
 * 16 KiB buffers. A buffer is shipped when full or at the end of the callback (flush-list), so one frame
 * carries every result that was ready. Values that do not fit in what is left of a frame are cut into
 * VALUE_PART entries, so no frame ever exceeds 16 KiB and nothing is allocated per value.
 */
import { BUFFER_SIZE, BufferPool } from './buffer-pool';
import { Flushable, markForFlush } from './flush-list';

export const enum Kind {
  Value = 0,
  Part = 1,
  Miss = 2,
  Ok = 3,
  Error = 4,
  End = 5,
}

/** Worst case bytes of a PART entry without its chunk: array + id + i + kind + flags + total + offset + bin32. */
const PART_HEAD_MAX = 1 + 5 + 5 + 1 + 5 + 5 + 5 + 5;
const SMALL_TAIL = 256;
/** Error codes and messages are cut to this many bytes (a str8 header always fits it). */
export const MAX_MESSAGE_BYTES = 255;
/** Worst case bytes of an ERROR entry: array + id + i + kind + two str8s. */
const ERROR_MAX = 1 + 5 + 5 + 1 + 2 * (2 + MAX_MESSAGE_BYTES);
/** C0 and C1 control characters and DEL: nothing a person should get in a message, nor a terminal. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_ALL = /[\u0000-\u001f\u007f-\u009f]/g;

export abstract class EntryWriter implements Flushable {
  queuedForFlush = false;
  protected buf: Buffer | null = null;
  protected len = 0;

  constructor(protected readonly pool: BufferPool) {}

  /** Bytes written into the current, not yet shipped frame. */
  get unshipped(): number {
    return this.len;
  }

  /** Takes ownership of a filled buffer: ship it and release it to the pool. */
  protected abstract ship(buf: Buffer, len: number): void;
  /** True once the peer is gone: entries are dropped. */
  abstract isClosed(): boolean;

  flush(): void {
    const b = this.buf;
    if (b === null) return;
    const l = this.len;
    this.buf = null;
    this.len = 0;
    if (l === 0) this.pool.release(b);
    else this.ship(b, l);
  }

  /** Drops any unsent output (peer gone). */
  protected discard(): void {
    if (this.buf !== null) this.pool.release(this.buf);
    this.buf = null;
    this.len = 0;
  }

  private room(n: number): Buffer {
    let b = this.buf;
    if (b !== null && this.len + n <= BUFFER_SIZE) return b;
    if (b !== null) this.flush();
    b = this.buf = this.pool.acquire();
    this.len = 0;
    markForFlush(this);
    return b;
  }

  value(
    id: number,
    i: number,
    flags: number,
    total: number,
    offset: number,
    src: Buffer,
    off: number,
    n: number,
  ): void {
    if (this.isClosed()) return;
    if (offset === 0 && n === total && total + PART_HEAD_MAX <= BUFFER_SIZE) {
      const b = this.room(total + PART_HEAD_MAX);
      let p = this.len;
      b[p++] = 0x95;
      p = putUint(b, p, id);
      p = putInt(b, p, i);
      b[p++] = Kind.Value;
      p = putUint(b, p, flags);
      p = putBinHeader(b, p, n);
      copyBytes(src, off, n, b, p);
      this.len = p + n;
      return;
    }
    while (n > 0) {
      // Avoid a sliver of a part at a frame's end: start a fresh frame instead.
      const space = this.buf === null ? 0 : BUFFER_SIZE - this.len - PART_HEAD_MAX;
      if (space < SMALL_TAIL && space < n) this.room(BUFFER_SIZE);
      const b = this.room(PART_HEAD_MAX + 1);
      let p = this.len;
      b[p++] = 0x97;
      p = putUint(b, p, id);
      p = putInt(b, p, i);
      b[p++] = Kind.Part;
      p = putUint(b, p, flags);
      p = putUint(b, p, total);
      p = putUint(b, p, offset);
      // Fill the frame to the byte (a bin16 header is 3 bytes), so full frames go out without a view.
      const fit = BUFFER_SIZE - p - 3;
      const k = n < fit ? n : fit;
      p = putBinHeader(b, p, k);
      copyBytes(src, off, k, b, p);
      this.len = p + k;
      off += k;
      n -= k;
      offset += k;
    }
  }

  /** MISS, OK and END entries: three small fields. */
  simple(id: number, i: number, kind: Kind): void {
    if (this.isClosed()) return;
    const b = this.room(16);
    let p = this.len;
    b[p++] = 0x93;
    p = putUint(b, p, id);
    p = putInt(b, p, i);
    b[p++] = kind;
    this.len = p;
  }

  /**
   * Messages may carry a backend's words (a SERVER_ERROR line, read as latin1), so they are made safe for
   * any client here: control bytes become U+FFFD, lone surrogates are written as U+FFFD (what UTF-8
   * encoding does with them), and the text is cut at MAX_MESSAGE_BYTES on a character boundary.
   */
  error(id: number, i: number, code: string, message: string): void {
    if (this.isClosed()) return;
    const b = this.room(ERROR_MAX);
    let p = this.len;
    b[p++] = 0x95;
    p = putUint(b, p, id);
    p = putInt(b, p, i);
    b[p++] = Kind.Error;
    p = putStr(b, p, code);
    p = putStr(b, p, CONTROL.test(message) ? message.replace(CONTROL_ALL, '\ufffd') : message);
    this.len = p;
  }
}

/**
 * Buffer.copy allocates a view per call in Node 20 but is ~6x faster than a JS loop from about 64 bytes
 * up (bench/micro: 16 ns against 101 ns for 100 B); tiny values are copied by hand.
 */
function copyBytes(src: Buffer, off: number, n: number, dst: Buffer, p: number): void {
  if (n > 48) {
    src.copy(dst, p, off, off + n);
    return;
  }
  for (let k = 0; k < n; k++) dst[p + k] = src[off + k];
}

function putUint(b: Buffer, p: number, v: number): number {
  if (v < 0x80) {
    b[p] = v;
    return p + 1;
  }
  if (v < 0x100) {
    b[p] = 0xcc;
    b[p + 1] = v;
    return p + 2;
  }
  if (v < 0x10000) {
    b[p] = 0xcd;
    b[p + 1] = v >>> 8;
    b[p + 2] = v & 0xff;
    return p + 3;
  }
  b[p] = 0xce;
  b.writeUInt32BE(v >>> 0, p + 1);
  return p + 5;
}

function putInt(b: Buffer, p: number, v: number): number {
  if (v >= 0) return putUint(b, p, v);
  if (v >= -32) {
    b[p] = v & 0xff;
    return p + 1;
  }
  b[p] = 0xd2;
  b.writeInt32BE(v, p + 1);
  return p + 5;
}

function putBinHeader(b: Buffer, p: number, n: number): number {
  if (n < 0x100) {
    b[p] = 0xc4;
    b[p + 1] = n;
    return p + 2;
  }
  if (n < 0x10000) {
    b[p] = 0xc5;
    b[p + 1] = n >>> 8;
    b[p + 2] = n & 0xff;
    return p + 3;
  }
  b[p] = 0xc6;
  b.writeUInt32BE(n, p + 1);
  return p + 5;
}

/**
 * Writes a str of at most MAX_MESSAGE_BYTES. The header must count the bytes written, not the characters:
 * Buffer.write never splits a character, so a cut string is written first and its header fixed after.
 */
function putStr(b: Buffer, p: number, s: string): number {
  const n = Buffer.byteLength(s);
  if (n <= MAX_MESSAGE_BYTES) {
    if (n < 32) b[p++] = 0xa0 | n;
    else {
      b[p++] = 0xd9;
      b[p++] = n;
    }
    return p + b.write(s, p, n, 'utf8');
  }
  // A character is at most 4 bytes, so the cut keeps at least 252: still a str8.
  const w = b.write(s, p + 2, MAX_MESSAGE_BYTES, 'utf8');
  b[p] = 0xd9;
  b[p + 1] = w;
  return p + 2 + w;
}
