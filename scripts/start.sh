#!/usr/bin/env bash
# `npm start`: installs what is missing, builds, starts the gateway (flags are passed through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-system.sh memcached
bash scripts/ensure-npm.sh >&2
exec node bin/kvgate "$@"
