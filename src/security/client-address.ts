/**
 * The client's address behind a TLS terminator (docs/SECURITY.md, "TLS and the client's address").
 *
 * The socket's peer is the client unless the peer is one of `security.trustedProxies`; only then is the
 * proxy's word taken: the X-Forwarded-For list walked from the right (each trusted proxy appends the
 * address it saw, so the rightmost entries are the ones we can believe), or the PROXY protocol v2 source
 * address uWS parsed (`getProxiedRemoteAddressAsText()`). uWS parses a PROXY v2 header from *any* peer,
 * so its answer is worth no more than the peer that sent it.
 *
 * Addresses are compared as 128 bits (IPv4 as IPv4-mapped IPv6, `::ffff:a.b.c.d`), so "127.0.0.1/32"
 * matches both "127.0.0.1" and the long form uWS gives for an IPv4 client of a dual-stack listener,
 * "0000:0000:0000:0000:0000:ffff:7f00:0001". Results are canonical text: dotted quad for IPv4 (mapped or
 * not), RFC 5952 for IPv6 ("::1"). Parsing (src/security/ip-text.ts) works on indexes into the header
 * string, with scratch arrays owned by the instance: one `resolve` allocates at most the returned string
 * (none for a dotted-quad answer that is the whole input).
 */
import { isMapped, newIpScratch, parseIp, QuadParts, type IpKind, type IpScratch } from './ip-text';

/** One bad entry of the setting: `path` is where (`security.trustedProxies[2]`), `text` the whole sentence. */
export interface AddressProblem {
  path: string;
  text: string;
}

/** What `forwardedFor` needs of a request: uWS's `HttpRequest.forEach` (lower-case header names). */
export interface HeaderList {
  forEach(cb: (key: string, value: string) => void): void;
}

const SPACE = 0x20;
const TAB = 0x09;

/**
 * Parses `t[s, e)` into `sc` (IPv4 mapped); returns 4 for a dotted quad, 6 for IPv6 text, 0 for anything
 * else (including leading zeros in a dotted quad, zone ids, brackets and ports: none belongs in
 * X-Forwarded-For or a trusted range as we accept them).
 */
const parseInto = (t: string, s: number, e: number, sc: IpScratch): IpKind =>
  parseIp(t, s, e, sc, QuadParts.NoLeadingZeros);

