/**
 * The gateway's output buffer pool (src/stream/buffer-pool.ts): acquire + release of a 16 KiB buffer and
 * the cached exact-length view uWS needs, against allocating a fresh buffer or view each time.
 *
 *   node dist/bench/micro/buffer-pool.bench.js
 */
import { measure, print, type MicroRow } from './harness';
import { BufferPool, BUFFER_SIZE, viewOf } from '../../src/stream/buffer-pool';

function main(): void {
  const rows: MicroRow[] = [];
  const pool = new BufferPool(4096);
  rows.push(
    measure('pool acquire + release (16 KiB)', (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const b = pool.acquire();
        b[0] = i;
        acc += b[0];
        pool.release(b);
      }
      return acc;
    }),
  );
  rows.push(
    measure(
      'pool: 64 buffers out, then back (one flush to many clients)',
      (n) => {
        let acc = 0;
        const held: Buffer[] = new Array(64);
        for (let i = 0; i < n; i++) {
          for (let k = 0; k < 64; k++) held[k] = pool.acquire();
          for (let k = 0; k < 64; k++) {
            acc += held[k].length;
            pool.release(held[k]);
          }
        }
        return acc;
      },
      64,
    ),
  );
  rows.push(
    measure(
      'Buffer.allocUnsafeSlow(16 KiB) (no pool)',
      (n) => {
        let acc = 0;
        for (let i = 0; i < n; i++) {
          const b = Buffer.allocUnsafeSlow(BUFFER_SIZE);
          b[0] = i;
          acc += b[0];
        }
        return acc;
      },
      1,
      'garbage: each buffer is left to the GC',
    ),
  );
  rows.push(
    measure(
      'Buffer.allocUnsafe(16 KiB) (no pool)',
      (n) => {
        let acc = 0;
        for (let i = 0; i < n; i++) {
          const b = Buffer.allocUnsafe(BUFFER_SIZE);
          b[0] = i;
          acc += b[0];
        }
        return acc;
      },
      1,
      'garbage: each buffer is left to the GC',
    ),
  );
  const bufs = Array.from({ length: 16 }, () => pool.acquire());
  const lens = [120, 133, 4200, 16000];
  rows.push(
    measure('viewOf(buf, len) (cached view)', (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += viewOf(bufs[i & 15], lens[i & 3]).length;
      return acc;
    }),
  );
  rows.push(
    measure('new Uint8Array(buf.buffer, off, len) (fresh view)', (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const b = bufs[i & 15];
        acc += new Uint8Array(b.buffer, b.byteOffset, lens[i & 3]).length;
      }
      return acc;
    }),
  );
  print('buffer-pool', rows, { bufferSize: BUFFER_SIZE });
}

main();
