/**
 * /metrics on the admin listener (ops/metrics.ts): the text passes Prometheus's own checker (`promtool
 * check metrics`, from Debian's prometheus package), every documented family is there, and the counts
 * are the ones the traffic this test sent must give, by front, op and outcome; the public port does not
 * serve it. Also: decode's Op numbers are core/tally.ts's TallyOp numbers (the WebSocket front passes one
 * as the other).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Op } from '../src/decode/request-fields';
import { TallyOp, OP_NAMES } from '../src/core/tally';
import { startHarness, type Harness } from './helpers/harness';
import type { KvWsClient } from './client';

/** One sample line: name, labels, value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of a family's samples whose labels include `want`. */
function sum(samples: Sample[], name: string, want: Record<string, string> = {}): number {
  let n = 0;
  for (const s of samples)
    if (s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v)) n += s.value;
  return n;
}

/**
 * The family names docs/OPERATIONS.md lists in its metrics table, but the supervisor's own ("supervisor
 * only" in their row: a single gateway has no workers; test/workers.test.ts checks those).
 */
function documentedFamilies(): string[] {
  const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'OPERATIONS.md'), 'utf8');
  const rows = [...doc.matchAll(/^\| `(kvgate_[a-z_]+)`.*$/gm)].filter((m) => !m[0].includes('supervisor only'));
  return [...new Set(rows.map((m) => m[1]))];
}

