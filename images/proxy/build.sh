#!/usr/bin/env bash
# Build the Docker socket proxy image if it is missing or its recipe changed.
#
#   images/proxy/build.sh            build when the recipe hash label differs (default)
#   images/proxy/build.sh --force    rebuild regardless
#
# RCE_PROXY_IMAGE  the tag to build (default rce-socket-proxy:latest)
# RCE_IMAGE_BUILD  offline | registry | auto (default auto: offline when debootstrap
#                  can run here, i.e. root on Debian; registry otherwise)
#
# Both paths install Debian bookworm's haproxy and add haproxy.cfg and policy.lua.
# The image carries the recipe hash as the label org.rce.recipe-hash.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE="${RCE_PROXY_IMAGE:-rce-socket-proxy:latest}"
MODE="${RCE_IMAGE_BUILD:-auto}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

PACKAGES="haproxy"
RECIPE_FILES=(images/proxy/Dockerfile images/proxy/Dockerfile.offline images/proxy/haproxy.cfg
              images/proxy/policy.lua images/proxy/build.sh)
RECIPE_HASH="$(cat "${RECIPE_FILES[@]}" | sha256sum | cut -c1-16)"
ROOTFS_HASH="$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-16)"
ROOTFS_IMAGE="rce-proxy-rootfs:${ROOTFS_HASH}"

current="$(docker image inspect -f '{{ index .Config.Labels "org.rce.recipe-hash" }}' "$IMAGE" 2>/dev/null || true)"
if [ "$FORCE" = 0 ] && [ "$current" = "$RECIPE_HASH" ]; then
  echo "==> $IMAGE is up to date (recipe $RECIPE_HASH)" >&2
  exit 0
fi

if [ "$MODE" = auto ]; then
  if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then MODE=offline; else MODE=registry; fi
fi
start=$(date +%s)

if [ "$MODE" = registry ]; then
  echo "==> building $IMAGE from images/proxy/Dockerfile (registry)" >&2
  docker build --build-arg "RECIPE_HASH=$RECIPE_HASH" -t "$IMAGE" images/proxy
else
  if ! docker image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null 2>&1 || {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }; }
    # The mirror the host already uses: read at run time, never written into the repo.
    mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)"
    [ -n "$mirror" ] || mirror="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1)"
    [ -n "$mirror" ] || { echo "error: no Debian mirror found in /etc/apt" >&2; exit 1; }
    rootfs="$(mktemp -d /var/tmp/rce-proxy-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs"' EXIT
    echo "==> debootstrap bookworm ($PACKAGES) from $mirror" >&2
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$mirror" \
      >/tmp/rce-proxy-debootstrap.log 2>&1 || { tail -30 /tmp/rce-proxy-debootstrap.log >&2; exit 1; }
    rm -rf "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/locale \
           "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
    echo "==> docker import -> $ROOTFS_IMAGE" >&2
    tar --numeric-owner -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$ROOTFS_IMAGE" >/dev/null
    rm -rf "$rootfs"; trap - EXIT
  fi
  # A context of just the two files keeps the build from sending the whole repository.
  context="$(mktemp -d /var/tmp/rce-proxy-context.XXXXXX)"
  trap 'rm -rf "$context"' EXIT
  cp images/proxy/Dockerfile.offline images/proxy/haproxy.cfg images/proxy/policy.lua "$context/"
  echo "==> building $IMAGE from images/proxy/Dockerfile.offline over $ROOTFS_IMAGE" >&2
  DOCKER_BUILDKIT=0 docker build -q -f "$context/Dockerfile.offline" \
    --build-arg "ROOTFS=$ROOTFS_IMAGE" --build-arg "RECIPE_HASH=$RECIPE_HASH" -t "$IMAGE" "$context" >/dev/null
fi
echo "==> built $IMAGE (recipe $RECIPE_HASH) in $(( $(date +%s) - start )) s" >&2
