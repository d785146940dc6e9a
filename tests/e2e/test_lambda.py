"""The AWS Lambda entry, ``handler.aws_lambda.handler(event, context)``, driven with
API Gateway documents as AWS sends them: HTTP API (payload 2.0) and REST API
(payload 1.0, ``/{proxy+}`` on a stage), on the real Docker engine and a folder
store.

``handler.aws_lambda`` builds its app at import, from the environment, so it runs in
a child process started with the environment already set: this module, run as
``python -m tests.e2e.test_lambda``, imports the handler with ``importlib`` and
answers one JSON event per stdin line with one JSON response per stdout line.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from tests.e2e.conftest import EngineForwarder

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

#: Marks the driver's answer lines (anything else on stdout is ignored).
ANSWER = "LAMBDA_ANSWER "
REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "lambda-key-0123456789"
API_ID = "a1b2c3d4e5"
REGION = "us-east-1"
DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
SOURCE_IP = "203.0.113.7"
USER_AGENT = "LibreChat/1.0"
BOUNDARY = "----LibreChatFormBoundary7MA4YWxkTrZu0gW"


# --- the driver (child process) -------------------------------------------------------


@dataclass
class LambdaContext:
    """The attributes of the context object the Lambda runtime passes."""

    function_name: str = "rce"
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:rce"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = ""
    log_group_name: str = "/aws/lambda/rce"
    log_stream_name: str = "2026/11/27/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        """What the runtime reports; the handler should not depend on it."""
        return 300_000


def _drive(stdin: IO[str], stdout: IO[str]) -> None:
    module = importlib.import_module("handler.aws_lambda")
    handler = module.handler
    stdout.write(ANSWER + json.dumps({"lifespan": handler.lifespan}) + "\n")
    stdout.flush()
    try:
        for line in stdin:
            event = json.loads(line)
            context = LambdaContext(aws_request_id=str(uuid.uuid4()))
            stdout.write(ANSWER + json.dumps(handler(event, context)) + "\n")
            stdout.flush()
    finally:
        handler.app.state.services.close()


# --- API Gateway documents ------------------------------------------------------------


def _now() -> tuple[str, int]:
    epoch_ms = int(time.time() * 1000)
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000))
    return stamp, epoch_ms


def _request_id() -> str:
    return base64.b64encode(os.urandom(10)).decode().rstrip("=")


def http_api_event(
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    body: bytes = b"",
    binary: bool = False,
    query: str = "",
) -> dict[str, Any]:
    """An API Gateway HTTP API event, payload format 2.0 (``$default`` route)."""
    stamp, epoch_ms = _now()
    all_headers = {
        "accept": "application/json, text/plain, */*",
        "accept-encoding": "gzip, compress, deflate, br",
        "content-length": str(len(body)),
        "host": DOMAIN,
        "user-agent": USER_AGENT,
        "x-amzn-trace-id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
        "x-forwarded-for": SOURCE_IP,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        **{name.lower(): value for name, value in headers.items()},
    }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": DOMAIN,
            "domainPrefix": API_ID,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": SOURCE_IP,
                "userAgent": USER_AGENT,
            },
            "requestId": _request_id(),
            "routeKey": "$default",
            "stage": "$default",
            "time": stamp,
            "timeEpoch": epoch_ms,
        },
        "isBase64Encoded": binary,
    }
    if query:
        event["queryStringParameters"] = dict(
            pair.split("=", 1) for pair in query.split("&") if "=" in pair
        )
    if body:
        event["body"] = base64.b64encode(body).decode() if binary else body.decode()
    return event


def rest_api_event(
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    body: bytes = b"",
    binary: bool = False,
    stage: str = "prod",
) -> dict[str, Any]:
    """An API Gateway REST API proxy event, payload format 1.0 (``/{proxy+}``)."""
    stamp, epoch_ms = _now()
    all_headers = {
        "Accept": "application/json, text/plain, */*",
        "CloudFront-Forwarded-Proto": "https",
        "CloudFront-Is-Desktop-Viewer": "true",
        "CloudFront-Viewer-Country": "US",
        "Host": DOMAIN,
        "User-Agent": USER_AGENT,
        "Via": "1.1 0123456789abcdef0123456789abcdef.cloudfront.net (CloudFront)",
        "X-Amz-Cf-Id": base64.b64encode(os.urandom(40)).decode(),
        "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
        "X-Forwarded-For": f"{SOURCE_IP}, 130.176.0.1",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        **headers,
    }
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "extendedRequestId": _request_id(),
            "requestTime": stamp,
            "path": f"/{stage}{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": API_ID,
            "requestTimeEpoch": epoch_ms,
            "requestId": str(uuid.uuid4()),
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": SOURCE_IP,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": USER_AGENT,
                "user": None,
            },
            "domainName": DOMAIN,
            "apiId": API_ID,
        },
        "body": (base64.b64encode(body).decode() if binary else body.decode()) if body else None,
        "isBase64Encoded": binary,
    }


def multipart(name: str, data: bytes, fields: dict[str, str] | None = None) -> bytes:
    """A multipart/form-data body as LibreChat's form-data library writes it."""
    out = b""
    for field_name, value in (fields or {}).items():
        out += (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
            f'name="{field_name}"\r\n\r\n{value}\r\n'
        ).encode()
    out += (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
        f'name="file"; filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    return out + data + f"\r\n--{BOUNDARY}--\r\n".encode()


# --- the tests ------------------------------------------------------------------------


class Lambda:
    """The driver process: ``invoke(event)`` returns the handler's response dict."""

    def __init__(self, env: dict[str, str], log: IO[bytes]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.test_lambda"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.started = self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            assert line, f"the Lambda driver exited ({self.process.poll()})"
            if line.startswith(ANSWER):
                answer: dict[str, Any] = json.loads(line[len(ANSWER) :])
                return answer

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """One invocation, as the runtime makes it."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> int:
        """End the driver (it closes the app's adapters) and return its exit code."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()


def body_of(response: dict[str, Any]) -> bytes:
    """The response body's bytes (base64-decoded when the handler encoded it)."""
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def json_of(response: dict[str, Any]) -> Any:
    """The JSON body of a 200 response."""
    assert response["statusCode"] == 200, response
    return json.loads(body_of(response))


@pytest.fixture
def lambda_driver(engine: EngineForwarder, sandbox_image: str, tmp_path: Path) -> Iterator[Lambda]:
    """The Lambda handler in a child process: folder store, real engine, no pool
    (``AWS_LAMBDA_FUNCTION_NAME`` set), its own ``TMPDIR`` that must end empty."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "TMPDIR": str(tmpdir),
        "AWS_LAMBDA_FUNCTION_NAME": "rce",
        "AWS_REGION": REGION,
        "CUSTOM_RCE_API_KEY": KEY,
        "RCE_STORAGE": f"file://{tmp_path / 'store'}",
        "RCE_IMAGE_NAME": sandbox_image,
        "RCE_LOG_JSON": "true",
        "DOCKER_HOST": engine.docker_host,
    }
    with (tmp_path / "lambda.log").open("wb") as log:
        driver = Lambda(env, log)
        try:
            yield driver
        finally:
            code = driver.close()
    assert code == 0, (tmp_path / "lambda.log").read_text()[-3000:]
    left = sorted(str(p) for p in tmpdir.rglob("*"))
    assert not left, f"the handler left temporary files: {left}"


@pytest.mark.timeout(300)
def test_exec_through_http_api_and_rest_api_events(lambda_driver: Lambda) -> None:
    """``print(2+2)`` through a payload 2.0 and a payload 1.0 event: 200, JSON
    answer with ``4``; the lifespan is off (Mangum would run it per invocation)."""
    assert lambda_driver.started == {"lifespan": "off"}
    headers = {"Content-Type": "application/json", "X-API-Key": KEY, "User-Id": "lambda-user"}
    body = json.dumps({"code": "print(2+2)", "lang": "py"}).encode()
    for event in (
        http_api_event("POST", "/exec", headers=headers, body=body),
        rest_api_event("POST", "/exec", headers=headers, body=body),
        http_api_event("POST", "/v1/exec", headers=headers, body=body),
    ):
        response = lambda_driver.invoke(event)
        answer = json_of(response)
        assert (answer["stdout"], answer["exit_code"], answer["files"]) == ("4\n", 0, []), answer
        assert len(answer["session_id"]) == 21
        content_type = {k.lower(): v for k, v in response["headers"].items()}["content-type"]
        assert content_type == "application/json", response["headers"]
    refused = lambda_driver.invoke(
        http_api_event("POST", "/exec", headers={"Content-Type": "application/json"}, body=body)
    )
    assert refused["statusCode"] == 401, refused
    assert json.loads(body_of(refused))["error"] == "unauthorized"


@pytest.mark.timeout(300)
def test_base64_multipart_upload_then_exec_and_binary_download(lambda_driver: Lambda) -> None:
    """A base64-encoded multipart upload through the REST API (1.0) and the HTTP API
    (2.0) events; an exec of that session sees both files byte-exact; a binary
    download comes back base64-encoded and byte-exact."""
    auth = {"X-API-Key": KEY, "User-Id": "lambda-user"}
    form = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **auth}
    binary = bytes(range(256)) * 64 + b"\x00\xff"
    first = json_of(
        lambda_driver.invoke(
            rest_api_event(
                "POST", "/upload", headers=form, body=multipart("blob.bin", binary), binary=True
            )
        )
    )
    assert first["message"] == "success", first
    session_id = first["session_id"]
    csv = "name,ünïcode\nä,1\n".encode()
    second = json_of(
        lambda_driver.invoke(
            http_api_event(
                "POST",
                "/upload",
                headers=form,
                body=multipart("data.csv", csv, {"session_id": session_id}),
                binary=True,
            )
        )
    )
    assert second["session_id"] == session_id, second
    code = (
        "import hashlib\n"
        "for n in ('blob.bin', 'data.csv'):\n"
        "    print(n, hashlib.sha256(open(n, 'rb').read()).hexdigest())\n"
    )
    ran = json_of(
        lambda_driver.invoke(
            http_api_event(
                "POST",
                "/exec",
                headers={"Content-Type": "application/json", **auth},
                body=json.dumps({"code": code, "session_id": session_id}).encode(),
            )
        )
    )
    assert ran["stdout"] == (
        f"blob.bin {hashlib.sha256(binary).hexdigest()}\n"
        f"data.csv {hashlib.sha256(csv).hexdigest()}\n"
    ), ran
    file_id = first["files"][0]["fileId"]
    download = lambda_driver.invoke(
        http_api_event("GET", f"/download/{session_id}/{file_id}", headers=auth)
    )
    assert download["statusCode"] == 200, download
    assert download["isBase64Encoded"] is True, "a binary body must come back base64-encoded"
    assert body_of(download) == binary
    listing = json_of(
        lambda_driver.invoke(
            rest_api_event("GET", f"/files/{session_id}", headers=auth)
            | {
                "queryStringParameters": {"detail": "normalized"},
                "multiValueQueryStringParameters": {"detail": ["normalized"]},
            }
        )
    )
    assert sorted(e["name"] for e in listing) == ["blob.bin", "data.csv"], listing


if __name__ == "__main__":
    _drive(sys.stdin, sys.stdout)
