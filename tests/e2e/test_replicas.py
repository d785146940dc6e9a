"""Two API processes on one SeaweedFS bucket: the API keeps no session state, so a
session started on one replica continues on the other, byte-exact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    EngineForwarder,
    api_env,
    ok_json,
    s3_settings,
    sha256,
    snapshot,
    start_api,
)
from tests.support.seaweed import SeaweedServer

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.s3, pytest.mark.slow]

KEY = "replicas-key-0123456789"
H = {"X-API-Key": KEY, "User-Id": "replica-user"}


@pytest.mark.timeout(300)
def test_a_session_moves_between_replicas_byte_exact(
    seaweed: SeaweedServer, engine: EngineForwarder, sandbox_image: str, tmp_path: Path
) -> None:
    """Upload + exec on replica A (warm pool), continue on replica B (no pool) with
    ``session_id``: B's sandbox sees A's files, A sees B's outputs and deletes, and
    every file downloads byte-exact from both."""
    storage = s3_settings(seaweed.endpoint)
    env_a = api_env(storage, image=sandbox_image, engine=engine, api_key=KEY, pool_size=1)
    env_b = api_env(storage, image=sandbox_image, engine=engine, api_key=KEY, pool_size=0)
    data = os.urandom(2 * 1024 * 1024 + 3)
    with (
        start_api(env_a, tmp_path / "a", H) as replica_a,
        start_api(env_b, tmp_path / "b", H) as replica_b,
    ):
        a, b = replica_a.api, replica_b.api
        assert replica_a.server.base_url != replica_b.server.base_url
        session_id = ok_json(a.upload("input.bin", data))["session_id"]
        made = ok_json(
            a.exec(
                "import hashlib\n"
                "d = open('input.bin', 'rb').read()\n"
                "open('from_a.txt', 'w').write(hashlib.sha256(d).hexdigest())",
                session_id=session_id,
            )
        )
        assert made["exit_code"] == 0, made

        on_b = ok_json(
            b.exec(
                "import hashlib, os\n"
                "print(sorted(os.listdir('.')))\n"
                "print(open('from_a.txt').read())\n"
                "open('from_b.txt', 'w').write('written on b')",
                session_id=session_id,
            )
        )
        assert on_b["exit_code"] == 0, on_b
        assert on_b["stdout"] == f"['from_a.txt', 'input.bin']\n{sha256(data)}\n", on_b

        expected = {
            "input.bin": sha256(data),
            "from_a.txt": sha256(sha256(data).encode()),
            "from_b.txt": sha256(b"written on b"),
        }
        assert snapshot(a, session_id) == expected
        assert snapshot(b, session_id) == expected

        by_name = {e["name"]: e["id"] for e in ok_json(a.files(session_id, "normalized"))}
        assert b.delete(session_id, by_name["from_a.txt"]).status_code == 200
        del expected["from_a.txt"]
        assert snapshot(a, session_id) == expected
        back_on_a = ok_json(
            a.exec("import os; print(sorted(os.listdir('.')))", session_id=session_id)
        )
        assert back_on_a["stdout"] == "['from_b.txt', 'input.bin']\n", back_on_a
