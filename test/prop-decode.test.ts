/**
 * Property tests for the decoders (fast-check; each bounded to a few seconds; a failure prints its seed
 * and path, so `fc.assert(..., { seed, path })` replays it).
 *
 * (a) The msgpack reader against msgpackr: random values, encoded here with every width msgpack allows
 *     (msgpackr itself writes only the shortest), decode to what msgpackr decodes; cut anywhere they are
 *     INCOMPLETE, and a resumed skip finishes exactly at the end; mutated, they are read or refused with
 *     the reader's own error, never anything else.
 * (b) Request fields: random maps never throw, and give exactly the first bad field's code (a simple
 *     oracle below), or a request holding the values sent.
 * (c) Body streams: random items cut at random points come out exactly as from the whole body at once;
 *     an over-long item is refused with BodyTooLarge however it is cut.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Unpackr } from 'msgpackr';
import { INCOMPLETE, MsgpackError, MsgpackReader, MpType } from '../src/decode/msgpack-reader';
import { FieldLimits, ItemFields, Op, RequestFields } from '../src/decode/request-fields';
import { BodyTooLarge, MsgpackItems, NdjsonLines } from '../src/decode/body-stream';
import { ErrorTable, type ErrorCode } from '../src/core/errors';

// FC_SEED and FC_PATH (from a failure's message) replay one failing case.
const RUN = (ms = 3000, numRuns = 2000): fc.Parameters<unknown> =>
  process.env.FC_SEED
    ? { seed: Number(process.env.FC_SEED), path: process.env.FC_PATH, endOnFailure: true }
    : { numRuns, plugins: [fc.interruptAfterTimeLimit(ms)] };
const oracle = new Unpackr({ mapsAsObjects: false, useRecords: false, int64AsType: 'number' });

// ---- a msgpack value model, and a deliberately naive encoder that may pick any valid width ----

type V =
  | { t: 'nil' }
  | { t: 'bool'; v: boolean }
  | { t: 'int'; v: number; w: number }
  | { t: 'f32'; v: number }
  | { t: 'f64'; v: number }
  | { t: 'str'; v: string; w: number }
  | { t: 'bin'; v: Uint8Array; w: number }
  | { t: 'arr'; v: V[]; w: number }
  | { t: 'map'; v: [V, V][]; w: number }
  | { t: 'ext'; type: number; data: Uint8Array; w: number };

const width = fc.nat(3);
const leaf: fc.Arbitrary<V> = fc.oneof(
  fc.constant<V>({ t: 'nil' }),
  fc.boolean().map((v): V => ({ t: 'bool', v })),
  fc
    .tuple(
      fc.oneof(
        fc.integer({ min: -40, max: 300 }),
        fc.integer(),
        fc.maxSafeInteger(),
        fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
      ),
      width,
    )
    .map(([v, w]): V => ({ t: 'int', v, w })),
  fc.float({ noDefaultInfinity: false }).map((v): V => ({ t: 'f32', v: Math.fround(v) })),
  fc.double().map((v): V => ({ t: 'f64', v })),
  fc.tuple(fc.string({ unit: 'grapheme', maxLength: 40 }), width).map(([v, w]): V => ({ t: 'str', v, w })),
  fc.tuple(fc.uint8Array({ maxLength: 300 }), width).map(([v, w]): V => ({ t: 'bin', v, w })),
  fc
    .tuple(fc.integer({ min: -128, max: 127 }), fc.uint8Array({ maxLength: 20 }), width)
    .map(([type, data, w]): V => ({ t: 'ext', type, data, w })),
);
const { value: anyValue } = fc.letrec<{ value: V }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.tuple(fc.array(tie('value'), { maxLength: 6 }), width).map(([v, w]): V => ({ t: 'arr', v, w })),
    fc
      .tuple(fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 5 }), width)
      .map(([v, w]): V => ({ t: 'map', v, w })),
  ),
}));

/** The `w`-th header form (mod how many there are) that can hold `n`. */
function pick<T>(forms: (T | null)[], w: number): T {
  const ok = forms.filter((f): f is T => f !== null);
  return ok[w % ok.length];
}

function be(out: number[], v: number, bytes: number): void {
  for (let k = bytes - 1; k >= 0; k--) out.push(Math.floor(v / 2 ** (8 * k)) & 0xff);
}