/** Canonical text of the address in `sc.words`: a dotted quad for IPv4-mapped, else RFC 5952. */
function format(sc: IpScratch): string {
  const w = sc.words;
  if (isMapped(w)) {
    const v = w[3];
    return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const g = sc.groups;
  for (let k = 0; k < 4; k++) {
    g[2 * k] = w[k] >>> 16;
    g[2 * k + 1] = w[k] & 0xffff;
  }
  // The longest run of two or more zero groups becomes "::" (the first one on a tie).
  let best = -1;
  let bestLen = 1;
  for (let k = 0; k < 8;) {
    if (g[k] !== 0) {
      k++;
      continue;
    }
    let len = 0;
    while (k + len < 8 && g[k + len] === 0) len++;
    if (len > bestLen) {
      best = k;
      bestLen = len;
    }
    k += len;
  }
  let out = '';
  for (let k = 0; k < 8; k++) {
    if (k === best) {
      out += '::';
      k += bestLen - 1;
      continue;
    }
    if (out.length > 0 && !out.endsWith(':')) out += ':';
    out += g[k].toString(16);
  }
  return out;
}

/** Canonical text of `t[s, e)`, the slice itself when it already is (a dotted quad). */
function canonicalOf(t: string, s: number, e: number, kind: 4 | 6, sc: IpScratch): string {
  if (kind === 4) return s === 0 && e === t.length ? t : t.slice(s, e);
  return format(sc);
}

/**
 * The canonical text of an address as uWS or a header gives it ("0000:...:0001" -> "::1",
 * "::ffff:127.0.0.1" -> "127.0.0.1"), or null if `text` is not an IP address.
 */
export function canonicalAddress(text: string): string | null {
  const sc = newIpScratch();
  const kind = parseInto(text, 0, text.length, sc);
  return kind === 0 ? null : canonicalOf(text, 0, text.length, kind, sc);
}

/**
 * Every X-Forwarded-For header of a uWS request, joined with ", " in arrival order, or undefined if there
 * is none. `req.getHeader` returns only the first one, which is the one a client wrote itself when the
 * proxy appends a header of its own: never read X-Forwarded-For with getHeader. Call it synchronously
 * inside the handler (uWS's request is gone after it returns).
 */
export function forwardedFor(req: HeaderList): string | undefined {
  let out: string | undefined;
  req.forEach((key, value) => {
    if (key === 'x-forwarded-for') out = out === undefined ? value : `${out}, ${value}`;
  });
  return out;
}

/** One CIDR entry as network words, mask words and the prefix length over 128 bits; or a problem. */
function parseCidr(text: string): { net: Int32Array; mask: Int32Array } | string {
  const slash = text.indexOf('/');
  const addrEnd = slash < 0 ? text.length : slash;
  const sc = newIpScratch();
  const kind = parseInto(text, 0, addrEnd, sc);
  if (kind === 0)
    return `${JSON.stringify(text)} is not an IPv4 or IPv6 address or CIDR ("10.0.0.0/8", "::1/128", "127.0.0.1")`;
  const max = kind === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > max)
      return `${JSON.stringify(text)}: the prefix length must be an integer from 1 to ${max}`;
    prefix = Number(p);
  }
  if (prefix === 0)
    return `${JSON.stringify(text)} trusts every address: any client could then choose the address the gateway sees`;
  const bits = kind === 4 ? 96 + prefix : prefix;
  const net = new Int32Array(4);
  const mask = new Int32Array(4);
  for (let k = 0; k < 4; k++) {
    const take = Math.max(0, Math.min(32, bits - 32 * k));
    mask[k] = take === 0 ? 0 : take === 32 ? -1 : ~(0xffffffff >>> take);
    net[k] = sc.words[k] & mask[k];
    if (net[k] !== sc.words[k]) {
      for (let m = 0; m < 4; m++) sc.words[m] &= mask[m];
      const fixed = kind === 6 && isMapped(sc.words) ? `::ffff:${format(sc)}` : format(sc);
      return `${JSON.stringify(text)} has address bits set past its /${prefix} prefix: did you mean "${fixed}/${prefix}"?`;
    }
  }
  return { net, mask };
}

/**
 * Checks `security.trustedProxies` (or whatever `path` names): an array of strings, each an IPv4 or IPv6
 * address or CIDR with no host bits past its prefix and a prefix above 0. Names every bad entry.
 */
export function validateTrustedProxies(raw: unknown, path: string): AddressProblem[] {
  if (!Array.isArray(raw))
    return [{ path, text: `${path} must be an array of CIDRs such as ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]` }];
  const problems: AddressProblem[] = [];
  raw.forEach((entry: unknown, i) => {
    const at = `${path}[${i}]`;
    if (typeof entry !== 'string') {
      problems.push({ path: at, text: `${at} must be a string CIDR, not ${JSON.stringify(entry) ?? typeof entry}` });
      return;
    }
    const r = parseCidr(entry);
    if (typeof r === 'string') problems.push({ path: at, text: `${at}: ${r}` });
  });
  return problems;
}

export class ClientAddress {
  /** Network and mask words of each trusted range, four per range, in configured order. */
  private readonly nets: Int32Array;
  private readonly masks: Int32Array;
  private readonly sc = newIpScratch();

  /** Throws, naming every bad entry, unless `validateTrustedProxies(trustedProxies, ...)` finds nothing. */
  constructor(trustedProxies: readonly string[]) {
    const problems = validateTrustedProxies(trustedProxies, 'trustedProxies');
    if (problems.length > 0)
      throw new Error('invalid trustedProxies:\n  - ' + problems.map((p) => p.text).join('\n  - '));
    this.nets = new Int32Array(4 * trustedProxies.length);
    this.masks = new Int32Array(4 * trustedProxies.length);
    trustedProxies.forEach((text, i) => {
      const r = parseCidr(text) as { net: Int32Array; mask: Int32Array };
      this.nets.set(r.net, 4 * i);
      this.masks.set(r.mask, 4 * i);
    });
  }

