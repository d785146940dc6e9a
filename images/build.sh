#!/usr/bin/env bash
# Build the CPU sandbox image if it is missing or its recipe changed.
#
#   images/build.sh            build when the recipe hash label differs (default)
#   images/build.sh --force    rebuild regardless
#   images/build.sh --recipe-hash   print the recipe hash of this checkout and exit
#                                   (what `rce doctor` compares with the image's label)
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
case "${1:-}" in
  --force) FORCE=1 ;;
  --recipe-hash|"") ;;
  *) echo "usage: images/build.sh [--force | --recipe-hash]" >&2; exit 2 ;;
esac

RECIPE_FILES=(images/cpu/packages.txt images/cpu/layer.sh images/cpu/Dockerfile images/cpu/Dockerfile.offline
              images/build.sh images/lib.sh)
mapfile -t AGENT_FILES < <(find runner/agent/rce_agent -name '*.py' | LC_ALL=C sort)
RECIPE_FILES+=("${AGENT_FILES[@]}")
RECIPE_HASH="$(cat "${RECIPE_FILES[@]}" | sha256sum | cut -c1-16)"
ROOTFS_HASH="$(cat images/cpu/packages.txt images/lib.sh | sha256sum | cut -c1-16)"
ROOTFS_IMAGE="rce-rootfs:${ROOTFS_HASH}"
[ "${1:-}" = "--recipe-hash" ] && { echo "$RECIPE_HASH"; exit 0; }

exit_if_current "$IMAGE" "$RECIPE_HASH" "$FORCE"
MODE="$(build_mode "$MODE")"
packages="$(grep -v '^#' images/cpu/packages.txt | grep -v '^$' | paste -sd" " -)"
start=$(date +%s)

if [ "$MODE" = registry ]; then
  echo "==> building $IMAGE from images/cpu/Dockerfile (registry; docker build prints its steps)" >&2
  docker build -f images/cpu/Dockerfile --build-arg "RECIPE_HASH=$RECIPE_HASH" -t "$IMAGE" .
else
  echo "==> image 1/2: the Debian root file system $ROOTFS_IMAGE ($(wc -w <<<"$packages") packages listed)" >&2
  ensure_rootfs_image "$ROOTFS_IMAGE" "$packages"
  echo "==> image 2/2: [$(( $(date +%s) - start )) s] building $IMAGE from images/cpu/Dockerfile.offline over $ROOTFS_IMAGE" >&2
  DOCKER_BUILDKIT=0 docker build -q -f images/cpu/Dockerfile.offline \
    --build-arg "ROOTFS=$ROOTFS_IMAGE" --build-arg "RECIPE_HASH=$RECIPE_HASH" -t "$IMAGE" . >/dev/null
fi
echo "==> built $IMAGE (recipe $RECIPE_HASH) in $(( $(date +%s) - start )) s" >&2
