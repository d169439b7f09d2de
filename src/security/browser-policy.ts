/**
 * Browser safety: which web pages may use the gateway, and under which names it may be reached. A policy
 * object only decides; the fronts ask it (synchronously: in the WebSocket `upgrade` handler and at the top
 * of every HTTP handler) and answer the refusals themselves. Nothing here allocates per call beyond the
 * header tuples it returns, and nothing is cached, so no request can grow it.
 *
 * ## The threats, and the rule for each
 *
 * 1. A page of another site talks to the gateway from a visitor's browser (the visitor can reach the
 *    gateway, the site cannot). Browsers send `Origin` on every WebSocket handshake (RFC 6455 section
 *    4.1; WebSocket has no same-origin policy of its own) and on every cross-origin `fetch` and every
 *    non-GET request (Fetch standard, "append a request Origin header"). So: **a request that carries an
 *    `Origin` must carry a listed one** (`checkOrigin`), on every request, whatever its method, and at the
 *    upgrade. Secure default: an empty `allowedOrigins` refuses every browser page (as Centrifugo's
 *    `allowed_origins` does).
 *    A request without `Origin` is allowed: it did not come from a page of another site (a browser adds
 *    the header on all the requests that could) but from a program (the kvgate clients, curl, a service),
 *    which could send any `Origin` it liked anyway: the check protects browsers' users, it does not
 *    authenticate programs. uWS answers an absent header as `''`, so the empty string counts as absent.
 *    `Origin: null` (sandboxed frames, `file://` pages, redirects across sites, `Referrer-Policy:
 *    no-referrer` forms) is refused unless `null` is listed itself; `*` does not cover it. A `file://`
 *    origin string counts as `null`.
 *
 * 2. DNS rebinding: the attacker's name `evil.example` first resolves to the attacker's server, which
 *    serves a page, then to 127.0.0.1; the page's requests to `http://evil.example:<port>/` are then
 *    same-origin (no `Origin` on a GET) and reach a loopback gateway. The browser still sends
 *    `Host: evil.example:<port>`, which a page cannot change, so **the `Host` must be a listed name**
 *    (`checkHost`), on every request. With `allowedHosts` empty (the default) the gateway answers to:
 *    - any IP address literal (`127.0.0.1`, `10.1.2.3`, `[::1]`): rebinding needs a name the attacker's DNS
 *      answers for; a browser that sends an address as `Host` was pointed at that address itself, and a
 *      page of any other origin gets its requests checked by rule 1;
 *    - `localhost` (resolved from the hosts file, never through the attacker's DNS); not names under
 *      `.localhost`: Chromium resolves those to loopback itself, but not every browser or resolver does;
 *    - the listen host (`listenHost`), when it is a name.
 *    Any other name (`kvgate.internal`, a load balancer's name) must be listed, or `*` given, which turns
 *    the check off. An absent `Host` is refused (HTTP/1.1 requires it; uWS does not even pass such
 *    requests on). A trailing dot (`localhost.`) names the same host and is ignored.
 *
 * 3. CSRF: a request a page can send without a CORS preflight, whose answer it cannot read but whose
 *    effect happens anyway: `<form method=post>`, `fetch(url, {mode: 'no-cors', method: 'POST'})` with a
 *    `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data` body (or none). Only GET,
 *    HEAD and POST can be sent that way; PUT and DELETE always need a preflight, which only a listed origin
 *    passes (`preflight`). So:
 *    - from an unlisted origin such a request is refused by rule 1 (`Origin` is always sent on a
 *      cross-origin POST: Chromium and Firefox send it on form posts too, `null` under `no-referrer`);
 *    - from a listed origin, **a POST with a simple content type is refused as well**
 *      (`checkRequest`: `simple-write`): every browser write must have gone through a preflight. A listed
 *      page never needs the simple form (the bulk bodies are msgpack or NDJSON, never a simple type), and
 *      refusing it keeps an HTML injection into a listed page (a form, no script) from writing;
 *    - a listed origin sending `text/plain` in a **PUT** is fine: PUT is not a simple method, so the
 *      browser preflighted it and the answer allowed the origin; the content type of a single-key value is
 *      the client's business (docs/PROTOCOL.md: "any Content-Type");
 *    - a POST without `Origin` is not refused here: it came from a program (see 1), e.g. `curl
 *      --data-binary`, which labels its body `application/x-www-form-urlencoded`. Browsers from before
 *      2019 (Firefox < 70) did not send `Origin` on form posts; for them the bulk endpoints' own rule
 *      holds: they take only msgpack and NDJSON bodies and answer any simple type 415 `BAD_CONTENT_TYPE`
 *      before reading it. That rule must stay.
 *
 * ## CORS
 * For a listed origin, `preflight` answers an `OPTIONS` preflight 204 with the methods and request headers
 * the gateway takes, and `corsHeaders` gives an actual response its `Access-Control-Allow-Origin`, always
 * the request's own origin echoed (never `*`, even when `*` is listed, so that credentials can never be
 * combined with a wildcard) with `Vary: Origin`, and exposes the response headers clients read. Credentials
 * (cookies, HTTP authentication) are not allowed: the gateway uses none; a token goes in `Authorization`,
 * which is an allowed request header. An unlisted origin's preflight gets 403 with no CORS header, so the
 * browser fails the request before sending it.
 *
 * ## Patterns (`allowedOrigins`)
 * - `scheme://host[:port]`, scheme `http` or `https` (an origin is a page's, never `ws://`): compared
 *   case-insensitively, with the default port (80, 443) dropped, IDN names as their punycode;
 * - `https://*.example.com[:port]`: any name below example.com (not example.com itself), with that scheme
 *   and port; the `*` must be the whole first label and at least two labels must follow it;
 * - `null`: pages with an opaque origin (see 1); only when named;
 * - `*`: any origin but `null`. Dangerous: every site on the web may then read and write through its
 *   visitors' browsers. Only for a gateway that serves public data and is reachable from anywhere anyway.
 */
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';

