#!/usr/bin/env bash
# Set up the sandbox network of RCE_NETWORK_MODE. Idempotent; root on the engine's host.
#
#   off (default)  nothing to do: sandboxes get network mode none.
#   allowlist      the internal network rce-allowlist (RCE_NETWORK_ALLOWLIST_SUBNET,
#                  default 172.31.252.0/24) whose only way out is the Squid egress
#                  proxy rce-egress-proxy (images/egress) at the subnet's .2, which is
#                  also on the bridge network rce-egress; the proxy forwards only to
#                  RCE_NETWORK_ALLOWLIST and never to private or metadata addresses.
#   open           the bridge network rce-open, with egress except private, shared,
#                  link-local and metadata ranges, other sandboxes and the host.
#
# iptables (both networking modes): the chain RCE-EGRESS (jumped to from DOCKER-USER)
# lets rce-allowlist carry only sandbox <-> proxy:3128 and drops rce-open's traffic to
# the blocked ranges (except DNS to the host's resolvers); RCE-HOST (from INPUT) drops
# everything from rce-allowlist and rce-open to the host itself. Both chains are
# rebuilt on every run.
#
#   scripts/ensure-network.sh          set up what RCE_NETWORK_MODE needs
#   scripts/ensure-network.sh --down   remove the proxy, the networks and the chains
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${RCE_NETWORK_MODE:-}"
if [ -z "$MODE" ]; then
  case "$(printf '%s' "${RCE_NETWORK_ENABLED:-false}" | tr 'A-Z' 'a-z')" in
    1|true|yes|on) MODE=open ;;
    *) MODE=off ;;
  esac
fi
SUBNET="${RCE_NETWORK_ALLOWLIST_SUBNET:-172.31.252.0/24}"
ALLOWLIST="${RCE_NETWORK_ALLOWLIST:-}"
IMAGE="${RCE_EGRESS_IMAGE:-rce-egress-proxy:latest}"
ALLOW_NET=rce-allowlist OPEN_NET=rce-open EGRESS_NET=rce-egress PROXY=rce-egress-proxy
BLOCKED="0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12
192.0.0.0/24 192.0.2.0/24 192.168.0.0/16 198.18.0.0/15 198.51.100.0/24 203.0.113.0/24
224.0.0.0/4 240.0.0.0/4"

proxy_ip() {
  python3 -c 'import ipaddress,sys; print(ipaddress.ip_network(sys.argv[1]).network_address + 2)' "$1"
}

ensure_chain() { # TABLE-less: filter. ensure_chain CHAIN PARENT
  iptables -N "$1" 2>/dev/null || true
  iptables -F "$1"
  iptables -C "$2" -j "$1" 2>/dev/null || iptables -I "$2" 1 -j "$1"
}

remove_chain() { # remove_chain CHAIN PARENT
  while iptables -D "$2" -j "$1" 2>/dev/null; do :; done
  iptables -F "$1" 2>/dev/null || true
  iptables -X "$1" 2>/dev/null || true
}

ensure_net() { # ensure_net NAME docker-network-create-args...
  local name="$1"; shift
  docker network inspect "$name" >/dev/null 2>&1 && return 0
  echo "==> creating Docker network $name" >&2
  docker network create --label org.rce.network=1 "$@" "$name" >/dev/null
}

install_rules() {
  local pip="$1" ns
  command -v iptables >/dev/null 2>&1 || { echo "error: iptables is missing" >&2; exit 1; }
  ensure_chain RCE-EGRESS DOCKER-USER
  ensure_chain RCE-HOST INPUT
  # rce-allowlist: only sandbox -> proxy:3128 and its replies; nothing else in or out.
  if [ -n "$pip" ]; then
    iptables -A RCE-EGRESS -i $ALLOW_NET -o $ALLOW_NET -p tcp -d "$pip" --dport 3128 -j RETURN
    iptables -A RCE-EGRESS -i $ALLOW_NET -o $ALLOW_NET -p tcp -s "$pip" --sport 3128 -j RETURN
  fi
  iptables -A RCE-EGRESS -i $ALLOW_NET -j DROP
  iptables -A RCE-EGRESS -o $ALLOW_NET -j DROP
  # rce-open: no sandbox to sandbox; DNS to the host's resolvers; no blocked range.
  iptables -A RCE-EGRESS -i $OPEN_NET -o $OPEN_NET -j DROP
  for ns in $(awk '/^nameserver/ {print $2}' /etc/resolv.conf | grep -v ':' || true); do
    case "$ns" in 127.*) continue ;; esac
    iptables -A RCE-EGRESS -i $OPEN_NET -d "$ns" -p udp --dport 53 -j RETURN
    iptables -A RCE-EGRESS -i $OPEN_NET -d "$ns" -p tcp --dport 53 -j RETURN
  done
  for range in $BLOCKED; do
    iptables -A RCE-EGRESS -i $OPEN_NET -d "$range" -j DROP
  done
  iptables -A RCE-EGRESS -j RETURN
  # The host itself, on any of its addresses.
  iptables -A RCE-HOST -i $ALLOW_NET -j DROP
  iptables -A RCE-HOST -i $OPEN_NET -j DROP
  iptables -A RCE-HOST -j RETURN
}

