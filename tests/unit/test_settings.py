"""Settings: the original README's names, safe defaults, refusals at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from handler.settings import Settings, parse_size


def test_original_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUSTOM_RCE_API_KEY and the RCE_* names of the original README are read."""
    monkeypatch.setenv("CUSTOM_RCE_API_KEY", "k1,k2")
    monkeypatch.setenv("RCE_IMAGE_NAME", "img:1")
    monkeypatch.setenv("RCE_MEM_LIMIT", "256m")
    monkeypatch.setenv("RCE_CPU_LIMIT", "1000000000")
    monkeypatch.setenv("RCE_NETWORK_ENABLED", "true")
    settings = Settings()
    assert settings.api_key_list() == ["k1", "k2"]
    assert settings.image_name == "img:1"
    limits = settings.limits()
    assert limits.memory_limit_bytes == 256 * 1024**2
    assert limits.nano_cpus == 1_000_000_000
    assert limits.network_enabled is True


def test_default_key_refused_off_loopback() -> None:
    """The placeholder key on a public address fails, naming the variable."""
    with pytest.raises(ValidationError, match="CUSTOM_RCE_API_KEY"):
        Settings(host="0.0.0.0")


def test_default_key_allowed_on_loopback() -> None:
    """`make run` works out of the box on 127.0.0.1."""
    assert Settings(host="127.0.0.1").api_key_list() == ["your_secret_key"]


def test_short_ttl_refused() -> None:
    """Expiring before LibreChat's 23 h freshness window would lose files."""
    with pytest.raises(ValidationError, match="RCE_SESSION_TTL_HOURS"):
        Settings(session_ttl_hours=12)


def test_jwt_mode_needs_a_key() -> None:
    """JWT auth without a public key is refused."""
    with pytest.raises(ValidationError, match="RCE_JWT_PUBLIC_KEY"):
        Settings(auth_mode="jwt")


def test_bad_memory_limit() -> None:
    """A size that is not a size fails."""
    with pytest.raises(ValidationError):
        Settings(mem_limit="lots")


@pytest.mark.parametrize(("raw", "size"), [("512m", 512 * 1024**2), ("1g", 1024**3), ("100", 100)])
def test_parse_size(raw: str, size: int) -> None:
    """Docker's size units."""
    assert parse_size(raw) == size


def test_gpu_selects_gpu_image() -> None:
    """RCE_GPU_ENABLED switches the sandbox image."""
    assert Settings(gpu_enabled=True).sandbox_image == "custom-rce-kernel:gpu"
    assert Settings().sandbox_image == "custom-rce-kernel:latest"
