"""The compose files in infra/: every file and overlay combination is valid with the
example settings, and the properties the deployment relies on hold in the merged
result (checked with ``docker-compose config``, Debian's Compose v1)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.services import service_missing

INFRA = Path(__file__).resolve().parents[2] / "infra"
BASE = "compose.yml"
COMBINATIONS = [
    (BASE,),
    (BASE, "compose.full.yml"),
    (BASE, "compose.gpu.yml"),
    (BASE, "compose.full.yml", "compose.gpu.yml"),
]
EXAMPLES = {
    "compose.yml": ".env.example",
    "compose.full.yml": ".env.full.example",
    "compose.gpu.yml": ".env.gpu.example",
}
#: One-shot services: they run to completion, so they have no healthcheck.
ONE_SHOTS = {"minio-init", "gpu-check", "ollama-pull"}


def _compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        service_missing("docker-compose is not installed (apt-get install docker-compose)")
    assert binary is not None
    return binary


def _env_file(tmp_path: Path, files: tuple[str, ...], drop: str | None = None) -> Path:
    """The example settings of ``files`` in one env file, without the line ``drop=``."""
    lines: list[str] = []
    for name in files:
        lines += (INFRA / EXAMPLES[name]).read_text().splitlines()
    if drop:
        lines = [line for line in lines if not line.startswith(f"{drop}=")]
    path = tmp_path / "compose.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(files: tuple[str, ...], env_file: Path) -> subprocess.CompletedProcess[str]:
    command = [_compose_binary(), "--env-file", str(env_file)]
    for name in files:
        command += ["-f", str(INFRA / name)]
    # A clean environment: the shell's variables would override the example values.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [*command, "config"], cwd=INFRA, env=env, capture_output=True, text=True, timeout=60
    )


@functools.cache
def _merged_config(files: tuple[str, ...]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        result = _config(files, _env_file(Path(tmp), files))
    assert result.returncode == 0, result.stderr
    return result.stdout


def _merged(files: tuple[str, ...], _tmp_path: Path) -> dict[str, Any]:
    """The merged stack as ``docker-compose config`` prints it (computed once per
    combination)."""
    merged = yaml.safe_load(_merged_config(files))
    assert isinstance(merged, dict)
    return merged


def _ids(files: tuple[str, ...]) -> str:
    return "+".join(files)


@pytest.mark.parametrize("files", COMBINATIONS, ids=_ids)
class TestEveryCombination:
    """Properties of each merged stack."""

    def test_is_valid_with_the_example_settings(
        self, files: tuple[str, ...], tmp_path: Path
    ) -> None:
        """``docker-compose config`` accepts the files with the example env."""
        assert _merged(files, tmp_path)["services"]

    def test_only_the_proxy_sees_the_docker_socket(
        self, files: tuple[str, ...], tmp_path: Path
    ) -> None:
        """The API reaches Docker through the proxy; the proxy mounts the socket read-only."""
        services = _merged(files, tmp_path)["services"]
        for name, service in services.items():
            mounts = [str(v) for v in service.get("volumes", [])]
            socket_mounts = [m for m in mounts if "docker.sock" in m]
            if name == "socket-proxy":
                assert socket_mounts and all(m.endswith(":ro") for m in socket_mounts)
            else:
                assert socket_mounts == [], name
        assert services["api"]["environment"]["DOCKER_HOST"] == "tcp://socket-proxy:2375"

    def test_the_proxy_publishes_no_port_and_is_internal(
        self, files: tuple[str, ...], tmp_path: Path
    ) -> None:
        """Nobody but the API can reach the proxy."""
        merged = _merged(files, tmp_path)
        proxy = merged["services"]["socket-proxy"]
        assert "ports" not in proxy
        for network in proxy["networks"]:
            assert merged["networks"][network].get("internal") is True

    def test_every_service_has_a_healthcheck_and_a_restart_policy(
        self, files: tuple[str, ...], tmp_path: Path
    ) -> None:
        """Long-running services are health-checked and restarted; one-shots run once."""
        for name, service in _merged(files, tmp_path)["services"].items():
            if name in ONE_SHOTS:
                assert service.get("restart") == "no", name
                continue
            assert service.get("healthcheck", {}).get("test"), name
            assert service.get("restart") == "unless-stopped", name

    def test_the_api_and_proxy_are_hardened(self, files: tuple[str, ...], tmp_path: Path) -> None:
        """Read-only roots, no capabilities, no privilege gain."""
        services = _merged(files, tmp_path)["services"]
        for name in ("api", "socket-proxy"):
            service = services[name]
            assert service.get("read_only") is True, name
            assert service.get("cap_drop") == ["ALL"], name
            assert "no-new-privileges:true" in service.get("security_opt", []), name
            assert not service.get("privileged"), name

    def test_the_api_stores_sessions_in_s3(self, files: tuple[str, ...], tmp_path: Path) -> None:
        """The API runs in S3 mode against the stack's MinIO."""
        env = _merged(files, tmp_path)["services"]["api"]["environment"]
        assert env["RCE_STORAGE"].startswith("s3://")
        assert env["RCE_S3_ENDPOINT"] == "http://minio:9000"


