#!/usr/bin/env bash
# Makes sure the Debian packages named on the command line are installed (memcached, nutcracker, wrk,
# redis-server, redis-tools, webdis; prometheus for its `promtool`, which checks /metrics). As root it installs what is missing; otherwise it says exactly what to
# install and fails.
set -euo pipefail
declare -A bin_of=([memcached]=memcached [nutcracker]=nutcracker [wrk]=wrk [redis-server]=redis-server
  [redis-tools]=redis-cli [webdis]=webdis [prometheus]=promtool)
# Packages whose postinst starts a system-wide service on its well-known port (redis on 6379, webdis on
# 7379, prometheus on 9090): the tests and the bench start their own servers on free loopback ports and must never talk to, or
# be confused by, a shared one, so a service the install started is stopped and disabled again.
declare -A service_of=([redis-server]=redis-server [webdis]=webdis [prometheus]=prometheus)
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
  for pkg in "${missing[@]}"; do
    svc=${service_of[$pkg]:-}
    [ -n "$svc" ] || continue
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$svc" ]; then
      "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
      command -v update-rc.d >/dev/null 2>&1 && update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
  done
else
  echo "kvgate: missing system packages: ${missing[*]}" >&2
  echo "kvgate: install them first, e.g.: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
