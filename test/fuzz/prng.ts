/**
 * A small seeded PRNG (sfc32, seeded through splitmix32) so every fuzz input is a pure function of
 * (seed, stream name, input number): an anomaly found in a long concurrent run replays on its own.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let k = 0; k < 12; k++) this.u32();
  }

  /** The generator for input `n` of stream `name` under `seed`. */
  static for(seed: number, name: string, n: number): Rng {
    let h = 0x811c9dc5 ^ (seed >>> 0);
    for (let k = 0; k < name.length; k++) h = Math.imul(h ^ name.charCodeAt(k), 0x01000193) >>> 0;
    h = Math.imul(h ^ (n >>> 0), 0x01000193) >>> 0;
    h = Math.imul(h ^ Math.floor(n / 2 ** 32), 0x01000193) >>> 0;
    return new Rng(h);
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [lo, hi] (both inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.float() * xs.length)];
  }

  /** Picks by weight: `[[w, x], ...]`. */
  weighted<T>(xs: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of xs) total += w;
    let r = this.float() * total;
    for (const [w, x] of xs) {
      r -= w;
      if (r < 0) return x;
    }
    return xs[xs.length - 1][1];
  }

  /** Sizes skewed small: mostly short, sometimes up to `max`. */
  size(max: number): number {
    const r = this.float();
    if (r < 0.6) return this.int(0, Math.min(max, 16));
    if (r < 0.9) return this.int(0, Math.min(max, 512));
    return this.int(0, max);
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let k = 0;
    for (; k + 4 <= n; k += 4) b.writeUInt32LE(this.u32(), k);
    for (; k < n; k++) b[k] = this.u32() & 0xff;
    return b;
  }

  /** Printable ASCII without space. */
  word(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789:_-.'): string {
    let s = '';
    for (let k = 0; k < n; k++) s += alphabet[this.int(0, alphabet.length - 1)];
    return s;
  }
}
