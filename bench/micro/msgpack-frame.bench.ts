/**
 * Response framing (src/stream/entry-writer.ts): result entries encoded straight into pooled 16 KiB
 * buffers, against msgpackr's pack() of the same arrays (what the naive gateway does); plus request
 * decoding (src/decode/msgpack-reader.ts + request-fields.ts) against msgpackr's unpack.
 *
 *   node dist/bench/micro/msgpack-frame.bench.js
 */
import { Packr, Unpackr } from 'msgpackr';
import { measure, print, type MicroRow } from './harness';
import { EntryWriter, Kind } from '../../src/stream/entry-writer';
import { BufferPool } from '../../src/stream/buffer-pool';
import { MsgpackReader } from '../../src/decode/msgpack-reader';
import { RequestFields } from '../../src/decode/request-fields';

class CountingWriter extends EntryWriter {
  frames = 0;
  bytes = 0;
  protected ship(buf: Buffer, len: number): void {
    this.frames++;
    this.bytes += len;
    this.pool.release(buf);
  }
  isClosed(): boolean {
    return false;
  }
}

function main(): void {
  const rows: MicroRow[] = [];
  const w = new CountingWriter(new BufferPool(64));
  const packr = new Packr({ useRecords: false });
  for (const size of [100, 4096, 20480]) {
    const value = Buffer.alloc(size, 0x61);
    const label = size >= 1024 ? `${size / 1024} KiB` : `${size} B`;
    rows.push(
      measure(
        `EntryWriter: VALUE + END entries, ${label} value`,
        (n) => {
          for (let i = 0; i < n; i++) {
            w.value(i, 0, 0, size, 0, value, 0, size);
            w.simple(i, -1, Kind.End);
          }
          w.flush();
          return w.frames;
        },
        1,
        size > 16000 ? 'value cut into VALUE_PART entries of at most 16 KiB' : undefined,
      ),
    );
    rows.push(
      measure(
        `msgpackr pack([id, 0, 0, flags, value]) + END, ${label} value`,
        (n) => {
          let acc = 0;
          for (let i = 0; i < n; i++) {
            const a = packr.pack([i, 0, 0, 0, value]);
            const b = packr.pack([i, -1, 5]);
            acc += Buffer.concat([a, b]).length;
          }
          return acc;
        },
        1,
        "the naive gateway's way: a fresh Buffer per entry and per frame",
      ),
    );
  }
  rows.push(
    measure('EntryWriter: MISS + END entries', (n) => {
      for (let i = 0; i < n; i++) {
        w.simple(i, 0, Kind.Miss);
        w.simple(i, -1, Kind.End);
      }
      w.flush();
      return w.frames;
    }),
  );

  // copying a small value: what EntryWriter's copyBytes does below 512 bytes, against native copies
  const src = Buffer.alloc(100, 0x63);
  const dst = Buffer.allocUnsafeSlow(16 * 1024);
  rows.push(
    measure('copy 100 B: JS byte loop', (n) => {
      let p = 0;
      for (let i = 0; i < n; i++) {
        for (let k = 0; k < 100; k++) dst[p + k] = src[k];
        p = p + 200 > dst.length ? 0 : p + 100;
      }
      return dst[5];
    }),
  );
  rows.push(
    measure('copy 100 B: Buffer.copy', (n) => {
      let p = 0;
      for (let i = 0; i < n; i++) {
        src.copy(dst, p, 0, 100);
        p = p + 200 > dst.length ? 0 : p + 100;
      }
      return dst[5];
    }),
  );
  rows.push(
    measure('copy 100 B: Uint8Array.set', (n) => {
      let p = 0;
      for (let i = 0; i < n; i++) {
        dst.set(src, p);
        p = p + 200 > dst.length ? 0 : p + 100;
      }
      return dst[5];
    }),
  );

  // request decoding
  const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
  const reqs = Buffer.concat(
    Array.from({ length: 64 }, (_, i) => packr.pack({ id: i + 100000, op: 'get', key: `k100:${i * 37}` })),
  );
  const r = new MsgpackReader();
  const f = new RequestFields();
  rows.push(
    measure(
      'MsgpackReader + RequestFields: decode a get request',
      (n) => {
        let acc = 0;
        for (let i = 0; i < n; i++) {
          r.reset(reqs, 0, reqs.length);
          while (r.pos < r.end) {
            f.read(r);
            acc += f.keyLen;
          }
        }
        return acc;
      },
      64,
    ),
  );
  rows.push(
    measure(
      'msgpackr unpackMultiple: decode a get request',
      (n) => {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += (unpackr.unpackMultiple(reqs) as unknown[]).length;
        return acc;
      },
      64,
      'objects and strings per request',
    ),
  );
  print('msgpack-frame', rows);
}

main();
