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

# debian_mirror [security]: the Debian mirror the host already uses (or, with
# "security", its security mirror), read from /etc/apt at run time (never written
# into the repository).
debian_mirror() {
  local mirror filter=(grep -v security)
  [ "${1:-}" = security ] && filter=(grep security)
  mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -i debian | "${filter[@]}" | head -1 || true)"
  [ -n "$mirror" ] || mirror="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -i debian | "${filter[@]}" | head -1 || true)"
  [ -n "$mirror" ] || { [ "${1:-}" = security ] && return 0; echo "error: no Debian mirror found in /etc/apt" >&2; return 1; }
  echo "$mirror"
}

# ensure_rootfs_image TAG PACKAGES: unless TAG exists, debootstrap bookworm (minbase),
# install the space-separated PACKAGES with apt-get inside it from bookworm,
# bookworm-updates and bookworm-security (debootstrap reads one suite only), exactly
# as images/cpu/Dockerfile does, trim docs, locales and caches, and docker import it.
ensure_rootfs_image() {
  local tag="$1" packages="$2" mirror security rootfs log rc=0
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }; }
  mirror="$(debian_mirror)"
  security="$(debian_mirror security)"
  rootfs="$(mktemp -d /var/tmp/rce-rootfs.XXXXXX)"
  log="$(mktemp /var/tmp/rce-debootstrap.XXXXXX.log)"
  echo "==> debootstrap bookworm (minbase) from $mirror" >&2
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$log" 2>&1; then
    tail -30 "$log" >&2; rm -rf --one-file-system "$rootfs" "$log"; return 1
  fi
  {
    echo "deb $mirror bookworm main"
    echo "deb $mirror bookworm-updates main"
    [ -z "$security" ] || echo "deb $security bookworm-security main"
  } >"$rootfs/etc/apt/sources.list"
  cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"; chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
  mount -t proc proc "$rootfs/proc"
  echo "==> apt-get install in the root file system: $packages" >&2
  # shellcheck disable=SC2086
  chroot "$rootfs" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages" >>"$log" 2>&1 || rc=$?
  umount "$rootfs/proc" || umount -l "$rootfs/proc"
  if [ "$rc" != 0 ]; then
    tail -30 "$log" >&2; rm -rf --one-file-system "$rootfs" "$log"; return 1
  fi
  rm -f "$rootfs/usr/sbin/policy-rc.d" "$rootfs/etc/resolv.conf"
  rm -rf "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/locale \
         "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$log"
  echo "==> docker import -> $tag" >&2
  tar --numeric-owner -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null
  rm -rf --one-file-system "$rootfs"
}
