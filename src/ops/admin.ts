/**
 * The admin listener: a uWS app of its own on admin.host:admin.port (loopback by default), never the
 * public port. It serves what an operator needs and a client must not see:
 *  - GET  /metrics       Prometheus text (prom-client), or whatever `metrics()` gives
 *  - GET  /debug/stats   JSON counters (when debugStats is on)
 *  - GET  /readyz        200 when the gateway takes traffic (listening, not draining, a shard up), else 503
 *  - POST /admin/reload  re-read and apply the config file; 200 with what changed, 400/409 with why not
 *  - `routes`            more routes of whoever starts it (the console, ops/console.ts), each with its
 *                        own answers; this file knows only their method, path, body and role
 * The handlers are given by whoever starts it: one gateway (gateway.ts), or a supervisor that asks its
 * workers (cluster/). With authentication on, every route but /readyz (a probe, which tells nothing a
 * client could use) needs a credential with the admin role: 401 without one, 403 with a client's.
 */
import { statusLine } from '../stream/http-out';
import { uws, type HttpRequest, type HttpResponse, type us_listen_socket } from '../uws';

/** What the admin listener asks of the `Authorization` header of a request. */
export type AdminVerdict = 'ok' | 'unauthorized' | 'forbidden';

export interface AdminAnswer {
  status: number;
  body: unknown;
}

/** What an extra route is given of its request (read at once: uWS's request object lives one call). */
export interface AdminCall {
  /** The raw query string, without `?` ('' when none). */
  query: string;
  /** The whole body (empty unless the route reads one). */
  body: Buffer;
}

/** An extra route's answer: status, content type, body, and any more headers (security, caching). */
export interface AdminReply {
  status: number;
  contentType: string;
  body: string | Buffer;
  headers?: readonly (readonly [string, string])[];
}

export interface AdminRoute {
  method: 'get' | 'put' | 'del' | 'post';
  /** A uWS pattern (`/console/data`). */
  path: string;
  /** Served without a credential (files that hold nothing secret, such as a page's HTML); else admin role. */
  open?: boolean;
  /** Reads the body first, refusing one over this many bytes with 413 (absent: the body is not read). */
  maxBody?: number;
  handle(call: AdminCall): Promise<AdminReply>;
}

export interface AdminHandlers {
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Absent: /debug/stats is not served (debugStats off). */
  stats?(): Promise<unknown>;
  ready(): Promise<AdminAnswer>;
  reload(): Promise<AdminAnswer>;
  /** Decides on a request's `Authorization` header (absent: every request may). */
  authorize?(authorization: string): AdminVerdict;
  /** More routes, mounted before the 404 for everything else. */
  routes?: readonly AdminRoute[];
}

export interface AdminServer {
  readonly port: number;
  close(): void;
}

function answer(res: HttpResponse, state: { aborted: boolean }, status: number, type: string, body: string): void {
  if (state.aborted) return;
  res.cork(() => res.writeStatus(statusLine(status)).writeHeader('content-type', type).end(body));
}

const json = (res: HttpResponse, state: { aborted: boolean }, a: AdminAnswer): void =>
  answer(res, state, a.status, 'application/json', JSON.stringify(a.body));

/** Runs an async handler for one request; a handler that throws answers 500 with its message. */
function serve(res: HttpResponse, run: (state: { aborted: boolean }) => Promise<void>): void {
  const state = { aborted: false };
  res.onAborted(() => {
    state.aborted = true;
  });
  run(state).catch((e: unknown) =>
    json(res, state, { status: 500, body: { error: { code: 'INTERNAL', message: (e as Error).message } } }),
  );
}

const REFUSALS = {
  unauthorized: {
    status: 401,
    body: JSON.stringify({
      error: { code: 'UNAUTHORIZED', message: 'a credential with the admin role is required', retry: 'no' },
    }),
  },
  forbidden: {
    status: 403,
    body: JSON.stringify({ error: { code: 'FORBIDDEN', message: 'this credential has no admin role', retry: 'no' } }),
  },
} as const;

