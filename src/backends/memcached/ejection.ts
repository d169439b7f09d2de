/**
 * The failure policy of one memcached shard in `eject` mode (twemproxy's auto_eject_hosts, mcrouter's TKO),
 * as a state machine with no timers and no sockets: the backend (index.ts) tells it what happened and asks
 * it when to probe; the clock is injected so a test can run it without real time.
 *
 *   in the ring --failureLimit consecutive failures--> ejected --probe answered--> in the ring
 *        ^  a batch answered: failures = 0                 | probe failed: next probe retryMs later
 *
 * Anti-flap: a shard ejected again less than 2x its current retry timeout after it returned waits twice as
 * long before its next probe (doubling, at most maxRetryTimeoutMs). A shard that stays in the ring for
 * 2x its current retry timeout or longer is stable: its retry timeout is back to retryTimeoutMs.
 */
import type { FailurePolicy } from '../../core/pools';

export type Clock = () => number;

export class Ejection {
  /** Consecutive failures while in the ring (0 again after a batch is answered or the shard is ejected). */
  failures = 0;
  ejected = false;
  /** The retry timeout in force: the wait between an ejection (or a failed probe) and the next probe. */
  retryMs: number;
  /** When (clock ms) the next probe is due; meaningful while ejected. */
  probeAt = 0;
  /** When the shard last came back into the ring (-Infinity: never left it). */
  private returnedAt = -Infinity;
  private ejectedAt = 0;

  constructor(
    private readonly policy: Pick<FailurePolicy, 'failureLimit' | 'retryTimeoutMs' | 'maxRetryTimeoutMs'>,
    private readonly now: Clock = Date.now,
  ) {
    this.retryMs = policy.retryTimeoutMs;
  }

  /** One failure (a failed connect, a lost connection, a timeout, a protocol reset). True: eject it now. */
  failure(): boolean {
    if (this.ejected) return false;
    if (++this.failures < this.policy.failureLimit) return false;
    const t = this.now();
    if (t - this.returnedAt < 2 * this.retryMs) {
      this.retryMs = Math.min(this.retryMs * 2, this.policy.maxRetryTimeoutMs);
    } else {
      this.retryMs = this.policy.retryTimeoutMs;
    }
    this.ejected = true;
    this.ejectedAt = t;
    this.probeAt = t + this.retryMs;
    return true;
  }

  /** A batch was answered. Cheap: runs once per batch; reads the clock only while a doubled timeout is in force. */
  success(): void {
    this.failures = 0;
    if (this.retryMs !== this.policy.retryTimeoutMs && !this.ejected && this.stable()) {
      this.retryMs = this.policy.retryTimeoutMs;
    }
  }

  /** The probe failed: the next one is a full retry timeout later (no doubling: the shard never came back). */
  probeFailed(): void {
    this.probeAt = this.now() + this.retryMs;
  }

  /** The probe answered: the shard is back in the ring. Returns how long it was out (ms). */
  returned(): number {
    const t = this.now();
    this.ejected = false;
    this.failures = 0;
    this.returnedAt = t;
    return t - this.ejectedAt;
  }

  /** In the ring for 2x the current retry timeout or longer. */
  stable(): boolean {
    return !this.ejected && this.now() - this.returnedAt >= 2 * this.retryMs;
  }
}
