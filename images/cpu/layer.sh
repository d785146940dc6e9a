#!/bin/sh
# The thin layer both build paths put over the Debian root file system:
# the non-root sandbox user, the work folder and matplotlib's Agg default.
set -eu
groupadd --gid 1000 sandbox 2>/dev/null || true
useradd --uid 1000 --gid 1000 --home-dir /tmp --no-create-home --shell /bin/bash sandbox 2>/dev/null || true
mkdir -p /mnt/data /opt/rce
chown 1000:1000 /mnt/data
chmod 0755 /opt/rce
# matplotlib reads this before MPLBACKEND is consulted by older code paths.
mkdir -p /etc/matplotlibrc.d 2>/dev/null || true
if [ -f /etc/matplotlibrc ]; then
  sed -i 's/^#\?\s*backend\s*:.*/backend: Agg/' /etc/matplotlibrc
  grep -q '^backend: Agg' /etc/matplotlibrc || echo 'backend: Agg' >> /etc/matplotlibrc
else
  echo 'backend: Agg' > /etc/matplotlibrc
fi
# No setuid or setgid binaries: nothing in the sandbox can gain privileges.
find / -xdev -perm /6000 -type f -exec chmod ug-s {} + 2>/dev/null || true
# The private, exec-able build directory (a tmpfs at run time): sources and build
# products of compiled languages live there, outside the scanned /mnt/data.
mkdir -p /var/rce
# Python: session files in /mnt/data are importable, but AFTER the standard library
# and site-packages (a planted json.py or pandas.py never shadows the real one);
# with PYTHONNOUSERSITE (image ENV) no usercustomize is looked up, and Debian's own
# sitecustomize is found before /mnt/data.
echo /mnt/data > /usr/lib/python3/dist-packages/rce-workspace.pth
# `pip install --user` (with a network mode) writes under $HOME=/tmp, a fresh tmpfs per
# sandbox: its site-packages is appended the same way (when it exists at start-up), so
# the installed package imports while the user site itself, and with it any
# usercustomize, stays off.
python3 -c 'import sys; print("/tmp/.local/lib/python%d.%d/site-packages" % sys.version_info[:2])' \
  >> /usr/lib/python3/dist-packages/rce-workspace.pth
python3 -c 'import sitecustomize; assert sitecustomize.__file__.startswith("/usr/lib/python3")'
# matplotlib: its font list, built once here; the agent copies it into the sandbox's
# (writable) cache folder before anything imports matplotlib, which would otherwise
# run fc-list and read every font again in each fresh sandbox.
if python3 -c 'import matplotlib' 2>/dev/null; then
  MPLCONFIGDIR=/opt/rce/mplcache python3 -c 'import matplotlib.font_manager'
  ls /opt/rce/mplcache/fontlist-*.json >/dev/null
  chmod -R a+rX /opt/rce/mplcache
fi
# R: bitmap devices (png(), jpeg()...) draw with Cairo; there is no X11.
if [ -d /etc/R ]; then
  echo 'options(bitmapType = "cairo")' >> /etc/R/Rprofile.site
fi
# Go: a build cache warmed with the common standard packages; a Go run copies it into
# its writable build directory (a cold cache costs ~0.2 s per build).
if command -v go >/dev/null 2>&1; then
  seed="$(mktemp -d)"
  cat > "$seed/main.go" <<'GO'
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	b, _ := json.Marshal(map[string]int{"a": 1})
	x := []int{3, 1}
	sort.Ints(x)
	fmt.Fprintln(w, strings.ToUpper("go"), strconv.Itoa(3), math.Sqrt(2), string(b), time.Second, x)
}
GO
  (cd "$seed" && HOME="$seed" GOCACHE=/opt/rce/gocache go build -o "$seed/main" main.go)
  rm -rf "$seed"
  chmod -R a+rX /opt/rce/gocache
fi
# Start-up caches, built with the image's own toolchains (each is only a cache: a
# runner uses it when present and its toolchain ignores it when it does not match).
# node: a start-up snapshot of node's own bootstrap and core modules (Debian's node is
# built without its embedded snapshot and code cache, so every start compiles them).
if command -v node >/dev/null 2>&1; then
  entry="$(mktemp -d)"
  # The last statement empties node's cached working directory (process.cwd() would
  # otherwise answer the build's temporary directory in every run from the snapshot).
  echo "require('fs'); require('path'); require('util'); require('events'); require('stream'); require('os'); process.chdir(process.cwd());" > "$entry/snap.js"
  (cd "$entry" && node --snapshot-blob /opt/rce/node.blob --build-snapshot snap.js)
  rm -rf "$entry"
  chmod 0644 /opt/rce/node.blob
fi
# java: an application class-data-sharing archive of the source launcher (javac's
# classes), made by one run with the flags the java runner uses.
if command -v java >/dev/null 2>&1; then
  src="$(mktemp -d)"
  printf 'public class Main { public static void main(String[] a) { System.out.println(String.join("|", java.util.List.of(a))); } }\n' > "$src/Main.java"
  (cd "$src" && java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData \
     -XX:ArchiveClassesAtExit=/opt/rce/java.jsa Main.java x >/dev/null)
  rm -rf "$src"
  chmod 0644 /opt/rce/java.jsa
fi
# c++: precompiled <iostream> and <bits/stdc++.h> for the cpp runner's exact flags,
# found through -I/opt/rce/pch; each wrapper header only #include_next's the real one,
# so a translation unit the PCH does not fit compiles as without it.
if command -v g++ >/dev/null 2>&1; then
  mkdir -p /opt/rce/pch/bits
  for h in iostream bits/stdc++.h; do
    printf '#include_next <%s>\n' "$h" > "/opt/rce/pch/$h"
    (cd /opt/rce/pch && g++ -std=gnu++17 -O1 -w -x c++-header "$h" -o "$h.gch")
  done
  chmod -R a+rX /opt/rce/pch
fi
