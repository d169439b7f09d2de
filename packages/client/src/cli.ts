/**
 * kvgate-cli: the command-line client (the package's `bin`), a Node-only bundle (dist/cli.cjs) that the
 * browser build never includes. It bundles `ws`, so it runs without the optional peer installed.
 *
 * Exit status: 0 done, 1 not found (get, del), 2 usage error, 3 gateway or connection error (its code on
 * stderr). The token is never printed: every message is scrubbed of it.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { KvError } from './errors';
import { isError, type MgetResult } from './types';
import { connect, type KvClient, type WebSocketConstructor } from './ws-client';

const DEFAULT_URL = 'ws://127.0.0.1:8080/v1/ws';

const HELP = `kvgate-cli: a command-line client for the kvgate gateway

usage:
  kvgate-cli get KEY                      print the value's bytes to stdout (exit 1: not found)
  kvgate-cli set KEY [--ttl S] [--flags F] < file
                                          store stdin's bytes
  kvgate-cli del KEY                      delete (exit 1: not found)
  kvgate-cli mget < keys.ndjson           one JSON string key (or {"key": ...}) a line in; one NDJSON
                                          line a key out, as results arrive:
                                          {"key","value"} (UTF-8) | {"key","base64"} | {"key","miss":true}
                                          | {"key","error":{"code","message"}}
  kvgate-cli bench [--seconds N] [--concurrency C] [--keys K] [--value-bytes B] [--set-ratio R] [--json]
                                          a load test: progress on stderr once a second, then a summary
                                          (defaults: 10 s, 64, 1000 keys, 100 bytes, 0.1)

options:
  --url URL          the gateway's WebSocket endpoint (env KVGATE_URL; default ${DEFAULT_URL})
  --token T          API key or JWT (env KVGATE_TOKEN); --token-file F reads it from a file (preferred:
                     a command line is visible to other users)
  --timeout MS       per-call timeout (default 10000)
  --help, -h         this text

exit status: 0 done, 1 not found, 2 usage error, 3 gateway or connection error (its code on stderr)
`;

class UsageError extends Error {}
class NotFound extends Error {}

interface Options {
  url: string;
  token?: string;
  timeout: number;
  ttl?: number;
  flags?: number;
  seconds: number;
  concurrency: number;
  keys: number;
  valueBytes: number;
  setRatio: number;
  json: boolean;
  help: boolean;
}

/** Options that take a value, and the commands that accept each (undefined: every command). */
const VALUED: Record<string, string[] | undefined> = {
  url: undefined,
  token: undefined,
  'token-file': undefined,
  timeout: undefined,
  ttl: ['set'],
  flags: ['set'],
  seconds: ['bench'],
  concurrency: ['bench'],
  keys: ['bench'],
  'value-bytes': ['bench'],
  'set-ratio': ['bench'],
};

