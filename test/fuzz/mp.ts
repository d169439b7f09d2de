/**
 * A msgpack encoder for the fuzzer, written apart from the gateway's reader and from msgpackr so the two
 * cannot share a mistake: values as a small tree, encoded minimally or (with an Rng) in any valid wider
 * form, plus raw bytes spliced anywhere, so headers can lie about their lengths.
 */
import type { Rng } from './prng';

export class MpMap {
  constructor(readonly entries: [MpVal, MpVal][]) {}
}
/** Bytes emitted as they are: a lying header, garbage, a truncated value. */
export class Raw {
  constructor(readonly bytes: Buffer) {}
}
export class Float32 {
  constructor(readonly v: number) {}
}
export type MpVal = null | undefined | boolean | number | bigint | string | Buffer | MpVal[] | MpMap | Raw | Float32;

export function map(o: Record<string, MpVal>): MpMap {
  return new MpMap(Object.entries(o).filter(([, v]) => v !== undefined) as [MpVal, MpVal][]);
}

class Out {
  parts: Buffer[] = [];
  push(...bytes: number[]): void {
    this.parts.push(Buffer.from(bytes));
  }
  buf(b: Buffer): void {
    this.parts.push(b);
  }
}

function u(n: number, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  if (bytes === 8) b.writeBigUInt64BE(BigInt(n));
  else b.writeUIntBE(n, 0, bytes);
  return b;
}

/** Encodes `v`; with `rng`, sizes and ints sometimes take a wider (still valid) form. */
export function encode(v: MpVal, rng?: Rng): Buffer {
  const o = new Out();
  enc(o, v, rng);
  return Buffer.concat(o.parts);
}

function wide(rng: Rng | undefined): boolean {
  return rng !== undefined && rng.chance(0.1);
}

function header(o: Out, n: number, fix: number, fixMax: number, c8: number, c16: number, c32: number, rng?: Rng): void {
  const w = wide(rng);
  if (n <= fixMax && fix >= 0 && !w) return o.push(fix | n);
  if (n < 256 && c8 >= 0 && !w) return o.push(c8, n);
  if (n < 65536 && !(w && rng!.chance(0.5))) return o.buf(Buffer.concat([Buffer.from([c16]), u(n, 2)]));
  o.buf(Buffer.concat([Buffer.from([c32]), u(n, 4)]));
}

function enc(o: Out, v: MpVal, rng?: Rng): void {
  if (v === null || v === undefined) return o.push(0xc0);
  if (v === true) return o.push(0xc3);
  if (v === false) return o.push(0xc2);
  if (v instanceof Raw) return o.buf(v.bytes);
  if (v instanceof Float32) {
    const b = Buffer.alloc(5);
    b[0] = 0xca;
    b.writeFloatBE(v.v, 1);
    return o.buf(b);
  }
  if (typeof v === 'bigint') {
    const b = Buffer.alloc(9);
    if (v < 0n) {
      b[0] = 0xd3;
      b.writeBigInt64BE(BigInt.asIntN(64, v), 1);
    } else {
      b[0] = 0xcf;
      b.writeBigUInt64BE(BigInt.asUintN(64, v), 1);
    }
    return o.buf(b);
  }
  if (typeof v === 'number') return encNumber(o, v, rng);
  if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    header(o, b.length, 0xa0, 31, 0xd9, 0xda, 0xdb, rng);
    return o.buf(b);
  }
  if (Buffer.isBuffer(v)) {
    header(o, v.length, -1, -1, 0xc4, 0xc5, 0xc6, rng);
    return o.buf(v);
  }
  if (Array.isArray(v)) {
    header(o, v.length, 0x90, 15, -1, 0xdc, 0xdd, rng);
    for (const x of v) enc(o, x, rng);
    return;
  }
  header(o, v.entries.length, 0x80, 15, -1, 0xde, 0xdf, rng);
  for (const [k, x] of v.entries) {
    enc(o, k, rng);
    enc(o, x, rng);
  }
}

function encNumber(o: Out, v: number, rng?: Rng): void {
  if (!Number.isInteger(v) || Math.abs(v) > Number.MAX_SAFE_INTEGER) {
    const b = Buffer.alloc(9);
    b[0] = 0xcb;
    b.writeDoubleBE(v, 1);
    return o.buf(b);
  }
  const w = wide(rng);
  if (v >= 0) {
    if (v < 128 && !w) return o.push(v);
    if (v < 256 && !(w && rng!.chance(0.7))) return o.push(0xcc, v);
    if (v < 65536 && !(w && rng!.chance(0.7))) return o.buf(Buffer.concat([Buffer.from([0xcd]), u(v, 2)]));
    if (v < 2 ** 32 && !(w && rng!.chance(0.5))) return o.buf(Buffer.concat([Buffer.from([0xce]), u(v, 4)]));
    return o.buf(Buffer.concat([Buffer.from([0xcf]), u(v, 8)]));
  }
  if (v >= -32 && !w) return o.push(v & 0xff);
  const b = Buffer.alloc(9);
  if (v >= -128) {
    b[0] = 0xd0;
    b.writeInt8(v, 1);
    return o.buf(b.subarray(0, 2));
  }
  if (v >= -32768) {
    b[0] = 0xd1;
    b.writeInt16BE(v, 1);
    return o.buf(b.subarray(0, 3));
  }
  if (v >= -(2 ** 31)) {
    b[0] = 0xd2;
    b.writeInt32BE(v, 1);
    return o.buf(b.subarray(0, 5));
  }
  b[0] = 0xd3;
  b.writeBigInt64BE(BigInt(v), 1);
  return o.buf(b);
}

/** `depth` nested one-element arrays (or maps) around nil, built iteratively. */
export function deepNest(depth: number, useMaps: boolean): Buffer {
  const head = Buffer.alloc(useMaps ? depth * 2 : depth);
  if (useMaps)
    for (let k = 0; k < depth; k++) {
      head[2 * k] = 0x81;
      head[2 * k + 1] = 0xc0;
    }
  else head.fill(0x91);
  return Buffer.concat([head, Buffer.from([0xc0])]);
}
