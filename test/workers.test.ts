/**
 * `workers` (src/cluster/): real processes on loopback. Two workers share one port (SO_REUSEPORT) and
 * both take connections; a worker killed with SIGKILL under load is restarted by the supervisor while the
 * clients of the other one see no error, new connections are served, and the supervisor's /metrics is the
 * sum of both workers. With one worker the listen is exclusive: a second gateway on the port fails to
 * start, loudly, and the first one keeps serving.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LocalFleet } from '../src/fleet/local-fleet';
import { defaultConfig } from '../src/config/schema';
import { KvHttpClient, KvWsClient } from './client';
import { spawnGateway, type GatewayProcess } from './helpers/gateway-process';

interface WorkerStats {
  pid: number;
  up: boolean;
  restarts: number;
  stats: {
    pid: number;
    ws: { requests: number };
    connections: { ws: number; max: number };
    budget: { limit: number };
  } | null;
}

/** Polls `look` every 20 ms until it returns a value other than undefined, for at most `ms`. */
async function until<T>(what: string, ms: number, look: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await look();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function sampleSum(text: string, name: string, want: Record<string, string> = {}): number {
  let n = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(want).every(([k, v]) => labels[k] === v)) n += Number(m[3]);
  }
  return n;
}

/** The families docs/OPERATIONS.md lists as the supervisor's own ("supervisor only" in their row). */
function supervisorFamilies(): string[] {
  const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'OPERATIONS.md'), 'utf8');
  return [...doc.matchAll(/^\| `(kvgate_[a-z_]+)` \|.*supervisor only/gm)].map((m) => m[1]);
}

/** A client doing set then get of its own keys, checking every value, until `stop` is set. */
class Loader {
  sets = 0;
  hits = 0;
  readonly errors: string[] = [];
  private stop = false;
  private readonly done: Promise<void>;

  constructor(
    readonly ws: KvWsClient,
    readonly prefix: string,
  ) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    for (let i = 0; !this.stop; i++) {
      const key = `${this.prefix}${i % 50}`;
      const value = `${this.prefix}v${i}`;
      try {
        await this.ws.set(key, value);
        this.sets++;
        const got = await this.ws.get(key);
        if (!got.hit || got.value.toString() !== value) {
          this.errors.push(`${key}: got ${got.hit ? got.value.toString() : 'a miss'}, want ${value}`);
          return;
        }
        this.hits++;
      } catch (e) {
        this.errors.push((e as Error).message);
        return;
      }
    }
  }

  async finish(): Promise<void> {
    this.stop = true;
    await this.done;
  }
}

