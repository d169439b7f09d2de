#!/usr/bin/env bash
# Installs npm packages when node_modules is missing or older than the lock file, then builds (clean).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules/@trufflesuite/uws-js-unofficial ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # Strictly from the lock file: a lock that does not satisfy `npm ci` must fail here, not be rewritten.
  npm ci --no-audit --no-fund --loglevel=error
fi
bash scripts/build.sh
