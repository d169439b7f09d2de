/**
 * Redis Cluster's key placement: CRC16 (the XMODEM variant: polynomial 0x1021, initial 0, no reflection;
 * "123456789" -> 0x31c3) of the key, or of its hash tag, modulo 16384. The hash tag is the part between
 * the first `{` and the first `}` after it, when that part is not empty; otherwise the whole key is hashed
 * (Redis's keyHashSlot in cluster.c). Computed over bytes, so a key that is not UTF-8 lands where Redis
 * puts it.
 */

export const SLOTS = 16384;

const enum Byte {
  Open = 0x7b, // {
  Close = 0x7d, // }
}

const TABLE = ((): Uint16Array => {
  const t = new Uint16Array(256);
  for (let b = 0; b < 256; b++) {
    let c = b << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[b] = c;
  }
  return t;
})();

export function crc16(b: Uint8Array, off: number, len: number): number {
  let c = 0;
  for (let p = off, end = off + len; p < end; p++) c = ((c << 8) & 0xffff) ^ TABLE[((c >> 8) ^ b[p]) & 0xff];
  return c;
}

/** The cluster slot (0..16383) owning the key b[off, off+len). */
export function keySlot(b: Uint8Array, off: number, len: number): number {
  const end = off + len;
  let open = off;
  while (open < end && b[open] !== Byte.Open) open++;
  if (open < end) {
    let close = open + 1;
    while (close < end && b[close] !== Byte.Close) close++;
    // `{}` or an unclosed `{`: the whole key is hashed.
    if (close < end && close > open + 1) return crc16(b, open + 1, close - open - 1) & (SLOTS - 1);
  }
  return crc16(b, off, len) & (SLOTS - 1);
}