describe('workers: a supervisor and its worker processes on one port', () => {
  let fleet: LocalFleet;
  const procs: GatewayProcess[] = [];
  const clients: KvWsClient[] = [];

  before(async () => {
    fleet = await LocalFleet.start({ count: 2 });
  });
  after(async () => {
    for (const c of clients) c.close();
    await Promise.all(procs.map((p) => p.kill()));
    await fleet?.stop();
  });

  it('two workers both serve; one killed is restarted while the other serves on, and /metrics sums both', async () => {
    const gw = await spawnGateway({ servers: fleet.servers(), workers: 2 });
    procs.push(gw);
    const admin = `http://127.0.0.1:${gw.adminPort}`;
    const stats = async (): Promise<Record<string, WorkerStats>> => {
      const res = await fetch(`${admin}/debug/stats`);
      assert.equal(res.status, 200);
      return (await res.json()) as Record<string, WorkerStats>;
    };
    const first = await stats();
    assert.deepEqual(Object.keys(first).sort(), ['w1', 'w2']);
    for (const w of Object.values(first)) {
      assert.equal(w.up, true);
      assert.equal(w.stats?.pid, w.pid, "a worker's stats carry its own pid");
      // The limits are the gateway's, split between the workers (cluster/share.ts).
      const d = defaultConfig().limits;
      assert.ok(w.stats!.connections.max <= d.maxConnections / 2, 'at most half the connections (ulimit may clamp)');
      assert.equal(w.stats?.budget.limit, d.maxBufferedBytesTotal / 2);
    }
    assert.notEqual(first.w1.pid, first.w2.pid);
    assert.notEqual(first.w1.pid, gw.proc.pid, 'workers are processes of their own');
    assert.equal((await fetch(`${admin}/readyz`)).status, 200);

    // Connects one client at a time and sees which worker's WebSocket count went up: that one holds it.
    // The kernel spreads connections by a hash of their addresses, so both get some within a few tries.
    const connectTracked = async (want: number): Promise<{ c: KvWsClient; worker: string }[]> => {
      const got: { c: KvWsClient; worker: string }[] = [];
      for (let tries = 0; tries < 64; tries++) {
        const before = await stats();
        const c = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
        clients.push(c);
        const worker = await until('a worker counts the new connection', 5000, async () => {
          const now = await stats();
          return Object.keys(now).find(
            (w) => (now[w].stats?.connections.ws ?? 0) > (before[w].stats?.connections.ws ?? 0),
          );
        });
        got.push({ c, worker });
        const on = (w: string): number => got.filter((g) => g.worker === w).length;
        if (on('w1') >= want && on('w2') >= want) return got;
      }
      throw new Error(`64 connections did not reach both workers: ${got.map((g) => g.worker).join(' ')}`);
    };
    const p = `workers:${randomBytes(3).toString('hex')}:`;
    const tracked = await connectTracked(2);
    const loaders = tracked.map(({ c, worker }, k) => ({ worker, load: new Loader(c, `${p}${k}:`) }));
    await until('both workers serve requests', 10_000, async () => {
      const s = await stats();
      return (s.w1.stats?.ws.requests ?? 0) > 200 && (s.w2.stats?.ws.requests ?? 0) > 200 ? true : undefined;
    });

    // Kill w1; its clients lose their connection, w2's go on; the supervisor starts a new w1.
    const victim = first.w1.pid;
    process.kill(victim, 'SIGKILL');
    const restarted = await until('w1 is restarted and listens', 10_000, async () => {
      const s = await stats();
      return s.w1.up && s.w1.pid !== victim && s.w1.restarts === 1 ? s : undefined;
    });
    assert.equal(restarted.w2.pid, first.w2.pid, 'the other worker was not touched');
    assert.equal(restarted.w2.restarts, 0);
    const lost = loaders.filter((l) => l.worker === 'w1');
    const kept = loaders.filter((l) => l.worker === 'w2');
    await until("w1's clients see their connection close", 5000, async () =>
      lost.every((l) => l.load.errors.length > 0) ? true : undefined,
    );
    const keptAt = kept.map((l) => l.load.hits);
    await until('the clients of w2 go on after the restart', 10_000, async () =>
      kept.every((l, k) => l.load.hits > keptAt[k] + 50) ? true : undefined,
    );

    // New connections are served, by both workers again.
    const fresh = await connectTracked(1);
    const freshLoads = fresh.map(({ c, worker }, k) => ({ worker, load: new Loader(c, `${p}fresh${k}:`) }));
    await until('the new connections are served', 10_000, async () =>
      freshLoads.every((l) => l.load.hits > 20) ? true : undefined,
    );
    const http = new KvHttpClient(`http://127.0.0.1:${gw.port}`);
    await http.set(`${p}http`, 'over http');
    const got = await http.get(`${p}http`);
    assert.ok(got.hit && got.value.toString() === 'over http');

    await Promise.all([...kept, ...freshLoads].map((l) => l.load.finish()));
    for (const l of [...kept, ...freshLoads]) assert.deepEqual(l.load.errors, [], `a client of ${l.worker}`);
    for (const l of lost) assert.match(l.load.errors[0], /CONNECTION_CLOSED|closed/);

    // /metrics: every ws request of both workers (w2 since its start, the new w1 since its restart) and
    // exactly the items the surviving and fresh clients completed.
    const text = await (await fetch(`${admin}/metrics`)).text();
    const s = await stats();
    assert.equal(
      sampleSum(text, 'kvgate_requests_total', { front: 'ws' }),
      s.w1.stats!.ws.requests + s.w2.stats!.ws.requests,
      "the ws requests summed over both workers' own counts",
    );
    assert.ok(s.w1.stats!.ws.requests > 0 && s.w2.stats!.ws.requests > 0, 'both workers contribute');
    const counted = [...kept, ...freshLoads];
    assert.equal(
      sampleSum(text, 'kvgate_items_total', { front: 'ws', op: 'set', outcome: 'ok' }),
      counted.reduce((n, l) => n + l.load.sets, 0),
    );
    assert.equal(
      sampleSum(text, 'kvgate_items_total', { front: 'ws', op: 'get', outcome: 'hit' }),
      counted.reduce((n, l) => n + l.load.hits, 0),
    );
    assert.equal(sampleSum(text, 'kvgate_items_total', { front: 'http', op: 'set', outcome: 'ok' }), 1);
    assert.equal(sampleSum(text, 'kvgate_worker_up', { worker: 'w1' }), 1);
    assert.equal(sampleSum(text, 'kvgate_worker_up'), 2);
    assert.equal(sampleSum(text, 'kvgate_worker_restarts_total', { worker: 'w1' }), 1);
    assert.equal(sampleSum(text, 'kvgate_worker_restarts_total', { worker: 'w2' }), 0);
    // A shard's state is combined by its family's aggregator (max), not summed: two memcached, 1 each.
    assert.equal(sampleSum(text, 'kvgate_shard_up'), 2);
    const families = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    for (const f of supervisorFamilies()) assert.ok(families.has(f), `the supervisor exposes ${f}`);
    assert.deepEqual(supervisorFamilies().sort(), ['kvgate_worker_restarts_total', 'kvgate_worker_up']);

    // SIGTERM drains both workers and the supervisor exits 0; no worker is left.
    const pids = [s.w1.pid, s.w2.pid];
    gw.signal('SIGTERM');
    const exit = await gw.exited;
    assert.equal(exit.code, 0, gw.output());
    await until('the workers are gone', 5000, async () =>
      pids.every((pid) => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      })
        ? true
        : undefined,
    );
    assert.match(gw.output(), /"worker":"w1".*"signal":"SIGKILL".*"event":"worker.exited"/);
    assert.match(gw.output(), /"event":"worker.restarted"/);
  });

  it('with one worker the port is exclusive: a second gateway on it fails to start, the first serves on', async () => {
    const one = await spawnGateway({ servers: fleet.servers() });
    procs.push(one);
    const second = await spawnGateway({ servers: fleet.servers() }, { port: one.port, listening: false });
    procs.push(second);
    const exit = await second.exited;
    assert.equal(exit.code, 1, second.output());
    assert.match(second.output(), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${one.port}.*another kvgate`));
    assert.doesNotMatch(second.output(), /"event":"listening"/);
    // The first one still has the port, and answers.
    assert.equal(one.proc.exitCode, null);
    const http = new KvHttpClient(`http://127.0.0.1:${one.port}`);
    const k = `workers:one:${randomBytes(3).toString('hex')}`;
    for (let i = 0; i < 20; i++) {
      await http.set(k, `v${i}`);
      const got = await http.get(k);
      assert.ok(got.hit && got.value.toString() === `v${i}`);
    }
    // A supervisor of two workers cannot take the port either: its first worker fails, so does its start.
    const shared = await spawnGateway({ servers: fleet.servers(), workers: 2 }, { port: one.port, listening: false });
    procs.push(shared);
    const sharedExit = await shared.exited;
    assert.equal(sharedExit.code, 1, shared.output());
    assert.match(shared.output(), /exited \(code 1\) before it listened/);
    assert.equal(one.proc.exitCode, null);
  });
});