class TestRequiredVariables:
    """A missing secret stops ``config`` with a message naming it."""

    @pytest.mark.parametrize(
        ("files", "variable"),
        [
            ((BASE,), "CUSTOM_RCE_API_KEY"),
            ((BASE,), "RCE_S3_SECRET_KEY"),
            ((BASE, "compose.full.yml"), "JWT_SECRET"),
            ((BASE, "compose.full.yml"), "CREDS_KEY"),
            ((BASE, "compose.full.yml"), "CODEAPI_JWT_PRIVATE_KEY_BASE64"),
        ],
    )
    def test_refuses_to_start_without(
        self, files: tuple[str, ...], variable: str, tmp_path: Path
    ) -> None:
        result = _config(files, _env_file(tmp_path, files, drop=variable))
        assert result.returncode != 0
        assert variable in result.stderr


class TestOverlays:
    """What each overlay adds."""

    def test_full_puts_librechat_and_the_api_on_librechat_network(self, tmp_path: Path) -> None:
        """LibreChat reaches the API as rce-api:8000, with API key and JWT settings."""
        merged = _merged((BASE, "compose.full.yml"), tmp_path)
        services = merged["services"]
        assert merged["networks"]["librechat-network"]["name"] == "librechat-network"
        api_net = services["api"]["networks"]["librechat-network"]
        assert "rce-api" in api_net["aliases"]
        env = services["librechat"]["environment"]
        assert env["LIBRECHAT_CODE_BASEURL"] == "http://rce-api:8000"
        assert env["LIBRECHAT_CODE_API_KEY"] == services["api"]["environment"]["CUSTOM_RCE_API_KEY"]
        assert env["CODEAPI_JWT_ENABLED"] == "true"
        assert env["CODEAPI_JWT_ISSUER"] == services["api"]["environment"]["RCE_JWT_ISSUER"]
        assert env["CODEAPI_JWT_AUDIENCE"] == services["api"]["environment"]["RCE_JWT_AUDIENCE"]
        assert services["api"]["environment"]["RCE_AUTH_MODE"] == "both"
        assert "librechat-network" in services["ollama"]["networks"]
        assert {"mongodb", "meilisearch"} <= set(services)

    def test_gpu_enables_gpus_in_the_api_and_the_proxy(self, tmp_path: Path) -> None:
        """The API asks for GPUs, the proxy allows the GPU image and request, and the
        engine's GPU reservation is checked before the API starts."""
        services = _merged((BASE, "compose.gpu.yml"), tmp_path)["services"]
        assert services["api"]["environment"]["RCE_GPU_ENABLED"] == "true"
        proxy_env = services["socket-proxy"]["environment"]
        assert proxy_env["RCE_PROXY_ALLOW_GPU"] == "true"
        assert proxy_env["RCE_PROXY_IMAGES"] == services["api"]["environment"]["RCE_GPU_IMAGE_NAME"]
        devices = services["gpu-check"]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
        assert services["api"]["depends_on"]["gpu-check"]["condition"] == (
            "service_completed_successfully"
        )
