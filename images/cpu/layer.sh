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
