"""The Docker socket proxy (images/proxy) in front of the real engine.

HAProxy runs on the host with the shipped ``haproxy.cfg`` and ``policy.lua`` on a
free loopback port. Every request the runner does not make must be refused with
403 and a JSON message before it reaches the engine; the runner's own sequence of
calls must work through it.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.tls
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runner.base import Language, RunRequest
from runner.docker import DockerSandbox
from tests.support.docker_plugin import IMAGE, RUN_LABELS
from tests.support.services import service_missing

pytestmark = [pytest.mark.docker]

REPO_ROOT = Path(__file__).resolve().parents[2]
PROXY_DIR = REPO_ROOT / "images" / "proxy"
#: Every container made here also carries the session's leak-check label.
TEST_LABELS = {"org.rce.test": "socket-proxy", **RUN_LABELS}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        service_missing(f"the proxy test needs a local engine socket, DOCKER_HOST={host}")
    return host.removeprefix("unix://")


@dataclass
class Proxy:
    """A running HAProxy with the shipped configuration."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One raw HTTP request; returns the status and the decoded JSON body (or {})."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            sent = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"raw": raw.decode(errors="replace")}
        return response.status, decoded if isinstance(decoded, dict) else {"value": decoded}


@pytest.fixture(name="engine", scope="module")
def _engine(docker_client: docker.DockerClient) -> docker.DockerClient:
    """The real engine, reached directly (for set-up and checks only)."""
    return docker_client


