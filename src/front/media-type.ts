/**
 * Media types as RFC 9110 section 8.3.1 and 12.5.1 define them: `type/subtype *( OWS ";" OWS name=value )`,
 * type, subtype and parameter names case-insensitive. The bulk routes accept only the types the docs
 * name, matched whole: a type is never recognised by a substring (`text/plain;charset=ndjson` is a
 * browser-safe type that needs no CORS preflight, so sniffing it would allow cross-site writes).
 */

export interface MediaType {
  /** Lower case. */
  type: string;
  /** Lower case. */
  subtype: string;
  /** Names lower case; values as sent, quotes removed. */
  params: Map<string, string>;
}

// RFC 9110 token characters.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** One media type (or media range, when `range`: `*\/*`, `type/*`), or null if it is not well formed. */
export function parseMediaType(s: string, range = false): MediaType | null {
  const parts = splitOutsideQuotes(s, ';');
  if (parts === null) return null;
  const full = parts[0].trim();
  const slash = full.indexOf('/');
  if (slash < 0) return null;
  const type = full.slice(0, slash).toLowerCase();
  const subtype = full.slice(slash + 1).toLowerCase();
  if (!TOKEN.test(type) || !TOKEN.test(subtype)) return null;
  if (!range && (type === '*' || subtype === '*')) return null;
  if (range && type === '*' && subtype !== '*') return null;
  const params = new Map<string, string>();
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i].trim();
    if (p === '') continue; // `text/x;` and `a/b; ; c=d` occur in the wild and are harmless
    const eq = p.indexOf('=');
    if (eq <= 0) return null;
    const name = p.slice(0, eq).trim().toLowerCase();
    let value = p.slice(eq + 1).trim();
    if (!TOKEN.test(name)) return null;
    if (value.startsWith('"')) {
      if (value.length < 2 || !value.endsWith('"')) return null;
      value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    } else if (!TOKEN.test(value)) return null;
    params.set(name, value);
  }
  return { type, subtype, params };
}

/** Splits on `sep` outside double-quoted strings; null if a quote is left open. */
function splitOutsideQuotes(s: string, sep: string): string[] | null {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === sep) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  if (quoted) return null;
  out.push(s.slice(start));
  return out;
}

/**
 * The entry of `supported` (full types, lower case, `type/subtype`) that the `Content-Type` value names,
 * parameters ignored; null if none or if the value is not a media type.
 */
export function matchContentType(header: string, supported: readonly string[]): string | null {
  const m = parseMediaType(header);
  if (m === null) return null;
  const t = `${m.type}/${m.subtype}`;
  return supported.includes(t) ? t : null;
}

/**
 * Content negotiation (RFC 9110 section 12.5.1) between formats, each known by one or more type names
 * (aliases, lower case `type/subtype`): the index of the format with the highest q. A format's q comes
 * from the most specific range in `accept` that matches any of its names (so `application/msgpack;q=0,
 * *\/*` refuses msgpack under every alias); `preferred` wins ties. An absent or empty header accepts
 * anything: `preferred` is returned. -1 when no format is acceptable (every match has q=0, or nothing
 * matches). Malformed elements are ignored, as if the client had not sent them.
 */
export function negotiate(accept: string, formats: readonly (readonly string[])[], preferred: number): number {
  if (accept.trim() === '') return preferred;
  const ranges: { type: string; subtype: string; q: number; specificity: number }[] = [];
  const elements = splitOutsideQuotes(accept, ',');
  if (elements === null) return -1;
  for (const e of elements) {
    if (e.trim() === '') continue;
    const m = parseMediaType(e, true);
    if (m === null) continue;
    let q = 1;
    const qs = m.params.get('q');
    if (qs !== undefined) {
      if (!/^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(qs)) continue;
      q = Number(qs);
    }
    const specificity = m.type === '*' ? 0 : m.subtype === '*' ? 1 : 2;
    ranges.push({ type: m.type, subtype: m.subtype, q, specificity });
  }
  let best = -1;
  let bestQ = 0;
  for (let f = 0; f < formats.length; f++) {
    let q = -1;
    let spec = -1;
    for (const t of formats[f]) {
      const slash = t.indexOf('/');
      const type = t.slice(0, slash);
      const subtype = t.slice(slash + 1);
      for (const r of ranges) {
        const hit = r.specificity === 0 || (r.type === type && (r.specificity === 1 || r.subtype === subtype));
        if (hit && r.specificity > spec) {
          spec = r.specificity;
          q = r.q;
        }
      }
    }
    if (q <= 0) continue;
    if (q > bestQ || (q === bestQ && f === preferred)) {
      best = f;
      bestQ = q;
    }
  }
  return best;
}
