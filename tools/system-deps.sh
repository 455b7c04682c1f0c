#!/usr/bin/env bash
# Installs the Debian packages the end-to-end tests need: a PostgreSQL server (the metadata DB of
# the real Airflow processes), Chromium + ChromeDriver (the UI test) and a Redis server (the Celery
# broker and the shared Calltouch rate limit). `make test` runs this before pytest.
#
# * Idempotent and quick: nothing is done (not even `apt-get update`) when every package is there.
# * Never fails the build: without root, apt-get or network it says why and exits 0; the e2e tests
#   then skip with a clear reason of their own.
set -uo pipefail

PACKAGES=(postgresql chromium chromium-driver redis-server)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

say() { echo "system-deps: $*" >&2; }

if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get on this machine; not installing ${missing[*]} (the e2e tests will be skipped)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  say "not root; not installing ${missing[*]} (run 'sudo apt-get install ${missing[*]}' to enable the e2e tests)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# The server packages must not start a server of their own: the tests run private ones.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi

say "installing ${missing[*]}"
apt_opts=(-o Dpkg::Use-Pty=0 -o APT::Install-Recommends=0 -o Acquire::Retries=1 -o Acquire::http::Timeout=30 -qq)
if ! apt-get "${apt_opts[@]}" install -y "${missing[@]}" >/tmp/system-deps-apt.log 2>&1; then
  # The package lists may be stale or absent: refresh them once and try again.
  if ! apt-get "${apt_opts[@]}" update >>/tmp/system-deps-apt.log 2>&1 \
    || ! apt-get "${apt_opts[@]}" install -y "${missing[@]}" >>/tmp/system-deps-apt.log 2>&1; then
    say "could not install ${missing[*]} (no network or no such package?); see /tmp/system-deps-apt.log"
    tail -n 5 /tmp/system-deps-apt.log >&2
    say "the e2e tests that need them will be skipped"
    exit 0
  fi
fi
say "installed ${missing[*]}"
exit 0
