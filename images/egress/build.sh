#!/usr/bin/env bash
# Build the rce egress proxy image (Squid) if it is missing or its recipe changed.
#
#   images/egress/build.sh            build when the recipe hash label differs (default)
#   images/egress/build.sh --force    rebuild regardless
#
# RCE_EGRESS_IMAGE  the tag to build (default rce-egress-proxy:latest)
# RCE_IMAGE_BUILD  offline | registry | auto (default auto: offline when debootstrap
#                  can run here, i.e. root on Debian; registry otherwise)
#
# Both paths install Debian bookworm's squid and add entrypoint.sh (which writes
# squid.conf from the environment at start; see it for the settings).
# The image carries the recipe hash as the label org.rce.recipe-hash.
set -euo pipefail
cd "$(dirname "$0")/../.."
. images/lib.sh

IMAGE="${RCE_EGRESS_IMAGE:-rce-egress-proxy:latest}"
MODE="${RCE_IMAGE_BUILD:-auto}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

PACKAGES="squid"
RECIPE_FILES=(images/egress/Dockerfile images/egress/Dockerfile.offline images/egress/entrypoint.sh
               images/egress/build.sh images/lib.sh)
RECIPE_HASH="$(cat "${RECIPE_FILES[@]}" | sha256sum | cut -c1-16)"
ROOTFS_HASH="$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-16)"
ROOTFS_IMAGE="rce-egress-rootfs:${ROOTFS_HASH}"

exit_if_current "$IMAGE" "$RECIPE_HASH" "$FORCE"
MODE="$(build_mode "$MODE")"
start=$(date +%s)

if [ "$MODE" = registry ]; then
  echo "==> building $IMAGE from images/egress/Dockerfile (registry)" >&2
  docker build --build-arg "RECIPE_HASH=$RECIPE_HASH" -t "$IMAGE" images/egress
else
  ensure_rootfs_image "$ROOTFS_IMAGE" "$PACKAGES"
  # A context of just the two files keeps the build from sending the whole repository.
  context="$(mktemp -d /var/tmp/rce-egress-context.XXXXXX)"
  trap 'rm -rf "$context"' EXIT
  cp images/egress/Dockerfile.offline images/egress/entrypoint.sh "$context/"
  echo "==> building $IMAGE from images/egress/Dockerfile.offline over $ROOTFS_IMAGE" >&2
  DOCKER_BUILDKIT=0 docker build -q -f "$context/Dockerfile.offline" \
    --build-arg "ROOTFS=$ROOTFS_IMAGE" --build-arg "RECIPE_HASH=$RECIPE_HASH" -t "$IMAGE" "$context" >/dev/null
fi
echo "==> built $IMAGE (recipe $RECIPE_HASH) in $(( $(date +%s) - start )) s" >&2
