/**
 * Bulk bodies arrive in chunks of any size and items straddle chunks. These accumulators keep the
 * unconsumed tail (buffer + start + end, compacted as it is consumed) and hand out whole items:
 * msgpack values for the msgpack format, lines for NDJSON. `maxItemBytes` bounds what one item may hold.
 *
 * A client may drip an item in tiny pieces, so neither accumulator looks at a byte of the partial item
 * twice: each remembers how far it got (relative to `start`, so compaction does not move it) and carries
 * on from there when more bytes arrive. The work for an item is linear in its size, however it is cut.
 */
import { INCOMPLETE, MsgpackError, MsgpackReader, MpType } from './msgpack-reader';

export class BodyTooLarge extends Error {}

const enum Ch {
  Newline = 0x0a,
} // '\n'

class Accumulator {
  buf: Buffer = Buffer.allocUnsafeSlow(16 * 1024);
  start = 0;
  end = 0;

  constructor(protected readonly maxItemBytes: number) {
    this.buf[0] = Ch.Newline;
  }

  /**
   * Never throws: a chunk may hold many items, so the size bound is checked per item by the reader side
   * (the tail held here is at most one partial item plus the last chunk). One byte past `end` is always
   * free, for NdjsonLines' sentinel.
   */
  append(src: Uint8Array): void {
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
    }
    if (this.end + src.length >= this.buf.length) {
      const live = this.end - this.start;
      let size = this.buf.length;
      while (size <= live + src.length) size *= 2;
      const next = size === this.buf.length ? this.buf : Buffer.allocUnsafeSlow(size);
      this.buf.copy(next, 0, this.start, this.end);
      this.buf = next;
      this.start = 0;
      this.end = live;
    }
    this.buf.set(src, this.end);
    this.end += src.length;
    this.buf[this.end] = Ch.Newline;
  }

  get buffered(): number {
    return this.end - this.start;
  }

  protected tooLarge(): BodyTooLarge {
    return new BodyTooLarge(`an item is larger than ${this.maxItemBytes} bytes`);
  }
}

/**
 * msgpack items, concatenated, or wrapped in one top-level array. `next()` positions `reader` on the next
 * whole item and returns true; false means more bytes are needed. The caller reads the item with `reader`
 * and then calls `consumed()`.
 */
export class MsgpackItems extends Accumulator {
  readonly reader = new MsgpackReader();
  private arrayLeft = -1; // -1: not inside a top-level array
  private sawAny = false;
  /** A partial item: where its skip stopped (-1: none), and how long it must be before trying again. */
  private scan = -1;
  private wantLen = 0;

  next(): boolean {
    if (this.arrayLeft === 0) {
      if (this.end > this.start) throw new MsgpackError('bytes after the top-level array');
      return false;
    }
    const live = this.end - this.start;
    if (live === 0) return false;
    const r = this.reader;
    if (!this.sawAny) {
      r.reset(this.buf, this.start, this.end);
      try {
        if (r.peekType() === MpType.Array) {
          this.arrayLeft = r.readArrayHeader();
          this.start = r.pos;
          this.sawAny = true;
          return this.next();
        }
      } catch (e) {
        if (e === INCOMPLETE) return false;
        throw e;
      }
    }
    try {
      if (this.scan >= 0) {
        // The skip's open containers are still in the reader (nobody reads with it before an item is whole).
        if (live < this.wantLen) return false;
        r.reset(this.buf, this.start + this.scan, this.end);
        r.resumeSkip();
      } else {
        r.reset(this.buf, this.start, this.end);
        r.skip();
      }
    } catch (e) {
      if (e !== INCOMPLETE) throw e;
      this.sawAny = true;
      this.scan = r.pos - this.start;
      this.wantLen = r.want - this.start;
      // Refused as soon as a header announces more than an item may hold, before buffering it.
      if (this.wantLen > this.maxItemBytes) throw this.tooLarge();
      return false;
    }
    if (r.pos - this.start > this.maxItemBytes) throw this.tooLarge();
    this.scan = -1;
    this.sawAny = true;
    r.pos = this.start;
    return true;
  }

  /** The item read through `reader` is done with; its bytes may be reused. */
  consumed(): void {
    this.start = this.reader.pos;
    if (this.arrayLeft > 0) this.arrayLeft--;
  }

  /** At the end of the body: anything left is a truncated item. */
  finish(): void {
    if (this.end > this.start) throw new MsgpackError('body ends inside an item');
    if (this.arrayLeft > 0) throw new MsgpackError(`body ends ${this.arrayLeft} items short of its array`);
  }
}

/** NDJSON lines. Blank lines are skipped; a last line without \n is taken at finish(). */
export class NdjsonLines extends Accumulator {
  /** Bytes after `start` known to hold no newline. */
  private searched = 0;
  /** Bytes searched for newlines in all: a measure of work, for tests that check it stays linear. */
  scanned = 0;

  nextLine(): string | null {
    for (;;) {
      const from = this.start + this.searched;
      // The sentinel at buf[end] stops the search there, whatever stale bytes lie past it.
      let nl = this.buf.indexOf(Ch.Newline, from);
      if (nl === -1 || nl > this.end) nl = this.end;
      this.scanned += nl - from;
      if (nl - this.start > this.maxItemBytes) throw this.tooLarge();
      if (nl === this.end) {
        this.searched = this.end - this.start;
        return null;
      }
      const line = this.buf.toString('utf8', this.start, nl).trim();
      this.start = nl + 1;
      this.searched = 0;
      if (line !== '') return line;
    }
  }

  finish(): string | null {
    if (this.end === this.start) return null;
    if (this.end - this.start > this.maxItemBytes) throw this.tooLarge();
    const line = this.buf.toString('utf8', this.start, this.end).trim();
    this.start = this.end;
    this.searched = 0;
    return line === '' ? null : line;
  }
}
