/**
 * Connection limits per client address and per principal: connections open at once from one address,
 * connections open at once with one principal (API key or token), and new connections a second from one
 * address (a token bucket, src/security/token-bucket.ts). Past one, the front refuses the connection
 * (RATE_LIMITED, 429) with a retry-after hint: for the rate, when a connection would pass; for a count, a
 * fixed second (nothing tells when a connection will close).
 *
 * An address is counted by its network, not its host: an IPv6 client usually holds a whole /64 and can
 * pick a new address per connection, so IPv6 addresses are grouped by their first `ipv6PrefixLength`
 * bits (64), IPv4 ones by `ipv4PrefixLength` (32). Addresses come as text, as uWS's
 * `getRemoteAddressAsText()` gives them: dotted IPv4, long-form IPv6 (`0000:...:0001`), or any RFC 4291
 * form (parsed by src/security/ip-text.ts); an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
 * `0000:...:ffff:7f00:0001`) counts as its IPv4 address. Text that is no address is counted as itself
 * (its first 64 characters).
 *
 * Memory is bounded: an address with open connections keeps its entry (those are bounded by the
 * connection limit); one with none keeps it only for its new-connection bucket, and at most
 * `maxAddresses` such entries are kept: full buckets are dropped first (nothing lost), then the oldest,
 * down to seven eighths (counted in `evicted`), so a full table costs one scan per eighth of its size in
 * new addresses. A principal's entry lives while it has connections open.
 *
 * Every successful `open` must be followed by exactly one `close` with the same address and principal.
 * A close with nothing open to match is counted (`unmatchedCloses`) and changes nothing: counts never go
 * below zero. With no limit configured nothing is kept and nothing is parsed.
 */
import { TokenBucket } from './token-bucket';
import { isPlainObject, shown, type LimitsProblem } from './tenant-limits';
import { isMapped, newIpScratch, parseIp, QuadParts } from './ip-text';

export interface AddressLimitsSpec {
  /** Connections open at once from one address group; 0 or absent: no limit. */
  maxConnectionsPerAddress?: number;
  /** Connections open at once with one principal; 0 or absent: no limit. */
  maxConnectionsPerPrincipal?: number;
  /** New connections a second from one address group; 0 or absent: no limit. */
  newConnectionsPerSecondPerAddress?: number;
  /** New connections one address group may open at once (default: a second's worth, at least 1). */
  newConnectionsBurst?: number;
  /** Bits of an IPv4 address that make its group (default 32). */
  ipv4PrefixLength?: number;
  /** Bits of an IPv6 address that make its group (default 64). */
  ipv6PrefixLength?: number;
  /** Address entries without an open connection kept at most (default 65536). */
  maxAddresses?: number;
}

/** Why a connection was refused, the `kind` label of the refusal counters. */
export const enum ConnectionRefusal {
  AddressConnections,
  PrincipalConnections,
  NewConnectionRate,
}
export const CONNECTION_REFUSAL_NAMES = [
  'address_connections',
  'principal_connections',
  'new_connection_rate',
] as const;

/** What `open` refused with. The object is reused: read it before the next `open`. */
export interface Refusal {
  readonly kind: ConnectionRefusal;
  /** Ms after which trying again may pass (at least 1). */
  readonly retryAfterMs: number;
}

/** The hint when a connection count is full: no one knows when a connection will close. */
export const COUNT_RETRY_MS = 1000;
export const DEFAULT_IPV4_PREFIX = 32;
export const DEFAULT_IPV6_PREFIX = 64;
const DEFAULT_MAX_ADDRESSES = 65536;
const MAX_RAW_KEY = 64;

/**
 * Address text to its group: an IPv4 group as a number (the masked address, unsigned), an IPv6 one as a
 * string (`6:` and the masked groups in hex), text that is no address as `?` and itself.
 */
export class AddressGrouper {
  private readonly v4Mask: number;
  /** The mask of each 16-bit group. */
  private readonly v6Masks = new Uint16Array(8);
  /** Groups that can be non-zero after masking. */
  private readonly v6Groups: number;
  /** Parse scratch. */
  private readonly sc = newIpScratch();

