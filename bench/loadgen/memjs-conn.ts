/** memjs direct: one memjs client per connection, one memjs call per key, as an application would. */
import * as memjs from 'memjs';
import { ReqOp, type Conn, type Sink } from './conn';
import type { Endpoint } from './types';

const quiet = { log: (): void => undefined };

export class MemjsConn implements Conn {
  inflight = 0;
  readonly server = 0;
  private client: memjs.Client | null = null;

  constructor(
    private readonly sink: Sink,
    private readonly servers: Endpoint[],
  ) {}

  async connect(): Promise<void> {
    this.client = memjs.Client.create(this.servers.map((s) => `${s.host}:${s.port}`).join(','), {
      timeout: 10,
      conntimeout: 10,
      retries: 0,
      logger: quiet,
    } as memjs.ClientOptions);
    // memjs connects lazily: a stats call reaches every server (its callback runs once per server)
    const n = this.servers.length;
    await new Promise<void>((resolve) => {
      let left = n;
      this.client!.stats(() => {
        if (--left === 0) resolve();
      });
    });
  }

  send(op: ReqOp, idx: number, idxs: number[] | null, startNs: number): void {
    const client = this.client;
    if (!client) return;
    const sink = this.sink;
    const ks = sink.ks;
    const list = idxs ?? [idx];
    const n = list.length;
    let left = n;
    let ok = 0;
    this.inflight++;
    const one = (): void => {
      if (--left === 0) {
        this.inflight--;
        sink.done(this, startNs, ok, sink.now());
      }
    };
    for (let i = 0; i < n; i++) {
      const k = list[i];
      if (op === ReqOp.Get || op === ReqOp.Mget) {
        client.get(ks.keyStrings[k], (err, value) => {
          if (err) sink.error(errCode(err));
          else if (value === null || value === undefined) sink.miss(1);
          else if (ks.check(k, value, 0, value.length)) ok++;
          else sink.bad(1);
          one();
        });
      } else {
        client.set(ks.keyStrings[k], ks.value(k), { expires: 0 }, (err, stored) => {
          if (err) sink.error(errCode(err));
          else if (stored) ok++;
          else sink.error('NOT_STORED');
          one();
        });
      }
    }
  }

  flush(): void {
    // memjs writes on every call
  }

  close(): void {
    this.client?.close();
    this.client = null;
  }
}

function errCode(err: Error): string {
  const m = /timed? ?out/i.test(err.message) ? 'TIMEOUT' : 'MEMJS_ERROR';
  return m;
}
