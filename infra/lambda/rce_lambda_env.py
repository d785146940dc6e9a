"""Prepare the Docker connection of one Lambda execution environment.

``rce-lambda-wrapper`` (``AWS_LAMBDA_EXEC_WRAPPER``) runs this once, before the
Python runtime starts, and ``eval``s what it prints:

- nothing about the engines themselves: it only checks that ``RCE_DOCKER_HOSTS``
  lists ``tcp://`` engines. The app places every exec on one of them
  (``runner.placement``: a healthy engine with the least in-flight work), as the
  API replicas do, so one environment uses every engine and a lost engine leaves
  its rotation;
- the client TLS material: the Secrets Manager secret ``RCE_DOCKER_TLS_SECRET_ARN``,
  a JSON object ``{"ca", "cert", "key"}`` of PEM strings, written to
  ``DOCKER_CERT_PATH`` (``ca.pem``, ``cert.pem``, ``key.pem``; mode 0600).

It prints nothing but ``export`` lines; errors go to stderr and stop the start-up.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_TLS_FILES = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}


class SetupError(Exception):
    """The environment cannot be prepared; the message says which setting is wrong."""


def check_hosts(hosts: str) -> list[str]:
    """The ``tcp://`` engines of the comma-separated list (``name=`` prefixes allowed)."""
    choices = [h.strip() for h in hosts.split(",") if h.strip()]
    urls = [h.split("=", 1)[1] if "=" in h.split("://", 1)[0] else h for h in choices]
    if not urls or any(not u.strip().startswith("tcp://") for u in urls):
        raise SetupError(f"RCE_DOCKER_HOSTS must list tcp://host:port engines, not {hosts!r}")
    return urls


def parse_tls_secret(text: str) -> dict[str, str]:
    """The PEM strings of the secret, checked for the three keys."""
    try:
        value: Any = json.loads(text)
    except ValueError as exc:
        raise SetupError("the Docker TLS secret is not a JSON object") from exc
    if not isinstance(value, dict) or any(
        not isinstance(value.get(k), str) or "-----BEGIN" not in value[k] for k in _TLS_FILES
    ):
        raise SetupError('the Docker TLS secret must be {"ca": PEM, "cert": PEM, "key": PEM}')
    return {k: value[k] for k in _TLS_FILES}


def write_tls(material: Mapping[str, str], cert_dir: Path) -> None:
    """Write ``ca.pem``, ``cert.pem`` and ``key.pem`` into ``cert_dir`` (0700/0600)."""
    cert_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for key, filename in _TLS_FILES.items():
        path = cert_dir / filename
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(material[key])


def fetch_secret(arn: str) -> str:
    """The secret's string value (boto3, the function's role)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = boto3.client("secretsmanager").get_secret_value(SecretId=arn)
    except (BotoCoreError, ClientError) as exc:
        raise SetupError(f"cannot read the Docker TLS secret {arn}: {exc}") from exc
    return str(response["SecretString"])


def exports(environ: Mapping[str, str]) -> dict[str, str]:
    """Prepare everything and return the variables to export."""
    check_hosts(environ.get("RCE_DOCKER_HOSTS", ""))
    out: dict[str, str] = {}
    arn = environ.get("RCE_DOCKER_TLS_SECRET_ARN", "")
    if arn:
        cert_dir = Path(environ.get("DOCKER_CERT_PATH", "/tmp/docker-certs"))
        write_tls(parse_tls_secret(fetch_secret(arn)), cert_dir)
        out["DOCKER_CERT_PATH"] = str(cert_dir)
    return out


def main() -> int:
    try:
        variables = exports(os.environ)
    except SetupError as exc:
        sys.stderr.write(f"rce-lambda-env: {exc}\n")
        return 1
    for name, value in variables.items():
        sys.stdout.write(f"export {name}={shlex.quote(value)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
