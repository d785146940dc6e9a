# Shared by the image build scripts (images/build.sh, images/proxy/build.sh,
# infra/api/build.sh): recipe-hash checks and the offline Debian root file system.
# Source it; it defines functions only.

# image_is_current IMAGE HASH: true when IMAGE carries org.rce.recipe-hash=HASH.
image_is_current() {
  local current
  current="$(docker image inspect -f '{{ index .Config.Labels "org.rce.recipe-hash" }}' "$1" 2>/dev/null || true)"
  [ "$current" = "$2" ]
}

# exit_if_current IMAGE HASH FORCE: end the calling script (status 0) when IMAGE
# already carries HASH and FORCE is 0.
exit_if_current() {
  if [ "$3" = 0 ] && image_is_current "$1" "$2"; then
    echo "==> $1 is up to date (recipe $2)" >&2
    exit 0
  fi
}

# build_mode MODE: offline | registry; auto means offline where debootstrap can run
# (root on Debian), registry elsewhere.
build_mode() {
  if [ "$1" != auto ]; then echo "$1"; return; fi
  if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then echo offline; else echo registry; fi
}

# debian_mirror: the mirror the host already uses, read at run time (never written
# into the repository).
debian_mirror() {
  local mirror
  mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)"
  [ -n "$mirror" ] || mirror="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1)"
  [ -n "$mirror" ] || { echo "error: no Debian mirror found in /etc/apt" >&2; return 1; }
  echo "$mirror"
}

# ensure_rootfs_image TAG PACKAGES: unless TAG exists, debootstrap bookworm (minbase)
# with the comma-separated PACKAGES, trim docs and caches, and docker import it as TAG.
ensure_rootfs_image() {
  local tag="$1" packages="$2" mirror rootfs log
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }; }
  mirror="$(debian_mirror)"
  rootfs="$(mktemp -d /var/tmp/rce-rootfs.XXXXXX)"
  log="$(mktemp /var/tmp/rce-debootstrap.XXXXXX.log)"
  echo "==> debootstrap bookworm ($packages) from $mirror" >&2
  if ! debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >"$log" 2>&1; then
    tail -30 "$log" >&2; rm -rf "$rootfs" "$log"; return 1
  fi
  rm -rf "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/locale \
         "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$log"
  echo "==> docker import -> $tag" >&2
  tar --numeric-owner -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null
  rm -rf "$rootfs"
}
