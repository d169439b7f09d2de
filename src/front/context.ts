/**
 * Everything one gateway shares between its fronts, built once in `startGateway`: no module holds state
 * of its own, so two gateways can run in one process (the tests do).
 */
import type { Config } from '../config/schema';
import type { Events } from '../core/events';
import type { ConnectionGate } from '../flow/connection-gate';
import type { MemoryBudget } from '../flow/budget';
import type { GetWindow } from '../flow/get-window';
import type { Router } from '../core/router';
import type { BufferPool } from '../stream/buffer-pool';
import type { Tally } from '../core/tally';
import type { BrowserPolicy } from '../security/browser-policy';
import type { Access } from '../security/access';

export interface GatewayContext {
  /** The configuration running now: a reload replaces it, and the fronts read it per request. */
  config: Config;
  /** Operational events: diagnostics_channel and the log (core/events.ts). */
  readonly events: Events;
  readonly pool: BufferPool;
  readonly budget: MemoryBudget;
  readonly router: Router;
  readonly gate: ConnectionGate;
  /** Requests and items by front, op and outcome (core/tally.ts), read by ops/metrics.ts. */
  readonly tally: Tally;
  /** Which pages and Host names may use the public routes (front/browser-gate.ts); a reload replaces it. */
  browser: BrowserPolicy;
  /** Credentials, key namespaces and rules, rate and connection limits (security/access.ts). */
  readonly access: Access;
  /** HTTP bulk requests in progress (the drain fails what they have parked when time is up). */
  readonly bulk: Set<{
    readonly window: GetWindow | null;
    readonly out: { closeAfter: boolean; stalled(looks: number): boolean; kill(): void };
  }>;
  /** Set by the drain: new requests get SHUTTING_DOWN. */
  draining: boolean;
}
