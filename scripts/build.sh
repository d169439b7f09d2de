#!/usr/bin/env bash
# `npm run build`: a clean build of packages/client/ (into its own dist/), then of src/ and test/ into dist/.
# dist/ is removed first, so that a test file deleted or renamed in test/ cannot keep running from what an
# older build left in dist/test/.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist packages/client/dist
# @kvgate/client first (the tests import it as a package): esbuild bundles (ESM, CommonJS, the minified
# browser build), then tsc for its .d.ts files.
env -u NODE_V8_COVERAGE node packages/client/build.mjs
env -u NODE_V8_COVERAGE node_modules/.bin/tsc -p packages/client
# Under c8 (NODE_V8_COVERAGE set) the compiler's own coverage is not wanted: tens of MB of profiles of tsc.
env -u NODE_V8_COVERAGE node_modules/.bin/tsc -p .
# The admin console's page (src/ops/console/: HTML, CSS, JS) is served from files next to the compiled module.
cp -r src/ops/console dist/src/ops/console
