#!/usr/bin/env bash
# A multi-engine topology on one machine, with real parts:
#   - three Docker engines, each its own dockerd (own socket, data root, exec root and
#     pid file; no bridge, no iptables: sandboxes have no network);
#   - a policy socket proxy per engine (HAProxy with images/proxy's config), on a
#     loopback unix socket;
#   - SeaweedFS (S3);
#   - three API replicas (uvicorn on loopback ports) driving all three engines
#     through their proxies (RCE_DOCKER_HOSTS);
#   - an HAProxy load balancer, round robin, health checks on /ready.
#
#   local/cluster.sh up           bring it up (idempotent); prints the load balancer's URL
#   local/cluster.sh down         stop everything it started (engines' data roots stay)
#   local/cluster.sh down --purge ... and remove the engines' data roots and the image tar
#   local/cluster.sh kill-node N  SIGKILL engine N's dockerd and containerd (node loss);
#                                 "up" starts it again
#   local/cluster.sh status       what runs
#
# The sandbox image is built once on the default engine (images/build.sh), saved once
# per image id, and loaded into each engine whose copy differs: the engines' data roots
# persist between runs, so a second "up" loads nothing.
#
# Settings (environment):
#   RCE_CLUSTER_DIR        state, logs, pid files, keys (default .rce/cluster)
#   RCE_CLUSTER_ROOT       engines' data roots and the image tar (default /var/lib/rce-cluster)
#   RCE_CLUSTER_PORT       the load balancer's port (default 18100; replicas use the next 3)
#   RCE_CLUSTER_NODES      engines (default 3); RCE_CLUSTER_REPLICAS API replicas (default 3)
#   RCE_POOL_SIZE, RCE_POOL_DATA_SIZE   warm sandboxes per engine per replica (default 1, 0)
#   RCE_IMAGE_NAME         the sandbox image (default custom-rce-kernel:latest)
#   CUSTOM_RCE_API_KEY     the API key (default: generated once, kept in $RCE_CLUSTER_DIR/api-key)
#   RCE_CLUSTER_JWT_PUBLIC_KEY_FILE   also accept LibreChat JWTs signed by this key
set -euo pipefail
cd "$(dirname "$0")/.."

export RCE_LOCAL_DIR="${RCE_CLUSTER_DIR:-.rce/cluster}"
ROOT="${RCE_CLUSTER_ROOT:-/var/lib/rce-cluster}"
RUNDIR="/run/rce-cluster"
LB_PORT="${RCE_CLUSTER_PORT:-18100}"
NODES="${RCE_CLUSTER_NODES:-3}"
REPLICAS="${RCE_CLUSTER_REPLICAS:-3}"
IMAGE="${RCE_IMAGE_NAME:-custom-rce-kernel:latest}"
export RCE_LOCAL_BUCKET=rce-cluster
# SeaweedFS ports of the cluster, away from local/up.sh's defaults.
export RCE_LOCAL_MASTER_PORT="${RCE_LOCAL_MASTER_PORT:-19333}"
export RCE_LOCAL_VOLUME_PORT="${RCE_LOCAL_VOLUME_PORT:-18080}"
export RCE_LOCAL_FILER_PORT="${RCE_LOCAL_FILER_PORT:-18888}"
export RCE_LOCAL_S3_PORT="${RCE_LOCAL_S3_PORT:-18333}"
source local/lib.sh

engine_sock() { echo "/var/run/rce-cluster-node$1.sock"; }
proxy_sock() { echo "$RUNDIR/proxy$1.sock"; }
dk() { local n="$1"; shift; docker -H "unix://$(engine_sock "$n")" "$@"; }
engine_answers() { timeout 5 docker -H "unix://$(engine_sock "$1")" version >/dev/null 2>&1; }