function lenHeader(
  out: number[],
  n: number,
  w: number,
  fix: [number, number] | null,
  codes: [number, number, number],
): void {
  const forms: ([number, number] | null)[] = [
    fix !== null && n < fix[1] ? [fix[0] | n, 0] : null,
    codes[0] !== 0 && n < 256 ? [codes[0], 1] : null,
    n < 65536 ? [codes[1], 2] : null,
    [codes[2], 4],
  ];
  const [c, bytes] = pick(forms, w);
  out.push(c);
  if (bytes > 0) be(out, n, bytes);
}

function encode(v: V, out: number[] = []): number[] {
  switch (v.t) {
    case 'nil':
      out.push(0xc0);
      break;
    case 'bool':
      out.push(v.v ? 0xc3 : 0xc2);
      break;
    case 'int': {
      const x = v.v;
      const b = Buffer.alloc(9);
      const forms: ((() => void) | null)[] = [
        x >= 0 && x < 128 ? () => out.push(x) : null,
        x >= -32 && x < 0 ? () => out.push(x & 0xff) : null,
        x >= 0 && x < 256 ? () => out.push(0xcc, x) : null,
        x >= 0 && x < 65536
          ? () => {
              out.push(0xcd);
              be(out, x, 2);
            }
          : null,
        x >= 0 && x < 2 ** 32
          ? () => {
              out.push(0xce);
              be(out, x, 4);
            }
          : null,
        x >= 0
          ? () => {
              b[0] = 0xcf;
              b.writeBigUInt64BE(BigInt(x), 1);
              out.push(...b);
            }
          : null,
        x >= -128 && x < 128 ? () => out.push(0xd0, x & 0xff) : null,
        x >= -32768 && x < 32768
          ? () => {
              b[0] = 0xd1;
              b.writeInt16BE(x, 1);
              out.push(...b.subarray(0, 3));
            }
          : null,
        x >= -(2 ** 31) && x < 2 ** 31
          ? () => {
              b[0] = 0xd2;
              b.writeInt32BE(x, 1);
              out.push(...b.subarray(0, 5));
            }
          : null,
        () => {
          b[0] = 0xd3;
          b.writeBigInt64BE(BigInt(x), 1);
          out.push(...b);
        },
      ];
      pick(forms, v.w)();
      break;
    }
    case 'f32': {
      const b = Buffer.alloc(5);
      b[0] = 0xca;
      b.writeFloatBE(v.v, 1);
      out.push(...b);
      break;
    }
    case 'f64': {
      const b = Buffer.alloc(9);
      b[0] = 0xcb;
      b.writeDoubleBE(v.v, 1);
      out.push(...b);
      break;
    }
    case 'str': {
      const s = Buffer.from(v.v, 'utf8');
      lenHeader(out, s.length, v.w, [0xa0, 32], [0xd9, 0xda, 0xdb]);
      out.push(...s);
      break;
    }
    case 'bin':
      lenHeader(out, v.v.length, v.w, null, [0xc4, 0xc5, 0xc6]);
      out.push(...v.v);
      break;
    case 'arr':
      lenHeader(out, v.v.length, v.w, [0x90, 16], [0, 0xdc, 0xdd]);
      for (const e of v.v) encode(e, out);
      break;
    case 'map':
      lenHeader(out, v.v.length, v.w, [0x80, 16], [0, 0xde, 0xdf]);
      for (const [k, e] of v.v) {
        encode(k, out);
        encode(e, out);
      }
      break;
    case 'ext': {
      const n = v.data.length;
      const fixed = [1, 2, 4, 8, 16].indexOf(n);
      if (fixed >= 0 && v.w % 2 === 0) out.push(0xd4 + fixed);
      else lenHeader(out, n, v.w, null, [0xc7, 0xc8, 0xc9]);
      out.push(v.type & 0xff, ...v.data);
      break;
    }
  }
  return out;
}

const hasExt = (v: V): boolean =>
  v.t === 'ext' ||
  (v.t === 'arr' && v.v.some(hasExt)) ||
  (v.t === 'map' && v.v.some(([k, e]) => hasExt(k) || hasExt(e)));

const EXT = Symbol('ext');

