#!/usr/bin/env bash
# Build the CPU sandbox image if it is missing or its recipe changed.
#
#   images/build.sh            build when the recipe hash label differs (default)
#   images/build.sh --force    rebuild regardless
#
# RCE_IMAGE_NAME   the tag to build (default custom-rce-kernel:latest)
# RCE_IMAGE_BUILD  offline | registry | auto (default auto: offline when debootstrap
#                  can run here, i.e. root on Debian; registry otherwise)
#
# The recipe hash covers every file that goes into the image; the image carries it
# as the label org.rce.recipe-hash, so an unchanged recipe is never rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
. images/lib.sh

IMAGE="${RCE_IMAGE_NAME:-custom-rce-kernel:latest}"
MODE="${RCE_IMAGE_BUILD:-auto}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

RECIPE_FILES=(images/cpu/packages.txt images/cpu/layer.sh images/cpu/Dockerfile images/cpu/Dockerfile.offline
              runner/agent/rce_agent.py runner/agent/rce_ptc.py images/build.sh images/lib.sh)
RECIPE_HASH="$(cat "${RECIPE_FILES[@]}" | sha256sum | cut -c1-16)"
ROOTFS_HASH="$(cat images/cpu/packages.txt | sha256sum | cut -c1-16)"
ROOTFS_IMAGE="rce-rootfs:${ROOTFS_HASH}"

exit_if_current "$IMAGE" "$RECIPE_HASH" "$FORCE"
MODE="$(build_mode "$MODE")"
packages="$(grep -v '^#' images/cpu/packages.txt | grep -v '^$' | paste -sd, -)"
start=$(date +%s)

if [ "$MODE" = registry ]; then
  echo "==> building $IMAGE from images/cpu/Dockerfile (registry)" >&2
  docker build -f images/cpu/Dockerfile --build-arg "RECIPE_HASH=$RECIPE_HASH" -t "$IMAGE" .
else
  ensure_rootfs_image "$ROOTFS_IMAGE" "$packages"
  echo "==> building $IMAGE from images/cpu/Dockerfile.offline over $ROOTFS_IMAGE" >&2
  DOCKER_BUILDKIT=0 docker build -q -f images/cpu/Dockerfile.offline \
    --build-arg "ROOTFS=$ROOTFS_IMAGE" --build-arg "RECIPE_HASH=$RECIPE_HASH" -t "$IMAGE" . >/dev/null
fi
echo "==> built $IMAGE (recipe $RECIPE_HASH) in $(( $(date +%s) - start )) s" >&2
