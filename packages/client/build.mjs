// Builds @kvgate/client into dist/: ESM (.mjs) and CommonJS (.cjs) bundles of each entry (esbuild), the
// browser bundle (index.mjs minified as kvgate-client.min.mjs: what the size budget measures), and .d.ts
// files (tsc, in scripts/build.sh). `ws` stays external: it is the /node entry's optional peer. The
// command-line client (dist/cli.cjs, the `kvgate-cli` bin) is a Node-only CommonJS bundle that includes `ws`
// (so it runs without the peer installed); no other entry imports src/cli.ts.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const common = { bundle: true, target: 'es2022', external: ['ws'], logLevel: 'warning', sourcemap: true };
const entries = { index: 'src/index.ts', node: 'src/node.ts' };
const jobs = [];
for (const [name, src] of Object.entries(entries)) {
  const entryPoints = [join(here, src)];
  const platform = name === 'index' ? 'neutral' : 'node';
  jobs.push(build({ ...common, entryPoints, platform, format: 'esm', outfile: join(here, `dist/${name}.mjs`) }));
  jobs.push(build({ ...common, entryPoints, platform, format: 'cjs', outfile: join(here, `dist/${name}.cjs`) }));
}
jobs.push(
  build({
    ...common,
    entryPoints: [join(here, entries.index)],
    platform: 'browser',
    format: 'esm',
    minify: true,
    outfile: join(here, 'dist/kvgate-client.min.mjs'),
  }),
);
jobs.push(
  build({
    ...common,
    entryPoints: [join(here, 'src/cli.ts')],
    platform: 'node',
    format: 'cjs',
    // ws's optional native helpers: required in a try, absent is fine.
    external: ['bufferutil', 'utf-8-validate'],
    banner: { js: '#!/usr/bin/env node' },
    outfile: join(here, 'dist/cli.cjs'),
  }),
);
await Promise.all(jobs);
chmodSync(join(here, 'dist/cli.cjs'), 0o755);
