/**
 * Fixed 16 KiB buffers for everything the gateway writes out. A buffer is taken for the time it takes to
 * fill and hand it to uWS (which copies or writes it at once), so steady state allocates nothing; only a
 * slow client makes buffers wait in its queue, and that queue is capped per connection.
 *
 * Ownership: whoever called acquire() owns the buffer until it calls release(); after release the bytes
 * may be overwritten at any time, so no view of it may be kept.
 */
export const BUFFER_SIZE = 16 * 1024;

export class BufferPool {
  private readonly free: Buffer[] = [];
  allocated = 0;
  inUse = 0;

  constructor(private readonly maxFree: number) {}

  acquire(): Buffer {
    this.inUse++;
    const b = this.free.pop();
    if (b !== undefined) return b;
    this.allocated++;
    // allocUnsafeSlow: each buffer owns its memory instead of pinning a shared 8 KiB slab.
    return Buffer.allocUnsafeSlow(BUFFER_SIZE);
  }

  release(b: Buffer): void {
    this.inUse--;
    if (this.free.length < this.maxFree) this.free.push(b);
    else this.allocated--;
  }

  stats(): { size: number; allocated: number; inUse: number; free: number } {
    return { size: BUFFER_SIZE, allocated: this.allocated, inUse: this.inUse, free: this.free.length };
  }
}

/**
 * uWS takes bytes as a typed array of the exact length, so sending the first `len` bytes of a pool buffer
 * needs a view. Frames of a steady workload come in few lengths, and the LIFO pool hands out the same
 * buffers, so a few cached views per buffer make most sends allocation-free.
 */
const VIEWS_PER_BUFFER = 8;
const views = new WeakMap<Buffer, Uint8Array[]>();

export function viewOf(buf: Buffer, len: number): Uint8Array {
  if (len === buf.length) return buf;
  let list = views.get(buf);
  if (list === undefined) views.set(buf, (list = []));
  for (let k = 0; k < list.length; k++) if (list[k].length === len) return list[k];
  const v = new Uint8Array(buf.buffer, buf.byteOffset, len);
  if (list.length >= VIEWS_PER_BUFFER) list.shift();
  list.push(v);
  return v;
}
