/**
 * A cache of recent key placements in front of a ketama ring. With `hash: md5` the ring's lookup is
 * mostly the md5 of the key (several hundred ns); hot keys repeat, so remembering where the last few
 * thousand keys landed skips most of that hashing.
 *
 * Direct-mapped: a key's slot is a cheap hash of its bytes, and a slot holds one key (its bytes, its
 * length, the slot hash) and the ring's answer for it, together in one slab. A hit compares the whole key byte by byte, so two
 * keys sharing a slot never share an answer: a collision only costs a miss. Keys longer than
 * `maxKeyBytes` are not stored and go to the ring every time.
 *
 * The answers are the ring's, so they are only good for that ring: `use(ring)` swaps the ring and
 * forgets every answer (the backend calls it whenever its live ring changes, on ejection and return).
 *
 * When keys do not repeat enough for the cache to pay, it steps aside for a while (TRIAL_LOOKUPS).
 *
 * Hot path: `lookup` allocates nothing, reads no clock and makes no closure. All state is per instance.
 */

/** What the cache sits in front of: KetamaRing.lookup's shape. */
export interface PlacementSource {
  lookup(buf: Uint8Array, off: number, len: number): number;
}

/**
 * Slots by default: 32,768 slots of 64 bytes is a 2 MiB slab per pool. Keys drawn at random from a
 * hot set of 10,000 hit about 86% of the time (16,384 slots: about 75%; the bench measures it).
 */
export const DEFAULT_PLACEMENT_SLOTS = 32768;
/**
 * Longest key stored: with the 16-byte slot header that makes a slot one 64-byte cache line. memcached
 * keys go to 250 bytes, but hot keys are mostly short; longer ones go to the ring every time.
 */
export const DEFAULT_MAX_CACHED_KEY_BYTES = 48;
/** The key length of a slot holding nothing (an empty key is a real key of length 0). */
const EMPTY = -1;

/**
 * When keys hardly repeat, every lookup is a miss that costs its slot hash, a key copy and a write to a
 * random line of the slab (measured on 1M distinct keys: +80 ns per lookup with 1,024 slots, +200 ns
 * with 32,768, where the slab is out of the CPU's caches; the md5 ring lookup is ~250-300 ns). So the
 * cache judges itself: over each TRIAL_LOOKUPS lookups, if under 1 in HIT_FLOOR_DIVISOR hit, the next
 * BYPASS_LOOKUPS go straight to the ring (a counter and a branch each), then it tries again. A pure miss
 * stream then pays the miss cost on about 1 lookup in 17.
 */
export const TRIAL_LOOKUPS = 4096;
export const BYPASS_LOOKUPS = 65536;
/** Below 1 hit in 3 the misses cost about as much as the hits save (see above). */
const HIT_FLOOR_DIVISOR = 3;

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;

/**
 * The slot hash: FNV-1a 32 over four bytes at a time, then murmur3's finaliser so that keys differing
 * only in their last bytes (`k100:1234`, `k100:1235`) spread over every slot bit. Every byte counts:
 * hashing only a prefix and suffix would put `user:<id>:profile`-style keys into one slot.
 */
