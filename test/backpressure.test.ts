import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, Socket } from 'node:net';
import { pack } from 'msgpackr';
import { startHarness, Harness, until } from './helpers/harness';

/** A WebSocket client over a raw socket that sends but never reads: the slowest consumer there is. */
function rawWs(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => {
      s.write('GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    });
    s.once('data', (d) => {
      if (!d.toString('latin1').startsWith('HTTP/1.1 101')) return reject(new Error('upgrade refused'));
      s.pause(); // from now on, read nothing
      resolve(s);
    });
    s.on('error', () => {});
  });
}

function frame(payload: Buffer): Buffer {
  const mask = Buffer.from([1, 2, 3, 4]);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x82, 0x80 | n]) : Buffer.from([0x82, 0x80 | 126, n >> 8, n & 0xff]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]));
  return Buffer.concat([head, mask, body]);
}

describe('backpressure', () => {
  let h: Harness;
  before(async () => { h = await startHarness({ limits: { maxBufferedBytesPerConnection: 256 * 1024 } }); });
  after(() => h.stop());

  it('disconnects a client that does not read, holds bounded buffers meanwhile, and never stalls the others', async () => {
    const fast = await h.ws();
    const value = Buffer.alloc(100 * 1024, 0x5a);
    const keys = Array.from({ length: 10 }, (_, i) => `bp:${i}`);
    await fast.mset(keys.map((key) => ({ key, value })));
    const slow = await rawWs(h.gw.port);
    await until(() => (h.gw.stats().ws as { connections: number }).connections === 2, 2000, 'two connections');
    let peakInUse = 0;
    let sent = 0;
    // 300 requests x 1 MB of answers: far beyond what the kernel and the budget can hold.
    const pump = (): void => {
      while (sent < 300) {
        sent++;
        if (!slow.write(frame(pack({ id: sent, op: 'mget', keys })))) { slow.once('drain', pump); return; }
      }
    };
    pump();
    for (let k = 0; k < 20; k++) {
      const r = await fast.get(keys[k % 10]);
      assert.ok(r.hit && r.value.equals(value), 'the other client is served');
      peakInUse = Math.max(peakInUse, (h.gw.stats().pool as { inUse: number }).inUse);
    }
    await until(() => (h.gw.stats().ws as { connections: number }).connections === 1, 10_000, 'the slow client to be disconnected');
    // Budget 256 KiB = 16 buffers queued for the slow client, plus a few in use elsewhere at any moment.
    assert.ok(peakInUse <= 40, `peak pool buffers in use: ${peakInUse}`);
    await until(() => (h.gw.stats().pool as { inUse: number }).inUse === 0, 2000, 'all buffers back in the pool');
    const r = await fast.get(keys[0]);
    assert.ok(r.hit);
    slow.destroy();
  });
});
