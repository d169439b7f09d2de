/**
 * The get window's parts alone, against naive oracles: the key backlog under random pushes and shifts
 * (its compaction paths), and the window's accounting: reservations and parked bytes return to zero,
 * every item is issued exactly once or dropped, a client that never drains gets nothing more issued,
 * and the window never issues past its byte credit or its count cap.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KeyBacklog } from '../src/flow/key-backlog';
import { GetWindow } from '../src/flow/get-window';
import { MemoryBudget } from '../src/flow/budget';
import { BufferPool } from '../src/stream/buffer-pool';
import { Request } from '../src/core/request';
import type { Router } from '../src/core/router';
import { prng } from './helpers/mc-raw';

class NullRequest extends Request {
  rejected = 0;
  finishedCount = 0;
  protected onValue(): void {}
  protected onMiss(): void {}
  protected onOk(): void {}
  protected onError(): void {
    this.rejected++;
  }
  protected onFinish(): void {
    this.finishedCount++;
  }
}

describe('key backlog', () => {
  it('hands out exactly what was pushed, in order, across every compaction path', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rand = prng(seed);
      const b = new KeyBacklog();
      const oracle: { i: number; key: string; wait: number }[] = [];
      const req = new NullRequest();
      let next = 0;
      for (let step = 0; step < 5000; step++) {
        if (rand() < 0.55) {
          const len = 1 + Math.floor(rand() * (rand() < 0.1 ? 250 : 20));
          const key = Array.from({ length: len }, () => String.fromCharCode(33 + Math.floor(rand() * 90))).join('');
          const src = Buffer.from(`xx${key}yy`);
          const wait = Math.floor(rand() * 50);
          b.push(req, next, src, 2, len, wait);
          oracle.push({ i: next++, key, wait });
        } else if (oracle.length > 0) {
          const o = oracle.shift()!;
          assert.equal(b.item, o.i, `seed ${seed} step ${step}`);
          assert.equal(b.keyBuf.toString('latin1', b.keyOff, b.keyOff + b.keyLen), o.key);
          assert.equal(b.wait, o.wait);
          b.shift();
        }
        assert.equal(b.size, oracle.length);
        assert.equal(
          b.bytes,
          oracle.reduce((n, o) => n + o.key.length, 0),
        );
      }
    }
  });
});

/** A router that records issued gets and lets the test answer them. */
class FakeRouter {
  issued: { req: Request; i: number; key: string }[] = [];
  get(req: Request, i: number, key: Uint8Array, off: number, len: number): boolean {
    const k = Buffer.from(key.subarray(off, off + len)).toString('latin1');
    if (k.startsWith('bad')) {
      req.reject(i, 'BAD_KEY');
      return false;
    }
    req.submitted();
    this.issued.push({ req, i, key: k });
    return true;
  }
}

/** A request wired to a window, as the WebSocket and HTTP bulk requests are. */
class WindowedRequest extends Request {
  w!: GetWindow;
  values = new Map<number, number>();
  finishedCount = 0;
  held: { n: number };
  constructor(held: { n: number }) {
    super();
    this.held = held;
  }
  protected override accepts(i: number, total: number, whole: boolean): boolean {
    return this.w.accepts(this, i, total, whole);
  }
  protected override onSettled(i: number): void {
    this.w.settled(this, i);
  }
  protected override onRedo(i: number, key: Uint8Array, off: number, len: number): void {
    this.w.requeue(this, i, key, off, len);
  }
  protected onValue(i: number, _f: number, total: number, offset: number, _b: Buffer, _o: number, len: number): void {
    this.held.n += len;
    if (offset + len === total) this.values.set(i, total);
  }
  protected onMiss(): void {
    this.w.learnSmall();
  }
  protected onOk(): void {}
  protected onError(): void {}
  protected onFinish(): void {
    this.finishedCount++;
  }
}

