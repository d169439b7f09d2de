/**
 * Credentials and rates change with a reload (ops/reload.ts, Access.reload), without a restart: an API key
 * added works at once; one removed stops working for new requests, and the WebSockets that opened with it
 * are closed with 4003 AUTH_REVOKED while the others stay open and keep their keys; a lowered rate applies
 * to the next request. Connection limits count connections open now, so changing them takes a restart.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { defaultConfig, mergeConfig, validateConfig, type Config } from '../src/config/schema';
import { LocalFleet } from '../src/fleet/local-fleet';
import { startGateway, type Gateway } from '../src/gateway';
import { KvHttpClient, KvWsClient } from './client';
import { Authenticator } from '../src/security/authenticator';

const KEY_A = 'reload-test-key-a-0123456789';
const KEY_B = 'reload-test-key-b-0123456789';
const KEY_C = 'reload-test-key-c-0123456789';
const entry = (id: string, key: string): Record<string, unknown> => ({
  id,
  hash: Authenticator.hashKey(key),
  namespace: `${id}:`,
  perms: 'all',
});

describe('reloading credentials and rates', () => {
  let fleet: LocalFleet;
  let gw: Gateway;
  let next: Config;
  const configWith = (keys: Record<string, unknown>[], limits: Record<string, unknown> = {}): Config =>
    validateConfig(
      mergeConfig(defaultConfig(), {
        port: 0,
        admin: { port: 0 },
        log: { level: 'silent' },
        servers: fleet.servers(),
        security: { auth: { mode: 'required', apiKeys: keys }, limits },
      }),
    );

  before(async () => {
    fleet = await LocalFleet.start({ count: 2, memoryMb: 16, threads: 1, itemSizeMb: 2 });
    next = configWith([entry('a', KEY_A), entry('b', KEY_B)]);
    gw = await startGateway(next, { reloadConfig: () => next });
  });
  after(async () => {
    await gw?.stop();
    await fleet?.stop();
  });

  it('adds and revokes API keys; WebSockets of a revoked key close with 4003, the others stay', async () => {
    const url = `ws://127.0.0.1:${gw.port}/v1/ws`;
    const base = `http://127.0.0.1:${gw.port}`;
    const a = await KvWsClient.connect(url, { token: KEY_A });
    const b = await KvWsClient.connect(url, { token: KEY_B });
    await a.set('k', 'from-a');
    await b.set('k', 'from-b');
    assert.equal(
      (await new KvHttpClient(base, { token: KEY_C }).get('k').catch((e: Error) => e)) instanceof Error,
      true,
    );

    next = configWith([entry('a', KEY_A), entry('c', KEY_C)]);
    const r = await gw.reload();
    assert.equal(r.result, 'applied', r.message);
    assert.deepEqual(r.changed, ['security.auth']);

    assert.deepEqual(await b.closed, { code: 4003, reason: 'AUTH_REVOKED' });
    // A's connection is untouched and still reads its own namespace.
    assert.deepEqual(await a.get('k'), { hit: true, value: Buffer.from('from-a'), flags: 0 });
    const status = async (token: string): Promise<number> =>
      (await fetch(`${base}/v1/kv/k`, { headers: { authorization: `Bearer ${token}` } })).status;
    assert.equal(await status(KEY_B), 401, 'the removed key is refused');
    assert.equal(await status(KEY_C), 404, 'the added key works (its namespace has no k)');
    assert.equal(await status(KEY_A), 200);
    await a.close();
  });

  it('a lowered rate applies to the next request; connection limits take a restart', async () => {
    const base = `http://127.0.0.1:${gw.port}`;
    const get = async (): Promise<number> =>
      (await fetch(`${base}/v1/kv/x`, { headers: { authorization: `Bearer ${KEY_A}` } })).status;
    for (let i = 0; i < 20; i++) assert.equal(await get(), 404, 'no rate limit yet');

    next = configWith([entry('a', KEY_A), entry('c', KEY_C)], {
      default: { opsPerSecond: 1, burstSeconds: 2 },
    });
    assert.equal((await gw.reload()).result, 'applied');
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push(await get());
    assert.ok(statuses.includes(429), `a burst of 2 at 1/s refuses some of 5 at once: ${statuses.join(',')}`);
    assert.equal(statuses.filter((s) => s === 404).length <= 3, true, statuses.join(','));

    next = configWith([entry('a', KEY_A), entry('c', KEY_C)], {
      default: { opsPerSecond: 1, burstSeconds: 2 },
      connections: { maxConnectionsPerAddress: 5 },
    });
    const refused = await gw.reload();
    assert.equal(refused.status, 409);
    assert.deepEqual(refused.problems, ['security.limits.connections takes a restart']);
  });
});
