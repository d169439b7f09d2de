/**
 * Key hashes for the ketama ring, bit-compatible with twemproxy 0.5.0 (`src/hashkit/nc_fnv.c`,
 * `nc_md5.c`), because a fleet that twemproxy filled must keep finding its keys where twemproxy put them.
 *
 * Hot path: every function here is called once per key, reads the key in place (`buf[off, off+len)`) and
 * allocates nothing. They are synchronous and share one module-level scratch area, which is safe because
 * JavaScript never interleaves two calls.
 */
import type { HashName } from '../../core/pools';

export type { HashName } from '../../core/pools';

/** A key hash: bytes `buf[off, off+len)` to a uint32. `off + len` must not exceed `buf.length`. */
export type KeyHash = (buf: Uint8Array, off: number, len: number) => number;

/**
 * twemproxy's `hash_fnv1a_64`, which is not 64-bit at all: FNV-1a on 32 bits with the low halves of the
 * 64-bit constants (offset basis 0x84222325, prime 0x1b3), over `char`. `char` is signed on x86-64, where
 * fleets run the Debian amd64 build, so a byte >= 0x80 is sign-extended before the xor and flips the
 * upper 24 bits too (0xe9 is xor-ed in as 0xffffffe9). (On arm64 `char` is unsigned: an arm64 twemproxy
 * places keys with such bytes elsewhere. We follow x86-64.)
 */
export function fnv1a32Signed(buf: Uint8Array, off: number, len: number): number {
  let h = 0x84222325 | 0;
  const end = off + len;
  for (let i = off; i < end; i++) h = Math.imul(h ^ ((buf[i] << 24) >> 24), 0x1b3);
  return h >>> 0;
}

// MD5 (RFC 1321) state and the padded tail of the message (one or two 64-byte blocks).
const state = new Int32Array(4);
const tail = new Uint8Array(128);

