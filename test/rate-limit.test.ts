/**
 * The limit machinery of src/security alone, on a fake clock (numbers, no sleeps): the token bucket's
 * rate, burst, retry-after, debt and long-run exactness; per-principal and per-tenant limits and their
 * bounded memory; connection limits per address group (IPv4, IPv6 /64, IPv4-mapped) and per principal.
 * That the gateway holds a configured rate within 10% on a real clock is measured from outside, by the
 * tests that drive the fronts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TokenBucket } from '../src/security/token-bucket';
import { LimitKind, TenantLimits, validateLimitsSpec } from '../src/security/tenant-limits';
import {
  AddressGrouper,
  AddressLimits,
  ConnectionRefusal,
  COUNT_RETRY_MS,
  validateAddressLimitsSpec,
} from '../src/security/address-limits';

/** Takes `n` every `stepMs` from `t0` for `durationMs` (inclusive of both ends); returns the takes that passed. */
function drive(b: TokenBucket, n: number, t0: number, stepMs: number, durationMs: number): number {
  const steps = Math.round(durationMs / stepMs);
  let passed = 0;
  for (let k = 0; k <= steps; k++) if (b.take(n, t0 + k * stepMs)) passed++;
  return passed;
}

function within(actual: number, expected: number, fraction: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= expected * fraction,
    `${what}: ${actual} is not within ${fraction * 100}% of ${expected}`,
  );
}

describe('src/security imports', () => {
  it('imports only src/core, its own folder and node builtins', () => {
    const dir = join(__dirname, '..', '..', 'src', 'security');
    const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
    assert.ok(files.length >= 3, `read ${files.join(', ')}`);
    for (const f of files) {
      const text = readFileSync(join(dir, f), 'utf8');
      for (const m of text.matchAll(/^(?:import|export)\b[^;]*?from '([^']+)'/gms)) {
        const target = m[1];
        assert.ok(
          /^node:/.test(target) || /^\.\/[\w-]+$/.test(target) || /^\.\.\/core\/[\w-]+$/.test(target),
          `src/security/${f} imports ${target}`,
        );
      }
    }
  });
});

