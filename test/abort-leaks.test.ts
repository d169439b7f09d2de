/**
 * No leaks on abort (issue 6): every pool buffer taken for a request that is aborted comes back, and so
 * does every byte counted in the gateway-wide budget, whatever the client did: cut a PUT's body, cut a
 * bulk body before or while its results stream, read a little of a large GET and vanish, or close or
 * destroy a WebSocket with requests in flight and large answers held for it. Each case first checks the
 * gateway really was holding something for the victims (so the return to idle means something), then
 * polls the pool and the budget back to 0, then checks the gateway still serves.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import { mergeConfig, validateConfig } from '../src/config/schema';
import { LocalFleet } from '../src/fleet/local-fleet';
import { startGateway, type Gateway } from '../src/gateway';
import { isItemError, KvError, KvHttpClient } from './client';
import { freeze, startHarness, until, type Harness, testConfig } from './helpers/harness';
import { keysByShard, prng } from './helpers/mc-raw';
import { frame, nonReadingWs } from './helpers/raw-ws';
import { head, RawHttp } from './helpers/raw-http';

const KB = 1024;
const MB = 1024 * 1024;

describe('no leaks on abort', () => {
  let h: Harness;
  const window = 256 * KB;
  before(async () => {
    h = await startHarness({ limits: { maxBufferedBytesPerConnection: window } });
  });
  after(() => h.stop());

  const inUse = (): number => h.gw.ctx.pool.inUse;
  const state = (): string =>
    JSON.stringify({
      pool: h.gw.stats().pool,
      budget: h.gw.ctx.budget.stats(),
      gate: { ws: h.gw.ctx.gate.ws, http: h.gw.ctx.gate.http },
    });

  /** The pool, the budget and the connection gate are back at their idle values. */
  async function idle(what: string): Promise<void> {
    try {
      await until(() => inUse() === 0 && h.gw.ctx.budget.used === 0 && h.gw.ctx.gate.http === 0, 10_000, what);
    } catch {
      assert.fail(`${what}: not back to idle: ${state()}`);
    }
  }

  let served = 0;
  /** A set and a get through each front answer correctly. */
  async function stillServes(): Promise<void> {
    const key = `abort:serves:${served++}`;
    const value = Buffer.alloc(40 * KB, served & 0xff);
    await h.http.set(key, value);
    const viaHttp = await h.http.get(key);
    assert.ok(viaHttp.hit && viaHttp.value.equals(value), 'HTTP get after the abuse');
    const ws = await h.ws();
    const viaWs = await ws.get(key);
    assert.ok(viaWs.hit && viaWs.value.equals(value), 'WebSocket get after the abuse');
    await ws.close();
  }

  const putHead = (key: string, length: number): string =>
    head('PUT', `/v1/kv/${encodeURIComponent(key)}`, {
      'content-type': 'application/octet-stream',
      'content-length': length,
    });

  it('aborted PUTs of large bodies give back every buffer (held bodies, then many random cuts)', async () => {
    const declared = MB;
    const body = Buffer.alloc(declared, 0x61);
    // Rounds of 20 uploads held part way: the gateway must be seen holding them, then they vanish.
    for (let round = 0; round < 5; round++) {
      const conns = await Promise.all(Array.from({ length: 20 }, () => RawHttp.connect(h.gw.port)));
      const cuts = conns.map((_, k) => 1 + Math.floor(((k + 1) * (round + 1) * 37 * KB) % (declared - 1)));
      await Promise.all(
        conns.map((c, k) =>
          c.send(Buffer.concat([Buffer.from(putHead(`abort:put:${round}:${k}`, declared)), body.subarray(0, cuts[k])])),
        ),
      );
      const held = cuts.reduce((n, c) => n + Math.ceil(c / (16 * KB)), 0);
      await until(
        () => inUse() >= held && h.gw.ctx.gate.http === 20,
        5000,
        `round ${round}: the gateway to hold ${held} buffers of 20 partial bodies`,
      );
      for (const c of conns) c.destroy();
      await idle(`round ${round}: after destroying 20 partial uploads`);
    }
    // Then many uploads cut at random points, some of them whole (the set goes on for a client that is
    // gone), destroyed as soon as the bytes are written: the abort races the gateway's reads.
    const rand = prng(6);
    let whole = 0;
    for (let wave = 0; wave < 12; wave++) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, k) => {
          const c = await RawHttp.connect(h.gw.port);
          const r = rand();
          const cut = r < 0.1 ? declared : Math.floor(r * declared);
          if (cut === declared) whole++;
          await c.send(
            Buffer.concat([Buffer.from(putHead(`abort:put:w${wave}:${k}`, declared)), body.subarray(0, cut)]),
          );
          c.destroy();
        }),
      );
    }
    assert.ok(whole > 0, 'some uploads were sent whole');
    await idle('after 600 uploads cut at random points');
    await stillServes();
  });

  it('an upload over the limit is refused and cut off, not read to its end', async () => {
    const max = h.config.limits.maxValueBytes;
    // Past what is read and dropped after an early answer (docs/PROTOCOL.md, "HTTP conformance").
    const bound = Math.max(8 * MB, 4 * max);
    // Declared too large, and longer than the bound: refused before a byte of the body is read, saying
    // the connection will close.
    const declared = await RawHttp.connect(h.gw.port);
    await declared.send(putHead('abort:toolarge:declared', 64 * max));
    const r1 = await declared.responseHead();
    assert.equal(r1.status, 413);
    assert.match(r1.body.toString(), /"code":"TOO_LARGE"/);
    assert.equal(r1.headers.connection, 'close');
    // The client sends its body anyway: the gateway drops up to the bound, then closes.
    void (async () => {
      for (let k = 0; k < 64 && !declared.closed; k++) await declared.send(Buffer.alloc(MB, 0x61));
    })().catch(() => undefined);
    await declared.closedByPeer(5000);
    assert.ok(declared.socket.bytesWritten < bound + 16 * MB, `the gateway took ${declared.socket.bytesWritten} bytes`);
    // Chunked, so the size shows only as it arrives: refused once it passes the limit, then cut off
    // once the client has sent the bound more.
    const chunked = await RawHttp.connect(h.gw.port);
    await chunked.send(head('PUT', '/v1/kv/abort:toolarge:chunked', { 'transfer-encoding': 'chunked' }));
    const piece = Buffer.alloc(256 * KB, 0x62);
    const pieceFrame = Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]);
    for (let k = 0; k < 5; k++) await chunked.send(pieceFrame);
    const r2 = await chunked.responseHead();
    assert.equal(r2.status, 413);
    void (async () => {
      for (let k = 0; k < 4 * (bound / MB) + 16 && !chunked.closed; k++) await chunked.send(pieceFrame);
    })().catch(() => undefined);
    await chunked.closedByPeer(5000);
    assert.equal((await h.http.get('abort:toolarge:chunked')).hit, false, 'nothing was stored');
    await idle('after refused uploads');
    await stillServes();
  });

  /** A bulk request whose socket is destroyed part way; the body is `body`, its first `cut` bytes are sent. */
  interface BulkCase {
    path: '/v1/mget' | '/v1/mset';
    type: string;
    body: Buffer;
  }

  const msgpackKeys = (keys: string[]): Buffer => Buffer.concat(keys.map((k) => pack(k)));
  const ndjsonKeys = (keys: string[]): Buffer => Buffer.from(keys.map((k) => JSON.stringify(k) + '\n').join(''));
  const msgpackItems = (keys: string[], value: Buffer): Buffer =>
    Buffer.concat(keys.map((key) => pack({ key, value })));
  const ndjsonItems = (keys: string[], value: Buffer): Buffer =>
    Buffer.from(keys.map((key) => JSON.stringify({ key, value: value.toString('latin1') }) + '\n').join(''));

  describe('aborted bulk bodies', () => {
    const bigKeys = Array.from({ length: 40 }, (_, i) => `abort:bulk:big:${i}`);
    const bigValue = Buffer.alloc(200 * KB, 0x62);
    before(async () => {
      for (const key of bigKeys) await h.http.set(key, bigValue);
    });

    const formats = [
      { name: 'msgpack', type: 'application/msgpack', keys: msgpackKeys, items: msgpackItems },
      { name: 'NDJSON', type: 'application/x-ndjson', keys: ndjsonKeys, items: ndjsonItems },
    ];
    // 400 gets of 200 KB values: 80 MB of answers, far more than a window.
    const manyKeys = Array.from({ length: 400 }, (_, i) => bigKeys[i % bigKeys.length]);
    const setKeys = Array.from({ length: 300 }, (_, i) => `abort:bulk:set:${i}`);
    const setValue = Buffer.alloc(20 * KB, 0x63);

    for (const f of formats) {
      const cases: BulkCase[] = [
        { path: '/v1/mget', type: f.type, body: f.keys(manyKeys) },
        { path: '/v1/mset', type: f.type, body: f.items(setKeys, setValue) },
      ];
      for (const c of cases) {
        // Bytes of results that prove the response is streaming (mset answers are a few bytes each).
        const some = c.path === '/v1/mget' ? 2000 : 1;
        it(`${c.path} ${f.name}: destroyed before any result, many times`, async () => {
          // Cuts anywhere inside the first item: nothing can be answered yet.
          const firstItem =
            c.path === '/v1/mget' ? f.keys([manyKeys[0]]).length : f.items([setKeys[0]], setValue).length;
          for (let round = 0; round < 20; round++) {
            const conn = await RawHttp.connect(h.gw.port);
            const cut = Math.max(1, Math.floor((firstItem * (round + 1)) / 21));
            await conn.send(
              Buffer.concat([
                Buffer.from(head('POST', c.path, { 'content-type': c.type, 'content-length': c.body.length })),
                c.body.subarray(0, cut),
              ]),
            );
            await until(() => h.gw.ctx.gate.http === 1, 5000, 'the bulk request to be in progress');
            assert.equal(conn.received, 0, 'no result before the first item is whole');
            conn.destroy();
            await idle(`${c.path} cut at byte ${cut} of its first item`);
          }
          await stillServes();
        });

        it(`${c.path} ${f.name}: destroyed while results stream, body unfinished, client read a little`, async () => {
          for (let round = 0; round < 6; round++) {
            const conn = await RawHttp.connect(h.gw.port);
            // Most of the body, never its end: the request is still reading when the client vanishes.
            const cut = Math.floor((c.body.length * (round + 4)) / 10);
            await conn.send(head('POST', c.path, { 'content-type': c.type, 'content-length': c.body.length }));
            void conn.send(c.body.subarray(0, cut)).catch(() => undefined);
            conn.readAtMost(some);
            await conn.waitFor(() => conn.received >= some, 5000, 'some results');
            if (c.path === '/v1/mget') {
              // The answers outgrow what the client takes: the gateway holds output or reservations for it.
              await until(
                () => inUse() > 0 || h.gw.ctx.budget.used > 0,
                5000,
                'the gateway to hold something for the reader',
              );
            }
            conn.destroy();
            await idle(`${c.path} destroyed after ${conn.received} bytes of results (round ${round})`);
          }
          await stillServes();
        });

        it(`${c.path} ${f.name}: whole body sent, destroyed while results stream`, async () => {
          for (let round = 0; round < 6; round++) {
            const conn = await RawHttp.connect(h.gw.port);
            void conn
              .send(
                Buffer.concat([
                  Buffer.from(head('POST', c.path, { 'content-type': c.type, 'content-length': c.body.length })),
                  c.body,
                ]),
              )
              .catch(() => undefined);
            conn.readAtMost(some * (round + 1));
            await conn.waitFor(() => conn.received >= some * (round + 1), 5000, 'some results');
            conn.destroy();
            await idle(`${c.path} with its whole body, destroyed after ${conn.received} bytes of results`);
          }
          await stillServes();
        });
      }
    }
  });

  describe('aborted streaming GETs', () => {
    const keys = Array.from({ length: 8 }, (_, i) => `abort:get:${i}`);
    const value = Buffer.alloc(MB, 0x64);
    before(async () => {
      for (const key of keys) await h.http.set(key, value);
    });

    it('GETs of 1 MiB values destroyed at random points, from before the answer to near its end', async () => {
      const rand = prng(61);
      let cutShort = 0;
      for (let wave = 0; wave < 10; wave++) {
        await Promise.all(
          Array.from({ length: 20 }, async (_, k) => {
            const c = await RawHttp.connect(h.gw.port);
            await c.send(head('GET', `/v1/kv/${keys[k % keys.length]}`));
            const upTo = Math.floor(rand() * value.length);
            if (upTo > 100 * KB) await c.waitFor(() => c.received >= upTo, 5000, `${upTo} bytes`);
            if (c.received < value.length) cutShort++;
            c.destroy();
          }),
        );
      }
      assert.ok(cutShort > 150, `${cutShort} of 200 GETs were destroyed before their whole value arrived`);
      await idle('after 200 GETs destroyed at random points');
      await stillServes();
    });

    // Loopback's kernel buffers take about 1.7 MB of a response a client does not read, so only a value
    // larger than that makes the gateway hold the rest in pool buffers: a fleet with 8 MB items.
    describe('values larger than the kernel buffers', () => {
      let fleet: LocalFleet;
      let gw: Gateway;
      const big = Buffer.alloc(6 * MB, 0x66);
      before(async () => {
        fleet = await LocalFleet.start({ count: 2, memoryMb: 128, itemSizeMb: 8 });
        gw = await startGateway(
          validateConfig(
            mergeConfig(testConfig(), {
              port: 0,
              admin: { port: 0 },
              log: { level: 'silent' },
              servers: fleet.servers(),
              limits: { maxValueBytes: big.length },
              ws: { maxPayloadBytes: big.length + 64 * KB },
            }),
          ),
        );
        const http = new KvHttpClient(`http://127.0.0.1:${gw.port}`);
        for (let k = 0; k < 2; k++) await http.set(`abort:huge:${k}`, big);
      });
      after(async () => {
        await gw.stop();
        await fleet.stop();
      });

      it('a client that reads a little of a 6 MiB value and vanishes gives back what was held for it', async () => {
        for (let round = 0; round < 3; round++) {
          const conns = await Promise.all(Array.from({ length: 6 }, () => RawHttp.connect(gw.port)));
          for (const c of conns) c.readAtMost(1000);
          await Promise.all(conns.map((c, k) => c.send(head('GET', `/v1/kv/abort:huge:${k % 2}`))));
          await Promise.all(
            conns.map((c) => c.waitFor(() => c.received >= 1000, 5000, 'the first bytes of the value')),
          );
          // What the kernel cannot take waits in pool buffers: proof the aborts have something to give back.
          await until(() => gw.ctx.pool.inUse > 64, 5000, 'the gateway to hold value bytes for the paused readers');
          assert.ok(
            conns.every((c) => c.received < big.length),
            'no paused reader got its whole value',
          );
          for (const c of conns) c.destroy();
          try {
            await until(
              () => gw.ctx.pool.inUse === 0 && gw.ctx.budget.used === 0 && gw.ctx.gate.http === 0,
              10_000,
              'idle',
            );
          } catch {
            assert.fail(
              `round ${round}: not back to idle after 6 streaming GETs were destroyed: ${JSON.stringify(gw.stats().pool)} ${JSON.stringify(gw.ctx.budget.stats())}`,
            );
          }
        }
        const r = await new KvHttpClient(`http://127.0.0.1:${gw.port}`).get('abort:huge:0');
        assert.ok(r.hit && r.value.equals(big), 'a whole 6 MiB value is still served');
      });

      it('a client that stops reading a 6 MiB value, without closing, is cut off and gives back what was held', async () => {
        const conns = await Promise.all(Array.from({ length: 3 }, () => RawHttp.connect(gw.port)));
        for (const c of conns) c.readAtMost(1000);
        await Promise.all(conns.map((c) => c.send(head('GET', '/v1/kv/abort:huge:1'))));
        await until(
          () => gw.ctx.pool.inUse > 64 && gw.ctx.gate.http === 3,
          5000,
          'value bytes held for the stopped readers',
        );
        // Nothing moves for them: uWS's HTTP timeout (10 s without progress) closes them.
        await until(() => gw.ctx.gate.http === 0, 15_000, 'the stopped readers to be cut off');
        await until(
          () => gw.ctx.pool.inUse === 0 && gw.ctx.budget.used === 0,
          3000,
          'what was held for them to come back',
        );
        assert.ok(conns.every((c) => c.received < big.length));
        for (const c of conns) c.destroy();
      });
    });
  });

  it('requests that time out on a frozen shard give back their buffers and reservations', async () => {
    const byShard = keysByShard(h.gw.ring, 3, 'abort:timeout:', 6);
    const value = Buffer.alloc(100 * KB, 0x67);
    for (const ks of byShard) for (const key of ks) await h.http.set(key, value);
    const all = byShard.flat();
    const pid = h.fleet.members[0].proc!.pid!;
    await freeze(pid);
    try {
      const ws = await h.ws();
      const mgets = Array.from({ length: 10 }, () => ws.mget(all));
      const sets = byShard[0].map((key) =>
        ws.set(key, value).then(
          () => 'ok',
          (e: KvError) => e.code,
        ),
      );
      const gets = byShard[0].map((key) =>
        h.http.get(key).then(
          () => 'hit',
          (e: KvError) => e.code,
        ),
      );
      const put = h.http.set(byShard[0][0], value).then(
        () => 'ok',
        (e: KvError) => e.code,
      );
      const bulk = h.http.mget(all);
      // The first requests time out; the shard is then down until it answers again (fails fast).
      const failed = (code: unknown): boolean => code === 'TIMEOUT' || code === 'SHARD_DOWN';
      for (const r of await Promise.all(mgets)) {
        r.forEach((x, n) => {
          if (n < 6)
            assert.ok(isItemError(x) && failed(x.error.code), `${all[n]} on the frozen shard: ${JSON.stringify(x)}`);
          else assert.ok(!isItemError(x) && x.hit && x.value.equals(value), `${all[n]} on a live shard`);
        });
      }
      for (const code of [...(await Promise.all(sets)), ...(await Promise.all(gets)), await put])
        assert.ok(failed(code), `a write or get on the frozen shard: ${code}`);
      for (const x of (await bulk).slice(0, 6))
        assert.ok(isItemError(x) && failed(x.error.code), `bulk get on the frozen shard: ${JSON.stringify(x)}`);
      await ws.close();
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await idle('after requests timed out on a frozen shard');
    await until(() => h.gw.shards[0].up, 5000, 'the shard to be back');
    await stillServes();
  });

  describe('closed and destroyed WebSockets', () => {
    const keys = Array.from({ length: 10 }, (_, i) => `abort:ws:${i}`);
    const value = Buffer.alloc(100 * KB, 0x65);
    before(async () => {
      for (const key of keys) await h.http.set(key, value);
    });

    it('a non-reading socket with 1 MB mgets pending, destroyed, gives back its frames and reservations', async () => {
      for (let round = 0; round < 5; round++) {
        const s = await nonReadingWs(h.gw.port);
        for (let id = 1; id <= 50; id++) s.write(frame(pack({ id, op: 'mget', keys })));
        await until(
          () => inUse() > 0 && h.gw.ctx.budget.used > window / 2,
          5000,
          'frames and reservations held for the non-reader',
        );
        s.destroy();
        await idle(`round ${round}: non-reading WebSocket destroyed`);
      }
    });

    it('a non-reading socket that sends a close frame with answers pending gives back everything', async () => {
      const s = await nonReadingWs(h.gw.port);
      for (let id = 1; id <= 50; id++) s.write(frame(pack({ id, op: 'mget', keys })));
      await until(() => inUse() > 0, 5000, 'frames held for the non-reader');
      // A masked close frame, code 1000.
      s.write(Buffer.from([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]));
      await until(() => h.gw.ctx.gate.ws === 0, 5000, 'the session to close');
      s.destroy();
      await idle('non-reading WebSocket closed with a close frame');
    });

    it('clients that close or terminate with many requests in flight, many times', async () => {
      for (let round = 0; round < 10; round++) {
        const c = await h.ws();
        const pending: Promise<unknown>[] = [];
        for (let n = 0; n < 40; n++) pending.push(c.mget(keys).catch(() => undefined));
        for (let n = 0; n < 20; n++) pending.push(c.set(`abort:ws:set:${round}:${n}`, value).catch(() => undefined));
        // Half the rounds let some answers arrive first.
        if (round % 2 === 1) await Promise.race(pending);
        if (round % 3 === 0) void c.close();
        else void c.terminate();
        await Promise.all(pending);
        await until(() => h.gw.ctx.gate.ws === 0, 5000, 'the session to be gone');
        await idle(`round ${round}: WebSocket ${round % 3 === 0 ? 'closed' : 'terminated'} with requests in flight`);
      }
      await stillServes();
    });
  });
});
