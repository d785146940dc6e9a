"""One typed settings class, read from the environment (pydantic-settings).

The original README's names keep working (``CUSTOM_RCE_API_KEY``, ``RCE_IMAGE_NAME``,
``RCE_MEM_LIMIT``, ``RCE_CPU_LIMIT``, ``RCE_NETWORK_ENABLED``, ``RCE_GPU_ENABLED``);
every other setting is ``RCE_`` + the upper-cased field name. An unsafe or invalid
combination fails at start-up with a message naming the variable.

Build it with ``get_settings()`` (cached) or pass ``Settings(...)`` to
``create_app``; nothing here reads the environment at import time.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.base import Limits
from runner.network import (
    DEFAULT_ALLOWLIST_SUBNET,
    NetworkMode,
    SandboxNetwork,
    parse_allowlist,
    proxy_address,
    runtime_for,
    sandbox_network,
)
from runner.placement import EngineSpec, parse_engines

DEFAULT_API_KEY = "your_secret_key"
#: Shortest API key accepted off loopback.
MIN_KEY_CHARS = 16
#: Keys (lower-cased, letters and digits only) that are placeholders, not secrets.
_PLACEHOLDER_KEYS = frozenset(
    {
        "changeme",
        "changethis",
        "secret",
        "password",
        "test",
        "example",
        "yoursecretkey",
        "apikey",
        "default",
        "admin",
        "letmein",
        "placeholder",
        "dummy",
        "sample",
    }
)
_PLACEHOLDER_PARTS = ("changeme", "changethis", "yoursecret", "example", "placeholder")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: str | int) -> int:
    """``512m`` -> 536870912. Docker's units: b, k, m, g (binary)."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size such as 512m or 1g")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ``::1``)."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def weak_key_reason(key: str) -> str | None:
    """Why ``key`` is not a secret (too short, a placeholder), or None when it may be one."""
    letters = "".join(c for c in key.lower() if c.isalnum())
    if letters in _PLACEHOLDER_KEYS or any(part in letters for part in _PLACEHOLDER_PARTS):
        return "a placeholder such as change-me"
    if len(key) < MIN_KEY_CHARS:
        return f"shorter than {MIN_KEY_CHARS} characters"
    if len(set(key)) < 4:
        return "made of fewer than 4 distinct characters"
    return None


