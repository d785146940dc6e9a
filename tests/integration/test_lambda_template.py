"""The AWS Lambda deployment in infra/lambda: the CloudFormation template passes
cfn-lint and says what docs/deployment.md promises, and the cold-start script that
prepares the Docker connection does its job (Secrets Manager on moto)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from tests.support.services import service_missing

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "infra" / "lambda"
TEMPLATE = LAMBDA_DIR / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags kept as {"Fn::X" | "Ref": value}."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)


@pytest.fixture(name="template", scope="module")
def _template() -> dict[str, Any]:
    loaded = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)
    assert isinstance(loaded, dict)
    return loaded


def _resource(template: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [r for r in template["Resources"].values() if r["Type"] == type_]
    assert len(found) == 1, type_
    return dict(found[0]["Properties"])


def test_cfn_lint_passes() -> None:
    """``cfn-lint`` finds no error and no warning in the template."""
    cfn_lint = shutil.which("cfn-lint") or shutil.which(
        "cfn-lint", path=str(Path(sys.executable).parent)
    )
    if cfn_lint is None:
        service_missing("cfn-lint is not installed (it is a dev dependency: uv sync)")
    assert cfn_lint is not None
    result = subprocess.run([cfn_lint, str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


class TestTemplate:
    """What the stack sets up."""

    def test_function_runs_the_mangum_entry_without_a_pool(self, template: dict[str, Any]) -> None:
        """Handler, runtime, no warm pool, S3 storage, the remote Docker settings."""
        function = _resource(template, "AWS::Lambda::Function")
        assert function["Handler"] == "handler.aws_lambda.handler"
        assert function["Runtime"] in ("python3.11", "python3.12")
        env = function["Environment"]["Variables"]
        assert env["RCE_POOL_SIZE"] == "0"
        assert env["RCE_STORAGE"]["Fn::Sub"].startswith("s3://${SessionBucket}/")
        assert env["RCE_DOCKER_HOSTS"] == {"Ref": "DockerHosts"}
        assert env["DOCKER_TLS_VERIFY"] == {"Ref": "DockerTlsVerify"}
        assert env["RCE_DOCKER_TLS_SECRET_ARN"] == {"Ref": "DockerTlsSecretArn"}
        assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/var/task/rce-lambda-wrapper"
        assert env["RCE_HOST"] == "0.0.0.0"  # the default-key guard applies
        assert set(function["VpcConfig"]) == {"SubnetIds", "SecurityGroupIds"}

    def test_bucket_is_private_and_expires_sessions(self, template: dict[str, Any]) -> None:
        """Public access is blocked and a lifecycle rule expires objects (2 days by default)."""
        bucket = _resource(template, "AWS::S3::Bucket")
        assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
        (rule,) = bucket["LifecycleConfiguration"]["Rules"]
        assert rule["Status"] == "Enabled"
        assert rule["ExpirationInDays"] == {"Ref": "SessionTtlDays"}
        assert template["Parameters"]["SessionTtlDays"]["Default"] == "2"

    def test_role_allows_only_the_session_objects_and_the_tls_secret(
        self, template: dict[str, Any]
    ) -> None:
        """Least privilege: object actions under the prefix, listing the bucket, one secret."""
        role = _resource(template, "AWS::IAM::Role")
        (policy,) = role["Policies"]
        statements = policy["PolicyDocument"]["Statement"]
        actions: set[str] = set()
        for statement in statements:
            action = statement["Action"]
            actions |= {action} if isinstance(action, str) else set(action)
        assert actions == {
            "s3:GetObject",
            "s3:PutObject",
            "s3:DeleteObject",
            "s3:ListBucket",
            "secretsmanager:GetSecretValue",
        }
        assert all(s["Effect"] == "Allow" for s in statements)
        by_sid = {s["Sid"]: s for s in statements}
        assert by_sid["SessionObjects"]["Resource"]["Fn::Sub"].endswith("/${SessionPrefix}/*")
        assert by_sid["DockerTlsMaterial"]["Resource"] == {"Ref": "DockerTlsSecretArn"}

    def test_http_api_routes_everything_to_the_function(self, template: dict[str, Any]) -> None:
        """A catch-all route and the root route, payload format 2.0."""
        routes = [
            r["Properties"]["RouteKey"]
            for r in template["Resources"].values()
            if r["Type"] == "AWS::ApiGatewayV2::Route"
        ]
        assert sorted(routes) == ["ANY /", "ANY /{proxy+}"]
        integration = _resource(template, "AWS::ApiGatewayV2::Integration")
        assert integration["IntegrationType"] == "AWS_PROXY"
        assert integration["PayloadFormatVersion"] == "2.0"


def _env_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "rce_lambda_env", LAMBDA_DIR / "rce_lambda_env.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class TestColdStartScript:
    """``rce_lambda_env.py`` picks a host and writes the TLS files from the secret."""

    def test_writes_the_tls_files_and_exports_the_docker_settings(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env_module = _env_module()
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        with mock_aws():
            arn = boto3.client("secretsmanager").create_secret(
                Name="docker-tls", SecretString=json.dumps({"ca": PEM, "cert": PEM, "key": PEM})
            )["ARN"]
            out = env_module.exports(
                {
                    "RCE_DOCKER_HOSTS": "tcp://10.0.0.1:2376, tcp://10.0.0.2:2376",
                    "RCE_DOCKER_TLS_SECRET_ARN": arn,
                    "DOCKER_CERT_PATH": str(tmp_path / "certs"),
                }
            )
        # The app places each exec over RCE_DOCKER_HOSTS itself: no engine is fixed here.
        assert "DOCKER_HOST" not in out
        assert out["DOCKER_CERT_PATH"] == str(tmp_path / "certs")
        for name in ("ca.pem", "cert.pem", "key.pem"):
            path = tmp_path / "certs" / name
            assert path.read_text() == PEM
            assert stat.S_IMODE(path.stat().st_mode) == 0o600

    @pytest.mark.parametrize(
        "hosts", ["", "unix:///var/run/docker.sock", "tcp://a:2376,http://b:2376"]
    )
    def test_refuses_a_host_list_without_tcp_engines(self, hosts: str) -> None:
        env_module = _env_module()
        with pytest.raises(env_module.SetupError, match="RCE_DOCKER_HOSTS"):
            env_module.check_hosts(hosts)

    def test_refuses_a_secret_without_the_three_pems(self) -> None:
        env_module = _env_module()
        with pytest.raises(env_module.SetupError, match="ca"):
            env_module.parse_tls_secret(json.dumps({"ca": PEM, "cert": PEM}))
