"""What network a sandbox gets, and under which runtime: pure functions.

Three modes (``RCE_NETWORK_MODE``):

``off`` (default)
    Network mode ``none``: only a loopback device.
``allowlist``
    The internal Docker network ``rce-allowlist``: no route out. Its one way out is
    the egress proxy (Squid, ``images/egress``) at a fixed address on it, which
    forwards only to the allow-listed hosts and never to private, loopback,
    link-local or metadata addresses (checked after DNS). Sandboxes get
    ``HTTP_PROXY``/``HTTPS_PROXY`` (and pip reads them).
``open``
    The bridge network ``rce-open``: egress, but the set-up's iptables rules
    (``scripts/ensure-network.sh``) drop traffic to private, link-local, metadata
    and shared ranges, between sandboxes, and to the host itself.

The set-up (``scripts/ensure-network.sh``) creates these networks and the proxy;
the runner only names them. Under gVisor, a sandbox with a network runs on the
``runsc-net`` runtime (``--network=host``: gVisor passes socket calls to the network
namespace Docker made for the container); ``runsc`` itself is registered with
``--network=none``, which a container on network ``none`` needs.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

ALLOWLIST_NETWORK = "rce-allowlist"
OPEN_NETWORK = "rce-open"
EGRESS_NETWORK = "rce-egress"
EGRESS_PROXY_CONTAINER = "rce-egress-proxy"
EGRESS_PROXY_PORT = 3128
#: The subnet of ``rce-allowlist``; the proxy takes its second host address.
DEFAULT_ALLOWLIST_SUBNET = "172.31.252.0/24"
GVISOR_RUNTIME = "runsc"
#: The gVisor runtime with its own network stack, for sandboxes with a network.
GVISOR_NET_RUNTIME = "runsc-net"

#: Debian marks its Python as externally managed (PEP 668); ``pip install --user``
#: only writes under the sandbox's $HOME (a tmpfs), so it is allowed.
PIP_USER_INSTALLS = "PIP_BREAK_SYSTEM_PACKAGES=1"

_NAME = re.compile(r"^\.?(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")


class NetworkMode(StrEnum):
    """``RCE_NETWORK_MODE``."""

    OFF = "off"
    ALLOWLIST = "allowlist"
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class SandboxNetwork:
    """The Docker network a sandbox joins and the environment that goes with it."""

    mode: NetworkMode
    #: ``HostConfig.NetworkMode``: ``none``, ``rce-allowlist`` or ``rce-open``.
    name: str
    env: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.mode is not NetworkMode.OFF


def parse_allowlist(value: str) -> tuple[str, ...]:
    """``pypi.org, .example.org ,1.2.3.4`` -> normalized entries; raises ``ValueError``.

    An entry is a host name (exact match; a leading dot also matches subdomains) or
    an IP address. Wildcards, ports, schemes and paths are refused.
    """
    entries: list[str] = []
    for raw in value.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        try:
            entries.append(str(ipaddress.ip_address(item)))
            continue
        except ValueError:
            pass
        if not _NAME.match(item) or item.strip(".").isdigit():
            raise ValueError(f"allow-list entry {raw.strip()!r} is not a host name or IP address")
        entries.append(item)
    return tuple(dict.fromkeys(entries))


def proxy_address(subnet: str = DEFAULT_ALLOWLIST_SUBNET) -> str:
    """The egress proxy's fixed address on ``rce-allowlist``: the subnet's second host."""
    network = ipaddress.ip_network(subnet)
    if network.version != 4 or network.prefixlen > 29:
        raise ValueError(f"{subnet} must be an IPv4 subnet of at least /29")
    return str(network.network_address + 2)


def sandbox_network(
    mode: NetworkMode, *, allowlist_subnet: str = DEFAULT_ALLOWLIST_SUBNET
) -> SandboxNetwork:
    """The network of every sandbox in ``mode``."""
    if mode is NetworkMode.ALLOWLIST:
        url = f"http://{proxy_address(allowlist_subnet)}:{EGRESS_PROXY_PORT}"
        env = tuple(
            f"{name}={url}" for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
        ) + ("NO_PROXY=localhost,127.0.0.1", "no_proxy=localhost,127.0.0.1", PIP_USER_INSTALLS)
        return SandboxNetwork(mode, ALLOWLIST_NETWORK, env)
    if mode is NetworkMode.OPEN:
        return SandboxNetwork(mode, OPEN_NETWORK, (PIP_USER_INSTALLS,))
    return SandboxNetwork(mode, "none")


def runtime_for(runtime: str | None, mode: NetworkMode) -> str | None:
    """The OCI runtime a sandbox is created with: ``runsc`` becomes ``runsc-net`` when
    the sandbox has a network (``runsc`` is registered with ``--network=none``)."""
    if runtime == GVISOR_RUNTIME and mode is not NetworkMode.OFF:
        return GVISOR_NET_RUNTIME
    return runtime
