/**
 * WebSocket clients over raw sockets, for flow-control tests: one that never reads (the slowest
 * consumer there is), and the frame encoder they share. Traffic only to loopback.
 */
import { createConnection, Socket } from 'node:net';

const UPGRADE =
  'GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

/** Upgrades, then stops reading. Rejects with the status line when the upgrade is refused. */
export function nonReadingWs(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => s.write(UPGRADE));
    s.once('data', (d) => {
      const head = d.toString('latin1');
      if (!head.startsWith('HTTP/1.1 101')) {
        s.destroy();
        return reject(new Error(head.split('\r\n')[0]));
      }
      s.pause(); // from now on, read nothing
      resolve(s);
    });
    s.on('error', reject);
  });
}

/** A masked binary frame (client to server), any payload size. */
export function frame(payload: Uint8Array): Buffer {
  const mask = Buffer.from([1, 2, 3, 4]);
  const n = payload.length;
  let head: Buffer;
  if (n < 126) head = Buffer.from([0x82, 0x80 | n]);
  else if (n < 65536) head = Buffer.from([0x82, 0x80 | 126, n >> 8, n & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = 0x82;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  const body = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) body[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([head, mask, body]);
}
