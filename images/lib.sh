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
  local tag="$1" packages="$2" mirror security rootfs log total rc=0
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }; }
  mirror="$(debian_mirror)"
  security="$(debian_mirror security)"
  rootfs="$(mktemp -d /var/tmp/rce-rootfs.XXXXXX)"
  log="$(mktemp /var/tmp/rce-debootstrap.XXXXXX.log)"
  echo "==> root file system 1/4: debootstrap bookworm (minbase) from $mirror" >&2
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" 2>&1 | tee "$log" | count_progress debootstrap 0; then
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
  echo "==> root file system 2/4: apt-get install in it: $packages" >&2
  chroot "$rootfs" apt-get update -qq >>"$log" 2>&1 || rc=$?
  # The expected package count is apt's own resolution of the same install.
  # shellcheck disable=SC2086
  [ "$rc" != 0 ] || total="$(chroot "$rootfs" apt-get install -s --no-install-recommends $packages 2>/dev/null | grep -c '^Inst ' || true)"
  # shellcheck disable=SC2086
  [ "$rc" != 0 ] || chroot "$rootfs" sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages" 2>&1 \
    | tee -a "$log" | count_progress "apt-get install" "${total:-0}" || rc=$?
  umount "$rootfs/proc" || umount -l "$rootfs/proc"
  if [ "$rc" != 0 ]; then
    tail -30 "$log" >&2; rm -rf --one-file-system "$rootfs" "$log"; return 1
  fi
  echo "==> root file system 3/4: trim docs, locales and caches" >&2
  rm -f "$rootfs/usr/sbin/policy-rc.d" "$rootfs/etc/resolv.conf"
  rm -rf "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/locale \
         "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$log"
  echo "==> root file system 4/4: docker import -> $tag" >&2
  tar --numeric-owner -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null
  rm -rf --one-file-system "$rootfs"
}

# count_progress LABEL TOTAL: report, from a package tool's output on stdin, how many
# packages were downloaded, extracted, unpacked and configured (debootstrap's
# "I: Retrieving/Extracting/Unpacking/Configuring X", apt's "Get:", dpkg's
# "Unpacking X" and "Setting up X") against TOTAL (0: the downloads counted so far),
# with the elapsed time. A live line on a terminal (stderr); plain lines otherwise
# (at each new step, then every 25 packages), so CI logs stay readable.
count_progress() {
  local label="$1" total="$2" line rest step last="" live=0 start=$SECONDS
  local -A done_=([downloaded]=0 [extracted]=0 [unpacked]=0 [configured]=0)
  [ -t 2 ] && live=1
  while IFS= read -r line; do
    rest=""
    case "$line" in
      "I: Retrieving "*) step=downloaded
        case "${line#I: Retrieving }" in InRelease|Release|Release.gpg|Packages) continue ;; esac ;;
      Get:*) step=downloaded ;;
      "I: Extracting "*) rest="${line#I: Extracting }"; step=extracted ;;
      "I: Unpacking "*) rest="${line#I: Unpacking }"; step=unpacked ;;
      "Unpacking "*) step=unpacked ;;
      "I: Configuring "*) rest="${line#I: Configuring }"; step=configured ;;
      "Setting up "*) step=configured ;;
      *) continue ;;
    esac
    # debootstrap's own phase lines ("I: Unpacking the base system...") name no package.
    case "$rest" in *" "*) continue ;; esac
    done_[$step]=$((done_[$step] + 1))
    if [ "$live" = 1 ]; then printf '\r\033[K    %s' "$(_count_text "$step")" >&2
    elif [ "$step" != "$last" ] || [ $((done_[$step] % 25)) = 0 ]; then
      echo "    $(_count_text "$step")" >&2
    fi
    last="$step"
  done
  [ "$live" = 0 ] || printf '\r\033[K' >&2
  [ -z "$last" ] || echo "    $(_count_text "$last")" >&2
}
_count_text() {
  local of="/$total"
  [ "$total" != 0 ] || of="/${done_[downloaded]}"
  [ "$total" != 0 ] || [ "$1" != downloaded ] || of=""
  printf '%s: %s %s%s packages, %s s' "$label" "$1" "${done_[$1]}" "$of" "$((SECONDS - start))"
}
