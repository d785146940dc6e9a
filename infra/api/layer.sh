#!/bin/sh
# The thin layer both build paths put over the Debian root file system: the
# unprivileged service user and read-only application files.
set -eu
groupadd --gid 10001 rce 2>/dev/null || true
useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin rce 2>/dev/null || true
find /opt/rce/app -name '__pycache__' -prune -exec rm -rf {} +
chown -R root:root /opt/rce
chmod -R a+rX,go-w /opt/rce
# No setuid or setgid binaries in the service image either.
find / -xdev -perm /6000 -type f -exec chmod ug-s {} + 2>/dev/null || true
