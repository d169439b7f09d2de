/**
 * Interop with other memcached clients, both ways, on the same bytes and flags:
 * - memjs (binary protocol) talking to the one memcached that owns a key;
 * - raw ASCII `set` with flags;
 * - a real twemproxy (nutcracker) in front of the same fleet, for both hashes the ring supports.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import memjs from 'memjs';
import { startHarness, type Harness } from './helpers/harness';
import { exchange, keysByShard, rawGet, rawSet } from './helpers/mc-raw';
import { NutcrackerProcess } from './helpers/nutcracker-runner';
import type { KvWsClient, MgetResult } from './client';

/**
 * A memjs client for one server whose sets carry `flags`: memjs writes its set extras (flags, expiry)
 * and hands them to the serializer, which may change them; its own code always sends flags 0.
 */
function memjsFor(port: number): {
  client: memjs.Client;
  set(key: string, value: Buffer, flags: number): Promise<void>;
  get(key: string): Promise<{ value: Buffer; flags: number } | null>;
} {
  let nextFlags = 0;
  const client = memjs.Client.create(`127.0.0.1:${port}`, {
    retries: 0,
    timeout: 2,
    logger: { log: () => {} },
    serializer: {
      serialize(opcode: number, value: string | Buffer, extras: Buffer) {
        if (opcode === 1 && extras.length >= 4) {
          extras = Buffer.from(extras);
          extras.writeUInt32BE(nextFlags, 0);
        }
        return { value, extras };
      },
      deserialize(_opcode: number, value: Buffer | null, extras: Buffer) {
        return { value, extras };
      },
    },
  });
  return {
    client,
    async set(key, value, flags) {
      nextFlags = flags;
      const ok = await client.set(key, value, { expires: 0 });
      assert.equal(ok, true, `memjs set ${key}`);
    },
    async get(key) {
      const r = await client.get(key);
      if (r.value === null) return null;
      assert.ok(r.flags !== null && r.flags.length === 4, `memjs returned flags ${r.flags?.toString('hex')}`);
      return { value: Buffer.from(r.value), flags: r.flags.readUInt32BE(0) };
    },
  };
}

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