start_engine() {
  local n="$1"
  if alive "engine$n" && engine_answers "$n"; then
    say "engine $n already runs (pid $(cat "$STATE/run/engine$n.pid"))"
    return
  fi
  mkdir -p "$ROOT/node$n" "$RUNDIR/n$n"
  say "starting engine $n: dockerd on $(engine_sock "$n") (data root $ROOT/node$n)"
  # Its own network namespace (unshare --net, which leaves /sys and the cgroup mounts
  # alone, unlike ip netns exec): a dockerd with --bridge=none deletes the host's
  # docker0 (the default engine's bridge) at start; in a namespace of its own it
  # touches nothing of the host's network. Sandboxes have no network; the socket is a file.
  setsid unshare --net dockerd --host "unix://$(engine_sock "$n")" --data-root "$ROOT/node$n" \
    --exec-root "$RUNDIR/n$n" --pidfile "$RUNDIR/n$n.pid" \
    --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
    >>"$STATE/log/engine$n.log" 2>&1 </dev/null &
  echo $! >"$STATE/run/engine$n.pid"
  local deadline=$((SECONDS + 60))
  until engine_answers "$n"; do
    if ! alive "engine$n" || [ "$SECONDS" -ge "$deadline" ]; then
      echo "error: engine $n did not answer; the end of $STATE/log/engine$n.log:" >&2
      tail -n 20 "$STATE/log/engine$n.log" >&2
      exit 1
    fi
    sleep 0.5
  done
}

# load_image N: give engine N the sandbox image of the default engine (by image id).
load_image() {
  local n="$1" want have tar started
  want="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
  have="$(dk "$n" image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
  if [ "$have" = "$want" ]; then
    say "engine $n has $IMAGE (${want:7:12})"
    return
  fi
  tar="$ROOT/image-${want:7:12}.tar"
  if [ ! -s "$tar" ]; then
    find "$ROOT" -maxdepth 1 -name 'image-*.tar' -delete
    started=$SECONDS
    say "saving $IMAGE (${want:7:12}) once to $tar"
    docker save "$IMAGE" -o "$tar.part" && mv "$tar.part" "$tar"
    say "saved in $((SECONDS - started)) s"
  fi
  started=$SECONDS
  say "loading $IMAGE into engine $n"
  dk "$n" load -q -i "$tar" >/dev/null
  say "engine $n loaded the image in $((SECONDS - started)) s"
}

start_proxy() {
  local n="$1"
  if alive "proxy$n"; then
    say "socket proxy $n already runs"
    return
  fi
  rm -f "$(proxy_sock "$n")"
  say "starting socket proxy $n on $(proxy_sock "$n")"
  env RCE_PROXY_LISTEN="$(proxy_sock "$n")" RCE_PROXY_DOCKER_SOCKET="$(engine_sock "$n")" \
      RCE_PROXY_LUA="$PWD/images/proxy/policy.lua" RCE_PROXY_IMAGES="$IMAGE" \
    setsid haproxy -db -f images/proxy/haproxy.cfg >>"$STATE/log/proxy$n.log" 2>&1 </dev/null &
  echo $! >"$STATE/run/proxy$n.pid"
  local deadline=$((SECONDS + 20))
  until [ -S "$(proxy_sock "$n")" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "error: proxy $n did not listen" >&2; exit 1; }
    sleep 0.2
  done
}

engine_list() {
  local n list=""
  for n in $(seq 1 "$NODES"); do list="${list:+$list,}node$n=unix://$(proxy_sock "$n")"; done
  echo "$list"
}