/** Decodes through the reader's public API only, the way request decoding uses it. */
function walk(r: MsgpackReader): unknown {
  switch (r.peekType()) {
    case MpType.Nil:
      r.skip();
      return null;
    case MpType.Bool: {
      const v = r.buf[r.pos] === 0xc3;
      r.skip();
      return v;
    }
    case MpType.Int:
    case MpType.Float:
      return r.readNumber();
    case MpType.Str:
      assert.ok(r.readBytes());
      return Buffer.from(r.buf.subarray(r.off, r.off + r.len)).toString('utf8');
    case MpType.Bin:
      assert.ok(r.readBytes());
      return Buffer.from(r.buf.subarray(r.off, r.off + r.len));
    case MpType.Array: {
      const n = r.readArrayHeader();
      const a: unknown[] = [];
      for (let k = 0; k < n; k++) a.push(walk(r));
      return a;
    }
    case MpType.Map: {
      const n = r.readMapHeader();
      const m = new Map<unknown, unknown>();
      for (let k = 0; k < n; k++) {
        const key = walk(r);
        m.set(key, walk(r));
      }
      return m;
    }
    case MpType.Ext: {
      // Not a type the reader decodes: asked for a number or bytes it refuses, and it can skip it.
      const at = r.pos;
      assert.throws(
        () => r.readNumber(),
        (e) => e instanceof MsgpackError && e !== INCOMPLETE,
      );
      assert.equal(r.readBytes(), false);
      assert.equal(r.pos, at);
      r.skip();
      return EXT;
    }
  }
}

const onlyReaderErrors = (fn: () => void): boolean => {
  try {
    fn();
    return true;
  } catch (e) {
    if (e instanceof MsgpackError) return false;
    throw e;
  }
};

describe('property: msgpack reader', () => {
  it('decodes what msgpackr decodes, at every width', () => {
    fc.assert(
      fc.property(anyValue, (v) => {
        const b = Buffer.from(encode(v));
        const r = new MsgpackReader().reset(b, 0, b.length);
        const got = walk(r);
        assert.equal(r.pos, b.length);
        r.reset(b, 0, b.length).skip();
        assert.equal(r.pos, b.length, 'skip ends where the value ends');
        if (!hasExt(v)) assert.deepStrictEqual(got, oracle.unpack(b));
      }),
      RUN(),
    );
  });

  it("cut anywhere: INCOMPLETE; a skip resumed as bytes arrive ends exactly at the value's end", () => {
    fc.assert(
      fc.property(
        anyValue,
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 6 }),
        (v, cutsAt) => {
          const b = Buffer.from(encode(v));
          const cuts = [...new Set(cutsAt.map((x) => Math.floor(x * b.length)))]
            .sort((x, y) => x - y)
            .filter((c) => c < b.length);
          const r = new MsgpackReader();
          for (const cut of cuts) {
            assert.throws(
              () => walk(r.reset(b, 0, cut)),
              (e) => e === INCOMPLETE,
              `walk cut at ${cut}/${b.length}`,
            );
            assert.throws(
              () => r.reset(b, 0, cut).skip(),
              (e) => e === INCOMPLETE,
              `skip cut at ${cut}/${b.length}`,
            );
            assert.ok(r.want > cut && r.want <= b.length, 'want is a true lower bound on the bytes still needed');
          }
          // One skip, resumed after each cut, as a streaming body does it.
          const ends = [...cuts, b.length];
          r.reset(b, 0, ends[0]);
          let doneAt = -1;
          for (let k = 0; k < ends.length && doneAt < 0; k++) {
            r.end = ends[k];
            try {
              if (k === 0) r.skip();
              else r.resumeSkip();
              doneAt = ends[k];
            } catch (e) {
              assert.equal(e, INCOMPLETE);
            }
          }
          assert.equal(doneAt, b.length, 'the value is whole only once all of it is there');
          assert.equal(r.pos, b.length);
          assert.equal(r.open, 0);
        },
      ),
      RUN(),
    );
  });

  it("mutated bytes are read or refused with the reader's own error; skip and the walk agree", () => {
    const mutation = fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete'));
    fc.assert(
      fc.property(anyValue, fc.array(mutation, { minLength: 1, maxLength: 5 }), (v, ms) => {
        const bytes = encode(v);
        for (const [at, byte, how] of ms) {
          const p = bytes.length === 0 ? 0 : at % bytes.length;
          if (how === 'set') bytes[p] = byte;
          else if (how === 'insert') bytes.splice(p, 0, byte);
          else bytes.splice(p, 1);
        }
        const b = Buffer.from(bytes);
        const r1 = new MsgpackReader().reset(b, 0, b.length);
        const r2 = new MsgpackReader().reset(b, 0, b.length);
        const walked = onlyReaderErrors(() => walk(r1));
        const skipped = onlyReaderErrors(() => r2.skip());
        assert.equal(walked, skipped, 'the walk and skip agree on whether the bytes are a value');
        if (walked) assert.equal(r1.pos, r2.pos);
        const r3 = new MsgpackReader().reset(b, 0, b.length);
        onlyReaderErrors(() => new RequestFields().read(r3));
        onlyReaderErrors(() => new ItemFields().read(r3.reset(b, 0, b.length)));
      }),
      RUN(),
    );
  });
});