  constructor(
    readonly ipv4PrefixLength = DEFAULT_IPV4_PREFIX,
    readonly ipv6PrefixLength = DEFAULT_IPV6_PREFIX,
  ) {
    if (!Number.isInteger(ipv4PrefixLength) || ipv4PrefixLength < 0 || ipv4PrefixLength > 32)
      throw new RangeError(`ipv4PrefixLength must be an integer from 0 to 32 (got ${ipv4PrefixLength})`);
    if (!Number.isInteger(ipv6PrefixLength) || ipv6PrefixLength < 0 || ipv6PrefixLength > 128)
      throw new RangeError(`ipv6PrefixLength must be an integer from 0 to 128 (got ${ipv6PrefixLength})`);
    this.v4Mask = ipv4PrefixLength === 0 ? 0 : (0xffffffff << (32 - ipv4PrefixLength)) >>> 0;
    for (let i = 0; i < 8; i++) {
      const bits = Math.min(16, Math.max(0, ipv6PrefixLength - 16 * i));
      this.v6Masks[i] = bits === 0 ? 0 : (0xffff << (16 - bits)) & 0xffff;
    }
    this.v6Groups = Math.ceil(ipv6PrefixLength / 16);
  }

  group(address: string): number | string {
    let start = 0;
    let end = address.length;
    const pct = address.indexOf('%'); // a zone (fe80::1%eth0)
    if (pct >= 0) end = pct;
    if (end - start >= 2 && address.charCodeAt(0) === 0x5b /* [ */) {
      start = 1;
      if (address.charCodeAt(end - 1) === 0x5d /* ] */) end--;
    }
    // Leading zeros in a dotted quad are read as decimal: uWS writes none, and only grouping is at stake.
    const sc = this.sc;
    if (parseIp(address, start, end, sc, QuadParts.LeadingZeros) === 0) return raw(address);
    if (isMapped(sc.words)) return (sc.words[3] & this.v4Mask) >>> 0;
    const g = sc.groups;
    let key = '6:';
    for (let i = 0; i < this.v6Groups; i++) key += (i === 0 ? '' : ':') + (g[i] & this.v6Masks[i]).toString(16);
    return key;
  }
}

function raw(address: string): string {
  return '?' + (address.length > MAX_RAW_KEY ? address.slice(0, MAX_RAW_KEY) : address);
}

class AddressEntry {
  conns = 0;
  constructor(readonly bucket: TokenBucket | null) {}
}

class MutableRefusal implements Refusal {
  kind = ConnectionRefusal.AddressConnections;
  retryAfterMs = 0;
}

export class AddressLimits {
  /** Connections admitted, and closed (matched). */
  opened = 0;
  closed = 0;
  /** Connections open now (as opens and matched closes count them). */
  connections = 0;
  refusedAddress = 0;
  refusedPrincipal = 0;
  refusedRate = 0;
  /** Closes with nothing open to match them (a double close): ignored. */
  unmatchedCloses = 0;
  /** Address entries dropped with a full bucket (nothing lost), and evicted while not full. */
  swept = 0;
  evicted = 0;

  readonly grouper: AddressGrouper;
  private readonly maxPerAddress: number;
  private readonly maxPerPrincipal: number;
  private readonly rate: number;
  private readonly burst: number;
  private readonly maxAddresses: number;
  /** Address entries are kept at all (some per-address limit is set). */
  private readonly perAddress: boolean;
  private readonly addresses = new Map<number | string, AddressEntry>();
  /** Address entries with a connection open. */
  private busy = 0;
  private readonly principals = new Map<string, number>();
  private readonly refusal = new MutableRefusal();

  constructor(spec: AddressLimitsSpec) {
    this.maxPerAddress = spec.maxConnectionsPerAddress ?? 0;
    this.maxPerPrincipal = spec.maxConnectionsPerPrincipal ?? 0;
    this.rate = spec.newConnectionsPerSecondPerAddress ?? 0;
    this.burst = spec.newConnectionsBurst ?? Math.max(1, this.rate);
    this.maxAddresses = Math.max(8, spec.maxAddresses ?? DEFAULT_MAX_ADDRESSES);
    this.perAddress = this.maxPerAddress > 0 || this.rate > 0;
    this.grouper = new AddressGrouper(spec.ipv4PrefixLength, spec.ipv6PrefixLength);
  }