describe('token bucket', () => {
  it('driven at twice its rate for 10 s admits rate * 10 + burst (within 1%)', () => {
    for (const [rate, burst] of [
      [100, 20],
      [37.5, 10],
      [5000, 5000],
      [1, 1],
    ]) {
      const b = new TokenBucket(rate, burst, 0);
      const step = 1000 / (2 * rate); // two attempts per token that comes in
      const passed = drive(b, 1, 0, step, 10_000);
      within(passed, rate * 10 + burst, 0.01, `rate ${rate} burst ${burst}`);
      assert.ok(passed < 2 * rate * 10, 'some attempts were refused');
    }
  });

  it('a full bucket gives its burst at once and no more, however long it was idle', () => {
    const b = new TokenBucket(10, 7, 0);
    let t = 0;
    for (const idle of [0, 60_000, 3_600_000]) {
      t += idle;
      let passed = 0;
      while (b.take(1, t)) passed++;
      assert.equal(passed, 7, `after ${idle} ms idle`);
      assert.equal(b.take(1, t), false);
      t += 1000; // refills to full for the next round
      assert.equal(b.isFull(t), true);
    }
    // Bytes: one take of the whole burst passes, one byte more does not.
    const bytes = new TokenBucket(1000, 4096, 0);
    assert.equal(bytes.take(4096, 0), true);
    assert.equal(bytes.take(1, 0), false);
  });

  it('retry-after is exact: a take that long after passes, one ms earlier it does not', () => {
    for (const [rate, burst, n] of [
      [10, 10, 1],
      [3, 5, 1],
      [7, 20, 3],
      [0.5, 2, 1],
      [1000, 64 * 1024, 1500],
      [1e6, 1e6, 999_999],
    ]) {
      const b = new TokenBucket(rate, burst, 0);
      let t = 13;
      while (b.take(n, t)) t += 0.25; // drain it, on a fractional clock
      const r = b.retryAfterMs(n, t);
      assert.ok(Number.isInteger(r) && r >= 1, `rate ${rate}: retry-after ${r} is a whole positive ms`);
      assert.equal(b.take(n, t + r - 1), false, `rate ${rate} n ${n}: passed 1 ms before its retry-after ${r}`);
      assert.equal(b.retryAfterMs(n, t + r - 1), 1);
      assert.equal(b.retryAfterMs(n, t + r), 0);
      assert.equal(b.take(n, t + r), true, `rate ${rate} n ${n}: refused at its retry-after ${r}`);
    }
  });

  it('charges after the fact into debt, and refuses until the debt is repaid', () => {
    const b = new TokenBucket(1000, 1000, 0); // 1000 B/s, 1 s burst
    assert.equal(b.take(0, 0), true, 'not in debt');
    b.charge(5000, 0);
    assert.equal(b.tokens(0), -4000);
    assert.equal(b.take(0, 0), false, 'in debt');
    assert.equal(b.retryAfterMs(0, 0), 4000);
    assert.equal(b.take(0, 3999), false);
    assert.equal(b.take(0, 4000), true, 'debt repaid');
    assert.equal(b.take(1, 4000), false, 'repaid is not yet a token');
    assert.equal(b.retryAfterMs(1, 4000), 1);

    // Writes charged after they ran, each let in only while out of debt, hold the rate over 10 s.
    const w = new TokenBucket(1000, 1000, 0);
    let written = 0;
    for (let t = 0; t <= 10_000; t += 0.5) {
      if (!w.take(0, t)) continue;
      w.charge(300, t);
      written += 300;
    }
    within(written, 1000 * 10 + 1000, 0.03, 'bytes written'); // at most one write of overshoot
    assert.ok(written <= 1000 * 10 + 1000 + 300);
  });

  it('a take larger than the burst passes only when the bucket is full, and leaves the excess as debt', () => {
    const b = new TokenBucket(10, 10, 0);
    assert.equal(b.retryAfterMs(25, 0), 0, 'full: it may pass');
    assert.equal(b.take(25, 0), true);
    assert.equal(b.tokens(0), -15);
    assert.equal(b.retryAfterMs(25, 0), 2500, 'until full again');
    assert.equal(b.take(25, 1500), false);
    assert.equal(b.take(1, 1600), true, 'small takes go on meanwhile');
    assert.equal(b.retryAfterMs(25, 1600), 1000, 'and push the full bucket back');
    assert.equal(b.take(25, 2500), false);
    assert.equal(b.take(25, 2599), false);
    assert.equal(b.take(25, 2600), true);
    // Over time, such takes hold the rate too: 10 s at 10/s, takes of 25.
    const c = new TokenBucket(10, 10, 0);
    const passed = drive(c, 25, 0, 1, 10_000);
    assert.equal(passed * 25 <= 10 * 10 + 25, true, `${passed} takes of 25`);
    assert.equal(passed, 5); // at 0, 2500, 5000, 7500 and 10000
  });

  it('does not drift over a million steps (whole-ms clock: exact; fractional clock: conserved)', () => {
    // Whole ms, whole rate: takes + level equal burst + rate * T exactly.
    const a = new TokenBucket(1000, 50, 0);
    let taken = 0;
    for (let t = 0; t < 1_000_000; t++) if (a.take(2, t)) taken += 2;
    const end = 999_999;
    assert.equal(taken + a.tokens(end), 50 + (1000 * end) / 1000);
    assert.equal(Number.isInteger(a.tokens(end)), true);

    // A rate with no finite binary form, 0.7 ms steps: conserved to well under a token.
    const b = new TokenBucket(3, 5, 0);
    taken = 0;
    let last = 0;
    for (let k = 0; k < 1_000_000; k++) {
      last = k * 0.7;
      if (b.take(1, last)) taken++;
    }
    assert.ok(Math.abs(taken + b.tokens(last) - (5 + (3 * last) / 1000)) < 1e-6, `taken ${taken}`);
    assert.equal(taken, 5 + Math.floor((3 * last) / 1000));

    // A high rate on a clock far from zero (a Date.now()-sized base) with fractional steps: the clock's
    // magnitude does not leak into the count.
    const base = 1.7e12 + 0.25;
    const c = new TokenBucket(100_000, 100, base);
    taken = 0;
    for (let k = 0; k < 1_000_000; k++) {
      last = base + k * 0.005; // 2x the rate: one take per 5 µs against one token per 10 µs
      if (c.take(1, last)) taken++;
    }
    const expected = 100 + (100_000 * (last - base)) / 1000;
    assert.ok(Math.abs(taken + c.tokens(last) - expected) < 1e-3, `taken ${taken}, expected ${expected}`);
  });

  it('ignores a clock that goes back', () => {
    const b = new TokenBucket(10, 10, 1000);
    while (b.take(1, 1000));
    assert.equal(b.take(1, 500), false);
    assert.equal(b.take(1, 1099), false, 'the time it went back bought nothing');
    assert.equal(b.take(1, 1100), true);
  });

  it('a count that is NaN or negative counts as 0 and never poisons the level', () => {
    const b = new TokenBucket(10, 10, 0);
    assert.equal(b.take(NaN, 0), true);
    assert.equal(b.take(-5, 0), true);
    b.charge(NaN, 0);
    b.charge(-100, 0);
    assert.equal(b.tokens(0), 10, 'nothing taken, nothing given');
    assert.equal(b.retryAfterMs(NaN, 0), 0);
    b.charge(15, 0);
    assert.equal(b.take(NaN, 0), false, 'in debt');
    assert.equal(b.retryAfterMs(NaN, 0), 500);
  });

  it('refuses a rate or burst that is not a positive number', () => {
    for (const [r, bu] of [
      [0, 1],
      [-1, 1],
      [NaN, 1],
      [Infinity, 1],
      [1, 0],
      [1, NaN],
    ])
      assert.throws(() => new TokenBucket(r, bu, 0), RangeError);
  });
});

