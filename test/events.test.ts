/**
 * Operational events (src/core/events.ts): published on diagnostics_channel for every occurrence, logged
 * as JSON lines with repeats rate limited; the drain announces itself on `kvgate:drain`; a spawned
 * gateway's log is JSON lines with levels.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Events, channelName, type OpsEvent } from '../src/core/events';
import { startHarness } from './helpers/harness';
import { spawnGateway } from './helpers/gateway-process';
import { LocalFleet } from '../src/fleet/local-fleet';

describe('operational events', () => {
  it('every event reaches its channel; repeats within the window are counted, not logged', () => {
    let t = 1000;
    const logged: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
    const ev = new Events(
      'g1',
      (level, fields, msg) => logged.push({ level, fields, msg }),
      10_000,
      () => t,
    );
    const seen: OpsEvent[] = [];
    const onShard = (m: unknown): void => {
      seen.push(m as OpsEvent);
    };
    subscribe(channelName('shard'), onShard);
    try {
      for (let k = 0; k < 5; k++) ev.emit('shard', 'shard.down', 'warn', 'down', { shard: 'a:1' }, 'a:1');
      ev.emit('shard', 'shard.down', 'warn', 'down', { shard: 'b:1' }, 'b:1');
      t += 10_001;
      ev.emit('shard', 'shard.down', 'warn', 'down', { shard: 'a:1' }, 'a:1');
      ev.emit('reload', 'reload.applied', 'info', 'r', {}, null);
      ev.emit('reload', 'reload.applied', 'info', 'r', {}, null);
    } finally {
      unsubscribe(channelName('shard'), onShard);
    }
    assert.equal(seen.length, 7, 'the channel sees every shard event');
    assert.deepEqual(
      seen.map((e) => [e.gateway, e.event, e.shard]),
      [...Array(5).fill(['g1', 'shard.down', 'a:1']), ['g1', 'shard.down', 'b:1'], ['g1', 'shard.down', 'a:1']],
    );
    assert.deepEqual(
      logged.map((l) => [l.fields.event, l.fields.shard ?? null, l.fields.repeated ?? 0]),
      [
        ['shard.down', 'a:1', 0],
        ['shard.down', 'b:1', 0],
        ['shard.down', 'a:1', 4], // the 4 suppressed repeats are reported with the next line
        ['reload.applied', null, 0],
        ['reload.applied', null, 0], // key null: never suppressed
      ],
    );
  });

  it('a drain is published on kvgate:drain with the gateway name', async () => {
    const h = await startHarness({ shutdown: { drainMs: 500 } }, 1);
    const seen: OpsEvent[] = [];
    const on = (m: unknown): void => {
      seen.push(m as OpsEvent);
    };
    subscribe(channelName('drain'), on);
    try {
      await h.gw.drain();
    } finally {
      unsubscribe(channelName('drain'), on);
      await h.stop();
    }
    const mine = seen.filter((e) => e.gateway === h.gw.events.gateway).map((e) => e.event);
    assert.equal(mine[0], 'drain.start');
    assert.ok(mine.includes('drain.idle') || mine.includes('drain.timeout'), mine.join(','));
  });

  it('a spawned gateway logs JSON lines with a level, the listening line naming both ports', async () => {
    const fleet = await LocalFleet.start({ count: 1, memoryMb: 16, itemSizeMb: 2 });
    const gw = await spawnGateway({ servers: fleet.servers() });
    try {
      const lines = gw
        .output()
        .split('\n')
        .filter((l) => l !== '');
      assert.ok(lines.length > 0);
      for (const l of lines) {
        const rec = JSON.parse(l) as { level: number; time: string; msg: string };
        assert.equal(typeof rec.level, 'number', l);
        assert.match(rec.time, /^\d{4}-\d\d-\d\dT/, l);
      }
      const listening = lines.map((l) => JSON.parse(l)).find((r) => r.event === 'listening');
      assert.equal(listening.port, gw.port);
      assert.ok(listening.adminPort > 0 && listening.adminPort !== gw.port, 'the admin listener has its own port');
    } finally {
      await gw.kill();
      await fleet.stop();
    }
  });
});