// ---- request fields against a simple oracle ----

const LIMITS: FieldLimits = { maxTtlSeconds: 2592000, maxWaitMs: 50 };
const str = (v: string): V => ({ t: 'str', v, w: 0 });
const num = (v: number): V =>
  Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER ? { t: 'int', v, w: 0 } : { t: 'f64', v };
const fieldValue: fc.Arbitrary<V> = fc.oneof(
  anyValue,
  fc
    .oneof(
      fc.integer({ min: -5, max: 5 }),
      fc.constantFrom(50, 51, 2592000, 2592001, 2 ** 32 - 1, 2 ** 32, 1.5, NaN, -0),
    )
    .map(num),
  fc.constantFrom('get', 'set', 'del', 'mget', 'mset', 'mdel', 'frob', '').map(str),
  fc
    .tuple(fc.string({ maxLength: 8 }), fc.boolean())
    .map(([s, asBin]): V => (asBin ? { t: 'bin', v: Buffer.from(s), w: 0 } : str(s))),
);
const fieldName: fc.Arbitrary<V> = fc.oneof(
  fc.constantFrom('id', 'op', 'key', 'value', 'ttl', 'flags', 'wait', 'keys', 'items', 'extra').map(str),
  fc.constantFrom('id', 'key', 'ttl').map((s): V => ({ t: 'bin', v: Buffer.from(s), w: 1 })),
  anyValue,
);
const request: fc.Arbitrary<V> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 8 }), width)
      .map(([v, w]): V => ({ t: 'map', v, w })),
  },
  { weight: 1, arbitrary: anyValue },
);

const bytesOf = (v: V): string | null =>
  v.t === 'str'
    ? Buffer.from(v.v, 'utf8').toString('latin1')
    : v.t === 'bin'
      ? Buffer.from(v.v).toString('latin1')
      : null;
const numberOf = (v: V): number | null => (v.t === 'int' || v.t === 'f32' || v.t === 'f64' ? v.v : null);
const uintIn = (v: V, max: number): boolean => {
  const n = numberOf(v);
  return n !== null && Number.isInteger(n) && n >= 0 && n <= max;
};
const OPS: Record<string, Op> = { get: Op.Get, set: Op.Set, del: Op.Del, mget: Op.MGet, mset: Op.MSet, mdel: Op.MDel };

/** The first bad field's code, read off the model; null for a request the decoder must accept. */
function expectedError(v: V): ErrorCode | null {
  if (v.t !== 'map') return 'BAD_REQUEST';
  for (const [k, e] of v.v) {
    const name = bytesOf(k);
    const isBytes = e.t === 'str' || e.t === 'bin';
    let code: ErrorCode | null = null;
    if (name === null) code = 'BAD_REQUEST';
    else if (name === 'id') code = uintIn(e, 2 ** 32 - 1) ? null : 'BAD_REQUEST';
    else if (name === 'op') code = isBytes && Object.hasOwn(OPS, bytesOf(e)!) ? null : 'UNKNOWN_OP';
    else if (name === 'key') code = isBytes ? null : 'BAD_KEY';
    else if (name === 'value') code = isBytes ? null : 'BAD_VALUE';
    else if (name === 'ttl') code = uintIn(e, LIMITS.maxTtlSeconds) ? null : 'BAD_TTL';
    else if (name === 'flags') code = uintIn(e, 2 ** 32 - 1) ? null : 'BAD_FLAGS';
    else if (name === 'wait') code = uintIn(e, LIMITS.maxWaitMs) ? null : 'BAD_WAIT';
    if (code !== null) return code;
  }
  return null;
}

