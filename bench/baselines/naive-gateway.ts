/**
 * The naive baseline: the same uWebSockets.js front and the same wire protocol as kvgate (docs/PROTOCOL.md),
 * but one memjs call per key and no coalescing, so the benchmark isolates what batching buys.
 *
 *   node dist/bench/baselines/naive-gateway.js --port 8081 --servers 127.0.0.1:11211,127.0.0.1:11212
 *
 * Supports get/set/del/mget/mset/mdel over WebSocket, GET/PUT/DELETE /v1/kv/{key}, POST /v1/mget (msgpack),
 * /healthz and /debug/stats (with the same `gc` fields as kvgate). memjs cannot set client flags: they
 * are stored as 0. Prints "listening on HOST:PORT" when ready; SIGTERM stops it.
 */
import * as memjs from 'memjs';
import { Packr, Unpackr } from 'msgpackr';
import { loadUws, type Uws } from '../lib/uws';
import { watchGc } from '../lib/gc-stats';

const MAX_MESSAGE = 16 * 1024;

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const host = arg('host', '127.0.0.1');
const port = Number(arg('port', '8081'));
const servers = arg('servers', '127.0.0.1:11211');

const uws = loadUws();
const gc = watchGc();
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
const mc = memjs.Client.create(servers, {
  timeout: 5,
  conntimeout: 5,
  retries: 0,
  logger: { log: () => undefined },
} as memjs.ClientOptions);

const counters = { wsMessages: 0, requests: 0, keys: 0, memjsCalls: 0, httpRequests: 0, errors: 0, connections: 0 };

const enum Kind {
  Value = 0,
  ValuePart = 1,
  Miss = 2,
  Ok = 3,
  Error = 4,
  End = 5,
}
type Entry = unknown[];

interface Req {
  id?: unknown;
  op?: unknown;
  key?: unknown;
  value?: unknown;
  keys?: unknown;
  items?: unknown;
  ttl?: unknown;
}

function keyOf(k: unknown): string | null {
  if (typeof k === 'string') return k;
  if (k instanceof Uint8Array) return Buffer.from(k).toString('latin1');
  return null;
}

function badKey(k: string | null): boolean {
  if (k === null) return true;
  const b = Buffer.from(k, 'utf8');
  if (b.length === 0 || b.length > 250) return true;
  for (const c of b) if (c <= 0x20 || c === 0x7f) return true;
  return false;
}

function valueOf(v: unknown): Buffer | null {
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return null;
}

function getOne(key: string): Promise<{ value: Buffer | null; flags: number; err?: string }> {
  counters.memjsCalls++;
  return new Promise((resolve) => {
    mc.get(key, (err, value, flags) => {
      if (err) resolve({ value: null, flags: 0, err: /time/i.test(err.message) ? 'TIMEOUT' : 'SHARD_ERROR' });
      else
        resolve({
          value: value ?? null,
          flags: flags && (flags as Buffer).length === 4 ? (flags as Buffer).readUInt32BE(0) : 0,
        });
    });
  });
}

function setOne(key: string, value: Buffer, ttl: number): Promise<string | null> {
  counters.memjsCalls++;
  return new Promise((resolve) => {
    mc.set(key, value, { expires: ttl }, (err, ok) => resolve(err ? 'SHARD_ERROR' : ok ? null : 'NOT_STORED'));
  });
}

function delOne(key: string): Promise<string | null | 'MISS'> {
  counters.memjsCalls++;
  return new Promise((resolve) => {
    mc.delete(key, (err, ok) => resolve(err ? 'SHARD_ERROR' : ok ? null : 'MISS'));
  });
}

/** Appends the entries for one item's value: whole, or VALUE_PART pieces when it would not fit a message. */
function valueEntries(out: Entry[], id: number, i: number, flags: number, value: Buffer): void {
  if (value.length + 64 <= MAX_MESSAGE) {
    out.push([id, i, Kind.Value, flags, value]);
    return;
  }
  const piece = MAX_MESSAGE - 64;
  for (let off = 0; off < value.length; off += piece) {
    out.push([
      id,
      i,
      Kind.ValuePart,
      flags,
      value.length,
      off,
      value.subarray(off, Math.min(value.length, off + piece)),
    ]);
  }
}

/** Packs entries into messages of at most 16 KiB each. */
function messages(entries: Entry[]): Buffer[] {
  const out: Buffer[] = [];
  let cur: Buffer[] = [];
  let size = 0;
  for (const e of entries) {
    const b = packr.pack(e);
    if (size + b.length > MAX_MESSAGE && cur.length) {
      out.push(Buffer.concat(cur, size));
      cur = [];
      size = 0;
    }
    cur.push(b);
    size += b.length;
  }
  if (cur.length) out.push(Buffer.concat(cur, size));
  return out;
}

