"""The Docker socket proxy (images/proxy) in front of the real engine.

HAProxy runs on the host with the shipped ``haproxy.cfg`` and ``policy.lua`` on a
free loopback port. Every request the runner does not make must be refused with
403 and a JSON message before it reaches the engine; the runner's own sequence of
calls must work through it.
"""

from __future__ import annotations

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
def running_proxy(log_dir: Path, images: str, **settings: str) -> Iterator[Proxy]:
    """HAProxy with the shipped config on a free loopback port in front of the
    engine's socket; ``settings`` are more RCE_PROXY_* variables."""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        service_missing("haproxy is not installed (apt-get install haproxy)")
    assert haproxy is not None
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "RCE_PROXY_LISTEN": f"127.0.0.1:{port}",
        "RCE_PROXY_DOCKER_SOCKET": _engine_socket(),
        "RCE_PROXY_LUA": str(PROXY_DIR / "policy.lua"),
        "RCE_PROXY_IMAGES": images,
        **settings,
    }
    config = str(PROXY_DIR / "haproxy.cfg")
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
        sandbox = DockerSandbox(client, image=sandbox_image, labels=TEST_LABELS)
        try:
            result = sandbox.run(RunRequest(language=Language.PYTHON, code="print(2+2)"))
            assert result.stdout == "4\n", (result, proxy.log_path.read_text(errors="replace"))
            result.close()
        finally:
            sandbox.close()
            client.close()
        sandboxes = [f"{k}={v}" for k, v in RUN_LABELS.items()] + ["org.rce.service=rce"]
        assert _wait_gone(engine, {"label": sandboxes})

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