describe('property: request fields', () => {
  it("never throw on msgpack; give the first bad field's stable code, or exactly the values sent", () => {
    const f = new RequestFields(LIMITS);
    fc.assert(
      fc.property(request, (v) => {
        const b = Buffer.from(encode(v));
        const r = new MsgpackReader().reset(b, 0, b.length);
        f.read(r);
        assert.equal(r.pos, b.length, 'the whole request is consumed');
        const want = expectedError(v);
        assert.equal(f.error, want);
        if (f.error !== null) {
          assert.ok(f.error in ErrorTable && f.error !== 'INTERNAL');
          assert.ok(f.errorMessage.length > 0);
          return;
        }
        const last = (name: string): V | undefined =>
          (v as { v: [V, V][] }).v.filter(([k]) => bytesOf(k) === name).pop()?.[1];
        const n = (name: string, absent: number): number => {
          const x = last(name);
          return x ? numberOf(x)! + 0 : absent;
        }; // -0 reads as 0
        assert.equal(f.id, n('id', -1));
        assert.equal(f.op, last('op') ? OPS[bytesOf(last('op')!)!] : Op.None);
        assert.equal(f.ttl, n('ttl', 0));
        assert.equal(f.flags, n('flags', 0));
        assert.equal(f.wait, n('wait', 0));
        const key = last('key');
        if (key) assert.equal(Buffer.from(b.subarray(f.keyOff, f.keyOff + f.keyLen)).toString('latin1'), bytesOf(key));
        else assert.equal(f.keyOff, -1);
      }),
      RUN(),
    );
  });

  it('mset items never throw and give a stable code or a whole item', () => {
    const item = new ItemFields({ maxTtlSeconds: 100 });
    fc.assert(
      fc.property(request, (v) => {
        const b = Buffer.from(encode(v));
        const r = new MsgpackReader().reset(b, 0, b.length);
        item.read(r);
        assert.equal(r.pos, b.length);
        if (item.error === null) {
          assert.ok(item.keyOff >= 0 && item.valueOff >= 0);
          assert.ok(item.ttl >= 0 && item.ttl <= 100 && Number.isInteger(item.ttl));
        } else {
          assert.ok(['BAD_REQUEST', 'BAD_KEY', 'BAD_VALUE', 'BAD_TTL', 'BAD_FLAGS'].includes(item.error), item.error);
        }
      }),
      RUN(),
    );
  });
});

// ---- body streams: cut anywhere, same items as the whole body ----

/** Sorted, distinct cut points inside `n` bytes. */
const cutsOf = (fractions: number[], n: number): number[] =>
  [...new Set(fractions.map((x) => Math.floor(x * n)))].filter((c) => c > 0 && c < n).sort((a, b) => a - b);
const fractions = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 });

function pieces(body: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, body.length]) {
    out.push(body.subarray(at, c));
    at = c;
  }
  return out;
}

/** The bytes of each msgpack item, fed in pieces; a thrown error ends the list. */
function msgpackItems(parts: Buffer[], max: number): { items: string[]; error?: unknown } {
  const acc = new MsgpackItems(max);
  const items: string[] = [];
  try {
    for (const p of parts) {
      acc.append(p);
      while (acc.next()) {
        const at = acc.reader.pos;
        acc.reader.skip();
        items.push(Buffer.from(acc.reader.buf.subarray(at, acc.reader.pos)).toString('hex'));
        acc.consumed();
      }
    }
    acc.finish();
  } catch (error) {
    return { items, error };
  }
  return { items };
}

function ndjsonLines(parts: Buffer[], max: number): { items: string[]; error?: unknown } {
  const acc = new NdjsonLines(max);
  const items: string[] = [];
  try {
    for (const p of parts) {
      acc.append(p);
      for (let l = acc.nextLine(); l !== null; l = acc.nextLine()) items.push(l);
    }
    const last = acc.finish();
    if (last !== null) items.push(last);
  } catch (error) {
    return { items, error };
  }
  return { items };
}

