/**
 * Property test of the IP address text parsers (fast-check; each property bounded to a few seconds; a
 * failure prints its seed and path: replay with FC_SEED=<seed> FC_PATH=<path>).
 *
 * The oracle is a verbatim copy, kept below, of the two parsers the gateway had before they became one
 * module: the connection limiter's (src/security/address-limits.ts: `parseV4`, `parseV6`, `hexDigit` and
 * `AddressGrouper.group`, which read a dotted quad's leading zeros as decimal) and the client-address one
 * (src/security/client-address.ts: `parse4`, `parse6`, `hexValue`, `parseInto`, which refuse them; and
 * `format`, for the canonical text). Random texts, valid and not (IPv4; IPv6 long, short and with `::`;
 * IPv4-mapped and IPv4 tails; upper and lower hex; too-long groups and parts; extra and missing colons;
 * zones and brackets; garbage; random edits of all of these), cut out of a longer string at random
 * offsets, must parse exactly as the oracle parses them, and `AddressGrouper.group`, `canonicalAddress`,
 * `ClientAddress` and `validateTrustedProxies` must answer what the old code answered.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AddressGrouper } from '../src/security/address-limits';
import { canonicalAddress, ClientAddress, validateTrustedProxies } from '../src/security/client-address';
import { hexDigit, newIpScratch, parseIp, parseIPv4, parseIPv6, QuadParts } from '../src/security/ip-text';

// FC_SEED and FC_PATH (from a failure's message) replay one failing case.
const RUN = (ms = 2500, numRuns = 20000): fc.Parameters<unknown> =>
  process.env.FC_SEED
    ? { seed: Number(process.env.FC_SEED), path: process.env.FC_PATH, endOnFailure: true }
    : { numRuns, plugins: [fc.interruptAfterTimeLimit(ms)] };

// ---- the oracle: the address-limits.ts parsers as they were (leading zeros read as decimal) ----

function oldParseV4(s: string, start: number, end: number): number {
  let v = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    let n = 0;
    let digits = 0;
    while (i < end) {
      const c = s.charCodeAt(i) - 0x30;
      if (c < 0 || c > 9) break;
      n = n * 10 + c;
      digits++;
      i++;
    }
    if (digits === 0 || digits > 3 || n > 255) return -1;
    v = v * 256 + n;
    parts++;
    if (parts < 4) {
      if (i >= end || s.charCodeAt(i) !== 0x2e /* . */) return -1;
      i++;
    }
  }
  return i === end ? v : -1;
}

function oldHexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  c |= 0x20; // lower case
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

function oldParseV6(s: string, start: number, end: number, out: Uint16Array): boolean {
  let n = 0;
  let gap = -1;
  let i = start;
  if (end - i >= 2 && s.charCodeAt(i) === 0x3a && s.charCodeAt(i + 1) === 0x3a) {
    gap = 0;
    i += 2;
  } else if (i < end && s.charCodeAt(i) === 0x3a) return false;
  while (i < end) {
    let j = i;
    let v = 0;
    while (j < end) {
      const d = oldHexDigit(s.charCodeAt(j));
      if (d < 0) break;
      v = v * 16 + d;
      j++;
    }
    if (j < end && s.charCodeAt(j) === 0x2e /* . */) {
      if (n > 6) return false;
      const v4 = oldParseV4(s, i, end);
      if (v4 < 0) return false;
      out[n++] = v4 >>> 16;
      out[n++] = v4 & 0xffff;
      break;
    }
    if (j === i || j - i > 4 || n >= 8) return false;
    out[n++] = v;
    if (j === end) break;
    if (s.charCodeAt(j) !== 0x3a) return false;
    if (j + 1 < end && s.charCodeAt(j + 1) === 0x3a) {
      if (gap >= 0) return false;
      gap = n;
      i = j + 2;
    } else {
      i = j + 1;
      if (i === end) return false;
    }
  }
  if (gap < 0) return n === 8;
  if (n >= 8) return false;
  const tail = n - gap;
  for (let k = tail - 1; k >= 0; k--) out[8 - tail + k] = out[gap + k];
  for (let k = gap; k < 8 - tail; k++) out[k] = 0;
  return true;
}

