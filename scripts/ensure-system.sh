#!/usr/bin/env bash
# Makes sure the Debian packages named on the command line are installed (memcached, nutcracker, wrk).
# As root it installs what is missing; otherwise it says exactly what to install and fails.
set -euo pipefail
declare -A bin_of=([memcached]=memcached [nutcracker]=nutcracker [wrk]=wrk)
missing=()
for pkg in "$@"; do
  command -v "${bin_of[$pkg]:-$pkg}" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "kvgate: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "kvgate: missing system packages: ${missing[*]}" >&2
  echo "kvgate: install them first, e.g.: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
