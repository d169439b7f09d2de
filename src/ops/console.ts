/**
 * The operator's console on the admin listener (docs/OPERATIONS.md, "The console"): a page of plain
 * HTML, CSS and JS (the files in ./console/, copied next to this module by scripts/build.sh and read once,
 * at the first request) and the JSON it reads:
 *  - GET    /console, /console/console.js, /console/console.css  the page (no credential: nothing secret)
 *  - GET    /console/data            counters and histograms of every pool and shard, connections, memory
 *  - GET    /console/placement?key=  which pool and shard own a key, and why (route prefix, ketama point)
 *  - GET    /console/key?key=        the value a key holds; PUT sets it (the body, `ttl`, `flags`); DELETE
 * The data routes want the admin role (admin.ts). consolePageRoutes serves the page alone and consoleApi
 * builds the data and key routes, so that a supervisor of workers (cluster/supervisor.ts), which holds no
 * pools, serves the same page, sums its workers' `data()` (console-merge.ts) and hands the key routes to
 * one worker (consoleForwardRoutes, answered there by `call`). Keys are the stored keys, as the fleet sees
 * them (no credential's namespace is added), and go through the gateway's own router like any client's
 * item: one small Request collects the one result. Counters are sent as they are; the page turns them into rates.
 *
 * Why files rather than strings built into the code: the page stays a page (formatted and linted as HTML,
 * CSS and JS, readable in a browser's source view), and the build only copies a folder. A missing file
 * (a build that skipped the copy) answers 500 with the path it looked for instead of failing the start.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorTable, type ErrorCode } from '../core/errors';
import type { CoalescerStats } from '../core/coalescer';
import type { Histogram } from '../core/histogram';
import type { RouteSpec } from '../core/pools';
import { Request } from '../core/request';
import type { Pool, Router } from '../core/router';
import type { Tally } from '../core/tally';
import type { AdminReply, AdminRoute } from './admin';
import type { KetamaPlacement } from '../backends/memcached';

/** What the console reads; functions, because a reload replaces pools, routes and limits. */
export interface ConsoleSources {
  router: Router;
  pools(): readonly Pool[];
  routes(): readonly RouteSpec[];
  defaultPool(): string;
  tally: Tally;
  connections(): { ws: number; http: number; max: number; refused: number; kicked: number };
  buffered(): { used: number; limit: number };
  buffers(): { inUse: number; free: number; allocated: number };
  generation(): number;
  draining(): boolean;
  maxValueBytes(): number;
  /** Null for a pool that is not placed on a ketama ring. */
  ketama(pool: Pool, key: Buffer): KetamaPlacement | null;
  spread(pool: Pool): { server: string; share: number; points: number }[] | null;
}

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/** On every console answer: never cached, never framed, never sniffed into another type. */
const COMMON: readonly (readonly [string, string])[] = [
  ['cache-control', 'no-store'],
  ['x-frame-options', 'DENY'],
  ['x-content-type-options', 'nosniff'],
  ['referrer-policy', 'no-referrer'],
];
const PAGE_HEADERS = [...COMMON, ['content-security-policy', CSP] as const];

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
};

const json = (status: number, body: unknown): AdminReply => ({
  status,
  contentType: 'application/json',
  body: JSON.stringify(body),
  headers: COMMON,
});

const fail = (code: ErrorCode, message?: string, extra: Record<string, unknown> = {}): AdminReply =>
  json(ErrorTable[code].status, {
    ...extra,
    error: { code, message: message ?? ErrorTable[code].message, retry: ErrorTable[code].retry },
  });

const hist = (h: Histogram): ConsoleHist => ({
  bounds: h.bounds,
  counts: Array.from(h.counts),
  sum: h.sum,
  count: h.count,
});

/** One key's one op through the router, answered once: a value (gathered from its parts), a miss, ok, an error. */
class ConsoleRequest extends Request {
  outcome: { kind: 'value'; flags: number; value: Buffer } | { kind: 'miss' | 'ok' } | null = null;
  failure: { code: ErrorCode; message?: string } | null = null;
  private got: Buffer | null = null;
  readonly done: Promise<void>;
  private resolve!: () => void;

