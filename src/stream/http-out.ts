/**
 * Output side of one HTTP response. Two ways out:
 * - `Sized`: a single value with a known length, sent with tryEnd so the response carries a
 *   Content-Length. What uWS could not take is copied into pool buffers and resent from onWritable.
 * - `Chunked`: a bulk response of unknown length, sent with write(). Once a write() returns false (uWS
 *   then holds that chunk), further chunks wait here, in their pool buffers, until onWritable; so uWS
 *   holds at most about one chunk and `heldBytes` is what the client's get window sees.
 *
 * Measured on this uWS build: an onWritable handler that returns without writing stops uWS from draining
 * what it holds until the next write or end. So the handler always writes when it has something, and
 * when it has nothing it only clears the backpressure mark, so the next chunk is written at once (which
 * drains uWS's buffer first).
 *
 * Every write happens inside cork, since it usually runs in a shard's socket callback. The response
 * counts itself in the connection gate from creation to end or abort.
 *
 * While the gateway drains, the connection closes after this response (`Connection: close`), also for a
 * response that began before the drain, as long as its headers are not out yet; so the response asks
 * `drain` when it writes them, not when it was made. Once a chunked body has begun, uWS would write its
 * own `Connection: close` into the body, so `end` never asks it to close then: the header, written with
 * the others, tells the client.
 *
 * An answer given while the request body is still arriving (a refused upload, a bulk body that broke off)
 * goes out at once, chunked, except its terminating chunk, which waits until the body has been read to
 * its end: uWS resets the connection when it closes with unread bytes (the client would lose the answer),
 * and once uWS holds a whole answer the response can no longer be closed from JS. So the rest of the body
 * is read and dropped, up to `discardLimit` bytes; a client that sends more is cut off.
 */
import { errorBody, ErrorCode, errorRow } from '../core/errors';
import type { HttpResponse } from '../uws';
import { BUFFER_SIZE, BufferPool } from './buffer-pool';
import type { OutputMeter, ResponseTally } from './output-meter';

/** RFC 9110 reason phrases for every status the gateway sends; uWS writes the status line as given. */
const REASONS: Record<number, string> = {
  200: 'OK',
  204: 'No Content',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};
const LINES = new Map<number, string>();

/** `NNN Reason Phrase`, as RFC 9112 section 4 wants it (uWS prefixes `HTTP/1.1 `). */
export function statusLine(status: number): string {
  let l = LINES.get(status);
  if (l === undefined) LINES.set(status, (l = `${status} ${REASONS[status] ?? 'Unknown'}`));
  return l;
}

/** Headers an error answer carries besides its content type: `Retry-After` where the table says so. */
export function errorHeaders(code: ErrorCode): [string, string][] | undefined {
  const after = errorRow(code).retryAfter;
  return after === undefined ? undefined : [['retry-after', String(after)]];
}

export class HttpOut implements OutputMeter {
  aborted = false;
  ended = false;
  private headersSent = false;
  private total = 0;
  // Bytes uWS has not taken yet, in pool buffers (both modes).
  private readonly pending: Buffer[] = [];
  private readonly pendingLens: number[] = [];
  private pendingHead = 0;
  private pendingBytes = 0;
  backpressured = false;
  private writableHooked = false;
  private status = '200 OK';
  // The request body has not been read to its end (see the header comment).
  private bodyOpen = false;
  private finishPending = false;
  private discarded = 0;
  private discardLimit = 0;
  private contentType = 'application/octet-stream';
  /** Chunked mode: the client took what was held; producers may go on. */
  onWritableAgain: (() => void) | null = null;
  /** The client went away before the response ended. */
  onAbort: (() => void) | null = null;
  /** CORS headers for a page of a listed origin (front/browser-gate.ts), written with the others. */
  cors: readonly (readonly [string, string])[] | null = null;
  /** The connection closes after this response (also whenever `drain` says the gateway is draining). */
  closeAfter = false;
  private counted = true;
  private writables = 0;
  private writablesSeen = 0;
  private stalledLooks = 0;

  constructor(
    readonly res: HttpResponse,
    private readonly pool: BufferPool,
    private readonly gate: ResponseTally,
    private readonly drain: { readonly draining: boolean } | null = null,
  ) {
    gate.http++;
    res.onAborted(() => {
      this.aborted = true;
      this.releasePending();
      this.uncount();
      const f = this.onAbort;
      this.onAbort = null;
      f?.();
    });
  }

