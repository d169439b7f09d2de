/**
 * Graceful drain (issue 6), seen from outside a gateway process: on SIGTERM it stops accepting
 * connections, /healthz on an open keep-alive connection answers 503 draining at once, every request it
 * had received is answered (a result, or SHUTTING_DOWN for what a shard still owes at the deadline), new
 * requests on open connections get SHUTTING_DOWN and are not applied, WebSockets close with 1001
 * SHUTTING_DOWN and HTTP connections after their response, the process exits 0 within shutdown.drainMs,
 * and every write it acknowledged is in memcached. A second signal exits at once.
 *
 * A frozen memcached (SIGSTOP) keeps requests in flight across the signal, so the drain has something to
 * wait for; the load runs on the other shards.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { pack } from 'msgpackr';
import { performance } from 'node:perf_hooks';
import { KvError, KvWsClient, parseMsgpackBulk, type CloseInfo } from './client';
import { LocalFleet } from '../src/fleet/local-fleet';
import { KetamaRing } from '../src/backends/memcached/ketama';
import { freeze, memcachedCommand, until } from './helpers/harness';
import { keysByShard } from './helpers/mc-raw';
import { head, RawHttp, type RawResponse } from './helpers/raw-http';
import { frame, nonReadingWs } from './helpers/raw-ws';
import { spawnGateway, type GatewayProcess } from './helpers/gateway-process';

/** One request and what became of it; times are performance.now() of this process. */
interface Sent {
  via: 'ws' | 'http';
  op: 'set' | 'get';
  key: string;
  value: string;
  at: number;
  outcome: string;
}

const codeOf = (e: unknown): string => (e instanceof KvError ? e.code : `thrown: ${String(e)}`);

/** The error code of a JSON error response, or `status N`. */
function outcomeOf(r: RawResponse, okStatus: number): string {
  if (r.status === okStatus) return 'ok';
  try {
    return (JSON.parse(r.body.toString('utf8')) as { error: { code: string } }).error.code;
  } catch {
    return `status ${r.status}`;
  }
}

