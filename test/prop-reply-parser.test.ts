/**
 * Property test of the memcached reply parser (fast-check, bounded in time; the seed is printed on
 * failure). Random runs of in-flight batches (multi-gets, runs of meta writes) get random valid reply
 * streams (VALUE/END, HD/NS/NF/EX, SERVER_ERROR; values holding \r, \n and reply words), fed split at
 * random points into a reused read buffer. The parser's outcomes must equal what a deliberately simple
 * oracle decodes from the whole stream. Mutated streams (byte flips, insertions, deletions, truncation)
 * must decode as the oracle decodes them or be reported out of step: nothing else is thrown, and no item
 * settles with an outcome the oracle does not give it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GetBatch } from '../src/backends/memcached/get-batch';
import { MutationBatch, OpaqueCounter } from '../src/backends/memcached/mutation-batch';
import { Inflight } from '../src/backends/memcached/inflight';
import { ReplyParser } from '../src/backends/memcached/reply-parser';
import { Request } from '../src/core/request';
import type { ErrorCode } from '../src/core/errors';

const MAX_VALUE = 4096;

/** Outcomes in settlement order, as strings. */
class Recorder extends Request {
  readonly out: string[] = [];
  private readonly parts = new Map<number, Buffer[]>();
  protected onValue(
    i: number,
    flags: number,
    total: number,
    offset: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void {
    let p = this.parts.get(i);
    if (!p) this.parts.set(i, (p = []));
    p.push(Buffer.from(buf.subarray(off, off + len)));
    if (offset + len === total) {
      this.out.push(`${i}:value:${flags}:${Buffer.concat(p).toString('hex')}`);
      this.parts.delete(i);
    }
  }
  protected onMiss(i: number): void {
    this.out.push(`${i}:miss`);
  }
  protected onOk(i: number): void {
    this.out.push(`${i}:ok`);
  }
  protected onError(i: number, code: ErrorCode): void {
    this.out.push(`${i}:${code}`);
  }
  protected onFinish(): void {}
}

interface GetSpec {
  kind: 'get';
  keys: { key: string; hit: boolean; flags: number; value: Uint8Array }[];
}
interface MutSpec {
  kind: 'mut';
  ops: { del: boolean; reply: 'HD' | 'NS' | 'NF' | 'EX' | 'SE'; pre: string; post: string }[];
}
type Spec = GetSpec | MutSpec;

// ---- the oracle: the whole stream at once, by the book -------------------------------------------------

type Decoded = { out: string[]; status: 'ok' | 'incomplete' | 'error' };

/** Item numbers: every get key and every write gets the next index, in batch order. */
function oracle(s: Buffer, specs: Spec[]): Decoded {
  const out: string[] = [];
  let p = 0;
  let item = 0;
  /** The next line without its \r\n; null: no \n yet; false: a \n not preceded by \r. */
  const next = (): string | null | false => {
    const nl = s.indexOf(0x0a, p);
    if (nl < 0) return null;
    if (nl === p || s[nl - 1] !== 0x0d) return false;
    const t = s.toString('latin1', p, nl - 1);
    p = nl + 1;
    return t;
  };
  let opaque = 0;
  for (const spec of specs) {
    if (spec.kind === 'get') {
      const base = item;
      item += spec.keys.length;
      let cursor = 0;
      for (;;) {
        const t = next();
        if (t === null) return { out, status: 'incomplete' };
        if (t === false) return { out, status: 'error' };
        if (t === 'END') {
          for (; cursor < spec.keys.length; cursor++) out.push(`${base + cursor}:miss`);
          break;
        }
        const m = /^VALUE ([^ ]+) (\d+) (\d+)$/.exec(t);
        if (!m) return { out, status: 'error' };
        const flags = Number(m[2]),
          bytes = Number(m[3]);
        if (flags > 0xffffffff || bytes > MAX_VALUE) return { out, status: 'error' };
        let k = cursor;
        while (k < spec.keys.length && spec.keys[k].key !== m[1]) k++;
        if (k === spec.keys.length) return { out, status: 'error' };
        for (; cursor < k; cursor++) out.push(`${base + cursor}:miss`);
        cursor = k + 1;
        if (p + bytes < s.length && s[p + bytes] !== 0x0d) return { out, status: 'error' };
        if (p + bytes + 1 < s.length && s[p + bytes + 1] !== 0x0a) return { out, status: 'error' };
        if (p + bytes + 2 > s.length) return { out, status: 'incomplete' };
        out.push(`${base + k}:value:${flags}:${s.subarray(p, p + bytes).toString('hex')}`);
        p += bytes + 2;
      }
    } else {
      for (const op of spec.ops) {
        const want = ++opaque;
        const t = next();
        if (t === null) return { out, status: 'incomplete' };
        if (t === false) return { out, status: 'error' };
        const i = item++;
        if (t.startsWith('SERVER_ERROR')) {
          out.push(`${i}:SHARD_ERROR`);
          continue;
        }
        if (t.length < 2 || (t.length > 2 && t[2] !== ' ')) return { out, status: 'error' };
        const at = t.indexOf(' O');
        const tok = at < 0 ? '' : t.slice(at + 2).split(' ')[0];
        if (!/^\d+$/.test(tok)) return { out, status: 'error' };
        const code = t.slice(0, 2);
        if (code !== 'HD' && code !== 'NS' && code !== 'NF' && code !== 'EX') return { out, status: 'error' };
        if (Number(tok) !== want) return { out, status: 'error' };
        out.push(code === 'HD' ? `${i}:ok` : code === 'NF' && op.del ? `${i}:miss` : `${i}:NOT_STORED`);
      }
    }
  }
  if (p === s.length) return { out, status: 'ok' };
  return { out, status: s.indexOf(0x0a, p) >= 0 ? 'error' : 'incomplete' };
}

// ---- the generator's own encoding of a valid reply ----------------------------------------------------

function encode(specs: Spec[]): { bytes: Buffer; expect: string[] } {
  const parts: Buffer[] = [];
  const expect: string[] = [];
  let item = 0;
  let opaque = 0;
  for (const spec of specs) {
    if (spec.kind === 'get') {
      for (const k of spec.keys) {
        const i = item++;
        if (!k.hit) {
          expect.push(`${i}:miss`);
          continue;
        }
        parts.push(
          Buffer.from(`VALUE ${k.key} ${k.flags} ${k.value.length}\r\n`),
          Buffer.from(k.value),
          Buffer.from('\r\n'),
        );
        expect.push(`${i}:value:${k.flags}:${Buffer.from(k.value).toString('hex')}`);
      }
      parts.push(Buffer.from('END\r\n'));
    } else {
      for (const op of spec.ops) {
        const i = item++;
        const o = ++opaque;
        if (op.reply === 'SE') {
          parts.push(Buffer.from('SERVER_ERROR out of memory\r\n'));
          expect.push(`${i}:SHARD_ERROR`);
          continue;
        }
        parts.push(Buffer.from(`${op.reply}${op.pre} O${o}${op.post}\r\n`));
        expect.push(op.reply === 'HD' ? `${i}:ok` : op.reply === 'NF' && op.del ? `${i}:miss` : `${i}:NOT_STORED`);
      }
    }
  }
  // Misses settle at a later VALUE or at END, so they come out in key order: sort within each get.
  return { bytes: Buffer.concat(parts), expect };
}

// ---- the parser under test ---------------------------------------------------------------------------

function parse(specs: Spec[], stream: Buffer, cuts: number[]): { out: string[]; outOfStep: boolean; left: number } {
  const rec = new Recorder();
  const opq = new OpaqueCounter();
  let outOfStep = false;
  const fifo = new Inflight({
    answered: () => {},
    outOfStep: () => {
      outOfStep = true;
    },
  });
  let item = 0;
  for (const spec of specs) {
    if (spec.kind === 'get') {
      const b = new GetBatch(64);
      for (const k of spec.keys) {
        const kb = Buffer.from(k.key, 'latin1');
        b.add(rec, item++, kb, 0, kb.length);
      }
      b.seal();
      fifo.push(b);
    } else {
      const b = new MutationBatch(64, opq);
      for (const op of spec.ops) {
        const kb = Buffer.from(`w${item}`);
        if (op.del) b.addDel(rec, item++, kb, 0, kb.length);
        else {
          b.beginSet(rec, item++, kb, 0, kb.length, 0, 0, 1);
          b.appendValue(Buffer.from('v'), 0, 1);
          b.endSet();
        }
      }
      fifo.push(b);
    }
  }
  const parser = new ReplyParser(fifo);
  parser.maxValueBytes = MAX_VALUE;
  const readBuf = Buffer.alloc(stream.length + 16, 0xee);
  let p = 0;
  for (const q of [...cuts, stream.length]) {
    if (q <= p) continue;
    // One reused read buffer, overwritten after each read: the parser must copy what it keeps.
    stream.copy(readBuf, 0, p, q);
    parser.feed(readBuf, q - p);
    readBuf.fill(0xee);
    p = q;
    if (outOfStep) break;
  }
  return { out: rec.out, outOfStep, left: fifo.size };
}

// ---- arbitraries -------------------------------------------------------------------------------------

const special = ['', '\r', '\n', '\r\n', 'END\r\n', '\r\nEND\r\n', 'VALUE a 0 1\r\n', 'HD O1\r\n'].map(
  (t) => new Uint8Array(Buffer.from(t)),
);
const valueArb = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.constantFrom(...special) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 100, maxLength: 1500 }) },
);
const getArb: fc.Arbitrary<Spec> = fc
  .uniqueArray(
    fc.record({
      key: fc.stringMatching(/^[a-z0-9:]{1,12}$/),
      hit: fc.boolean(),
      flags: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffffffff })),
      value: valueArb,
    }),
    { minLength: 1, maxLength: 8, selector: (k) => k.key },
  )
  .map((keys) => ({ kind: 'get' as const, keys }));
