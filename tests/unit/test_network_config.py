"""Network modes and the runtime a sandbox runs under, without an engine."""

from __future__ import annotations

import pytest

from handler.settings import Settings
from runner import _docker_config as cfg
from runner.base import Limits
from runner.network import (
    NetworkMode,
    parse_allowlist,
    proxy_address,
    runtime_for,
    sandbox_network,
)


def _body(settings: Settings) -> dict[str, object]:
    key = cfg.container_key(
        "img",
        settings.limits(),
        gpu=False,
        runtime=settings.sandbox_runtime(),
        network=settings.sandbox_network(),
    )
    return cfg.create_body(key, container_labels={})


def _host(body: dict[str, object]) -> dict[str, object]:
    host = body["HostConfig"]
    assert isinstance(host, dict)
    return host


class TestSettings:
    def test_off_by_default(self) -> None:
        settings = Settings()
        body = _body(settings)
        assert settings.mode is NetworkMode.OFF
        assert _host(body)["NetworkMode"] == "none" and body["NetworkDisabled"] is True
        assert not any("PROXY" in e for e in body["Env"])  # type: ignore[union-attr]

    def test_legacy_network_enabled_means_open(self) -> None:
        settings = Settings(network_enabled=True)
        assert settings.mode is NetworkMode.OPEN
        assert _host(_body(settings))["NetworkMode"] == "rce-open"

    def test_allowlist_joins_the_internal_network_with_the_proxy_env(self) -> None:
        settings = Settings(network_mode="allowlist", network_allowlist="pypi.org")
        body = _body(settings)
        assert _host(body)["NetworkMode"] == "rce-allowlist" and body["NetworkDisabled"] is False
        assert "HTTPS_PROXY=http://172.31.252.2:3128" in body["Env"]  # type: ignore[operator]

    def test_allowlist_needs_entries(self) -> None:
        with pytest.raises(ValueError, match="RCE_NETWORK_ALLOWLIST"):
            Settings(network_mode="allowlist")

    def test_contradiction_is_refused(self) -> None:
        with pytest.raises(ValueError, match="contradicts"):
            Settings(network_enabled=True, network_mode="off")

    @pytest.mark.parametrize(
        ("mode", "runtime"),
        [("off", "runsc"), ("allowlist", "runsc-net"), ("open", "runsc-net")],
    )
    def test_gvisor_runtime_follows_the_mode(self, mode: str, runtime: str) -> None:
        settings = Settings(runtime="runsc", network_mode=mode, network_allowlist="pypi.org")
        assert _host(_body(settings))["Runtime"] == runtime

    def test_no_runtime_means_the_engine_default(self) -> None:
        assert "Runtime" not in _host(_body(Settings()))


class TestAllowlist:
    def test_normalizes(self) -> None:
        assert parse_allowlist(" PyPI.org, .example.org,10.0.0.1,pypi.org ,") == (
            "pypi.org",
            ".example.org",
            "10.0.0.1",
        )

    @pytest.mark.parametrize(
        "entry", ["*.example.org", "http://pypi.org", "pypi.org:443", "pypi.org/simple", "a b", "1"]
    )
    def test_refuses_what_is_not_a_host(self, entry: str) -> None:
        with pytest.raises(ValueError):
            parse_allowlist(entry)

    def test_proxy_address_is_the_second_host(self) -> None:
        assert proxy_address("10.9.8.0/24") == "10.9.8.2"
        with pytest.raises(ValueError):
            proxy_address("10.9.8.0/30")


def test_network_without_a_mode_keeps_the_default_bridge() -> None:
    key = cfg.container_key("img", Limits(network_enabled=True), gpu=False, runtime=None)
    assert cfg.host_config(key)["NetworkMode"] == "bridge"


def test_a_disabled_limit_wins_over_the_mode() -> None:
    network = sandbox_network(NetworkMode.OPEN)
    key = cfg.container_key("img", Limits(), gpu=False, runtime=None, network=network)
    assert cfg.host_config(key)["NetworkMode"] == "none"


def test_runtime_for_other_runtimes_is_unchanged() -> None:
    assert runtime_for("kata", NetworkMode.OPEN) == "kata"
    assert runtime_for(None, NetworkMode.ALLOWLIST) is None
