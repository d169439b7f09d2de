#!/usr/bin/env bash
# Installs npm packages when node_modules is missing or older than the lock file, then builds (clean).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules/@trufflesuite/uws-js-unofficial ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  if [ -L node_modules ]; then
    # A shared install (a worktree's link): npm ci here would replace what the link points at for everyone.
    echo "kvgate: node_modules links to $(readlink node_modules), older than package-lock.json: run npm ci there" >&2
    exit 1
  fi
  # Strictly from the lock file: a lock that does not satisfy `npm ci` must fail here, not be rewritten.
  npm ci --no-audit --no-fund --loglevel=error
fi
bash scripts/build.sh
