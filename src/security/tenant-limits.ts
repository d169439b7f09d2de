/**
 * Rate limits per principal (an API key or token) and per tenant: operations and bytes a second for each
 * principal, and the bytes a whole tenant may write a second, summed over its principals, so that one
 * tenant cannot flush another out of the cache at line rate. Past a limit a request is refused with the
 * time after which it would pass (the front answers RATE_LIMITED, 429, with Retry-After).
 *
 * Buckets (src/security/token-bucket.ts) are made lazily, the first time a principal is seen, from its
 * tenant's spec; a tenant's spec replaces the defaults as a whole, and a limit of 0 or absent is no limit
 * (no bucket, no cost; a spec with none costs no lookup at all). Checks are all-or-nothing: a request
 * refused by one limit takes nothing from the others. A request of n items counts n ops; the bytes known
 * before it runs are taken at `admit`, those known only after (an answer's bytes, a streamed body) are
 * charged with `charge`, which may put the bucket in debt so that the principal's (or tenant's) next
 * requests wait until it is repaid.
 *
 * Memory is bounded whatever ids arrive: at most `maxPrincipals` principal entries. A principal whose
 * buckets are all full carries no information (a new entry would start the same) and is dropped when the
 * table is full or on `sweep`; if sweeping frees less than an eighth of the table, the oldest entries are
 * evicted down to seven eighths (counted in `evicted`: each such principal starts again with a full
 * burst), so a full table costs one scan per eighth of its size in new ids, not one per id. A tenant's
 * entry lives while any of its principals' entries does, and after that until its write bucket is full,
 * so churning principal ids does not forgive a tenant's write debt; unreferenced tenant entries beyond
 * `maxTenants` are dropped, full ones first.
 *
 * A principal keeps the tenant it was first seen with until its entry is dropped. The admit path of a
 * known principal does one Map lookup and allocates nothing. Counters are plain numbers, for metrics.
 */
import { TokenBucket } from './token-bucket';

/** One tenant's limits; 0 or absent: no limit. */
export interface LimitsSpec {
  /** Operations (items) a second, per principal. */
  opsPerSecond?: number;
  /** Bytes a second (sent and answered), per principal. */
  bytesPerSecond?: number;
  /** Bytes written (set values) a second, per tenant: all its principals together. */
  writeBytesPerSecond?: number;
  /** Each bucket holds this many seconds of its rate (default 1). */
  burstSeconds?: number;
}

/** Which limit refused a request, the `kind` label of the refusal counters. */
export const enum LimitKind {
  Ops,
  Bytes,
  WriteBytes,
}
export const LIMIT_KIND_NAMES = ['ops', 'bytes', 'write_bytes'] as const;

export interface TenantLimitsOptions {
  /** Specs by tenant name; a tenant not named here has the defaults. */
  tenants?: Readonly<Record<string, LimitsSpec>>;
  /** Principal entries kept at most (default 65536, at least 8). */
  maxPrincipals?: number;
  /** Tenant entries without a principal entry kept at most (default 4096). */
  maxTenants?: number;
}

export const DEFAULT_BURST_SECONDS = 1;
const DEFAULT_MAX_PRINCIPALS = 65536;
const DEFAULT_MAX_TENANTS = 4096;

/** A spec with its defaults applied: rates (0: no limit) and bursts in tokens. */
class Resolved {
  readonly unlimited: boolean;
  readonly ops: number;
  readonly bytes: number;
  readonly write: number;
  readonly burstSeconds: number;
  constructor(spec: LimitsSpec) {
    this.ops = spec.opsPerSecond ?? 0;
    this.bytes = spec.bytesPerSecond ?? 0;
    this.write = spec.writeBytesPerSecond ?? 0;
    this.burstSeconds = spec.burstSeconds ?? DEFAULT_BURST_SECONDS;
    this.unlimited = !(this.ops > 0) && !(this.bytes > 0) && !(this.write > 0);
  }

