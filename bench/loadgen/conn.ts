/** What a connection driver needs from the worker's engine, and what the engine needs from a driver. */
import type { KeySpace } from '../lib/keys';

export const enum ReqOp {
  Get = 0,
  Set = 1,
  Mget = 2,
  Mset = 3,
}

export interface Sink {
  readonly ks: KeySpace;
  /** Requests per socket write (WorkerConfig.framesPerWrite): 0 stages a whole turn's in one write. */
  readonly framesPerWrite: number;
  now(): number;
  /** A request finished: `ok` items succeeded (verified value, or stored). */
  done(conn: Conn, startNs: number, ok: number, now: number): void;
  error(code: string, n?: number): void;
  miss(n: number): void;
  bad(n: number): void;
  /** The connection has bytes staged: flush them at the end of this turn. */
  dirty(conn: Conn): void;
  /** The connection died. */
  lost(conn: Conn, why: string): void;
}

export interface Conn {
  inflight: number;
  /** Ceiling mode: which server this connection talks to; otherwise 0. */
  readonly server: number;
  connect(): Promise<void>;
  send(op: ReqOp, idx: number, idxs: number[] | null, startNs: number): void;
  flush(): void;
  close(): void;
}