  get done(): boolean {
    return this.aborted || this.ended;
  }

  /** Bytes held for the client: ours, plus about a chunk in uWS while it reports backpressure. */
  heldBytes(): number {
    return this.pendingBytes + (this.backpressured ? BUFFER_SIZE : 0);
  }

  private writeCors(): void {
    const c = this.cors;
    if (c !== null) for (const [k, v] of c) this.res.writeHeader(k, v);
  }

  private uncount(): void {
    if (this.counted) {
      this.counted = false;
      this.gate.http--;
    }
  }

  /** Whether the connection must close after this response, asked as the headers are written. */
  private get closing(): boolean {
    return this.closeAfter || (this.drain !== null && this.drain.draining);
  }

  private markEnded(): void {
    this.ended = true;
    this.uncount();
  }

  /**
   * The request has a body the ingress reads (it calls `bodyChunk` for every piece): an answer completed
   * before the body ends leaves its last bytes unsent until it does; past `discardLimit` more body bytes
   * the connection is cut off.
   */
  expectBody(discardLimit: number): void {
    this.bodyOpen = true;
    this.discardLimit = discardLimit;
  }

  /** Every piece of the body, before it is used; true when it must be dropped (the answer is complete). */
  bodyChunk(n: number, last: boolean): boolean {
    if (last) this.bodyOpen = false;
    if (this.finishPending) {
      this.discarded += n;
      if (last) {
        this.finishPending = false;
        // false: a chunked answer has begun, and uWS would write `Connection: close` into its body.
        this.res.cork(() => this.res.end());
      } else if (this.discarded > this.discardLimit) {
        this.finishPending = false;
        this.res.close(); // onAborted follows
      }
    }
    return this.done;
  }

