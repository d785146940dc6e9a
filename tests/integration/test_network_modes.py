"""The three network modes against servers this test starts (never anything outside).

The test makes a Docker network in 10.0.0.0/8 (a blocked range) with two HTTP
servers on port 80: the *index* (``.10``, a PEP 503 index holding a wheel built here)
and the *other* (``.20``). The egress proxy of ``allowlist`` mode is the shipped one
(images/egress) with the test-only override ``RCE_EGRESS_TEST_ONLY_ALLOW_ADDRESS``
set to the index's address: without it a private address is always refused, which
is the point. ``private-name.test`` is allow-listed but resolves (inside the proxy)
to the other server: it must be refused after resolution.

Needs root (iptables) and the set-up script; the networks and the proxy are removed
afterwards unless they existed before.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from runner import network as net
from runner.docker import DockerSandbox
from tests.support.docker_plugin import RUN_LABELS, TEST_RUNTIME, execute, input_file
from tests.support.services import service_missing

pytestmark = [pytest.mark.docker]

REPO_ROOT = Path(__file__).resolve().parents[2]
ENSURE = REPO_ROOT / "scripts" / "ensure-network.sh"
EGRESS_IMAGE = "rce-egress-proxy:latest"
PRIVATE_NAME = "private-name.test"

PROBE = r"""
import json, socket, sys, urllib.request
def get(url, proxy=True):
    handler = urllib.request.ProxyHandler() if proxy else urllib.request.ProxyHandler({})
    try:
        return urllib.request.build_opener(handler).open(url, timeout=4).read().decode().strip()
    except Exception as exc:
        return "ERR %s %s" % (type(exc).__name__, getattr(exc, "code", ""))
def tcp(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "open"
    except Exception as exc:
        return "ERR " + type(exc).__name__
targets = json.loads(sys.argv[1])
out = {}
for key, (kind, a, b) in targets.items():
    out[key] = get(a, b) if kind == "get" else tcp(a, b)
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Upstream:
    network: str
    subnet: ipaddress.IPv4Network
    index: str
    other: str


def _wheel() -> tuple[str, bytes]:
    """A tiny pure-Python wheel, ``rce-probe 1.0``."""
    files = {
        "rce_probe/__init__.py": b'VALUE = "probe-ok"\n',
        "rce_probe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: rce-probe\n"
        b"Version: 1.0\n",
        "rce_probe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: rce-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append("rce_probe-1.0.dist-info/RECORD,,")
    files["rce_probe-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
    return "rce_probe-1.0-py3-none-any.whl", buf.getvalue()


def _pip_wheel() -> bytes:
    """A pip wheel to run inside the sandbox (the image has no pip): ensurepip's."""
    import ensurepip

    candidates = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    candidates += sorted(Path("/usr/share/python-wheels").glob("pip-*.whl"))
    if not candidates:
        service_missing("no pip wheel found (ensurepip's or /usr/share/python-wheels)")
    return candidates[-1].read_bytes()


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _server(
    client: docker.DockerClient,
    image: str,
    name: str,
    network: str,
    ip: str,
    files: dict[str, bytes],
) -> Any:
    container = client.containers.create(
        image,
        ["python3", "-m", "http.server", "80", "--bind", ip, "--directory", "/srv"],
        name=name,
        user="0:0",
        labels={"org.rce.test": "network-modes", **RUN_LABELS},
        network_mode=network,
    )
    client.api.disconnect_container_from_network(container.id, network)
    client.api.connect_container_to_network(container.id, network, ipv4_address=ip)
    container.put_archive("/", _tar({f"srv/{p}": d for p, d in files.items()}))
    container.start()
    return container


@pytest.fixture(scope="module")
def upstream(docker_client: docker.DockerClient, sandbox_image: str) -> Iterator[Upstream]:
    tag = secrets.token_hex(4)
    subnet = ipaddress.ip_network(f"10.213.{secrets.randbelow(200) + 20}.0/24")
    name = f"rce-test-up-{tag}"
    docker_client.networks.create(
        name,
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))]),
        labels={"org.rce.test": "network-modes"},
    )
    index, other = str(subnet.network_address + 10), str(subnet.network_address + 20)
    wheel_name, wheel = _wheel()
    sha = hashlib.sha256(wheel).hexdigest()
    link = f'<a href="/packages/{wheel_name}#sha256={sha}">{wheel_name}</a>'
    containers = []
    try:
        containers.append(
            _server(
                docker_client,
                sandbox_image,
                f"rce-test-index-{tag}",
                name,
                index,
                {
                    "index.html": b"allowed\n",
                    "simple/index.html": b'<a href="/simple/rce-probe/">rce-probe</a>',
                    "simple/rce-probe/index.html": link.encode(),
                    f"packages/{wheel_name}": wheel,
                },
            )
        )
        containers.append(
            _server(
                docker_client,
                sandbox_image,
                f"rce-test-other-{tag}",
                name,
                other,
                {"index.html": b"refused\n"},
            )
        )
        yield Upstream(name, subnet, index, other)
    finally:
        for container in containers:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            docker_client.networks.get(name).remove()


