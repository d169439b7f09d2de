/**
 * A cache of recent key placements in front of a ketama ring. With `hash: md5` the ring's lookup is
 * mostly the md5 of the key (several hundred ns); hot keys repeat, so remembering where the last few
 * thousand keys landed skips most of that hashing.
 *
 * Direct-mapped: a key's slot is a cheap hash of its bytes, and a slot holds one key (its bytes, its
 * length, the slot hash) and the ring's answer for it. A hit compares the whole key byte by byte, so two
 * keys sharing a slot never share an answer: a collision only costs a miss. Keys longer than
 * `maxKeyBytes` are not stored and go to the ring every time.
 *
 * The answers are the ring's, so they are only good for that ring: `use(ring)` swaps the ring and
 * forgets every answer (the backend calls it whenever its live ring changes, on ejection and return).
 *
 * Hot path: `lookup` allocates nothing, reads no clock and makes no closure. All state is per instance.
 */

/** What the cache sits in front of: KetamaRing.lookup's shape. */
export interface PlacementSource {
  lookup(buf: Uint8Array, off: number, len: number): number;
}

/**
 * Slots by default: 32,768 keys at 64 bytes each is a 2 MiB slab per pool. Keys drawn at random from a
 * hot set of 10,000 hit about 86% of the time (16,384 slots: about 75%; the bench measures it).
 */
export const DEFAULT_PLACEMENT_SLOTS = 32768;
/** Longest key stored; memcached keys go to 250 bytes, but hot keys are short and the slab stays small. */
export const DEFAULT_MAX_CACHED_KEY_BYTES = 64;
/** `lens[slot]` of a slot holding nothing (an empty key is a real key of length 0). */
const EMPTY = -1;

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

export class PlacementCache {
  /** Slot i's key bytes at `[i * maxKeyBytes, i * maxKeyBytes + lens[i])`. */
  private readonly keys: Uint8Array;
  /** Stored key length per slot, EMPTY for none. */
  private readonly lens: Int32Array;
  /** The slot hash of the stored key: most misses on an occupied slot stop here, before the bytes. */
  private readonly tags: Int32Array;
  /** The ring's answer for the stored key. */
  private readonly values: Int32Array;
  private readonly mask: number;
  private ring: PlacementSource;
  /** Lookups answered from the cache / from the ring (keys too long to store count as misses). */
  hits = 0;
  misses = 0;

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
    this.keys = new Uint8Array(slots * maxKeyBytes);
    this.lens = new Int32Array(slots).fill(EMPTY);
    this.tags = new Int32Array(slots);
    this.values = new Int32Array(slots);
  }

  /** How many keys the cache can hold. */
  get slots(): number {
    return this.mask + 1;
  }

  /** The ring's answer for the key bytes `buf[off, off+len)`, from the cache when it was seen. */
  lookup(buf: Uint8Array, off: number, len: number): number {
    if (len > this.maxKeyBytes) {
      this.misses++;
      return this.ring.lookup(buf, off, len);
    }
    const tag = slotHash(buf, off, len);
    const slot = tag & this.mask;
    const keys = this.keys;
    const base = slot * this.maxKeyBytes;
    if (this.lens[slot] === len && this.tags[slot] === tag) {
      let i = 0;
      while (i < len && keys[base + i] === buf[off + i]) i++;
      if (i === len) {
        this.hits++;
        return this.values[slot];
      }
    }
    this.misses++;
    const v = this.ring.lookup(buf, off, len);
    // A byte loop, not keys.set(buf.subarray(...)): the subarray would allocate a view per miss.
    for (let i = 0; i < len; i++) keys[base + i] = buf[off + i];
    this.lens[slot] = len;
    this.tags[slot] = tag;
    this.values[slot] = v;
    return v;
  }

  /** Places keys with `ring` from now on, forgetting every answer the previous ring gave. */
  use(ring: PlacementSource): void {
    this.ring = ring;
    this.lens.fill(EMPTY);
  }
}
