import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { freeze, startHarness, Harness, until } from './helpers/harness';
import type { ShardConnection } from '../src/backends/memcached/shard-connection';

/** The gateway's socket to a shard, reached into to simulate a network reset while memcached lives on. */
const socketOf = (s: ShardConnection): { destroy(): void } => (s as unknown as { socket: { destroy(): void } }).socket;

describe('retry', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({}, 1);
  });
  after(() => h.stop());

  it('sends an unanswered get again on a new connection when the old one breaks, once', async () => {
    const c = await h.ws();
    await c.set('retry:a', Buffer.from('still here'));
    const shard = h.gw.shards[0];
    const mc = h.fleet.members[0].proc!;
    await freeze(mc.pid!); // memcached alive but silent: the get stays in flight
    try {
      const pending = c.get('retry:a');
      await until(() => shard.inflightBatches === 1, 2000, 'the get to be in flight');
      socketOf(shard).destroy();
      await until(() => shard.retries === 1, 2000, 'the get to be sent again');
      mc.kill('SIGCONT');
      const r = await pending;
      assert.ok(r.hit && r.value.toString() === 'still here');
    } finally {
      mc.kill('SIGCONT');
    }
    assert.equal(shard.retries, 1);
  });

  it('does not resend writes: a set in flight on a broken connection fails with SHARD_DOWN', async () => {
    const c = await h.ws();
    const shard = h.gw.shards[0];
    const mc = h.fleet.members[0].proc!;
    const retriesBefore = shard.retries;
    await freeze(mc.pid!);
    try {
      const pending = c.set('retry:w', Buffer.from('x')).then(
        () => 'stored',
        (e: { code: string }) => e.code,
      );
      await until(() => shard.inflightBatches === 1, 2000, 'the set to be in flight');
      socketOf(shard).destroy();
      assert.equal(await pending, 'SHARD_DOWN');
    } finally {
      mc.kill('SIGCONT');
    }
    assert.equal(shard.retries, retriesBefore);
    await until(() => shard.up, 3000, 'reconnect');
    await c.set('retry:w', Buffer.from('y'));
    const r = await c.get('retry:w');
    assert.ok(r.hit && r.value.toString() === 'y');
  });
});