/** `AddressGrouper.group` as it was. */
class OldGrouper {
  private readonly v4Mask: number;
  private readonly v6Masks = new Uint16Array(8);
  private readonly v6Groups: number;
  private readonly g = new Uint16Array(8);

  constructor(ipv4PrefixLength: number, ipv6PrefixLength: number) {
    this.v4Mask = ipv4PrefixLength === 0 ? 0 : (0xffffffff << (32 - ipv4PrefixLength)) >>> 0;
    for (let i = 0; i < 8; i++) {
      const bits = Math.min(16, Math.max(0, ipv6PrefixLength - 16 * i));
      this.v6Masks[i] = bits === 0 ? 0 : (0xffff << (16 - bits)) & 0xffff;
    }
    this.v6Groups = Math.ceil(ipv6PrefixLength / 16);
  }

  group(address: string): number | string {
    const raw = (a: string): string => '?' + (a.length > 64 ? a.slice(0, 64) : a);
    let start = 0;
    let end = address.length;
    const pct = address.indexOf('%');
    if (pct >= 0) end = pct;
    if (end - start >= 2 && address.charCodeAt(0) === 0x5b) {
      start = 1;
      if (address.charCodeAt(end - 1) === 0x5d) end--;
    }
    const colon = address.indexOf(':', start);
    if (colon < 0 || colon >= end) {
      const v4 = oldParseV4(address, start, end);
      return v4 < 0 ? raw(address) : (v4 & this.v4Mask) >>> 0;
    }
    const g = this.g;
    if (!oldParseV6(address, start, end, g)) return raw(address);
    if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff)
      return ((g[6] * 0x10000 + g[7]) & this.v4Mask) >>> 0;
    let key = '6:';
    for (let i = 0; i < this.v6Groups; i++) key += (i === 0 ? '' : ':') + (g[i] & this.v6Masks[i]).toString(16);
    return key;
  }
}

// ---- the oracle: the client-address.ts parsers as they were (no leading zeros) ----

interface OldScratch {
  groups: Uint16Array;
  words: Int32Array;
}
const oldScratch = (): OldScratch => ({ groups: new Uint16Array(8), words: new Int32Array(4) });

function oldHexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

function oldParse4(t: string, s: number, e: number): number {
  let value = 0;
  let parts = 0;
  let i = s;
  while (parts < 4) {
    let part = 0;
    let digits = 0;
    const first = i;
    while (i < e) {
      const c = t.charCodeAt(i);
      if (c < 0x30 || c > 0x39) break;
      part = part * 10 + (c - 0x30);
      if (++digits > 3) return -1;
      i++;
    }
    if (digits === 0 || part > 255 || (digits > 1 && t.charCodeAt(first) === 0x30)) return -1;
    value = value * 256 + part;
    parts++;
    if (parts < 4) {
      if (i >= e || t.charCodeAt(i) !== 0x2e) return -1;
      i++;
    }
  }
  return i === e ? value : -1;
}

function oldParse6(t: string, s: number, e: number, sc: OldScratch): boolean {
  const g = sc.groups;
  let n = 0;
  let gap = -1;
  let i = s;
  if (t.charCodeAt(i) === 0x3a) {
    if (i + 1 >= e || t.charCodeAt(i + 1) !== 0x3a) return false;
    gap = 0;
    i += 2;
  }
  while (i < e) {
    let v = 0;
    let digits = 0;
    let j = i;
    while (j < e && digits < 5) {
      const h = oldHexValue(t.charCodeAt(j));
      if (h < 0) break;
      v = v * 16 + h;
      digits++;
      j++;
    }
    if (j < e && t.charCodeAt(j) === 0x2e) {
      if (n > 6) return false;
      const v4 = oldParse4(t, i, e);
      if (v4 < 0) return false;
      g[n++] = v4 >>> 16;
      g[n++] = v4 & 0xffff;
      i = e;
      break;
    }
    if (digits === 0 || digits > 4 || n === 8) return false;
    g[n++] = v;
    i = j;
    if (i === e) break;
    if (t.charCodeAt(i) !== 0x3a) return false;
    i++;
    if (i < e && t.charCodeAt(i) === 0x3a) {
      if (gap >= 0) return false;
      gap = n;
      i++;
    } else if (i === e) return false;
  }
  if (gap < 0) {
    if (n !== 8) return false;
  } else {
    if (n > 7) return false;
    const tail = n - gap;
    for (let k = 0; k < tail; k++) g[7 - k] = g[n - 1 - k];
    for (let k = gap; k < 8 - tail; k++) g[k] = 0;
  }
  const w = sc.words;
  for (let k = 0; k < 4; k++) w[k] = (g[2 * k] << 16) | g[2 * k + 1];
  return true;
}