  bucket(rate: number, nowMs: number): TokenBucket | null {
    return rate > 0 ? new TokenBucket(rate, rate * this.burstSeconds, nowMs) : null;
  }
}

class TenantEntry {
  /** Principal entries pointing here. */
  refs = 0;
  constructor(readonly write: TokenBucket) {}
}

class PrincipalEntry {
  constructor(
    readonly ops: TokenBucket | null,
    readonly bytes: TokenBucket | null,
    /** Null when the tenant has no write limit. */
    readonly tenant: TenantEntry | null,
  ) {}

  isFull(nowMs: number): boolean {
    return (this.ops === null || this.ops.isFull(nowMs)) && (this.bytes === null || this.bytes.isFull(nowMs));
  }
}

export class TenantLimits {
  /** Requests admitted (including those no limit applies to). */
  admitted = 0;
  /** Requests refused, and by which limit (the one that asked the longest wait). */
  refused = 0;
  refusedOps = 0;
  refusedBytes = 0;
  refusedWriteBytes = 0;
  /** Principal entries dropped because they were full (nothing lost), and evicted while not full. */
  swept = 0;
  evicted = 0;
  /** The limit that refused the last refused request. */
  lastRefusal: LimitKind = LimitKind.Ops;

  private readonly defaults: Resolved;
  private readonly specs = new Map<string, Resolved>();
  /** No limit anywhere: admit is a counter bump. */
  private readonly unlimited: boolean;
  private readonly principalMap = new Map<string, PrincipalEntry>();
  private readonly tenantMap = new Map<string, TenantEntry>();
  /** Tenant entries no principal entry points to. */
  private idleTenants = 0;
  private readonly maxPrincipals: number;
  private readonly maxTenants: number;

  constructor(defaults: LimitsSpec, options: TenantLimitsOptions = {}) {
    this.defaults = new Resolved(defaults);
    let unlimited = this.defaults.unlimited;
    for (const [name, spec] of Object.entries(options.tenants ?? {})) {
      const r = new Resolved(spec);
      this.specs.set(name, r);
      unlimited &&= r.unlimited;
    }
    this.unlimited = unlimited;
    this.maxPrincipals = Math.max(8, options.maxPrincipals ?? DEFAULT_MAX_PRINCIPALS);
    this.maxTenants = Math.max(1, options.maxTenants ?? DEFAULT_MAX_TENANTS);
  }

  /** Some limit is configured (else admit and charge cost a counter bump). */
  get limited(): boolean {
    return !this.unlimited;
  }

  /** Principal entries held. */
  get principals(): number {
    return this.principalMap.size;
  }

  /** Tenant entries held (tenants with a write limit that were seen lately). */
  get tenants(): number {
    return this.tenantMap.size;
  }

  /**
   * A request of `ops` items bringing `bytes` (for the principal's bytes limit) of which `writeBytes` are
   * values to write (for its tenant's write limit), as far as they are known now. Returns 0 when it is
   * admitted (and counted against every limit), else the ms after which it would pass (at least 1), with
   * nothing taken. `tenant` is read only when the principal has no entry yet.
   */
  admit(principalId: string, tenant: string, ops: number, bytes: number, writeBytes: number, nowMs: number): number {
    if (this.unlimited) {
      this.admitted++;
      return 0;
    }
    const e = this.principalMap.get(principalId) ?? this.create(principalId, tenant, nowMs);
    if (e === null) {
      this.admitted++;
      return 0;
    }
    let wait = 0;
    let kind = LimitKind.Ops;
    if (e.ops !== null) wait = e.ops.retryAfterMs(ops, nowMs);
    if (e.bytes !== null) {
      const w = e.bytes.retryAfterMs(bytes, nowMs);
      if (w > wait) {
        wait = w;
        kind = LimitKind.Bytes;
      }
    }
    const t = e.tenant;
    if (t !== null) {
      const w = t.write.retryAfterMs(writeBytes, nowMs);
      if (w > wait) {
        wait = w;
        kind = LimitKind.WriteBytes;
      }
    }
    if (wait > 0) {
      this.refused++;
      if (kind === LimitKind.Ops) this.refusedOps++;
      else if (kind === LimitKind.Bytes) this.refusedBytes++;
      else this.refusedWriteBytes++;
      this.lastRefusal = kind;
      return wait;
    }
    if (e.ops !== null) e.ops.charge(ops, nowMs);
    if (e.bytes !== null) e.bytes.charge(bytes, nowMs);
    if (t !== null) t.write.charge(writeBytes, nowMs);
    this.admitted++;
    return 0;
  }