  /** Some connection limit is configured (else there is nothing to count). */
  get limited(): boolean {
    return this.perAddress || this.maxPerPrincipal > 0;
  }

  /** Address entries held (with and without open connections). */
  get addressEntries(): number {
    return this.addresses.size;
  }

  /** Principals with a connection open. */
  get principalEntries(): number {
    return this.principals.size;
  }

  /** Connections open from `address`'s group (0 when per-address counts are not kept). */
  connectionsFrom(address: string): number {
    return this.addresses.get(this.grouper.group(address))?.conns ?? 0;
  }

  /** Connections open with `principalId`. */
  connectionsOf(principalId: string): number {
    return this.principals.get(principalId) ?? 0;
  }

  /**
   * A new connection from `address` (uWS's text form), authenticated as `principalId` (null: none yet).
   * Null: admitted and counted (close it later with `close`). Else why not, and when to try again: the
   * returned object is reused by the next call. A refused connection takes nothing.
   */
  /**
   * A connection attempt from `address`, before its credential is checked: takes one from the address's
   * new-connections bucket, so attempts with bad credentials are held to the rate too. Null: go on (then
   * `open(..., true)`, which does not take from the bucket again).
   */
  attempt(address: string, nowMs: number): Refusal | null {
    if (this.rate === 0) return null;
    const key = this.grouper.group(address);
    const e = this.addresses.get(key) ?? this.create(key, nowMs);
    const w = e.bucket!.retryAfterMs(1, nowMs);
    if (w > 0) {
      this.refusedRate++;
      return this.refuse(ConnectionRefusal.NewConnectionRate, w);
    }
    e.bucket!.charge(1, nowMs);
    return null;
  }

  open(address: string, principalId: string | null, nowMs: number, attempted = false): Refusal | null {
    let e: AddressEntry | null = null;
    if (this.perAddress) {
      const key = this.grouper.group(address);
      e = this.addresses.get(key) ?? this.create(key, nowMs);
      if (this.maxPerAddress > 0 && e.conns >= this.maxPerAddress) {
        this.refusedAddress++;
        return this.refuse(ConnectionRefusal.AddressConnections, COUNT_RETRY_MS);
      }
    }
    let pc = 0;
    const perPrincipal = principalId !== null && this.maxPerPrincipal > 0;
    if (perPrincipal) {
      pc = this.principals.get(principalId) ?? 0;
      if (pc >= this.maxPerPrincipal) {
        this.refusedPrincipal++;
        return this.refuse(ConnectionRefusal.PrincipalConnections, COUNT_RETRY_MS);
      }
    }
    if (e !== null && e.bucket !== null && !attempted) {
      const w = e.bucket.retryAfterMs(1, nowMs);
      if (w > 0) {
        this.refusedRate++;
        return this.refuse(ConnectionRefusal.NewConnectionRate, w);
      }
      e.bucket.charge(1, nowMs);
    }
    if (e !== null && e.conns++ === 0) this.busy++;
    if (perPrincipal) this.principals.set(principalId, pc + 1);
    this.opened++;
    this.connections++;
    return null;
  }

  /** A connection admitted by `open(address, principalId)` closed. */
  close(address: string, principalId: string | null): void {
    let tracked = false;
    let hit = false;
    let miss = false;
    if (this.perAddress) {
      tracked = true;
      const key = this.grouper.group(address);
      const e = this.addresses.get(key);
      if (e === undefined || e.conns === 0) miss = true;
      else {
        hit = true;
        if (--e.conns === 0) {
          this.busy--;
          if (e.bucket === null) this.addresses.delete(key);
        }
      }
    }
    if (principalId !== null && this.maxPerPrincipal > 0) {
      tracked = true;
      const pc = this.principals.get(principalId);
      if (pc === undefined) miss = true;
      else {
        hit = true;
        if (pc <= 1) this.principals.delete(principalId);
        else this.principals.set(principalId, pc - 1);
      }
    }
    if ((hit || !tracked) && this.connections > 0) {
      this.closed++;
      this.connections--;
    } else miss = true;
    if (miss) this.unmatchedCloses++;
  }

