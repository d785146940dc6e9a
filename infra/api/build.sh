#!/usr/bin/env bash
# Build the rce API image if it is missing or its recipe changed.
#
#   infra/api/build.sh            build when the recipe hash label differs (default)
#   infra/api/build.sh --force    rebuild regardless
#
# RCE_API_IMAGE    the tag to build (default rce-api:latest)
# RCE_IMAGE_BUILD  offline | registry | auto (default auto: offline when debootstrap
#                  can run here, i.e. root on Debian; registry otherwise)
#
# Offline: a Debian bookworm root file system with python3 (debootstrap + docker
# import), the locked dependencies installed on the host with uv into a staging
# folder (wheels from the package index or uv's cache), and the service's packages.
# The recipe hash covers the lock file and every source file that goes in.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE="${RCE_API_IMAGE:-rce-api:latest}"
MODE="${RCE_IMAGE_BUILD:-auto}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

PACKAGES="python3,ca-certificates"
APP_DIRS=(core handler runner storage)
mapfile -t RECIPE_FILES < <(
  printf '%s\n' infra/api/Dockerfile infra/api/Dockerfile.offline infra/api/layer.sh \
    infra/api/build.sh pyproject.toml uv.lock
  find "${APP_DIRS[@]}" -name '*.py' -type f | LC_ALL=C sort)
RECIPE_HASH="$(cat "${RECIPE_FILES[@]}" | sha256sum | cut -c1-16)"
ROOTFS_HASH="$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-16)"
ROOTFS_IMAGE="rce-api-rootfs:${ROOTFS_HASH}"

current="$(docker image inspect -f '{{ index .Config.Labels "org.rce.recipe-hash" }}' "$IMAGE" 2>/dev/null || true)"
if [ "$FORCE" = 0 ] && [ "$current" = "$RECIPE_HASH" ]; then
  echo "==> $IMAGE is up to date (recipe $RECIPE_HASH)" >&2
  exit 0
fi

if [ "$MODE" = auto ]; then
  if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then MODE=offline; else MODE=registry; fi
fi
start=$(date +%s)

build_rootfs() {
  command -v debootstrap >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }; }
  # The mirror the host already uses: read at run time, never written into the repo.
  local mirror rootfs
  mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)"
  [ -n "$mirror" ] || mirror="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1)"
  [ -n "$mirror" ] || { echo "error: no Debian mirror found in /etc/apt" >&2; exit 1; }
  rootfs="$(mktemp -d /var/tmp/rce-api-rootfs.XXXXXX)"
  echo "==> debootstrap bookworm ($PACKAGES) from $mirror" >&2
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$mirror" \
    >/tmp/rce-api-debootstrap.log 2>&1 || { tail -30 /tmp/rce-api-debootstrap.log >&2; rm -rf "$rootfs"; exit 1; }
  rm -rf "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/locale \
         "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
  echo "==> docker import -> $ROOTFS_IMAGE" >&2
  tar --numeric-owner -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$ROOTFS_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

if [ "$MODE" = registry ]; then
  echo "==> building $IMAGE from infra/api/Dockerfile (registry)" >&2
  docker build -f infra/api/Dockerfile --build-arg "RECIPE_HASH=$RECIPE_HASH" -t "$IMAGE" .
else
  docker image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1 || build_rootfs
  context="$(mktemp -d /var/tmp/rce-api-context.XXXXXX)"
  trap 'rm -rf "$context"' EXIT
  echo "==> staging the locked dependencies with uv" >&2
  uv export --frozen --no-dev --no-emit-project --no-hashes -o "$context/requirements.txt" >/dev/null
  uv pip install --quiet --target "$context/site" --python-version 3.11 \
    --python-platform "$(uname -m)-manylinux_2_28" --no-deps -r "$context/requirements.txt"
  mkdir -p "$context/app"
  for dir in "${APP_DIRS[@]}"; do
    (tar -c --exclude='__pycache__' "$dir") | tar -x -C "$context/app"
  done
  cp infra/api/Dockerfile.offline infra/api/layer.sh "$context/"
  echo "==> building $IMAGE from infra/api/Dockerfile.offline over $ROOTFS_IMAGE" >&2
  DOCKER_BUILDKIT=0 docker build -q -f "$context/Dockerfile.offline" \
    --build-arg "ROOTFS=$ROOTFS_IMAGE" --build-arg "RECIPE_HASH=$RECIPE_HASH" -t "$IMAGE" "$context" >/dev/null
fi
echo "==> built $IMAGE (recipe $RECIPE_HASH) in $(( $(date +%s) - start )) s" >&2
