/**
 * Small readers for memcached reply lines, over bytes with explicit offsets (no string per line on the
 * hot path). A line is buf[start, end) without its \r\n.
 */
export const CH_SPACE = 0x20;

export function startsWith(buf: Uint8Array, start: number, end: number, lit: string): boolean {
  if (end - start < lit.length) return false;
  for (let k = 0; k < lit.length; k++) if (buf[start + k] !== lit.charCodeAt(k)) return false;
  return true;
}

/** Parses an unsigned decimal at buf[p..] up to a space or `end`; returns -1 on no digits or a bad byte. */
export function readUint(buf: Uint8Array, p: number, end: number): number {
  let v = 0;
  const s = p;
  for (; p < end && buf[p] !== CH_SPACE; p++) {
    const d = buf[p] - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return p === s ? -1 : v;
}

export function indexOfByte(buf: Uint8Array, c: number, p: number, end: number): number {
  for (; p < end; p++) if (buf[p] === c) return p;
  return -1;
}

/** Finds the ` O<digits>` token of a meta reply; -1 when absent. */
export function readOpaque(buf: Uint8Array, start: number, end: number): number {
  for (let p = start; p < end - 1; p++) {
    if (buf[p] === CH_SPACE && buf[p + 1] === 0x4f /* O */) return readUint(buf, p + 2, end);
  }
  return -1;
}

export function lineText(buf: Uint8Array, start: number, end: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString('latin1');
}
