/**
 * The canary: well-behaved clients that keep writing and reading back their own keys (which no fuzz
 * input touches) over WebSocket and HTTP while the fuzz runs, and check every value byte for byte, every
 * answer for errors, and every round trip against the stall bound.
 */
import { Agent, request } from 'node:http';
import { pack, unpackMultiple } from 'msgpackr';
import WebSocket from 'ws';
import type { FuzzCtx } from './context';
import { sleep } from './context';
import { Rng } from './prng';

function value(rng: Rng): Buffer {
  const n = rng.weighted<number>([
    [70, rng.int(0, 200)],
    [25, rng.int(201, 20_000)],
    [5, rng.int(20_001, 300_000)],
  ]);
  return rng.bytes(n);
}

export async function wsCanary(ctx: FuzzCtx, lane: number, stallMs: number): Promise<void> {
  const r = ctx.report;
  let k = 0;
  const bad = (kind: string, what: string): void => {
    if (!ctx.dead() && !ctx.over()) r.anomaly(kind, { stream: 'canary-ws', n: k, inputKind: 'canary', what });
  };
  while (!ctx.over() && !ctx.dead()) {
    let ws: WebSocket;
    try {
      ws = await new Promise<WebSocket>((resolve, reject) => {
        const w = new WebSocket(`ws://${ctx.host}:${ctx.port}/v1/ws`, { perMessageDeflate: false });
        w.once('open', () => resolve(w));
        w.once('error', reject);
      });
    } catch (e) {
      bad('canary: WebSocket connect failed', (e as Error).message);
      await sleep(500);
      continue;
    }
    const waiting = new Map<number, (entries: unknown[][]) => void>();
    const got = new Map<number, unknown[][]>();
    let closed = false;
    ws.on('message', (data: Buffer) => {
      let entries: unknown[][];
      try {
        entries = unpackMultiple(data) as unknown[][];
      } catch (e) {
        bad('canary: undecodable WebSocket message', (e as Error).message);
        return;
      }
      for (const e of entries) {
        const id = e[0] as number;
        const xs = got.get(id) ?? [];
        xs.push(e);
        got.set(id, xs);
        if (e[2] === 5) {
          got.delete(id);
          waiting.get(id)?.(xs);
          waiting.delete(id);
        }
      }
    });
    ws.on('close', (code) => {
      closed = true;
      if (!ctx.over() && !ctx.dead()) bad('canary: WebSocket closed by the gateway', `close code ${code}`);
      for (const f of waiting.values()) f([]);
    });
    ws.on('error', () => {});
    let id = 1;
    const call = async (req: Record<string, unknown>, what: string): Promise<unknown[][] | null> => {
      const myId = id++;
      const t0 = performance.now();
      const p = new Promise<unknown[][]>((resolve) => waiting.set(myId, resolve));
      ws.send(pack({ id: myId, ...req }));
      let timer: NodeJS.Timeout | undefined;
      const res = await Promise.race([
        p,
        new Promise<null>((resolve) => {
          timer = setTimeout(() => resolve(null), stallMs);
        }),
      ]);
      clearTimeout(timer);
      const ms = performance.now() - t0;
      if (res === null) {
        bad(`canary: WebSocket ${what} not answered within ${stallMs} ms`, `key ${String(req.key)}`);
        waiting.delete(myId);
        return null;
      }
      r.canary.maxLatencyMs = Math.max(r.canary.maxLatencyMs, ms);
      return res;
    };
    while (!closed && !ctx.over() && !ctx.dead()) {
      const rng = Rng.for(ctx.seed, `canary-ws-${lane}`, k++);
      const key = `canary:ws:${lane}:${rng.int(0, 15)}`;
      const v = value(rng);
      const flags = rng.int(0, 0xffffffff);
      const set = await call({ op: 'set', key, value: v, flags }, 'set');
      if (set === null) break;
      if (set.length !== 2 || set[0][2] !== 3) {
        bad('canary: WebSocket set not acknowledged OK', JSON.stringify(set).slice(0, 300));
        continue;
      }
      const get = await call({ op: 'get', key }, 'get');
      if (get === null) break;
      const parts: Buffer[] = [];
      let gotFlags = -1;
      let err: string | null = null;
      for (const e of get) {
        if (e[2] === 0) {
          gotFlags = e[3] as number;
          parts.push(Buffer.from(e[4] as Uint8Array));
        } else if (e[2] === 1) {
          gotFlags = e[3] as number;
          parts.push(Buffer.from(e[6] as Uint8Array));
        } else if (e[2] === 4) err = `${String(e[3])}: ${String(e[4])}`;
        else if (e[2] === 2) err = 'MISS';
      }
      if (err !== null) {
        bad(`canary: WebSocket get answered ${err.split(':')[0]}`, `key ${key}: ${err}`);
        continue;
      }
      const back = Buffer.concat(parts);
      if (!back.equals(v) || gotFlags !== flags)
        bad(
          'canary: WebSocket get returned a wrong value',
          `key ${key}: ${v.length} bytes, flags ${flags} set; ${back.length} bytes, flags ${gotFlags} back`,
        );
      else r.canary.ws++;
    }
    ws.terminate();
  }
}

