/**
 * Bulk bodies arrive in chunks of any size and items straddle chunks. These accumulators keep the
 * unconsumed tail (buffer + start + end, compacted as it is consumed) and hand out whole items:
 * msgpack values for the msgpack format, lines for NDJSON. `maxItemBytes` bounds what one item may hold.
 */
import { INCOMPLETE, MsgpackError, MsgpackReader, MpType } from './msgpack-reader';

export class BodyTooLarge extends Error {}

class Accumulator {
  buf: Buffer = Buffer.allocUnsafeSlow(16 * 1024);
  start = 0;
  end = 0;

  constructor(protected readonly maxItemBytes: number) {}

  append(src: Uint8Array): void {
    if (this.start === this.end) { this.start = 0; this.end = 0; }
    if (this.end + src.length > this.buf.length) {
      const live = this.end - this.start;
      if (live + src.length > this.maxItemBytes) throw new BodyTooLarge(`an item is larger than ${this.maxItemBytes} bytes`);
      let size = this.buf.length;
      while (size < live + src.length) size *= 2;
      const next = size === this.buf.length ? this.buf : Buffer.allocUnsafeSlow(size);
      this.buf.copy(next, 0, this.start, this.end);
      this.buf = next;
      this.start = 0;
      this.end = live;
    }
    this.buf.set(src, this.end);
    this.end += src.length;
  }

  get buffered(): number {
    return this.end - this.start;
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

  next(): boolean {
    if (this.arrayLeft === 0) {
      if (this.end > this.start) throw new MsgpackError('bytes after the top-level array');
      return false;
    }
    const r = this.reader.reset(this.buf, this.start, this.end);
    if (r.remaining === 0) return false;
    try {
      if (!this.sawAny && r.peekType() === MpType.Array) {
        this.arrayLeft = r.readArrayHeader();
        this.start = r.pos;
        this.sawAny = true;
        return this.next();
      }
      const at = r.pos;
      r.skip(); // whole item present?
      r.pos = at;
      this.sawAny = true;
      return true;
    } catch (e) {
      if (e === INCOMPLETE) return false;
      throw e;
    }
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
  nextLine(): string | null {
    for (;;) {
      const nl = this.buf.indexOf(0x0a, this.start);
      if (nl === -1 || nl >= this.end) return null;
      const line = this.buf.toString('utf8', this.start, nl).trim();
      this.start = nl + 1;
      if (line !== '') return line;
    }
  }

  finish(): string | null {
    if (this.end === this.start) return null;
    const line = this.buf.toString('utf8', this.start, this.end).trim();
    this.start = this.end;
    return line === '' ? null : line;
  }
}