def _ensure(mode: str, **env: str) -> None:
    if os.geteuid() != 0:
        service_missing("the network set-up needs root (iptables)")
    done = subprocess.run(
        [str(ENSURE)],
        env={**os.environ, "RCE_NETWORK_MODE": mode, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def network_setup(docker_client: docker.DockerClient) -> Iterator[None]:
    """Runs the set-up; takes the networks down afterwards unless they were there."""
    existed = any(
        n.name in (net.ALLOWLIST_NETWORK, net.OPEN_NETWORK) for n in docker_client.networks.list()
    )
    yield
    if not existed:
        subprocess.run([str(ENSURE), "--down"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def allowlist_proxy(
    docker_client: docker.DockerClient, upstream: Upstream, network_setup: None
) -> Iterator[str]:
    """The set-up's allowlist network, with the shipped proxy image run with the
    test-only override for the index's address, also attached to the test network."""
    allow = f"{upstream.index},{PRIVATE_NAME}"
    _ensure("allowlist", RCE_NETWORK_ALLOWLIST=allow)
    proxy_ip = net.proxy_address()
    with contextlib.suppress(docker.errors.NotFound):
        docker_client.containers.get(net.EGRESS_PROXY_CONTAINER).remove(force=True)
    proxy = docker_client.containers.create(
        EGRESS_IMAGE,
        name=net.EGRESS_PROXY_CONTAINER,
        environment={
            "RCE_EGRESS_ALLOWLIST": allow,
            "RCE_EGRESS_TEST_ONLY_ALLOW_ADDRESS": upstream.index,
        },
        extra_hosts={PRIVATE_NAME: upstream.other},
        labels={"org.rce.test": "network-modes", **RUN_LABELS},
        network_mode=net.ALLOWLIST_NETWORK,
        read_only=True,
        tmpfs={
            p: "size=8m,uid=13,gid=13"
            for p in ("/run/squid", "/var/spool/squid", "/var/log/squid", "/tmp")
        },
        cap_drop=["ALL"],
    )
    docker_client.api.disconnect_container_from_network(proxy.id, net.ALLOWLIST_NETWORK)
    docker_client.api.connect_container_to_network(
        proxy.id, net.ALLOWLIST_NETWORK, ipv4_address=proxy_ip
    )
    docker_client.api.connect_container_to_network(proxy.id, upstream.network)
    proxy.start()
    try:
        for _ in range(50):
            if proxy.exec_run(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3128"]).exit_code == 0:
                break
            threading.Event().wait(0.2)
        else:
            pytest.fail(proxy.logs().decode(errors="replace"))
        yield proxy_ip
    finally:
        proxy.remove(force=True)


def _probe(
    sandbox: DockerSandbox, targets: dict[str, tuple[str, str, Any]], **extra: Any
) -> dict[str, str]:
    result = execute(sandbox, PROBE, args=(json.dumps(targets),), **extra)
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


def _targets(up: Upstream, proxy_ip: str) -> dict[str, tuple[str, str, Any]]:
    return {
        "index via proxy": ("get", f"http://{up.index}/", True),
        "other via proxy": ("get", f"http://{up.other}/", True),
        "private name via proxy": ("get", f"http://{PRIVATE_NAME}/", True),
        "index direct": ("get", f"http://{up.index}/", False),
        "other direct": ("get", f"http://{up.other}/", False),
        "proxy on another port": ("tcp", proxy_ip, 22),
        "network gateway (the host)": (
            "tcp",
            str(ipaddress.ip_network(net.DEFAULT_ALLOWLIST_SUBNET).network_address + 1),
            80,
        ),
    }


PIP = (
    "python3 /mnt/data/pip.whl/pip install --user --no-cache-dir "
    "--disable-pip-version-check --timeout 4 --retries 0 --trusted-host {index} "
    "--index-url http://{index}/simple/ rce-probe >/mnt/data/pip.log 2>&1; rc=$?; "
    "echo pip=$rc; [ $rc = 0 ] || tail -8 /mnt/data/pip.log; "
    "python3 -c 'import rce_probe; print(rce_probe.VALUE)' 2>/dev/null "
    "|| echo import-failed"
)


class TestAllowlist:
    @pytest.fixture
    def sandbox(
        self, make_sandbox: Callable[..., DockerSandbox], allowlist_proxy: str
    ) -> DockerSandbox:
        mode = net.NetworkMode.ALLOWLIST
        return make_sandbox(
            network=net.sandbox_network(mode), runtime=net.runtime_for(TEST_RUNTIME, mode)
        )

    def test_reaches_only_the_allowed_server_through_the_proxy(
        self, sandbox: DockerSandbox, upstream: Upstream, allowlist_proxy: str
    ) -> None:
        seen = _probe(sandbox, _targets(upstream, allowlist_proxy), network_enabled=True)
        assert seen["index via proxy"] == "allowed", seen
        assert seen["other via proxy"] == "ERR HTTPError 403", seen
        # allow-listed by name, but the name resolves to a private address
        assert seen["private name via proxy"] == "ERR HTTPError 403", seen
        for key in (
            "index direct",
            "other direct",
            "proxy on another port",
            "network gateway (the host)",
        ):
            assert seen[key].startswith("ERR"), (key, seen)

    def test_pip_install_user_through_the_allow_list(
        self, sandbox: DockerSandbox, upstream: Upstream
    ) -> None:
        from runner.base import Language

        result = execute(
            sandbox,
            PIP.format(index=upstream.index),
            lang=Language.BASH,
            files=(input_file("pip.whl", _pip_wheel()),),
            network_enabled=True,
        )
        assert "pip=0" in result.stdout and "probe-ok" in result.stdout, result


class TestOff:
    def test_reaches_nothing(
        self, make_sandbox: Callable[..., DockerSandbox], upstream: Upstream
    ) -> None:
        sandbox = make_sandbox(
            network=net.sandbox_network(net.NetworkMode.OFF), runtime=TEST_RUNTIME
        )
        targets = _targets(upstream, net.proxy_address())
        seen = _probe(sandbox, targets)
        assert all(v.startswith("ERR") for v in seen.values()), seen

    def test_pip_install_fails(
        self, make_sandbox: Callable[..., DockerSandbox], upstream: Upstream
    ) -> None:
        from runner.base import Language

        sandbox = make_sandbox(
            network=net.sandbox_network(net.NetworkMode.OFF), runtime=TEST_RUNTIME
        )
        result = execute(
            sandbox,
            PIP.format(index=upstream.index),
            lang=Language.BASH,
            files=(input_file("pip.whl", _pip_wheel()),),
        )
        assert "pip=0" not in result.stdout and "import-failed" in result.stdout, result


def _counter(chain: str, match: str) -> int:
    rules = subprocess.run(
        ["iptables", "-L", chain, "-v", "-x", "-n"], capture_output=True, text=True
    ).stdout
    return sum(
        int(line.split()[0])
        for line in rules.splitlines()
        if match in line and line.split()[0].isdigit()
    )


class TestOpen:
    def test_no_private_range_no_host_but_a_route_out(
        self,
        make_sandbox: Callable[..., DockerSandbox],
        docker_client: docker.DockerClient,
        upstream: Upstream,
        network_setup: None,
    ) -> None:
        _ensure("open")
        gateway = docker_client.networks.get(net.OPEN_NETWORK).attrs["IPAM"]["Config"][0]["Gateway"]
        # A server on the host itself, on the open network's gateway address.
        listener = socket.create_server((gateway, 0))
        port = listener.getsockname()[1]
        accepted: list[Any] = []
        listener.settimeout(30)

        def accept() -> None:
            with contextlib.suppress(OSError):
                accepted.append(listener.accept())

        threading.Thread(target=accept, daemon=True).start()
        mode = net.NetworkMode.OPEN
        sandbox = make_sandbox(
            network=net.sandbox_network(mode), runtime=net.runtime_for(TEST_RUNTIME, mode)
        )
        before = _counter("RCE-EGRESS", "10.0.0.0/8")
        try:
            seen = _probe(
                sandbox,
                {
                    "index direct": ("get", f"http://{upstream.index}/", False),
                    "host": ("tcp", gateway, port),
                },
                network_enabled=True,
            )
        finally:
            listener.close()
        assert seen["index direct"].startswith("ERR"), seen
        assert seen["host"].startswith("ERR") and not accepted, seen
        # the private range was dropped by the set-up's rule (not only by Docker's isolation)
        assert _counter("RCE-EGRESS", "10.0.0.0/8") > before
        result = execute(sandbox, "print(open('/proc/net/route').read())", network_enabled=True)
        assert "00000000" in result.stdout.split("\n", 1)[1], result.stdout  # a default route


def test_the_override_is_not_in_the_settings_or_the_set_up() -> None:
    """The test-only exemption exists only in the proxy's entrypoint: nothing a
    deployment configures (settings, set-up, compose) can pass it."""
    from handler.settings import Settings

    assert not any("test_only" in name for name in Settings.model_fields)
    for path in [ENSURE, *sorted((REPO_ROOT / "infra").glob("*.yml"))]:
        assert "TEST_ONLY" not in path.read_text(), path
    assert sys.version_info >= (3, 11)
