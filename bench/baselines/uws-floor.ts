/**
 * The uWS floor: what a WebSocket front costs when the data costs nothing. The same uWebSockets.js
 * binding and the same wire protocol as kvgate (docs/PROTOCOL.md, the subset the load generator speaks:
 * get, set, mget, mset), answered from a Map in this process: no backend, no coalescing, no flow control,
 * no authentication. Each message is read in place (a hand-written msgpack walk, no object per request)
 * and answered by one `send` from inside the message handler (which uWS corks), so the figure is uWS's
 * per-message cost plus the least work that can still answer with the right value. kvgate's CPU per key
 * is compared against this peer's in the same run (issue 12: "within 1.3x of the uWS floor").
 *
 *   node dist/bench/baselines/uws-floor.js --port 8082
 *
 * Prints "listening on HOST:PORT" when ready; /debug/stats has the same `gc` fields as kvgate; SIGTERM stops it.
 */
import { loadUws, type Uws } from '../lib/uws';
import { watchGc } from '../lib/gc-stats';
import { Reader, Writer, arrayHeader, binHeader, uint } from '../lib/mp';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

/** Entry kinds of docs/PROTOCOL.md's response entries `[id, i, kind, ...]`. */
const enum Kind {
  Value = 0,
  Miss = 2,
  Ok = 3,
  Error = 4,
  End = 5,
}

/** msgpack -1 as a negative fixint: the item index of a whole-request entry (END, a request error). */
const MINUS_ONE = 0xff;

const host = arg('host', '127.0.0.1');
const port = Number(arg('port', '8082'));
const uws = loadUws();
const gc = watchGc();
const store = new Map<string, Buffer>();
const counters = { wsMessages: 0, requests: 0, keys: 0, connections: 0, errors: 0 };

const r = new Reader();
const out = new Writer(64 * 1024);

const enum Op {
  None,
  Get,
  Set,
  Mget,
  Mset,
}

/** Compares the last str read (r.s..r.e) with an ASCII name, without a string. */
function is(name: string): boolean {
  if (r.e - r.s !== name.length) return false;
  for (let k = 0; k < name.length; k++) if (r.buf[r.s + k] !== name.charCodeAt(k)) return false;
  return true;
}

function entryHead(id: number, i: number, kind: Kind, fields: number): void {
  arrayHeader(out, fields);
  uint(out, id);
  if (i < 0) out.byte(MINUS_ONE);
  else uint(out, i);
  uint(out, kind);
}

function value(id: number, i: number, key: string): void {
  const v = store.get(key);
  if (v === undefined) {
    entryHead(id, i, Kind.Miss, 3);
    return;
  }
  entryHead(id, i, Kind.Value, 5);
  uint(out, 0);
  binHeader(out, v.length);
  out.bytes(v);
}

/** The bytes of the last bin/str read, copied (the message's ArrayBuffer is reused by uWS). */
const copyRead = (): Buffer => Buffer.from(r.buf.subarray(r.s, r.e));
const keyRead = (): string => r.buf.toString('latin1', r.s, r.e);

/** One request map at r.pos: answers it into `out`. */
function request(): void {
  const n = r.mapLen();
  let id = 0;
  let op = Op.None;
  let key = '';
  let val: Buffer | null = null;
  let listAt = -1;
  for (let f = 0; f < n; f++) {
    r.bytes();
    if (is('id')) id = r.int();
    else if (is('op')) {
      r.bytes();
      op = is('get') ? Op.Get : is('set') ? Op.Set : is('mget') ? Op.Mget : is('mset') ? Op.Mset : Op.None;
    } else if (is('key')) {
      r.bytes();
      key = keyRead();
    } else if (is('value')) {
      r.bytes();
      val = copyRead();
    } else if (is('keys') || is('items')) {
      listAt = r.pos;
      r.skip();
    } else r.skip();
  }
  counters.requests++;
  const after = r.pos;
  switch (op) {
    case Op.Get:
      counters.keys++;
      value(id, 0, key);
      break;
    case Op.Set:
      counters.keys++;
      if (val !== null) store.set(key, val);
      entryHead(id, 0, Kind.Ok, 3);
      break;
    case Op.Mget: {
      r.pos = listAt;
      const count = r.arrayLen();
      for (let i = 0; i < count; i++) {
        r.bytes();
        value(id, i, keyRead());
      }
      counters.keys += count;
      break;
    }
    case Op.Mset: {
      r.pos = listAt;
      const count = r.arrayLen();
      for (let i = 0; i < count; i++) {
        const fields = r.mapLen();
        let k = '';
        let v: Buffer | null = null;
        for (let f = 0; f < fields; f++) {
          r.bytes();
          if (is('key')) {
            r.bytes();
            k = keyRead();
          } else if (is('value')) {
            r.bytes();
            v = copyRead();
          } else r.skip();
        }
        if (v !== null) store.set(k, v);
        entryHead(id, i, Kind.Ok, 3);
      }
      counters.keys += count;
      break;
    }
    default:
      counters.errors++;
      entryHead(id, -1, Kind.Error, 5);
      binHeader(out, 0);
      binHeader(out, 0);
  }
  entryHead(id, -1, Kind.End, 3);
  r.pos = after;
}

const app = uws.App();

app.ws('/v1/ws', {
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 0,
  open: () => {
    counters.connections++;
  },
  close: () => {
    counters.connections--;
  },
  message: (ws, ab) => {
    counters.wsMessages++;
    const buf = Buffer.from(ab);
    r.reset(buf, 0, buf.length);
    out.pos = 0;
    try {
      while (r.pos < r.end) request();
    } catch (e) {
      counters.errors++;
      ws.end(1008, (e as Error).message.slice(0, 100));
      return;
    }
    ws.send(out.buf.subarray(0, out.pos), true);
  },
});

app.get('/healthz', (res: Uws.HttpResponse) => {
  res.writeHeader('content-type', 'application/json').end('{"status":"ok"}');
});

app.get('/debug/stats', (res: Uws.HttpResponse) => {
  const mem = process.memoryUsage();
  res.writeHeader('content-type', 'application/json').end(
    JSON.stringify({
      gateway: 'uws-floor',
      gc: { young: gc.young, major: gc.major, incremental: gc.incremental, weak: gc.weak, pauseMs: gc.pauseMs },
      counters,
      keys: store.size,
      memory: { rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external, arrayBuffers: mem.arrayBuffers },
    }),
  );
});

let listenSocket: Uws.us_listen_socket | null = null;
app.listen(host, port, (tok) => {
  if (!tok) {
    console.error(`uws floor: cannot listen on ${host}:${port}`);
    process.exit(1);
  }
  listenSocket = tok;
  console.log(`uws floor listening on ${host}:${port}`);
});

process.on('SIGTERM', () => {
  if (listenSocket) uws.us_listen_socket_close(listenSocket);
  process.exit(0);
});