describe('Prometheus metrics', () => {
  let h: Harness;
  let ws: KvWsClient;
  const p = `metrics:${randomBytes(4).toString('hex')}:`;
  const scrape = async (): Promise<string> => {
    const res = await fetch(`http://127.0.0.1:${h.gw.adminPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return res.text();
  };

  before(async () => {
    h = await startHarness({}, 3);
    ws = await h.ws();
  });
  after(async () => {
    await h?.stop();
  });

  it("decode's Op numbers are the tally's", () => {
    assert.deepEqual(
      [Op.None, Op.Get, Op.Set, Op.Del, Op.MGet, Op.MSet, Op.MDel, Op.Auth],
      [TallyOp.Unknown, TallyOp.Get, TallyOp.Set, TallyOp.Del, TallyOp.MGet, TallyOp.MSet, TallyOp.MDel, TallyOp.Auth],
    );
    assert.equal(OP_NAMES.length, 8);
  });

  it('counts what the traffic must give, by front, op and outcome, and promtool accepts every line', async () => {
    const before = parse(await scrape());
    const base = (name: string, want: Record<string, string>): number => sum(before, name, want);
    const items = (front: string, op: string, outcome: string): number =>
      sum(now, 'kvgate_items_total', { front, op, outcome }) - base('kvgate_items_total', { front, op, outcome });
    const requests = (front: string, op: string, outcome: string): number =>
      sum(now, 'kvgate_requests_total', { front, op, outcome }) - base('kvgate_requests_total', { front, op, outcome });

    // WebSocket: 12 sets, 7 hits and 4 misses, one mget of 6 keys (3 there), a delete found and one not,
    // one get with a key too long (BAD_KEY, before any shard).
    await Promise.all(Array.from({ length: 12 }, (_, i) => ws.set(`${p}${i}`, `v${i}`)));
    await Promise.all(Array.from({ length: 7 }, (_, i) => ws.get(`${p}${i}`)));
    await Promise.all(Array.from({ length: 4 }, (_, i) => ws.get(`${p}absent:${i}`)));
    await ws.mget([`${p}0`, `${p}1`, `${p}2`, `${p}x`, `${p}y`, `${p}z`]);
    assert.equal(await ws.del(`${p}11`), true);
    assert.equal(await ws.del(`${p}11`), false);
    await ws.request({ op: 'get', key: 'k'.repeat(300) }, 1);
    // HTTP: a hit, a miss, a put, a put with a bad ttl, an unknown path, a bulk read of 3 (2 there).
    await h.http.get(`${p}3`);
    await h.http.get(`${p}absent`).catch(() => undefined);
    await h.http.set(`${p}http`, 'x');
    const badTtl = await fetch(`${h.base}/v1/kv/${p}t?ttl=x`, { method: 'PUT', body: 'v' });
    assert.equal(badTtl.status, 400);
    assert.equal((await fetch(`${h.base}/nowhere`)).status, 404);
    await h.http.mget([`${p}4`, `${p}5`, `${p}nope`]);

    const text = await scrape();
    const now = parse(text);
    assert.equal(items('ws', 'set', 'ok'), 12);
    assert.equal(requests('ws', 'set', 'ok'), 12);
    assert.equal(items('ws', 'get', 'hit'), 7);
    assert.equal(items('ws', 'get', 'miss'), 4);
    assert.equal(requests('ws', 'get', 'miss'), 4, 'a one-key request counts with its item outcome');
    assert.equal(items('ws', 'get', 'BAD_KEY'), 1);
    assert.equal(items('ws', 'mget', 'hit'), 3);
    assert.equal(items('ws', 'mget', 'miss'), 3);
    assert.equal(requests('ws', 'mget', 'ok'), 1, 'a bulk request counts as ok when it was answered item by item');
    assert.equal(items('ws', 'del', 'ok'), 1);
    assert.equal(items('ws', 'del', 'miss'), 1);
    assert.equal(items('http', 'get', 'hit'), 1);
    assert.equal(items('http', 'get', 'miss'), 1);
    assert.equal(items('http', 'set', 'ok'), 1);
    assert.equal(requests('http', 'set', 'BAD_TTL'), 1, 'refused before it had a Request, still counted');
    assert.equal(requests('http', 'unknown', 'NO_ROUTE'), 1);
    assert.equal(items('http', 'mget', 'hit'), 2);
    assert.equal(items('http', 'mget', 'miss'), 1);
    assert.equal(requests('http', 'mget', 'ok'), 1);

    // What reached the shards, and how.
    const delta = (name: string, want: Record<string, string> = {}): number =>
      sum(now, name, want) - sum(before, name, want);
    const clientKeys = delta('kvgate_client_keys_total');
    // 12 + 7 + 4 + 6 + 2 (ws) + 1 + 1 + 1 + 3 (http): the bad key and the bad ttl never reached a pool.
    assert.equal(clientKeys, 37);
    assert.ok(delta('kvgate_shard_keys_total') > 0 && delta('kvgate_shard_keys_total') <= clientKeys);
    assert.ok(delta('kvgate_shard_rtt_seconds_count') > 0, 'round trips measured');
    assert.equal(
      delta('kvgate_shard_rtt_seconds_bucket', { le: '+Inf' }),
      delta('kvgate_shard_rtt_seconds_count'),
      'the +Inf bucket holds every observation',
    );
    assert.equal(delta('kvgate_flush_keys_sum'), clientKeys, 'every client op left in some flush');
    assert.ok(delta('kvgate_flush_hold_seconds_count') > 0);
    assert.equal(sum(now, 'kvgate_connections', { front: 'ws' }), 1);
    assert.equal(sum(now, 'kvgate_shard_up'), 3);
    assert.equal(sum(now, 'kvgate_shard_ejected'), 0);
    assert.equal(sum(now, 'kvgate_config_generation'), 1);
    assert.ok(sum(now, 'kvgate_pool_buffers', { state: 'free' }) >= 0);
    assert.ok(sum(now, 'kvgate_process_cpu_seconds_total') > 0);
    assert.ok(sum(now, 'kvgate_event_loop_delay_seconds_count') > 0);

    // Every documented family is exposed, and every exposed one documented.
    const exposed = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    const documented = documentedFamilies();
    assert.ok(documented.length >= 20, `docs/OPERATIONS.md lists the families (${documented.length})`);
    assert.deepEqual(
      documented.filter((n) => !exposed.has(n)),
      [],
      'documented but not exposed',
    );
    assert.deepEqual(
      [...exposed].filter((n) => !documented.includes(n)),
      [],
      'exposed but not documented',
    );
    for (const n of exposed) assert.match(n, /^kvgate_/);

    // Prometheus's own parser and linter.
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(check.error, undefined, 'promtool runs (Debian package prometheus; npm test installs it)');
    assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
  });

  it('is served on the admin listener only: the public port answers 404 NO_ROUTE', async () => {
    const res = await fetch(`${h.base}/metrics`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'NO_ROUTE');
    const stats = await fetch(`${h.base}/debug/stats`);
    assert.equal(stats.status, 404);
  });
});