  constructor() {
    super();
    this.done = new Promise((r) => (this.resolve = r));
  }
  protected onValue(_i: number, flags: number, total: number, offset: number, buf: Buffer, off: number, len: number) {
    if (offset === 0) this.got = Buffer.alloc(total);
    buf.copy(this.got!, offset, off, off + len);
    if (offset + len === total) this.outcome = { kind: 'value', flags, value: this.got! };
  }
  protected onMiss(): void {
    this.outcome = { kind: 'miss' };
  }
  protected onOk(): void {
    this.outcome = { kind: 'ok' };
  }
  protected onError(_i: number, code: ErrorCode, message?: string): void {
    this.failure = { code, message };
  }
  protected onFinish(): void {
    this.resolve();
  }
}

/** The value as text when it is UTF-8, else base64 (a page shows text; bytes must survive either way). */
function shown(v: Buffer): { value: string; encoding: 'utf8' | 'base64' } {
  const text = v.toString('utf8');
  return Buffer.from(text, 'utf8').equals(v)
    ? { value: text, encoding: 'utf8' }
    : { value: v.toString('base64'), encoding: 'base64' };
}

const hex32 = (n: number): string => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;

/** The page's files as routes (no credential: nothing secret), read from `dir` once, at the first request. */
export function consolePageRoutes(dir = join(__dirname, 'console')): AdminRoute[] {
  const files = new Map<string, Buffer>();
  const file = (name: string): AdminReply => {
    let body = files.get(name);
    if (body === undefined) {
      const path = join(dir, name);
      try {
        body = readFileSync(path);
      } catch {
        return json(500, {
          error: { code: 'INTERNAL', message: `the console file ${path} is missing (scripts/build.sh copies it)` },
        });
      }
      files.set(name, body);
    }
    return { status: 200, contentType: FILES[name], body, headers: PAGE_HEADERS };
  };
  return [
    { method: 'get', path: '/console', open: true, handle: async () => file('index.html') },
    { method: 'get', path: '/console/', open: true, handle: async () => file('index.html') },
    { method: 'get', path: '/console/console.js', open: true, handle: async () => file('console.js') },
    { method: 'get', path: '/console/console.css', open: true, handle: async () => file('console.css') },
  ];
}

/** A histogram as the console sends it: per-bucket counts (not cumulative, the last one +Inf). */
export interface ConsoleHist {
  bounds: readonly number[];
  counts: number[];
  sum: number;
  count: number;
}

export interface ConsoleShard extends CoalescerStats {
  rtt: ConsoleHist;
}

export interface ConsolePool {
  name: string;
  backend: string;
  prefixes: string[];
  clientKeys: number;
  flushKeys: ConsoleHist;
  flushHold: ConsoleHist;
  ring: { server: string; share: number; points: number }[] | null;
  shards: ConsoleShard[];
}

/** What GET /console/data answers (docs/OPERATIONS.md, "The endpoints"). */
export interface ConsoleData {
  at: number;
  uptimeMs: number;
  generation: number;
  draining: boolean;
  defaultPool: string;
  routes: readonly RouteSpec[];
  items: Record<string, Record<string, number>>;
  connections: ReturnType<ConsoleSources['connections']>;
  buffered: ReturnType<ConsoleSources['buffered']>;
  buffers: ReturnType<ConsoleSources['buffers']>;
  memory: NodeJS.MemoryUsage;
  pools: ConsolePool[];
  /** Only from a supervisor (console-merge.ts): each worker's health, and why one did not answer. */
  workers?: { name: string; pid: number; up: boolean; restarts: number; error?: string }[];
}

/** The routes one process of the gateway answers itself: everything but the page and /console/data. */
const KEY_ROUTES: readonly { method: AdminRoute['method']; path: string; body?: true }[] = [
  { method: 'get', path: '/console/placement' },
  { method: 'get', path: '/console/key' },
  { method: 'put', path: '/console/key', body: true },
  { method: 'del', path: '/console/key' },
];

