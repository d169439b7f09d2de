/**
 * The memcached reply parser of one connection, over bytes with explicit offsets: `VALUE <key> <flags>
 * <bytes>` + data + `END` for a multi-get, one `HD`/`NS`/`NF`/`EX O<n>` (or `SERVER_ERROR`) line per item
 * for a run of meta writes. Like pg-protocol's `parse(buffer, callback)`, it only reports what it read to
 * its sink (ReplySink) and never touches its caller's state: matching replies to batches, keys and opaques
 * is the sink's (Inflight). Value bytes go to the sink as they arrive, straight from the read buffer; only
 * a line split across reads is copied (into `partial`). Bytes that are no memcached reply are reported
 * (onError) and parsing stops: the connection owner then drops the connection.
 *
 * Backend bytes are not trusted: a value counts as complete only once the `\r\n` after its announced
 * length was read and checked. Parts before the last may go to the sink as they arrive (a large value
 * streams to its client); the last part (`offset + len === total`) is handed over only after the check.
 * When the check fails (the value was longer or shorter than announced) the value has not settled: the
 * connection fails it (SHARD_ERROR), and a client that already got its first parts sees them followed by an
 * ERROR for the item (WebSocket, bulk) or a cut connection (single GET), never a corrupt value taken as ok.
 * When a value's end and its `\r\n` fall in different reads, the last part is copied (`held`) until the
 * `\r\n` arrives, since the read buffer is reused. A value announced larger than the gateway's own limit
 * (`maxValueBytes`) is out of step too: it is never buffered or passed on.
 */
import { CH_SPACE, indexOfByte, lineText, readOpaque, readUint, startsWith } from './reply-line';

/** What one write's reply line says (meta commands, one line per item). */
export const enum MetaStatus {
  Stored = 0 /* HD */,
  NotStored = 1 /* NS */,
  NotFound = 2 /* NF */,
  Exists = 3 /* EX */,
  ServerError = 4 /* SERVER_ERROR <message> */,
}

/**
 * Where the parser sends what it read, in wire order. The parser knows memcached's reply grammar and
 * nothing of what was asked: which batch a reply belongs to, which key a VALUE answers and whether an
 * opaque is the expected one is the sink's business (see Inflight). A callback that returns false has
 * found the stream out of step and dealt with it: the parser stops and forgets what it buffered.
 */
export interface ReplySink {
  /** `VALUE <key> <flags> <bytes>`: the key is buf[koff, koff + klen). Its data follows through onValue. */
  onValueHeader(buf: Buffer, koff: number, klen: number, flags: number, bytes: number): boolean;
  /**
   * A part of the value announced last, straight from the read buffer (valid during the call only). The
   * last part (`offset + len === total`; a 0-byte value is one call with len 0) comes only once the
   * `\r\n` after the value was read and checked.
   */
  onValue(total: number, offset: number, buf: Buffer, off: number, len: number): void;
  /** `END`: the multi-get's reply is complete. */
  onEnd(): boolean;
  /** One write's reply line; `opaque` is -1 when the line carries none (SERVER_ERROR), `message` its text. */
  onStatus(status: MetaStatus, opaque: number, message: string): boolean;
  /** Bytes that are no memcached reply. Parsing stops; `midValue` still tells whether a value was cut. */
  onError(why: string): void;
}

const enum State {
  Line,
  ValueData,
  ValueCrlf,
}

const enum Ch {
  Cr = 0x0d /* \r */,
  Lf = 0x0a /* \n */,
}

/** Longest reply line accepted: VALUE + a 250-byte key + numbers, with room to spare. */
const MAX_LINE = 8192;