class Settings(BaseSettings):
    """Every setting of the service. Field docs are the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="RCE_", extra="ignore", populate_by_name=True)

    # --- auth -------------------------------------------------------------------
    api_keys: SecretStr = Field(
        SecretStr(DEFAULT_API_KEY),
        validation_alias=AliasChoices("CUSTOM_RCE_API_KEY", "RCE_API_KEYS", "api_keys"),
        description="API key(s), comma-separated. CUSTOM_RCE_API_KEY.",
    )
    auth_mode: Literal["api_key", "jwt", "both", "none"] = "api_key"
    jwt_public_key: SecretStr | None = Field(None, description="PEM, JWK or JWKS text.")
    jwt_public_key_file: str | None = Field(None, description="Path to a PEM, JWK or JWKS file.")
    jwt_issuer: str = "librechat"
    jwt_audience: str = "codeapi"
    jwt_algorithms: str = "EdDSA,RS256"
    jwt_leeway_s: float = 30.0
    allow_insecure_no_auth: bool = Field(
        False, description="Allow RCE_AUTH_MODE=none off loopback (trusted networks only)."
    )
    body_key_max_bytes: int = Field(
        64 * 1024,
        description="Largest body read to find a legacy key in the JSON body (exec routes).",
    )
    metrics_access: Literal["auth", "public", "off"] = "auth"
    ready_details: Literal["auth", "public", "off"] = "auth"
    docs_access: Literal["auth", "public", "off"] = "auth"

    # --- server -----------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True
    max_code_bytes: int = 1024 * 1024
    max_body_bytes: int = 8 * 1024 * 1024
    max_upload_bytes: int = 150 * 1024 * 1024
    max_batch_bytes: int = Field(
        300 * 1024 * 1024, description="Largest /upload/batch body (all files together)."
    )
    max_batch_files: int = 100
    max_concurrent_execs: int = 8
    exec_queue_size: int = 32
    exec_queue_timeout_s: float = 30.0

    # --- storage ----------------------------------------------------------------
    storage: str = Field("file://.rce/sessions", description="file:///path or s3://bucket/prefix")
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_manage_lifecycle: bool = True
    session_ttl_hours: float = 48.0

    # --- sandbox ----------------------------------------------------------------
    image_name: str = "custom-rce-kernel:latest"
    gpu_image_name: str = "custom-rce-kernel:gpu"
    gpu_enabled: bool = False
    network_enabled: bool = Field(
        False, description="Legacy alias: true means RCE_NETWORK_MODE=open."
    )
    network_mode: NetworkMode | None = Field(
        None, description="off (default), allowlist or open; see SECURITY.md."
    )
    network_allowlist: str = Field(
        "", description="allowlist mode: comma-separated host names or addresses."
    )
    network_allowlist_subnet: str = Field(
        DEFAULT_ALLOWLIST_SUBNET, description="Subnet of the rce-allowlist network."
    )
    runtime: str | None = Field(None, description="OCI runtime, e.g. runsc for gVisor.")
    mem_limit: str = "512m"
    cpu_limit: int = 500_000_000
    pids_limit: int = 128
    run_timeout_s: float = 30.0
    max_run_timeout_s: float = 300.0
    max_output_bytes: int = 1_000_000
    max_file_bytes: int = 50 * 1024 * 1024
    max_files: int = 100
    workspace_size: str = "512m"
    tmp_size: str = "64m"
    max_open_files: int = 1024
    pool_size: int = Field(
        default_factory=lambda: 0 if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else 2,
        description="Warm light sandboxes (python3 and the agent only); 0 disables them.",
    )
    pool_data_size: int = Field(
        default_factory=lambda: 0 if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else 2,
        description="Warm sandboxes with numpy, pandas and matplotlib already imported, "
        "for code importing data libraries; 0 disables them.",
    )
    pool_r_size: int = Field(
        0,
        description="Floor of the warm R sandboxes (an R with its default packages loaded, "
        "waiting for the program). With RCE_POOL_SIZE > 0 this pool exists anyway and "
        "grows with the rate of R requests.",
    )
    pool_node_size: int = Field(
        0,
        description="Floor of the warm node sandboxes (for js and ts). With RCE_POOL_SIZE "
        "> 0 this pool exists anyway and grows with the rate of js and ts requests.",
    )
    pool_java_size: int = Field(
        0,
        description="Floor of the warm java sandboxes (a JVM whose source launcher has "
        "loaded javac). With RCE_POOL_SIZE > 0 this pool exists anyway and grows with the "
        "rate of java requests.",
    )
    pool_memory_budget_mb: float | None = Field(
        None,
        description="Host memory (MB) the warm pools may hold in all when they grow with "
        "the request rate, their configured sizes included (light ~15 MB, data ~110 MB, "
        "r ~55 MB, node ~30 MB, java ~55 MB each, 16-28 MB more under gVisor; the "
        "configured sizes are kept even beyond it). Default: 2048 under runc, 3452 under "
        "gVisor (the same sandboxes, each with its Sentry).",
    )
    pool_parallel_fills: int = Field(
        4, description="Warm sandboxes prepared at once, per pool, when the rate needs it."
    )
    reaper_interval_s: float = 60.0
    # --- several engines ---------------------------------------------------------
    docker_hosts: str = Field(
        "",
        description="Comma-separated Docker engines (url or name=url) to place execs on; "
        "empty: the one engine at DOCKER_HOST.",
    )
    engine_max_execs: int = Field(0, ge=0, description="Runs per engine per replica; 0: no cap.")
    engine_probe_interval_s: float = Field(5.0, gt=0, le=300)
    engine_probe_timeout_s: float = Field(3.0, gt=0, le=60)
    # --- programmatic tool calling (POST /exec/programmatic) ---------------------
    ptc_token_secret: SecretStr | None = Field(
        None, description="HMAC secret of continuation tokens, shared by every replica."
    )
    ptc_max_wait_s: float = Field(300.0, gt=0, description="Longest wait for tool results.")
    ptc_max_round_trips: int = Field(50, ge=20, description="Round trips per program (>= 20).")
    ptc_max_tools: int = Field(100, ge=1, le=1000)
    ptc_max_result_bytes: int = Field(1024 * 1024, ge=1024)
    ptc_max_results_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    container_labels: str = Field(
        "", description="Extra labels on every sandbox container: k=v,k2=v2."
    )

    @field_validator("mem_limit", "workspace_size", "tmp_size")
    @classmethod
    def _check_size(cls, value: str) -> str:
        parse_size(value)
        return value

    @field_validator("session_ttl_hours")
    @classmethod
    def _check_ttl(cls, value: float) -> float:
        # LibreChat re-uploads anything older than 23 h; expiring sooner loses files.
        if value < 24:
            raise ValueError("RCE_SESSION_TTL_HOURS must be at least 24 (LibreChat's 23 h rule)")
        return value

    @field_validator(
        "cpu_limit",
        "pids_limit",
        "max_output_bytes",
        "max_files",
        "max_open_files",
        "max_body_bytes",
        "max_upload_bytes",
        "max_batch_bytes",
        "max_batch_files",
        "max_concurrent_execs",
        "body_key_max_bytes",
        "pool_parallel_fills",
    )
    @classmethod
    def _check_positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be a positive number")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        keys = self.api_key_list()
        if self.auth_mode in ("api_key", "both") and not keys:
            raise ValueError("CUSTOM_RCE_API_KEY is empty but RCE_AUTH_MODE needs an API key")
        if not is_loopback(self.host):
            self._refuse_off_loopback()
        if self.auth_mode in ("jwt", "both") and not (
            self.jwt_public_key or self.jwt_public_key_file
        ):
            raise ValueError(
                f"RCE_AUTH_MODE={self.auth_mode} needs "
                "RCE_JWT_PUBLIC_KEY or RCE_JWT_PUBLIC_KEY_FILE"
            )
        if not (self.storage.startswith("file://") or self.storage.startswith("s3://")):
            raise ValueError("RCE_STORAGE must be file:///path or s3://bucket[/prefix]")
        if self.run_timeout_s <= 0 or self.max_run_timeout_s < self.run_timeout_s:
            raise ValueError("RCE_RUN_TIMEOUT_S must be > 0 and <= RCE_MAX_RUN_TIMEOUT_S")
        self.container_label_map()
        if self.pool_size < 0:
            raise ValueError("RCE_POOL_SIZE must be >= 0")
        if self.pool_data_size < 0:
            raise ValueError("RCE_POOL_DATA_SIZE must be >= 0")
        if min(self.pool_r_size, self.pool_node_size, self.pool_java_size) < 0:
            raise ValueError("RCE_POOL_R_SIZE, _NODE_SIZE and _JAVA_SIZE must be >= 0")
        if self.pool_memory_budget_mb is not None and self.pool_memory_budget_mb < 0:
            raise ValueError("RCE_POOL_MEMORY_BUDGET_MB must be >= 0")
        self._check_load_bounds()
        self.engines()
        if self.network_mode is None:
            self.network_mode = NetworkMode.OPEN if self.network_enabled else NetworkMode.OFF
        elif self.network_enabled and self.network_mode is not NetworkMode.OPEN:
            raise ValueError(
                f"RCE_NETWORK_ENABLED=true contradicts RCE_NETWORK_MODE={self.network_mode.value}"
            )
        try:
            allowlist = parse_allowlist(self.network_allowlist)
            proxy_address(self.network_allowlist_subnet)
        except ValueError as exc:
            raise ValueError(f"RCE_NETWORK_ALLOWLIST / _SUBNET: {exc}") from None
        if self.network_mode is NetworkMode.ALLOWLIST and not allowlist:
            raise ValueError("RCE_NETWORK_MODE=allowlist needs a non-empty RCE_NETWORK_ALLOWLIST")
        return self

    def _refuse_off_loopback(self) -> None:
        if self.auth_mode == "none" and not self.allow_insecure_no_auth:
            raise ValueError(
                f"RCE_AUTH_MODE=none while RCE_HOST ({self.host}) is not a loopback address: "
                "use api_key/jwt, or set RCE_ALLOW_INSECURE_NO_AUTH=true on a trusted network"
            )
        for key in self.api_key_list() if self.uses_api_keys else []:
            reason = weak_key_reason(key)
            if reason:
                raise ValueError(
                    f"CUSTOM_RCE_API_KEY holds a key that is {reason} while RCE_HOST "
                    f"({self.host}) is not a loopback address: set a real key "
                    "(e.g. openssl rand -hex 32)"
                )

    def _check_load_bounds(self) -> None:
        if self.exec_queue_size < 0:
            raise ValueError("RCE_EXEC_QUEUE_SIZE must be >= 0")
        if self.exec_queue_timeout_s <= 0:
            raise ValueError("RCE_EXEC_QUEUE_TIMEOUT_S must be > 0")

    @property
    def uses_api_keys(self) -> bool:
        """True when API keys are accepted (``api_key`` or ``both``)."""
        return self.auth_mode in ("api_key", "both")

    def loopback_only(self) -> bool:
        """True when this configuration is safe only for loopback connections: no auth
        (without RCE_ALLOW_INSECURE_NO_AUTH) or a weak API key. The app then refuses
        every request that did not arrive on a loopback address, whatever RCE_HOST says."""
        if self.auth_mode == "none":
            return not self.allow_insecure_no_auth
        return self.uses_api_keys and any(weak_key_reason(k) for k in self.api_key_list())

    def container_label_map(self) -> dict[str, str]:
        """``RCE_CONTAINER_LABELS`` as a dict; ``org.rce.*`` labels are reserved."""
        labels: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in self.container_labels.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or key.strip().startswith("org.rce."):
                raise ValueError(f"RCE_CONTAINER_LABELS: {item!r} is not k=v (org.rce.* reserved)")
            labels[key.strip()] = value.strip()
        return labels

    def ptc_secret(self) -> bytes | None:
        """The continuation token secret: RCE_PTC_TOKEN_SECRET, else derived from the
        API keys (shared by replicas that share them); None when neither is set."""
        if self.ptc_token_secret is not None:
            return self.ptc_token_secret.get_secret_value().encode()
        keys = [k for k in self.api_key_list() if k != DEFAULT_API_KEY]
        if keys and self.auth_mode in ("api_key", "both"):
            return ("rce-ptc-from-api-keys\0" + ",".join(sorted(keys))).encode()
        return None

    def api_key_list(self) -> list[str]:
        """The configured API keys (comma-separated in the variable)."""
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    def jwt_algorithm_list(self) -> list[str]:
        """Allowed JWT algorithms; only asymmetric ones are ever accepted."""
        allowed = {"EdDSA", "RS256", "RS384", "RS512", "ES256", "PS256"}
        return [a.strip() for a in self.jwt_algorithms.split(",") if a.strip() in allowed]

    def limits(self) -> Limits:
        """The sandbox limits these settings describe."""
        return Limits(
            run_timeout_s=self.run_timeout_s,
            memory_limit_bytes=parse_size(self.mem_limit),
            nano_cpus=self.cpu_limit,
            pids_limit=self.pids_limit,
            max_output_bytes=self.max_output_bytes,
            max_file_bytes=self.max_file_bytes,
            max_files=self.max_files,
            workspace_bytes=parse_size(self.workspace_size),
            tmp_bytes=parse_size(self.tmp_size),
            max_open_files=self.max_open_files,
            network_enabled=self.mode is not NetworkMode.OFF,
        )

    def engines(self) -> tuple[EngineSpec, ...]:
        """The engines of ``RCE_DOCKER_HOSTS`` (empty: the one at ``DOCKER_HOST``)."""
        try:
            return parse_engines(self.docker_hosts)
        except ValueError as exc:
            raise ValueError(f"RCE_DOCKER_HOSTS: {exc}") from None

    @property
    def mode(self) -> NetworkMode:
        """The network mode (``RCE_NETWORK_ENABLED=true`` alone means open)."""
        if self.network_mode is not None:
            return self.network_mode
        return NetworkMode.OPEN if self.network_enabled else NetworkMode.OFF

    def sandbox_network(self) -> SandboxNetwork:
        """The Docker network every sandbox joins."""
        return sandbox_network(self.mode, allowlist_subnet=self.network_allowlist_subnet)

    def sandbox_runtime(self) -> str | None:
        """The OCI runtime every sandbox runs under (``runsc-net`` for gVisor with network)."""
        return runtime_for(self.runtime or None, self.mode)

    @property
    def sandbox_image(self) -> str:
        """The image a sandbox is created from: the GPU one when GPU is enabled."""
        return self.gpu_image_name if self.gpu_enabled else self.image_name


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
