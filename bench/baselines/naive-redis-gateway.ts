/**
 * The naive Redis baselines: the same uWebSockets.js front and wire protocol as kvgate (docs/PROTOCOL.md)
 * and as the naive memcached gateway (naive-gateway.ts), with one ioredis call per request and nothing
 * coalesced by the front: a single-key get is one `GET`, a bulk get one `MGET` of its keys (one request,
 * one call; Redis has the multi-get memjs lacks), a set one `SET`. With `--auto-pipelining` ioredis itself
 * gathers the commands issued in one event-loop turn into one socket write (`enableAutoPipelining`); without
 * it every command is its own write. Values are Buffers end to end.
 *
 *   node dist/bench/baselines/naive-redis-gateway.js --port 8081 --redis 127.0.0.1:6390 [--auto-pipelining]
 *
 * Serves get/set/del/mget/mset over WebSocket, GET /v1/kv/{key}, /healthz and /debug/stats (with the same
 * `gc` fields as kvgate). Prints "listening on HOST:PORT" when ready; SIGTERM stops it.
 */
import Redis from 'ioredis';
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
const [redisHost, redisPort] = arg('redis', '127.0.0.1:6379').split(':');
const autoPipelining = process.argv.includes('--auto-pipelining');

const uws = loadUws();
const gc = watchGc();
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
const redis = new Redis({
  host: redisHost,
  port: Number(redisPort),
  enableAutoPipelining: autoPipelining,
  maxRetriesPerRequest: 1,
  commandTimeout: 5000,
  lazyConnect: true,
});
redis.on('error', () => undefined);

const counters = { wsMessages: 0, requests: 0, keys: 0, redisCalls: 0, httpRequests: 0, errors: 0, connections: 0 };

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
  const n = Buffer.byteLength(k, 'utf8');
  return n === 0 || n > 250;
}

function valueOf(v: unknown): Buffer | null {
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return null;
}

const codeOf = (e: Error): string => (/timed? ?out/i.test(e.message) ? 'TIMEOUT' : 'SHARD_ERROR');

/** Appends the entries for one item's value: whole, or VALUE_PART pieces when it would not fit a message. */
function valueEntries(out: Entry[], id: number, i: number, value: Buffer): void {
  if (value.length + 64 <= MAX_MESSAGE) {
    out.push([id, i, Kind.Value, 0, value]);
    return;
  }
  const piece = MAX_MESSAGE - 64;
  for (let off = 0; off < value.length; off += piece)
    out.push([id, i, Kind.ValuePart, 0, value.length, off, value.subarray(off, Math.min(value.length, off + piece))]);
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
  try {
    switch (r.op) {
      case 'get': {
        const k = keyOf(r.key);
        if (badKey(k)) err(0, 'BAD_KEY', 'bad key');
        else {
          counters.redisCalls++;
          counters.keys++;
          const v = await redis.getBuffer(k as string);
          if (v) valueEntries(out, id, 0, v);
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
          counters.redisCalls++;
          counters.keys++;
          const ttl = typeof r.ttl === 'number' && r.ttl > 0 ? r.ttl : 0;
          await (ttl ? redis.set(k as string, v, 'EX', ttl) : redis.set(k as string, v));
          out.push([id, 0, Kind.Ok]);
        }
        break;
      }
      case 'del': {
        const k = keyOf(r.key);
        if (badKey(k)) err(0, 'BAD_KEY', 'bad key');
        else {
          counters.redisCalls++;
          counters.keys++;
          out.push([id, 0, (await redis.del(k as string)) ? Kind.Ok : Kind.Miss]);
        }
        break;
      }
      case 'mget': {
        if (!Array.isArray(r.keys) || r.keys.length === 0) {
          err(-1, 'BAD_REQUEST', 'keys must be a non-empty array');
          break;
        }
        const keys = r.keys.map(keyOf);
        const good = keys.filter((k) => !badKey(k)) as string[];
        counters.keys += keys.length;
        let vals: (Buffer | null)[] = [];
        if (good.length) {
          counters.redisCalls++;
          vals = await redis.mgetBuffer(good);
        }
        let g = 0;
        for (let i = 0; i < keys.length; i++) {
          if (badKey(keys[i])) {
            err(i, 'BAD_KEY', 'bad key');
            continue;
          }
          const v = vals[g++];
          if (v) valueEntries(out, id, i, v);
          else out.push([id, i, Kind.Miss]);
        }
        break;
      }
      case 'mset': {
        if (!Array.isArray(r.items)) {
          err(-1, 'BAD_REQUEST', 'items must be an array');
          break;
        }
        const items = r.items as Req[];
        counters.keys += items.length;
        const res = await Promise.all(
          items.map(async (it, i): Promise<Entry> => {
            const k = keyOf(it?.key);
            const v = valueOf(it?.value);
            if (badKey(k)) return [id, i, Kind.Error, 'BAD_KEY', 'bad key'];
            if (!v) return [id, i, Kind.Error, 'BAD_VALUE', 'value is not bytes'];
            counters.redisCalls++;
            try {
              await redis.set(k as string, v);
              return [id, i, Kind.Ok];
            } catch (e) {
              return [id, i, Kind.Error, codeOf(e as Error), (e as Error).message];
            }
          }),
        );
        out.push(...res);
        break;
      }
      default:
        err(-1, 'UNKNOWN_OP', `unknown op ${String(r.op)}`);
    }
  } catch (e) {
    counters.errors++;
    err(-1, codeOf(e as Error), (e as Error).message);
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
      void handle(r).then(send);
    }
  },
});

