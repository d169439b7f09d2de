/**
 * IP address text, parsed in place: `[s, e)` of a string (a whole address, or one entry of an
 * X-Forwarded-For list) into scratch words the caller owns and reuses, with no allocation.
 *
 * Accepted:
 *  - IPv4 as a dotted quad, exactly four decimal parts 0-255 ("192.0.2.1"). Nothing shorter or looser
 *    (no "127.1", no hex or octal parts): inet_aton's other forms read differently from one parser to the
 *    next. Leading zeros ("010.0.0.1") are the caller's choice (`QuadParts`): read as decimal where only
 *    the grouping of connections is at stake, refused where an address decides what is trusted, since
 *    some parsers read "010" as octal.
 *  - IPv6 in any RFC 4291 (section 2.2) text form: eight groups of one to four hex digits in either case,
 *    long ("0000:...:0001", as uWS writes it) or with one "::" for one or more zero groups; the last two
 *    groups may be written as a dotted quad ("::ffff:192.0.2.1", "64:ff9b::192.0.2.1"), read under the
 *    same `QuadParts` choice.
 * Refused: everything else, including a second "::", a "::" that stands for no group, a lone leading or
 * trailing ":", a group of five or more digits (even zeros), a zone ("%eth0"), brackets, a port or a
 * prefix length, spaces, and any text longer than the longest address (`MAX_ADDRESS_TEXT`). Callers that
 * take zones or brackets strip them first.
 *
 * An IPv4 address is held as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), so every address is 128 bits: eight
 * 16-bit groups and four 32-bit words, and `isMapped` tells an IPv4 one (dotted or mapped) apart.
 */

export const COLON = 0x3a; // ':'
export const DOT = 0x2e; // '.'
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const LOWER_A = 0x61;
const LOWER_F = 0x66;
/** The bit that makes an ASCII letter lower case. */
const LOWER_CASE_BIT = 0x20;
/** The group that marks an IPv4-mapped address (`::ffff:a.b.c.d`). */
const MAPPED = 0xffff;

/** Longest address text accepted ("0000:0000:0000:0000:0000:ffff:255.255.255.255" is 45). */
export const MAX_ADDRESS_TEXT = 45;

/** How the parts of a dotted quad may be written. */
export const enum QuadParts {
  /** "10", never "010" (octal to some parsers, decimal to others): refused rather than guessed. */
  NoLeadingZeros,
  /** "010" is read as decimal 10. */
  LeadingZeros,
}

/** What `parseIp` found: 0 no address, 4 a dotted quad, 6 IPv6 text (IPv4-mapped or not). */
export type IpKind = 0 | 4 | 6;

/** Scratch space for one parse, reused: the address as eight 16-bit groups and as four 32-bit words. */
export interface IpScratch {
  readonly groups: Uint16Array;
  readonly words: Int32Array;
}

export const newIpScratch = (): IpScratch => ({ groups: new Uint16Array(8), words: new Int32Array(4) });

/** Whether the address in `words` is IPv4 (IPv4-mapped, `::ffff:a.b.c.d`). */
export const isMapped = (words: Int32Array): boolean => words[0] === 0 && words[1] === 0 && words[2] === MAPPED;

/** The value of a hex digit (either case), or -1. */
export function hexDigit(c: number): number {
  if (c >= DIGIT_0 && c <= DIGIT_9) return c - DIGIT_0;
  const l = c | LOWER_CASE_BIT;
  if (l >= LOWER_A && l <= LOWER_F) return l - LOWER_A + 10;
  return -1;
}

