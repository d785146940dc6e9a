#!/usr/bin/env bash
# Make sure a Docker engine answers. Idempotent: does nothing when one already does.
# On Debian as root it installs docker.io and starts dockerd; elsewhere it explains what to do.
# Then, by the settings of the environment:
#   RCE_RUNTIME=runsc                     scripts/ensure-runsc.sh (install and register gVisor)
#   RCE_NETWORK_MODE=allowlist|open       scripts/ensure-network.sh (networks, egress proxy,
#   (or RCE_NETWORK_ENABLED=true)         iptables)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

ready() {
  if [ "${RCE_RUNTIME:-}" = runsc ]; then
    "$here/ensure-runsc.sh"
  fi
  case "${RCE_NETWORK_MODE:-}:${RCE_NETWORK_ENABLED:-}" in
    allowlist:*|open:*|:true|:1|:yes|:on) "$here/ensure-network.sh" ;;
  esac
  exit 0
}

if engine_answers; then
  ready
fi

if [ "$(id -u)" != "0" ] || [ ! -f /etc/debian_version ]; then
  echo "error: no Docker engine answers (docker info failed)." >&2
  echo "Install and start Docker (https://docs.docker.com/engine/install/), make sure" >&2
  echo "this user can reach it (DOCKER_HOST or the docker group), then run this again." >&2
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "==> installing docker.io from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
command -v docker >/dev/null 2>&1 || { echo "error: docker client missing after install" >&2; exit 1; }

if ! pgrep -x dockerd >/dev/null 2>&1; then
  echo "==> starting dockerd (log: /var/log/dockerd.log)" >&2
  nohup dockerd >/var/log/dockerd.log 2>&1 &
fi

for _ in $(seq 1 60); do
  if engine_answers; then
    echo "==> Docker engine is up" >&2
    ready
  fi
  sleep 1
done
echo "error: dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2
exit 1