describe('property: body streams', () => {
  it('msgpack: items cut at random points come out as from the whole body, concatenated or in one array', () => {
    fc.assert(
      fc.property(fc.array(anyValue, { maxLength: 12 }), fc.boolean(), fractions, (values, wrap, fr) => {
        // A body that starts with an array is the one-array form (PROTOCOL.md), so a concatenated body
        // whose first item is an array is not one this property can state.
        const vs: V[] = !wrap && values[0]?.t === 'arr' ? [{ t: 'nil' }, ...values] : values;
        const encoded = vs.map((v) => Buffer.from(encode(v)));
        const body = Buffer.concat([
          wrap ? Buffer.from([0xdc, vs.length >> 8, vs.length & 0xff]) : Buffer.alloc(0),
          ...encoded,
        ]);
        const whole = msgpackItems([body], 1 << 20);
        assert.equal(whole.error, undefined);
        assert.deepEqual(
          whole.items,
          encoded.map((e) => e.toString('hex')),
        );
        assert.deepEqual(msgpackItems(pieces(body, cutsOf(fr, body.length)), 1 << 20), whole);
      }),
      RUN(),
    );
  });

  it('msgpack: an item over maxItemBytes is refused with BodyTooLarge however it is cut; the items before it come out', () => {
    fc.assert(
      fc.property(
        fc.array(anyValue, { maxLength: 6 }),
        fc.integer({ min: 1, max: 3000 }),
        fc.boolean(),
        fractions,
        (values, over, nested, fr) => {
          const max = 2048;
          const big: V = nested
            ? { t: 'arr', v: [{ t: 'bin', v: new Uint8Array(max + over), w: 0 }], w: 0 }
            : { t: 'str', v: 'x'.repeat(max + over), w: 1 };
          // Values over the limit are left out first: the body must then not start with an array (a body
          // that is one top-level array is read as the list of items), so a nil goes ahead of one.
          const small = values.filter((v) => encode(v).length <= max);
          const vs: V[] = small[0]?.t === 'arr' || (small.length === 0 && nested) ? [{ t: 'nil' }, ...small] : small;
          const before = vs.map((v) => Buffer.from(encode(v)));
          const body = Buffer.concat([...before, Buffer.from(encode(big)), Buffer.from(encode({ t: 'nil' }))]);
          const got = msgpackItems(pieces(body, cutsOf(fr, body.length)), max);
          assert.ok(got.error instanceof BodyTooLarge, String(got.error));
          assert.deepEqual(
            got.items,
            before.map((e) => e.toString('hex')),
          );
        },
      ),
      RUN(),
    );
  });

  it('msgpack: a truncated or malformed body is refused with MsgpackError (or BodyTooLarge), never anything else', () => {
    fc.assert(
      fc.property(
        fc.array(anyValue, { minLength: 1, maxLength: 6 }),
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        fractions,
        (vs, at, byte, fr) => {
          const body = Buffer.concat(vs.map((v) => Buffer.from(encode(v))));
          const bad = Buffer.from(body);
          bad[at % bad.length] = byte;
          for (const b of [body.subarray(0, at % body.length), bad]) {
            const got = msgpackItems(pieces(b, cutsOf(fr, b.length)), 1 << 20);
            if (got.error !== undefined)
              assert.ok(got.error instanceof MsgpackError || got.error instanceof BodyTooLarge, String(got.error));
            const whole = msgpackItems([b], 1 << 20);
            assert.deepEqual(got.items, whole.items, 'cut or whole, the same items');
            assert.equal(String(got.error), String(whole.error), 'cut or whole, the same error');
          }
        },
      ),
      RUN(),
    );
  });

  const jsonLine = fc.oneof(fc.json({ maxDepth: 2 }), fc.constantFrom('', '   ', '\r'));
  it('NDJSON: lines cut at random points come out as from splitting the whole body', () => {
    fc.assert(
      fc.property(fc.array(jsonLine, { maxLength: 15 }), fc.boolean(), fractions, (lines, lastNewline, fr) => {
        const text = lines.join('\n') + (lastNewline ? '\n' : '');
        const body = Buffer.from(text, 'utf8');
        const want = text
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l !== '');
        assert.deepEqual(ndjsonLines([body], 1 << 20), { items: want });
        assert.deepEqual(ndjsonLines(pieces(body, cutsOf(fr, body.length)), 1 << 20), { items: want });
      }),
      RUN(),
    );
  });

  it('NDJSON: a line over maxItemBytes is refused with BodyTooLarge however it is cut', () => {
    fc.assert(
      fc.property(
        fc.array(fc.json({ maxDepth: 1 }), { maxLength: 5 }),
        fc.integer({ min: 1, max: 3000 }),
        fc.boolean(),
        fractions,
        (lines, over, last, fr) => {
          const max = 1024;
          const short = lines.filter((l) => Buffer.byteLength(l) <= max);
          const text = [...short, JSON.stringify('y'.repeat(max + over))].join('\n') + (last ? '' : '\n"after"\n');
          const body = Buffer.from(text, 'utf8');
          const got = ndjsonLines(pieces(body, cutsOf(fr, body.length)), max);
          assert.ok(got.error instanceof BodyTooLarge, String(got.error));
          assert.deepEqual(
            got.items,
            short.map((l) => l.trim()).filter((l) => l !== ''),
          );
        },
      ),
      RUN(),
    );
  });
});