if [ "${1:-}" = "--down" ]; then
  docker rm -f "$PROXY" >/dev/null 2>&1 || true
  for net in $ALLOW_NET $OPEN_NET $EGRESS_NET; do docker network rm "$net" >/dev/null 2>&1 || true; done
  remove_chain RCE-EGRESS DOCKER-USER
  remove_chain RCE-HOST INPUT
  echo "==> sandbox networks removed" >&2
  exit 0
fi

case "$MODE" in
  off)
    echo "==> RCE_NETWORK_MODE=off: sandboxes have no network" >&2
    exit 0 ;;
  open)
    ensure_net $OPEN_NET -o com.docker.network.bridge.name=$OPEN_NET \
      -o com.docker.network.bridge.enable_icc=false
    install_rules ""
    echo "==> RCE_NETWORK_MODE=open: network $OPEN_NET ready (no private, metadata or host)" >&2
    exit 0 ;;
  allowlist) ;;
  *) echo "error: RCE_NETWORK_MODE must be off, allowlist or open (got $MODE)" >&2; exit 1 ;;
esac

[ -n "$ALLOWLIST" ] || { echo "error: RCE_NETWORK_MODE=allowlist needs RCE_NETWORK_ALLOWLIST" >&2; exit 1; }
images/egress/build.sh
PROXY_IP="$(proxy_ip "$SUBNET")"
ensure_net $ALLOW_NET --internal --subnet "$SUBNET" -o com.docker.network.bridge.name=$ALLOW_NET
ensure_net $EGRESS_NET -o com.docker.network.bridge.name=$EGRESS_NET
install_rules "$PROXY_IP"

# The proxy is recreated when its image, address or allow-list changed.
want="$(printf '%s|%s|%s' "$(docker image inspect -f '{{.Id}}' "$IMAGE")" "$PROXY_IP" "$ALLOWLIST" | sha256sum | cut -c1-16)"
have="$(docker inspect -f '{{ index .Config.Labels "org.rce.egress-config" }}' "$PROXY" 2>/dev/null || true)"
running="$(docker inspect -f '{{.State.Running}}' "$PROXY" 2>/dev/null || true)"
if [ "$want" != "$have" ] || [ "$running" != true ]; then
  docker rm -f "$PROXY" >/dev/null 2>&1 || true
  echo "==> starting $PROXY at $PROXY_IP (allow-list: $ALLOWLIST)" >&2
  docker create --name "$PROXY" --label "org.rce.egress-config=$want" \
    --restart unless-stopped --network $ALLOW_NET --ip "$PROXY_IP" \
    --read-only --tmpfs /run/squid:size=8m,uid=13,gid=13 --tmpfs /tmp:size=16m --tmpfs /var/spool/squid:size=8m,uid=13,gid=13 \
    --tmpfs /var/log/squid:size=8m,uid=13,gid=13 --cap-drop ALL --security-opt no-new-privileges \
    --memory 256m --pids-limit 256 \
    -e "RCE_EGRESS_ALLOWLIST=$ALLOWLIST" "$IMAGE" >/dev/null
  docker network connect $EGRESS_NET "$PROXY"
  docker start "$PROXY" >/dev/null
fi
for _ in $(seq 1 30); do
  if docker exec "$PROXY" bash -c 'exec 3<>/dev/tcp/127.0.0.1/3128' 2>/dev/null; then
    echo "==> RCE_NETWORK_MODE=allowlist: $PROXY answers on $PROXY_IP:3128" >&2
    exit 0
  fi
  [ "$(docker inspect -f '{{.State.Running}}' "$PROXY")" = true ] || break
  sleep 1
done
docker logs --tail 30 "$PROXY" >&2 || true
echo "error: the egress proxy did not start" >&2
exit 1