export class ReplyParser {
  private state = State.Line;
  private halted = false;
  private partial = Buffer.allocUnsafeSlow(1024);
  private partialLen = 0;
  private vTotal = 0;
  private vOffset = 0;
  private crlfLeft = 0;
  /** The last part of a value, kept while its \r\n is still to come (State.ValueCrlf). */
  private held = Buffer.allocUnsafeSlow(0);
  private heldLen = 0;
  /** Largest value accepted from the shard; a larger VALUE is out of step. */
  maxValueBytes = 1024 * 1024;

  constructor(private readonly sink: ReplySink) {}

  /** True while a value's bytes or its \r\n are arriving: that value has not settled. */
  get midValue(): boolean {
    return this.state !== State.Line;
  }

  /** Forgets everything buffered (new connection). */
  reset(): void {
    this.state = State.Line;
    this.partialLen = 0;
  }

  /** Parses chunk[from, n). Stops at the first sign of a stream out of step (after telling the sink). */
  feed(chunk: Buffer, n: number, from = 0): void {
    let p = from;
    this.halted = false;
    while (p < n && !this.halted) {
      if (this.state === State.ValueData) {
        p = this.valueData(chunk, p, n);
        continue;
      }
      if (this.state === State.ValueCrlf) {
        if (chunk[p] !== (this.crlfLeft === 2 ? Ch.Cr : Ch.Lf))
          return this.protocolError('value not followed by \\r\\n');
        p++;
        if (--this.crlfLeft === 0) {
          this.state = State.Line;
          this.sink.onValue(this.vTotal, this.vOffset, this.held, 0, this.heldLen);
        }
        continue;
      }
      const nl = indexOfByte(chunk, Ch.Lf, p, n);
      if (nl === -1) {
        this.keepPartial(chunk, p, n);
        return;
      }
      if (this.partialLen > 0) {
        this.keepPartial(chunk, p, nl + 1);
        if (this.halted) return;
        const len = this.partialLen;
        this.partialLen = 0;
        p = nl + 1;
        this.line(this.partial, 0, len - 1);
      } else {
        const start = p;
        p = nl + 1;
        this.line(chunk, start, nl);
      }
    }
  }

  /**
   * Value bytes from chunk[p, n); returns where parsing goes on. Parts before the last go out at once;
   * the last only once the two bytes after it are known to be \r\n.
   */
  private valueData(chunk: Buffer, p: number, n: number): number {
    const left = this.vTotal - this.vOffset;
    const avail = n - p;
    if (avail <= left) {
      if (avail === left) {
        // The value ends exactly at the end of this read: keep its last part for the \r\n check.
        this.hold(chunk, p, avail);
        this.crlfLeft = 2;
        this.state = State.ValueCrlf;
        return n;
      }
      this.sink.onValue(this.vTotal, this.vOffset, chunk, p, avail);
      this.vOffset += avail;
      return n;
    }
    const e = p + left;
    if (chunk[e] !== Ch.Cr) {
      this.protocolError('value not followed by \\r\\n');
      return n;
    }
    if (e + 1 === n) {
      this.hold(chunk, p, left);
      this.crlfLeft = 1;
      this.state = State.ValueCrlf;
      return n;
    }
    if (chunk[e + 1] !== Ch.Lf) {
      this.protocolError('value not followed by \\r\\n');
      return n;
    }
    this.state = State.Line;
    this.sink.onValue(this.vTotal, this.vOffset, chunk, p, left);
    return e + 2;
  }

  /** Copies a value's last part (at most one read's worth) out of the reused read buffer. */
  private hold(chunk: Buffer, from: number, len: number): void {
    if (len > this.held.length) {
      let size = this.held.length < 1024 ? 1024 : this.held.length;
      while (size < len) size *= 2;
      this.held = Buffer.allocUnsafeSlow(size);
    }
    chunk.copy(this.held, 0, from, from + len);
    this.heldLen = len;
  }