const mutArb: fc.Arbitrary<Spec> = fc
  .array(
    fc.record({
      del: fc.boolean(),
      reply: fc.constantFrom('HD' as const, 'NS' as const, 'NF' as const, 'EX' as const, 'SE' as const),
      pre: fc.constantFrom('', ' t5', ' b'),
      post: fc.constantFrom('', ' c12', ' k'),
    }),
    { minLength: 1, maxLength: 6 },
  )
  .map((ops) => ({ kind: 'mut' as const, ops }));
const specsArb = fc.array(fc.oneof(getArb, mutArb), { minLength: 1, maxLength: 4 });
const cutsArb = fc.oneof(
  { weight: 5, arbitrary: fc.array(fc.nat(), { maxLength: 8 }) },
  { weight: 1, arbitrary: fc.constant(null) }, // byte by byte
);

function cutsFor(len: number, cuts: number[] | null): number[] {
  if (cuts === null) return Array.from({ length: len }, (_, k) => k + 1);
  return [...new Set(cuts.map((c) => c % (len + 1)))].sort((a, b) => a - b);
}

type Mutation = { at: number; how: 'flip' | 'insert' | 'delete' | 'truncate'; byte: number };
const mutationArb = fc.array(
  fc.record({
    at: fc.nat(),
    how: fc.constantFrom('flip' as const, 'insert' as const, 'delete' as const, 'truncate' as const),
    byte: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x0d, 0x0a, 0x20, 0x30, 0x39, 0x4f)),
  }),
  { minLength: 1, maxLength: 3 },
);

