#!/usr/bin/env bash
# Stop what local/up.sh started: the API (it removes its sandboxes as it shuts down)
# and SeaweedFS. Data stays in $RCE_LOCAL_DIR (default .rce/local) for the next
# local/up.sh; remove that folder to start from scratch. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
source local/lib.sh

# The API first: its graceful shutdown removes its warm sandboxes.
stop api 40
# weed's graceful gRPC shutdown can hang for 10 s; its data survives a kill.
stop weed 5
if [ -f "$STATE/run/weed.ports" ]; then
  for port in $(cat "$STATE/run/weed.ports"); do
    rm -f "${TMPDIR:-/tmp}"/seaweedfs-*-"$port".sock
  done
  rm -f "$STATE/run/weed.ports"
fi
say "the local stack is down"
