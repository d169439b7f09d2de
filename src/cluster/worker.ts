/**
 * A worker process (node:cluster, forked by supervisor.ts): one gateway on the shared public port
 * (SO_REUSEPORT; uWS binds itself, not through cluster's shared handle), no admin listener of its own. It
 * answers the supervisor's questions with its admin handlers, drains on `drain`, SIGTERM or SIGINT, and
 * exits when the supervisor's channel goes away (the supervisor died: nobody would restart or scrape it).
 */
import type { Config } from '../config/schema';
import { ENV_WORKERS, workerShare } from './share';
import type { Gateway } from '../gateway';
import {
  ENV_ARGV,
  ENV_CONFIG,
  ENV_NAME,
  isToWorker,
  type AnswerMessage,
  type AskMessage,
  type CallMessage,
  type CallReply,
  type FromWorker,
} from './protocol';

function send(m: FromWorker): void {
  process.send?.(m);
}

/** One console key route's answer to a call the supervisor forwards (bodies as base64 both ways). */
async function consoleCall(gw: Gateway, call: CallMessage | undefined): Promise<CallReply> {
  if (call === undefined) throw new Error('console-call without a call');
  const { method, path, query, body64 } = call;
  const a = await gw.console.call({ method, path, query, body: Buffer.from(body64, 'base64') });
  return {
    status: a.status,
    contentType: a.contentType,
    body64: (typeof a.body === 'string' ? Buffer.from(a.body, 'utf8') : a.body).toString('base64'),
    headers: (a.headers ?? []).map(([k, v]) => [k, v]),
  };
}

async function answer(gw: Gateway, q: AskMessage): Promise<void> {
  const reply: AnswerMessage = { kvgate: 'answer', id: q.id };
  try {
    switch (q.what) {
      case 'metrics':
        reply.value = await gw.registry.getMetricsAsJSON();
        break;
      case 'stats':
        reply.value = { pid: process.pid, ...gw.stats() };
        break;
      case 'ready':
        reply.value = await gw.admin.ready();
        break;
      case 'reload':
        reply.value = await gw.admin.reload();
        break;
      case 'console-data':
        reply.value = gw.console.data();
        break;
      case 'console-call':
        reply.value = await consoleCall(gw, q.call);
        break;
    }
  } catch (e) {
    reply.error = (e as Error).message;
  }
  send(reply);
}

export async function runWorker(): Promise<void> {
  const name = process.env[ENV_NAME] ?? `w${process.pid}`;
  const whole = JSON.parse(process.env[ENV_CONFIG] ?? 'null') as Config | null;
  if (whole === null || process.send === undefined) throw new Error('kvgate: a worker is started by the supervisor');
  const workers = Number(process.env[ENV_WORKERS] ?? '1');
  const config = workerShare(whole, workers);
  let gw: Gateway | null = null;
  let draining: Promise<void> | null = null;
  const drain = (): void => {
    if (gw === null) process.exit(0); // nothing listens yet
    draining ??= gw
      .drain()
      .then(() => process.exit(0))
      .catch(() => process.exit(1));
  };
  process.on('message', (m: unknown) => {
    if (!isToWorker(m)) return;
    if (m.kvgate === 'drain') drain();
    else if (gw !== null) void answer(gw, m);
  });
  process.on('SIGTERM', drain);
  process.on('SIGINT', drain);
  process.on('disconnect', drain);
  // A hangup of the terminal reaches the whole process group: the supervisor forwards it as one reload.
  process.on('SIGHUP', () => undefined);
  const { startGateway } = await import('../gateway');
  const { rereadConfig } = await import('../config/args');
  const argv = JSON.parse(process.env[ENV_ARGV] ?? '[]') as string[];
  const started = await startGateway(config, {
    admin: false,
    name,
    sharedPort: true,
    reloadConfig: () => workerShare(rereadConfig(argv, started.config), workers),
  });
  gw = started;
  send({ kvgate: 'listening', pid: process.pid, port: gw.port });
}

if (require.main === module)
  runWorker().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
