#!/bin/sh
# Start Squid as the rce egress proxy: it forwards only to the allow-listed hosts and
# never to a private, loopback, link-local or metadata address (checked after DNS).
#
# Environment:
#   RCE_EGRESS_ALLOWLIST   comma-separated host names (exact; ".example.org" also
#                          matches its subdomains) and IP addresses; empty refuses all
#   RCE_EGRESS_PORT        the listening port (default 3128)
#   RCE_EGRESS_TEST_ONLY_ALLOW_ADDRESS
#                          TESTS ONLY: one IPv4 address exempted from the private-range
#                          refusal (a test's own index on a private test network). Never
#                          set by the set-up, the compose files or the API's settings.
set -eu
CONF=/run/squid/squid.conf
PORT="${RCE_EGRESS_PORT:-3128}"
mkdir -p /run/squid
case "$PORT" in *[!0-9]*|"") echo "rce-egress: bad RCE_EGRESS_PORT" >&2; exit 1 ;; esac

names="" addrs=""
for item in $(printf '%s' "${RCE_EGRESS_ALLOWLIST:-}" | tr ',' ' '); do
  case "$item" in
    *[!A-Za-z0-9.:-]*) echo "rce-egress: refusing allow-list entry '$item'" >&2; exit 1 ;;
  esac
  case "$item" in
    *:*|*[!0-9.]*) # a name (or an IPv6 literal, which has a colon)
      case "$item" in *:*) addrs="$addrs $item" ;; *) names="$names $item" ;; esac ;;
    *) addrs="$addrs $item" ;;
  esac
done

{
  echo "http_port $PORT"
  echo "pid_filename none"
  echo "cache deny all"
  echo "cache_mem 8 MB"
  echo "access_log stdio:/dev/stdout"
  echo "cache_log stdio:/dev/stderr"
  echo "logfile_rotate 0"
  echo "coredump_dir /tmp"
  echo "pinger_enable off"
  echo "via off"
  echo "forwarded_for delete"
  echo "dns_v4_first on"
  echo "acl safe_ports port 80 443"
  echo "acl tls_ports port 443"
  echo "acl CONNECT method CONNECT"
  # Always refused, whatever the allow-list says: these ACLs resolve a name and match
  # every address it resolves to, and Squid connects to the addresses it checked.
  echo "acl blocked_dst dst 0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16"
  echo "acl blocked_dst dst 172.16.0.0/12 192.0.0.0/24 192.0.2.0/24 192.168.0.0/16 198.18.0.0/15"
  echo "acl blocked_dst dst 198.51.100.0/24 203.0.113.0/24 224.0.0.0/4 240.0.0.0/4"
  echo "acl blocked_dst dst ::/128 ::1/128 ::ffff:0:0/96 64:ff9b::/96 fc00::/7 fe80::/10 ff00::/8 fd00:ec2::254/128"
  for n in $names; do echo "acl allowed_name dstdomain -n $n"; done
  for a in $addrs; do echo "acl allowed_addr dst -n $a"; done
  echo "http_access deny !safe_ports"
  echo "http_access deny CONNECT !tls_ports"
  if [ -n "${RCE_EGRESS_TEST_ONLY_ALLOW_ADDRESS:-}" ]; then
    case "$RCE_EGRESS_TEST_ONLY_ALLOW_ADDRESS" in
      *[!0-9.]*) echo "rce-egress: RCE_EGRESS_TEST_ONLY_ALLOW_ADDRESS must be one IPv4 address" >&2; exit 1 ;;
    esac
    echo "WARNING: RCE_EGRESS_TEST_ONLY_ALLOW_ADDRESS=$RCE_EGRESS_TEST_ONLY_ALLOW_ADDRESS exempts a private address (tests only)" >&2
    echo "acl test_only_addr dst $RCE_EGRESS_TEST_ONLY_ALLOW_ADDRESS/32"
    [ -n "$names" ] && echo "http_access allow test_only_addr allowed_name"
    [ -n "$addrs" ] && echo "http_access allow test_only_addr allowed_addr"
  fi
  echo "http_access deny blocked_dst"
  [ -n "$names" ] && echo "http_access allow allowed_name"
  [ -n "$addrs" ] && echo "http_access allow allowed_addr"
  echo "http_access deny all"
  echo "http_reply_access allow all"
} >"$CONF"

squid -k parse -f "$CONF" >/dev/null 2>&1 || { squid -k parse -f "$CONF"; exit 1; }
exec squid -N -f "$CONF"
