/**
 * One item, one settlement; a bug in one request costs that request only; an abandoned request's
 * unsent writes are dropped. Request alone, then Coalescer + ShardConnection against a real memcached
 * (no ingress: the requests here are test subclasses).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Request, requestFaults } from '../src/core/request';
import type { ErrorCode } from '../src/core/errors';
import { LocalFleet } from '../src/fleet/local-fleet';
import { ShardConnection } from '../src/backends/memcached/shard-connection';
import { Coalescer } from '../src/core/coalescer';
import { MutationBatch, OpaqueCounter } from '../src/backends/memcached/mutation-batch';
import { MetaStatus } from '../src/backends/memcached/reply-parser';
import { rawGet, rawSet } from './helpers/mc-raw';
import { until } from './helpers/harness';

/** Records every outcome, in order. */
class Recorder extends Request {
  readonly log: string[] = [];
  readonly values = new Map<number, Buffer[]>();
  finishes = 0;
  protected onValue(
    i: number,
    _flags: number,
    _total: number,
    _offset: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void {
    let v = this.values.get(i);
    if (!v) this.values.set(i, (v = []));
    v.push(Buffer.from(buf.subarray(off, off + len)));
  }
  protected onMiss(i: number): void {
    this.log.push(`${i}:miss`);
  }
  protected onOk(i: number): void {
    this.log.push(`${i}:ok`);
  }
  protected onError(i: number, code: ErrorCode): void {
    this.log.push(`${i}:${code}`);
  }
  protected onFinish(): void {
    this.finishes++;
  }
  value0(i: number): string | undefined {
    return this.values.has(i) ? Buffer.concat(this.values.get(i)!).toString() : undefined;
  }
}

/** A request whose value/ok/miss handlers throw (a bug); its error handler records. */
class Thrower extends Recorder {
  protected override onValue(): void {
    throw new Error('bug in onValue');
  }
  protected override onOk(): void {
    throw new Error('bug in onOk');
  }
  protected override onMiss(): void {
    throw new Error('bug in onMiss');
  }
}

const buf = (s: string): Buffer => Buffer.from(s);

describe('one item, one settlement', () => {
  it('a second settlement of an item is ignored and counted: the request neither finishes early nor goes negative', () => {
    const r = new Recorder();
    r.submitted();
    r.submitted();
    r.seal();
    const before = requestFaults.doubleSettled;
    r.ok(0);
    r.ok(0);
    r.error(0, 'SHARD_ERROR');
    r.miss(0);
    assert.equal(r.finishes, 0, 'item 1 is still pending: the request must not finish');
    assert.equal(r.inFlight, 1);
    assert.equal(requestFaults.doubleSettled - before, 3);
    r.ok(1);
    assert.equal(r.finishes, 1);
    assert.equal(r.inFlight, 0);
    r.ok(1);
    assert.equal(r.inFlight, 0, 'pending never goes below zero');
    assert.deepEqual(r.log, ['0:ok', '1:ok']);
  });

  it("a value's last part settles its item; an error after it, or a second last part, is ignored", () => {
    const r = new Recorder();
    r.submitted();
    r.submitted();
    r.seal();
    const v = buf('hello');
    assert.equal(r.value(5, 0, 5, 0, v, 0, 2), true);
    assert.equal(r.value(5, 0, 5, 2, v, 2, 3), true);
    r.error(5, 'SHARD_DOWN');
    r.value(5, 0, 5, 0, v, 0, 5);
    assert.equal(r.finishes, 0);
    assert.equal(r.value0(5), 'hello');
    assert.deepEqual(r.log, []);
    // an error after partial parts settles it once
    r.value(6, 0, 5, 0, v, 0, 2);
    r.error(6, 'SHARD_ERROR');
    r.error(6, 'SHARD_ERROR');
    assert.equal(r.finishes, 1);
    assert.deepEqual(r.log, ['6:SHARD_ERROR']);
  });

  it('the guard is reset for a pooled request (reinit) and grows for large item indexes', () => {
    class Pooled extends Recorder {
      again(): void {
        this.reinit();
      }
    }
    const r = new Pooled();
    for (let k = 0; k < 3; k++) {
      r.submitted();
      r.submitted();
      r.seal();
      r.ok(0);
      r.ok(100_000);
      assert.equal(r.finishes, k + 1, `round ${k}`);
      r.again();
    }
  });
});

describe('a bug in one request, a real shard', () => {
  let fleet: LocalFleet;
  let conn: ShardConnection;
  let co: Coalescer;
  let port: number;
  before(async () => {
    fleet = await LocalFleet.start({ count: 1 });
    port = fleet.members[0].port;
    conn = new ShardConnection('127.0.0.1', port, {
      timeoutMs: 2000,
      connectTimeoutMs: 1000,
      reconnectMinMs: 10,
      reconnectMaxMs: 100,
    });
    await conn.connect();
    co = new Coalescer([conn], { windowMs: 0, maxWaitMs: 50, maxOps: 1000, maxBytes: 1 << 20 });
  });
  after(async () => {
    conn?.close();
    await fleet?.stop();
  });

  const get = (r: Request, i: number, k: string): void => {
    const b = buf(k);
    co.get(0, r, i, b, 0, b.length, 0);
  };
  const set = (r: Request, i: number, k: string, v: string): void => {
    const kb = buf(k),
      vb = buf(v);
    co.set(0, r, i, kb, 0, kb.length, 0, 0, vb, 0, vb.length, 0);
  };
  const del = (r: Request, i: number, k: string): void => {
    const b = buf(k);
    co.del(0, r, i, b, 0, b.length, 0);
  };

  it('a throwing handler fails its own request with INTERNAL; the shard connection and the other request are intact', async () => {
    await rawSet(port, 'st:hit', buf('the value'));
    const resets = conn.resets;
    const threwBefore = requestFaults.handlerThrew;
    const bad = new Thrower();
    const good = new Recorder();
    // Both in the same flush, so in the same batches on the same connection, interleaved.
    set(bad, 0, 'st:set-bad', 'x');
    set(good, 0, 'st:set-good', 'y');
    get(bad, 1, 'st:hit');
    get(good, 1, 'st:hit');
    get(bad, 2, 'st:miss');
    get(good, 2, 'st:miss');
    set(bad, 3, 'st:set-bad2', 'z');
    bad.seal();
    good.seal();
    await until(() => bad.finishes === 1 && good.finishes === 1, 5000, 'both requests finished');
    assert.equal(conn.resets, resets, 'the shard connection was not reset');
    assert.equal(good.value0(1), 'the value');
    assert.deepEqual(good.log.sort(), ['0:ok', '2:miss']);
    // every item of the broken request settled once, with INTERNAL
    assert.deepEqual(bad.log.sort(), ['0:INTERNAL', '1:INTERNAL', '2:INTERNAL', '3:INTERNAL']);
    assert.ok(bad.failed);
    assert.ok(requestFaults.handlerThrew > threwBefore);
    // and the connection still serves
    const later = new Recorder();
    get(later, 0, 'st:set-good');
    later.seal();
    await until(() => later.finishes === 1, 5000, 'a later get');
    assert.equal(later.value0(0), 'y');
  });

  it('writes of a request abandoned between routing and flush are not sent; the others are', async () => {
    await rawSet(port, 'ab:del-me', buf('still here'));
    const batches = conn.batchesSent;
    const gone = new Recorder();
    const live = new Recorder();
    set(gone, 0, 'ab:gone-1', 'never');
    set(live, 0, 'ab:live-1', 'kept');
    del(gone, 1, 'ab:del-me');
    set(live, 1, 'ab:live-2', 'kept too');
    set(gone, 2, 'ab:gone-2', 'never');
    gone.seal();
    live.seal();
    // The client goes away in the same turn (before the coalescer's setImmediate flush).
    gone.abandon();
    await until(() => gone.finishes === 1 && live.finishes === 1, 5000, 'both requests finished');
    assert.deepEqual(gone.log, [], 'an abandoned request gets no output');
    assert.deepEqual(live.log.sort(), ['0:ok', '1:ok']);
    assert.equal(await rawGet(port, 'ab:gone-1'), null, 'an abandoned set was not applied');
    assert.equal(await rawGet(port, 'ab:gone-2'), null, 'an abandoned set was not applied');
    assert.deepEqual(
      (await rawGet(port, 'ab:del-me'))?.value,
      buf('still here'),
      'an abandoned delete was not applied',
    );
    assert.deepEqual((await rawGet(port, 'ab:live-1'))?.value, buf('kept'));
    assert.deepEqual((await rawGet(port, 'ab:live-2'))?.value, buf('kept too'));
    // A flush holding only abandoned writes sends nothing.
    const sent = conn.batchesSent;
    assert.ok(sent > batches);
    const gone2 = new Recorder();
    set(gone2, 0, 'ab:gone-3', 'never');
    gone2.seal();
    gone2.abandon();
    await until(() => gone2.finishes === 1, 5000, 'the abandoned request finished');
    assert.equal(conn.batchesSent, sent, 'nothing was written for it');
    assert.equal(await rawGet(port, 'ab:gone-3'), null);
  });
});

describe('MutationBatch.prune', () => {
  it("cuts out abandoned ops and keeps every other op's bytes and opaque", () => {
    const opq = new OpaqueCounter();
    const b = new MutationBatch(100, opq);
    const keep = new Recorder();
    const drop = new Recorder();
    const ops: { r: Recorder; cmd: string }[] = [];
    for (let k = 0; k < 9; k++) {
      const r = k % 3 === 1 ? drop : keep;
      const key = buf(`key${k}`);
      if (k % 4 === 3) {
        b.addDel(r, k, key, 0, key.length);
        ops.push({ r, cmd: `md key${k} O${k + 1}\r\n` });
      } else {
        const v = buf(`v\r\n${k}`);
        b.beginSet(r, k, key, 0, key.length, 0, 0, v.length);
        b.appendValue(v, 0, v.length);
        b.endSet();
        ops.push({ r, cmd: `ms key${k} ${v.length} O${k + 1}\r\nv\r\n${k}\r\n` });
      }
    }
    assert.equal(b.bytesOut().toString('latin1'), ops.map((o) => o.cmd).join(''));
    assert.equal(b.prune(), 9, 'nothing abandoned: nothing cut');
    drop.abandon();
    drop.seal();
    keep.seal();
    assert.equal(b.prune(), 6);
    assert.equal(
      b.bytesOut().toString('latin1'),
      ops
        .filter((o) => o.r === keep)
        .map((o) => o.cmd)
        .join(''),
    );
    assert.equal(drop.finishes, 1, 'the dropped ops settled');
    assert.deepEqual(drop.log, []);
    // the kept ops still expect their own opaques, in order
    for (const k of [0, 2, 3, 5, 6, 8]) assert.equal(b.settleNext(MetaStatus.Stored, k + 1, ''), true, `op ${k}`);
    assert.equal(keep.finishes, 1);
  });

  it('opaques are unique per connection across batches, and wrap at 2^32', () => {
    const opq = new OpaqueCounter();
    const seen = new Set<number>();
    for (let k = 0; k < 1000; k++) seen.add(opq.next());
    assert.equal(seen.size, 1000);
    assert.ok(!seen.has(0), 'the first op of a connection is not O0');
    (opq as unknown as { v: number }).v = 0xfffffffe;
    assert.deepEqual([opq.next(), opq.next(), opq.next()], [0xffffffff, 0, 1]);
    const b = new MutationBatch(10, opq);
    const r = new Recorder();
    const key = buf('k');
    b.addDel(r, 0, key, 0, 1);
    assert.equal(b.bytesOut().toString(), 'md k O2\r\n');
    assert.equal(b.settleNext(MetaStatus.Stored, 0, ''), false, 'a stale opaque is out of step');
  });
});