  /** Whether any proxy is trusted at all (with none, `resolve` is the canonical peer). */
  get trustsAny(): boolean {
    return this.nets.length > 0;
  }

  /** Whether `address` (any text form) is in a trusted range; false for text that is no address. */
  isTrusted(address: string): boolean {
    return parseInto(address, 0, address.length, this.sc) !== 0 && this.matches();
  }

  /**
   * The client's address for a request from `peer` (`getRemoteAddressAsText()`) carrying `forwardedFor`
   * (every X-Forwarded-For header joined: `forwardedFor(req)`). An untrusted peer's header is ignored.
   * From a trusted peer the list is walked from the right, past trusted hops, to the first untrusted
   * address; if every hop is trusted, the leftmost; at an entry that is no address (or empty), the walk
   * stops at the last good hop, as a proxy we trust would not have written it.
   */
  resolve(peer: string, forwardedFor: string | undefined): string {
    const sc = this.sc;
    const kind = parseInto(peer, 0, peer.length, sc);
    if (kind === 0) return peer;
    if (forwardedFor === undefined || !this.matches()) return canonicalOf(peer, 0, peer.length, kind, sc);
    const t = forwardedFor;
    // The last good hop: the peer, then each trusted entry in turn ([goodStart, goodEnd) of t).
    let goodStart = -1;
    let goodEnd = -1;
    let end = t.length;
    while (end >= 0) {
      const comma = end === 0 ? -1 : t.lastIndexOf(',', end - 1);
      let s = comma + 1;
      let e = end;
      while (s < e && (t.charCodeAt(s) === SPACE || t.charCodeAt(s) === TAB)) s++;
      while (e > s && (t.charCodeAt(e - 1) === SPACE || t.charCodeAt(e - 1) === TAB)) e--;
      const k = parseInto(t, s, e, sc);
      if (k === 0) break;
      if (!this.matches()) return canonicalOf(t, s, e, k, sc);
      goodStart = s;
      goodEnd = e;
      if (comma < 0) break;
      end = comma;
    }
    if (goodStart < 0) return canonicalOf(peer, 0, peer.length, parseInto(peer, 0, peer.length, sc) as 4 | 6, sc);
    return canonicalOf(t, goodStart, goodEnd, parseInto(t, goodStart, goodEnd, sc) as 4 | 6, sc);
  }

  /**
   * The client's address from the PROXY protocol: `proxied` (`getProxiedRemoteAddressAsText()`, captured
   * in the upgrade handler for a WebSocket: this build has no `ws.getProxiedRemoteAddressAsText`) when
   * the peer is trusted and sent one, else the peer. Empty `proxied` means no header or a LOCAL one.
   */
  resolveProxied(peer: string, proxied: string): string {
    const sc = this.sc;
    const kind = parseInto(peer, 0, peer.length, sc);
    if (kind === 0) return peer;
    if (proxied.length === 0 || !this.matches()) return canonicalOf(peer, 0, peer.length, kind, sc);
    const pk = parseInto(proxied, 0, proxied.length, sc);
    if (pk === 0) return canonicalOf(peer, 0, peer.length, parseInto(peer, 0, peer.length, sc) as 4 | 6, sc);
    return canonicalOf(proxied, 0, proxied.length, pk, sc);
  }

  /** Whether the address in the scratch words is in a trusted range. */
  private matches(): boolean {
    const w = this.sc.words;
    const nets = this.nets;
    const masks = this.masks;
    for (let i = 0; i < nets.length; i += 4) {
      if (
        (w[0] & masks[i]) === nets[i] &&
        (w[1] & masks[i + 1]) === nets[i + 1] &&
        (w[2] & masks[i + 2]) === nets[i + 2] &&
        (w[3] & masks[i + 3]) === nets[i + 3]
      )
        return true;
    }
    return false;
  }
}
