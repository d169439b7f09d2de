/**
 * Key rules, the same for every pool (the API promises one set of keys, whatever the backend). Memcached's
 * text protocol splits on spaces and ends commands at \r\n, so a key holding whitespace or a control byte
 * could smuggle a second command (`a\r\nflush_all`). We refuse every byte in 0x00-0x20 and 0x7f;
 * everything else, UTF-8 included, is passed through as bytes.
 */
export const MAX_KEY_BYTES = 250;

export function isValidKey(buf: Uint8Array, off: number, len: number): boolean {
  if (len < 1 || len > MAX_KEY_BYTES) return false;
  const end = off + len;
  for (let p = off; p < end; p++) {
    const c = buf[p];
    if (c <= 0x20 || c === 0x7f) return false;
  }
  return true;
}