/**
 * The body of a request, copied out of uWS's chunks (each is detached when its callback returns); null,
 * once the body has ended, when it is longer than `max`.
 */
function readBody(res: HttpResponse, max: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let n = 0;
    res.onData((chunk, last) => {
      n += chunk.byteLength;
      if (n <= max) parts.push(Buffer.from(new Uint8Array(chunk).slice()));
      if (last) resolve(n <= max ? Buffer.concat(parts) : null);
    });
  });
}

export function startAdmin(host: string, port: number, h: AdminHandlers): Promise<AdminServer> {
  const app = uws.App();
  /** False after refusing the request (read synchronously: uWS's request object lives only this call). */
  const allowed = (res: HttpResponse, req: HttpRequest): boolean => {
    if (h.authorize === undefined) return true;
    const v = h.authorize(req.getHeader('authorization'));
    if (v === 'ok') return true;
    const r = REFUSALS[v];
    res.cork(() => {
      res
        .writeStatus(statusLine(r.status))
        .writeHeader('content-type', 'application/json')
        .writeHeader('cache-control', 'no-store');
      if (v === 'unauthorized') res.writeHeader('www-authenticate', 'Bearer realm="kvgate-admin"');
      res.end(r.body);
    });
    return false;
  };
  const extra = (res: HttpResponse, req: HttpRequest, r: AdminRoute): void => {
    if (r.open !== true && !allowed(res, req)) return;
    const query = req.getQuery() ?? '';
    serve(res, async (st) => {
      const body = r.maxBody === undefined ? Buffer.alloc(0) : await readBody(res, r.maxBody);
      if (body === null) {
        const msg = { error: { code: 'TOO_LARGE', message: `the body is over ${r.maxBody} bytes`, retry: 'no' } };
        if (!st.aborted) res.cork(() => res.writeStatus(statusLine(413)).end(JSON.stringify(msg), true));
        return;
      }
      const a = await r.handle({ query, body });
      if (st.aborted) return;
      res.cork(() => {
        res.writeStatus(statusLine(a.status)).writeHeader('content-type', a.contentType);
        for (const [k, v] of a.headers ?? []) res.writeHeader(k, v);
        res.end(a.body);
      });
    });
  };
  app.get('/metrics', (res, req) => {
    if (!allowed(res, req)) return;
    serve(res, async (st) => {
      const m = await h.metrics();
      answer(res, st, 200, m.contentType, m.body);
    });
  });
  const stats = h.stats;
  if (stats !== undefined)
    app.get('/debug/stats', (res, req) => {
      if (allowed(res, req)) serve(res, async (st) => json(res, st, { status: 200, body: await stats() }));
    });
  app.get('/readyz', (res) => serve(res, async (st) => json(res, st, await h.ready())));
  app.post('/admin/reload', (res, req) => {
    if (!allowed(res, req)) return;
    // The body is not used; it is read to its end so that the answer comes after it.
    serve(res, async (st) => {
      await new Promise<void>((resolve) => res.onData((_chunk, last) => last && resolve()));
      json(res, st, await h.reload());
    });
  });
  for (const r of h.routes ?? []) app[r.method](r.path, (res, req) => extra(res, req, r));
  app.any('/*', (res) =>
    answer(res, { aborted: false }, 404, 'application/json', JSON.stringify({ error: { code: 'NO_ROUTE' } })),
  );
  return new Promise((resolve, reject) => {
    app.listen(host, port, (ls: us_listen_socket | false) => {
      if (!ls) {
        reject(new Error(`kvgate: cannot listen on the admin address ${host}:${port} (in use?)`));
        return;
      }
      resolve({
        port: uws.us_socket_local_port(ls as never) as number,
        close: () => uws.us_listen_socket_close(ls),
      });
    });
  });
}
