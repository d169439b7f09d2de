/**
 * Every scenario of the suite. Quick mode runs a subset with shorter windows, still with every peer and
 * at least one chart. Single-key WebSocket scenarios keep `depth` requests in flight per connection:
 * 1 at one connection (pure round trip) and at 10,000 connections, 8 at 100 and 1,000 connections.
 */
import type { PeerName, Scenario } from './types';
import { ALL_PEERS } from './types';
import { redisScenarios } from './redis';

const ws = (name: string, title: string, over: Partial<Scenario>): Scenario => ({
  name,
  title,
  kind: 'load',
  transport: 'ws',
  op: 'get',
  conns: 1000,
  depth: 8,
  valueSize: 100,
  bulk: 1,
  getPct: 90,
  peers: ALL_PEERS,
  ...over,
});

const depthFor = (conns: number): number => (conns === 1 || conns >= 10000 ? 1 : 8);

/** The peers a framing scenario compares: the fronts whose CPU per key is the question (issue 12). */
const FRAMING_PEERS: PeerName[] = ['kvgate', 'naive', 'twemproxy', 'uws-floor'];

/**
 * Client framing: the same single-key gets with each request written by itself (`-fpw1`: a browser with
 * one request at a time per connection, one TCP segment each) or four per write (`-fpw4`). The unsuffixed
 * scenarios write all a turn's requests at once (a client that batches its writes).
 */
function framing(conns: number, per: number): Scenario {
  return ws(
    `ws-get-c${conns}-fpw${per}`,
    `WebSocket single-key get, ${conns.toLocaleString('en-US')} connections x 8, 100 B, ${per === 1 ? 'one request' : `${per} requests`} per socket write`,
    { op: 'get', conns, depth: 8, framesPerWrite: per, peers: FRAMING_PEERS },
  );
}

export function fullScenarios(): Scenario[] {
  const out: Scenario[] = [];
  for (const op of ['get', 'set'] as const) {
    for (const conns of [1, 100, 1000, 10000]) {
      out.push(
        ws(
          `ws-${op}-c${conns}`,
          `WebSocket single-key ${op}, ${conns.toLocaleString('en-US')} connection${conns === 1 ? '' : 's'}, 100 B`,
          { op, conns, depth: depthFor(conns) },
        ),
      );
    }
  }
  for (const conns of [100, 1000]) out.push(framing(conns, 1), framing(conns, 4));
  out.push(ws('ws-get-c1000-4k', 'WebSocket single-key get, 1,000 connections, 4 KiB', { op: 'get', valueSize: 4096 }));
  out.push(ws('ws-set-c1000-4k', 'WebSocket single-key set, 1,000 connections, 4 KiB', { op: 'set', valueSize: 4096 }));
  out.push(ws('ws-mix-c1000', 'WebSocket 90/10 get/set mix, 1,000 connections, 100 B', { op: 'mix' }));
  out.push(
    ws('ws-mix-c1000-4k', 'WebSocket 90/10 get/set mix, 1,000 connections, 4 KiB', { op: 'mix', valueSize: 4096 }),
  );
  out.push(
    ws('ws-mget100', 'WebSocket bulk get of 100 keys, 50 connections, 100 B', {
      op: 'mget',
      bulk: 100,
      conns: 50,
      depth: 1,
    }),
  );
  out.push(
    ws('ws-mget100-4k', 'WebSocket bulk get of 100 keys, 50 connections, 4 KiB', {
      op: 'mget',
      bulk: 100,
      conns: 50,
      depth: 1,
      valueSize: 4096,
    }),
  );
  out.push({
    ...ws('http-mget100', 'HTTP POST /v1/mget of 100 keys (msgpack), 50 connections, 100 B', {
      op: 'mget',
      bulk: 100,
      conns: 50,
      depth: 1,
    }),
    transport: 'http',
  });
  out.push(
    ws('ws-mset100', 'WebSocket bulk set of 100 items, 50 connections, 100 B', {
      op: 'mset',
      bulk: 100,
      conns: 50,
      depth: 1,
    }),
  );
  out.push(
    ws('ws-mset100-4k', 'WebSocket bulk set of 100 items, 50 connections, 4 KiB', {
      op: 'mset',
      bulk: 100,
      conns: 50,
      depth: 1,
      valueSize: 4096,
    }),
  );
  out.push(
    ws('ws-mget-20k', 'WebSocket bulk get of 10 keys with 20 KiB values (streamed as 16 KiB parts), 50 connections', {
      op: 'mget',
      bulk: 10,
      conns: 50,
      depth: 1,
      valueSize: 20480,
      peers: ['kvgate', 'naive'],
      note: 'allocation scenario: batched vs naive gateway only',
    }),
  );
  out.push(...httpScenarios([50, 1000]));
  out.push(...curves([0, 1, 2, 5, 10, 50], [1, 10, 50, 100, 1000]));
  out.push(c10k());
  out.push(...flowScenarios());
  out.push(...redisScenarios());
  out.push(metricsScenario());
  out.push(authScenario());
  return out;
}