/** One MD5 compression of the 64 bytes at `src[p]`, folded into `state`. Generated, fully unrolled. */
function md5Block(src: Uint8Array, p: number): void {
  const x0 = src[p] | (src[p + 1] << 8) | (src[p + 2] << 16) | (src[p + 3] << 24);
  const x1 = src[p + 4] | (src[p + 5] << 8) | (src[p + 6] << 16) | (src[p + 7] << 24);
  const x2 = src[p + 8] | (src[p + 9] << 8) | (src[p + 10] << 16) | (src[p + 11] << 24);
  const x3 = src[p + 12] | (src[p + 13] << 8) | (src[p + 14] << 16) | (src[p + 15] << 24);
  const x4 = src[p + 16] | (src[p + 17] << 8) | (src[p + 18] << 16) | (src[p + 19] << 24);
  const x5 = src[p + 20] | (src[p + 21] << 8) | (src[p + 22] << 16) | (src[p + 23] << 24);
  const x6 = src[p + 24] | (src[p + 25] << 8) | (src[p + 26] << 16) | (src[p + 27] << 24);
  const x7 = src[p + 28] | (src[p + 29] << 8) | (src[p + 30] << 16) | (src[p + 31] << 24);
  const x8 = src[p + 32] | (src[p + 33] << 8) | (src[p + 34] << 16) | (src[p + 35] << 24);
  const x9 = src[p + 36] | (src[p + 37] << 8) | (src[p + 38] << 16) | (src[p + 39] << 24);
  const x10 = src[p + 40] | (src[p + 41] << 8) | (src[p + 42] << 16) | (src[p + 43] << 24);
  const x11 = src[p + 44] | (src[p + 45] << 8) | (src[p + 46] << 16) | (src[p + 47] << 24);
  const x12 = src[p + 48] | (src[p + 49] << 8) | (src[p + 50] << 16) | (src[p + 51] << 24);
  const x13 = src[p + 52] | (src[p + 53] << 8) | (src[p + 54] << 16) | (src[p + 55] << 24);
  const x14 = src[p + 56] | (src[p + 57] << 8) | (src[p + 58] << 16) | (src[p + 59] << 24);
  const x15 = src[p + 60] | (src[p + 61] << 8) | (src[p + 62] << 16) | (src[p + 63] << 24);
  let a = state[0];
  let b = state[1];
  let c = state[2];
  let d = state[3];
  let t: number;
  t = (a + (d ^ (b & (c ^ d))) + x0 - 680876936) | 0;
  a = (b + ((t << 7) | (t >>> 25))) | 0;
  t = (d + (c ^ (a & (b ^ c))) + x1 - 389564586) | 0;
  d = (a + ((t << 12) | (t >>> 20))) | 0;
  t = (c + (b ^ (d & (a ^ b))) + x2 + 606105819) | 0;
  c = (d + ((t << 17) | (t >>> 15))) | 0;
  t = (b + (a ^ (c & (d ^ a))) + x3 - 1044525330) | 0;
  b = (c + ((t << 22) | (t >>> 10))) | 0;
  t = (a + (d ^ (b & (c ^ d))) + x4 - 176418897) | 0;
  a = (b + ((t << 7) | (t >>> 25))) | 0;
  t = (d + (c ^ (a & (b ^ c))) + x5 + 1200080426) | 0;
  d = (a + ((t << 12) | (t >>> 20))) | 0;
  t = (c + (b ^ (d & (a ^ b))) + x6 - 1473231341) | 0;
  c = (d + ((t << 17) | (t >>> 15))) | 0;
  t = (b + (a ^ (c & (d ^ a))) + x7 - 45705983) | 0;
  b = (c + ((t << 22) | (t >>> 10))) | 0;
  t = (a + (d ^ (b & (c ^ d))) + x8 + 1770035416) | 0;
  a = (b + ((t << 7) | (t >>> 25))) | 0;
  t = (d + (c ^ (a & (b ^ c))) + x9 - 1958414417) | 0;
  d = (a + ((t << 12) | (t >>> 20))) | 0;
  t = (c + (b ^ (d & (a ^ b))) + x10 - 42063) | 0;
  c = (d + ((t << 17) | (t >>> 15))) | 0;
  t = (b + (a ^ (c & (d ^ a))) + x11 - 1990404162) | 0;
  b = (c + ((t << 22) | (t >>> 10))) | 0;
  t = (a + (d ^ (b & (c ^ d))) + x12 + 1804603682) | 0;
  a = (b + ((t << 7) | (t >>> 25))) | 0;
  t = (d + (c ^ (a & (b ^ c))) + x13 - 40341101) | 0;
  d = (a + ((t << 12) | (t >>> 20))) | 0;
  t = (c + (b ^ (d & (a ^ b))) + x14 - 1502002290) | 0;
  c = (d + ((t << 17) | (t >>> 15))) | 0;
  t = (b + (a ^ (c & (d ^ a))) + x15 + 1236535329) | 0;
  b = (c + ((t << 22) | (t >>> 10))) | 0;
  t = (a + (c ^ (d & (b ^ c))) + x1 - 165796510) | 0;
  a = (b + ((t << 5) | (t >>> 27))) | 0;
  t = (d + (b ^ (c & (a ^ b))) + x6 - 1069501632) | 0;
  d = (a + ((t << 9) | (t >>> 23))) | 0;
  t = (c + (a ^ (b & (d ^ a))) + x11 + 643717713) | 0;
  c = (d + ((t << 14) | (t >>> 18))) | 0;
  t = (b + (d ^ (a & (c ^ d))) + x0 - 373897302) | 0;
  b = (c + ((t << 20) | (t >>> 12))) | 0;
  t = (a + (c ^ (d & (b ^ c))) + x5 - 701558691) | 0;
  a = (b + ((t << 5) | (t >>> 27))) | 0;
  t = (d + (b ^ (c & (a ^ b))) + x10 + 38016083) | 0;
  d = (a + ((t << 9) | (t >>> 23))) | 0;
  t = (c + (a ^ (b & (d ^ a))) + x15 - 660478335) | 0;
  c = (d + ((t << 14) | (t >>> 18))) | 0;
  t = (b + (d ^ (a & (c ^ d))) + x4 - 405537848) | 0;
  b = (c + ((t << 20) | (t >>> 12))) | 0;
  t = (a + (c ^ (d & (b ^ c))) + x9 + 568446438) | 0;
  a = (b + ((t << 5) | (t >>> 27))) | 0;
  t = (d + (b ^ (c & (a ^ b))) + x14 - 1019803690) | 0;
  d = (a + ((t << 9) | (t >>> 23))) | 0;
  t = (c + (a ^ (b & (d ^ a))) + x3 - 187363961) | 0;
  c = (d + ((t << 14) | (t >>> 18))) | 0;
  t = (b + (d ^ (a & (c ^ d))) + x8 + 1163531501) | 0;
  b = (c + ((t << 20) | (t >>> 12))) | 0;
  t = (a + (c ^ (d & (b ^ c))) + x13 - 1444681467) | 0;
  a = (b + ((t << 5) | (t >>> 27))) | 0;
  t = (d + (b ^ (c & (a ^ b))) + x2 - 51403784) | 0;
  d = (a + ((t << 9) | (t >>> 23))) | 0;
  t = (c + (a ^ (b & (d ^ a))) + x7 + 1735328473) | 0;
  c = (d + ((t << 14) | (t >>> 18))) | 0;
  t = (b + (d ^ (a & (c ^ d))) + x12 - 1926607734) | 0;
  b = (c + ((t << 20) | (t >>> 12))) | 0;
  t = (a + (b ^ c ^ d) + x5 - 378558) | 0;
  a = (b + ((t << 4) | (t >>> 28))) | 0;
  t = (d + (a ^ b ^ c) + x8 - 2022574463) | 0;
  d = (a + ((t << 11) | (t >>> 21))) | 0;
  t = (c + (d ^ a ^ b) + x11 + 1839030562) | 0;
  c = (d + ((t << 16) | (t >>> 16))) | 0;
  t = (b + (c ^ d ^ a) + x14 - 35309556) | 0;
  b = (c + ((t << 23) | (t >>> 9))) | 0;
  t = (a + (b ^ c ^ d) + x1 - 1530992060) | 0;
  a = (b + ((t << 4) | (t >>> 28))) | 0;
  t = (d + (a ^ b ^ c) + x4 + 1272893353) | 0;
  d = (a + ((t << 11) | (t >>> 21))) | 0;
  t = (c + (d ^ a ^ b) + x7 - 155497632) | 0;
  c = (d + ((t << 16) | (t >>> 16))) | 0;
  t = (b + (c ^ d ^ a) + x10 - 1094730640) | 0;
  b = (c + ((t << 23) | (t >>> 9))) | 0;
  t = (a + (b ^ c ^ d) + x13 + 681279174) | 0;
  a = (b + ((t << 4) | (t >>> 28))) | 0;
  t = (d + (a ^ b ^ c) + x0 - 358537222) | 0;
  d = (a + ((t << 11) | (t >>> 21))) | 0;
  t = (c + (d ^ a ^ b) + x3 - 722521979) | 0;
  c = (d + ((t << 16) | (t >>> 16))) | 0;
  t = (b + (c ^ d ^ a) + x6 + 76029189) | 0;
  b = (c + ((t << 23) | (t >>> 9))) | 0;
  t = (a + (b ^ c ^ d) + x9 - 640364487) | 0;
  a = (b + ((t << 4) | (t >>> 28))) | 0;
  t = (d + (a ^ b ^ c) + x12 - 421815835) | 0;
  d = (a + ((t << 11) | (t >>> 21))) | 0;
  t = (c + (d ^ a ^ b) + x15 + 530742520) | 0;
  c = (d + ((t << 16) | (t >>> 16))) | 0;
  t = (b + (c ^ d ^ a) + x2 - 995338651) | 0;
  b = (c + ((t << 23) | (t >>> 9))) | 0;
  t = (a + (c ^ (b | ~d)) + x0 - 198630844) | 0;
  a = (b + ((t << 6) | (t >>> 26))) | 0;
  t = (d + (b ^ (a | ~c)) + x7 + 1126891415) | 0;
  d = (a + ((t << 10) | (t >>> 22))) | 0;
  t = (c + (a ^ (d | ~b)) + x14 - 1416354905) | 0;
  c = (d + ((t << 15) | (t >>> 17))) | 0;
  t = (b + (d ^ (c | ~a)) + x5 - 57434055) | 0;
  b = (c + ((t << 21) | (t >>> 11))) | 0;
  t = (a + (c ^ (b | ~d)) + x12 + 1700485571) | 0;
  a = (b + ((t << 6) | (t >>> 26))) | 0;
  t = (d + (b ^ (a | ~c)) + x3 - 1894986606) | 0;
  d = (a + ((t << 10) | (t >>> 22))) | 0;
  t = (c + (a ^ (d | ~b)) + x10 - 1051523) | 0;
  c = (d + ((t << 15) | (t >>> 17))) | 0;
  t = (b + (d ^ (c | ~a)) + x1 - 2054922799) | 0;
  b = (c + ((t << 21) | (t >>> 11))) | 0;
  t = (a + (c ^ (b | ~d)) + x8 + 1873313359) | 0;
  a = (b + ((t << 6) | (t >>> 26))) | 0;
  t = (d + (b ^ (a | ~c)) + x15 - 30611744) | 0;
  d = (a + ((t << 10) | (t >>> 22))) | 0;
  t = (c + (a ^ (d | ~b)) + x6 - 1560198380) | 0;
  c = (d + ((t << 15) | (t >>> 17))) | 0;
  t = (b + (d ^ (c | ~a)) + x13 + 1309151649) | 0;
  b = (c + ((t << 21) | (t >>> 11))) | 0;
  t = (a + (c ^ (b | ~d)) + x4 - 145523070) | 0;
  a = (b + ((t << 6) | (t >>> 26))) | 0;
  t = (d + (b ^ (a | ~c)) + x11 - 1120210379) | 0;
  d = (a + ((t << 10) | (t >>> 22))) | 0;
  t = (c + (a ^ (d | ~b)) + x2 + 718787259) | 0;
  c = (d + ((t << 15) | (t >>> 17))) | 0;
  t = (b + (d ^ (c | ~a)) + x9 - 343485551) | 0;
  b = (c + ((t << 21) | (t >>> 11))) | 0;
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
}