export interface BrowserPolicyOptions {
  /** Origins whose pages may use the gateway; see "Patterns". Empty: no browser page may. */
  allowedOrigins: string[];
  /** Names the gateway answers to (`host` or `host:port`, `*.example.com`, `*`); empty: see threat 2. */
  allowedHosts: string[];
  /** The host the gateway listens on; a name here is allowed as `Host` when `allowedHosts` is empty. */
  listenHost?: string;
  /** `Access-Control-Max-Age` of a preflight answer, seconds (Chromium caps it at 7200). */
  maxAgeSeconds?: number;
}

/** One bad setting, named as the config validator names its own (`security.allowedOrigins[2]`). */
export interface PolicyProblem {
  path: string;
  text: string;
}

/** Thrown by the constructor for options `validateBrowserPolicy` would refuse; lists every problem. */
export class BrowserPolicyError extends Error {
  constructor(readonly problems: PolicyProblem[]) {
    super('invalid browser policy:\n  - ' + problems.map((p) => p.text).join('\n  - '));
  }
}

/** Why `checkRequest` refused a request; the integrator picks the answer (403 for each). */
export type BrowserRefusal = 'host' | 'origin' | 'simple-write';

/** What to answer an `OPTIONS` request: `status` 204 with `headers`, or 403 with none. */
export interface PreflightAnswer {
  status: number;
  headers: [string, string][];
}

/** Methods a page may use (the gateway serves no HEAD: docs/PROTOCOL.md, HTTP). */
export const CORS_METHODS = ['GET', 'PUT', 'DELETE', 'POST'] as const;
/**
 * Request headers a page may set beyond the CORS-safelisted ones. The gateway reads `content-type` and
 * `accept` (the bulk formats, src/front/http-bulk.ts); `content-length` and `transfer-encoding` are set by
 * the browser itself, and single-key flags and ttl travel in the query (src/front/http-kv.ts).
 * `authorization` is for credentials sent as a token, `x-kv-flags` so a client may send the header the
 * gateway answers with.
 */
export const CORS_REQUEST_HEADERS = ['authorization', 'content-type', 'accept', 'x-kv-flags'] as const;
/** Response headers a page may read besides the safelisted ones (`content-type`, `content-length`...). */
export const CORS_EXPOSED_HEADERS = ['x-kv-flags', 'retry-after', 'allow'] as const;

