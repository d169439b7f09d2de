/**
 * Requests and items by front, op and outcome, counted in one Float64Array so the hot path pays an
 * indexed increment and nothing else (no label lookup, no allocation, no clock). ops/metrics.ts reads it
 * at scrape time as `kvgate_requests_total` and `kvgate_items_total`.
 *
 * A Request is told where its slice starts (`Request.countInto`); each item outcome bumps one slot, and the
 * request itself is counted once when it finishes: a single-key request with its item's outcome, a bulk
 * request as `ok` unless it failed as a whole (then that code). A request refused before a Request object
 * exists (a bad frame, draining, BUSY) is counted by its front with `request()`.
 */
import { ErrorTable, type ErrorCode } from './errors';

/** Fronts, the `front` label. */
export const enum Front {
  Ws,
  Http,
}
export const FRONT_NAMES = ['ws', 'http'] as const;

/** Ops, the `op` label; the numbers are decode/request-fields.ts's `Op` (a test holds them together). */
export const enum TallyOp {
  Unknown,
  Get,
  Set,
  Del,
  MGet,
  MSet,
  MDel,
  Auth,
}
export const OP_NAMES = ['unknown', 'get', 'set', 'del', 'mget', 'mset', 'mdel', 'auth'] as const;

/** Outcomes, the `outcome` label: a hit, a miss, stored/deleted, dropped (a write whose client left before it was sent), then every error code. */
export const enum Outcome {
  Hit,
  Miss,
  Ok,
  Dropped,
}
const CODES = Object.keys(ErrorTable) as ErrorCode[];
export const OUTCOME_NAMES: readonly string[] = ['hit', 'miss', 'ok', 'dropped', ...CODES];
/** The outcome slot of each error code. */
export const CODE_OUTCOME = Object.fromEntries(CODES.map((c, k) => [c, 4 + k])) as Record<ErrorCode, number>;

const OUTCOMES = OUTCOME_NAMES.length;
const SLICE = OP_NAMES.length * OUTCOMES;
/** Where the request counts start, after the item counts. */
export const REQUESTS = FRONT_NAMES.length * SLICE;

export class Tally {
  /** [items | requests][front][op][outcome]. */
  readonly counts = new Float64Array(2 * REQUESTS);

  /** The start of the (front, op) slice, what a Request is given. */
  at(front: Front, op: number): number {
    return front * SLICE + (op >= 0 && op < OP_NAMES.length ? op : 0) * OUTCOMES;
  }

  /** A request refused before it had a Request object. */
  request(front: Front, op: number, code: ErrorCode): void {
    this.counts[REQUESTS + this.at(front, op) + CODE_OUTCOME[code]]++;
  }

  /** Every non-zero count: what ops/metrics.ts renders. */
  forEach(fn: (requests: boolean, front: string, op: string, outcome: string, n: number) => void): void {
    const c = this.counts;
    for (let k = 0; k < c.length; k++) {
      if (c[k] === 0) continue;
      const r = k >= REQUESTS;
      const j = r ? k - REQUESTS : k;
      const front = Math.floor(j / SLICE);
      const op = Math.floor((j % SLICE) / OUTCOMES);
      fn(r, FRONT_NAMES[front], OP_NAMES[op], OUTCOME_NAMES[j % OUTCOMES], c[k]);
    }
  }
}