function oldParseInto(t: string, s: number, e: number, sc: OldScratch): 0 | 4 | 6 {
  if (e <= s || e - s > 45) return 0;
  for (let i = s; i < e; i++) {
    if (t.charCodeAt(i) === 0x3a) return oldParse6(t, s, e, sc) ? 6 : 0;
  }
  const v4 = oldParse4(t, s, e);
  if (v4 < 0) return 0;
  const w = sc.words;
  w[0] = 0;
  w[1] = 0;
  w[2] = 0xffff;
  w[3] = v4 | 0;
  return 4;
}

/** `canonicalAddress` as it was (its `format`, RFC 5952, unchanged by the refactor, copied for the oracle). */
function oldCanonical(text: string): string | null {
  const sc = oldScratch();
  const kind = oldParseInto(text, 0, text.length, sc);
  if (kind === 0) return null;
  if (kind === 4) return text;
  const w = sc.words;
  if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) {
    const v = w[3];
    return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const g: number[] = [];
  for (let k = 0; k < 4; k++) g.push(w[k] >>> 16, w[k] & 0xffff);
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

// ---- generators ----

/** Random upper/lower case of a hex text. */
const cased = (hex: string, mask: number): string =>
  [...hex].map((c, i) => ((mask >>> (i % 30)) & 1 ? c.toUpperCase() : c)).join('');

/** One decimal part: usually 0-255, sometimes past it, sometimes with leading zeros or too many digits. */
const quadPart = fc.oneof(
  { weight: 20, arbitrary: fc.integer({ min: 0, max: 255 }).map(String) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 9999 }).map(String) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 3 }))
      .map(([n, w]) => String(n).padStart(w, '0')),
  },
  { weight: 1, arbitrary: fc.constantFrom('', '0', '00', '000', '0000', '256', '999', '1a', ' 1', '-1') },
);
const quad = fc.oneof(
  { weight: 10, arbitrary: fc.array(quadPart, { minLength: 4, maxLength: 4 }).map((p) => p.join('.')) },
  { weight: 1, arbitrary: fc.array(quadPart, { minLength: 1, maxLength: 6 }).map((p) => p.join('.')) },
);

/** One hex group: usually 1-4 digits of some case, sometimes zero-padded to 4, sometimes 5 or more digits. */
const hexGroup = fc.oneof(
  {
    weight: 40,
    arbitrary: fc
      .tuple(
        fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff })),
        fc.integer({ min: 0, max: 5 }),
        fc.nat(),
      )
      .map(([v, pad, m]) => cased(v.toString(16).padStart(Math.min(pad, 4), '0'), m)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 0xfffff }), fc.integer({ min: 5, max: 7 }), fc.nat())
      .map(([v, pad, m]) => cased(v.toString(16).padStart(pad, '0'), m)),
  },
  { weight: 1, arbitrary: fc.constantFrom('', 'g', 'G0', 'x1', '0x1', '12345', 'fffff', '1.2') },
);

/**
 * IPv6 text: eight groups (or six and a dotted quad), some run of them replaced by `::` (sometimes an
 * empty run, sometimes two runs), IPv4-mapped often.
 */