start_replica() {
  local r="$1" port=$((LB_PORT + $1))
  if alive "api$r"; then
    say "API replica $r already runs"
    return
  fi
  local auth=(RCE_AUTH_MODE=api_key)
  if [ -n "${RCE_CLUSTER_JWT_PUBLIC_KEY_FILE:-}" ]; then
    auth=(RCE_AUTH_MODE=both RCE_JWT_PUBLIC_KEY_FILE="$RCE_CLUSTER_JWT_PUBLIC_KEY_FILE"
          RCE_JWT_ISSUER=librechat RCE_JWT_AUDIENCE=codeapi)
  fi
  say "starting API replica $r on http://127.0.0.1:$port"
  env -u DOCKER_HOST CUSTOM_RCE_API_KEY="$API_KEY" "${auth[@]}" \
      RCE_HOST=127.0.0.1 RCE_PORT="$port" RCE_IMAGE_NAME="$IMAGE" \
      RCE_STORAGE="s3://$BUCKET/sessions" RCE_S3_ENDPOINT="$S3_ENDPOINT" RCE_S3_REGION=us-east-1 \
      RCE_S3_ACCESS_KEY="$RCE_S3_ACCESS_KEY" RCE_S3_SECRET_KEY="$RCE_S3_SECRET_KEY" \
      RCE_DOCKER_HOSTS="$(engine_list)" RCE_PTC_TOKEN_SECRET="$PTC_SECRET" \
      RCE_ENGINE_PROBE_INTERVAL_S="${RCE_ENGINE_PROBE_INTERVAL_S:-2}" \
      RCE_POOL_SIZE="${RCE_POOL_SIZE:-1}" RCE_POOL_DATA_SIZE="${RCE_POOL_DATA_SIZE:-0}" \
      RCE_READY_DETAILS="${RCE_READY_DETAILS:-public}" \
    setsid uv run --frozen python -m uvicorn handler.app:create_app --factory \
      --host 127.0.0.1 --port "$port" >>"$STATE/log/api$r.log" 2>&1 </dev/null &
  echo $! >"$STATE/run/api$r.pid"
}

start_lb() {
  local r cfg="$STATE/lb.cfg"
  {
    cat <<EOF
global
    maxconn 2048
defaults
    mode http
    timeout connect 2s
    timeout client 15m
    timeout server 15m
    timeout http-request 30s
    option redispatch
    retries 2
    # A fresh server-side connection per request: a replica (uvicorn) closes an idle
    # keep-alive connection after 5 s, and a request sent on it at that moment would
    # be lost without an answer.
    option http-server-close
frontend rce
    bind 127.0.0.1:$LB_PORT
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /ready
    http-check expect status 200
    default-server inter 1s fall 2 rise 1
EOF
    for r in $(seq 1 "$REPLICAS"); do
      echo "    server api$r 127.0.0.1:$((LB_PORT + r)) check"
    done
  } >"$cfg"
  if alive lb; then
    say "load balancer already runs"
    return
  fi
  haproxy -c -q -f "$cfg"
  say "starting the load balancer on http://127.0.0.1:$LB_PORT (round robin, checks /ready)"
  setsid haproxy -db -f "$cfg" >>"$STATE/log/lb.log" 2>&1 </dev/null &
  echo $! >"$STATE/run/lb.pid"
}

# clean_engine N: remove this service's containers from engine N (if it answers).
clean_engine() {
  local n="$1" ids
  engine_answers "$n" || return 0
  ids="$(dk "$n" ps -aq --filter label=org.rce.service=rce)"
  [ -z "$ids" ] || dk "$n" rm -f $ids >/dev/null 2>&1 || true
}

stop_engine() {
  local n="$1" pid
  clean_engine "$n"
  stop "proxy$n" 5
  if [ -f "$STATE/run/engine$n.pid" ]; then
    pid="$(cat "$STATE/run/engine$n.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      say "stopping engine $n (pid $pid)"
      kill -TERM "$pid"
      local deadline=$((SECONDS + 30))
      while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    fi
    stop "engine$n" 5
  fi
  rm -f "$(engine_sock "$n")" "$(proxy_sock "$n")"
}