export async function httpCanary(ctx: FuzzCtx, lane: number, stallMs: number): Promise<void> {
  const r = ctx.report;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let k = 0;
  const bad = (kind: string, what: string): void => {
    if (!ctx.dead() && !ctx.over()) r.anomaly(kind, { stream: 'canary-http', n: k, inputKind: 'canary', what });
  };
  const call = (
    method: string,
    path: string,
    body?: Buffer,
  ): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer } | string> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const req = request(
        { host: ctx.host, port: ctx.port, method, path, agent, headers: body ? { 'content-length': body.length } : {} },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('end', () => {
            clearTimeout(timer);
            r.canary.maxLatencyMs = Math.max(r.canary.maxLatencyMs, performance.now() - t0);
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) });
          });
          res.on('error', (e) => resolve(`response error ${e.message}`));
        },
      );
      const timer = setTimeout(() => {
        req.destroy();
        resolve(`not answered within ${stallMs} ms`);
      }, stallMs);
      req.on('error', (e) => {
        clearTimeout(timer);
        resolve(`request error ${e.message}`);
      });
      req.end(body);
    });
  while (!ctx.over() && !ctx.dead()) {
    const rng = Rng.for(ctx.seed, `canary-http-${lane}`, k++);
    const key = `canary:http:${lane}:${rng.int(0, 15)}`;
    const v = value(rng);
    const flags = rng.int(0, 0xffffffff);
    const put = await call('PUT', `/v1/kv/${encodeURIComponent(key)}?flags=${flags}`, v);
    if (ctx.over() || ctx.dead()) break;
    if (typeof put === 'string') {
      bad(`canary: HTTP PUT ${put.replace(/\d+ ms/, 'the bound')}`, `key ${key}: ${put}`);
      continue;
    }
    if (put.status !== 204) {
      bad(`canary: HTTP PUT answered ${put.status}`, `key ${key}: ${put.body.toString('utf8', 0, 200)}`);
      continue;
    }
    const get = await call('GET', `/v1/kv/${encodeURIComponent(key)}`);
    if (ctx.over() || ctx.dead()) break;
    if (typeof get === 'string') {
      bad(`canary: HTTP GET ${get.replace(/\d+ ms/, 'the bound')}`, `key ${key}: ${get}`);
      continue;
    }
    if (get.status !== 200) {
      bad(`canary: HTTP GET answered ${get.status}`, `key ${key}: ${get.body.toString('utf8', 0, 200)}`);
      continue;
    }
    if (!get.body.equals(v) || String(get.headers['x-kv-flags']) !== String(flags)) {
      bad(
        'canary: HTTP GET returned a wrong value',
        `key ${key}: ${v.length} bytes, flags ${flags} put; ${get.body.length} bytes, flags ${String(get.headers['x-kv-flags'])} back`,
      );
    } else r.canary.http++;
  }
  agent.destroy();
}