/** A dotted quad in `t[s, e)` as a uint32, or -1. */
export function parseIPv4(t: string, s: number, e: number, quad: QuadParts): number {
  let value = 0;
  let parts = 0;
  let i = s;
  while (parts < 4) {
    let part = 0;
    let digits = 0;
    const first = i;
    while (i < e) {
      const c = t.charCodeAt(i);
      if (c < DIGIT_0 || c > DIGIT_9) break;
      part = part * 10 + (c - DIGIT_0);
      if (++digits > 3) return -1;
      i++;
    }
    if (digits === 0 || part > 255) return -1;
    if (digits > 1 && quad === QuadParts.NoLeadingZeros && t.charCodeAt(first) === DIGIT_0) return -1;
    value = value * 256 + part;
    parts++;
    if (parts < 4) {
      if (i >= e || t.charCodeAt(i) !== DOT) return -1;
      i++;
    }
  }
  return i === e ? value : -1;
}

/** IPv6 text in `t[s, e)` into `groups` (eight); false if it is not one (then `groups` is garbage). */
export function parseIPv6(t: string, s: number, e: number, groups: Uint16Array, quad: QuadParts): boolean {
  const g = groups;
  let n = 0;
  let gap = -1;
  let i = s;
  if (i < e && t.charCodeAt(i) === COLON) {
    if (i + 1 >= e || t.charCodeAt(i + 1) !== COLON) return false;
    gap = 0;
    i += 2;
  }
  while (i < e) {
    let v = 0;
    let digits = 0;
    let j = i;
    // Five digits at most: a fifth is enough to refuse the group.
    while (j < e && digits < 5) {
      const h = hexDigit(t.charCodeAt(j));
      if (h < 0) break;
      v = v * 16 + h;
      digits++;
      j++;
    }
    if (j < e && t.charCodeAt(j) === DOT) {
      // A dotted-quad tail ("::ffff:1.2.3.4") takes the last two groups and ends the address.
      if (n > 6) return false;
      const v4 = parseIPv4(t, i, e, quad);
      if (v4 < 0) return false;
      g[n++] = v4 >>> 16;
      g[n++] = v4 & 0xffff;
      break;
    }
    if (digits === 0 || digits > 4 || n === 8) return false;
    g[n++] = v;
    i = j;
    if (i === e) break;
    if (t.charCodeAt(i) !== COLON) return false;
    i++;
    if (i < e && t.charCodeAt(i) === COLON) {
      if (gap >= 0) return false;
      gap = n;
      i++;
    } else if (i === e) return false; // a trailing single colon
  }
  if (gap < 0) return n === 8;
  if (n > 7) return false; // "::" stands for at least one group
  const tail = n - gap;
  for (let k = 0; k < tail; k++) g[7 - k] = g[n - 1 - k];
  for (let k = gap; k < 8 - tail; k++) g[k] = 0;
  return true;
}

/**
 * The address in `t[s, e)` into `sc` (groups and words; a dotted quad as IPv4-mapped). Returns 4 for a
 * dotted quad, 6 for IPv6 text (the choice is made by whether a colon is in the range), 0 for anything
 * else; on 0, `sc` is garbage.
 */
export function parseIp(t: string, s: number, e: number, sc: IpScratch, quad: QuadParts): IpKind {
  if (e <= s || e - s > MAX_ADDRESS_TEXT) return 0;
  const g = sc.groups;
  const w = sc.words;
  let kind: IpKind = 4;
  for (let i = s; i < e; i++) {
    if (t.charCodeAt(i) === COLON) {
      kind = 6;
      break;
    }
  }
  if (kind === 6) {
    if (!parseIPv6(t, s, e, g, quad)) return 0;
    for (let k = 0; k < 4; k++) w[k] = (g[2 * k] << 16) | g[2 * k + 1];
    return 6;
  }
  const v4 = parseIPv4(t, s, e, quad);
  if (v4 < 0) return 0;
  g.fill(0, 0, 5);
  g[5] = MAPPED;
  g[6] = v4 >>> 16;
  g[7] = v4 & 0xffff;
  w[0] = 0;
  w[1] = 0;
  w[2] = MAPPED;
  w[3] = v4 | 0;
  return 4;
}