function number(name: string, raw: string, min: number, max: number, integer = true): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max)
    throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max} (got ${raw})`);
  return n;
}

export function parseArgs(argv: string[], env: NodeJS.ProcessEnv): { command?: string; args: string[]; o: Options } {
  const positional: string[] = [];
  const given = new Map<string, string>();
  let json = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a === '-h' || a === '--help') {
      help = true;
      continue;
    }
    if (a === '--json') {
      json = true;
      continue;
    }
    if (!a.startsWith('--') || a === '-') {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
    if (!(name in VALUED)) throw new UsageError(`unknown option --${name}`);
    let value: string | undefined = eq < 0 ? argv[++i] : a.slice(eq + 1);
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    if (given.has(name)) throw new UsageError(`--${name} given twice`);
    given.set(name, (value = String(value)));
  }
  const [command, ...args] = positional;
  if (help) return { command, args, o: defaults(env, json, true) };
  for (const name of given.keys()) {
    const only = VALUED[name];
    if (only && !only.includes(command ?? ''))
      throw new UsageError(`--${name} applies to ${only.join(', ')}, not ${command ?? 'no command'}`);
  }
  if (json && command !== 'bench') throw new UsageError('--json applies to bench');
  const o = defaults(env, json, false);
  if (given.has('url')) o.url = given.get('url')!;
  if (!/^wss?:\/\/[^/]/.test(o.url)) throw new UsageError(`--url must be a ws:// or wss:// URL (got ${o.url})`);
  if (given.has('token') && given.has('token-file')) throw new UsageError('give --token or --token-file, not both');
  if (given.has('token')) o.token = given.get('token');
  if (given.has('token-file')) {
    const file = given.get('token-file')!;
    try {
      o.token = readFileSync(file, 'utf8').trim();
    } catch (e) {
      throw new UsageError(`cannot read --token-file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (!o.token) throw new UsageError(`--token-file ${file} is empty`);
  }
  const num = (name: string, min: number, max: number, integer = true): number | undefined =>
    given.has(name) ? number(name, given.get(name)!, min, max, integer) : undefined;
  o.timeout = num('timeout', 0, 3_600_000) ?? o.timeout;
  o.ttl = num('ttl', 0, 2 ** 31 - 1);
  o.flags = num('flags', 0, 2 ** 32 - 1);
  o.seconds = num('seconds', 0.1, 86_400, false) ?? o.seconds;
  o.concurrency = num('concurrency', 1, 4096) ?? o.concurrency;
  o.keys = num('keys', 1, 10_000_000) ?? o.keys;
  o.valueBytes = num('value-bytes', 0, 1024 * 1024 - 1024) ?? o.valueBytes;
  o.setRatio = num('set-ratio', 0, 1, false) ?? o.setRatio;
  return { command, args, o };
}

function defaults(env: NodeJS.ProcessEnv, json: boolean, help: boolean): Options {
  return {
    url: env.KVGATE_URL || DEFAULT_URL,
    token: env.KVGATE_TOKEN || undefined,
    timeout: 10_000,
    seconds: 10,
    concurrency: 64,
    keys: 1000,
    valueBytes: 100,
    setRatio: 0.1,
    json,
    help,
  };
}

// ---- the connection: `ws`, with why an upgrade was refused kept (the client only sees a close) --------

interface Failure {
  status?: number;
  code?: string;
  message?: string;
  errno?: string;
}
let lastFailure: Failure | undefined;

class DiagnosedWebSocket extends WebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols);
    this.on('error', (e: NodeJS.ErrnoException) => {
      lastFailure ??= { errno: e.code, message: e.message };
    });
    this.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const done = (): void => {
        const f: Failure = { status: res.statusCode };
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
            error?: { code?: unknown; message?: unknown };
          };
          if (typeof body.error?.code === 'string') f.code = body.error.code;
          if (typeof body.error?.message === 'string') f.message = body.error.message;
        } catch {
          // not the gateway's JSON: the status says enough
        }
        lastFailure = f;
        this.terminate();
      };
      res.on('data', (c: Buffer) => {
        if ((size += c.length) <= 64 * 1024) chunks.push(c);
      });
      res.on('end', done);
      res.on('error', done);
    });
  }
}

async function open(o: Options): Promise<KvClient> {
  lastFailure = undefined;
  try {
    return await connect(o.url, {
      token: o.token,
      WebSocket: DiagnosedWebSocket as unknown as WebSocketConstructor,
      timeoutMs: o.timeout,
      reconnect: false,
      maxFrameBytes: 2 * 1024 * 1024 - 1024,
    });
  } catch (e) {
    const f = lastFailure as Failure | undefined;
    if (e instanceof KvError && e.code === 'CONNECTION_FAILED' && f) {
      if (f.code)
        throw new KvError(f.code, `the gateway refused the connection (HTTP ${f.status}): ${f.message ?? ''}`);
      if (f.status)
        throw new KvError('CONNECTION_FAILED', `${o.url} answered HTTP ${f.status}, not a WebSocket upgrade`);
      if (f.errno) throw new KvError('CONNECTION_FAILED', `cannot connect to ${o.url}: ${f.errno} (${f.message})`);
    }
    throw e;
  }
}

// ---- output ----------------------------------------------------------------------------------------

async function write(chunk: string | Uint8Array): Promise<void> {
  if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
}

const flushStdout = (): Promise<void> => new Promise((resolve) => process.stdout.write('', () => resolve()));

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function resultLine(key: string, r: MgetResult): string {
  if (isError(r)) return JSON.stringify({ key, error: { code: r.error.code, message: r.error.message } });
  if (!r.hit) return JSON.stringify({ key, miss: true });
  const flags = r.flags ? { flags: r.flags } : {};
  try {
    return JSON.stringify({ key, value: utf8.decode(r.value), ...flags });
  } catch {
    return JSON.stringify({
      key,
      base64: Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength).toString('base64'),
      ...flags,
    });
  }
}

// ---- commands --------------------------------------------------------------------------------------

function oneKey(command: string, args: string[]): string {
  if (args.length !== 1) throw new UsageError(`${command} takes one KEY (got ${args.length} arguments)`);
  return args[0];
}

async function cmdGet(o: Options, args: string[]): Promise<void> {
  const key = oneKey('get', args);
  const kv = await open(o);
  try {
    const v = await kv.get(key);
    if (v === null) throw new NotFound();
    await write(v);
    await flushStdout();
  } finally {
    await kv.close();
  }
}

async function cmdSet(o: Options, args: string[]): Promise<void> {
  const key = oneKey('set', args);
  const value = await readStdin();
  const kv = await open(o);
  try {
    await kv.set(key, value, { ttl: o.ttl, flags: o.flags });
  } finally {
    await kv.close();
  }
}

async function cmdDel(o: Options, args: string[]): Promise<void> {
  const key = oneKey('del', args);
  const kv = await open(o);
  try {
    if (!(await kv.del(key))) throw new NotFound();
  } finally {
    await kv.close();
  }
}

const MGET_BATCH = 256;
const MGET_WINDOW = 8;

/**
 * Reads keys as they come, sends them in batches (what arrived in one read, up to 256 keys; at most 8
 * batches in flight, reading paused meanwhile), and prints each result as it arrives.
 */
async function cmdMget(o: Options, args: string[]): Promise<void> {
  if (args.length) throw new UsageError('mget reads its keys from stdin (NDJSON), not from arguments');
  const kv = await open(o);
  let failure: KvError | undefined;
  try {
    await new Promise<void>((resolve) => {
      const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
      let line = 0;
      let pending: string[] = [];
      let active = 0;
      let ended = false;
      let scheduled = false;
      let paused = false;
      const out: Promise<void>[] = [];
      const finish = (): void => {
        if (ended && active === 0 && (pending.length === 0 || failure)) void Promise.all(out).then(() => resolve());
      };
      const run = async (keys: string[]): Promise<void> => {
        const seen = new Set<number>();
        try {
          for await (const { i, result } of kv.mgetIter(keys)) {
            seen.add(i);
            await write(resultLine(keys[i], result) + '\n');
          }
        } catch (e) {
          const err = e instanceof KvError ? e : new KvError('INTERNAL', String(e));
          failure ??= err;
          for (const [i, key] of keys.entries()) if (!seen.has(i)) await write(resultLine(key, { error: err }) + '\n');
          rl.close();
        }
      };
      const launch = (): void => {
        scheduled = false;
        while (pending.length && active < MGET_WINDOW && !failure) {
          const keys = pending.slice(0, MGET_BATCH);
          pending = pending.slice(MGET_BATCH);
          active++;
          void run(keys).then(() => {
            active--;
            launch();
          });
        }
        if (paused && pending.length < MGET_BATCH && !ended) {
          paused = false;
          rl.resume();
        }
        finish();
      };
      rl.on('line', (text) => {
        line++;
        const t = text.trim();
        if (t === '' || failure) return;
        let key: unknown;
        try {
          const v: unknown = JSON.parse(t);
          key = typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as { key?: unknown }).key : v;
        } catch {
          key = undefined;
        }
        if (typeof key !== 'string') {
          const message = `line ${line}: expected a JSON string or {"key": "..."}`;
          out.push(write(JSON.stringify({ line, error: { code: 'BAD_INPUT', message } }) + '\n'));
          return;
        }
        pending.push(key);
        if (pending.length >= MGET_BATCH * MGET_WINDOW && !paused) {
          paused = true;
          rl.pause();
        }
        if (pending.length >= MGET_BATCH) launch();
        else if (!scheduled) {
          scheduled = true;
          setImmediate(launch);
        }
      });
      rl.on('close', () => {
        ended = true;
        launch();
      });
    });
    await flushStdout();
  } finally {
    await kv.close();
  }
  if (failure) throw failure;
}

/** Latencies in log-spaced buckets (16 a doubling, about 4%), from 1 µs. */
class Histogram {
  private readonly counts = new Float64Array(16 * 40);
  n = 0;
  sum = 0;
  max = 0;
  add(ms: number): void {
    const us = Math.max(1, ms * 1000);
    this.counts[Math.min(this.counts.length - 1, Math.floor(Math.log2(us) * 16))]++;
    this.n++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }
  /** Milliseconds at quantile q (the upper edge of its bucket, at most the max seen). */
  quantile(q: number): number {
    if (!this.n) return 0;
    const rank = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this.max, 2 ** ((i + 1) / 16) / 1000);
    }
    return this.max;
  }
}

const FATAL = new Set(['CLOSED', 'CONNECTION_CLOSED', 'CONNECTION_FAILED', 'AUTH_EXPIRED', 'AUTH_REVOKED']);
const ms = (x: number): string => (x < 10 ? x.toFixed(2) : x.toFixed(1));

async function cmdBench(o: Options, args: string[]): Promise<void> {
  if (args.length) throw new UsageError('bench takes options only');
  const kv = await open(o);
  const prefix = `kvgate-cli-bench:${randomBytes(4).toString('hex')}:`;
  const value = randomBytes(o.valueBytes);
  let fatal: KvError | undefined;
  const c = { ops: 0, gets: 0, sets: 0, hits: 0, misses: 0, errors: 0 };
  const codes: Record<string, number> = {};
  const total = new Histogram();
  let tick = new Histogram();
  let tickErrors = 0;
  let stop = false;
  const onSigint = (): void => void (stop = true);
  process.once('SIGINT', onSigint);
  try {
    // The keys exist before the clock starts, so that gets are hits (a set ratio of 1 needs none).
    if (o.setRatio < 1)
      for (let i = 0; i < o.keys && !stop; i += 500) {
        const items = [];
        for (let j = i; j < Math.min(o.keys, i + 500); j++) items.push({ key: prefix + j, value, ttl: 3600 });
        const r = await kv.mset(items);
        const bad = r.find(isError);
        if (bad) throw bad.error;
      }
    const start = performance.now();
    const end = start + o.seconds * 1000;
    let lastTick = start;
    const progress = (): void => {
      const now = performance.now();
      const rate = (tick.n / (now - lastTick)) * 1000;
      process.stderr.write(
        `kvgate-cli bench: ${((now - start) / 1000).toFixed(0)}s ${rate.toFixed(0)} ops/s ` +
          `p50 ${ms(tick.quantile(0.5))} ms p99 ${ms(tick.quantile(0.99))} ms errors ${tickErrors}\n`,
      );
      lastTick = now;
      tick = new Histogram();
      tickErrors = 0;
    };
    const timer = setInterval(progress, 1000);
    const worker = async (): Promise<void> => {
      while (!stop && !fatal && performance.now() < end) {
        const key = prefix + Math.floor(Math.random() * o.keys);
        const isSet = Math.random() < o.setRatio;
        const t0 = performance.now();
        try {
          if (isSet) {
            c.sets++;
            await kv.set(key, value, { ttl: 3600 });
          } else {
            c.gets++;
            if ((await kv.get(key)) === null) c.misses++;
            else c.hits++;
          }
        } catch (e) {
          const code = e instanceof KvError ? e.code : 'INTERNAL';
          c.errors++;
          tickErrors++;
          codes[code] = (codes[code] ?? 0) + 1;
          if (FATAL.has(code)) fatal = e instanceof KvError ? e : new KvError(code, String(e));
          await new Promise((r) => setImmediate(r)); // let the event loop turn
        }
        const dt = performance.now() - t0;
        total.add(dt);
        tick.add(dt);
        c.ops++;
      }
    };
    await Promise.all(Array.from({ length: o.concurrency }, worker));
    clearInterval(timer);
    const seconds = (performance.now() - start) / 1000;
    const summary = {
      url: o.url,
      seconds: Number(seconds.toFixed(3)),
      concurrency: o.concurrency,
      keys: o.keys,
      valueBytes: o.valueBytes,
      setRatio: o.setRatio,
      ...c,
      opsPerSec: Math.round(c.ops / seconds),
      latencyMs: {
        p50: Number(total.quantile(0.5).toFixed(3)),
        p90: Number(total.quantile(0.9).toFixed(3)),
        p99: Number(total.quantile(0.99).toFixed(3)),
        max: Number(total.max.toFixed(3)),
        mean: Number((total.n ? total.sum / total.n : 0).toFixed(3)),
      },
      errorCodes: codes,
    };
    await write(
      o.json
        ? JSON.stringify(summary) + '\n'
        : `kvgate-cli bench: ${summary.seconds} s, ${c.ops} ops (${summary.opsPerSec} ops/s; ${c.gets} gets, ` +
            `${c.hits} hits, ${c.sets} sets), p50 ${ms(summary.latencyMs.p50)} ms, p90 ${ms(summary.latencyMs.p90)} ms, ` +
            `p99 ${ms(summary.latencyMs.p99)} ms, max ${ms(summary.latencyMs.max)} ms, ${c.errors} errors` +
            `${c.errors ? ' ' + JSON.stringify(codes) : ''}\n`,
    );
    await flushStdout();
  } finally {
    process.off('SIGINT', onSigint);
    await kv.close();
  }
  if (fatal) throw fatal;
}

const COMMANDS: Record<string, (o: Options, args: string[]) => Promise<void>> = {
  get: cmdGet,
  set: cmdSet,
  del: cmdDel,
  mget: cmdMget,
  bench: cmdBench,
};

/** Runs the CLI; resolves to the exit status. */
export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let token: string | undefined;
  const say = (msg: string): void => {
    const safe = token ? msg.split(token).join('***') : msg;
    process.stderr.write(`kvgate-cli: ${safe}\n`);
  };
  try {
    const { command, args, o } = parseArgs(argv, env);
    token = o.token;
    if (o.help) {
      await write(HELP);
      return 0;
    }
    if (!command) throw new UsageError('no command');
    const run = COMMANDS[command];
    if (!run) throw new UsageError(`unknown command ${command}`);
    await run(o, args);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      say(`${e.message} (kvgate-cli --help for usage)`);
      return 2;
    }
    if (e instanceof NotFound) {
      say('not found');
      return 1;
    }
    if (e instanceof KvError) {
      say(`${e.code}: ${e.message}`);
      return 3;
    }
    say(`INTERNAL: ${(e as Error).stack ?? String(e)}`);
    return 3;
  }
}

process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0); // the reader went away (`| head`)
  throw e;
});

void main(process.argv.slice(2), process.env).then((status) => {
  process.exitCode = status;
  // Nothing should be left running; if something is, it must not keep the process alive for long.
  setTimeout(() => process.exit(status), 2000).unref();
});
