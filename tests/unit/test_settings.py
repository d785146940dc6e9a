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


class TestOffLoopback:
    """Insecure configurations are refused off loopback (RCE_HOST) at start-up."""

    def test_no_auth_refused_off_loopback(self) -> None:
        """RCE_AUTH_MODE=none on a public address fails, naming the way out."""
        with pytest.raises(ValidationError, match="RCE_ALLOW_INSECURE_NO_AUTH"):
            Settings(auth_mode="none", host="0.0.0.0")

    def test_no_auth_allowed_explicitly(self) -> None:
        """RCE_ALLOW_INSECURE_NO_AUTH=true allows it (and lifts the loopback-only rule)."""
        settings = Settings(auth_mode="none", host="0.0.0.0", allow_insecure_no_auth=True)
        assert not settings.loopback_only()

    def test_no_auth_on_loopback_is_loopback_only(self) -> None:
        """On loopback it starts, but serves loopback connections only."""
        assert Settings(auth_mode="none", host="127.0.0.1").loopback_only()
        assert Settings(auth_mode="none", host="::1").loopback_only()

    @pytest.mark.parametrize(
        "key",
        [
            "change-me",
            "CHANGEME",
            "changeme-please-0123",
            "secret",
            "password",
            "test",
            "example",
            "short-key",
            "your_secret_key",
            "aaaaaaaaaaaaaaaaaaaa",
        ],
    )
    def test_weak_keys_refused_off_loopback(self, key: str) -> None:
        """Short, placeholder or degenerate keys fail on a public address."""
        with pytest.raises(ValidationError, match="CUSTOM_RCE_API_KEY"):
            Settings(api_keys=key, host="0.0.0.0")

    def test_one_weak_key_among_several_is_refused(self) -> None:
        """Every key in the rotation list must be strong."""
        with pytest.raises(ValidationError, match="CUSTOM_RCE_API_KEY"):
            Settings(api_keys="a3f9c2e4b7d1a8f06e5c9b2d,changeme", host="10.0.0.5")

    def test_weak_key_on_loopback_is_loopback_only(self) -> None:
        """On loopback a weak key starts the server, for loopback connections only."""
        assert Settings(api_keys="short").loopback_only()
        assert not Settings(api_keys="a3f9c2e4b7d1a8f06e5c9b2d").loopback_only()

    def test_strong_key_off_loopback(self) -> None:
        """A real key is fine anywhere."""
        assert Settings(api_keys="a3f9c2e4b7d1a8f06e5c9b2d", host="0.0.0.0").api_key_list()

    def test_weak_key_ignored_in_jwt_mode(self, tmp_path: object) -> None:
        """Keys are not credentials in jwt mode, so a placeholder there does not matter."""
        settings = Settings(auth_mode="jwt", host="0.0.0.0", jwt_public_key_file="/nonexistent.pem")
        assert not settings.loopback_only()
