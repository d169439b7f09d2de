#!/usr/bin/env bash
# `npm test`: installs what is missing, builds, runs every test file against real memcached/nutcracker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-system.sh memcached nutcracker
bash scripts/ensure-npm.sh
files=("$@")
[ ${#files[@]} -eq 0 ] && files=(dist/test/*.test.js)
exec node --test --test-concurrency=2 "${files[@]}"
