/**
 * docs/PROTOCOL.md's error table and src/core/errors.ts are one truth: every code in either is in the other,
 * with the same HTTP status, retry hint and Retry-After; the hints used are the ones the docs define.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorTable, errorRow, type ErrorCode } from '../src/core/errors';

interface DocRow {
  status: number;
  retry: string;
  retryAfter: number | undefined;
}

/** The "Error codes" section: its hint definitions and its table rows. */
function readDocs(): { hints: string[]; rows: Map<string, DocRow> } {
  // Compiled to dist/test: the docs are two levels up either way.
  const md = readFileSync(join(__dirname, '..', '..', 'docs', 'PROTOCOL.md'), 'utf8');
  const start = md.indexOf('\n## Error codes\n');
  assert.ok(start >= 0, 'docs/PROTOCOL.md has an "Error codes" section');
  const end = md.indexOf('\n## ', start + 1);
  const section = md.slice(start, end < 0 ? undefined : end);
  const hints = [...section.matchAll(/^- `([a-z]+)`: /gm)].map((m) => m[1]);
  const lines = section.split('\n').filter((l) => l.startsWith('|'));
  const header = lines[0]
    .split('|')
    .slice(1, -1)
    .map((c) => c.trim());
  assert.deepEqual(header.slice(0, 4), ['code', 'HTTP', 'retry', 'Retry-After'], 'the table columns');
  const rows = new Map<string, DocRow>();
  for (const l of lines.slice(2)) {
    const cells = l
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim());
    const m = /^`([A-Z_]+)`$/.exec(cells[0]);
    assert.ok(m, `a table row names its code in backquotes: ${l}`);
    assert.ok(!rows.has(m[1]), `${m[1]} appears once in the docs`);
    assert.match(cells[1], /^\d{3}$/, `${m[1]}: a status`);
    assert.match(cells[3], /^(\d+)?$/, `${m[1]}: Retry-After is empty or seconds`);
    rows.set(m[1], {
      status: Number(cells[1]),
      retry: cells[2],
      retryAfter: cells[3] === '' ? undefined : Number(cells[3]),
    });
  }
  return { hints, rows };
}

describe('error table', () => {
  const { hints, rows } = readDocs();
  const codes = Object.keys(ErrorTable) as ErrorCode[];

  it('the docs define the retry hints the code uses, and only those', () => {
    assert.deepEqual([...hints].sort(), ['after', 'idempotent', 'no']);
    for (const c of codes)
      assert.ok(hints.includes(errorRow(c).retry), `${c}: hint ${errorRow(c).retry} is defined in the docs`);
    for (const [c, r] of rows) assert.ok(hints.includes(r.retry), `${c}: the docs' hint ${r.retry} is defined`);
  });

  it('every code in src/core/errors.ts is in the docs with the same status, retry hint and Retry-After', () => {
    for (const c of codes) {
      const d = rows.get(c);
      assert.ok(d, `${c} is missing from docs/PROTOCOL.md`);
      const t = errorRow(c);
      assert.equal(d.status, t.status, `${c}: status`);
      assert.equal(d.retry, t.retry, `${c}: retry hint`);
      assert.equal(d.retryAfter, t.retryAfter, `${c}: Retry-After`);
    }
  });

  it('every code in the docs is in src/core/errors.ts', () => {
    for (const c of rows.keys()) assert.ok(c in ErrorTable, `${c} is documented but not in src/core/errors.ts`);
    assert.equal(rows.size, codes.length);
  });

  it('a status says an error (4xx/5xx); Retry-After only with a hint that allows a retry', () => {
    for (const c of codes) {
      const t = errorRow(c);
      assert.ok(t.status >= 400 && t.status < 600, `${c}: ${t.status}`);
      if (t.retryAfter !== undefined) assert.notEqual(t.retry, 'no', `${c}: Retry-After with retry "no"`);
    }
  });
});
