// Builds @kvgate/client into dist/: ESM (.mjs) and CommonJS (.cjs) bundles of each entry (esbuild), the
// browser bundle (index.mjs minified as kvgate-client.min.mjs: what the size budget measures), and .d.ts
// files (tsc, in scripts/build.sh). `ws` stays external: it is the /node entry's optional peer.
import { build } from 'esbuild';
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
await Promise.all(jobs);