function jsonError(res: Uws.HttpResponse, status: string, code: string, message: string): void {
  res
    .writeStatus(status)
    .writeHeader('content-type', 'application/json')
    .end(JSON.stringify({ error: { code, message } }));
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
  counters.redisCalls++;
  redis.getBuffer(key).then(
    (v) => {
      if (aborted) return;
      res.cork(() => {
        if (!v) jsonError(res, '404 Not Found', 'NOT_FOUND', 'no such key');
        else res.writeStatus('200 OK').writeHeader('content-type', 'application/octet-stream').end(v);
      });
    },
    (e: Error) => {
      if (!aborted) res.cork(() => jsonError(res, '502 Bad Gateway', codeOf(e), e.message));
    },
  );
});

app.get('/healthz', (res) => {
  res
    .writeHeader('content-type', 'application/json')
    .end(
      JSON.stringify({ status: redis.status === 'ready' ? 'ok' : redis.status, redis: `${redisHost}:${redisPort}` }),
    );
});

app.get('/debug/stats', (res) => {
  const mem = process.memoryUsage();
  res.writeHeader('content-type', 'application/json').end(
    JSON.stringify({
      gateway: autoPipelining ? 'naive-redis-autopipelining' : 'naive-redis',
      gc: { young: gc.young, major: gc.major, incremental: gc.incremental, weak: gc.weak, pauseMs: gc.pauseMs },
      counters,
      memory: { rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external, arrayBuffers: mem.arrayBuffers },
    }),
  );
});

let listenSocket: Uws.us_listen_socket | null = null;
redis.connect().then(
  () => {
    app.listen(host, port, (tok) => {
      if (!tok) {
        console.error(`naive redis gateway: cannot listen on ${host}:${port}`);
        process.exit(1);
      }
      listenSocket = tok;
      console.log(
        `naive redis gateway listening on ${host}:${port} (redis ${redisHost}:${redisPort}, auto-pipelining ${autoPipelining ? 'on' : 'off'})`,
      );
    });
  },
  (e: Error) => {
    console.error(`naive redis gateway: cannot connect to redis ${redisHost}:${redisPort}: ${e.message}`);
    process.exit(1);
  },
);

process.on('SIGTERM', () => {
  if (listenSocket) uws.us_listen_socket_close(listenSocket);
  redis.disconnect();
  process.exit(0);
});
