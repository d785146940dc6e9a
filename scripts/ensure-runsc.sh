#!/usr/bin/env bash
# Install gVisor (runsc) and register it with the Docker engine. Idempotent.
#
# Registers two runtimes in /etc/docker/daemon.json (merged into what is there):
#   runsc      --network=none : sandboxes without network (RCE_NETWORK_MODE=off)
#   runsc-net  --network=host: sandboxes on the allowlist/open networks. gVisor passes
#              socket calls through to the network namespace Docker made for the
#              container (its own veth, never the host's interfaces); this release
#              refuses its own network stack under Docker here ("cannot run with
#              network enabled in root network namespace").
# Both use RCE_RUNSC_PLATFORM (default ptrace: works everywhere, no KVM needed; use
# kvm on hosts with /dev/kvm, or systrap with a gVisor release that has it).
# No --oci-seccomp: with it this release answers the engine profile's clone3 rule with
# EPERM instead of ENOSYS, so glibc cannot start a thread (measured: Python's
# threading and `import matplotlib.pyplot` fail). gVisor's own host filter applies.
# Then reloads dockerd with SIGHUP (running containers are not disturbed) and waits
# until `docker info` lists the runtimes.
#
# RCE_DOCKER_DAEMON_JSON  the daemon configuration file (default /etc/docker/daemon.json)
# RCE_DOCKERD_PIDFILE     dockerd's pid file (default /var/run/docker.pid)
set -euo pipefail

DAEMON_JSON="${RCE_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}"
PIDFILE="${RCE_DOCKERD_PIDFILE:-/var/run/docker.pid}"
PLATFORM="${RCE_RUNSC_PLATFORM:-ptrace}"

case "$PLATFORM" in
  ptrace|kvm|systrap) ;;
  *) echo "error: RCE_RUNSC_PLATFORM must be ptrace, kvm or systrap (got $PLATFORM)" >&2; exit 1 ;;
esac

if ! command -v runsc >/dev/null 2>&1; then
  if [ "$(id -u)" != "0" ] || [ ! -f /etc/debian_version ]; then
    echo "error: runsc (gVisor) is not installed; see https://gvisor.dev/docs/user_guide/install/" >&2
    exit 1
  fi
  echo "==> installing runsc (gVisor) from Debian" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null; }
fi
RUNSC="$(command -v runsc)"

# Each running gVisor sandbox may hold 24 x RCE_PIDS_LIMIT host pids (SECURITY.md).
pid_max="$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 0)"
if [ "$pid_max" -lt 65536 ]; then
  echo "warning: kernel.pid_max is $pid_max; under gVisor raise it (see docs/deployment.md)" >&2
fi

runtimes_listed() {
  local listed
  listed="$(timeout 10 docker info --format '{{ range $name, $_ := .Runtimes }}{{ $name }} {{ end }}' 2>/dev/null || true)"
  [[ " $listed " == *" runsc "* && " $listed " == *" runsc-net "* ]]
}

mkdir -p "$(dirname "$DAEMON_JSON")"
changed="$(python3 - "$DAEMON_JSON" "$RUNSC" "$PLATFORM" <<'EOF'
import json, os, sys, tempfile
path, runsc, platform = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    with open(path) as f:
        config = json.load(f) if os.path.getsize(path) else {}
except FileNotFoundError:
    config = {}
if not isinstance(config, dict):
    sys.exit(f"error: {path} is not a JSON object")
wanted = {
    "runsc": {"path": runsc, "runtimeArgs": [f"--platform={platform}", "--network=none"]},
    "runsc-net": {"path": runsc, "runtimeArgs": [f"--platform={platform}", "--network=host"]},
}
runtimes = config.setdefault("runtimes", {})
if all(runtimes.get(k) == v for k, v in wanted.items()):
    print("no")
    sys.exit(0)
runtimes.update(wanted)
fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".daemon.json.")
with os.fdopen(fd, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.chmod(tmp, 0o644)
os.replace(tmp, path)
print("yes")
EOF
)"

if [ "$changed" = no ] && runtimes_listed; then
  echo "==> runsc and runsc-net are registered with the engine" >&2
  exit 0
fi

pid="$(cat "$PIDFILE" 2>/dev/null || true)"
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
  echo "error: no dockerd pid in $PIDFILE to reload; restart the engine to load $DAEMON_JSON" >&2
  exit 1
fi
echo "==> reloading dockerd ($pid) with the runsc runtimes" >&2
kill -HUP "$pid"
for _ in $(seq 1 30); do
  if runtimes_listed; then
    echo "==> runsc and runsc-net are registered with the engine" >&2
    exit 0
  fi
  sleep 1
done
echo "error: dockerd did not list the runsc runtimes after a reload; see its log" >&2
exit 1
