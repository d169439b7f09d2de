#!/usr/bin/env bash
# Installs npm packages when node_modules is missing or older than the lock file, then builds.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules/@trufflesuite/uws-js-unofficial ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # npm 11 can reject its own lock file over other platforms' optional packages (msgpackr-extract):
  # fall back to a plain install from the same lock.
  npm ci --no-audit --no-fund --loglevel=error 2>/dev/null || npm install --no-audit --no-fund --loglevel=error
fi
node_modules/.bin/tsc -p .
