#!/usr/bin/env bash
# `npm run bench [-- --quick]`: installs what is missing, builds, raises the open-file limit for 10,000
# connections, and runs the benchmark suite (bench/run.ts). Results: bench/results/, report: bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-system.sh memcached nutcracker wrk redis-server redis-tools webdis
if [ ! -d node_modules/@trufflesuite/uws-js-unofficial ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  bash scripts/ensure-npm.sh
fi
# The suite has its own tsconfig (bench/), so that nothing in it can break the tests' build.
# dist/ is cleaned first, as for every build, so that nothing a removed file left there can run.
# CI type-checks the suite strictly (`npm run typecheck:bench` in .ci/run).
rm -rf dist
if ! node_modules/.bin/tsc -p bench; then
  # the suite still runs on what tsc emitted, but say so loudly
  echo "kvgate bench: WARNING: tsc reported errors (above); running on the emitted JavaScript" >&2
fi
[ -f dist/bench/run.js ] || { echo "kvgate bench: dist/bench/run.js missing after the build" >&2; exit 1; }
# 10,000 WebSocket connections need more than 10,000 descriptors in the gateway and in the load generator.
want=65536
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
  ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ]; then
  echo "kvgate bench: ulimit -n is $(ulimit -n); the 10,000-connection scenarios need about 12,000 (run as root or raise the hard limit)" >&2
fi
exec node dist/bench/run.js "$@"