  /**
   * Bytes learnt after a request was admitted: `bytes` against the principal's bytes limit, `writeBytes`
   * against its tenant's write limit. Always taken, into debt if need be.
   */
  charge(principalId: string, tenant: string, bytes: number, writeBytes: number, nowMs: number): void {
    if (this.unlimited) return;
    const e = this.principalMap.get(principalId) ?? this.create(principalId, tenant, nowMs);
    if (e === null) return;
    if (e.bytes !== null && bytes > 0) e.bytes.charge(bytes, nowMs);
    if (e.tenant !== null && writeBytes > 0) e.tenant.write.charge(writeBytes, nowMs);
  }

  /** Tokens left for a principal, for tests and /debug/stats (null: no entry or no such limit). */
  tokens(principalId: string, kind: LimitKind, nowMs: number): number | null {
    const e = this.principalMap.get(principalId);
    if (e === undefined) return null;
    const b = kind === LimitKind.Ops ? e.ops : kind === LimitKind.Bytes ? e.bytes : (e.tenant?.write ?? null);
    return b === null ? null : b.tokens(nowMs);
  }

  /** Drops every entry whose buckets are full (call it now and then); returns the principals dropped. */
  sweep(nowMs: number): number {
    let n = 0;
    for (const [id, e] of this.principalMap) {
      if (!e.isFull(nowMs)) continue;
      this.drop(id, e);
      n++;
    }
    this.swept += n;
    if (this.idleTenants > 0) this.dropFullTenants(nowMs);
    return n;
  }

  stats(): {
    principals: number;
    tenants: number;
    admitted: number;
    refused: number;
    refusedOps: number;
    refusedBytes: number;
    refusedWriteBytes: number;
    swept: number;
    evicted: number;
  } {
    return {
      principals: this.principalMap.size,
      tenants: this.tenantMap.size,
      admitted: this.admitted,
      refused: this.refused,
      refusedOps: this.refusedOps,
      refusedBytes: this.refusedBytes,
      refusedWriteBytes: this.refusedWriteBytes,
      swept: this.swept,
      evicted: this.evicted,
    };
  }

  /** A new principal's entry, or null when its tenant has no limit (then nothing is kept). */
  private create(principalId: string, tenant: string, nowMs: number): PrincipalEntry | null {
    const spec = this.specs.get(tenant) ?? this.defaults;
    if (spec.unlimited) return null;
    if (this.principalMap.size >= this.maxPrincipals) this.makeRoom(nowMs);
    let t: TenantEntry | null = null;
    if (spec.write > 0) {
      const found = this.tenantMap.get(tenant);
      if (found !== undefined) {
        t = found;
        if (t.refs === 0) this.idleTenants--;
      } else {
        if (this.idleTenants >= this.maxTenants) this.pruneTenants(nowMs);
        t = new TenantEntry(spec.bucket(spec.write, nowMs)!);
        this.tenantMap.set(tenant, t);
      }
      t.refs++;
    }
    const e = new PrincipalEntry(spec.bucket(spec.ops, nowMs), spec.bucket(spec.bytes, nowMs), t);
    this.principalMap.set(principalId, e);
    return e;
  }

