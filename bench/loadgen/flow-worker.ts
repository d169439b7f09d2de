/**
 * Runs one flow-control client (flow-clients.ts) in a process of its own, pinned like the load generator,
 * so that a client busy reading 50 MiB or holding 2,000 sockets shares no event loop with the suite.
 *
 *   parent -> { cmd: 'start', cfg }   child -> { ev: 'started', info }
 *   child  -> { ev: 'result', result }  by itself when the client has a natural end (ws-mget)...
 *   parent -> { cmd: 'stop' }          ...or when told to stop; the child exits after it.
 */
import { fork, execFileSync, type ChildProcess } from 'node:child_process';
import { HttpMget, NonReaders, WsMget, type FlowClientConfig, type FlowClientResult } from './flow-clients';

type ToChild = { cmd: 'start'; cfg: FlowClientConfig } | { cmd: 'stop' };
type FromChild =
  | { ev: 'started'; info: Record<string, unknown> }
  | { ev: 'result'; result: FlowClientResult }
  | { ev: 'fatal'; message: string };

/** The parent's handle on one client process. */
export class FlowWorker {
  private result: FlowClientResult | null = null;
  private readonly waiters: ((m: FromChild | null) => void)[] = [];
  private exited = false;

  private constructor(private readonly proc: ChildProcess) {
    proc.on('message', (m: FromChild) => {
      if (m.ev === 'result') this.result = m.result;
      for (const w of this.waiters.splice(0)) w(m);
    });
    proc.on('exit', () => {
      this.exited = true;
      for (const w of this.waiters.splice(0)) w(null);
    });
  }

  get pid(): number {
    return this.proc.pid ?? 0;
  }

  /** Forks the client, starts it, and resolves once it says it has started (its connections are open). */
  static async start(
    cfg: FlowClientConfig,
    cpus: string,
    timeoutMs = 30_000,
  ): Promise<{ worker: FlowWorker; info: Record<string, unknown> }> {
    const proc = fork(__filename, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    if (cpus && proc.pid) {
      try {
        execFileSync('taskset', ['-p', '-c', cpus, String(proc.pid)], { stdio: 'ignore' });
      } catch {
        // best effort, as for the load generator
      }
    }
    const worker = new FlowWorker(proc);
    const m = await worker.next({ cmd: 'start', cfg }, timeoutMs);
    if (!m || m.ev !== 'started') {
      worker.kill();
      throw new Error(
        `flow client ${cfg.role} did not start: ${m && m.ev === 'fatal' ? m.message : 'timed out or exited'}`,
      );
    }
    return { worker, info: m.info };
  }

  private next(msg: ToChild | null, timeoutMs: number): Promise<FromChild | null> {
    if (this.exited) return Promise.resolve(null);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(done);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(null);
      }, timeoutMs);
      const done = (m: FromChild | null): void => {
        clearTimeout(t);
        resolve(m);
      };
      this.waiters.push(done);
      if (msg) this.proc.send(msg);
    });
  }

  /** Waits up to `timeoutMs` for the client to finish by itself; null if it did not. */
  async finished(timeoutMs: number): Promise<FlowClientResult | null> {
    const end = Date.now() + timeoutMs;
    while (!this.result && !this.exited && Date.now() < end) await this.next(null, end - Date.now());
    return this.result;
  }

  /** Tells the client to let go of its sockets and report; kills it if it does not within `timeoutMs`. */
  async stop(timeoutMs = 10_000): Promise<FlowClientResult | null> {
    if (!this.exited) {
      this.result = null;
      const end = Date.now() + timeoutMs;
      this.proc.send({ cmd: 'stop' } satisfies ToChild);
      while (!this.result && !this.exited && Date.now() < end) await this.next(null, end - Date.now());
    }
    this.kill();
    return this.result;
  }

  kill(): void {
    if (!this.exited) {
      try {
        this.proc.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

interface Client {
  start(): Promise<Record<string, unknown>>;
  stop(): Promise<FlowClientResult>;
  finished?: Promise<FlowClientResult>;
}

function makeClient(cfg: FlowClientConfig): Client {
  switch (cfg.role) {
    case 'http-mget':
      return new HttpMget(cfg);
    case 'ws-nonreaders':
      return new NonReaders(cfg);
    case 'ws-mget':
      return new WsMget(cfg);
  }
}

if (require.main === module) {
  let client: Client | null = null;
  const reply = (m: FromChild): void => {
    process.send?.(m);
  };
  process.on('message', (m: ToChild) => {
    void (async () => {
      try {
        if (m.cmd === 'start') {
          client = makeClient(m.cfg);
          reply({ ev: 'started', info: await client.start() });
          void client.finished?.then((result) => reply({ ev: 'result', result }));
        } else if (m.cmd === 'stop') {
          if (client) reply({ ev: 'result', result: await client.stop() });
          setImmediate(() => process.exit(0));
        }
      } catch (e) {
        reply({ ev: 'fatal', message: (e as Error).stack ?? String(e) });
      }
    })();
  });
  process.on('disconnect', () => process.exit(0));
}
