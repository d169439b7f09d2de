/**
 * Who a client is once its credential checked out (an API key or a JWT, see authenticator.ts), and what it
 * may do with which keys. The gateway asks `allowedBytes` once per key of every request, so the rules are
 * compiled when the principal is made: each prefix encoded once as bytes, sorted longest first, so the
 * check is a few byte compares and never allocates.
 *
 * Rules apply to the key as the client sends it (`user:1`), before the gateway adds the principal's
 * namespace (`tenantA:user:1` is what the fleet stores). The longest rule prefix the key starts with
 * decides; a key no rule matches may not be touched at all. `''` as a prefix matches every key, so
 * `[{prefix: '', perms: Read}, {prefix: 'admin:', perms: 0}]` reads everything but `admin:*`.
 *
 * Permissions in configuration and in JWT claims are written `"read,write"` or `["read", "write"]`
 * (`parsePermissions`); `all` is read + write + delete, `none` is nothing (a rule that takes access away
 * from a longer prefix).
 */
import { isValidKey, MAX_KEY_BYTES } from '../core/key';
import { isRecord, type AuthProblem } from './problems';

export const enum Perm {
  None = 0,
  Read = 1,
  Write = 2,
  Delete = 4,
  All = 7,
}

/** A prefix of the client-visible key (`''`: every key) and the Perm bits granted under it. */
export interface PermissionRule {
  prefix: string;
  perms: number;
}

export interface Principal {
  /** The API key's configured id, or `jwt:<sub>`; never the credential itself (it goes into logs). */
  readonly id: string;
  /** Groups principals for per-tenant limits (API key: configured; JWT: a claim; default: the namespace). */
  readonly tenant: string;
  /** Prefix the gateway adds to every key of this principal; '' = none. */
  readonly namespace: string;
  /** `namespace` as UTF-8 bytes, for the gateway to copy in front of a key without encoding it per key. */
  readonly namespaceBytes: Buffer;
  /** Longest first (the order they are tried in). */
  readonly rules: readonly PermissionRule[];
  /** May use the admin listener. */
  readonly admin: boolean;
  /** ms since epoch from which the credential is no longer accepted (a JWT's exp + clock skew); Infinity for API keys. */
  readonly expiresAt: number;
  /** The rules compiled for the per-key check. */
  readonly access: PrefixRules;
}

/** The longest namespace accepted: the namespaced key must still fit memcached's 250 bytes. */
export const MAX_NAMESPACE_BYTES = 64;

/**
 * Rules compiled for matching: prefixes as bytes (and as strings, for string keys), longest first. Two
 * prefixes that both match one key are a prefix of one another, so longest-by-bytes and longest-by-chars
 * agree.
 */
export class PrefixRules {
  private readonly bytes: Buffer[];
  private readonly strings: string[];
  private readonly perms: number[];

  /** `rules` must have distinct prefixes (parseRules checks); of duplicates, the first listed decides. */
  constructor(rules: readonly PermissionRule[]) {
    const sorted = sortRules(rules);
    this.bytes = sorted.map((r) => Buffer.from(r.prefix, 'utf8'));
    this.strings = sorted.map((r) => r.prefix);
    this.perms = sorted.map((r) => r.perms);
  }

  /** The Perm bits of the longest rule `buf[off, off+len)` starts with; Perm.None when none matches. */
  permsForBytes(buf: Uint8Array, off: number, len: number): number {
    const bytes = this.bytes;
    outer: for (let r = 0; r < bytes.length; r++) {
      const pre = bytes[r];
      const n = pre.length;
      if (n > len) continue;
      for (let i = 0; i < n; i++) if (buf[off + i] !== pre[i]) continue outer;
      return this.perms[r];
    }
    return Perm.None;
  }

  permsForString(key: string): number {
    const strings = this.strings;
    for (let r = 0; r < strings.length; r++) if (key.startsWith(strings[r])) return this.perms[r];
    return Perm.None;
  }
}

/** Longest prefix (in UTF-8 bytes) first; a stable sort, so of equal prefixes the first listed wins. */
function sortRules(rules: readonly PermissionRule[]): PermissionRule[] {
  return rules
    .map((r, i) => ({ r, i, n: Buffer.byteLength(r.prefix, 'utf8') }))
    .sort((a, b) => b.n - a.n || a.i - b.i)
    .map((x) => x.r);
}

export interface PrincipalFields {
  id: string;
  tenant: string;
  namespace: string;
  rules: readonly PermissionRule[];
  admin: boolean;
  expiresAt: number;
}

/** A frozen principal with its rules compiled; the fields are expected to be checked already. */
export function makePrincipal(f: PrincipalFields): Principal {
  const rules = Object.freeze(sortRules(f.rules).map((r) => Object.freeze({ prefix: r.prefix, perms: r.perms })));
  return Object.freeze({
    id: f.id,
    tenant: f.tenant,
    namespace: f.namespace,
    namespaceBytes: Buffer.from(f.namespace, 'utf8'),
    rules,
    admin: f.admin,
    expiresAt: f.expiresAt,
    access: new PrefixRules(rules),
  });
}

/** True when every bit of `perm` is granted for `key` (a string, or all of a byte array). */
export function allowed(p: Principal, key: string | Uint8Array, perm: Perm): boolean {
  const got = typeof key === 'string' ? p.access.permsForString(key) : p.access.permsForBytes(key, 0, key.length);
  return perm !== Perm.None && (got & perm) === perm;
}

/** `allowed` for the key at `buf[off, off+len)`, as the gateway holds it; allocates nothing. */
export function allowedBytes(p: Principal, buf: Uint8Array, off: number, len: number, perm: Perm): boolean {
  return perm !== Perm.None && (p.access.permsForBytes(buf, off, len) & perm) === perm;
}