  /** A complete answer that is not a stream (errors, 204s). */
  simple(status: number, body?: string, contentType = 'application/json', headers?: [string, string][]): void {
    if (this.done) return;
    this.markEnded();
    if (this.headersSent) {
      // A 200 with its Content-Length is already on the wire and the value broke off: the only honest
      // signal left is to cut the connection, so the client sees a short body, never a wrong one.
      this.releasePending();
      this.res.close();
      return;
    }
    this.headersSent = true;
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status));
      if (body !== undefined) this.res.writeHeader('content-type', contentType);
      if (headers) for (const [k, v] of headers) this.res.writeHeader(k, v);
      this.writeCors();
      if (this.bodyOpen) {
        if (this.closing) this.res.writeHeader('connection', 'close');
        this.res.write(body ?? '');
        this.finishPending = true;
      } else this.res.end(body, this.closing);
    });
  }

  /** An error answer; `headers` replace the table's (a computed Retry-After, WWW-Authenticate). */
  error(code: ErrorCode, message?: string, headers?: [string, string][]): void {
    this.simple(errorRow(code).status, errorBody(code, message), 'application/json', headers ?? errorHeaders(code));
  }

  /** Sized mode: the first call sends the status line and headers; chunks must add up to `total`. */
  sized(total: number, flags: number, buf: Buffer, off: number, len: number): void {
    if (this.done) return;
    this.res.cork(() => {
      if (!this.headersSent) {
        this.headersSent = true;
        this.total = total;
        this.res.writeStatus('200 OK');
        this.res.writeHeader('content-type', 'application/octet-stream');
        this.res.writeHeader('x-kv-flags', String(flags));
        this.writeCors();
        if (this.closing) this.res.writeHeader('connection', 'close');
      }
      if (this.pending.length > 0) return this.hold(buf, off, len);
      const before = this.res.getWriteOffset();
      const [ok, done] = this.res.tryEnd(new Uint8Array(buf.buffer, buf.byteOffset + off, len), total);
      if (done) {
        this.markEnded();
        return;
      }
      if (!ok) {
        const taken = this.res.getWriteOffset() - before;
        this.hold(buf, off + taken, len - taken);
        this.res.onWritable(() => this.resumeSized());
      }
    });
  }

  private hold(buf: Buffer, off: number, len: number): void {
    while (len > 0) {
      let last = this.pending.length - 1;
      if (last < 0 || this.pendingLens[last] === BUFFER_SIZE) {
        this.pending.push(this.pool.acquire());
        this.pendingLens.push(0);
        last++;
      }
      const room = BUFFER_SIZE - this.pendingLens[last];
      const k = len < room ? len : room;
      buf.copy(this.pending[last], this.pendingLens[last], off, off + k);
      this.pendingLens[last] += k;
      this.pendingBytes += k;
      off += k;
      len -= k;
    }
  }

  /** onWritable: send held bytes from where uWS stopped. */
  private resumeSized(): boolean {
    if (this.done) return true;
    while (this.pending.length > 0) {
      const b = this.pending[0];
      const end = this.pendingLens[0];
      const before = this.res.getWriteOffset();
      const [ok, done] = this.res.tryEnd(
        new Uint8Array(b.buffer, b.byteOffset + this.pendingHead, end - this.pendingHead),
        this.total,
      );
      if (done) {
        this.markEnded();
        this.releasePending();
        return true;
      }
      if (!ok) {
        const taken = this.res.getWriteOffset() - before;
        this.pendingHead += taken;
        this.pendingBytes -= taken;
        return false;
      }
      this.pendingBytes -= end - this.pendingHead;
      this.pool.release(this.pending.shift()!);
      this.pendingLens.shift();
      this.pendingHead = 0;
    }
    return true;
  }

  /** Chunked mode: takes ownership of a pool buffer holding `len` bytes of the body. */
  chunk(status: string, contentType: string, buf: Buffer, len: number): void {
    if (this.done) {
      this.pool.release(buf);
      return;
    }
    this.status = status;
    this.contentType = contentType;
    if (this.backpressured || this.pending.length > 0) {
      this.pending.push(buf);
      this.pendingLens.push(len);
      this.pendingBytes += len;
      return;
    }
    this.res.cork(() => this.writeChunk(buf, len));
  }

  private writeChunk(buf: Buffer, len: number): void {
    if (!this.headersSent) {
      this.headersSent = true;
      this.res.writeStatus(this.status);
      this.res.writeHeader('content-type', this.contentType);
      this.writeCors();
      if (this.closing) this.res.writeHeader('connection', 'close');
    }
    const ok = this.res.write(new Uint8Array(buf.buffer, buf.byteOffset, len));
    this.pool.release(buf);
    if (!ok) {
      this.backpressured = true;
      if (!this.writableHooked) {
        this.writableHooked = true;
        this.res.onWritable(() => this.resumeChunked());
      }
    }
  }

  /** Watchdog, once a second: true after `looks` looks in a row with output held and none taken. */
  stalled(looks: number): boolean {
    if (this.done || (this.pendingBytes === 0 && !this.backpressured)) {
      this.stalledLooks = 0;
      return false;
    }
    if (this.writables !== this.writablesSeen) {
      this.writablesSeen = this.writables;
      this.stalledLooks = 0;
      return false;
    }
    return ++this.stalledLooks >= looks;
  }

  /** Cuts the connection (a stalled client); onAbort follows from uWS. */
  kill(): void {
    if (this.done) return;
    this.res.close();
  }

  private resumeChunked(): boolean {
    if (this.done) return true;
    this.writables++;
    this.backpressured = false;
    while (this.pending.length > 0 && !this.backpressured) {
      const len = this.pendingLens.shift()!;
      this.pendingBytes -= len;
      this.writeChunk(this.pending.shift()!, len); // may set backpressured again
    }
    if (!this.backpressured) this.onWritableAgain?.();
    return !this.backpressured;
  }

  get started(): boolean {
    return this.headersSent;
  }

  endChunked(): void {
    if (this.done) return;
    this.res.cork(() => {
      // What waits here goes first; uWS keeps what the socket cannot take yet and sends it before the end.
      while (this.pending.length > 0) {
        const len = this.pendingLens.shift()!;
        this.pendingBytes -= len;
        this.writeChunk(this.pending.shift()!, len);
      }
      // Headers not out yet: uWS writes Connection: close with them. Out (a chunked body): see above.
      const close = !this.headersSent && this.closing && !this.bodyOpen;
      if (!this.headersSent) {
        this.headersSent = true;
        this.res.writeStatus(this.status).writeHeader('content-type', this.contentType);
        if (this.bodyOpen && this.closing) this.res.writeHeader('connection', 'close');
      }
      this.markEnded();
      if (this.bodyOpen) {
        this.res.write('');
        this.finishPending = true;
      } else this.res.end(undefined, close);
    });
  }

  private releasePending(): void {
    for (const b of this.pending) this.pool.release(b);
    this.pending.length = 0;
    this.pendingLens.length = 0;
    this.pendingHead = 0;
    this.pendingBytes = 0;
  }
}
