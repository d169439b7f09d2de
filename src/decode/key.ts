/** Keys as the HTTP front reads them from a URL path; what a key may hold is core/key.ts. */

/**
 * Percent-decodes a URL path segment into raw bytes (keys may be any bytes, not only valid UTF-8, so
 * decodeURIComponent will not do). Returns null on a malformed escape.
 */
export function percentDecode(s: string): Buffer | null {
  const raw = Buffer.from(s, 'utf8');
  if (raw.indexOf(0x25) === -1) return raw;
  const out = Buffer.allocUnsafe(raw.length);
  let o = 0;
  for (let p = 0; p < raw.length; p++) {
    const c = raw[p];
    if (c !== 0x25) {
      out[o++] = c;
      continue;
    }
    if (p + 2 >= raw.length) return null;
    const h = hex(raw[p + 1]),
      l = hex(raw[p + 2]);
    if (h < 0 || l < 0) return null;
    out[o++] = (h << 4) | l;
    p += 2;
  }
  return out.subarray(0, o);
}

function hex(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}