const PERM_NAMES: Readonly<Record<string, number>> = {
  read: Perm.Read,
  write: Perm.Write,
  delete: Perm.Delete,
  all: Perm.All,
  none: Perm.None,
};

export type ParsedPermissions = { ok: true; perms: number } | { ok: false; problems: string[] };

/**
 * `"read,write"` (spaces around names allowed) or `["read", "write", "delete"]` -> a Perm bitmask. Names
 * are read, write, delete, all and none (none only alone). Every bad name is reported.
 */
export function parsePermissions(text: unknown): ParsedPermissions {
  let names: unknown[];
  if (typeof text === 'string') names = text.split(',').map((s) => s.trim());
  else if (Array.isArray(text)) names = text;
  else return { ok: false, problems: ['permissions must be a string like "read,write" or a list of names'] };
  const problems: string[] = [];
  if (names.length === 0 || (names.length === 1 && names[0] === ''))
    return { ok: false, problems: ['no permission named (write "none" to grant nothing)'] };
  let perms = 0;
  for (const n of names) {
    if (typeof n !== 'string') {
      problems.push(`permission ${JSON.stringify(n)} is not a string`);
      continue;
    }
    const bit = Object.prototype.hasOwnProperty.call(PERM_NAMES, n) ? PERM_NAMES[n] : undefined;
    if (bit === undefined) problems.push(`unknown permission "${n}" (known: read, write, delete, all, none)`);
    else perms |= bit;
  }
  if (names.includes('none') && names.length > 1) problems.push('"none" cannot be combined with other permissions');
  return problems.length > 0 ? { ok: false, problems } : { ok: true, perms };
}

/** The names of a bitmask, for logs and the admin listener (`read,write`; `none`). */
export function formatPermissions(perms: number): string {
  const out: string[] = [];
  if (perms & Perm.Read) out.push('read');
  if (perms & Perm.Write) out.push('write');
  if (perms & Perm.Delete) out.push('delete');
  return out.length > 0 ? out.join(',') : 'none';
}

/** Why `prefix` cannot be a rule prefix, or null: '' or a valid key's start (core/key.ts rules). */
export function prefixProblem(prefix: string): string | null {
  if (prefix === '') return null;
  if (hasLoneSurrogate(prefix)) return 'prefix is not valid Unicode';
  const b = Buffer.from(prefix, 'utf8');
  if (!isValidKey(b, 0, b.length))
    return `prefix must be at most ${MAX_KEY_BYTES} bytes with no whitespace or control characters`;
  return null;
}

/** Why `ns` cannot be a namespace, or null: '' or up to 64 bytes of what a key may hold. */
export function namespaceProblem(ns: string): string | null {
  if (ns === '') return null;
  if (hasLoneSurrogate(ns)) return 'namespace is not valid Unicode';
  const b = Buffer.from(ns, 'utf8');
  if (b.length > MAX_NAMESPACE_BYTES || !isValidKey(b, 0, b.length))
    return `namespace must be at most ${MAX_NAMESPACE_BYTES} bytes with no whitespace or control characters`;
  return null;
}

function hasLoneSurrogate(s: string): boolean {
  return /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

export type ParsedRules = { ok: true; rules: PermissionRule[] } | { ok: false; problems: AuthProblem[] };

/**
 * Rules as configuration and JWT claims write them: a permissions string or list (for every key: one rule
 * with prefix ''), or a list of `{prefix, perms}` with distinct prefixes. Problems are named under `path`.
 */
export function parseRules(raw: unknown, path: string): ParsedRules {
  const isPermList = Array.isArray(raw) && raw.every((x) => typeof x === 'string');
  if (typeof raw === 'string' || isPermList) {
    const p = parsePermissions(raw);
    if (!p.ok) return { ok: false, problems: p.problems.map((message) => ({ path, message })) };
    return { ok: true, rules: [{ prefix: '', perms: p.perms }] };
  }
  if (!Array.isArray(raw))
    return {
      ok: false,
      problems: [{ path, message: 'must be permissions ("read,write") or a list of {prefix, perms}' }],
    };
  const problems: AuthProblem[] = [];
  const rules: PermissionRule[] = [];
  const seen = new Set<string>();
  raw.forEach((r, i) => {
    const at = `${path}[${i}]`;
    if (!isRecord(r)) {
      problems.push({ path: at, message: 'must be {prefix, perms}' });
      return;
    }
    for (const k of Object.keys(r))
      if (k !== 'prefix' && k !== 'perms')
        problems.push({ path: `${at}.${k}`, message: 'unknown field (known: prefix, perms)' });
    let ok = true;
    if (typeof r.prefix !== 'string') {
      problems.push({ path: `${at}.prefix`, message: "must be a string ('' for every key)" });
      ok = false;
    } else {
      const why = prefixProblem(r.prefix);
      if (why !== null) {
        problems.push({ path: `${at}.prefix`, message: why });
        ok = false;
      } else if (seen.has(r.prefix)) {
        problems.push({ path: `${at}.prefix`, message: `prefix "${r.prefix}" is listed twice` });
        ok = false;
      } else seen.add(r.prefix);
    }
    const p = parsePermissions(r.perms);
    if (!p.ok) {
      for (const message of p.problems) problems.push({ path: `${at}.perms`, message });
      ok = false;
    }
    if (ok && p.ok) rules.push({ prefix: r.prefix as string, perms: p.perms });
  });
  return problems.length > 0 ? { ok: false, problems } : { ok: true, rules };
}
