/**
 * The folder rules of docs/ARCHITECTURE.md, read from the import statements of every file in src/ (type
 * imports count too: they couple folders just the same). A unit is a folder under src/ (`core`, `front`,
 * ...), each backend folder on its own (`backends/memcached`), and each file directly in src/ on its own.
 *  - no cycle between units;
 *  - a front never imports a backend, a backend never imports a front;
 *  - core imports nothing outside core (the seam names no backend and no front);
 *  - a backend imports no other backend, and not config/ (config reads the backend registry to validate
 *    pools, so that import would close a cycle).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import ts from 'typescript';

const ROOT = join(__dirname, '..', '..');
const SRC = join(ROOT, 'src');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** `front/ws.ts` -> `front`; `backends/memcached/x.ts` -> `backends/memcached`; `gateway.ts` -> itself. */
function unitOf(file: string): string {
  const parts = file.split('/');
  if (parts.length === 1) return parts[0];
  if (parts[0] === 'backends' && parts.length > 2) return `backends/${parts[1]}`;
  return parts[0];
}

/** Relative imports of one file, resolved to paths under src/ (`core/request.ts`). */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(join(SRC, file), 'utf8'), true, true);
  const out: string[] = [];
  for (const { fileName } of info.importedFiles) {
    if (!fileName.startsWith('.')) continue;
    const base = join(SRC, dirname(file), fileName);
    const hit = [`${base}.ts`, join(base, 'index.ts')].find((p) => existsSync(p));
    assert.ok(hit, `${file}: cannot resolve ${fileName}`);
    out.push(relative(SRC, hit).split(sep).join('/'));
  }
  return out;
}

interface Edge {
  from: string;
  to: string;
  /** A file import that makes the edge, as evidence: `core/router.ts -> decode/key.ts`. */
  via: string;
}

/** Unit-level edges from file-level imports (`files`: file -> the files it imports). */
function unitEdges(files: Map<string, string[]>): Edge[] {
  const seen = new Map<string, Edge>();
  for (const [file, targets] of files) {
    for (const t of targets) {
      const from = unitOf(file),
        to = unitOf(t);
      if (from !== to && !seen.has(`${from} ${to}`)) seen.set(`${from} ${to}`, { from, to, via: `${file} -> ${t}` });
    }
  }
  return [...seen.values()];
}

/** Every cycle's units (strongly connected components of more than one unit), each with the edges inside it. */
function cycles(edges: Edge[]): Edge[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const units = [...new Set(edges.flatMap((e) => [e.from, e.to]))];
  // Tarjan's algorithm.
  const index = new Map<string, number>(),
    low = new Map<string, number>(),
    stack: string[] = [],
    on = new Set<string>();
  const out: Edge[][] = [];
  let n = 0;
  const visit = (u: string): void => {
    index.set(u, n);
    low.set(u, n++);
    stack.push(u);
    on.add(u);
    for (const v of next.get(u) ?? []) {
      if (!index.has(v)) {
        visit(v);
        low.set(u, Math.min(low.get(u)!, low.get(v)!));
      } else if (on.has(v)) low.set(u, Math.min(low.get(u)!, index.get(v)!));
    }
    if (low.get(u) === index.get(u)) {
      const comp = new Set<string>();
      for (let w = stack.pop()!; ; w = stack.pop()!) {
        on.delete(w);
        comp.add(w);
        if (w === u) break;
      }
      if (comp.size > 1) out.push(edges.filter((e) => comp.has(e.from) && comp.has(e.to)));
    }
  };
  for (const u of units) if (!index.has(u)) visit(u);
  return out;
}

const isBackend = (u: string): boolean => u === 'backends' || u.startsWith('backends/');

/** Imports the rules forbid, besides cycles. */
function forbidden(edges: Edge[]): Edge[] {
  return edges.filter(
    (e) =>
      (e.from === 'front' && isBackend(e.to)) ||
      (isBackend(e.from) && e.to === 'front') ||
      e.from === 'core' ||
      (e.from.startsWith('backends/') && (e.to === 'config' || (e.to.startsWith('backends/') && e.to !== e.from))),
  );
}

const show = (es: Edge[]): string => es.map((e) => `  ${e.from} -> ${e.to} (${e.via})`).join('\n');

describe('architecture: imports between folders', () => {
  const files = new Map<string, string[]>();
  for (const abs of sourceFiles(SRC)) {
    const file = relative(SRC, abs).split(sep).join('/');
    files.set(file, importsOf(file));
  }
  const edges = unitEdges(files);

  it('reads the imports it judges (the layout it expects is there)', () => {
    const units = new Set([...files.keys()].map(unitOf));
    for (const u of ['core', 'front', 'backends/memcached', 'config', 'decode', 'stream', 'flow'])
      assert.ok(units.has(u), `src/${u} exists`);
    assert.ok(
      edges.some((e) => e.from === 'front' && e.to === 'core'),
      'the fronts import core (the imports were read)',
    );
  });

  it('has no cycle between folders', () => {
    const found = cycles(edges);
    assert.equal(found.length, 0, `import cycles:\n${found.map(show).join('\n  --\n')}`);
  });

  it('no front imports a backend, no backend a front; core imports only core; a backend no other backend nor config', () => {
    const bad = forbidden(edges);
    assert.equal(bad.length, 0, `forbidden imports:\n${show(bad)}`);
  });

  it('the checks themselves catch what they are for (a synthetic tree)', () => {
    const fake = new Map<string, string[]>([
      ['config/schema.ts', ['backends/memcached/ketama.ts']],
      ['backends/memcached/ketama.ts', ['backends/memcached/hash.ts']],
      ['backends/memcached/hash.ts', ['config/schema.ts']],
      ['front/ws.ts', ['backends/redis/index.ts', 'core/request.ts']],
      ['core/request.ts', ['core/errors.ts']],
      ['core/router.ts', ['decode/key.ts']],
    ]);
    const es = unitEdges(fake);
    const found = cycles(es);
    assert.equal(found.length, 1);
    assert.deepEqual(new Set(found[0].map((e) => e.from)), new Set(['config', 'backends/memcached']));
    assert.deepEqual(
      forbidden(es)
        .map((e) => `${e.from}>${e.to}`)
        .sort(),
      ['backends/memcached>config', 'core>decode', 'front>backends/redis'],
    );
  });
});