describe('get window', () => {
  it('issues within its credit, parks the rest, and returns every reservation, whatever the sizes', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const rand = prng(100 + seed);
      const pool = new BufferPool(0);
      const budget = new MemoryBudget(64 * 1024 * 1024, pool);
      const router = new FakeRouter();
      const held = { n: 0 };
      const limit = 256 * 1024;
      const w = new GetWindow(router as unknown as Router, budget, { heldBytes: () => held.n }, limit);
      const req = new WindowedRequest(held);
      req.w = w;
      const n = 300 + Math.floor(rand() * 700);
      const sizes: number[] = [];
      const bad = new Set<number>();
      for (let i = 0; i < n; i++) {
        sizes.push(rand() < 0.1 ? -1 : Math.floor(rand() < 0.5 ? rand() * 200 : rand() * 200_000));
        if (rand() < 0.02) bad.add(i);
        const key = Buffer.from(bad.has(i) ? `bad${i}` : `k${i}`);
        w.get(req, i, key, 0, key.length, 0);
      }
      req.seal();
      const chunk = Buffer.alloc(70_000);
      // Up to three values arrive at once, interleaved, as from three shard sockets.
      const arriving: { r: Request; i: number; off: number }[] = [];
      let steps = 0;
      while (router.issued.length > 0 || w.parked > 0 || arriving.length > 0) {
        assert.ok(++steps < 200_000, `seed ${seed}: no progress`);
        if (router.issued.length === 0 && arriving.length === 0) {
          held.n = 0;
          w.pump();
          continue;
        } // the client drains it all
        if (arriving.length < 3 && router.issued.length > 0) {
          const { req: r, i } = router.issued.splice(Math.floor(rand() * router.issued.length), 1)[0];
          if (sizes[i] < 0) {
            r.miss(i);
            continue;
          }
          arriving.push({ r, i, off: 0 });
        }
        const k = Math.floor(rand() * arriving.length);
        const a = arriving[k];
        const size = sizes[a.i];
        const len = Math.min(chunk.length, size - a.off);
        if (!a.r.value(a.i, 0, size, a.off, chunk, 0, len)) {
          a.r.redo(a.i, Buffer.from(`k${a.i}`), 0, `k${a.i}`.length);
          arriving.splice(k, 1);
        } else {
          a.off += len;
          if (a.off === size) arriving.splice(k, 1);
        }
        // The window's bound: what the client holds never passes the window, but for one value taken
        // when it held nothing.
        assert.ok(held.n <= limit + 200_000, `seed ${seed}: held ${held.n}`);
        if (rand() < 0.3) {
          held.n = Math.max(0, held.n - Math.floor(rand() * limit));
          w.pump();
        }
      }
      assert.equal(req.finishedCount, 1, `seed ${seed}: the request finished once`);
      for (let i = 0; i < n; i++) {
        if (sizes[i] >= 0 && !bad.has(i))
          assert.equal(req.values.get(i), sizes[i], `seed ${seed}: item ${i} answered whole`);
        if (bad.has(i)) assert.ok(!req.values.has(i));
      }
      assert.equal(w.inflight, 0);
      assert.equal(budget.reserved, 0, `seed ${seed}: reservations returned`);
      assert.equal(budget.parked, 0, `seed ${seed}: parked bytes returned`);
    }
  });

  it('asks for nothing more for a client that never drains, and drops its parked keys when it goes', () => {
    const pool = new BufferPool(0);
    const budget = new MemoryBudget(64 * 1024 * 1024, pool);
    const router = new FakeRouter();
    const held = { n: 0 };
    const w = new GetWindow(router as unknown as Router, budget, { heldBytes: () => held.n }, 1024 * 1024);
    const req = new WindowedRequest(held);
    req.w = w;
    for (let i = 0; i < 2000; i++) w.get(req, i, Buffer.from(`k${i}`), 0, `k${i}`.length, 0);
    req.seal();
    let answered = 0;
    const v = Buffer.alloc(100 * 1024);
    // Answer everything issued; the client reads nothing.
    for (let round = 0; round < 50 && router.issued.length > 0; round++) {
      for (const { req: r, i } of router.issued.splice(0)) {
        if (r.value(i, 0, v.length, 0, v, 0, v.length)) answered++;
        else r.redo(i, Buffer.from(`k${i}`), 0, `k${i}`.length);
      }
    }
    assert.equal(router.issued.length, 0, 'nothing more is issued');
    assert.ok(held.n <= 1024 * 1024 + v.length, `held ${held.n}`);
    assert.ok(answered < 20, `answered ${answered} of 2,000`);
    assert.ok(w.parked > 1900);
    w.cancel();
    assert.equal(w.parked, 0);
    assert.equal(budget.parked, 0);
    assert.equal(req.finishedCount, 1, 'the request finishes once its parked keys are dropped');
  });
});