const ipv6 = fc
  .record({
    groups: fc.array(hexGroup, { minLength: 8, maxLength: 8 }),
    mapped: fc.integer({ min: 0, max: 3 }),
    tail: fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: quad }),
    gapAt: fc.integer({ min: -1, max: 8 }),
    gapLen: fc.integer({ min: 0, max: 8 }),
    secondGap: fc.oneof({ weight: 6, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.nat(8) }),
    extra: fc.oneof(
      { weight: 6, arbitrary: fc.constant(0) },
      { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }) },
    ),
  })
  .map(({ groups, mapped, tail, gapAt, gapLen, secondGap, extra }) => {
    let parts = groups.slice();
    if (mapped === 0) parts = ['0', '0', '0', '0', '0', 'ffff', parts[6], parts[7]];
    if (mapped === 1) parts = ['0000', '0000', '0000', '0000', '0000', 'FFFF', parts[6], parts[7]];
    if (extra > 0) for (let k = 0; k < extra; k++) parts.push('1');
    if (extra < 0) parts = parts.slice(0, 8 + extra);
    if (tail !== null) parts = [...parts.slice(0, Math.max(0, parts.length - 2)), tail];
    if (gapAt < 0 || gapAt > parts.length) return parts.join(':');
    const len = Math.min(gapLen, parts.length - gapAt);
    const left = parts.slice(0, gapAt).join(':');
    let right = parts.slice(gapAt + len).join(':');
    if (secondGap >= 0 && secondGap < right.length) right = right.slice(0, secondGap) + '::' + right.slice(secondGap);
    return `${left}::${right}`;
  });

/** Garbage: characters an address is made of, and some it is not. */
const garbage = fc.string({
  unit: fc.constantFrom(...'0123456789abcdefABCDEFgGxX:.%[]/ ,\t-é'.split('')),
  maxLength: 50,
});

/** Edits: insert, delete or replace one character, or double a colon. */
const edits = fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.nat(), fc.constantFrom(...':.0aF%g['.split(''))), {
  maxLength: 3,
});
function edit(text: string, ops: [number, number, string][]): string {
  let t = text;
  for (const [op, at, c] of ops) {
    const i = t.length === 0 ? 0 : at % (t.length + 1);
    if (op === 0) t = t.slice(0, i) + c + t.slice(i);
    else if (op === 1) t = t.slice(0, i) + t.slice(i + 1);
    else if (op === 2) t = t.slice(0, i) + c + t.slice(i + 1);
    else t = t.slice(0, i) + '::' + t.slice(i);
  }
  return t;
}

const address = fc
  .tuple(
    fc.oneof({ weight: 3, arbitrary: quad }, { weight: 5, arbitrary: ipv6 }, { weight: 1, arbitrary: garbage }),
    fc.oneof({ weight: 3, arbitrary: fc.constant([] as [number, number, string][]) }, { weight: 1, arbitrary: edits }),
  )
  .map(([t, ops]) => edit(t, ops));

/** As uWS or a header might wrap it: bracketed (sometimes unclosed), with a zone. */
const wrapped = fc
  .tuple(address, fc.integer({ min: 0, max: 5 }), fc.constantFrom('%eth0', '%', '%1', '%[x]'))
  .map(([a, w, zone]) => (w === 0 ? `[${a}]` : w === 1 ? `[${a}` : w === 2 ? a + zone : w === 3 ? `[${a}${zone}]` : a));

/** A text cut out of a longer string: `[s, e)` of `t`. */
const embedded = fc
  .tuple(
    address,
    fc.string({ unit: fc.constantFrom(...':.0f9 ,['.split('')), maxLength: 4 }),
    fc.string({ unit: fc.constantFrom(...':.0f9 ,]'.split('')), maxLength: 4 }),
  )
  .map(([a, before, after]) => ({ t: before + a + after, s: before.length, e: before.length + a.length }));

const PREFIXES: [number, number][] = [
  [32, 64],
  [24, 48],
  [0, 0],
  [32, 128],
  [17, 63],
  [1, 1],
];

