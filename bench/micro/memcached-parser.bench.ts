/**
 * The memcached reply parser (src/backends/memcached/reply-parser.ts) fed pre-built multi-get replies,
 * whole and cut into 1,448-byte segments as TCP delivers them, its sink (Inflight) matching them to a
 * GetBatch and a request counting the values it receives; plus the reply-line readers alone.
 *
 *   node dist/bench/micro/memcached-parser.bench.js
 */
import { measure, print, type MicroRow } from './harness';
import { Inflight } from '../../src/backends/memcached/inflight';
import { ReplyParser } from '../../src/backends/memcached/reply-parser';
import { GetBatch } from '../../src/backends/memcached/get-batch';
import { Request } from '../../src/core/request';
import { readUint, indexOfByte, startsWith } from '../../src/backends/memcached/reply-line';
import type { ErrorCode } from '../../src/core/errors';

class Counting extends Request {
  values = 0;
  misses = 0;
  errors = 0;
  bytes = 0;
  protected onValue(
    _i: number,
    _f: number,
    total: number,
    offset: number,
    _b: Buffer,
    _off: number,
    len: number,
  ): void {
    this.bytes += len;
    if (offset + len === total) this.values++;
  }
  protected onMiss(): void {
    this.misses++;
  }
  protected onOk(): void {
    /* not used by gets */
  }
  protected onError(_i: number, _c: ErrorCode): void {
    this.errors++;
  }
  protected onFinish(): void {
    /* pooled by the caller */
  }
  /** Reused for every reply, as the WebSocket front pools its requests: each item settles once per use. */
  again(): this {
    this.reinit();
    return this;
  }
}

function main(): void {
  const rows: MicroRow[] = [];
  const KEYS = 100;
  const keys = Array.from({ length: KEYS }, (_, i) => Buffer.from(`k100:${i * 13}`));
  const batch = new GetBatch(1000);
  const req = new Counting();
  let answered = 0;
  let outOfStep = '';
  const inflight = new Inflight({
    answered: () => {
      answered++;
    },
    outOfStep: (why) => {
      outOfStep = why;
      inflight.takeAll();
    },
  });
  const parser = new ReplyParser(inflight);
  for (const size of [100, 4096, 20480]) {
    const value = Buffer.alloc(size, 0x62);
    const parts: Buffer[] = [];
    for (const k of keys) parts.push(Buffer.from(`VALUE ${k.toString()} 0 ${size}\r\n`), value, Buffer.from('\r\n'));
    parts.push(Buffer.from('END\r\n'));
    const reply = Buffer.concat(parts);
    const segments: Buffer[] = [];
    for (let p = 0; p < reply.length; p += 1448)
      segments.push(Buffer.from(reply.subarray(p, Math.min(reply.length, p + 1448))));
    const label = size >= 1024 ? `${size / 1024} KiB` : `${size} B`;
    const once = (chunks: Buffer[]): number => {
      batch.reset();
      req.again();
      for (let k = 0; k < KEYS; k++) batch.add(req, k, keys[k], 0, keys[k].length);
      batch.seal();
      inflight.push(batch);
      for (const ch of chunks) parser.feed(ch, ch.length);
      return req.bytes;
    };
    const before = req.values;
    once([reply]);
    if (outOfStep || req.errors || req.misses || req.values - before !== KEYS || inflight.size !== 0) {
      print('memcached-parser', [
        {
          name: 'skipped',
          opsPerSec: NaN,
          nsPerOp: NaN,
          note: `the reply was not parsed as expected (${outOfStep || `${req.values - before} values, ${req.misses} misses, ${req.errors} errors`})`,
        },
      ]);
      return;
    }
    rows.push(
      measure(
        `multi-get reply of ${KEYS} x ${label}, one chunk`,
        (n) => {
          let acc = 0;
          for (let i = 0; i < n; i++) acc += once([reply]);
          return acc;
        },
        KEYS,
        'per key: VALUE line parsed, key matched, value delivered',
      ),
    );
    rows.push(
      measure(
        `multi-get reply of ${KEYS} x ${label}, 1,448-byte segments`,
        (n) => {
          let acc = 0;
          for (let i = 0; i < n; i++) acc += once(segments);
          return acc;
        },
        KEYS,
      ),
    );
  }
  const line = Buffer.from('VALUE user:123456:profile 0 4096\r\n');
  rows.push(
    measure('reply-line: startsWith + indexOfByte + 2 x readUint on a VALUE line', (n) => {
      let acc = 0;
      const end = line.length - 2;
      for (let i = 0; i < n; i++) {
        if (!startsWith(line, 0, end, 'VALUE ')) continue;
        const ke = indexOfByte(line, 0x20, 6, end);
        const fe = indexOfByte(line, 0x20, ke + 1, end);
        acc += readUint(line, ke + 1, end) + readUint(line, fe + 1, end);
      }
      return acc;
    }),
  );
  print('memcached-parser', rows, { repliesParsed: answered, outOfStep: outOfStep || undefined });
}

main();
