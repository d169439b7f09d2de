/**
 * Raw memcached text-protocol helpers for tests that check bytes on the servers themselves (no gateway
 * in between): a reply parser that honours VALUE byte counts (so values may hold "\r\nEND\r\n"), a
 * pipelined request/reply exchange, and keys spread over the shards of a ketama ring.
 */
import { createConnection } from 'node:net';
import type { KetamaRing } from '../../src/backends/memcached/ketama';

export interface McValue {
  key: string;
  flags: number;
  value: Buffer;
}
export type McReply = { kind: 'line'; line: string } | { kind: 'values'; values: McValue[] };

/**
 * Parses as many whole replies as `buf` holds: a `get` reply is a run of VALUE blocks closed by END;
 * anything else is one line. Returns the replies and how many bytes they used.
 */
export function parseReplies(buf: Buffer): { replies: McReply[]; used: number } {
  const replies: McReply[] = [];
  let p = 0;
  let values: McValue[] | null = null;
  for (;;) {
    const nl = buf.indexOf('\r\n', p, 'latin1');
    if (nl < 0) break;
    const line = buf.toString('latin1', p, nl);
    if (line.startsWith('VALUE ')) {
      const m = /^VALUE (\S+) (\d+) (\d+)( \d+)?$/.exec(line);
      if (!m) throw new Error(`bad VALUE line ${JSON.stringify(line)}`);
      const len = Number(m[3]);
      if (nl + 2 + len + 2 > buf.length) break;
      if (buf[nl + 2 + len] !== 0x0d || buf[nl + 3 + len] !== 0x0a) throw new Error('value not followed by \\r\\n');
      (values ??= []).push({
        key: Buffer.from(m[1], 'latin1').toString('utf8'),
        flags: Number(m[2]),
        value: Buffer.from(buf.subarray(nl + 2, nl + 2 + len)),
      });
      p = nl + 2 + len + 2;
      continue;
    }
    if (line === 'END') {
      replies.push({ kind: 'values', values: values ?? [] });
      values = null;
      p = nl + 2;
      continue;
    }
    if (values !== null) throw new Error(`unexpected line inside a get reply: ${JSON.stringify(line)}`);
    replies.push({ kind: 'line', line });
    p = nl + 2;
  }
  return { replies, used: p };
}

/** Sends `payload` (pipelined commands) and resolves with the first `count` replies. */
export function exchange(
  port: number,
  payload: Buffer | string,
  count: number,
  timeoutMs = 10_000,
): Promise<McReply[]> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port });
    let acc = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no ${count} replies from port ${port} within ${timeoutMs} ms (got ${acc.length} bytes)`));
    }, timeoutMs);
    s.on('data', (d: Buffer) => {
      acc = Buffer.concat([acc, d]);
      let parsed: { replies: McReply[]; used: number };
      try {
        parsed = parseReplies(acc);
      } catch (e) {
        clearTimeout(timer);
        s.destroy();
        reject(e);
        return;
      }
      if (parsed.replies.length >= count) {
        clearTimeout(timer);
        s.destroy();
        resolve(parsed.replies.slice(0, count));
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.write(payload);
  });
}

/** `get key` straight from one memcached: the item, or null when absent. */
export async function rawGet(port: number, key: string | Buffer): Promise<McValue | null> {
  const k = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  const [r] = await exchange(port, Buffer.concat([Buffer.from('get '), k, Buffer.from('\r\n')]), 1);
  if (r.kind !== 'values') throw new Error(`get answered ${r.line}`);
  if (r.values.length > 1) throw new Error(`get of one key returned ${r.values.length} values`);
  return r.values[0] ?? null;
}

/** `set key flags 0 len` straight into one memcached; throws unless STORED. */
export async function rawSet(port: number, key: string | Buffer, value: Buffer, flags = 0): Promise<void> {
  const k = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  const cmd = Buffer.concat([
    Buffer.from('set '),
    k,
    Buffer.from(` ${flags} 0 ${value.length}\r\n`),
    value,
    Buffer.from('\r\n'),
  ]);
  const [r] = await exchange(port, cmd, 1);
  if (r.kind !== 'line' || r.line !== 'STORED')
    throw new Error(`set ${k.toString('latin1').slice(0, 40)} answered ${JSON.stringify(r)}`);
}

/** `perShard` distinct keys for every shard of the ring: result[s] all live on shard s. */
export function keysByShard(ring: KetamaRing, shards: number, prefix: string, perShard: number): string[][] {
  const out: string[][] = Array.from({ length: shards }, () => []);
  for (let i = 0; out.some((ks) => ks.length < perShard); i++) {
    if (i > 100_000) throw new Error(`could not find ${perShard} keys per shard with prefix ${prefix}`);
    const k = `${prefix}${i}`;
    const s = ring.lookupKey(k);
    if (out[s].length < perShard) out[s].push(k);
  }
  return out;
}

/** Deterministic PRNG (mulberry32), so a failing random case can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` pseudo-random bytes from `rand`. */
export function randomBytesFrom(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}
