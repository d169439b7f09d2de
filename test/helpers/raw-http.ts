/**
 * HTTP/1.1 over a raw loopback socket, for tests that need what fetch hides: a body cut off part way, a
 * client that stops reading, a socket destroyed mid-response, or several requests on one keep-alive
 * connection that must not be silently replaced by a new one.
 */
import { createConnection, Socket } from 'node:net';

export interface RawResponse {
  status: number;
  /** The reason phrase of the status line (responseHead only). */
  reason?: string;
  headers: Record<string, string>;
  body: Buffer;
}

export class RawHttp {
  private acc: Buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  /** Bytes received so far (head and body, every response). */
  received = 0;
  /** The peer closed (FIN or reset), or we destroyed the socket. */
  closed = false;
  error: Error | null = null;
  /** Once this many bytes have arrived the socket stops reading (see `readAtMost`). */
  private limit = Infinity;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.received += d.length;
      if (this.received >= this.limit) socket.pause();
      this.acc = this.acc.length === 0 ? d : Buffer.concat([this.acc, d]);
      this.wake();
    });
    socket.on('error', (e) => {
      this.error = e;
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(port: number): Promise<RawHttp> {
    return new Promise((resolve, reject) => {
      const s = createConnection({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve(new RawHttp(s));
      });
      s.once('error', reject);
    });
  }

  /** Resolves once the bytes are handed to the kernel. */
  send(data: Buffer | string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(data, (e) => (e ? reject(e) : resolve()));
    });
  }

  /** Stops reading: the kernel's buffers fill and the server sees backpressure. */
  pause(): void {
    this.socket.pause();
  }

  /** Stops reading as soon as `n` bytes have arrived (a read may carry up to 64 KiB past it). */
  readAtMost(n: number): void {
    this.limit = n;
    if (this.received >= n) this.socket.pause();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Waits until `check` holds (checked on every arrival and at close); rejects after `ms`. */
  waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const test = (): boolean => {
        if (!check()) return false;
        clearTimeout(timer);
        resolve();
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== onEvent);
        reject(
          new Error(
            `timed out after ${ms} ms waiting for ${what} (${this.received} bytes received, closed ${this.closed})`,
          ),
        );
      }, ms);
      const onEvent = (): void => {
        if (!test()) this.waiters.push(onEvent);
      };
      onEvent();
    });
  }

  /** Reads the next whole response (Content-Length or chunked); rejects if the socket closes first. */
  async response(ms = 5000): Promise<RawResponse> {
    let parsed: { r: RawResponse; used: number } | null = null;
    await this.waitFor(() => (parsed = parseResponse(this.acc)) !== null || this.closed, ms, 'a whole response');
    if (parsed === null)
      throw new Error(
        `connection closed before a whole response (${this.acc.length} bytes: ${JSON.stringify(this.acc.toString('latin1', 0, 200))})`,
      );
    const { r, used } = parsed as { r: RawResponse; used: number };
    this.acc = this.acc.subarray(used);
    return r;
  }

  /**
   * Reads the next response's status line and headers, plus the body bytes that came with them (for an
   * answer whose body is not finished yet, such as a refusal sent while the request body still flows).
   */
  async responseHead(ms = 5000): Promise<RawResponse> {
    await this.waitFor(() => this.acc.indexOf('\r\n\r\n') >= 0 || this.closed, ms, 'a response head');
    const end = this.acc.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`connection closed before a response head (${this.acc.length} bytes)`);
    const { status, reason, headers } = parseHead(this.acc.toString('latin1', 0, end));
    return { status, reason, headers, body: Buffer.from(this.acc.subarray(end + 4)) };
  }

  /** Everything received so far that no `response()` took. */
  get unread(): Buffer {
    return this.acc;
  }

  /** Resolves when the peer has closed the connection. */
  async closedByPeer(ms = 5000): Promise<void> {
    await this.waitFor(() => this.closed, ms, 'the server to close the connection');
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** One whole response at the start of `buf`, or null while more bytes are needed. */
/** The status line and headers of a response head (without its final CRLF CRLF). */
export function parseHead(text: string): { status: number; reason: string; headers: Record<string, string> } {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.1 (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (m === null) throw new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
  }
  return { status: Number(m[1]), reason: m[2] ?? '', headers };
}

export function parseResponse(buf: Buffer): { r: RawResponse; used: number } | null {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const { status, headers } = parseHead(buf.toString('latin1', 0, end));
  let p = end + 4;
  if (headers['transfer-encoding'] === 'chunked') {
    const parts: Buffer[] = [];
    for (let guard = 0; guard < 1_000_000; guard++) {
      const nl = buf.indexOf('\r\n', p);
      if (nl < 0) return null;
      const n = parseInt(buf.toString('latin1', p, nl), 16);
      if (nl + 2 + n + 2 > buf.length) return null;
      parts.push(buf.subarray(nl + 2, nl + 2 + n));
      p = nl + 2 + n + 2;
      if (n === 0) return { r: { status, headers, body: Buffer.concat(parts) }, used: p };
    }
    throw new Error('more than a million chunks');
  }
  const n = Number(headers['content-length'] ?? '0');
  if (buf.length < p + n) return null;
  return { r: { status, headers, body: Buffer.from(buf.subarray(p, p + n)) }, used: p + n };
}

/** A request head; `length` sets Content-Length (the body is sent separately, in as many pieces as wanted). */
export function head(method: string, path: string, headers: Record<string, string | number> = {}): string {
  let h = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
  for (const [k, v] of Object.entries(headers)) h += `${k}: ${v}\r\n`;
  return h + '\r\n';
}