export function quickScenarios(): Scenario[] {
  return [
    ws('ws-get-c1000', 'WebSocket single-key get, 1,000 connections, 100 B', { op: 'get' }),
    framing(1000, 1),
    ws('ws-mget100', 'WebSocket bulk get of 100 keys, 50 connections, 100 B', {
      op: 'mget',
      bulk: 100,
      conns: 50,
      depth: 1,
    }),
    ...httpScenarios([50]),
    ...curves([0, 2, 10], []),
    ...redisScenarios(),
    metricsScenario(),
  ];
}

function httpScenarios(connList: number[]): Scenario[] {
  const peers: PeerName[] = ['kvgate', 'naive', 'plain-http'];
  return connList.map((conns) => ({
    name: `http-get-c${conns}`,
    title: `HTTP GET /v1/kv/{key} with wrk, ${conns.toLocaleString('en-US')} connections, 100 B`,
    kind: 'wrk' as const,
    transport: 'http' as const,
    op: 'get' as const,
    conns,
    depth: 1,
    valueSize: 100,
    bulk: 1,
    getPct: 100,
    peers,
  }));
}

function curves(windows: number[], caps: number[]): Scenario[] {
  const out: Scenario[] = [];
  if (windows.length) {
    out.push({
      ...ws('curve-window', 'Batching curve: flush window (single-key gets, 1,000 connections x 8)', {
        op: 'get',
        peers: ['kvgate'],
      }),
      kind: 'curve',
      curve: { flag: 'window-ms', values: windows },
    });
  }
  if (caps.length) {
    out.push({
      ...ws('curve-max-ops', 'Batching curve: batch op cap (single-key gets, 1,000 connections x 8)', {
        op: 'get',
        peers: ['kvgate'],
      }),
      kind: 'curve',
      curve: { flag: 'max-ops', values: caps },
    });
  }
  return out;
}

/** What /metrics costs (issue 9): bench/suite/metrics-cost.ts, `--only metrics`. */
export function metricsScenario(): Scenario {
  return {
    ...ws(
      'metrics-cost',
      'Metrics cost: WebSocket get, 1,000 connections, 100 B, /metrics scraped every second vs not',
      {
        peers: ['kvgate'],
      },
    ),
    kind: 'metrics',
  };
}

/** What authentication, namespaces and rate limits cost (issue 10): bench/suite/auth-cost.ts, `--only auth`. */
export function authScenario(): Scenario {
  return {
    ...ws(
      'auth-cost',
      'Security checks cost: single-key gets (WebSocket 1,000 connections x 8; HTTP wrk -c50), 100 B, auth off vs API key vs API key + rate limits vs JWT',
      { peers: ['kvgate'] },
    ),
    kind: 'auth',
  };
}

/** Flow control (issue 6): a bystander next to one misbehaving client; bench/suite/flow.ts. */
export function flowScenarios(): Scenario[] {
  const flow = (name: string, title: string, kind: NonNullable<Scenario['flow']>['kind']): Scenario => ({
    ...ws(name, title, { op: 'get', conns: 4, depth: 1, peers: ['kvgate'] }),
    kind: 'flow',
    flow: { kind },
  });
  return [
    flow(
      'flow-slow-reader',
      'Flow control: bystander gets next to a POST /v1/mget of 2,000 x 100 KB read at 64 KiB/s or never',
      'slow-reader',
    ),
    flow(
      'flow-large-mget',
      'Flow control: WebSocket mget of 500 x 100 KB (49 MiB) by a client reading as fast as it can',
      'large-mget',
    ),
    flow(
      'flow-hint',
      'Flow control: single gets next to a client sending `wait: 50` gets every ~1 ms on the same keys',
      'hint',
    ),
    flow(
      'flow-nonreaders',
      'Flow control: 2,000 WebSocket clients asking for 3 x 100 KB each and never reading',
      'nonreaders',
    ),
  ];
}

function c10k(): Scenario {
  return {
    ...ws('c10k', '10,000 live WebSocket connections: memory and latency (90/10 mix, 100 B)', {
      op: 'mix',
      conns: 10000,
      depth: 1,
      peers: ['kvgate'],
    }),
    kind: 'c10k',
  };
}
