/**
 * The messages between the supervisor and its workers over node:cluster's IPC channel (JSON). Every one
 * carries `kvgate` (its kind), so that anything else on the channel (node:cluster's own) is ignored.
 *
 * supervisor -> worker: `ask` (an admin handler: metrics as prom-client JSON, stats, ready, reload; the
 * console's data, or one console key route's answer to `call`; the answer carries the same `id`), `drain`
 * (drain, then exit 0).
 * worker -> supervisor: `listening` (once, when its gateway listens), `answer`.
 */
import type { AdminAnswer, AdminRoute } from '../ops/admin';

export type Question = 'metrics' | 'stats' | 'ready' | 'reload' | 'console-data' | 'console-call';

export interface AskMessage {
  kvgate: 'ask';
  id: number;
  what: Question;
  /** With `console-call`: the request to one console key route (the channel is JSON: the body as base64). */
  call?: CallMessage;
}

export interface CallMessage {
  method: AdminRoute['method'];
  path: string;
  query: string;
  body64: string;
}

/** What `console-call` answers: the route's AdminReply, its body as base64 (it may be bytes). */
export interface CallReply {
  status: number;
  contentType: string;
  body64: string;
  headers: [string, string][];
}

export interface DrainMessage {
  kvgate: 'drain';
}

export interface ListeningMessage {
  kvgate: 'listening';
  pid: number;
  port: number;
}

export interface AnswerMessage {
  kvgate: 'answer';
  id: number;
  /** The handler's result (metrics: prom-client's `getMetricsAsJSON()`), absent when `error` is set. */
  value?: unknown;
  error?: string;
}

export type ToWorker = AskMessage | DrainMessage;
export type FromWorker = ListeningMessage | AnswerMessage;

/** What `ready` and `reload` answer, as the admin handlers give it. */
export type WorkerAnswer = AdminAnswer;

/** The environment a worker is started with: its name, and the configuration the supervisor resolved. */
export const ENV_NAME = 'KVGATE_WORKER_NAME';
export const ENV_CONFIG = 'KVGATE_WORKER_CONFIG';
/** The supervisor's command line (JSON), which a worker's reload reads the --config file with. */
export const ENV_ARGV = 'KVGATE_ARGV';

export function isFromWorker(m: unknown): m is FromWorker {
  return (
    typeof m === 'object' &&
    m !== null &&
    ((m as FromWorker).kvgate === 'listening' || (m as FromWorker).kvgate === 'answer')
  );
}

export function isToWorker(m: unknown): m is ToWorker {
  return (
    typeof m === 'object' && m !== null && ((m as ToWorker).kvgate === 'ask' || (m as ToWorker).kvgate === 'drain')
  );
}
