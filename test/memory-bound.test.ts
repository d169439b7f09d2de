/**
 * The documented memory bound (src/flow/memory-bound.ts, docs/FLOW-CONTROL.md) against a gateway process
 * under the abuse the issue measured: 2,000 WebSocket clients that never read, a few that ask for far more
 * than their window and never read, and an HTTP bulk client over 8,000 x 100 KB keys that reads nothing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createConnection, Socket } from 'node:net';
import { pack } from 'msgpackr';
import { mergeConfig, validateConfig } from '../src/config/schema';
import { LocalFleet } from '../src/fleet/local-fleet';
import { memoryBound } from '../src/flow/memory-bound';
import { KvWsClient } from './client';
import { spawnGateway, type GatewayProcess } from './helpers/gateway-process';
import { memcachedStats, until, testConfig } from './helpers/harness';
import { frame, nonReadingWs } from './helpers/raw-ws';

const MiB = 1024 * 1024;
const valueOf = (i: number): Buffer => {
  const b = Buffer.alloc(100 * 1024, i & 0xff);
  b.writeUInt32BE(i, 0);
  return b;
};

describe('memory bound', () => {
  let fleet: LocalFleet;
  let gw: GatewayProcess;
  const rss = (): number =>
    Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${gw.proc.pid}/status`, 'utf8'))![1]) * 1024;
  const over = { limits: { maxBufferedBytesTotal: 64 * MiB } };
  const keys = Array.from({ length: 300 }, (_, i) => `mb:${i}`);
  before(async () => {
    fleet = await LocalFleet.start({ count: 3, memoryMb: 64, itemSizeMb: 2 });
    gw = await spawnGateway({ ...over, servers: fleet.servers() });
    const c = await KvWsClient.connect(`ws://127.0.0.1:${gw.port}/v1/ws`);
    for (let k = 0; k < keys.length; k += 10)
      await c.mset(keys.slice(k, k + 10).map((key, j) => ({ key, value: valueOf(k + j) })));
    c.terminate();
  });
  after(async () => {
    await gw.kill();
    await fleet.stop();
  });

  it('holds the gateway process within the formula of its limits', async () => {
    const config = validateConfig(mergeConfig(testConfig(), { ...over, servers: fleet.servers() }));
    const socks: Socket[] = [];
    for (let k = 0; k < 2000; k++) {
      const s = await nonReadingWs(gw.port);
      s.write(frame(pack({ id: 1, op: 'mget', keys: [keys[k % 300], keys[(k + 7) % 300], keys[(k + 13) % 300]] })));
      socks.push(s);
    }
    for (let k = 0; k < 20; k++) {
      const s = await nonReadingWs(gw.port);
      s.write(frame(pack({ id: 1, op: 'mget', keys })));
      socks.push(s);
    }
    const body = Array.from({ length: 8000 }, (_, i) => JSON.stringify(keys[i % 300])).join('\n');
    const bulk = createConnection({ host: '127.0.0.1', port: gw.port }, () => {
      bulk.write(
        `POST /v1/mget HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/x-ndjson\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    });
    bulk.pause();
    bulk.on('error', () => {});
    // Until the shards are no longer asked for anything: everything the gateway will hold, it holds.
    const gets = async (): Promise<number> => {
      let n = 0;
      for (const m of fleet.members) n += (await memcachedStats(m.port)).cmd_get;
      return n;
    };
    let peak = 0;
    await until(
      async () => {
        const a = await gets();
        peak = Math.max(peak, rss());
        await new Promise((r) => setTimeout(r, 300));
        peak = Math.max(peak, rss());
        return (await gets()) === a;
      },
      30_000,
      'fetches to stop',
    );
    const bound = memoryBound(config, 2021);
    assert.ok(
      peak <= bound.total,
      `gateway RSS peaked at ${(peak / MiB).toFixed(0)} MiB, over its bound ${(bound.total / MiB).toFixed(0)} MiB: ${JSON.stringify(bound)}`,
    );
    for (const s of socks) s.destroy();
    bulk.destroy();
    console.log(`# gateway RSS peak ${(peak / MiB).toFixed(0)} MiB; bound ${(bound.total / MiB).toFixed(0)} MiB`);
  });
});