const DEFAULT_MAX_AGE = 600;
const SIMPLE_TYPES = new Set(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data']);

/**
 * Whether a request with this `Content-Type` can be sent by a page without a preflight (the Fetch
 * standard's CORS-safelisted types): its essence, before any `;` and without whitespace, compared
 * case-insensitively. An absent or empty type is simple too (a bodyless `no-cors` POST). A value the
 * browser would not count as safelisted for its bytes (quotes, over 128 bytes) is still called simple
 * here: calling too much simple only refuses more.
 */
export function isSimpleContentType(ct: string | undefined): boolean {
  if (ct === undefined) return true;
  const semi = ct.indexOf(';');
  const essence = (semi < 0 ? ct : ct.slice(0, semi)).trim().toLowerCase();
  return essence === '' || SIMPLE_TYPES.has(essence);
}

// ---- parsing -------------------------------------------------------------------------------------------

/** The schemes an origin entry may have, with their default ports (a Map: `constructor` is no scheme). */
const DEFAULT_PORT = new Map([
  ['http', 80],
  ['https', 443],
]);
/** A serialised origin as browsers send it, lowercased: scheme, host (name, IPv4 or [IPv6]), port. */
const ORIGIN_RE = /^([a-z][a-z0-9+.-]*):\/\/(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::(\d{1,5}))?$/;
/** A `Host` value, lowercased: name or IPv4, or [IPv6], then an optional port. */
const HOST_RE = /^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::(\d{1,5}))?$/;
const LABEL_RE = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/;
/** What a wildcard stands for: one or more whole labels. */
const LABELS_RE = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

/** Whether `name` is one or more labels, then `suffix` (`.example.com`). */
function below(name: string, suffix: string): boolean {
  return name.length > suffix.length && name.endsWith(suffix) && LABELS_RE.test(name.slice(0, -suffix.length));
}

/** A wildcard entry: names ending in `suffix` (`.example.com`) with something before it. */
interface Wild {
  scheme: string;
  suffix: string;
  port: number;
}