@contextmanager
def running_proxy(
    log_dir: Path,
    images: str,
    config_path: Path | None = None,
    lua_path: Path | None = None,
    **settings: str,
) -> Iterator[Proxy]:
    """HAProxy with the shipped config (or ``config_path``) and policy (or
    ``lua_path``) on a free loopback port in front of the engine's socket;
    ``settings`` are more environment variables (RCE_PROXY_* and test switches)."""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        service_missing("haproxy is not installed (apt-get install haproxy)")
    assert haproxy is not None
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "RCE_PROXY_LISTEN": f"127.0.0.1:{port}",
        "RCE_PROXY_DOCKER_SOCKET": _engine_socket(),
        "RCE_PROXY_LUA": str(lua_path or PROXY_DIR / "policy.lua"),
        "RCE_PROXY_IMAGES": images,
        **settings,
    }
    config = str(config_path or PROXY_DIR / "haproxy.cfg")
    check = subprocess.run([haproxy, "-c", "-f", config], env=env, capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    log_path = log_dir / "haproxy.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [haproxy, "-db", "-f", config], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_port(port, process, log_path)
        yield Proxy(port, process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def proxy(
    engine: docker.DockerClient, sandbox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """The proxy with its defaults: no network, no GPU, runc only."""
    with running_proxy(tmp_path_factory.mktemp("proxy"), sandbox_image) as running:
        yield running


@pytest.fixture(scope="module")
def open_proxy(
    engine: docker.DockerClient, sandbox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """The proxy with networking, GPUs and a second runtime allowed."""
    with running_proxy(
        tmp_path_factory.mktemp("open-proxy"),
        sandbox_image,
        RCE_PROXY_ALLOW_NETWORK="true",
        RCE_PROXY_ALLOW_GPU="true",
        RCE_PROXY_RUNTIMES="runc,runsc",
    ) as running:
        yield running


def _wait_port(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"haproxy exited: {log_path.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"haproxy did not listen on {port}")


@pytest.fixture(scope="module")
def plain_container(engine: docker.DockerClient, sandbox_image: str) -> Iterator[Any]:
    """A running container the runner did not create (no rce-sbx- name), made directly."""
    container = engine.containers.create(
        sandbox_image,
        ["sleep", "300"],
        name=f"rce-proxy-victim-{uuid.uuid4().hex[:12]}",
        labels=TEST_LABELS,
    )
    try:
        container.start()
        yield container
    finally:
        container.remove(force=True)


def hardened_config(name_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A create body the policy accepts: the runner's hardened sandbox."""
    return {
        "Image": IMAGE,
        "User": "1000:1000",
        "Cmd": ["python3", "-c", "print(2+2)"],
        "WorkingDir": "/mnt/data",
        "AttachStdout": True,
        "AttachStderr": True,
        "Labels": {"org.rce.service": "rce", **TEST_LABELS, **(name_labels or {})},
        "HostConfig": {
            "NetworkMode": "none",
            "ReadonlyRootfs": True,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "Memory": 256 * 1024 * 1024,
            "NanoCpus": 500_000_000,
            "PidsLimit": 64,
            "Tmpfs": {"/mnt/data": "rw,size=64m,uid=1000,gid=1000", "/tmp": "rw,size=16m"},
        },
    }


def sandbox_name() -> str:
    return f"rce-sbx-{uuid.uuid4().hex}"


def _with_host(**changes: Any) -> dict[str, Any]:
    body = hardened_config()
    body["HostConfig"].update(changes)
    return body


def _with_top(**changes: Any) -> dict[str, Any]:
    body = hardened_config()
    body.update(changes)
    return body


def _without(key: str) -> dict[str, Any]:
    body = hardened_config()
    del body[key]
    return body


def _without_label() -> dict[str, Any]:
    body = hardened_config()
    body["Labels"] = dict(TEST_LABELS)
    return body


REFUSED_CREATES: dict[str, dict[str, Any] | bytes] = {
    "privileged": _with_host(Privileged=True),
    "host bind": _with_host(Binds=["/:/host"]),
    "mount": _with_host(Mounts=[{"Type": "bind", "Source": "/", "Target": "/host"}]),
    "network host": _with_host(NetworkMode="host"),
    "network of another container": _with_host(NetworkMode="container:dockerd"),
    "bridge network while network is off": _with_host(NetworkMode="bridge"),
    "cap add": _with_host(CapAdd=["SYS_ADMIN"]),
    "no cap drop": _with_host(CapDrop=[]),
    "pid host": _with_host(PidMode="host"),
    "ipc host": _with_host(IpcMode="host"),
    "userns host": _with_host(UsernsMode="host"),
    "uts host": _with_host(UTSMode="host"),
    "device": _with_host(Devices=[{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda"}]),
    "gpu while gpu is off": _with_host(
        DeviceRequests=[{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]
    ),
    "seccomp unconfined": _with_host(SecurityOpt=["no-new-privileges", "seccomp=unconfined"]),
    "apparmor unconfined": _with_host(SecurityOpt=["no-new-privileges", "apparmor=unconfined"]),
    "label disable": _with_host(SecurityOpt=["no-new-privileges", "label:disable"]),
    "no no-new-privileges": _with_host(SecurityOpt=[]),
    "cgroup parent": _with_host(CgroupParent="/"),
    "sysctls": _with_host(Sysctls={"kernel.shm_rmid_forced": "1"}),
    "other runtime": _with_host(Runtime="io.containerd.runc.v2-privileged"),
    "writable root": _with_host(ReadonlyRootfs=False),
    "tmpfs elsewhere": _with_host(Tmpfs={"/etc": "rw"}),
    "suid tmpfs": _with_host(Tmpfs={"/tmp": "rw,suid"}),
    "published port": _with_host(PortBindings={"22/tcp": [{"HostPort": "2222"}]}),
    "publish all": _with_host(PublishAllPorts=True),
    "oom kill disabled": _with_host(OomKillDisable=True),
    "extra hosts": _with_host(ExtraHosts=["x:1.2.3.4"]),
    "volumes from": _with_host(VolumesFrom=["dockerd"]),
    "unmasked /proc": _with_host(MaskedPaths=[]),
    "no memory limit": _with_host(Memory=0),
    "no pids limit": _with_host(PidsLimit=0),
    "wrong image": _with_top(Image="debian:bookworm"),
    "image by id": _with_top(Image="sha256:1659acb5168f"),
    "root user": _with_top(User="root"),
    "uid 0": _with_top(User="0:0"),
    "uid 00": _with_top(User="00"),
    "group root": _with_top(User="1000:0"),
    "no user": _without("User"),
    "no host config": _without("HostConfig"),
    "missing label": _without_label(),
    "anonymous volume": _with_top(Volumes={"/data": {}}),
    "top-level privileged (deprecated host-config location)": _with_top(Privileged=True),
    "top-level binds": _with_top(Binds=["/:/host"]),
    "unknown key": _with_host(SomethingNew=True),
    "lower-case key": _with_host(privileged=True),
    "duplicate key, last wins in Go": json.dumps(_with_host(Privileged=False))
    .replace('"Privileged": false', '"Privileged": false, "privileged": true')
    .encode(),
    "escaped key": json.dumps(_with_host(ReadonlyRootfs=True))
    .replace('"ReadonlyRootfs": true', '"ReadonlyRootfs": true, "Privil\\u0065ged": true')
    .encode(),
    "non-ASCII key folding to a field name": json.dumps(_with_host())
    .replace('"Memory":', '"Mount\\u017f": [{"Type": "bind"}], "Memory":')
    .encode(),
    "trailing data": json.dumps(hardened_config()).encode() + b' {"HostConfig": {}}',
    "not JSON": b"{not json",
}


class TestCreatePolicy:
    """Container creation is refused unless it is exactly a hardened sandbox."""

    def test_accepts_the_hardened_sandbox(self, proxy: Proxy, engine: docker.DockerClient) -> None:
        """The baseline body of every refusal case is itself allowed."""
        name = sandbox_name()
        status, body = proxy.request(
            "POST", f"/v1.41/containers/create?name={name}", hardened_config()
        )
        assert status == 201, body
        engine.containers.get(name).remove(force=True)

    @pytest.mark.parametrize("case", sorted(REFUSED_CREATES))
    def test_refuses(self, case: str, proxy: Proxy, engine: docker.DockerClient) -> None:
        """An unsafe create body is answered 403 and never reaches the engine."""
        name = sandbox_name()
        status, body = proxy.request(
            "POST", f"/v1.41/containers/create?name={name}", REFUSED_CREATES[case]
        )
        assert status == 403, body
        assert body.get("message"), body
        assert engine.containers.list(all=True, filters={"name": name}) == []

    @pytest.mark.parametrize(
        "query", ["", "name=rce-proxy-other", "name=other-rce-sbx-1", "name=rce-sbx-1&name=x"]
    )
    def test_refuses_names_outside_the_sandbox_namespace(self, query: str, proxy: Proxy) -> None:
        """Only names starting ``rce-sbx-`` can be created."""
        status, body = proxy.request("POST", f"/containers/create?{query}", hardened_config())
        assert status == 403, body

    def test_refuses_a_body_larger_than_its_buffer(self, proxy: Proxy) -> None:
        """A body the proxy cannot see whole is refused, never passed on unchecked."""
        body = _with_top(Env=[f"PAD{i}={'x' * 1000}" for i in range(100)])
        status, answer = proxy.request("POST", f"/containers/create?name={sandbox_name()}", body)
        assert status == 403, answer
        assert "too large" in answer["message"]

    def test_refuses_a_chunked_body(self, proxy: Proxy) -> None:
        """A body without Content-Length cannot be checked whole, so it is refused."""
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        payload = json.dumps(_with_host(Privileged=True)).encode()
        conn.request(
            "POST",
            f"/containers/create?name={sandbox_name()}",
            body=iter([payload]),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.status == 403


REFUSED_ENDPOINTS = [
    ("POST", "/v1.41/images/create?fromImage=alpine&tag=latest"),
    ("POST", "/build"),
    ("POST", "/v1.41/build?t=x"),
    ("GET", "/swarm"),
    ("POST", "/swarm/init"),
    ("GET", "/secrets"),
    ("POST", "/secrets/create"),
    ("GET", "/volumes"),
    ("POST", "/volumes/create"),
    ("POST", "/networks/create"),
    ("GET", "/plugins"),
    ("POST", "/session"),
    ("POST", "/grpc"),
    ("GET", "/events"),
    ("GET", "/info"),
    ("POST", "/containers/rce-sbx-abc/update"),
    ("POST", "/containers/rce-sbx-abc/commit"),
    ("POST", "/commit?container=rce-sbx-abc"),
    ("GET", "/containers/rce-sbx-abc/export"),
    ("GET", "/containers/rce-sbx-abc/logs"),
    ("POST", "/containers/rce-sbx-abc/rename?name=x"),
    ("POST", "/containers/rce-sbx-abc/rename?name=rce-sbx-1&name=x"),
    ("POST", "/containers/rce-sbx-abc/rename"),
    ("POST", "/containers/other/rename?name=rce-sbx-1"),
    ("DELETE", "/images/custom-rce-kernel:latest"),
    ("POST", "/containers/prune"),
    ("GET", "/containers/rce-sbx-abc%2F..%2Fother/json"),
    ("GET", "/containers/rce-sbx-abc/../other/json"),
    ("GET", "//containers/json"),
    ("GET", "/v1.12/containers/json"),
]


class TestEndpointPolicy:
    """Only the runner's endpoints pass."""

    @pytest.mark.parametrize(("method", "path"), REFUSED_ENDPOINTS)
    def test_refuses(self, method: str, path: str, proxy: Proxy) -> None:
        """Everything outside the runner's list is answered 403 with a JSON message."""
        status, body = proxy.request(method, path, b"{}" if method == "POST" else None)
        assert status == 403, body
        assert "message" in body, body

    def test_refuses_a_hostconfig_on_start(self, proxy: Proxy) -> None:
        """API < 1.24 takes a HostConfig on /start; any body on /start is refused."""
        status, body = proxy.request(
            "POST", "/v1.41/containers/rce-sbx-abc/start", {"Privileged": True}
        )
        assert status == 403, body
        status, body = proxy.request(
            "POST", "/v1.23/containers/rce-sbx-abc/start", {"Privileged": True}
        )
        assert status == 403, body

    def test_refuses_a_privileged_or_root_exec_on_a_sandbox(self, proxy: Proxy) -> None:
        """Exec on a sandbox is allowed, but not as root and not privileged."""
        for body in (
            {"Cmd": ["id"], "Privileged": True},
            {"Cmd": ["id"], "User": "root"},
            {"Cmd": ["id"], "User": "0"},
        ):
            status, answer = proxy.request("POST", "/containers/rce-sbx-abc/exec", body)
            assert status == 403, answer

    def test_refuses_exec_on_a_container_it_did_not_create(
        self, proxy: Proxy, plain_container: Any
    ) -> None:
        """Exec on a container outside the rce-sbx- namespace, by name or id, is refused."""
        for ref in (plain_container.name, plain_container.id, plain_container.id[:12]):
            status, body = proxy.request(
                "POST", f"/v1.41/containers/{ref}/exec", {"Cmd": ["id"], "AttachStdout": True}
            )
            assert status == 403, body
        plain_container.reload()
        assert plain_container.attrs["ExecIDs"] in (None, [])

    def test_refuses_archive_put_on_a_container_it_did_not_create(
        self, proxy: Proxy, plain_container: Any
    ) -> None:
        """Writing files into another container is refused."""
        for ref in (plain_container.name, plain_container.id):
            status, body = proxy.request(
                "PUT",
                f"/containers/{ref}/archive?path=/tmp",
                b"\0" * 1024,
                {"Content-Type": "application/x-tar"},
            )
            assert status == 403, body

    def test_refuses_other_calls_on_a_container_it_did_not_create(
        self, proxy: Proxy, plain_container: Any
    ) -> None:
        """Inspect, kill, attach, archive GET and delete of another container are refused."""
        ref = plain_container.name
        for method, path in (
            ("GET", f"/containers/{ref}/json"),
            ("POST", f"/containers/{ref}/kill"),
            ("POST", f"/containers/{ref}/attach?stream=1&stdout=1"),
            ("GET", f"/containers/{ref}/archive?path=/etc/hostname"),
            ("DELETE", f"/containers/{ref}?force=1"),
        ):
            status, body = proxy.request(method, path)
            assert status == 403, (path, body)
        plain_container.reload()
        assert plain_container.status == "running"

    def test_allows_ping_version_image_inspect_and_list(self, proxy: Proxy) -> None:
        """The read-only calls the runner makes at start-up pass."""
        for path in ("/_ping", "/version", "/v1.41/version", "/containers/json"):
            status, body = proxy.request("GET", path)
            assert status == 200, (path, body)
        status, _ = proxy.request("HEAD", "/_ping")
        assert status == 200
        status, body = proxy.request("GET", f"/v1.41/images/{IMAGE}/json")
        assert status in (200, 404), body


GPU_REQUEST = {
    "Driver": "",
    "Count": -1,
    "DeviceIDs": None,
    "Capabilities": [["gpu"]],
    "Options": {},
}


class TestOptionalAllowances:
    """The environment flags open exactly one thing each, and nothing else."""

    @pytest.mark.parametrize(
        "body",
        [
            _with_host(NetworkMode="bridge"),
            _with_host(NetworkMode="default"),
            _with_host(DeviceRequests=[GPU_REQUEST]),
            _with_host(Runtime="runsc"),
        ],
        ids=["bridge", "default network", "gpu request", "listed runtime"],
    )
    def test_passes_what_the_flags_allow(
        self, body: dict[str, Any], open_proxy: Proxy, engine: docker.DockerClient
    ) -> None:
        """Allowed bodies reach the engine (which may still refuse, e.g. with no GPU)."""
        name = sandbox_name()
        try:
            status, answer = open_proxy.request(
                "POST", f"/v1.41/containers/create?name={name}", body
            )
            assert status != 403, answer
        finally:
            for container in engine.containers.list(all=True, filters={"name": name}):
                container.remove(force=True)

    @pytest.mark.parametrize(
        "body",
        [
            _with_host(NetworkMode="host"),
            _with_host(NetworkMode="container:x"),
            _with_host(DeviceRequests=[{**GPU_REQUEST, "Capabilities": [["compute"]]}]),
            _with_host(DeviceRequests=[{**GPU_REQUEST, "Driver": "other"}]),
            _with_host(DeviceRequests=[{**GPU_REQUEST, "Options": {"x": "y"}}]),
            _with_host(Devices=[{"PathOnHost": "/dev/nvidia0", "PathInContainer": "/dev/x"}]),
            _with_host(Runtime="kata"),
            _with_host(Privileged=True),
        ],
        ids=[
            "host network",
            "container network",
            "non-gpu capability",
            "other driver",
            "driver options",
            "raw device",
            "unlisted runtime",
            "privileged",
        ],
    )
    def test_still_refuses(self, body: dict[str, Any], open_proxy: Proxy) -> None:
        status, answer = open_proxy.request(
            "POST", f"/containers/create?name={sandbox_name()}", body
        )
        assert status == 403, answer


@pytest.fixture(scope="module")
def gvisor_proxy(
    engine: docker.DockerClient, sandbox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """The proxy of a gVisor deployment in allowlist mode: RCE_RUNTIME=runsc and
    RCE_NETWORK_MODE=allowlist give RCE_PROXY_RUNTIMES=runsc-net (see runner.network)."""
    with running_proxy(
        tmp_path_factory.mktemp("gvisor-proxy"),
        sandbox_image,
        RCE_PROXY_RUNTIMES="runsc,runsc-net",
        RCE_PROXY_NETWORKS="rce-allowlist",
    ) as running:
        yield running


class TestExactRuntimeAndNetworks:
    """With runsc configured, a create must name an allowed runtime: one naming none
    (the engine default, runc) is refused. RCE_PROXY_NETWORKS allows exactly the
    listed networks besides none."""

    @pytest.mark.parametrize(
        "body",
        [
            _with_host(Runtime="runsc"),
            _with_host(Runtime="runsc-net", NetworkMode="rce-allowlist"),
            _with_top(Runtime="runsc"),
        ],
        ids=["runsc", "runsc-net on the allowlist network", "runsc at the top level"],
    )
    def test_passes_the_configured_runtime(
        self, body: dict[str, Any], gvisor_proxy: Proxy, engine: docker.DockerClient
    ) -> None:
        name = sandbox_name()
        try:
            status, answer = gvisor_proxy.request(
                "POST", f"/v1.41/containers/create?name={name}", body
            )
            assert status != 403, answer
        finally:
            for container in engine.containers.list(all=True, filters={"name": name}):
                container.remove(force=True)

    @pytest.mark.parametrize(
        "body",
        [
            hardened_config(),
            _with_host(Runtime=""),
            _with_host(Runtime=None),
            _with_host(Runtime="runc"),
            _with_host(Runtime="io.containerd.runc.v2"),
            _with_host(Runtime="RUNSC"),
            _with_host(Runtime="runsc", NetworkMode="rce-open"),
            _with_host(Runtime="runsc", NetworkMode="bridge"),
            _with_host(Runtime="runsc", NetworkMode="rce-allowlist-2"),
        ],
        ids=[
            "no runtime (engine default)",
            "empty runtime",
            "null runtime",
            "runc",
            "containerd runc shim",
            "case-folded name",
            "unlisted network",
            "bridge",
            "network name prefix",
        ],
    )
    def test_refuses_everything_else(self, body: dict[str, Any], gvisor_proxy: Proxy) -> None:
        status, answer = gvisor_proxy.request(
            "POST", f"/containers/create?name={sandbox_name()}", body
        )
        assert status == 403, answer

    def test_the_default_proxy_still_takes_a_create_naming_no_runtime(
        self, proxy: Proxy, engine: docker.DockerClient
    ) -> None:
        name = sandbox_name()
        try:
            status, answer = proxy.request(
                "POST", f"/v1.41/containers/create?name={name}", hardened_config()
            )
            assert status == 201, answer
            status, answer = proxy.request(
                "POST", f"/containers/create?name={sandbox_name()}", _with_host(Runtime="runsc")
            )
            assert status == 403, answer
        finally:
            for container in engine.containers.list(all=True, filters={"name": name}):
                container.remove(force=True)


def _issue(
    name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, **ext: Any
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A P-256 certificate for ``name``, self-signed (a CA) or signed by ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if "ip" in ext:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ext["ip"]))])
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class TestMutualTls:
    """For a remote engine the proxy speaks mutual TLS (RCE_PROXY_BIND_OPTIONS), which
    is what DOCKER_HOST + DOCKER_TLS_VERIFY + DOCKER_CERT_PATH clients use."""

    def test_only_clients_with_a_certificate_of_the_ca_get_in(
        self, sandbox_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # requests lets these override the client's own CA (docker's TLSConfig).
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        ca = _issue("rce test CA", None)
        server = _issue("127.0.0.1", ca, ip="127.0.0.1")
        client = _issue("rce api", ca)
        stranger = _issue("stranger", _issue("other CA", None))
        files = {
            "ca.pem": _pem(ca[0]),
            "server.pem": _pem(server[0]) + _key_pem(server[1]),
            "cert.pem": _pem(client[0]),
            "key.pem": _key_pem(client[1]),
            "stranger.pem": _pem(stranger[0]),
            "stranger-key.pem": _key_pem(stranger[1]),
        }
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)
        options = f"ssl crt {tmp_path / 'server.pem'} ca-file {tmp_path / 'ca.pem'} verify required"
        with running_proxy(tmp_path, sandbox_image, RCE_PROXY_BIND_OPTIONS=options) as proxy:
            url = f"https://127.0.0.1:{proxy.port}"
            good = docker.tls.TLSConfig(
                client_cert=(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")),
                ca_cert=str(tmp_path / "ca.pem"),
                verify=True,
            )
            api = docker.APIClient(base_url=url, tls=good, timeout=30)
            assert api.ping() is True
            with pytest.raises(docker.errors.APIError, match="403"):
                api.create_container(sandbox_image, name="not-a-sandbox")
            api.close()
            bad = docker.tls.TLSConfig(
                client_cert=(str(tmp_path / "stranger.pem"), str(tmp_path / "stranger-key.pem")),
                ca_cert=str(tmp_path / "ca.pem"),
                verify=True,
            )
            with pytest.raises(docker.errors.DockerException, match="SSL"):
                docker.APIClient(base_url=url, tls=bad, timeout=30, version="auto")


def _read_frames(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read a multiplexed attach stream to EOF; returns (stdout, stderr)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    out, err, pos = b"", b"", 0
    while pos + 8 <= len(data):
        kind, size = struct.unpack(">BxxxL", data[pos : pos + 8])
        payload = data[pos + 8 : pos + 8 + size]
        out, err = (out + payload, err) if kind == 1 else (out, err + payload)
        pos += 8 + size
    return out, err


def _wait_gone(engine: docker.DockerClient, filters: dict[str, Any], timeout_s: float = 15) -> bool:
    """True once no container matches ``filters`` (removal may run in the background)."""
    deadline = time.monotonic() + timeout_s
    while engine.containers.list(all=True, filters=filters):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


class TestRunnerPath:
    """The runner's own calls work through the proxy."""

    def test_runs_print_through_the_docker_sandbox(
        self, proxy: Proxy, engine: docker.DockerClient, sandbox_image: str
    ) -> None:
        """``DockerSandbox`` on a client pointed at the proxy runs ``print(2+2)``."""
        client = docker.DockerClient(base_url=proxy.base_url, timeout=60)
        mine = {**TEST_LABELS, "org.rce.test-case": uuid.uuid4().hex}
        sandbox = DockerSandbox(client, image=sandbox_image, labels=mine)
        try:
            result = sandbox.run(RunRequest(language=Language.PYTHON, code="print(2+2)"))
            assert result.stdout == "4\n", (result, proxy.log_path.read_text(errors="replace"))
            result.close()
        finally:
            sandbox.close()
            client.close()
        assert _wait_gone(engine, {"label": [f"{k}={v}" for k, v in mine.items()]})

    def test_runs_the_runner_call_sequence_with_the_low_level_api(
        self, proxy: Proxy, engine: docker.DockerClient
    ) -> None:
        """create, attach (stdin in, output out), start, exec, archive, inspect, list,
        wait, kill and remove all pass for a hardened rce-sbx- container."""
        api = docker.APIClient(base_url=proxy.base_url, timeout=60)
        name = sandbox_name()
        config = hardened_config()
        config.update(
            Cmd=["sh", "-c", "cat > /mnt/data/in.py; python3 /mnt/data/in.py"],
            OpenStdin=True,
            StdinOnce=True,
            AttachStdin=True,
        )
        try:
            status, body = proxy.request("POST", f"/v1.41/containers/create?name={name}", config)
            assert status == 201, body
            assert api.inspect_image(IMAGE)["Id"]
            sock = api.attach_socket(
                name, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            raw = sock._sock
            api.start(name)
            exec_id = api.exec_create(name, ["true"])["Id"]
            assert api.exec_start(exec_id) == b""
            assert api.exec_inspect(exec_id)["ExitCode"] == 0
            stat = api.get_archive(name, "/etc/hostname")[1]
            assert stat["name"] == "hostname"
            raw.sendall(b"print(2+2)\n")
            raw.shutdown(socket.SHUT_WR)
            stdout, stderr = _read_frames(raw)
            raw.close()
            assert (stdout, stderr) == (b"4\n", b"")
            assert api.wait(name, timeout=60)["StatusCode"] == 0
            assert api.inspect_container(name)["State"]["Status"] == "exited"
            names = [c["Names"][0] for c in api.containers(all=True)]
            assert f"/{name}" in names
        finally:
            status, _ = proxy.request("DELETE", f"/containers/{name}?force=1")
            api.close()
        assert status in (204, 404)
        assert engine.containers.list(all=True, filters={"name": name}) == []

    def test_runs_a_programmatic_run_sequence(
        self, proxy: Proxy, engine: docker.DockerClient
    ) -> None:
        """What a programmatic run needs passes: a create with ``StdinOnce=false``, an
        attach that writes and detaches, a second attach that writes again to the same
        stdin, a rename to ``rce-sbx-ptc-<key>-<expiry>`` and a list filtered by name."""
        api = docker.APIClient(base_url=proxy.base_url, timeout=60)
        name = sandbox_name()
        ptc_name = f"rce-sbx-ptc-{'0' * 24}-{int(time.time()) + 600}"
        config = hardened_config()
        config.update(
            Cmd=["sh", "-c", "head -c 4 >/dev/null; echo first; head -c 4 >/dev/null; echo second"],
            OpenStdin=True,
            StdinOnce=False,
            AttachStdin=True,
        )
        params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        try:
            status, body = proxy.request("POST", f"/v1.41/containers/create?name={name}", config)
            assert status == 201, body
            first = api.attach_socket(name, params=params)._sock
            api.start(name)
            first.sendall(b"abcd")
            assert _read_until(first, b"first") == b"first\n"
            first.close()  # the container's stdin stays open (StdinOnce=false)
            status, body = proxy.request("POST", f"/containers/{name}/rename?name={ptc_name}")
            assert status == 204, body
            listed = api.containers(filters={"name": f"^/rce-sbx-ptc-{'0' * 24}-"})
            assert [c["Names"][0] for c in listed] == [f"/{ptc_name}"]
            second = api.attach_socket(ptc_name, params=params)._sock
            second.sendall(b"efgh")
            assert _read_until(second, b"second") == b"second\n"
            second.close()
            assert api.wait(ptc_name, timeout=60)["StatusCode"] == 0
        finally:
            for each in (name, ptc_name):
                proxy.request("DELETE", f"/containers/{each}?force=1")
            api.close()
        assert engine.containers.list(all=True, filters={"name": name}) == []


def _read_until(sock: socket.socket, marker: bytes, timeout_s: float = 30) -> bytes:
    """The stdout of a multiplexed attach stream up to a line holding ``marker``."""
    sock.settimeout(timeout_s)
    data, out = b"", b""
    while marker not in out:
        chunk = sock.recv(65536)
        assert chunk, out
        data += chunk
        while len(data) >= 8:
            kind, size = struct.unpack(">BxxxL", data[:8])
            if len(data) < 8 + size:
                break
            if kind == 1:
                out += data[8 : 8 + size]
            data = data[8 + size :]
    return out


# --- hostile bodies and forced Lua failures: the proxy fails closed ---------------

#: A hostile body must be refused within this (it was > 1 s per DEL byte before).
HOSTILE_BOUND_S = 0.2
#: Written by the test: loads the shipped policy, then breaks its action on purpose
#: (RCE_TEST_FAULT=raise: the action fails before any check runs; refusal-path: the
#: policy's refusal cannot be recorded, as when memory runs out on that path).
FAULTY_POLICY = """
local mode = os.getenv("RCE_TEST_FAULT")
local register = core.register_action
core.register_action = function(name, when, fn, nargs)
  local broken
  if mode == "raise" then
    broken = function(txn) error("forced failure before the policy check") end
  elseif mode == "refusal-path" then
    broken = function(txn)
      local view = setmetatable({}, { __index = function(_, key)
        if key == "set_var" then
          return function(_, var, value)
            if var == "txn.rce_deny" then error("not enough memory") end
            return txn:set_var(var, value)
          end
        end
        local member = txn[key]
        if type(member) == "function" then
          return function(_, ...) return member(txn, ...) end
        end
        return member
      end })
      return fn(view)
    end
  else
    error("RCE_TEST_FAULT must be raise or refusal-path")
  end
  register(name, when, broken, nargs)
end
dofile(os.getenv("RCE_TEST_POLICY"))
"""


def _marked_privileged(marker: str) -> dict[str, Any]:
    """A privileged create carrying the test's marker label (searched on the engine)."""
    body = _with_host(Privileged=True)
    body["Labels"]["org.rce.test-marker"] = marker
    return body


def _assert_none_reached_the_engine(engine: docker.DockerClient, marker: str) -> None:
    found = engine.containers.list(all=True, filters={"label": f"org.rce.test-marker={marker}"})
    for container in found:
        container.remove(force=True)
    assert found == [], f"{len(found)} create(s) with marker {marker} reached the engine"


def _hostile_bodies(marker: str) -> dict[str, bytes]:
    """Each body is a privileged create (with the marker) made malformed, huge or
    hostile; the key names the case."""
    base = json.dumps(_marked_privileged(marker), separators=(",", ":"))

    def with_env(raw: str) -> bytes:
        """``raw`` (JSON text, bytes as latin-1) placed as the body's Env value."""
        return ("{" + f'"Env":{raw},' + base[1:]).encode("latin-1")

    def with_memory(raw: str) -> bytes:
        return base.replace('"Memory":268435456', f'"Memory":{raw}').encode("latin-1")

    return {
        "DEL byte in a string": with_env('["A=\x7f"]'),
        "DEL bytes filling the policy limit": with_env('["A=' + "\x7f" * 30000 + '"]'),
        "DEL byte between tokens": ("{\x7f" + base[1:]).encode("latin-1"),
        "NUL byte in a string": with_env('["A=\x00"]'),
        "raw control byte in a string": with_env('["A=\x01B"]'),
        "deep array nesting": with_env("[" * 10000 + "]" * 10000),
        "deep object nesting": with_env('{"a":' * 3000 + "1" + "}" * 3000),
        "unbalanced nesting": ("[" * 30000).encode(),
        "giant string": with_env('["A=' + "x" * 30000 + '"]'),
        "giant number": with_memory("1" + "0" * 30000),
        "huge exponent": with_memory("1e999999999"),
        "fraction without digits": with_memory("1."),
        "leading zeros": with_memory("0268435456"),
        "many values": with_env("[" + ",".join(["0"] * 6000) + "]"),
        "invalid UTF-8 byte": with_env('["A=\xff"]'),
        "overlong UTF-8 slash": with_env('["A=\xc0\xaf"]'),
        "UTF-8-encoded surrogate": with_env('["A=\xed\xa0\x80"]'),
        "truncated UTF-8 sequence": with_env('["A=\xe2\x82"]'),
        "escaped lone surrogate": with_env('["A=\\ud800"]'),
        "byte order mark": ("\xef\xbb\xbf" + base).encode("latin-1"),
        "unterminated string": base[: base.index('"Privileged"') + 5].encode(),
        "truncated body": base[: len(base) // 2].encode(),
        "empty body": b"",
        "whitespace only": b"   \n",
        "just over the policy limit": with_env('["A=' + "x" * 33000 + '"]'),
        "larger than the buffer": with_env('["A=' + "x" * 200_000 + '"]'),
    }


HOSTILE_CASES = sorted(_hostile_bodies("x"))


def _timed(proxy: Proxy, method: str, path: str, body: bytes | None = None) -> tuple[int, float]:
    started = time.monotonic()
    status, _ = proxy.request(method, path, body)
    return status, time.monotonic() - started


def _raw_exchange(port: int, request: bytes) -> int | None:
    """Send ``request`` on a fresh connection and return the answer's status, or None
    when the proxy closed the connection before an answer could be read."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # closed by the proxy (EPIPE, ECONNRESET, ENOTCONN)
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


def _config_with(tmp_path: Path, *lines: str) -> Path:
    """The shipped haproxy.cfg with ``lines`` added to its global section (just before
    lua-load, so they override earlier tune.lua settings)."""
    shipped = (PROXY_DIR / "haproxy.cfg").read_text()
    anchor = '    lua-load "${RCE_PROXY_LUA}"\n'
    assert anchor in shipped
    path = tmp_path / "haproxy.cfg"
    path.write_text(shipped.replace(anchor, "".join(f"    {x}\n" for x in lines) + anchor))
    return path


def _heavy_privileged(marker: str) -> bytes:
    """A privileged create within every bound that costs the decoder the most memory
    and time: as many small values as the policy reads."""
    body = _marked_privileged(marker)
    body["Env"] = ["a"] * 4000
    return json.dumps(body, separators=(",", ":")).encode()


class TestHostileBodies:
    """Malformed, huge and hostile create bodies are refused at once and never reach
    the engine."""

    @pytest.mark.parametrize("case", HOSTILE_CASES)
    def test_refused_in_milliseconds(
        self, case: str, proxy: Proxy, engine: docker.DockerClient
    ) -> None:
        marker = uuid.uuid4().hex
        body = _hostile_bodies(marker)[case]
        status, elapsed = _timed(proxy, "POST", f"/containers/create?name={sandbox_name()}", body)
        assert status == 403
        assert elapsed < HOSTILE_BOUND_S, f"{case}: {elapsed * 1000:.0f} ms"
        _assert_none_reached_the_engine(engine, marker)

    def test_a_del_byte_in_an_allowed_body_is_an_ordinary_character(
        self, proxy: Proxy, engine: docker.DockerClient
    ) -> None:
        """0x7F is a plain character to Go's decoder, so to the policy too: the
        hardened sandbox with one in its Env is allowed (and decoded quickly)."""
        name = sandbox_name()
        raw = json.dumps(hardened_config()).replace('"Image"', '"Env": ["A=\x7f"], "Image"')
        try:
            status, elapsed = _timed(
                proxy, "POST", f"/containers/create?name={name}", raw.encode("latin-1")
            )
            assert status == 201
            assert elapsed < 5
        finally:
            for container in engine.containers.list(all=True, filters={"name": name}):
                container.remove(force=True)

    @pytest.mark.parametrize("size", [1_000, 200_000])
    def test_refuses_a_chunked_privileged_create(
        self, size: int, proxy: Proxy, engine: docker.DockerClient
    ) -> None:
        """A chunked body (small, or larger than the buffer) cannot be checked whole."""
        marker = uuid.uuid4().hex
        body = _marked_privileged(marker)
        body["Env"] = ["A=" + "x" * size]
        payload = json.dumps(body).encode()
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(payload[i : i + 4096]), payload[i : i + 4096])
            for i in range(0, len(payload), 4096)
        )
        head = (
            f"POST /containers/create?name={sandbox_name()} HTTP/1.1\r\nHost: docker\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        started = time.monotonic()
        status = _raw_exchange(proxy.port, head.encode() + chunks + b"0\r\n\r\n")
        elapsed = time.monotonic() - started
        # The proxy may answer and close before it has read the whole body; a reset
        # that lost the answer is a refusal too (the engine check below decides).
        assert status in (403, None)
        assert elapsed < 2, f"{elapsed * 1000:.0f} ms"
        _assert_none_reached_the_engine(engine, marker)

    def test_hostile_bodies_do_not_stall_other_requests(
        self, proxy: Proxy, engine: docker.DockerClient
    ) -> None:
        """While four clients send DEL-filled bodies, the runner's calls keep being
        answered promptly (one such body used to hold the proxy's Lua for > 1 s)."""
        marker = uuid.uuid4().hex
        hostile = _hostile_bodies(marker)["DEL bytes filling the policy limit"]

        def attack(_: int) -> tuple[int, float]:
            return _timed(proxy, "POST", f"/containers/create?name={sandbox_name()}", hostile)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            attacks = pool.map(attack, range(40))
            pings = [_timed(proxy, "GET", "/_ping") for _ in range(20)]
            results = list(attacks)
        assert {status for status, _ in results} == {403}
        assert {status for status, _ in pings} == {200}
        slowest = max(elapsed for _, elapsed in pings)
        assert slowest < HOSTILE_BOUND_S, f"slowest ping {slowest * 1000:.0f} ms"
        _assert_none_reached_the_engine(engine, marker)


class TestFailsClosed:
    """A request passes only when the policy ran to its end and allowed it: a Lua
    failure outside the policy's own error handling refuses the request."""

    @pytest.mark.parametrize("mode", ["raise", "refusal-path"])
    def test_a_broken_action_refuses_privileged_creates(
        self, mode: str, sandbox_image: str, engine: docker.DockerClient, tmp_path: Path
    ) -> None:
        """``raise``: the action fails before any check; ``refusal-path``: the policy
        refuses but cannot record its refusal. Either way the create is refused."""
        faulty = tmp_path / "faulty.lua"
        faulty.write_text(FAULTY_POLICY)
        marker = uuid.uuid4().hex
        with running_proxy(
            tmp_path,
            sandbox_image,
            lua_path=faulty,
            RCE_TEST_FAULT=mode,
            RCE_TEST_POLICY=str(PROXY_DIR / "policy.lua"),
        ) as broken:
            status, body = broken.request(
                "POST",
                f"/v1.41/containers/create?name={sandbox_name()}",
                _marked_privileged(marker),
            )
            ping, _ = broken.request("GET", "/_ping")
        assert status == 403, body
        assert "message" in body, body
        # A check that never ran allows nothing, not even a ping; a check that ran to
        # its end still allows what it should.
        assert ping == (403 if mode == "raise" else 200)
        _assert_none_reached_the_engine(engine, marker)

    def test_lua_memory_exhaustion_refuses(
        self, sandbox_image: str, engine: docker.DockerClient, tmp_path: Path
    ) -> None:
        """With the Lua heap capped at 1 MiB, a flood of heavy privileged creates makes
        checks (and Lua contexts) fail for lack of memory: every one is refused."""
        marker = uuid.uuid4().hex
        heavy = _heavy_privileged(marker)
        config = _config_with(tmp_path, "tune.lua.maxmem 1")
        with running_proxy(tmp_path, sandbox_image, config_path=config) as starved:

            def attack(_: int) -> int:
                return starved.request("POST", f"/containers/create?name={sandbox_name()}", heavy)[
                    0
                ]

            with concurrent.futures.ThreadPoolExecutor(32) as pool:
                statuses = list(pool.map(attack, range(300)))
            ping, _ = starved.request("GET", "/_ping")
            log = starved.log_path.read_text(errors="replace")
        assert set(statuses) == {403}, statuses
        assert ping == 200
        assert "not enough memory" in log
        _assert_none_reached_the_engine(engine, marker)

    def test_lua_timeout_refuses(
        self, sandbox_image: str, engine: docker.DockerClient, tmp_path: Path
    ) -> None:
        """With a 1 ms Lua time limit, the check of a heavy privileged create cannot
        finish: it is refused."""
        marker = uuid.uuid4().hex
        config = _config_with(tmp_path, "tune.lua.session-timeout 1ms")
        with running_proxy(tmp_path, sandbox_image, config_path=config) as hurried:
            statuses = [
                hurried.request(
                    "POST", f"/containers/create?name={sandbox_name()}", _heavy_privileged(marker)
                )[0]
                for _ in range(10)
            ]
        assert set(statuses) == {403}
        _assert_none_reached_the_engine(engine, marker)
