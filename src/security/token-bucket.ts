/**
 * A token bucket: tokens come in at `rate` a second and up to `burst` are kept. The caller passes the time
 * (ms, from a monotonic clock) and reads it once per request or message, never per key: the bucket never
 * reads a clock itself, which is also what lets the tests drive it with a fake one.
 *
 * Three rules beyond the textbook:
 * - Debt. `charge(n)` takes n tokens whatever the level, which may go below zero: what is known only
 *   after the fact (bytes written, an answer's bytes) is paid for then, and nothing passes `take` until the
 *   debt is repaid by the refill. `take(0)` (and `retryAfterMs(0)`) asks just that: is the bucket out of
 *   debt?
 * - More than the burst. A take of n > burst could never find n tokens saved. It passes when the bucket is
 *   full, and leaves it in debt of n - burst: a large request is not starved, and the long-run rate still
 *   holds (over any T ms, at most burst + rate * T / 1000 + (largest n - burst) tokens pass).
 *   `retryAfterMs(n)` for such an n is the time until the bucket is full.
 * - Exact arithmetic. The level is kept in thousandths of a token, so it grows by exactly `rate` per ms:
 *   with a whole-ms clock, a whole rate and whole takes, every step is integer arithmetic below 2^53,
 *   nothing rounds, and there is nothing to drift however long it runs. With fractional clocks or rates a
 *   step rounds by an ulp of the level (which is at most `burst` tokens), never of the clock: the elapsed
 *   time is taken whole at each step (`now - last`), and no step's time is dropped (a refused take
 *   refills too). Comparisons allow a slack of 2^-40 of the capacity so that such rounding cannot make
 *   a take at exactly the retry-after time fail.
 * A clock that goes backwards is ignored (no refill until it passes the last time seen). A count that is
 * not a number above 0 (NaN, negative) counts as 0: a caller's NaN must never poison the level.
 */

/** Thousandths of a token per token: the level grows by `rate` of them per ms. */
const MILLI = 1000;

export class TokenBucket {
  /** Tokens a second. */
  readonly rate: number;
  /** Tokens kept at most. */
  readonly burst: number;
  /** The capacity in thousandths of a token. */
  private readonly cap: number;
  private readonly slack: number;
  /** Thousandths of a token; below zero while in debt. */
  private level: number;
  private last: number;

  /** Starts full at `nowMs`. */
  constructor(rate: number, burst: number, nowMs: number) {
    if (!(rate > 0 && rate < Infinity)) throw new RangeError(`token bucket rate must be > 0 (got ${rate})`);
    if (!(burst > 0 && burst < Infinity)) throw new RangeError(`token bucket burst must be > 0 (got ${burst})`);
    this.rate = rate;
    this.burst = burst;
    this.cap = burst * MILLI;
    this.slack = this.cap * 2 ** -40;
    this.level = this.cap;
    this.last = nowMs;
  }

  /** Takes n tokens if they are there (or, for n > burst, if the bucket is full); false takes nothing. */
  take(n: number, nowMs: number): boolean {
    if (!(n > 0)) n = 0;
    this.refill(nowMs);
    if (this.level + this.slack < this.need(n)) return false;
    this.level -= n * MILLI;
    return true;
  }

  /**
   * Ms from `nowMs` until `take(n)` would pass (0: it would pass now; else at least 1, whole ms). For
   * n > burst, the time until the bucket is full; for n = 0, until it is out of debt.
   */
  retryAfterMs(n: number, nowMs: number): number {
    if (!(n > 0)) n = 0;
    this.refill(nowMs);
    const deficit = this.need(n) - this.level - this.slack;
    if (deficit <= 0) return 0;
    const ms = Math.ceil(deficit / this.rate);
    return ms < 1 ? 1 : ms;
  }

  /** Takes n tokens whatever the level (what was spent already): the bucket may go into debt. */
  charge(n: number, nowMs: number): void {
    this.refill(nowMs);
    if (n > 0) this.level -= n * MILLI;
  }

  /** Tokens there at `nowMs` (negative: the debt). */
  tokens(nowMs: number): number {
    this.refill(nowMs);
    return this.level / MILLI;
  }

  /** Full at `nowMs`: forgetting the bucket loses nothing, a new one starts the same. */
  isFull(nowMs: number): boolean {
    this.refill(nowMs);
    return this.level >= this.cap;
  }

  private need(n: number): number {
    return n < this.burst ? n * MILLI : this.cap;
  }

  private refill(nowMs: number): void {
    const dt = nowMs - this.last;
    if (!(dt > 0)) return; // same time, a clock that went back, or NaN
    this.last = nowMs;
    if (this.level >= this.cap) return;
    const next = this.level + dt * this.rate;
    this.level = next < this.cap ? next : this.cap;
  }
}