describe('tenant limits', () => {
  it('principals of one tenant share its write-bytes cap and have their own ops buckets', () => {
    const lim = new TenantLimits({ opsPerSecond: 10, writeBytesPerSecond: 1000 });
    for (let i = 0; i < 10; i++) assert.equal(lim.admit('p1', 'acme', 1, 0, 0, 0), 0);
    const r = lim.admit('p1', 'acme', 1, 0, 0, 0);
    assert.equal(r, 100, 'one op is 100 ms at 10/s');
    assert.equal(lim.lastRefusal, LimitKind.Ops);
    assert.equal(lim.admit('p2', 'acme', 10, 0, 0, 0), 0, 'p2 has its own ops');

    // Both write into acme's 1000 B/s.
    const lim2 = new TenantLimits({ opsPerSecond: 10, writeBytesPerSecond: 1000 });
    assert.equal(lim2.admit('p1', 'acme', 1, 600, 600, 0), 0);
    assert.equal(lim2.admit('p2', 'acme', 1, 600, 600, 0), 200, 'p2 waits for what p1 wrote');
    assert.equal(lim2.lastRefusal, LimitKind.WriteBytes);
    assert.equal(lim2.tokens('p2', LimitKind.Ops, 0), 10, 'the refused request took no op');
    assert.equal(lim2.admit('other', 'globex', 1, 600, 600, 0), 0, 'another tenant has its own cap');
    assert.equal(lim2.tenants, 2);

    // Driven together at twice the write cap for 10 s, the tenant writes 1000 * 10 + 1000 (1%), and each
    // principal gets its own ops rate.
    const lim3 = new TenantLimits({ opsPerSecond: 200, writeBytesPerSecond: 1000 });
    let bytes = 0;
    const ops = [0, 0];
    for (let t = 0; t <= 10_000; t += 5) {
      for (const [k, p] of ['p1', 'p2'].entries()) {
        if (lim3.admit(p, 'acme', 2, 0, 0, t) === 0) ops[k] += 2;
        if (lim3.admit(p, 'acme', 0, 5, 5, t) === 0) bytes += 5;
      }
    }
    within(bytes, 1000 * 10 + 1000, 0.01, 'acme bytes written');
    // Each principal asks for 2 ops every 5 ms (400/s) and gets its own 200/s, not a share of one.
    within(ops[0], 200 * 10 + 200, 0.01, 'p1 ops');
    within(ops[1], 200 * 10 + 200, 0.01, 'p2 ops');
    assert.ok(lim3.refusedWriteBytes > 0 && lim3.refusedOps > 0);
    assert.equal(lim3.admitted + lim3.refused, 4 * 2001);
    assert.equal(lim3.refused, lim3.refusedOps + lim3.refusedBytes + lim3.refusedWriteBytes);
  });

  it('a request of n items counts n ops; bytes per principal; charges after the fact', () => {
    const lim = new TenantLimits({ opsPerSecond: 100, bytesPerSecond: 10_000 });
    assert.equal(lim.admit('p', 't', 100, 0, 0, 0), 0, 'a 100-item request uses the whole burst');
    assert.equal(lim.admit('p', 't', 1, 0, 0, 0), 10);
    assert.equal(lim.refusedOps, 1);
    assert.equal(lim.admit('p', 't', 1, 0, 0, 10), 0);
    // An answer of 30 kB learnt after: the next request waits for the debt.
    lim.charge('p', 't', 30_000, 0, 10);
    assert.equal(lim.tokens('p', LimitKind.Bytes, 10), -20_000);
    assert.equal(lim.admit('p', 't', 1, 0, 0, 1000), 1010);
    assert.equal(lim.lastRefusal, LimitKind.Bytes);
    assert.equal(lim.refusedBytes, 1);
    assert.equal(lim.admit('p', 't', 1, 0, 0, 2010), 0);
    assert.equal(lim.tokens('p', LimitKind.WriteBytes, 2010), null, 'no write limit here');

    // The tenant's write debt stops all its principals.
    const w = new TenantLimits({ writeBytesPerSecond: 1000 });
    assert.equal(w.admit('a', 't', 1, 100, 100, 0), 0);
    w.charge('a', 't', 0, 5000, 0);
    assert.equal(w.admit('b', 't', 1, 0, 0, 0), 4100, 'b waits for the debt a made');
    assert.equal(w.admit('b', 't', 1, 0, 0, 4100), 0);
  });

  it('a tenant spec replaces the defaults; an unlimited spec keeps nothing and refuses nothing', () => {
    const none = new TenantLimits({});
    const zero = new TenantLimits({ opsPerSecond: 0, bytesPerSecond: 0, writeBytesPerSecond: 0 });
    for (const lim of [none, zero]) {
      for (let i = 0; i < 100_000; i++) assert.equal(lim.admit(`id${i}`, `t${i % 7}`, 1000, 1e6, 1e6, 0), 0);
      assert.equal(lim.principals, 0);
      assert.equal(lim.tenants, 0);
      assert.equal(lim.admitted, 100_000);
    }
    const mixed = new TenantLimits({ opsPerSecond: 1 }, { tenants: { free: {}, big: { opsPerSecond: 1000 } } });
    for (let i = 0; i < 50; i++) assert.equal(mixed.admit('f', 'free', 1, 0, 0, 0), 0);
    assert.equal(mixed.principals, 0, 'the unlimited tenant keeps no entry');
    assert.equal(mixed.admit('d', 'default-ish', 1, 0, 0, 0), 0);
    assert.notEqual(mixed.admit('d', 'default-ish', 1, 0, 0, 0), 0, 'the defaults apply to an unnamed tenant');
    for (let i = 0; i < 1000; i++) assert.equal(mixed.admit('b', 'big', 1, 0, 0, 0), 0);
    assert.notEqual(mixed.admit('b', 'big', 1, 0, 0, 0), 0);
  });

  it('bounds its memory when 1e5 distinct ids pass: full entries are swept, others evicted', () => {
    // Ids that come back to full (10 ms at 100/s) are swept: nothing is lost, nothing evicted.
    const lim = new TenantLimits({ opsPerSecond: 100, writeBytesPerSecond: 1e6 }, { maxPrincipals: 1000 });
    let most = 0;
    for (let i = 0; i < 100_000; i++) {
      assert.equal(lim.admit(`id${i}`, 'acme', 1, 10, 10, i), 0);
      if (lim.principals > most) most = lim.principals;
    }
    assert.ok(most <= 1000, `held ${most} principals`);
    assert.ok(lim.swept > 90_000, `swept ${lim.swept}`);
    assert.equal(lim.evicted, 0);
    assert.equal(lim.tenants, 1);

    // All at one instant (none ever full again): the oldest are evicted, the bound holds.
    const burst = new TenantLimits({ opsPerSecond: 100 }, { maxPrincipals: 1000 });
    most = 0;
    for (let i = 0; i < 100_000; i++) {
      burst.admit(`id${i}`, 'acme', 1, 0, 0, 0);
      if (burst.principals > most) most = burst.principals;
    }
    assert.ok(most <= 1000, `held ${most} principals`);
    assert.ok(burst.evicted > 90_000, `evicted ${burst.evicted}`);
    const held = burst.principals;
    assert.equal(burst.sweep(10_000), held, 'all are full 10 s later');
    assert.equal(burst.principals, 0);

    // Distinct tenants (names a client could choose) are bounded too.
    const tenants = new TenantLimits({ writeBytesPerSecond: 100 }, { maxPrincipals: 1000, maxTenants: 100 });
    most = 0;
    for (let i = 0; i < 100_000; i++) {
      tenants.admit(`id${i}`, `t${i}`, 1, 50, 50, 0);
      if (tenants.tenants > most) most = tenants.tenants;
    }
    assert.ok(most <= 1000 + 100, `held ${most} tenants`);
  });

  it('churning principal ids does not forgive a tenant its write debt', () => {
    const lim = new TenantLimits({ writeBytesPerSecond: 1000 }, { maxPrincipals: 8 });
    lim.charge('attacker', 'acme', 0, 1_000_000, 0);
    for (let i = 0; i < 5000; i++) assert.notEqual(lim.admit(`churn${i}`, 'acme', 1, 0, 0, i), 0);
    assert.ok(lim.principals <= 8);
    assert.ok(lim.swept > 0, 'principal entries were dropped');
    assert.equal(lim.lastRefusal, LimitKind.WriteBytes);
    assert.equal(lim.tenants, 1);
    assert.equal(lim.admit('new', 'acme', 1, 0, 0, 5000), 994_000, 'the debt left after 5 s at 1000 B/s');
  });

  it('validateLimitsSpec names every bad field at once', () => {
    const { spec, problems } = validateLimitsSpec(
      { opsPerSecond: -1, bytesPerSecond: 'fast', writeBytesPerSecond: 5e6, burstSeconds: 0, burst: 3 },
      'tenants.acme.limits',
    );
    assert.deepEqual(
      problems.map((p) => p.path).sort(),
      [
        'tenants.acme.limits.burst',
        'tenants.acme.limits.burstSeconds',
        'tenants.acme.limits.bytesPerSecond',
        'tenants.acme.limits.opsPerSecond',
      ].sort(),
    );
    for (const p of problems) assert.ok(p.message.includes(p.path), `${p.message} names ${p.path}`);
    assert.match(problems.find((p) => p.path.endsWith('bytesPerSecond'))!.message, /"fast"/);
    assert.deepEqual(spec, { writeBytesPerSecond: 5e6 }, 'the good field is kept');

    for (const bad of [NaN, Infinity, 1e13, null, true])
      assert.equal(validateLimitsSpec({ opsPerSecond: bad }, 'l').problems.length, 1, String(bad));
    assert.equal(validateLimitsSpec({ burstSeconds: 3601 }, 'l').problems.length, 1);
    assert.deepEqual(validateLimitsSpec([], 'l').problems.length, 1);
    assert.deepEqual(validateLimitsSpec('x', 'l').problems[0].path, 'l');
    assert.deepEqual(validateLimitsSpec(undefined, 'l'), { spec: {}, problems: [] });
    const ok = { opsPerSecond: 0.5, bytesPerSecond: 0, writeBytesPerSecond: 1e6, burstSeconds: 2.5 };
    assert.deepEqual(validateLimitsSpec(ok, ''), { spec: ok, problems: [] });
  });
});