/**
 * The last compression, computing only the first output word: `a` is final after step 60, and the last
 * three steps only update `d`, `c` and `b`, so they are skipped.
 */
function md5LastBlockWordA(src: Uint8Array, p: number): number {
  const x0 = src[p] | (src[p + 1] << 8) | (src[p + 2] << 16) | (src[p + 3] << 24);
  const x1 = src[p + 4] | (src[p + 5] << 8) | (src[p + 6] << 16) | (src[p + 7] << 24);
  const x2 = src[p + 8] | (src[p + 9] << 8) | (src[p + 10] << 16) | (src[p + 11] << 24);
  const x3 = src[p + 12] | (src[p + 13] << 8) | (src[p + 14] << 16) | (src[p + 15] << 24);
  const x4 = src[p + 16] | (src[p + 17] << 8) | (src[p + 18] << 16) | (src[p + 19] << 24);
  const x5 = src[p + 20] | (src[p + 21] << 8) | (src[p + 22] << 16) | (src[p + 23] << 24);
  const x6 = src[p + 24] | (src[p + 25] << 8) | (src[p + 26] << 16) | (src[p + 27] << 24);
  const x7 = src[p + 28] | (src[p + 29] << 8) | (src[p + 30] << 16) | (src[p + 31] << 24);
  const x8 = src[p + 32] | (src[p + 33] << 8) | (src[p + 34] << 16) | (src[p + 35] << 24);
  const x9 = src[p + 36] | (src[p + 37] << 8) | (src[p + 38] << 16) | (src[p + 39] << 24);
  const x10 = src[p + 40] | (src[p + 41] << 8) | (src[p + 42] << 16) | (src[p + 43] << 24);
  const x11 = src[p + 44] | (src[p + 45] << 8) | (src[p + 46] << 16) | (src[p + 47] << 24);
  const x12 = src[p + 48] | (src[p + 49] << 8) | (src[p + 50] << 16) | (src[p + 51] << 24);
  const x13 = src[p + 52] | (src[p + 53] << 8) | (src[p + 54] << 16) | (src[p + 55] << 24);
  const x14 = src[p + 56] | (src[p + 57] << 8) | (src[p + 58] << 16) | (src[p + 59] << 24);
  const x15 = src[p + 60] | (src[p + 61] << 8) | (src[p + 62] << 16) | (src[p + 63] << 24);
  let a = state[0];
  let b = state[1];
  let c = state[2];
  let d = state[3];
  let t: number;
  t = (a + (d ^ (b & (c ^ d))) + x0 - 680876936) | 0;
  a = (b + ((t << 7) | (t >>> 25))) | 0;
  t = (d + (c ^ (a & (b ^ c))) + x1 - 389564586) | 0;
  d = (a + ((t << 12) | (t >>> 20))) | 0;
  t = (c + (b ^ (d & (a ^ b))) + x2 + 606105819) | 0;
  c = (d + ((t << 17) | (t >>> 15))) | 0;
  t = (b + (a ^ (c & (d ^ a))) + x3 - 1044525330) | 0;
  b = (c + ((t << 22) | (t >>> 10))) | 0;
  t = (a + (d ^ (b & (c ^ d))) + x4 - 176418897) | 0;
  a = (b + ((t << 7) | (t >>> 25))) | 0;
  t = (d + (c ^ (a & (b ^ c))) + x5 + 1200080426) | 0;
  d = (a + ((t << 12) | (t >>> 20))) | 0;
  t = (c + (b ^ (d & (a ^ b))) + x6 - 1473231341) | 0;
  c = (d + ((t << 17) | (t >>> 15))) | 0;
  t = (b + (a ^ (c & (d ^ a))) + x7 - 45705983) | 0;
  b = (c + ((t << 22) | (t >>> 10))) | 0;
  t = (a + (d ^ (b & (c ^ d))) + x8 + 1770035416) | 0;
  a = (b + ((t << 7) | (t >>> 25))) | 0;
  t = (d + (c ^ (a & (b ^ c))) + x9 - 1958414417) | 0;
  d = (a + ((t << 12) | (t >>> 20))) | 0;
  t = (c + (b ^ (d & (a ^ b))) + x10 - 42063) | 0;
  c = (d + ((t << 17) | (t >>> 15))) | 0;
  t = (b + (a ^ (c & (d ^ a))) + x11 - 1990404162) | 0;
  b = (c + ((t << 22) | (t >>> 10))) | 0;
  t = (a + (d ^ (b & (c ^ d))) + x12 + 1804603682) | 0;
  a = (b + ((t << 7) | (t >>> 25))) | 0;
  t = (d + (c ^ (a & (b ^ c))) + x13 - 40341101) | 0;
  d = (a + ((t << 12) | (t >>> 20))) | 0;
  t = (c + (b ^ (d & (a ^ b))) + x14 - 1502002290) | 0;
  c = (d + ((t << 17) | (t >>> 15))) | 0;
  t = (b + (a ^ (c & (d ^ a))) + x15 + 1236535329) | 0;
  b = (c + ((t << 22) | (t >>> 10))) | 0;
  t = (a + (c ^ (d & (b ^ c))) + x1 - 165796510) | 0;
  a = (b + ((t << 5) | (t >>> 27))) | 0;
  t = (d + (b ^ (c & (a ^ b))) + x6 - 1069501632) | 0;
  d = (a + ((t << 9) | (t >>> 23))) | 0;
  t = (c + (a ^ (b & (d ^ a))) + x11 + 643717713) | 0;
  c = (d + ((t << 14) | (t >>> 18))) | 0;
  t = (b + (d ^ (a & (c ^ d))) + x0 - 373897302) | 0;
  b = (c + ((t << 20) | (t >>> 12))) | 0;
  t = (a + (c ^ (d & (b ^ c))) + x5 - 701558691) | 0;
  a = (b + ((t << 5) | (t >>> 27))) | 0;
  t = (d + (b ^ (c & (a ^ b))) + x10 + 38016083) | 0;
  d = (a + ((t << 9) | (t >>> 23))) | 0;
  t = (c + (a ^ (b & (d ^ a))) + x15 - 660478335) | 0;
  c = (d + ((t << 14) | (t >>> 18))) | 0;
  t = (b + (d ^ (a & (c ^ d))) + x4 - 405537848) | 0;
  b = (c + ((t << 20) | (t >>> 12))) | 0;
  t = (a + (c ^ (d & (b ^ c))) + x9 + 568446438) | 0;
  a = (b + ((t << 5) | (t >>> 27))) | 0;
  t = (d + (b ^ (c & (a ^ b))) + x14 - 1019803690) | 0;
  d = (a + ((t << 9) | (t >>> 23))) | 0;
  t = (c + (a ^ (b & (d ^ a))) + x3 - 187363961) | 0;
  c = (d + ((t << 14) | (t >>> 18))) | 0;
  t = (b + (d ^ (a & (c ^ d))) + x8 + 1163531501) | 0;
  b = (c + ((t << 20) | (t >>> 12))) | 0;
  t = (a + (c ^ (d & (b ^ c))) + x13 - 1444681467) | 0;
  a = (b + ((t << 5) | (t >>> 27))) | 0;
  t = (d + (b ^ (c & (a ^ b))) + x2 - 51403784) | 0;
  d = (a + ((t << 9) | (t >>> 23))) | 0;
  t = (c + (a ^ (b & (d ^ a))) + x7 + 1735328473) | 0;
  c = (d + ((t << 14) | (t >>> 18))) | 0;
  t = (b + (d ^ (a & (c ^ d))) + x12 - 1926607734) | 0;
  b = (c + ((t << 20) | (t >>> 12))) | 0;
  t = (a + (b ^ c ^ d) + x5 - 378558) | 0;
  a = (b + ((t << 4) | (t >>> 28))) | 0;
  t = (d + (a ^ b ^ c) + x8 - 2022574463) | 0;
  d = (a + ((t << 11) | (t >>> 21))) | 0;
  t = (c + (d ^ a ^ b) + x11 + 1839030562) | 0;
  c = (d + ((t << 16) | (t >>> 16))) | 0;
  t = (b + (c ^ d ^ a) + x14 - 35309556) | 0;
  b = (c + ((t << 23) | (t >>> 9))) | 0;
  t = (a + (b ^ c ^ d) + x1 - 1530992060) | 0;
  a = (b + ((t << 4) | (t >>> 28))) | 0;
  t = (d + (a ^ b ^ c) + x4 + 1272893353) | 0;
  d = (a + ((t << 11) | (t >>> 21))) | 0;
  t = (c + (d ^ a ^ b) + x7 - 155497632) | 0;
  c = (d + ((t << 16) | (t >>> 16))) | 0;
  t = (b + (c ^ d ^ a) + x10 - 1094730640) | 0;
  b = (c + ((t << 23) | (t >>> 9))) | 0;
  t = (a + (b ^ c ^ d) + x13 + 681279174) | 0;
  a = (b + ((t << 4) | (t >>> 28))) | 0;
  t = (d + (a ^ b ^ c) + x0 - 358537222) | 0;
  d = (a + ((t << 11) | (t >>> 21))) | 0;
  t = (c + (d ^ a ^ b) + x3 - 722521979) | 0;
  c = (d + ((t << 16) | (t >>> 16))) | 0;
  t = (b + (c ^ d ^ a) + x6 + 76029189) | 0;
  b = (c + ((t << 23) | (t >>> 9))) | 0;
  t = (a + (b ^ c ^ d) + x9 - 640364487) | 0;
  a = (b + ((t << 4) | (t >>> 28))) | 0;
  t = (d + (a ^ b ^ c) + x12 - 421815835) | 0;
  d = (a + ((t << 11) | (t >>> 21))) | 0;
  t = (c + (d ^ a ^ b) + x15 + 530742520) | 0;
  c = (d + ((t << 16) | (t >>> 16))) | 0;
  t = (b + (c ^ d ^ a) + x2 - 995338651) | 0;
  b = (c + ((t << 23) | (t >>> 9))) | 0;
  t = (a + (c ^ (b | ~d)) + x0 - 198630844) | 0;
  a = (b + ((t << 6) | (t >>> 26))) | 0;
  t = (d + (b ^ (a | ~c)) + x7 + 1126891415) | 0;
  d = (a + ((t << 10) | (t >>> 22))) | 0;
  t = (c + (a ^ (d | ~b)) + x14 - 1416354905) | 0;
  c = (d + ((t << 15) | (t >>> 17))) | 0;
  t = (b + (d ^ (c | ~a)) + x5 - 57434055) | 0;
  b = (c + ((t << 21) | (t >>> 11))) | 0;
  t = (a + (c ^ (b | ~d)) + x12 + 1700485571) | 0;
  a = (b + ((t << 6) | (t >>> 26))) | 0;
  t = (d + (b ^ (a | ~c)) + x3 - 1894986606) | 0;
  d = (a + ((t << 10) | (t >>> 22))) | 0;
  t = (c + (a ^ (d | ~b)) + x10 - 1051523) | 0;
  c = (d + ((t << 15) | (t >>> 17))) | 0;
  t = (b + (d ^ (c | ~a)) + x1 - 2054922799) | 0;
  b = (c + ((t << 21) | (t >>> 11))) | 0;
  t = (a + (c ^ (b | ~d)) + x8 + 1873313359) | 0;
  a = (b + ((t << 6) | (t >>> 26))) | 0;
  t = (d + (b ^ (a | ~c)) + x15 - 30611744) | 0;
  d = (a + ((t << 10) | (t >>> 22))) | 0;
  t = (c + (a ^ (d | ~b)) + x6 - 1560198380) | 0;
  c = (d + ((t << 15) | (t >>> 17))) | 0;
  t = (b + (d ^ (c | ~a)) + x13 + 1309151649) | 0;
  b = (c + ((t << 21) | (t >>> 11))) | 0;
  t = (a + (c ^ (b | ~d)) + x4 - 145523070) | 0;
  a = (b + ((t << 6) | (t >>> 26))) | 0;
  return (state[0] + a) | 0;
}

