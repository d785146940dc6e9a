"""Owner-safe writes, the one name policy and large unchanged inputs, through HTTP
against the real API (uvicorn subprocess, real Docker engine; folder store and S3 on
SeaweedFS).

- Another user's exec output of the same name never replaces a shared file; DELETE
  needs the file's own owner and refuses read-only files.
- A program that writes hostile names still answers 200 with its stdout; the names
  are listed in ``skipped_files`` with a reason.
- An input over ``RCE_MAX_FILE_BYTES`` that the program does not touch is not
  reported as skipped; a changed one is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    Api,
    EngineForwarder,
    Running,
    api_env,
    assert_error_shape,
    ok_json,
    s3_settings,
    start_api,
)
from tests.support.seaweed import SeaweedServer

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

KEY = "owners-key-0123456789abcdef"
ALICE = {"X-API-Key": KEY, "User-Id": "alice"}
BOB = {"X-API-Key": KEY, "User-Id": "bob"}
MAX_FILE_BYTES = 10_000


@pytest.fixture(
    scope="module",
    params=[pytest.param("folder"), pytest.param("s3", marks=pytest.mark.s3)],
)
def running(
    request: pytest.FixtureRequest,
    module_engine: EngineForwarder,
    sandbox_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    """The API on a folder store, then on S3 (SeaweedFS), with a small file limit."""
    tmp = tmp_path_factory.mktemp(f"owners-{request.param}")
    if request.param == "s3":
        seaweed: SeaweedServer = request.getfixturevalue("seaweed")
        storage = s3_settings(seaweed.endpoint)
    else:
        storage = {"RCE_STORAGE": f"file://{tmp / 'store'}"}
    env = api_env(
        storage,
        image=sandbox_image,
        engine=module_engine,
        api_key=KEY,
        pool_size=0,
        extra={"RCE_MAX_FILE_BYTES": str(MAX_FILE_BYTES)},
    )
    with start_api(env, Path(tmp) / "api", ALICE) as server:
        yield server


def _files(api: Api, session_id: str) -> list[dict[str, Any]]:
    return list(ok_json(api.files(session_id, "full")))


def _by_owner_named(api: Api, session_id: str, name: str) -> dict[str, str]:
    """file id -> owner-visible bytes of every file called ``name`` the caller sees."""
    out = {}
    for entry in _files(api, session_id):
        if entry["metadata"]["original-filename"] == name:
            out[entry["id"]] = api.download(session_id, entry["id"]).text
    return out


class TestOwners:
    def test_another_users_output_never_replaces_a_shared_file(self, running: Running) -> None:
        """Alice shares ``data.csv`` (kind=agent); Bob's exec in that session writes
        ``data.csv``: Alice's object keeps her bytes; Bob's output is another file."""
        alice, bob = running.api, running.api.as_(BOB)
        up = ok_json(alice.upload("data.csv", b"alice\n", kind="agent", id="agent-1"))
        sid, shared_id = up["session_id"], up["files"][0]["fileId"]
        try:
            out = ok_json(
                bob.exec("open('data.csv','w').write('bob\\n'); print('ok')", session_id=sid)
            )
            assert out["stdout"] == "ok\n"
            [written] = out["files"]
            assert written["name"] == "data.csv" and written["id"] != shared_id
            assert alice.download(sid, shared_id).text == "alice\n"
            assert bob.download(sid, written["id"]).text == "bob\n"
            # Bob's next run sees his own version; Alice's still sees the shared one.
            again = ok_json(bob.exec("print(open('data.csv').read(), end='')", session_id=sid))
            assert again["stdout"] == "bob\n"
            assert _by_owner_named(alice, sid, "data.csv") == {shared_id: "alice\n"}
        finally:
            bob.close()

    def test_delete_needs_the_owner_and_a_writable_file(self, running: Running) -> None:
        """Bob cannot delete Alice's shared file; nobody deletes a read-only file."""
        alice, bob = running.api, running.api.as_(BOB)
        try:
            up = ok_json(alice.upload("skill.md", b"# s\n", kind="skill", id="skill-1"))
            sid, fid = up["session_id"], up["files"][0]["fileId"]
            body = assert_error_shape(bob.delete(sid, fid), 403)
            assert "owner" in body["message"]
            assert alice.download(sid, fid).text == "# s\n"
            batch = alice.client.post(
                "/upload/batch",
                files=[("file", ("SKILL.md", b"ro", "text/markdown"))],
                data={"kind": "skill", "id": "skill-1", "read_only": "true", "session_id": sid},
            )
            ro = ok_json(batch)["files"][0]["fileId"]
            body = assert_error_shape(alice.delete(sid, ro), 403)
            assert body["error"] == "read_only"
            assert alice.download(sid, ro).text == "ro"
            assert ok_json(alice.delete(sid, fid))["message"] == "deleted"
        finally:
            bob.close()


HOSTILE = r"""
import os
names = {
    "bidi": "invoice\u202egnp.exe",
    "ctrl": "bell\x01.txt",
    "backslash": "a\\b.txt",
    "long": "x" * 300,
}
for key, name in names.items():
    try:
        open(name, "w").write(key)
    except OSError as exc:
        print(key, "refused by the OS:", exc.strerror)
deep = "/".join(["d" * 30] * 40)
os.makedirs(deep)
open(deep + "/leaf.txt", "w").write("deep")
open("ok.txt", "w").write("fine")
print("STDOUT-MARK")
"""


def test_hostile_output_names_are_skipped_and_the_run_answers(running: Running) -> None:
    """Bidi override, control character, backslash, a 300-character name and a 40-level
    deep path: 200 with the program's stdout; each name the OS let the program create
    is listed in ``skipped_files`` with a reason; the good output is saved."""
    out = ok_json(running.api.exec(HOSTILE))
    assert "STDOUT-MARK" in out["stdout"]
    assert "long refused by the OS" in out["stdout"]  # NAME_MAX: never reached us
    assert [f["name"] for f in out["files"]] == ["ok.txt"]
    reasons = {s["name"]: s["reason"] for s in out["skipped_files"]}
    assert reasons.get("invoice\\u202egnp.exe", "").endswith("(U+202E)"), reasons
    assert "control" in reasons.get("bell\\u0001.txt", ""), reasons
    assert "backslash" in reasons.get("a\\\\b.txt", ""), reasons
    [deep] = [name for name in reasons if name.startswith("d" * 30)]
    assert "longer than 1024 bytes" in reasons[deep] and len(deep) <= 300
    assert all("\u202e" not in s["name"] for s in out["skipped_files"])
    assert "not saved" in out["stderr"]


def test_unchanged_large_input_is_not_reported_as_skipped(running: Running) -> None:
    """A stored file over ``RCE_MAX_FILE_BYTES``: two runs that leave it alone report
    nothing skipped; a run that changes it gets it skipped with the limit's reason."""
    api = running.api
    big = b"0123456789" * (3 * MAX_FILE_BYTES // 10)
    sid = ok_json(api.upload("big.bin", big))["session_id"]
    for _ in range(2):
        out = ok_json(api.exec("print(len(open('big.bin','rb').read()))", session_id=sid))
        assert out["stdout"] == f"{len(big)}\n"
        assert out["skipped_files"] == [] and "not saved" not in out["stderr"], out
        assert out["files"] == []
    out = ok_json(api.exec("open('big.bin','ab').write(b'more')", session_id=sid))
    assert [(s["name"], s["reason"]) for s in out["skipped_files"]] == [
        ("big.bin", f"larger than the {MAX_FILE_BYTES} byte limit (RCE_MAX_FILE_BYTES)")
    ]
    assert out["files"] == []
