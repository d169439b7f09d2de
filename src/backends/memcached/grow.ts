/** Returns `buf` if it can hold `need` bytes, else a buffer of at least twice the size holding its first `used` bytes. */
export function grow(buf: Buffer, used: number, need: number): Buffer {
  if (need <= buf.length) return buf;
  let size = buf.length * 2;
  while (size < need) size *= 2;
  const next = Buffer.allocUnsafeSlow(size);
  buf.copy(next, 0, 0, used);
  return next;
}