function mutate(s: Buffer, ms: Mutation[]): Buffer {
  let b = Buffer.from(s);
  for (const m of ms) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    if (m.how === 'flip') b[at] = m.byte === b[at] ? b[at] ^ 1 : m.byte;
    else if (m.how === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from([m.byte]), b.subarray(at)]);
    else if (m.how === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
    else b = b.subarray(0, at);
  }
  return b;
}

const limits = { numRuns: 2000, interruptAfterTimeLimit: 4000 };

describe('reply parser: properties', () => {
  it('valid reply streams, split at random points, decode exactly as the oracle decodes them whole', () => {
    fc.assert(
      fc.property(specsArb, cutsArb, (specs, cuts) => {
        const { bytes, expect } = encode(specs);
        const o = oracle(bytes, specs);
        assert.equal(o.status, 'ok', 'the oracle reads the generated stream');
        assert.deepEqual(o.out, expect, 'the oracle agrees with the generator');
        const r = parse(specs, bytes, cutsFor(bytes.length, cuts));
        assert.equal(r.outOfStep, false);
        assert.equal(r.left, 0, 'every batch answered');
        assert.deepEqual(r.out, o.out);
      }),
      limits,
    );
  });

  it('mutated streams decode as the oracle decodes them, or are reported out of step; never another outcome', () => {
    fc.assert(
      fc.property(specsArb, mutationArb, cutsArb, (specs, muts, cuts) => {
        const bytes = mutate(encode(specs).bytes, muts);
        const o = oracle(bytes, specs);
        const r = parse(specs, bytes, cutsFor(bytes.length, cuts));
        if (o.status === 'error') {
          assert.equal(r.outOfStep, true, `the oracle found an error, the parser did not (oracle: ${o.out.join(' ')})`);
          assert.deepEqual(
            r.out,
            o.out.slice(0, r.out.length),
            'what settled before the error is what the oracle settled',
          );
        } else {
          assert.equal(r.outOfStep, false, 'no error where the oracle finds none');
          assert.deepEqual(r.out, o.out);
          if (o.status === 'ok') assert.equal(r.left, 0);
        }
      }),
      limits,
    );
  });
});