describe('IP address text: properties against the old parsers', () => {
  it('hexDigit is both old hex digit readers, for every UTF-16 unit', () => {
    for (let c = 0; c < 0x10000; c++) {
      assert.equal(hexDigit(c), oldHexDigit(c));
      assert.equal(hexDigit(c), oldHexValue(c));
    }
  });

  it('parseIPv4 and parseIPv6, at offsets into a longer string, parse as the old ones', () => {
    const groups = new Uint16Array(8);
    const oldGroups = new Uint16Array(8);
    const sc = oldScratch();
    fc.assert(
      fc.property(embedded, ({ t, s, e }) => {
        const at = JSON.stringify([t, s, e]);
        assert.equal(parseIPv4(t, s, e, QuadParts.LeadingZeros), oldParseV4(t, s, e), at);
        assert.equal(parseIPv4(t, s, e, QuadParts.NoLeadingZeros), oldParse4(t, s, e), at);
        const lenient = parseIPv6(t, s, e, groups, QuadParts.LeadingZeros);
        assert.equal(lenient, oldParseV6(t, s, e, oldGroups), at);
        if (lenient) assert.deepEqual(groups, oldGroups, at);
        const strict = parseIPv6(t, s, e, groups, QuadParts.NoLeadingZeros);
        assert.equal(strict, oldParse6(t, s, e, sc), at);
        if (strict) assert.deepEqual(groups, sc.groups, at);
      }),
      RUN(),
    );
  });

  it('parseIp, at offsets into a longer string, parses as the old parseInto and the old grouper', () => {
    const now = newIpScratch();
    const old = oldScratch();
    const oldGroups = new Uint16Array(8);
    fc.assert(
      fc.property(embedded, ({ t, s, e }) => {
        const at = JSON.stringify([t, s, e]);
        const kind = parseIp(t, s, e, now, QuadParts.NoLeadingZeros);
        assert.equal(kind, oldParseInto(t, s, e, old), at);
        if (kind !== 0) assert.deepEqual(now.words, old.words, at);
        if (kind === 6) assert.deepEqual(now.groups, old.groups, at);
        // The grouper's reading: a colon in the range makes it IPv6 text, else a dotted quad.
        const lenient = parseIp(t, s, e, now, QuadParts.LeadingZeros);
        const colon = t.slice(s, e).includes(':');
        if (!colon) assert.equal(lenient === 0 ? -1 : now.words[3] >>> 0, oldParseV4(t, s, e), at);
        else {
          const ok = oldParseV6(t, s, e, oldGroups);
          assert.equal(lenient, ok ? 6 : 0, at);
          if (ok) assert.deepEqual(now.groups, oldGroups, at);
        }
        if (lenient !== 0) {
          for (let k = 0; k < 4; k++) assert.equal(now.words[k], (now.groups[2 * k] << 16) | now.groups[2 * k + 1]);
        }
      }),
      RUN(),
    );
  });

  it('AddressGrouper.group answers as before, for every prefix length pair', () => {
    const pairs = PREFIXES.map(([v4, v6]) => ({ now: new AddressGrouper(v4, v6), old: new OldGrouper(v4, v6) }));
    fc.assert(
      fc.property(fc.oneof(address, wrapped), (a) => {
        for (const { now, old } of pairs) assert.deepEqual(now.group(a), old.group(a), JSON.stringify(a));
      }),
      RUN(),
    );
  });

  it('canonicalAddress, ClientAddress and validateTrustedProxies answer as before', () => {
    // Four ranges that cover every address: trusted exactly when it parses.
    const everything = new ClientAddress(['0.0.0.0/1', '128.0.0.0/1', '::/1', '8000::/1']);
    const nothing = new ClientAddress([]);
    fc.assert(
      fc.property(fc.oneof(address, wrapped), (a) => {
        const canon = oldCanonical(a);
        assert.equal(canonicalAddress(a), canon, JSON.stringify(a));
        assert.equal(everything.isTrusted(a), canon !== null);
        assert.equal(nothing.resolve(a, undefined), canon ?? a);
        assert.equal(everything.resolveProxied('10.0.0.1', a), canon ?? '10.0.0.1');
        const problems = validateTrustedProxies([a], 'p');
        const notAddress = problems.some((p) => p.text.includes('is not an IPv4 or IPv6 address'));
        const slash = a.indexOf('/');
        const beforeSlash = oldParseInto(a, 0, slash < 0 ? a.length : slash, oldScratch());
        assert.equal(notAddress, beforeSlash === 0, JSON.stringify(a));
        if (canon !== null) assert.deepEqual(problems, []);
      }),
      RUN(),
    );
  });
});
