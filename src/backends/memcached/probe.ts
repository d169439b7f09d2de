/**
 * The probe of an ejected shard: a short-lived connection that writes `version\r\n` and waits for one
 * `VERSION <text>\r\n` line. Cheap for memcached (no item is read) and independent of the shard's own
 * connection, whose reconnect backoff may be seconds long. Resolves with null when the server answered,
 * else with the reason it did not (refused, a timeout, an unexpected reply).
 */
import { createConnection } from 'node:net';

const VERSION = Buffer.from('version\r\n');
/** A VERSION line is a few dozen bytes; anything longer without a line end is not one. */
const MAX_REPLY = 1024;

export function probeVersion(
  host: string,
  port: number,
  timeoutMs: number,
  fds: { lend(): void; restock(): void } | null = null,
): Promise<string | null> {
  return new Promise((resolve) => {
    let settled = false;
    let reply = '';
    fds?.lend();
    const s = createConnection({ host, port });
    const finish = (why: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => finish(`no answer to version within ${timeoutMs} ms`), timeoutMs);
    s.setNoDelay(true);
    s.once('connect', () => s.write(VERSION));
    s.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      const end = reply.indexOf('\r\n');
      if (end < 0) {
        if (reply.length > MAX_REPLY) finish('reply to version too long');
        return;
      }
      const line = reply.slice(0, end);
      finish(line.startsWith('VERSION ') ? null : `unexpected reply to version: ${line.slice(0, 200)}`);
    });
    s.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? 'connect refused' : e.message));
    s.once('close', () => {
      fds?.restock();
      finish('connection closed before the version reply');
    });
  });
}