/** `[::1]` -> `::1`; names lose a trailing dot. */
function bareHost(h: string): string {
  if (h.startsWith('[')) return h.slice(1, -1);
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

/** The canonical origin string for a parsed origin: default port dropped, IPv6 bracketed. */
function originKey(scheme: string, host: string, port: number): string {
  const h = isIP(host) === 6 ? `[${host}]` : host;
  return port === DEFAULT_PORT.get(scheme) ? `${scheme}://${h}` : `${scheme}://${h}:${port}`;
}

/** A name or address as the URL parser would write it (lowercase, punycode, canonical IPv6), or null. */
function canonicalHost(raw: string): string | null {
  const h = bareHost(raw.toLowerCase());
  if (h === '') return null;
  if (isIP(h) === 6) {
    try {
      return bareHost(new URL(`http://[${h}]/`).hostname);
    } catch {
      return null;
    }
  }
  if (isIP(h) === 4) return h;
  const ascii = domainToASCII(h);
  if (ascii === '' || !ascii.split('.').every((l) => LABEL_RE.test(l))) return null;
  // A last label of digits or 0x-hex makes the URL parser read the name as IPv4 (`127.1`, `0x7f.1`), or
  // fail: such a name is not what a browser would send, so it is refused.
  if (/^(\d+|0x[0-9a-f]*)$/.test(ascii.slice(ascii.lastIndexOf('.') + 1))) return null;
  return ascii;
}

/** `bücher.example:8080` -> `xn--bcher-kva.example:8080`; ASCII (and what cannot be converted) as it is. */
function asciiHostPort(s: string): string {
  if (!/[^\x00-\x7f]/.test(s)) return s;
  const m = /^([^:[\]]+)(:\d*)?$/.exec(s);
  const ascii = m ? domainToASCII(m[1]) : '';
  return ascii === '' ? s : ascii + (m![2] ?? '');
}

function portOf(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : -1;
}

type OriginEntry =
  | { kind: 'any' }
  | { kind: 'null' }
  | { kind: 'exact'; key: string }
  | { kind: 'wild'; wild: Wild }
  | { kind: 'bad'; why: string };

function parseOriginEntry(raw: unknown): OriginEntry {
  if (typeof raw !== 'string') return { kind: 'bad', why: 'must be a string' };
  const s = raw.trim().toLowerCase();
  if (s === '*') return { kind: 'any' };
  if (s === 'null') return { kind: 'null' };
  if (s === '') return { kind: 'bad', why: 'is empty' };
  const sep = s.indexOf('://');
  if (sep < 0) return { kind: 'bad', why: 'needs a scheme: write https://host[:port] (or * or null)' };
  const scheme = s.slice(0, sep);
  if (scheme === 'file') return { kind: 'bad', why: 'file:// pages send Origin: null; list null for them' };
  if (scheme === 'ws' || scheme === 'wss')
    return { kind: 'bad', why: `is a WebSocket URL; an Origin is the page's: write http${scheme.slice(2)}://...` };
  if (scheme.includes('*')) return { kind: 'bad', why: 'has a wildcard in its scheme' };
  const defaultPort = DEFAULT_PORT.get(scheme);
  if (defaultPort === undefined) return { kind: 'bad', why: `has scheme ${scheme}: only http and https` };
  let rest = s.slice(sep + 3);
  const cut = rest.search(/[/?#]/);
  if (cut >= 0)
    return {
      kind: 'bad',
      why:
        cut === rest.length - 1 && rest.endsWith('/')
          ? `has a trailing slash; an origin has no path: write ${scheme}://${rest.slice(0, -1)}`
          : 'has a path, query or fragment; an origin is only scheme://host[:port]',
    };
  if (rest.includes('@')) return { kind: 'bad', why: 'has user info; an origin is only scheme://host[:port]' };
  let wild = false;
  if (rest.startsWith('*.')) {
    wild = true;
    rest = rest.slice(2);
  }
  if (rest.includes('*'))
    return { kind: 'bad', why: 'has a wildcard out of place: only a whole first label, as https://*.example.com' };
  const m = HOST_RE.exec(asciiHostPort(rest));
  if (!m) return { kind: 'bad', why: 'has a malformed host or port' };
  if (m[1].endsWith('.')) return { kind: 'bad', why: 'has a trailing dot (pages of that name are another origin)' };
  const port = portOf(m[2], defaultPort);
  if (port < 0) return { kind: 'bad', why: 'has a port outside 1-65535' };
  const host = canonicalHost(m[1]);
  if (host === null) return { kind: 'bad', why: 'has a malformed host' };
  if (wild) {
    if (isIP(host) !== 0) return { kind: 'bad', why: 'has a wildcard over an IP address' };
    if (!host.includes('.'))
      return { kind: 'bad', why: `has a wildcard over a whole top-level domain (*.${host}): name the site` };
    return { kind: 'wild', wild: { scheme, suffix: `.${host}`, port } };
  }
  return { kind: 'exact', key: originKey(scheme, host, port) };
}

type HostEntry =
  | { kind: 'any' }
  | { kind: 'exact'; host: string; port: number }
  | { kind: 'wild'; suffix: string; port: number }
  | { kind: 'bad'; why: string };

/** A `Host` entry; port 0 means any port. A bare IPv6 address (`::1`) may be written without brackets. */
function parseHostEntry(raw: unknown): HostEntry {
  if (typeof raw !== 'string') return { kind: 'bad', why: 'must be a string' };
  let s = raw.trim().toLowerCase();
  if (s === '*') return { kind: 'any' };
  if (s === '') return { kind: 'bad', why: 'is empty' };
  if (s.includes('://')) return { kind: 'bad', why: 'has a scheme: write the host only, as host or host:port' };
  if (/[/?#@]/.test(s)) return { kind: 'bad', why: 'has a path or user info: write the host only' };
  if (isIP(s) === 6) s = `[${s}]`;
  let wild = false;
  if (s.startsWith('*.')) {
    wild = true;
    s = s.slice(2);
  }
  if (s.includes('*'))
    return { kind: 'bad', why: 'has a wildcard out of place: only * alone or a whole first label (*.example.com)' };
  const m = HOST_RE.exec(asciiHostPort(s));
  if (!m) return { kind: 'bad', why: 'has a malformed host or port' };
  const port = portOf(m[2], 0);
  if (port < 0) return { kind: 'bad', why: 'has a port outside 1-65535' };
  const host = canonicalHost(m[1]);
  if (host === null) return { kind: 'bad', why: 'has a malformed host' };
  if (wild) {
    if (isIP(host) !== 0) return { kind: 'bad', why: 'has a wildcard over an IP address' };
    return { kind: 'wild', suffix: `.${host}`, port };
  }
  return { kind: 'exact', host, port };
}

/**
 * Every problem of a raw `security` section (`allowedOrigins`, `allowedHosts`; both optional, default
 * empty), each named by its path (`${path}.allowedOrigins[1]`) and the entry. Other fields of the section
 * are not looked at (they are other checks' settings).
 */
export function validateBrowserPolicy(raw: unknown, path: string): PolicyProblem[] {
  const out: PolicyProblem[] = [];
  if (raw === undefined) return out;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    out.push({ path, text: `${path} must be an object` });
    return out;
  }
  const obj = raw as Record<string, unknown>;
  const list = (field: string, check: (e: unknown) => { kind: string; why?: string }): void => {
    const v = obj[field];
    const at = `${path}.${field}`;
    if (v === undefined) return;
    if (!Array.isArray(v)) {
      out.push({ path: at, text: `${at} must be an array of strings` });
      return;
    }
    v.forEach((e, i) => {
      const r = check(e);
      if (r.kind === 'bad') out.push({ path: `${at}[${i}]`, text: `${at}[${i}] ${JSON.stringify(e)} ${r.why}` });
    });
  };
  list('allowedOrigins', parseOriginEntry);
  list('allowedHosts', parseHostEntry);
  return out;
}

// ---- the policy ---------------------------------------------------------------------------------------

const ALLOW_METHODS = CORS_METHODS.join(', ');
const ALLOWED_METHOD_SET = new Set<string>(CORS_METHODS);
const ALLOWED_HEADER_SET = new Set<string>(CORS_REQUEST_HEADERS);
// Shared by every answer, so frozen: a caller that changed one would change every later answer.
const VARY = Object.freeze(['vary', 'Origin']) as [string, string];
const EXPOSE = Object.freeze(['access-control-expose-headers', CORS_EXPOSED_HEADERS.join(', ')]) as [string, string];
const REFUSED = Object.freeze({ status: 403, headers: Object.freeze([]) as unknown as [string, string][] });

export class BrowserPolicy {
  private readonly anyOrigin: boolean;
  private readonly nullOrigin: boolean;
  /** Canonical origins (`https://example.com`, `http://127.0.0.1:8080`). */
  private readonly origins: Set<string>;
  private readonly wildOrigins: Wild[];
  private readonly anyHost: boolean;
  /** Exact host entries: `host` (any port) and `host:port`, canonical. */
  private readonly hosts: Set<string>;
  private readonly wildHosts: { suffix: string; port: number }[];
  /** No host listed: the default of threat 2. */
  private readonly defaultHosts: boolean;
  private readonly maxAge: [string, string];

  constructor(opts: BrowserPolicyOptions) {
    const problems = validateBrowserPolicy(
      { allowedOrigins: opts.allowedOrigins, allowedHosts: opts.allowedHosts },
      'security',
    );
    const maxAge = opts.maxAgeSeconds ?? DEFAULT_MAX_AGE;
    if (!Number.isInteger(maxAge) || maxAge < 0)
      problems.push({ path: 'maxAgeSeconds', text: 'maxAgeSeconds must be an integer >= 0' });
    if (problems.length > 0) throw new BrowserPolicyError(problems);
    this.maxAge = Object.freeze(['access-control-max-age', String(maxAge)]) as [string, string];

    this.anyOrigin = false;
    this.nullOrigin = false;
    this.origins = new Set();
    this.wildOrigins = [];
    for (const raw of opts.allowedOrigins) {
      const e = parseOriginEntry(raw);
      if (e.kind === 'any') this.anyOrigin = true;
      else if (e.kind === 'null') this.nullOrigin = true;
      else if (e.kind === 'exact') this.origins.add(e.key);
      else if (e.kind === 'wild') this.wildOrigins.push(e.wild);
    }

    this.anyHost = false;
    this.hosts = new Set();
    this.wildHosts = [];
    for (const raw of opts.allowedHosts) {
      const e = parseHostEntry(raw);
      if (e.kind === 'any') this.anyHost = true;
      else if (e.kind === 'exact') this.hosts.add(e.port === 0 ? e.host : `${e.host}:${e.port}`);
      else if (e.kind === 'wild') this.wildHosts.push({ suffix: e.suffix, port: e.port });
    }
    this.defaultHosts = opts.allowedHosts.length === 0;
    if (this.defaultHosts) {
      this.hosts.add('localhost');
      const listen = opts.listenHost === undefined ? null : canonicalHost(opts.listenHost);
      if (listen !== null && isIP(listen) === 0) this.hosts.add(listen);
    }
  }

  /**
   * Whether a request with this `Origin` header may go on (threat 1): absent or `''` yes; `null` only if
   * listed; otherwise the origin must match an entry. Browsers send origins canonical, so the common case
   * is one Set lookup; other spellings (uppercase, a default port) are canonicalised first.
   */
  checkOrigin(origin: string | undefined): boolean {
    if (origin === undefined || origin === '') return true;
    if (this.origins.has(origin)) return true;
    const s = origin.toLowerCase();
    if (s === 'null' || s.startsWith('file://')) return this.nullOrigin;
    const m = ORIGIN_RE.exec(s);
    if (m === null) return false;
    const scheme = m[1];
    const defaultPort = DEFAULT_PORT.get(scheme);
    if (defaultPort === undefined) return this.anyOrigin;
    const port = portOf(m[3], defaultPort);
    if (port < 0) return false;
    // Brackets off an IPv6 address; a trailing dot stays (`https://example.com.` is another origin).
    const host = m[2].startsWith('[') ? m[2].slice(1, -1) : m[2];
    if (this.anyOrigin) return true;
    if (this.origins.has(originKey(scheme, host, port))) return true;
    for (const w of this.wildOrigins) if (w.scheme === scheme && w.port === port && below(host, w.suffix)) return true;
    return false;
  }

  /**
   * Whether the gateway answers to this `Host` header (threat 2). An entry without a port matches any
   * port; one with a port matches that port, and a `Host` without a port (browsers leave out 80 and 443)
   * matches entries with port 80 or 443.
   */
  checkHost(host: string | undefined): boolean {
    if (this.anyHost) return true;
    if (host === undefined || host === '') return false;
    const m = HOST_RE.exec(host.toLowerCase());
    if (m === null) return false;
    const bracketed = m[1].startsWith('[');
    const name = bareHost(m[1]);
    if (bracketed ? isIP(name) !== 6 : name === '') return false;
    const port = portOf(m[2], 0);
    if (port < 0) return false;
    if (this.defaultHosts && isIP(name) !== 0) return true;
    if (this.hosts.has(name)) return true;
    if (port === 0) {
      if (this.hosts.has(`${name}:80`) || this.hosts.has(`${name}:443`)) return true;
    } else if (this.hosts.has(`${name}:${port}`)) return true;
    for (const w of this.wildHosts)
      if (
        below(name, w.suffix) &&
        (w.port === 0 || w.port === port || (port === 0 && (w.port === 80 || w.port === 443)))
      )
        return true;
    return false;
  }

  /**
   * The whole decision for one request (and a WebSocket upgrade: method `GET`), in the order of the
   * header comment: null to go on, or why to refuse. `method` in any case (uWS's `getMethod()` is
   * lowercase); `contentType` matters only for a POST that carries an Origin.
   */
  checkRequest(
    method: string,
    host: string | undefined,
    origin: string | undefined,
    contentType: string | undefined,
  ): BrowserRefusal | null {
    if (!this.checkHost(host)) return 'host';
    if (origin === undefined || origin === '') return null;
    if (!this.checkOrigin(origin)) return 'origin';
    if (method.length === 4 && method.toUpperCase() === 'POST' && isSimpleContentType(contentType))
      return 'simple-write';
    return null;
  }

  /**
   * The answer to an `OPTIONS` request with this `Origin`, `Access-Control-Request-Method` and
   * `Access-Control-Request-Headers`: 204 with the CORS headers when the origin is listed and asks for
   * methods and headers the gateway takes; otherwise 403 without any CORS header (the browser then fails
   * the request without sending it). An OPTIONS without Origin is no preflight: 403 too. The `Host` is not
   * looked at: the front calls `checkRequest` first, for OPTIONS as for any request.
   */
  preflight(
    origin: string | undefined,
    method: string | undefined,
    requestHeaders: string | undefined,
  ): PreflightAnswer {
    if (origin === undefined || origin === '' || !this.checkOrigin(origin)) return REFUSED;
    if (method === undefined || !ALLOWED_METHOD_SET.has(method)) return REFUSED;
    if (requestHeaders !== undefined && requestHeaders !== '') {
      for (const h of requestHeaders.split(',')) {
        const name = h.trim().toLowerCase();
        if (name !== '' && !ALLOWED_HEADER_SET.has(name)) return REFUSED;
      }
    }
    return {
      status: 204,
      headers: [
        ['access-control-allow-origin', origin],
        ['access-control-allow-methods', ALLOW_METHODS],
        ['access-control-allow-headers', CORS_REQUEST_HEADERS.join(', ')],
        this.maxAge,
        ['vary', 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers'],
      ],
    };
  }

  /**
   * Headers for an actual response to a request with this `Origin`: for a listed origin, the origin echoed,
   * `Vary: Origin` and the exposed headers; otherwise only `Vary: Origin` (the answer depends on the
   * header, and a shared cache must not hand one origin's answer to another).
   */
  corsHeaders(origin: string | undefined): [string, string][] {
    if (origin === undefined || origin === '' || !this.checkOrigin(origin)) return [VARY];
    return [['access-control-allow-origin', origin], VARY, EXPOSE];
  }
}