cmd_up() {
  mkdir -p "$STATE/run" "$STATE/log" "$ROOT"
  chmod 700 "$STATE"
  command -v haproxy >/dev/null || { echo "error: haproxy is not installed" >&2; exit 1; }
  scripts/ensure-docker.sh
  if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "building $IMAGE on the default engine (images/build.sh)"
    RCE_IMAGE_NAME="$IMAGE" images/build.sh
  fi
  local n r
  for n in $(seq 1 "$NODES"); do start_engine "$n"; done
  for n in $(seq 1 "$NODES"); do load_image "$n"; done
  for n in $(seq 1 "$NODES"); do start_proxy "$n"; done

  S3_ENDPOINT="http://127.0.0.1:$RCE_LOCAL_S3_PORT"
  export RCE_S3_ACCESS_KEY="rce-cluster"
  RCE_S3_SECRET_KEY="$(secret_file "$STATE/s3-secret")"
  export RCE_S3_SECRET_KEY
  if alive weed; then say "SeaweedFS already runs"; else start_seaweedfs; fi
  say "bucket $BUCKET"
  uv run --frozen python local/setup_bucket.py --endpoint "$S3_ENDPOINT" --bucket "$BUCKET" \
    --prefix sessions --ttl-hours 48 --wait 90 >/dev/null

  API_KEY="${CUSTOM_RCE_API_KEY:-$(secret_file "$STATE/api-key")}"
  PTC_SECRET="$(secret_file "$STATE/ptc-secret")"
  for r in $(seq 1 "$REPLICAS"); do start_replica "$r"; done
  for r in $(seq 1 "$REPLICAS"); do
    wait_http "http://127.0.0.1:$((LB_PORT + r))/ready" 120 "api$r" "$STATE/log/api$r.log"
  done
  start_lb
  wait_http "http://127.0.0.1:$LB_PORT/ready" 30 lb "$STATE/log/lb.log"
  say "the cluster is up in ${SECONDS} s"
  echo "http://127.0.0.1:$LB_PORT"
  cat >&2 <<EOF
    load balancer  http://127.0.0.1:$LB_PORT   (X-API-Key: the contents of $STATE/api-key)
    replicas       $(for r in $(seq 1 "$REPLICAS"); do printf 'http://127.0.0.1:%s ' $((LB_PORT + r)); done)
    engines        $(engine_list)
    logs           $STATE/log/
    stop it        local/cluster.sh down
EOF
}

cmd_down() {
  local n r
  stop lb 5
  for r in $(seq 1 "$REPLICAS"); do stop "api$r" 40; done
  for n in $(seq 1 "$NODES"); do
    # A killed engine is started again so that its sandboxes are removed cleanly.
    if [ -f "$STATE/run/engine$n.pid" ] && ! engine_answers "$n"; then
      stop "engine$n" 1
      start_engine "$n"
    fi
    stop_engine "$n"
  done
  stop weed 5
  if [ -f "$STATE/run/weed.ports" ]; then
    for port in $(cat "$STATE/run/weed.ports"); do rm -f "${TMPDIR:-/tmp}"/seaweedfs-*-"$port".sock; done
    rm -f "$STATE/run/weed.ports"
  fi
  rm -rf "$STATE/weed"
  if [ "${1:-}" = "--purge" ]; then
    say "removing the engines' data roots and the image tar under $ROOT"
    rm -rf "$ROOT"
  fi
  say "the cluster is down"
}

cmd_kill_node() {
  local n="${1:?kill-node needs a node number}" pid
  [ -f "$STATE/run/engine$n.pid" ] || { echo "error: engine $n is not running" >&2; exit 1; }
  pid="$(cat "$STATE/run/engine$n.pid")"
  say "killing engine $n: SIGKILL to dockerd (pid $pid) and its containerd"
  # dockerd was started with setsid: its process group is dockerd and its containerd.
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
}

cmd_status() {
  local name
  for name in lb $(for r in $(seq 1 "$REPLICAS"); do echo "api$r"; done) \
      $(for n in $(seq 1 "$NODES"); do echo "engine$n proxy$n"; done) weed; do
    if alive "$name"; then echo "$name: up (pid $(cat "$STATE/run/$name.pid"))"; else echo "$name: down"; fi
  done
}

case "${1:-}" in
  up) cmd_up ;;
  down) shift; cmd_down "$@" ;;
  kill-node) shift; cmd_kill_node "$@" ;;
  status) cmd_status ;;
  *) echo "usage: local/cluster.sh up|down [--purge]|kill-node N|status" >&2; exit 2 ;;
esac