describe('memjs on the owning shard', () => {
  let h: Harness;
  let ws: KvWsClient;
  const clients: memjs.Client[] = [];
  const mj = (key: string) => {
    const c = memjsFor(h.fleet.members[h.gw.ring.lookupKey(key)].port);
    clients.push(c.client);
    return c;
  };
  before(async () => {
    h = await startHarness();
    ws = await h.ws();
  });
  after(async () => {
    for (const c of clients) c.close();
    await h?.stop();
  });

  const cases: { name: string; value: Buffer; flags: number }[] = [
    { name: 'all-bytes', value: ALL_BYTES, flags: 0 },
    { name: 'all-bytes-reversed', value: Buffer.from(ALL_BYTES).reverse(), flags: 0xdeadbeef },
    { name: 'empty', value: Buffer.alloc(0), flags: 0 },
    { name: 'empty-flagged', value: Buffer.alloc(0), flags: 0xffffffff },
    { name: 'crlf-end', value: Buffer.from('a\r\nEND\r\nVALUE x 0 1\r\n'), flags: 1 },
    { name: 'large', value: randomBytes(100_000), flags: 0x80000000 },
  ];

  it('values set through the gateway (WS and HTTP) read back from memjs with the same bytes and flags, on the owner only', async () => {
    const written: { key: string; value: Buffer; flags: number }[] = [];
    for (const c of cases) {
      const wk = `interop:gw-ws:${c.name}`;
      await ws.set(wk, c.value, { flags: c.flags });
      written.push({ key: wk, value: c.value, flags: c.flags });
      const hk = `interop:gw-http:${c.name}`;
      await h.http.set(hk, c.value, { flags: c.flags });
      written.push({ key: hk, value: c.value, flags: c.flags });
    }
    const utf8Key = 'interop:gw-ws:ключ-✓';
    await ws.set(utf8Key, ALL_BYTES, { flags: 42 });
    written.push({ key: utf8Key, value: ALL_BYTES, flags: 42 });
    const msetItems = cases.map((c) => ({ key: `interop:gw-mset:${c.name}`, value: c.value, flags: c.flags }));
    assert.deepEqual(
      await ws.mset(msetItems),
      msetItems.map(() => ({ ok: true })),
    );
    written.push(...msetItems);

    for (const w of written) {
      const owner = h.gw.ring.lookupKey(w.key);
      const got = await mj(w.key).get(w.key);
      assert.ok(got, `memjs finds ${w.key} on shard ${owner}`);
      assert.equal(got.value.length, w.value.length, `${w.key} length`);
      assert.ok(got.value.equals(w.value), `${w.key} bytes`);
      assert.equal(got.flags, w.flags, `${w.key} flags`);
      for (let s = 0; s < h.fleet.members.length; s++) {
        if (s !== owner)
          assert.equal(await rawGet(h.fleet.members[s].port, w.key), null, `${w.key} must not be on shard ${s}`);
      }
    }
  });

  it('values set with memjs (and raw ASCII set) on the owner read back through every gateway path with the same bytes and flags', async () => {
    const items: { key: string; value: Buffer; flags: number }[] = [];
    for (const c of cases) {
      const key = `interop:memjs:${c.name}`;
      await mj(key).set(key, c.value, c.flags);
      items.push({ key, value: c.value, flags: c.flags });
      const rk = `interop:raw:${c.name}`;
      await rawSet(h.fleet.members[h.gw.ring.lookupKey(rk)].port, rk, c.value, c.flags);
      items.push({ key: rk, value: c.value, flags: c.flags });
    }
    // the flags really were written by memjs (not only echoed by our own reader)
    const probe = items[2];
    assert.equal((await rawGet(h.fleet.members[h.gw.ring.lookupKey(probe.key)].port, probe.key))?.flags, probe.flags);

    const keys = items.map((i) => i.key);
    const check = (how: string, res: MgetResult[]): void => {
      items.forEach((it, n) =>
        assert.deepEqual(res[n], { hit: true, value: it.value, flags: it.flags }, `${how}: ${it.key}`),
      );
    };
    for (const it of items) {
      assert.deepEqual(await ws.get(it.key), { hit: true, value: it.value, flags: it.flags }, `WS get ${it.key}`);
      assert.deepEqual(await h.http.get(it.key), { hit: true, value: it.value, flags: it.flags }, `HTTP GET ${it.key}`);
    }
    check('WS mget', await ws.mget(keys));
    check('HTTP mget msgpack', await h.http.mget(keys));
    check('HTTP mget ndjson', await h.http.mget(keys, { format: 'ndjson' }));
    check('HTTP mget msgpack body, ndjson answer', await h.http.mget(keys, { format: 'msgpack', accept: 'ndjson' }));

    // and the raw HTTP answer carries the flags header itself
    const res = await fetch(`${h.base}/v1/kv/${encodeURIComponent(items[1].key)}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-kv-flags'), String(items[1].flags));
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(items[1].value));
  });
});

// -------------------------------------------------------------------------------------------------------
for (const hash of ['fnv1a_64', 'md5'] as const) {
  describe(`twemproxy fleet compatibility (hash: ${hash})`, () => {
    let h: Harness;
    let nc: NutcrackerProcess;
    let ws: KvWsClient;
    before(async () => {
      h = await startHarness({ hash });
      // the same servers, in the same order, as the gateway's own config
      nc = await NutcrackerProcess.start([{ hash, servers: h.fleet.servers() }]);
      ws = await h.ws();
    });
    after(async () => {
      await nc?.stop();
      await h?.stop();
    });

    const N = 500;
    const valueFor = (tag: string, i: number): Buffer =>
      i % 50 === 7
        ? Buffer.concat([Buffer.from(`${tag}-${i}:`), randomBytes(i % 300), Buffer.from('\r\nEND\r\n')])
        : Buffer.from(`${tag} value ${i} ${'x'.repeat(i % 40)}`);

    it('keys stored through nutcracker are all found through the gateway (WS mget, HTTP mget)', async () => {
      // ~N/3 keys per shard as the gateway places them; if nutcracker placed them elsewhere, the gateway
      // would not find them
      const keys = keysByShard(h.gw.ring, 3, `tw:${hash}:in:`, Math.ceil(N / 3)).flat();
      const values = keys.map((_, i) => valueFor('nc', i));
      const flags = keys.map((_, i) => (i * 2654435761) >>> 0);
      const payload = Buffer.concat(
        keys.flatMap((k, i) => [
          Buffer.from(`set ${k} ${flags[i]} 0 ${values[i].length}\r\n`),
          values[i],
          Buffer.from('\r\n'),
        ]),
      );
      const replies = await exchange(nc.port, payload, keys.length);
      assert.deepEqual(
        replies.map((r) => (r.kind === 'line' ? r.line : 'values')),
        keys.map(() => 'STORED'),
      );
      // the fleet really is shared: every shard got some of them
      const perShard = [0, 0, 0];
      for (const k of keys) perShard[h.gw.ring.lookupKey(k)]++;

      const want = keys.map((_, i) => ({ hit: true, value: values[i], flags: flags[i] }));
      const wsRes = await ws.mget(keys);
      const missing = keys.filter((_, i) => !('hit' in wsRes[i] && wsRes[i].hit));
      assert.deepEqual(
        missing,
        [],
        `keys stored by nutcracker that the gateway did not find (gateway spread ${perShard})`,
      );
      assert.deepEqual(wsRes, want);
      assert.deepEqual(await h.http.mget(keys), want);
      for (let s = 0; s < 3; s++) {
        if (perShard[s] === 0) continue;
        const k = keys.find((x) => h.gw.ring.lookupKey(x) === s)!;
        assert.ok(await rawGet(h.fleet.members[s].port, k), `${k} is on shard ${s} itself`);
      }
    });

    it('keys stored through the gateway are all found through nutcracker', async () => {
      const keys = keysByShard(h.gw.ring, 3, `tw:${hash}:out:`, Math.ceil(N / 3)).flat();
      const values = keys.map((_, i) => valueFor('gw', i));
      const flags = keys.map((_, i) => (i % 3 === 0 ? 0 : (i * 40503) >>> 0));
      const stored = await ws.mset(keys.map((k, i) => ({ key: k, value: values[i], flags: flags[i] })));
      assert.deepEqual(
        stored,
        keys.map(() => ({ ok: true })),
      );
      // pipelined single gets
      const replies = await exchange(nc.port, keys.map((k) => `get ${k}\r\n`).join(''), keys.length);
      const lost: string[] = [];
      replies.forEach((r, i) => {
        assert.equal(r.kind, 'values', `reply ${i}`);
        if (r.kind !== 'values') return;
        if (r.values.length === 0) {
          lost.push(keys[i]);
          return;
        }
        assert.equal(r.values[0].key, keys[i]);
        assert.ok(r.values[0].value.equals(values[i]), `${keys[i]} bytes`);
        assert.equal(r.values[0].flags, flags[i], `${keys[i]} flags`);
      });
      assert.deepEqual(lost, [], 'keys stored by the gateway that nutcracker did not find');
      // one multi-get through nutcracker (it fans out per server and merges)
      const some = keys.map((k, i) => ({ k, v: values[i] })).filter((_, i) => i % 3 === 0);
      const [multi] = await exchange(nc.port, `get ${some.map((x) => x.k).join(' ')}\r\n`, 1);
      assert.equal(multi.kind, 'values');
      if (multi.kind === 'values') {
        assert.equal(multi.values.length, some.length);
        const got = new Map(multi.values.map((v) => [v.key, v]));
        for (const x of some) assert.ok(got.get(x.k)?.value.equals(x.v), `multi-get ${x.k}`);
      }
    });
  });
}