describe('graceful drain (gateway process)', () => {
  let fleet: LocalFleet;
  let ring: KetamaRing;
  let byShard: string[][];
  const frozen: number[] = [];
  before(async () => {
    fleet = await LocalFleet.start({ count: 3, memoryMb: 32 });
    ring = new KetamaRing(fleet.servers(), 'md5');
    byShard = keysByShard(ring, 3, 'drain:', 3000);
  });
  after(async () => {
    thawAll();
    await fleet.stop();
  });
  // Every gateway process a test started is gone after it, whatever failed where.
  const spawned: GatewayProcess[] = [];
  const start = async (config: Record<string, unknown>, opts?: { listening?: boolean }): Promise<GatewayProcess> => {
    const gw = await spawnGateway(config, opts);
    spawned.push(gw);
    return gw;
  };
  afterEach(async () => {
    for (const gw of spawned.splice(0)) await gw.kill();
    thawAll();
  });

  const freezeShard = async (s: number): Promise<number> => {
    const pid = fleet.members[s].proc!.pid!;
    frozen.push(pid);
    await freeze(pid);
    return pid;
  };
  const thaw = (pid: number): void => {
    process.kill(pid, 'SIGCONT');
    frozen.splice(frozen.indexOf(pid), 1);
  };
  const thawAll = (): void => {
    for (const pid of [...frozen]) thaw(pid);
  };

  /** The item as memcached holds it now (a raw `get` on the key's shard), or null. */
  async function stored(key: string): Promise<string | null> {
    const reply = await memcachedCommand(fleet.members[ring.lookupKey(key)].port, `get ${key}\r\n`);
    const m = /^VALUE \S+ \d+ (\d+)\r\n/.exec(reply);
    if (m === null) {
      assert.equal(reply, 'END\r\n', `get ${key}`);
      return null;
    }
    const start = m[0].length;
    return reply.slice(start, start + Number(m[1]));
  }

  /** Polls /healthz on an open keep-alive connection until it says draining; returns when it did. */
  async function awaitDraining(probe: RawHttp): Promise<{ at: number; r: RawResponse }> {
    let seen: { at: number; r: RawResponse } | null = null;
    await until(
      async () => {
        await probe.send(head('GET', '/healthz'));
        const r = await probe.response(3000);
        if (r.status === 200) return false;
        seen = { at: performance.now(), r };
        return true;
      },
      3000,
      '/healthz to answer draining',
    );
    return seen!;
  }

  /** Gateway counters from /debug/stats on the admin listener (which stays open while the gateway drains). */
  async function stats(
    gw: GatewayProcess,
  ): Promise<{ connections: { http: number }; ws: { requests: number }; shards: { inflightBatches: number }[] }> {
    return (await (await fetch(`http://127.0.0.1:${gw.adminPort}/debug/stats`)).json()) as never;
  }

  function connectRefused(port: number): Promise<string> {
    return new Promise((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
  }

  it('under mixed load: answers what it received, refuses what comes, closes, exits 0 in time, keeps every acknowledged write', async () => {
    const drainMs = 2000;
    const gw = await start({ servers: fleet.servers(), shutdown: { drainMs }, shard: { timeoutMs: 10_000 } });
    try {
      const wsUrl = `ws://127.0.0.1:${gw.port}/v1/ws`;
      // The last keys of each live shard are kept out of the load, for the bulk read below.
      const loadKeys = [...byShard[1].slice(0, -10), ...byShard[2].slice(0, -10)];
      const [live1, live2] = [byShard[1].at(-1)!, byShard[2].at(-1)!];
      let next = 0;
      const log: Sent[] = [];
      let stop = false;

      // Connections opened before the signal.
      const probe = await RawHttp.connect(gw.port);
      await probe.send(head('GET', '/healthz'));
      assert.equal((await probe.response()).status, 200, 'healthy before the signal');
      const idleHttp = await RawHttp.connect(gw.port);
      const idleUpgrade = await RawHttp.connect(gw.port);
      const busyWs = await KvWsClient.connect(wsUrl);
      const idleWs = await KvWsClient.connect(wsUrl);
      const idleWsClosed = idleWs.closed.then((info) => ({ info, at: performance.now() }));
      const httpConns = await Promise.all([0, 1, 2].map(() => RawHttp.connect(gw.port)));

      const wsWorker = async (): Promise<void> => {
        for (let n = 0; n < 10_000 && !stop && next < loadKeys.length; n++) {
          const key = loadKeys[next++];
          const value = `ws value of ${key}`;
          const set: Sent = { via: 'ws', op: 'set', key, value, at: performance.now(), outcome: '' };
          log.push(set);
          try {
            await busyWs.set(key, value);
            set.outcome = 'ok';
          } catch (e) {
            set.outcome = codeOf(e);
          }
          if (set.outcome !== 'ok') return;
          const get: Sent = { via: 'ws', op: 'get', key, value, at: performance.now(), outcome: '' };
          log.push(get);
          try {
            const r = await busyWs.get(key);
            get.outcome = r.hit ? (r.value.toString() === value ? 'ok' : 'wrong value') : 'miss';
          } catch (e) {
            get.outcome = codeOf(e);
          }
        }
      };
      const httpWorker = async (c: RawHttp): Promise<void> => {
        for (let n = 0; n < 10_000 && !stop && next < loadKeys.length; n++) {
          const key = loadKeys[next++];
          const value = `http value of ${key}`;
          const set: Sent = { via: 'http', op: 'set', key, value, at: performance.now(), outcome: '' };
          log.push(set);
          // A response with Connection: close ends the connection's use, as for any HTTP client.
          let last: RawResponse | null = null;
          try {
            await c.send(head('PUT', `/v1/kv/${key}`, { 'content-length': value.length }) + value);
            last = await c.response(5000);
            set.outcome = outcomeOf(last, 204);
          } catch (e) {
            set.outcome = `connection: ${(e as Error).message}`;
          }
          if (set.outcome !== 'ok' || last?.headers.connection === 'close') return;
          const get: Sent = { via: 'http', op: 'get', key, value, at: performance.now(), outcome: '' };
          log.push(get);
          try {
            await c.send(head('GET', `/v1/kv/${key}`));
            last = await c.response(5000);
            get.outcome =
              last.status === 200 ? (last.body.toString() === value ? 'ok' : 'wrong value') : outcomeOf(last, 200);
          } catch (e) {
            get.outcome = `connection: ${(e as Error).message}`;
          }
          if (get.outcome !== 'ok' || last?.headers.connection === 'close') return;
        }
      };
      const workers = [...Array.from({ length: 6 }, () => wsWorker()), ...httpConns.map((c) => httpWorker(c))];

      // Requests that stay in flight across the signal: a frozen shard answers nothing.
      await until(() => log.filter((e) => e.outcome === 'ok').length > 200, 10_000, 'the load to run');
      await busyWs.set(live1, 'one');
      await busyWs.set(live2, 'two');
      // A client that reads nothing while large answers pile up for it must not hold the exit back.
      const bigKeys = byShard[1].slice(-10, -2);
      await busyWs.mset(bigKeys.map((key) => ({ key, value: Buffer.alloc(100 * 1024, 0x6e) })));
      const nonReader = await nonReadingWs(gw.port);
      for (let id = 1; id <= 40; id++) nonReader.write(frame(pack({ id, op: 'mget', keys: bigKeys })));
      const before0 = await stats(gw);
      await freezeShard(0);
      const [k0, k1] = byShard[0];
      const stuckGet = busyWs.get(k0).then(() => 'answered', codeOf);
      const stuckSet = busyWs.set(k1, 'stuck').then(() => 'ok', codeOf);
      const stuckHttp = await RawHttp.connect(gw.port);
      await stuckHttp.send(head('GET', `/v1/kv/${k0}`));
      // A bulk read across shards: the live shards' results stream before the signal, the frozen one's not.
      const bulkKeys = [byShard[0][2], live1, byShard[0][3], live2];
      const bulkBody = Buffer.concat(bulkKeys.map((k) => pack(k)));
      const stuckBulk = await RawHttp.connect(gw.port);
      await stuckBulk.send(
        Buffer.concat([
          Buffer.from(
            head('POST', '/v1/mget', { 'content-type': 'application/msgpack', 'content-length': bulkBody.length }),
          ),
          bulkBody,
        ]),
      );
      await until(
        async () => {
          const st = await stats(gw);
          return (
            st.connections.http >= 2 && st.ws.requests >= before0.ws.requests + 2 && st.shards[0].inflightBatches >= 1
          );
        },
        5000,
        'the stuck requests to be in flight',
      );

      const t0 = gw.signal('SIGTERM');
      const { at: t1, r: health } = await awaitDraining(probe);
      stop = true;
      assert.ok(t1 - t0 < 500, `/healthz said draining ${(t1 - t0).toFixed(0)} ms after the signal`);
      assert.equal(health.status, 503);
      assert.equal((JSON.parse(health.body.toString()) as { status: string }).status, 'draining');
      await probe.closedByPeer(2000);

      // New connections are refused; new requests on open ones get SHUTTING_DOWN and are not applied.
      assert.equal(await connectRefused(gw.port), 'ECONNREFUSED', 'a new connection during the drain');
      await idleHttp.send(head('PUT', '/v1/kv/drain:after:http', { 'content-length': 4 }) + 'late');
      const late = await idleHttp.response(2000);
      assert.equal(late.status, 503);
      assert.equal(outcomeOf(late, 204), 'SHUTTING_DOWN');
      assert.equal(late.headers.connection, 'close');
      await idleHttp.closedByPeer(2000);
      await idleUpgrade.send(
        head('GET', '/v1/ws', {
          Upgrade: 'websocket',
          Connection: 'Upgrade',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
          'Sec-WebSocket-Version': 13,
        }),
      );
      const upgrade = await idleUpgrade.response(2000);
      assert.equal(upgrade.status, 503, 'an upgrade on a connection opened before the drain');
      assert.equal(outcomeOf(upgrade, 101), 'SHUTTING_DOWN');
      await idleUpgrade.closedByPeer(2000);
      await assert.rejects(busyWs.set('drain:after:ws', 'late'), (e: KvError) => e.code === 'SHUTTING_DOWN');
      await assert.rejects(busyWs.get(byShard[1][0]), (e: KvError) => e.code === 'SHUTTING_DOWN');
      const idleClose = await idleWsClosed;
      assert.deepEqual(idleClose.info, { code: 1001, reason: 'SHUTTING_DOWN' }, 'an idle WebSocket is closed');
      assert.ok(
        idleClose.at - t0 < drainMs / 2,
        `the idle WebSocket closed ${(idleClose.at - t0).toFixed(0)} ms after the signal`,
      );

      await Promise.all(workers);
      // What the frozen shard owes gets SHUTTING_DOWN at the deadline, not before.
      assert.equal(await stuckGet, 'SHUTTING_DOWN');
      assert.equal(await stuckSet, 'SHUTTING_DOWN');
      const stuckAnswer = await stuckHttp.response(drainMs + 1000);
      const stuckAt = performance.now();
      assert.equal(outcomeOf(stuckAnswer, 200), 'SHUTTING_DOWN', 'the HTTP GET the frozen shard owes');
      assert.ok(
        stuckAt - t0 > drainMs / 2,
        `the drain gave up on the frozen shard after only ${(stuckAt - t0).toFixed(0)} ms`,
      );
      assert.equal(stuckAnswer.headers.connection, 'close', 'an HTTP connection is closed after its response');
      await stuckHttp.closedByPeer(1000);
      const bulk = await stuckBulk.response(1000);
      assert.equal(bulk.status, 200);
      const items = parseMsgpackBulk('mget', bulk.body, bulkKeys.length);
      const codes = items.map((x) => ('error' in x ? x.error.code : 'hit' in x ? String(x.hit) : '?'));
      assert.deepEqual(
        codes,
        ['SHUTTING_DOWN', 'true', 'SHUTTING_DOWN', 'true'],
        'the bulk read: results where shards answered, SHUTTING_DOWN where not',
      );
      const closed: CloseInfo = await busyWs.closed;
      assert.deepEqual(closed, { code: 1001, reason: 'SHUTTING_DOWN' });

      const exit = await gw.exited;
      nonReader.destroy();
      assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, gw.output());
      assert.ok(
        exit.at - t0 < drainMs + 750,
        `exited ${(exit.at - t0).toFixed(0)} ms after the signal (drainMs ${drainMs})`,
      );

      // Every request sent before the signal was answered: a result or SHUTTING_DOWN, nothing cut off.
      const early = log.filter((e) => e.at < t0);
      assert.ok(early.length > 200, `${early.length} requests before the signal`);
      const bad = early.filter((e) => e.outcome !== 'ok' && e.outcome !== 'SHUTTING_DOWN');
      assert.deepEqual(bad, [], 'requests sent before the signal that got neither a result nor SHUTTING_DOWN');
      const unanswered = log.filter(
        (e) => e.outcome === '' || e.outcome.startsWith('connection:') || e.outcome === 'CONNECTION_CLOSED',
      );
      assert.deepEqual(unanswered, [], 'requests cut off without an answer');

      // Acknowledged writes are in memcached; writes refused during the drain are not.
      const frozenPid = fleet.members[0].proc!.pid!;
      thaw(frozenPid);
      const acked = log.filter((e) => e.op === 'set' && e.outcome === 'ok');
      for (const e of acked) assert.equal(await stored(e.key), e.value, `acknowledged write of ${e.key}`);
      assert.equal(await stored('drain:after:http'), null, 'a PUT refused during the drain is not applied');
      assert.equal(await stored('drain:after:ws'), null, 'a set refused during the drain is not applied');
    } finally {
      await gw.kill();
      thawAll();
    }
  });

  it('waits for a slow shard that answers before the deadline: results, not SHUTTING_DOWN, then exits early', async () => {
    const drainMs = 5000;
    const gw = await start({ servers: fleet.servers(), shutdown: { drainMs }, shard: { timeoutMs: 10_000 } });
    try {
      const [k0, k1, k2] = byShard[0].slice(10);
      const ws = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
      await ws.set(k0, 'before');
      const probe = await RawHttp.connect(gw.port);
      const pid = await freezeShard(0);
      let settled = 0;
      const get = ws
        .get(k0)
        .then((r) => (r.hit ? r.value.toString() : 'miss'), codeOf)
        .finally(() => settled++);
      const set = ws
        .set(k1, 'during')
        .then(() => 'ok', codeOf)
        .finally(() => settled++);
      const put = await RawHttp.connect(gw.port);
      await put.send(head('PUT', `/v1/kv/${k2}`, { 'content-length': 4 }) + 'http');
      // An upload begun before the signal and finished during the drain is a request already received.
      const [k3] = byShard[1].slice(-1);
      const upload = await RawHttp.connect(gw.port);
      await upload.send(head('PUT', `/v1/kv/${k3}`, { 'content-length': 8 }) + 'half');
      await until(
        async () => (await stats(gw)).shards[0].inflightBatches >= 1 && (await stats(gw)).connections.http >= 2,
        5000,
        'the requests in flight',
      );
      const t0 = gw.signal('SIGTERM');
      await awaitDraining(probe);
      await upload.send('full');
      const uploaded = await upload.response(2000);
      assert.equal(uploaded.status, 204, `the upload finished during the drain: ${uploaded.body.toString()}`);
      assert.equal(uploaded.headers.connection, 'close');
      // Draining, and still waiting for the shard (the admin listener is still open).
      const during = (await (await fetch(`http://127.0.0.1:${gw.adminPort}/debug/stats`)).json()) as {
        draining: boolean;
        shards: { inflightBatches: number }[];
      };
      assert.equal(during.draining, true);
      assert.ok(during.shards[0].inflightBatches >= 1, 'the frozen shard still owes its answers');
      assert.equal(settled, 0, 'nothing was answered yet');
      thaw(pid);
      assert.equal(await get, 'before', 'the get is answered with its value');
      assert.equal(await set, 'ok', 'the set is acknowledged');
      const r = await put.response(3000);
      assert.equal(r.status, 204, 'the PUT is acknowledged');
      assert.equal(r.headers.connection, 'close', 'and its connection closed after the response');
      assert.deepEqual(await ws.closed, { code: 1001, reason: 'SHUTTING_DOWN' });
      const exit = await gw.exited;
      assert.equal(exit.code, 0, gw.output());
      assert.ok(
        exit.at - t0 < drainMs - 1000,
        `exited ${(exit.at - t0).toFixed(0)} ms after the signal, once nothing was left`,
      );
      assert.equal(await stored(k1), 'during');
      assert.equal(await stored(k2), 'http');
      assert.equal(await stored(k3), 'halffull');
    } finally {
      await gw.kill();
      thawAll();
    }
  });

  /** A child with a gate of 3 filled by two WebSockets and a bulk read, all waiting on a frozen shard. */
  async function fullGateDuringDrain(): Promise<{
    gw: GatewayProcess;
    keepAlive: RawHttp[];
    bulk: RawHttp;
    bulkKeys: string[];
    t0: number;
  }> {
    const gw = await start({
      servers: fleet.servers(),
      limits: { maxConnections: 3 },
      shutdown: { drainMs: 1500 },
      shard: { timeoutMs: 10_000 },
    });
    const wsUrl = `ws://127.0.0.1:${gw.port}/v1/ws`;
    const probe = await RawHttp.connect(gw.port);
    const keepAlive = await Promise.all([0, 1].map(() => RawHttp.connect(gw.port)));
    for (const c of [probe, ...keepAlive]) {
      await c.send(head('GET', '/healthz'));
      assert.equal((await c.response()).status, 200, 'a keep-alive connection, open before the signal');
    }
    await freezeShard(0);
    for (const n of [0, 1]) {
      const ws = await KvWsClient.connect(wsUrl);
      void ws.get(byShard[0][30 + n]).catch(() => undefined);
    }
    const bulkKeys = byShard[0].slice(40, 43);
    const body = Buffer.concat(bulkKeys.map((k) => pack(k)));
    const bulk = await RawHttp.connect(gw.port);
    await bulk.send(
      Buffer.concat([
        Buffer.from(head('POST', '/v1/mget', { 'content-type': 'application/msgpack', 'content-length': body.length })),
        body,
      ]),
    );
    await until(
      async () => {
        const st = (await (await fetch(`http://127.0.0.1:${gw.adminPort}/debug/stats`)).json()) as {
          connections: { ws: number; http: number };
        };
        return st.connections.ws === 2 && st.connections.http === 1;
      },
      5000,
      'two WebSockets and a bulk read in the gate',
    );
    const t0 = gw.signal('SIGTERM');
    await awaitDraining(probe);
    return { gw, keepAlive, bulk, bulkKeys, t0 };
  }

  it('a request on an open connection during the drain gets SHUTTING_DOWN even when the gate is full', async () => {
    const { gw, keepAlive } = await fullGateDuringDrain();
    try {
      await keepAlive[0].send(head('GET', `/v1/kv/${byShard[1][0]}`));
      const r = await keepAlive[0].response(1000);
      assert.equal(r.status, 503);
      assert.equal(outcomeOf(r, 200), 'SHUTTING_DOWN', 'not BUSY: the client should go elsewhere, not retry here');
      assert.equal(r.headers.connection, 'close');
      await keepAlive[1].send(head('PUT', '/v1/kv/drain:full:put', { 'content-length': 2 }) + 'no');
      assert.equal(outcomeOf(await keepAlive[1].response(1000), 204), 'SHUTTING_DOWN');
      assert.equal((await gw.exited).code, 0);
    } finally {
      await gw.kill();
      thawAll();
    }
    assert.equal(await stored('drain:full:put'), null);
  });

  it('bulk requests during the drain: SHUTTING_DOWN with the gate full, Connection: close on a response that starts during it', async () => {
    const { gw, keepAlive, bulk, bulkKeys } = await fullGateDuringDrain();
    try {
      const late = Buffer.from(JSON.stringify(byShard[1][0]) + '\n');
      await keepAlive[0].send(
        Buffer.concat([
          Buffer.from(
            head('POST', '/v1/mget', { 'content-type': 'application/x-ndjson', 'content-length': late.length }),
          ),
          late,
        ]),
      );
      const r = await keepAlive[0].response(1000);
      assert.equal(outcomeOf(r, 200), 'SHUTTING_DOWN', 'a bulk read on an open connection during the drain');
      // The bulk read in flight had written nothing before the signal: its response starts in the drain.
      const b = await bulk.response(3000);
      assert.deepEqual(
        parseMsgpackBulk('mget', b.body, bulkKeys.length).map((x) => 'error' in x && x.error.code),
        bulkKeys.map(() => 'SHUTTING_DOWN'),
      );
      assert.equal(b.headers.connection, 'close', 'a bulk response that starts during the drain closes its connection');
    } finally {
      await gw.kill();
      thawAll();
    }
  });

  it('a signal while the gateway starts its local fleet exits 0 and leaves no memcached behind', async () => {
    /** Processes whose parent is `pid`. */
    const childrenOf = (pid: number): { pid: number; comm: string }[] =>
      readdirSync('/proc')
        .filter((n) => /^\d+$/.test(n))
        .flatMap((n) => {
          try {
            const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
            const close = stat.lastIndexOf(')');
            return Number(stat.slice(close + 2).split(' ')[1]) === pid
              ? [{ pid: Number(n), comm: stat.slice(stat.indexOf('(') + 1, close) }]
              : [];
          } catch {
            return []; // gone meanwhile
          }
        });
    const gone = (pid: number): boolean => {
      try {
        return /^\S+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return true;
      }
    };
    // The window between the first memcached and "listening" is short: try a few times to land in it.
    for (let attempt = 0; attempt < 5; attempt++) {
      const gw = await start({ servers: [], localFleet: { count: 8, memoryMb: 8 } }, { listening: false });
      let kids: { pid: number; comm: string }[] = [];
      await until(
        () => (kids = childrenOf(gw.proc.pid!)).length > 0 || gw.proc.exitCode !== null,
        10_000,
        'the local fleet to be spawned',
      );
      if (/listening on/.test(gw.output()) || gw.proc.exitCode !== null) {
        await gw.kill();
        continue;
      }
      gw.signal('SIGTERM');
      const exit = await gw.exited;
      try {
        assert.deepEqual(
          { code: exit.code, signal: exit.signal },
          { code: 0, signal: null },
          `exit while starting: ${gw.output()}`,
        );
        await until(() => kids.every((k) => gone(k.pid)), 3000, 'the memcached it started to be gone');
      } finally {
        for (const k of kids) if (!gone(k.pid)) process.kill(k.pid, 'SIGKILL');
      }
      return;
    }
    assert.fail('never caught the gateway while it started its fleet');
  });

  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`a second ${sig} during a long drain exits at once`, async () => {
      const drainMs = 30_000;
      const gw = await start({ servers: fleet.servers(), shutdown: { drainMs }, shard: { timeoutMs: 60_000 } });
      const ws = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
      const probe = await RawHttp.connect(gw.port);
      await freezeShard(0);
      const stuck = ws.get(byShard[0][20]).then(() => 'answered', codeOf);
      await until(async () => (await stats(gw)).shards[0].inflightBatches >= 1, 5000, 'a get in flight');
      const t0 = gw.signal(sig);
      await awaitDraining(probe);
      // The drain is waiting for the frozen shard, and would for 30 s.
      assert.equal(gw.proc.exitCode, null);
      const t2 = gw.signal(sig);
      const exit = await gw.exited;
      assert.ok(exit.at - t2 < 1000, `exited ${(exit.at - t2).toFixed(0)} ms after the second signal`);
      assert.ok(exit.at - t0 < drainMs / 4, 'long before the drain would have ended');
      assert.equal(exit.signal, null, 'it exits by itself, not killed by the signal');
      assert.equal(exit.code, 1, 'with a failure code: the drain was cut short');
      assert.match(gw.output(), new RegExp(`${sig}: draining[^]*${sig} again: exiting now`));
      assert.equal(await stuck, 'CONNECTION_CLOSED', 'the client of a cut-short drain sees its connection close');
    });
  }
});