  private keepPartial(chunk: Buffer, from: number, to: number): void {
    const need = this.partialLen + (to - from);
    if (need > MAX_LINE) return this.protocolError('reply line too long');
    if (need > this.partial.length) {
      const next = Buffer.allocUnsafeSlow(this.partial.length * 2 < need ? need : this.partial.length * 2);
      this.partial.copy(next, 0, 0, this.partialLen);
      this.partial = next;
    }
    chunk.copy(this.partial, this.partialLen, from, to);
    this.partialLen = need;
  }

  /** One reply line, buf[start, nl) where buf[nl] is \n. */
  private line(buf: Buffer, start: number, nl: number): void {
    if (nl === start || buf[nl - 1] !== Ch.Cr) return this.protocolError('reply line not ended by \\r\\n');
    const end = nl - 1;
    if (startsWith(buf, start, end, 'VALUE ')) return this.valueLine(buf, start, end);
    if (end - start === 3 && startsWith(buf, start, end, 'END')) {
      if (!this.sink.onEnd()) this.stop();
      return;
    }
    if (startsWith(buf, start, end, 'SERVER_ERROR')) {
      if (!this.sink.onStatus(MetaStatus.ServerError, -1, lineText(buf, start + 13, end))) this.stop();
      return;
    }
    if (end - start >= 2 && (end - start === 2 || buf[start + 2] === CH_SPACE)) return this.metaLine(buf, start, end);
    this.protocolError(`unexpected reply: ${lineText(buf, start, Math.min(end, start + 200))}`);
  }

  private valueLine(buf: Buffer, start: number, end: number): void {
    const ks = start + 6;
    const ke = indexOfByte(buf, CH_SPACE, ks, end);
    if (ke < 0) return this.protocolError('bad VALUE line');
    const flags = readUint(buf, ke + 1, end);
    const fe = indexOfByte(buf, CH_SPACE, ke + 1, end);
    const bytes = fe < 0 ? -1 : readUint(buf, fe + 1, end);
    if (flags < 0 || bytes < 0 || flags > 0xffffffff) return this.protocolError('bad VALUE line');
    if (bytes > this.maxValueBytes)
      return this.protocolError(`VALUE of ${bytes} bytes is over the ${this.maxValueBytes}-byte limit`);
    // No more tokens than `<key> <flags> <bytes>` (a CAS would be a fourth: `get` never asks for one).
    if (indexOfByte(buf, CH_SPACE, fe + 1, end) >= 0) return this.protocolError('bad VALUE line');
    if (!this.sink.onValueHeader(buf, ks, ke - ks, flags, bytes)) return this.stop();
    this.vTotal = bytes;
    this.vOffset = 0;
    this.state = State.ValueData;
  }

  /** `HD`, `NS`, `NF` or `EX`, then flags; the opaque `O<n>` is required (every write asks for one). */
  private metaLine(buf: Buffer, start: number, end: number): void {
    const c0 = buf[start],
      c1 = buf[start + 1];
    const opaque = readOpaque(buf, start, end);
    if (opaque < 0) return this.protocolError('meta reply without its opaque');
    let status: MetaStatus;
    if (c0 === 0x48 /* H */ && c1 === 0x44 /* D */) status = MetaStatus.Stored;
    else if (c0 === 0x4e /* N */ && c1 === 0x53 /* S */) status = MetaStatus.NotStored;
    else if (c0 === 0x4e /* N */ && c1 === 0x46 /* F */) status = MetaStatus.NotFound;
    else if (c0 === 0x45 /* E */ && c1 === 0x58 /* X */) status = MetaStatus.Exists;
    else return this.protocolError(`unexpected meta reply: ${lineText(buf, start, end)}`);
    if (!this.sink.onStatus(status, opaque, '')) this.stop();
  }

  /** The sink found the stream out of step (and dealt with it): stop here. */
  private stop(): void {
    this.halted = true;
    this.reset();
  }

  /** The sink hears of it while `midValue` still tells whether a value was cut; then all is forgotten. */
  private protocolError(why: string): void {
    this.halted = true;
    this.sink.onError(why);
    this.reset();
  }
}