/** One request to a key route, as a supervisor hands it to a worker (cluster/protocol.ts). */
export interface ConsoleCall {
  method: AdminRoute['method'];
  path: string;
  query: string;
  body: Buffer;
}

/** One gateway's console: the data it sends, and its data and key routes (not the page: consolePageRoutes). */
export interface ConsoleApi {
  data(): ConsoleData;
  readonly routes: readonly AdminRoute[];
  /** Answers a call a supervisor forwards, as the admin listener would (413 over the route's maxBody). */
  call(c: ConsoleCall): Promise<AdminReply>;
}

/** The body limit admin.ts applies, applied again to a forwarded call (a reload may have lowered it). */
const tooLarge = (max: number): AdminReply => fail('TOO_LARGE', `the body is over ${max} bytes`);

export function consoleApi(src: ConsoleSources): ConsoleApi {
  const data = (): ConsoleData => {
    const items: Record<string, Record<string, number>> = {};
    src.tally.forEach((requests, _front, op, outcome, n) => {
      if (requests) return;
      const o = (items[op] ??= {});
      o[outcome] = (o[outcome] ?? 0) + n;
    });
    const routes = src.routes();
    return {
      at: Date.now(),
      uptimeMs: Math.round(process.uptime() * 1000),
      generation: src.generation(),
      draining: src.draining(),
      defaultPool: src.defaultPool(),
      routes,
      items,
      connections: src.connections(),
      buffered: src.buffered(),
      buffers: src.buffers(),
      memory: process.memoryUsage(),
      pools: src.pools().map((p) => {
        const st = p.coalescer.stats();
        return {
          name: p.name,
          backend: p.backend.kind,
          prefixes: routes.filter((r) => r.pool === p.name).map((r) => r.prefix),
          clientKeys: p.coalescer.keysIn,
          flushKeys: hist(p.coalescer.flushOps),
          flushHold: hist(p.coalescer.flushHold),
          ring: src.spread(p),
          shards: p.backend.shards.map((s, k) => ({ ...st[k], rtt: hist(s.rtt) })),
        };
      }),
    };
  };

  /** The key of `?key=` as bytes, or an answer refusing it. */
  const keyOf = (query: string): Buffer | AdminReply => {
    const k = new URLSearchParams(query).get('key');
    if (k === null || k === '') return fail('BAD_REQUEST', 'give the key as ?key=');
    return Buffer.from(k, 'utf8');
  };

  const placement = (key: Buffer): Record<string, unknown> => {
    const { pool, prefix } = src.router.routeOf(key);
    const ketama = src.ketama(pool, key);
    const shard = ketama?.shard ?? pool.backend.shardOf(key, 0, key.length);
    const s = pool.backend.shards[shard];
    return {
      key: key.toString('utf8'),
      keyBytes: key.length,
      pool: pool.name,
      backend: pool.backend.kind,
      route:
        prefix === null
          ? { prefix: null, why: `no route prefix matches: the default pool ${pool.name}` }
          : { prefix, why: `the longest route prefix the key starts with is ${JSON.stringify(prefix)}` },
      shard: { index: shard, label: s.label, up: s.up },
      ketama:
        ketama === null
          ? null
          : {
              ...ketama,
              keyHashHex: hex32(ketama.keyHash),
              pointHex: hex32(ketama.point),
              why:
                `${ketama.hash}(key) = ${hex32(ketama.keyHash)}; the first of the ring's ${ketama.points} points at or ` +
                `after it is #${ketama.pointIndex} (${hex32(ketama.point)}), a point of ${ketama.ringServer}` +
                (ketama.configuredRing ? '' : ' (on the ring without the ejected shards)'),
            },
    };
  };

  /** Runs one op on `key` through the router and waits for its one result. */
  const run = async (op: (r: ConsoleRequest) => void): Promise<ConsoleRequest> => {
    const r = new ConsoleRequest();
    op(r);
    r.seal();
    await r.done;
    return r;
  };

  const withKey =
    (fn: (key: Buffer, query: URLSearchParams, body: Buffer) => Promise<AdminReply>) =>
    async ({ query, body }: { query: string; body: Buffer }): Promise<AdminReply> => {
      const key = keyOf(query);
      if (!Buffer.isBuffer(key)) return key;
      if (src.draining()) return fail('SHUTTING_DOWN');
      return fn(key, new URLSearchParams(query), body);
    };

  const answer = (
    r: ConsoleRequest,
    where: Record<string, unknown>,
    ok: (r: ConsoleRequest) => unknown,
  ): AdminReply => {
    if (r.failure !== null && r.failure.code !== 'NOT_FOUND') return fail(r.failure.code, r.failure.message, where);
    return json(200, { ...where, ...(ok(r) as object) });
  };

  const num = (q: URLSearchParams, name: string): number => {
    const v = q.get(name);
    return v === null || v === '' ? 0 : Number(v);
  };

  const keyRoutes: AdminRoute[] = [
    {
      method: 'get',
      path: '/console/placement',
      handle: withKey(async (key) => json(200, placement(key))),
    },
    {
      method: 'get',
      path: '/console/key',
      handle: withKey(async (key) => {
        const r = await run((req) => src.router.get(req, 0, key, 0, key.length, 0));
        return answer(r, placement(key), (x) =>
          x.outcome?.kind === 'value'
            ? { found: true, flags: x.outcome.flags, bytes: x.outcome.value.length, ...shown(x.outcome.value) }
            : { found: false },
        );
      }),
    },
    {
      method: 'put',
      path: '/console/key',
      get maxBody() {
        return src.maxValueBytes();
      },
      handle: withKey(async (key, q, body) => {
        const ttl = num(q, 'ttl');
        const flags = num(q, 'flags');
        const r = await run((req) => src.router.set(req, 0, key, 0, key.length, ttl, flags, body, 0, body.length, 0));
        return answer(r, placement(key), () => ({ stored: true, bytes: body.length, ttl, flags }));
      }),
    },
    {
      method: 'del',
      path: '/console/key',
      handle: withKey(async (key) => {
        const r = await run((req) => src.router.del(req, 0, key, 0, key.length, 0));
        return answer(r, placement(key), (x) => ({ deleted: x.outcome?.kind === 'ok' }));
      }),
    },
  ];

  const routes: AdminRoute[] = [
    { method: 'get', path: '/console/data', handle: async () => json(200, data()) },
    ...keyRoutes,
  ];
  return {
    data,
    routes,
    async call(c) {
      const r = keyRoutes.find((k) => k.method === c.method && k.path === c.path);
      if (r === undefined) return fail('NO_ROUTE', `no console route ${c.method} ${c.path}`);
      const max = r.maxBody;
      if (max !== undefined && c.body.length > max) return tooLarge(max);
      return r.handle({ query: c.query, body: max === undefined ? Buffer.alloc(0) : c.body });
    },
  };
}

/** The whole console of one gateway: the page, /console/data and the key routes. */
export function consoleRoutes(api: ConsoleApi, dir = join(__dirname, 'console')): AdminRoute[] {
  return [...consolePageRoutes(dir), ...api.routes];
}

/**
 * The key routes of a supervisor of workers (which holds no pools): each request goes whole to one worker
 * (`forward`), whose answer is sent back as it is. Placement and values are the same in every worker (the
 * same configuration, the same fleet). `maxBody` is the supervisor's bound on a PUT; the worker applies its
 * own (running) limit again.
 */
export function consoleForwardRoutes(
  forward: (c: ConsoleCall) => Promise<AdminReply>,
  maxBody: () => number,
): AdminRoute[] {
  return KEY_ROUTES.map(({ method, path, body }) => {
    const r: AdminRoute = { method, path, handle: ({ query, body: b }) => forward({ method, path, query, body: b }) };
    // A getter, not a value: admin.ts reads it per request.
    if (body === true) Object.defineProperty(r, 'maxBody', { get: maxBody, enumerable: true });
    return r;
  });
}

/** A console JSON answer (the common headers) for whoever builds one outside this module. */
export const consoleJson = json;