  /** Drops address entries with no connection open and a full bucket; returns how many. */
  sweep(nowMs: number): number {
    let n = 0;
    for (const [key, e] of this.addresses) {
      if (e.conns === 0 && (e.bucket === null || e.bucket.isFull(nowMs))) {
        this.addresses.delete(key);
        n++;
      }
    }
    this.swept += n;
    return n;
  }

  stats(): {
    connections: number;
    opened: number;
    closed: number;
    refusedAddress: number;
    refusedPrincipal: number;
    refusedRate: number;
    unmatchedCloses: number;
    addresses: number;
    principals: number;
    swept: number;
    evicted: number;
  } {
    return {
      connections: this.connections,
      opened: this.opened,
      closed: this.closed,
      refusedAddress: this.refusedAddress,
      refusedPrincipal: this.refusedPrincipal,
      refusedRate: this.refusedRate,
      unmatchedCloses: this.unmatchedCloses,
      addresses: this.addresses.size,
      principals: this.principals.size,
      swept: this.swept,
      evicted: this.evicted,
    };
  }

  private create(key: number | string, nowMs: number): AddressEntry {
    if (this.addresses.size - this.busy >= this.maxAddresses) this.makeRoom(nowMs);
    const e = new AddressEntry(this.rate > 0 ? new TokenBucket(this.rate, this.burst, nowMs) : null);
    this.addresses.set(key, e);
    return e;
  }

  /** Too many idle entries: sweep, then evict the oldest idle ones down to 7/8 of `maxAddresses`. */
  private makeRoom(nowMs: number): void {
    this.sweep(nowMs);
    const low = this.maxAddresses - Math.max(1, this.maxAddresses >>> 3);
    if (this.addresses.size - this.busy <= low) return;
    for (const [key, e] of this.addresses) {
      if (e.conns !== 0) continue;
      this.addresses.delete(key);
      this.evicted++;
      if (this.addresses.size - this.busy <= low) break;
    }
  }

  private refuse(kind: ConnectionRefusal, ms: number): Refusal {
    const r = this.refusal;
    r.kind = kind;
    r.retryAfterMs = ms;
    return r;
  }
}

/** Checks connection limits read from configuration (`raw`, at `path`), naming every bad field at once. */
export function validateAddressLimitsSpec(
  raw: unknown,
  path: string,
): { spec: AddressLimitsSpec; problems: LimitsProblem[] } {
  const spec: AddressLimitsSpec = {};
  const problems: LimitsProblem[] = [];
  if (raw === undefined) return { spec, problems };
  const at = (k: string): string => (path === '' ? k : `${path}.${k}`);
  if (!isPlainObject(raw)) {
    problems.push({ path, message: `${path || 'limits'} must be an object of limits (got ${shown(raw)})` });
    return { spec, problems };
  }
  const fields: Record<keyof AddressLimitsSpec, { min: number; max: number; int: boolean; what: string }> = {
    maxConnectionsPerAddress: { min: 0, max: 1e7, int: true, what: 'an integer from 0 (no limit) to 10000000' },
    maxConnectionsPerPrincipal: { min: 0, max: 1e7, int: true, what: 'an integer from 0 (no limit) to 10000000' },
    newConnectionsPerSecondPerAddress: { min: 0, max: 1e6, int: false, what: 'a number from 0 (no limit) to 1000000' },
    newConnectionsBurst: { min: 1, max: 1e6, int: false, what: 'a number from 1 to 1000000' },
    ipv4PrefixLength: { min: 0, max: 32, int: true, what: 'an integer from 0 to 32' },
    ipv6PrefixLength: { min: 0, max: 128, int: true, what: 'an integer from 0 to 128' },
    maxAddresses: { min: 8, max: 1e7, int: true, what: 'an integer from 8 to 10000000' },
  };
  for (const k of Object.keys(raw)) {
    if (!Object.hasOwn(fields, k)) problems.push({ path: at(k), message: `unknown setting "${at(k)}"` });
  }
  for (const k of Object.keys(fields) as (keyof AddressLimitsSpec)[]) {
    const v = raw[k];
    if (v === undefined) continue;
    const f = fields[k];
    if (typeof v === 'number' && v >= f.min && v <= f.max && (!f.int || Number.isInteger(v))) spec[k] = v;
    else problems.push({ path: at(k), message: `${at(k)} must be ${f.what} (got ${shown(v)})` });
  }
  return { spec, problems };
}
