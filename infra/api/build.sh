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
. images/lib.sh

IMAGE="${RCE_API_IMAGE:-rce-api:latest}"
MODE="${RCE_IMAGE_BUILD:-auto}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

PACKAGES="python3,ca-certificates"
APP_DIRS=(core handler runner storage)
mapfile -t RECIPE_FILES < <(
  printf '%s\n' infra/api/Dockerfile infra/api/Dockerfile.offline infra/api/layer.sh \
    infra/api/build.sh images/lib.sh pyproject.toml uv.lock
  find "${APP_DIRS[@]}" -name '*.py' -type f | LC_ALL=C sort)
RECIPE_HASH="$(cat "${RECIPE_FILES[@]}" | sha256sum | cut -c1-16)"
ROOTFS_HASH="$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-16)"
ROOTFS_IMAGE="rce-api-rootfs:${ROOTFS_HASH}"

exit_if_current "$IMAGE" "$RECIPE_HASH" "$FORCE"
MODE="$(build_mode "$MODE")"
start=$(date +%s)

if [ "$MODE" = registry ]; then
  echo "==> building $IMAGE from infra/api/Dockerfile (registry)" >&2
  docker build -f infra/api/Dockerfile --build-arg "RECIPE_HASH=$RECIPE_HASH" -t "$IMAGE" .
else
  ensure_rootfs_image "$ROOTFS_IMAGE" "$PACKAGES"
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
