/**
 * Growing the typed arrays and buffers a batch keeps per key, and the hash its duplicate-key table uses:
 * shared by every backend's batches.
 */

/** Returns `buf` if it can hold `need` bytes, else a buffer of at least twice the size holding its first `used` bytes. */
export function grow(buf: Buffer, used: number, need: number): Buffer {
  if (need <= buf.length) return buf;
  let size = buf.length * 2;
  while (size < need) size *= 2;
  const next = Buffer.allocUnsafeSlow(size);
  buf.copy(next, 0, 0, used);
  return next;
}

/** Returns `a` if it holds `need` entries, else a copy at least twice as long. */
export function growI32(a: Int32Array, need: number): Int32Array {
  if (need <= a.length) return a;
  const next = new Int32Array(Math.max(need, a.length * 2));
  next.set(a);
  return next;
}

/** Returns `a` if it holds `need` entries, else a copy at least twice as long. */
export function growU8(a: Uint8Array, need: number): Uint8Array {
  if (need <= a.length) return a;
  const next = new Uint8Array(Math.max(need, a.length * 2));
  next.set(a);
  return next;
}

/** 32-bit FNV-1a of a key's bytes: the bucket of a batch's duplicate-key table (not placement). */
export function fnv1a32(b: Uint8Array, off: number, len: number): number {
  let h = 0x811c9dc5;
  for (let p = off, end = off + len; p < end; p++) h = Math.imul(h ^ b[p], 0x01000193);
  return h >>> 0;
}