  /** The table is full: sweep, and if that freed less than an eighth, evict the oldest down to 7/8. */
  private makeRoom(nowMs: number): void {
    this.sweep(nowMs);
    const low = this.maxPrincipals - Math.max(1, this.maxPrincipals >>> 3);
    if (this.principalMap.size <= low) return;
    for (const [id, e] of this.principalMap) {
      this.drop(id, e);
      this.evicted++;
      if (this.principalMap.size <= low) break;
    }
  }

  private dropFullTenants(nowMs: number): void {
    for (const [name, t] of this.tenantMap) {
      if (t.refs !== 0 || !t.write.isFull(nowMs)) continue;
      this.tenantMap.delete(name);
      this.idleTenants--;
    }
  }

  /** `maxTenants` unreferenced tenant entries: full ones go first, then the oldest, down to 7/8. */
  private pruneTenants(nowMs: number): void {
    this.dropFullTenants(nowMs);
    const low = this.maxTenants - Math.max(1, this.maxTenants >>> 3);
    if (this.idleTenants <= low) return;
    for (const [name, t] of this.tenantMap) {
      if (t.refs !== 0) continue;
      this.tenantMap.delete(name);
      this.idleTenants--;
      if (this.idleTenants <= low) break;
    }
  }

  private drop(id: string, e: PrincipalEntry): void {
    this.principalMap.delete(id);
    if (e.tenant !== null && --e.tenant.refs === 0) this.idleTenants++;
  }
}

/** One bad field of a limits spec: where it is (`tenants.a.opsPerSecond`), and the whole sentence. */
export interface LimitsProblem {
  path: string;
  message: string;
}

/** The largest rate accepted (a second): above it the thousandths of a token in a bucket pass 2^53. */
export const MAX_RATE = 1e12;
export const MAX_BURST_SECONDS = 3600;
const RATE_FIELDS = ['opsPerSecond', 'bytesPerSecond', 'writeBytesPerSecond'] as const;
const SPEC_FIELDS: readonly string[] = [...RATE_FIELDS, 'burstSeconds'];

/**
 * Checks a limits spec read from configuration (`raw`, found at `path`), naming every bad field at once.
 * `spec` holds the fields that are good (absent: no limits); use it only when `problems` is empty.
 */
export function validateLimitsSpec(raw: unknown, path: string): { spec: LimitsSpec; problems: LimitsProblem[] } {
  const spec: LimitsSpec = {};
  const problems: LimitsProblem[] = [];
  if (raw === undefined) return { spec, problems };
  if (!isPlainObject(raw)) {
    problems.push({ path, message: `${path || 'limits'} must be an object of limits (got ${shown(raw)})` });
    return { spec, problems };
  }
  for (const k of Object.keys(raw)) {
    if (!SPEC_FIELDS.includes(k)) problems.push({ path: at(path, k), message: `unknown setting "${at(path, k)}"` });
  }
  for (const k of RATE_FIELDS) {
    const v = raw[k];
    if (v === undefined) continue;
    if (typeof v === 'number' && v >= 0 && v <= MAX_RATE) spec[k] = v;
    else
      problems.push({
        path: at(path, k),
        message: `${at(path, k)} must be a number from 0 (no limit) to ${MAX_RATE} (got ${shown(v)})`,
      });
  }
  const b = raw.burstSeconds;
  if (b !== undefined) {
    if (typeof b === 'number' && b > 0 && b <= MAX_BURST_SECONDS) spec.burstSeconds = b;
    else
      problems.push({
        path: at(path, 'burstSeconds'),
        message: `${at(path, 'burstSeconds')} must be a number of seconds above 0, at most ${MAX_BURST_SECONDS} (got ${shown(b)})`,
      });
  }
  return { spec, problems };
}

function at(path: string, k: string): string {
  return path === '' ? k : `${path}.${k}`;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value as a problem message shows it: JSON, cut short. */
export function shown(v: unknown): string {
  let s: string;
  try {
    s = v === undefined ? 'undefined' : (JSON.stringify(v) ?? String(v));
  } catch {
    s = String(v);
  }
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}