export function slotHash(buf: Uint8Array, off: number, len: number): number {
  let h = FNV_OFFSET ^ len;
  const end = off + len;
  const words = end - (len & 3);
  let p = off;
  for (; p < words; p += 4) {
    h = Math.imul(h ^ (buf[p] | (buf[p + 1] << 8) | (buf[p + 2] << 16) | (buf[p + 3] << 24)), FNV_PRIME);
  }
  for (; p < end; p++) h = Math.imul(h ^ buf[p], FNV_PRIME);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

/**
 * A slot's layout in the slab, in bytes: a header of three int32 (key length, slot hash, ring answer),
 * padding to HEADER_BYTES, then the key bytes. At the default key limit a slot is 64 bytes, one cache
 * line: a hit reads one line instead of one in each of four separate arrays (measured on 10,000 hot
 * keys: 10-30% less per lookup than four arrays).
 */
const HEADER_BYTES = 16;
const LEN = 0;
const TAG = 1;
const VALUE = 2;

export class PlacementCache {
  /** Every slot, `stride` bytes each: header, then key bytes (see HEADER_BYTES). */
  private readonly slab: Uint8Array;
  /** The same memory as int32, for the headers: slot i's header starts at `i * stride / 4`. */
  private readonly heads: Int32Array;
  private readonly stride: number;
  private readonly mask: number;
  private ring: PlacementSource;
  /** Lookups answered from the cache / from the ring (keys too long to store count as misses). */
  hits = 0;
  misses = 0;
  /** Lookups left in the current trial, and `hits` when it began. */
  private trialLeft = TRIAL_LOOKUPS;
  private trialHits = 0;
  /** Lookups left to send straight to the ring after a trial with too few hits. */
  private bypassLeft = 0;

  constructor(
    ring: PlacementSource,
    slots: number = DEFAULT_PLACEMENT_SLOTS,
    readonly maxKeyBytes: number = DEFAULT_MAX_CACHED_KEY_BYTES,
  ) {
    if (!Number.isInteger(slots) || slots < 1 || (slots & (slots - 1)) !== 0 || slots > 1 << 24) {
      throw new RangeError(`placement cache slots must be a power of two from 1 to 2^24, not ${slots}`);
    }
    if (!Number.isInteger(maxKeyBytes) || maxKeyBytes < 0 || maxKeyBytes > 1024) {
      throw new RangeError(`placement cache maxKeyBytes must be an integer from 0 to 1024, not ${maxKeyBytes}`);
    }
    this.ring = ring;
    this.mask = slots - 1;
    // Whole headers: the stride stays a multiple of HEADER_BYTES so every header is int32-aligned.
    this.stride = HEADER_BYTES + Math.ceil(maxKeyBytes / HEADER_BYTES) * HEADER_BYTES;
    this.heads = new Int32Array((slots * this.stride) / 4);
    this.slab = new Uint8Array(this.heads.buffer);
    this.clear();
  }

  /** How many keys the cache can hold. */
  get slots(): number {
    return this.mask + 1;
  }

  /** The ring's answer for the key bytes `buf[off, off+len)`, from the cache when it was seen. */
  lookup(buf: Uint8Array, off: number, len: number): number {
    if (this.bypassLeft > 0) {
      this.bypassLeft--;
      this.misses++;
      return this.ring.lookup(buf, off, len);
    }
    if (--this.trialLeft === 0) this.judge();
    if (len > this.maxKeyBytes) {
      this.misses++;
      return this.ring.lookup(buf, off, len);
    }
    const tag = slotHash(buf, off, len);
    const base = (tag & this.mask) * this.stride;
    const h = base >> 2;
    const heads = this.heads;
    const slab = this.slab;
    const key = base + HEADER_BYTES;
    if (heads[h + LEN] === len && heads[h + TAG] === tag) {
      let i = 0;
      while (i < len && slab[key + i] === buf[off + i]) i++;
      if (i === len) {
        this.hits++;
        return heads[h + VALUE];
      }
    }
    this.misses++;
    const v = this.ring.lookup(buf, off, len);
    // A byte loop, not slab.set(buf.subarray(...)): the subarray would allocate a view per miss.
    for (let i = 0; i < len; i++) slab[key + i] = buf[off + i];
    heads[h + LEN] = len;
    heads[h + TAG] = tag;
    heads[h + VALUE] = v;
    return v;
  }

  /** Places keys with `ring` from now on, forgetting every answer the previous ring gave. */
  use(ring: PlacementSource): void {
    this.ring = ring;
    this.clear();
    this.trialLeft = TRIAL_LOOKUPS;
    this.trialHits = this.hits;
    this.bypassLeft = 0;
  }

  /** True while lookups go straight to the ring because the last trial hit too rarely. */
  get bypassing(): boolean {
    return this.bypassLeft > 0;
  }

  /** End of a trial: keep caching, or bypass for a while if it did not pay. */
  private judge(): void {
    if ((this.hits - this.trialHits) * HIT_FLOOR_DIVISOR < TRIAL_LOOKUPS) this.bypassLeft = BYPASS_LOOKUPS;
    this.trialLeft = TRIAL_LOOKUPS;
    this.trialHits = this.hits;
  }

  private clear(): void {
    const heads = this.heads;
    const step = this.stride / 4;
    for (let h = 0; h < heads.length; h += step) heads[h + LEN] = EMPTY;
  }
}
