#!/usr/bin/env bash
# `npm test`: installs what is missing, builds, runs every test file against real memcached/nutcracker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-system.sh memcached nutcracker redis-server redis-tools prometheus haproxy openssl chromium
bash scripts/ensure-npm.sh
files=("$@")
[ ${#files[@]} -eq 0 ] && files=(dist/test/*.test.js)
# A test that hangs fails after 60 s, and the whole run after 15 minutes, rather than stalling CI.
exec timeout --kill-after=10 900 node --test --test-concurrency=2 --test-timeout=60000 "${files[@]}"