/**
 * twemproxy's `hash_md5`: the first 4 bytes of MD5(key) read as a little-endian uint32. Pure JavaScript
 * on purpose: `crypto.createHash` costs an object, a native call and a digest Buffer per key, several
 * times the whole hash for keys of at most 250 bytes. Checked against node:crypto in the tests.
 */
export function md5First32(buf: Uint8Array, off: number, len: number): number {
  state[0] = 0x67452301;
  state[1] = 0xefcdab89 | 0;
  state[2] = 0x98badcfe | 0;
  state[3] = 0x10325476;
  const rem = len & 63;
  const whole = off + len - rem;
  let p = off;
  for (; p < whole; p += 64) md5Block(buf, p);
  for (let i = 0; i < rem; i++) tail[i] = buf[p + i];
  tail[rem] = 0x80;
  const tailLen = rem < 56 ? 64 : 128;
  tail.fill(0, rem + 1, tailLen - 8);
  // message length in bits, 64-bit little-endian
  const lo = (len << 3) | 0;
  const hi = Math.floor(len / 0x20000000) | 0;
  tail[tailLen - 8] = lo;
  tail[tailLen - 7] = lo >>> 8;
  tail[tailLen - 6] = lo >>> 16;
  tail[tailLen - 5] = lo >>> 24;
  tail[tailLen - 4] = hi;
  tail[tailLen - 3] = hi >>> 8;
  tail[tailLen - 2] = hi >>> 16;
  tail[tailLen - 1] = hi >>> 24;
  if (tailLen === 128) md5Block(tail, 0);
  return md5LastBlockWordA(tail, tailLen - 64) >>> 0;
}

/** The key hash twemproxy's `hash:` setting names. */
export function hashFunction(name: HashName): KeyHash {
  switch (name) {
    case 'fnv1a_64':
      return fnv1a32Signed;
    case 'md5':
      return md5First32;
    default:
      throw new RangeError(`unknown hash ${JSON.stringify(name)} (expected "fnv1a_64" or "md5")`);
  }
}