async function handle(r: Req): Promise<Entry[]> {
  const id = typeof r.id === 'number' ? r.id : 0;
  const out: Entry[] = [];
  const err = (i: number, code: string, msg: string): void => {
    out.push([id, i, Kind.Error, code, msg]);
  };
  counters.requests++;
  switch (r.op) {
    case 'get': {
      const k = keyOf(r.key);
      if (badKey(k)) err(0, 'BAD_KEY', 'bad key');
      else {
        const g = await getOne(k as string);
        counters.keys++;
        if (g.err) err(0, g.err, 'memcached error');
        else if (g.value) valueEntries(out, id, 0, g.flags, g.value);
        else out.push([id, 0, Kind.Miss]);
      }
      break;
    }
    case 'set': {
      const k = keyOf(r.key);
      const v = valueOf(r.value);
      if (badKey(k)) err(0, 'BAD_KEY', 'bad key');
      else if (!v) err(0, 'BAD_VALUE', 'value is not bytes');
      else {
        const e = await setOne(k as string, v, typeof r.ttl === 'number' ? r.ttl : 0);
        counters.keys++;
        if (e) err(0, e, 'not stored');
        else out.push([id, 0, Kind.Ok]);
      }
      break;
    }
    case 'del': {
      const k = keyOf(r.key);
      if (badKey(k)) err(0, 'BAD_KEY', 'bad key');
      else {
        const e = await delOne(k as string);
        counters.keys++;
        if (e === 'MISS') out.push([id, 0, Kind.Miss]);
        else if (e) err(0, e, 'memcached error');
        else out.push([id, 0, Kind.Ok]);
      }
      break;
    }
    case 'mget':
    case 'mdel': {
      if (!Array.isArray(r.keys)) {
        err(-1, 'BAD_REQUEST', 'keys must be an array');
        break;
      }
      const keys = r.keys.map(keyOf);
      const res = await Promise.all(
        keys.map(async (k, i) => {
          const part: Entry[] = [];
          if (badKey(k)) part.push([id, i, Kind.Error, 'BAD_KEY', 'bad key']);
          else if (r.op === 'mget') {
            const g = await getOne(k as string);
            if (g.err) part.push([id, i, Kind.Error, g.err, 'memcached error']);
            else if (g.value) valueEntries(part, id, i, g.flags, g.value);
            else part.push([id, i, Kind.Miss]);
          } else {
            const e = await delOne(k as string);
            part.push(
              e === 'MISS' ? [id, i, Kind.Miss] : e ? [id, i, Kind.Error, e, 'memcached error'] : [id, i, Kind.Ok],
            );
          }
          return part;
        }),
      );
      counters.keys += keys.length;
      for (const p of res) out.push(...p);
      break;
    }
    case 'mset': {
      if (!Array.isArray(r.items)) {
        err(-1, 'BAD_REQUEST', 'items must be an array');
        break;
      }
      const items = r.items as Req[];
      const res = await Promise.all(
        items.map(async (it, i): Promise<Entry> => {
          const k = keyOf(it?.key);
          const v = valueOf(it?.value);
          if (badKey(k)) return [id, i, Kind.Error, 'BAD_KEY', 'bad key'];
          if (!v) return [id, i, Kind.Error, 'BAD_VALUE', 'value is not bytes'];
          const e = await setOne(k as string, v, typeof it.ttl === 'number' ? it.ttl : 0);
          return e ? [id, i, Kind.Error, e, 'not stored'] : [id, i, Kind.Ok];
        }),
      );
      counters.keys += items.length;
      out.push(...res);
      break;
    }
    default:
      err(-1, 'UNKNOWN_OP', `unknown op ${String(r.op)}`);
  }
  out.push([id, -1, Kind.End]);
  return out;
}

interface Conn {
  open: boolean;
}

const app = uws.App();