describe('address limits', () => {
  it('groups addresses: IPv4 by /32, IPv6 by /64, IPv4-mapped IPv6 as IPv4, as uWS writes them', () => {
    const g = new AddressGrouper();
    assert.equal(g.group('127.0.0.1'), 0x7f000001);
    assert.equal(g.group('::ffff:127.0.0.1'), 0x7f000001);
    assert.equal(g.group('0000:0000:0000:0000:0000:ffff:7f00:0001'), 0x7f000001);
    assert.equal(g.group('::FFFF:7F00:1'), 0x7f000001);
    assert.notEqual(g.group('127.0.0.2'), g.group('127.0.0.1'));
    const a = g.group('2001:db8:1:2:aaaa::1');
    assert.equal(g.group('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'), a);
    assert.equal(g.group('[2001:db8:1:2::9]'), a);
    assert.notEqual(g.group('2001:db8:1:3::1'), a);
    assert.equal(g.group('0000:0000:0000:0000:0000:0000:0000:0001'), g.group('::1'));
    assert.equal(g.group('fe80::1%eth0'), g.group('fe80::2'));
    assert.notEqual(g.group('::1'), g.group('0.0.0.1'), 'loopback v6 is not v4');
    for (const bad of [
      '',
      'localhost',
      '1.2.3',
      '1.2.3.256',
      '1.2.3.4.5',
      '1::2::3',
      ':1::',
      '1:2:3:4:5:6:7',
      '12345::',
    ])
      assert.equal(g.group(bad), `?${bad}`, `"${bad}" is no address`);

    const wide = new AddressGrouper(24, 48);
    assert.equal(wide.group('10.0.0.1'), wide.group('10.0.0.200'));
    assert.equal(wide.group('::ffff:10.0.0.9'), wide.group('10.0.0.200'));
    assert.notEqual(wide.group('10.0.1.1'), wide.group('10.0.0.1'));
    assert.equal(wide.group('2001:db8:1:2::1'), wide.group('2001:db8:1:ffff::1'));
    assert.notEqual(wide.group('2001:db8:2::1'), wide.group('2001:db8:1::1'));
    const odd = new AddressGrouper(0, 57); // a prefix inside a group
    assert.equal(odd.group('1.2.3.4'), odd.group('200.1.1.1'));
    assert.equal(odd.group('2001:db8:1:200::'), odd.group('2001:db8:1:27f:ffff::')); // 9 bits of group 3
    assert.notEqual(odd.group('2001:db8:1:180::'), odd.group('2001:db8:1:200::'));
    assert.throws(() => new AddressGrouper(33, 64), RangeError);
    assert.throws(() => new AddressGrouper(32, 129), RangeError);
  });

  it('limits connections per address group; close frees the slot', () => {
    const lim = new AddressLimits({ maxConnectionsPerAddress: 2 });
    assert.equal(lim.open('10.0.0.1', null, 0), null);
    assert.equal(lim.open('::ffff:10.0.0.1', null, 0), null, 'mapped: the same address');
    const r = lim.open('0000:0000:0000:0000:0000:ffff:0a00:0001', null, 0);
    assert.deepEqual(r && { kind: r.kind, ms: r.retryAfterMs }, {
      kind: ConnectionRefusal.AddressConnections,
      ms: COUNT_RETRY_MS,
    });
    assert.equal(lim.open('10.0.0.2', null, 0), null, 'another address is not counted with it');
    lim.close('10.0.0.1', null);
    assert.equal(lim.open('10.0.0.1', null, 0), null, 'the closed slot is free again');
    assert.notEqual(lim.open('10.0.0.1', null, 0), null);
    assert.equal(lim.refusedAddress, 2);
    assert.equal(lim.connections, 3);

    // An IPv6 client picking a new address per connection inside its /64.
    const v6 = new AddressLimits({ maxConnectionsPerAddress: 3 });
    for (let i = 1; i <= 3; i++) assert.equal(v6.open(`2001:db8:0:1::${i.toString(16)}`, null, 0), null);
    assert.equal(v6.open('2001:db8:0:1:dead:beef:0:1', null, 0)?.kind, ConnectionRefusal.AddressConnections);
    assert.equal(v6.open('2001:db8:0:2::1', null, 0), null, 'the next /64 is another client');
    assert.equal(v6.connectionsFrom('2001:0db8:0000:0001:0000:0000:0000:0000'), 3);
  });

  it('limits connections per principal across addresses', () => {
    const lim = new AddressLimits({ maxConnectionsPerPrincipal: 2 });
    assert.equal(lim.open('10.0.0.1', 'key1', 0), null);
    assert.equal(lim.open('10.0.0.2', 'key1', 0), null);
    assert.equal(lim.open('10.0.0.3', 'key1', 0)?.kind, ConnectionRefusal.PrincipalConnections);
    assert.equal(lim.open('10.0.0.3', 'key2', 0), null);
    assert.equal(lim.open('10.0.0.3', null, 0), null, 'no principal: not counted');
    assert.equal(lim.addressEntries, 0, 'no per-address limit: no address kept');
    lim.close('10.0.0.1', 'key1');
    assert.equal(lim.open('10.0.0.3', 'key1', 0), null);
    assert.equal(lim.connectionsOf('key1'), 2);
    lim.close('10.0.0.3', 'key2');
    assert.equal(lim.principalEntries, 1, 'a principal with nothing open is forgotten');
  });

  it('limits new connections a second per address, with an exact retry-after', () => {
    const lim = new AddressLimits({ newConnectionsPerSecondPerAddress: 5 });
    for (let i = 0; i < 5; i++) {
      assert.equal(lim.open('10.0.0.1', null, 0), null);
      lim.close('10.0.0.1', null);
    }
    const r = lim.open('10.0.0.1', null, 0);
    assert.equal(r?.kind, ConnectionRefusal.NewConnectionRate);
    assert.equal(r?.retryAfterMs, 200);
    assert.equal(lim.open('::ffff:10.0.0.1', null, 199)?.kind, ConnectionRefusal.NewConnectionRate);
    assert.equal(lim.open('10.0.0.2', null, 199), null, 'another address has its own rate');
    assert.equal(lim.open('10.0.0.1', null, 200), null);
    assert.equal(lim.refusedRate, 2);

    // Attempts at twice the rate for 10 s: 5 * 10 + 5 pass.
    const drv = new AddressLimits({ newConnectionsPerSecondPerAddress: 5, newConnectionsBurst: 5 });
    let passed = 0;
    for (let t = 0; t <= 10_000; t += 100) {
      if (drv.open('2001:db8::1', null, t) === null) {
        passed++;
        drv.close('2001:db8::1', null);
      }
    }
    assert.equal(passed, 5 * 10 + 5);
  });

  it('a connection refused by a count takes no new-connection token', () => {
    const lim = new AddressLimits({ maxConnectionsPerAddress: 1, newConnectionsPerSecondPerAddress: 1 });
    assert.equal(lim.open('10.0.0.1', null, 0), null);
    for (let i = 0; i < 10; i++)
      assert.equal(lim.open('10.0.0.1', null, 1000)?.kind, ConnectionRefusal.AddressConnections);
    lim.close('10.0.0.1', null);
    assert.equal(lim.open('10.0.0.1', null, 1000), null, 'the token that came in is still there');
  });

  it('counts never go below zero on a double close', () => {
    const lim = new AddressLimits({ maxConnectionsPerAddress: 2, maxConnectionsPerPrincipal: 2 });
    assert.equal(lim.open('10.0.0.1', 'k', 0), null);
    lim.close('10.0.0.1', 'k');
    lim.close('10.0.0.1', 'k');
    lim.close('10.0.0.9', 'other');
    assert.equal(lim.unmatchedCloses, 2);
    assert.equal(lim.connections, 0);
    assert.equal(lim.connectionsFrom('10.0.0.1'), 0);
    assert.equal(lim.connectionsOf('k'), 0);
    // Had a count gone to -1, three would pass now.
    assert.equal(lim.open('10.0.0.1', null, 0), null);
    assert.equal(lim.open('10.0.0.1', null, 0), null);
    assert.equal(lim.open('10.0.0.1', null, 0)?.kind, ConnectionRefusal.AddressConnections);
    assert.equal(lim.open('10.0.0.2', 'k', 0), null);
    assert.equal(lim.open('10.0.0.3', 'k', 0), null);
    assert.equal(lim.open('10.0.0.4', 'k', 0)?.kind, ConnectionRefusal.PrincipalConnections);

    // With a rate limit the address entry outlives its last connection: a double close still finds it.
    const kept = new AddressLimits({ maxConnectionsPerAddress: 2, newConnectionsPerSecondPerAddress: 100 });
    assert.equal(kept.open('2001:db8::1', null, 0), null);
    kept.close('2001:db8::1', null);
    kept.close('2001:db8::2', null);
    assert.equal(kept.unmatchedCloses, 1);
    assert.equal(kept.connectionsFrom('2001:db8::'), 0);
    assert.equal(kept.open('2001:db8::1', null, 0), null);
    assert.equal(kept.open('2001:db8::1', null, 0), null);
    assert.equal(kept.open('2001:db8::1', null, 0)?.kind, ConnectionRefusal.AddressConnections);

    const none = new AddressLimits({});
    none.close('10.0.0.1', 'k');
    assert.equal(none.connections, 0);
    assert.equal(none.unmatchedCloses, 1);
  });

  it('bounds its memory when 1e5 distinct addresses connect', () => {
    const lim = new AddressLimits({ newConnectionsPerSecondPerAddress: 1, maxAddresses: 1000 });
    // 100 connections stay open throughout (their entries are never dropped); the rest come and go.
    for (let i = 0; i < 100; i++) assert.equal(lim.open(`10.1.0.${i}`, null, 0), null);
    let most = 0;
    for (let i = 0; i < 100_000; i++) {
      const a = `2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`;
      assert.equal(lim.open(a, null, i % 3), null);
      lim.close(a, null);
      if (lim.addressEntries > most) most = lim.addressEntries;
    }
    assert.ok(most <= 1000 + 100, `held ${most} addresses`);
    assert.ok(lim.evicted > 0);
    for (let i = 0; i < 100; i++) assert.equal(lim.connectionsFrom(`10.1.0.${i}`), 1, 'open ones kept');
    const idle = lim.addressEntries - 100;
    assert.equal(lim.sweep(10_000), idle);
    assert.equal(lim.addressEntries, 100);
    for (let i = 0; i < 100; i++) lim.close(`10.1.0.${i}`, null);
    assert.equal(lim.connections, 0);

    const none = new AddressLimits({});
    for (let i = 0; i < 1000; i++) assert.equal(none.open(`10.0.${i >> 8}.${i & 255}`, 'k', 0), null);
    assert.equal(none.addressEntries + none.principalEntries, 0, 'no limit: nothing kept');
    assert.equal(none.connections, 1000);
  });

  it('validateAddressLimitsSpec names every bad field at once', () => {
    const { spec, problems } = validateAddressLimitsSpec(
      { maxConnectionsPerAddress: 1.5, ipv6PrefixLength: 129, ipv4PrefixLength: 24, newConnectionsBurst: 0, perIp: 1 },
      'limits.connections',
    );
    assert.deepEqual(problems.map((p) => p.path).sort(), [
      'limits.connections.ipv6PrefixLength',
      'limits.connections.maxConnectionsPerAddress',
      'limits.connections.newConnectionsBurst',
      'limits.connections.perIp',
    ]);
    for (const p of problems) assert.ok(p.message.includes(p.path));
    assert.deepEqual(spec, { ipv4PrefixLength: 24 });
    assert.equal(validateAddressLimitsSpec(7, 'x').problems.length, 1);
    assert.deepEqual(validateAddressLimitsSpec(undefined, 'x'), { spec: {}, problems: [] });
  });
});
