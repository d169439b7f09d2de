/** What every driver of a run shares. */
import type { Limits } from './gen-ws';
import type { Report } from './report';

export interface FuzzCtx {
  host: string;
  port: number;
  seed: number;
  lim: Limits;
  report: Report;
  /** An answer later than this (ms) is a stall. */
  answerMs: number;
  /** Input number `n` of `stream`, or null once the run is over (time or input budget spent). */
  next(stream: string): number | null;
  /** The run is over. */
  over(): boolean;
  /** The gateway process is gone: drivers stop and report nothing more of their own. */
  dead(): boolean;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

export const KINDS = ['VALUE', 'VALUE_PART', 'MISS', 'OK', 'ERROR', 'END'] as const;