app.ws<Conn>('/v1/ws', {
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 0,
  upgrade: (res, req, context) => {
    res.upgrade<Conn>(
      { open: true },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: () => {
    counters.connections++;
  },
  close: (ws) => {
    ws.getUserData().open = false;
    counters.connections--;
  },
  message: (ws, ab, isBinary) => {
    counters.wsMessages++;
    const state = ws.getUserData();
    const send = (entries: Entry[]): void => {
      if (!state.open) return;
      const msgs = messages(entries);
      ws.cork(() => {
        for (const m of msgs) ws.send(m, true);
      });
    };
    if (!isBinary) {
      send([[0, -1, Kind.Error, 'BAD_REQUEST', 'text frames are not accepted']]);
      return;
    }
    let reqs: Req[];
    try {
      reqs = unpackr.unpackMultiple(Buffer.from(new Uint8Array(ab))) as Req[];
    } catch (e) {
      send([[0, -1, Kind.Error, 'BAD_REQUEST', (e as Error).message]]);
      return;
    }
    for (const r of reqs) {
      if (r === null || typeof r !== 'object') {
        send([[0, -1, Kind.Error, 'BAD_REQUEST', 'request is not a map']]);
        continue;
      }
      handle(r).then(send, (e: Error) => {
        counters.errors++;
        send([
          [r.id ?? 0, -1, Kind.Error, 'INTERNAL', e.message],
          [r.id ?? 0, -1, Kind.End],
        ]);
      });
    }
  },
});

function jsonError(res: Uws.HttpResponse, status: string, code: string, message: string): void {
  res
    .writeStatus(status)
    .writeHeader('content-type', 'application/json')
    .end(JSON.stringify({ error: { code, message } }));
}

function readBody(res: Uws.HttpResponse, cb: (body: Buffer) => void): void {
  const parts: Buffer[] = [];
  res.onData((chunk, last) => {
    parts.push(Buffer.from(new Uint8Array(chunk)));
    if (last) cb(Buffer.concat(parts));
  });
}

app.get('/v1/kv/:key', (res, req) => {
  counters.httpRequests++;
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  let key: string;
  try {
    key = decodeURIComponent(req.getParameter(0));
  } catch {
    jsonError(res, '400 Bad Request', 'BAD_KEY', 'bad percent-encoding');
    return;
  }
  if (badKey(key)) {
    jsonError(res, '400 Bad Request', 'BAD_KEY', 'bad key');
    return;
  }
  void getOne(key).then((g) => {
    if (aborted) return;
    res.cork(() => {
      if (g.err) jsonError(res, '502 Bad Gateway', g.err, 'memcached error');
      else if (!g.value) jsonError(res, '404 Not Found', 'NOT_FOUND', 'no such key');
      else
        res
          .writeStatus('200 OK')
          .writeHeader('content-type', 'application/octet-stream')
          .writeHeader('x-kv-flags', String(g.flags))
          .end(g.value);
    });
  });
});

app.put('/v1/kv/:key', (res, req) => {
  counters.httpRequests++;
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  const key = decodeURIComponent(req.getParameter(0));
  const ttl = Number(new URLSearchParams(req.getQuery() ?? '').get('ttl') ?? 0);
  readBody(res, (body) => {
    if (badKey(key)) {
      if (!aborted) res.cork(() => jsonError(res, '400 Bad Request', 'BAD_KEY', 'bad key'));
      return;
    }
    void setOne(key, body, ttl).then((e) => {
      if (aborted) return;
      res.cork(() =>
        e ? jsonError(res, '502 Bad Gateway', e, 'not stored') : res.writeStatus('204 No Content').end(),
      );
    });
  });
});

app.del('/v1/kv/:key', (res, req) => {
  counters.httpRequests++;
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  const key = decodeURIComponent(req.getParameter(0));
  void delOne(key).then((e) => {
    if (aborted) return;
    res.cork(() => {
      if (e === 'MISS') jsonError(res, '404 Not Found', 'NOT_FOUND', 'no such key');
      else if (e) jsonError(res, '502 Bad Gateway', e, 'memcached error');
      else res.writeStatus('204 No Content').end();
    });
  });
});

app.post('/v1/mget', (res) => {
  counters.httpRequests++;
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  readBody(res, (body) => {
    let keys: unknown[];
    try {
      const vals = unpackr.unpackMultiple(body) as unknown[];
      keys = vals.length === 1 && Array.isArray(vals[0]) ? (vals[0] as unknown[]) : vals;
    } catch (e) {
      if (!aborted) res.cork(() => jsonError(res, '400 Bad Request', 'BAD_REQUEST', (e as Error).message));
      return;
    }
    void handle({ id: 0, op: 'mget', keys }).then((entries) => {
      if (aborted) return;
      const out = Buffer.concat(entries.map((e) => packr.pack(e)));
      res.cork(() => res.writeStatus('200 OK').writeHeader('content-type', 'application/msgpack').end(out));
    });
  });
});

app.get('/healthz', (res) => {
  res
    .writeHeader('content-type', 'application/json')
    .end(JSON.stringify({ status: 'ok', shards: servers.split(',').map((s) => ({ server: s, up: true })) }));
});

app.get('/debug/stats', (res) => {
  const mem = process.memoryUsage();
  res.writeHeader('content-type', 'application/json').end(
    JSON.stringify({
      gateway: 'naive',
      gc: { young: gc.young, major: gc.major, incremental: gc.incremental, weak: gc.weak, pauseMs: gc.pauseMs },
      counters,
      memory: { rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external, arrayBuffers: mem.arrayBuffers },
    }),
  );
});

let listenSocket: Uws.us_listen_socket | null = null;
app.listen(host, port, (tok) => {
  if (!tok) {
    console.error(`naive gateway: cannot listen on ${host}:${port}`);
    process.exit(1);
  }
  listenSocket = tok;
  console.log(`naive gateway listening on ${host}:${port} (servers ${servers})`);
});

process.on('SIGTERM', () => {
  if (listenSocket) uws.us_listen_socket_close(listenSocket);
  mc.close();
  process.exit(0);
});
