"""The sandbox's container arguments and host-side protocol, without an engine.

The create body is what makes a sandbox safe, so it is checked field by field here
(GPU included: it cannot run on these machines). The reply parser is fed hostile
frames: every violation must be refused with bounded memory and no file left open.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from core.errors import InvalidRequest, StorageError
from runner import _docker_config as cfg
from runner.base import InputFile, Language, Limits, RunRequest
from runner.protocol import (
    DATA,
    FILE,
    RESULT,
    STDERR,
    STDOUT,
    ProtocolError,
    ReplyReader,
    build_result,
    encode_job_header,
    output_name_problem,
    write_input_tar,
)

MiB = 1024 * 1024


DEFAULT = Limits()


def body(limits: Limits = DEFAULT, **key_args: object) -> dict[str, object]:
    args: dict[str, object] = {"gpu": False, "runtime": None, **key_args}
    key = cfg.container_key("img:tag", limits, **args)  # type: ignore[arg-type]
    labels = cfg.labels(exec_id="e1", deadline_s=100, pooled=False)
    return cfg.create_body(key, container_labels=labels)


class TestCreateBody:
    def test_default_sandbox_is_hardened(self) -> None:
        created = body()
        host = created["HostConfig"]
        assert isinstance(host, dict)
        assert created["Image"] == "img:tag"
        assert created["User"] == "1000:1000"
        assert created["Cmd"] == ["python3", "/opt/rce/rce_agent/__main__.py"]
        # stdin stays open across attaches: the job is framed (no EOF), PTC re-attaches.
        assert created["OpenStdin"] is True and created["StdinOnce"] is False
        assert created["Tty"] is False and created["NetworkDisabled"] is True
        assert host["NetworkMode"] == "none"
        assert host["CapDrop"] == ["ALL"] and "CapAdd" not in host
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["Privileged"] is False and host["ReadonlyRootfs"] is True
        assert host["Memory"] == host["MemorySwap"] == 512 * MiB
        assert host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 128
        # The agent is PID 1 (no init of the sandbox uid exposing the reply channel).
        assert host["Init"] is False
        assert host["Binds"] == [] and host["Mounts"] == [] and host["Devices"] == []
        assert "DeviceRequests" not in host and "Runtime" not in host
        assert host["LogConfig"] == {"Type": "none", "Config": {}}

    def test_no_option_weakens_seccomp_or_mounts_the_engine(self) -> None:
        text = json.dumps(body(Limits(network_enabled=True), gpu=True, runtime="runsc"))
        assert "unconfined" not in text
        assert "docker.sock" not in text

    def test_tmpfs_are_size_capped_and_owned_by_the_sandbox_user(self) -> None:
        host = body(Limits(workspace_bytes=64 * MiB, tmp_bytes=8 * MiB))["HostConfig"]
        assert isinstance(host, dict)
        data, tmp = host["Tmpfs"]["/mnt/data"], host["Tmpfs"]["/tmp"]
        assert f"size={64 * MiB}" in data and "uid=1000" in data and "gid=1000" in data
        assert f"size={8 * MiB}" in tmp
        for opts in (data, tmp):
            assert {"nosuid", "nodev", "noexec"} <= set(opts.split(","))

    def test_build_tmpfs_is_private_exec_able_and_the_only_exec_able_mount(self) -> None:
        host = body()["HostConfig"]
        assert isinstance(host, dict)
        build = set(host["Tmpfs"]["/var/rce"].split(","))
        assert {"nosuid", "nodev", "exec", "uid=1000", "gid=1000", "mode=0700"} <= build
        assert "noexec" not in build
        others = [v for k, v in host["Tmpfs"].items() if k != "/var/rce"]
        assert all("noexec" in v.split(",") for v in others)

    def test_ulimits_bound_open_files_file_size_and_cores(self) -> None:
        host = body(Limits(max_open_files=256, workspace_bytes=64 * MiB))["HostConfig"]
        assert isinstance(host, dict)
        ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]}
        assert ulimits["nofile"] == (256, 256)
        assert ulimits["fsize"] == (64 * MiB, 64 * MiB)
        assert ulimits["core"] == (0, 0)
        # Under runc nproc would count every sandbox of host uid 1000 together.
        assert "nproc" not in ulimits

    @pytest.mark.parametrize("runtime", ["runsc", "runsc-net", "runsc-kvm"])
    def test_under_gvisor_the_pids_limit_is_nproc_and_the_cgroup_leaves_room(
        self, runtime: str
    ) -> None:
        host = body(Limits(pids_limit=100), runtime=runtime)["HostConfig"]
        assert isinstance(host, dict)
        ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]}
        assert ulimits["nproc"] == (100, 100)
        assert host["PidsLimit"] == 100 * cfg.GVISOR_HOST_PIDS_FACTOR
        assert host["Runtime"] == runtime

    @pytest.mark.parametrize("runtime", [None, "runc", "runscx", "kata"])
    def test_other_runtimes_keep_the_pids_cgroup_as_the_limit(self, runtime: str | None) -> None:
        host = body(Limits(pids_limit=100), runtime=runtime)["HostConfig"]
        assert isinstance(host, dict)
        assert host["PidsLimit"] == 100
        assert "nproc" not in {u["Name"] for u in host["Ulimits"]}

    def test_network_only_when_enabled(self) -> None:
        created = body(Limits(network_enabled=True))
        host = created["HostConfig"]
        assert isinstance(host, dict)
        assert host["NetworkMode"] == "bridge" and created["NetworkDisabled"] is False

    def test_gpu_requests_all_gpus(self) -> None:
        host = body(gpu=True)["HostConfig"]
        assert isinstance(host, dict)
        assert host["DeviceRequests"] == [
            {
                "Driver": "",
                "Count": -1,
                "DeviceIDs": [],
                "Capabilities": [["gpu"]],
                "Options": {},
            }
        ]
        assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True

    def test_runtime_is_passed_through(self) -> None:
        host = body(runtime="runsc")["HostConfig"]
        assert isinstance(host, dict)
        assert host["Runtime"] == "runsc"

    def test_warm_containers_name_their_flavour_and_are_labelled(self) -> None:
        key = cfg.container_key("i", Limits(), gpu=False, runtime=None)
        labels = cfg.labels(exec_id="pool", deadline_s=900, pooled=True)
        light = cfg.create_body(key, container_labels=labels, warm=cfg.Flavour.LIGHT)
        data = cfg.create_body(key, container_labels=labels, warm=cfg.Flavour.DATA)
        assert light["Env"] == ["RCE_AGENT_PRELOAD=light"]
        assert data["Env"] == ["RCE_AGENT_PRELOAD=data"]
        assert cfg.create_body(key, container_labels=labels)["Env"] == []
        assert labels["org.rce.pool"] == "1"
        # Only the agent's environment differs: every hardening is the same.
        assert light["HostConfig"] == data["HostConfig"] == body()["HostConfig"]


def python(code: str) -> RunRequest:
    return RunRequest(language=Language.PYTHON, code=code)


class TestFlavour:
    @pytest.mark.parametrize(
        "code",
        [
            "import pandas as pd\nprint(pd.__version__)",
            "import os, numpy\n",
            "import json as j, matplotlib.pyplot as plt",
            "from scipy import stats",
            "from sklearn.linear_model import LinearRegression",
            "def f():\n    import seaborn\n",
            "x = 1; import numpy.linalg",
            "import os\nfrom numpy import (\n    arange,\n)\n",
        ],
    )
    def test_python_importing_a_data_library_wants_a_data_container(self, code: str) -> None:
        assert cfg.flavour_for(python(code)) is cfg.Flavour.DATA

    @pytest.mark.parametrize(
        "code",
        [
            "print(2 + 2)",
            "import os, sys, json",
            "from collections import deque",
            "# import numpy\nprint('numpy')",
            "import numpyish",
            "from . import numpy_helpers",
            "s = 'import pandas'",
        ],
    )
    def test_other_python_wants_a_light_container(self, code: str) -> None:
        assert cfg.flavour_for(python(code)) is cfg.Flavour.LIGHT

    @pytest.mark.parametrize(
        ("lang", "flavour"),
        [
            (Language.R, cfg.Flavour.R),
            (Language.JAVASCRIPT, cfg.Flavour.NODE),
            (Language.TYPESCRIPT, cfg.Flavour.NODE),
            (Language.C, cfg.Flavour.LIGHT),
            (Language.JAVA, cfg.Flavour.JAVA),
            (Language.GO, cfg.Flavour.LIGHT),
        ],
    )
    def test_r_js_ts_and_java_want_their_warm_interpreter(
        self, lang: Language, flavour: cfg.Flavour
    ) -> None:
        assert cfg.flavour_for(RunRequest(language=lang, code="library(pandas)")) is flavour

    def test_bash_always_wants_a_light_container(self) -> None:
        request = RunRequest(language=Language.BASH, code="python3 -c 'import pandas'")
        assert cfg.flavour_for(request) is cfg.Flavour.LIGHT

    def test_imported_modules_reads_every_form_of_import(self) -> None:
        code = "import a, b.c as d\nfrom e.f import g\n  import h;import i\n"
        assert cfg.imported_modules(code) == {"a", "b", "e", "h", "i"}


class TestLabelsAndNames:
    def test_labels_carry_service_exec_id_and_a_deadline(self) -> None:
        before = time.time()
        labels = cfg.labels(exec_id="abc", deadline_s=120, pooled=False, extra={"x": "y"})
        assert labels["org.rce.service"] == "rce" and labels["org.rce.exec-id"] == "abc"
        assert labels["x"] == "y" and "org.rce.pool" not in labels
        created, deadline = int(labels["org.rce.created-at"]), int(labels["org.rce.deadline"])
        assert before - 1 <= created <= time.time()
        assert deadline >= created + 120

    def test_our_labels_win_over_extra_ones(self) -> None:
        labels = cfg.labels(
            exec_id="a", deadline_s=1, pooled=False, extra={"org.rce.service": "other"}
        )
        assert labels["org.rce.service"] == "rce"

    def test_names_are_random_and_proxy_friendly(self) -> None:
        names = {cfg.new_name() for _ in range(100)}
        assert len(names) == 100
        assert all(n.startswith("rce-sbx-") and len(n) == 24 for n in names)

    def test_deadline_covers_every_budget(self) -> None:
        request = RunRequest(
            language=Language.PYTHON,
            code="",
            limits=Limits(run_timeout_s=60),
            files=(InputFile("a", 400 * MiB, "", lambda: iter(())),),
        )
        assert cfg.run_budget_s(request) >= 60 + cfg.upload_budget_s(request) + 120

    def test_container_key_ignores_per_run_limits(self) -> None:
        base = cfg.container_key("i", Limits(), gpu=False, runtime=None)
        per_run = Limits(run_timeout_s=5, max_output_bytes=10, max_files=1, max_file_bytes=1)
        assert cfg.container_key("i", per_run, gpu=False, runtime=None) == base
        assert cfg.container_key("i", Limits(pids_limit=64), gpu=False, runtime=None) != base


# ------------------------------------------------------------------ protocol


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def jframe(kind: bytes, obj: object) -> bytes:
    return frame(kind, json.dumps(obj).encode())


def request(files: tuple[str, ...] = (), **limits: object) -> RunRequest:
    return RunRequest(
        language=Language.PYTHON,
        code="",
        files=tuple(InputFile(n, 1, "", lambda: iter([b"x"])) for n in files),
        limits=replace(Limits(), **limits),  # type: ignore[arg-type]
    )


def read(data: bytes, req: RunRequest | None = None) -> ReplyReader:
    reader = ReplyReader(io.BytesIO(data), req or request())
    reader.read()
    return reader


OK_RESULT = {"exit_code": 0, "stdout_bytes": 0, "stderr_bytes": 0}


class TestReply:
    def test_a_complete_reply_becomes_a_result(self) -> None:
        data = (
            frame(STDOUT, b"hello\n")
            + frame(STDERR, b"warn\n")
            + jframe(FILE, {"name": "out/a.bin", "size": 5})
            + frame(DATA, b"ab")
            + frame(DATA, b"cde")
            + jframe(
                RESULT,
                {
                    "exit_code": 2,
                    "stdout_bytes": 6,
                    "stderr_bytes": 5,
                    "deleted": ["in.txt", "not-an-input"],
                    "skipped": [["link", "symbolic link (not followed)"]],
                },
            )
        )
        req = request(files=("in.txt",))
        result = build_result(read(data, req).reply, req, duration_s=1.0)
        assert (result.stdout, result.stderr, result.exit_code) == ("hello\n", "warn\n", 2)
        [out] = result.outputs
        assert (out.name, out.size, out.data.read()) == ("out/a.bin", 5, b"abcde")
        assert out.sha256 == hashlib.sha256(b"abcde").hexdigest()
        assert result.deleted == ["in.txt"]
        assert [(s.name, s.reason) for s in result.skipped] == [
            ("link", "symbolic link (not followed)")
        ]
        result.close()

    @pytest.mark.parametrize(
        "name",
        ["../x", "/etc/passwd", "a/../../b", "a//b", "./a", "", "a/", "a\x00b", "d/" * 2100 + "x"],
    )
    def test_an_output_name_against_the_policy_is_skipped_and_the_others_come_back(
        self, name: str
    ) -> None:
        bad = jframe(FILE, {"name": name, "size": 3}) + frame(DATA, b"xy") + frame(DATA, b"z")
        good = jframe(FILE, {"name": "ok.txt", "size": 2}) + frame(DATA, b"ok")
        req = request()
        reply = read(good + bad + jframe(RESULT, OK_RESULT), req).reply
        result = build_result(reply, req, duration_s=1.0)
        assert [(o.name, o.data.read()) for o in result.outputs] == [("ok.txt", b"ok")]
        [skip] = result.skipped
        assert skip.reason == output_name_problem(name) and skip.reason
        assert skip.name == name[:300].replace("\x00", "\ufffd")
        result.close()

    @pytest.mark.parametrize("name", [5, None, ["a"]])
    def test_an_output_name_that_is_not_text_fails_the_reply(self, name: object) -> None:
        data = jframe(FILE, {"name": name, "size": 1}) + frame(DATA, b"x")
        with pytest.raises(ProtocolError):
            read(data + jframe(RESULT, OK_RESULT))

    def test_a_skipped_output_must_still_send_all_its_data(self) -> None:
        data = jframe(FILE, {"name": "a//b", "size": 5}) + frame(DATA, b"x")
        with pytest.raises(ProtocolError):
            read(data + jframe(RESULT, OK_RESULT))

    def test_duplicate_too_large_and_too_many_files_are_refused(self) -> None:
        one = jframe(FILE, {"name": "a", "size": 1}) + frame(DATA, b"x")
        with pytest.raises(ProtocolError):
            read(one + one)
        with pytest.raises(ProtocolError):
            read(jframe(FILE, {"name": "big", "size": 11}), request(max_file_bytes=10))
        two = one + jframe(FILE, {"name": "b", "size": 1}) + frame(DATA, b"x")
        with pytest.raises(ProtocolError):
            read(two, request(max_files=1))

    def test_data_beyond_the_declared_size_is_refused(self) -> None:
        with pytest.raises(ProtocolError):
            read(jframe(FILE, {"name": "a", "size": 1}) + frame(DATA, b"xy"))

    def test_oversized_and_unknown_frames_are_refused_without_reading_them(self) -> None:
        huge = b"O" + struct.pack(">I", 2**31)  # no payload follows: must not be awaited
        with pytest.raises(ProtocolError):
            read(huge)
        with pytest.raises(ProtocolError):
            read(frame(b"Z", b""))
        with pytest.raises(ProtocolError):
            read(b"R" + struct.pack(">I", 64 * MiB))

    def test_truncated_replies_are_refused_and_spools_closed(self) -> None:
        reader = ReplyReader(
            io.BytesIO(jframe(FILE, {"name": "a", "size": 10}) + frame(DATA, b"x")), request()
        )
        with pytest.raises(ProtocolError):
            reader.read()
        assert reader.reply.outputs == []
        with pytest.raises(ProtocolError):
            read(b"O\x00")

    def test_an_early_eof_leaves_no_result(self) -> None:
        reader = read(frame(STDOUT, b"partial"))
        assert reader.reply.result is None

    def test_stdout_is_capped_on_the_host_too(self) -> None:
        data = frame(STDOUT, b"x" * 100) + jframe(RESULT, {**OK_RESULT, "stdout_bytes": 100})
        req = request(max_output_bytes=10)
        result = build_result(read(data, req).reply, req, duration_s=0)
        assert result.stdout_truncated
        assert result.stdout == (
            "x" * 10 + "\n[rce: output truncated at 10 bytes (RCE_MAX_OUTPUT_BYTES)]\n"
        )

    def test_timeout_and_oom_notices(self) -> None:
        req = request(run_timeout_s=2.0)
        timed = read(
            frame(STDERR, b"e")
            + jframe(RESULT, {**OK_RESULT, "exit_code": 137, "timed_out": True}),
            req,
        )
        result = build_result(timed.reply, req, duration_s=2)
        assert result.timed_out and result.stderr == (
            "e\nrce: killed after exceeding the run time limit of 2 s (RCE_RUN_TIMEOUT_S)\n"
        )
        oom = read(jframe(RESULT, {**OK_RESULT, "exit_code": 137, "oom_killed": True}), req)
        result = build_result(oom.reply, req, duration_s=1)
        assert result.oom_killed and result.exit_code == 137
        assert result.stderr == "rce: killed: out of memory (limit 512 MiB, RCE_MEM_LIMIT)\n"

    def test_a_failed_reply_explains_itself(self) -> None:
        reader = read(frame(STDOUT, b"so far"))
        result = build_result(reader.reply, request(), duration_s=1, failure="the sandbox died")
        assert result.exit_code != 0 and result.stdout == "so far"
        assert result.stderr == "rce: the sandbox died\n"

    def test_an_agent_error_is_a_failed_result(self) -> None:
        result = build_result(
            read(jframe(RESULT, {"error": "agent failed: boom"})).reply, request(), duration_s=0
        )
        assert result.exit_code == 1 and "agent failed: boom" in result.stderr


# ----------------------------------------------------------------------- job


def streamed(name: str, data: bytes, chunk: int, opened: list[str]) -> InputFile:
    def chunks() -> Iterator[bytes]:
        opened.append(name)
        for i in range(0, len(data), chunk):
            yield data[i : i + chunk]

    return InputFile(name, len(data), hashlib.sha256(data).hexdigest(), chunks)


class _Sink:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.largest_write = 0

    def write(self, data: bytes) -> int:
        self.largest_write = max(self.largest_write, len(data))
        return self.buffer.write(data)


class TestJob:
    def test_header_carries_code_args_limits_and_manifest(self) -> None:
        req = RunRequest(
            language=Language.BASH,
            code="echo hi",
            args=("a",),
            files=(InputFile("d/x.txt", 1, "ab" * 32, lambda: iter([b"x"])),),
            limits=Limits(run_timeout_s=3, max_files=7),
        )
        raw = encode_job_header(req)
        assert raw[:4] == b"RCEJ"
        (size,) = struct.unpack(">I", raw[4:8])
        header = json.loads(raw[8 : 8 + size])
        assert header["lang"] == "bash" and header["code"] == "echo hi"
        assert header["args"] == ["a"]
        assert header["files"] == [{"name": "d/x.txt", "sha256": "ab" * 32}]
        assert header["limits"]["run_timeout_s"] == 3 and header["limits"]["max_files"] == 7

    @pytest.mark.parametrize("name", ["../x", "/abs", "a/./b", "", "a\x00"])
    def test_unsafe_input_names_are_refused(self, name: str) -> None:
        with pytest.raises(InvalidRequest):
            encode_job_header(request(files=(name,)))

    def test_duplicate_input_names_are_refused(self) -> None:
        with pytest.raises(InvalidRequest):
            encode_job_header(request(files=("a", "a")))

    def test_inputs_are_streamed_chunk_by_chunk_into_a_tar(self) -> None:
        opened: list[str] = []
        big = bytes(range(256)) * 8192  # 2 MiB
        files = (streamed("big.bin", big, 10_000, opened), streamed("n/e/s.txt", b"hi", 1, opened))
        sink = _Sink()
        write_input_tar(files, sink)
        assert opened == ["big.bin", "n/e/s.txt"]
        assert sink.largest_write < 1024 * 1024  # never a whole file at once
        sink.buffer.seek(0)
        with tarfile.open(fileobj=sink.buffer, mode="r|") as tar:
            got = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
        assert got == {"big.bin": big, "n/e/s.txt": b"hi"}

    def test_a_short_or_long_input_stream_is_a_storage_error(self) -> None:
        short = InputFile("a", 10, "", lambda: iter([b"123"]))
        with pytest.raises(StorageError):
            write_input_tar((short,), _Sink())
        long = InputFile("a", 2, "", lambda: iter([b"123"]))
        with pytest.raises(StorageError):
            write_input_tar((long,), _Sink())


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("a.txt", True),
        ("dir/sub/a.txt", True),
        ("ünï cödé.txt", True),
        ("..", False),
        ("a/..", False),
        ("/a", False),
        ("a//b", False),
        ("a/", False),
        (".", False),
        ("x" * 5000, False),
        (None, False),
    ],
)
def test_output_names_follow_the_one_name_policy(name: object, safe: bool) -> None:
    assert (output_name_problem(name) is None) is safe


class TestProgrammaticRunNames:
    """A programmatic run's container name carries its request-id key and expiry."""

    def test_the_name_round_trips_and_passes_the_proxy_pattern(self) -> None:
        key = cfg.ptc_key("req-1")
        name = cfg.ptc_name(key, 1_900_000_000.5)
        assert key == cfg.ptc_key("req-1") and key != cfg.ptc_key("req-2")
        assert name.startswith(cfg.NAME_PREFIX) and len(name) <= 128
        assert cfg.ptc_expiry(name) == 1_900_000_001.0
        assert cfg.ptc_key("") != cfg.ptc_key("")  # no request id: a random key

    @pytest.mark.parametrize(
        "name", ["rce-sbx-0123", "rce-sbx-ptc-xyz-1900000000", "rce-sbx-ptc-" + "0" * 24 + "-1"]
    )
    def test_other_names_carry_no_expiry(self, name: str) -> None:
        assert cfg.ptc_expiry(name) is None

    def test_the_reaper_goes_by_the_name_not_the_labels(self) -> None:
        from runner.docker import _expired

        now = time.time()
        key = cfg.ptc_key("r")
        # A pooled container's labels say "fine for hours": the run's expiry decides.
        labels = {cfg.LABEL_DEADLINE: str(int(now) + 36_000), cfg.LABEL_CREATED: str(int(now))}
        running = {"State": "running"}
        assert _expired(cfg.ptc_name(key, now - 1), running, labels, now)
        assert not _expired(cfg.ptc_name(key, now + 60), running, labels, now)
        # An extended run outlives its pool deadline label.
        stale = {cfg.LABEL_DEADLINE: str(int(now) - 5), cfg.LABEL_CREATED: str(int(now) - 99)}
        assert not _expired(cfg.ptc_name(key, now + 60), running, stale, now)
        # Its agent ended it (wait cap, cancel): removed at once.
        assert _expired(cfg.ptc_name(key, now + 60), {"State": "exited"}, labels, now)
        assert not _expired("rce-sbx-0123", running, labels, now)


class TestPoolOrder:
    """Which pools a request takes from (no engine: the pools never start)."""

    def order(self, wanted: cfg.Flavour, **pools: int) -> list[cfg.Flavour]:
        from runner.docker import DockerSandbox

        box = DockerSandbox(client=lambda: None, image="img", **pools)  # type: ignore[arg-type]
        try:
            return box._pool_order(wanted)
        finally:
            box.close()

    def test_r_and_node_pools_exist_with_the_light_pool_and_fall_back_to_it(self) -> None:
        for wanted in (cfg.Flavour.R, cfg.Flavour.NODE):
            assert self.order(wanted, pool_size=1) == [wanted, cfg.Flavour.LIGHT]
        assert self.order(cfg.Flavour.LIGHT, pool_size=1, pool_r_size=1) == [cfg.Flavour.LIGHT]

    def test_without_language_pools_r_takes_a_light_container(self) -> None:
        order = self.order(cfg.Flavour.R, pool_size=1, language_pools=False)
        assert order == [cfg.Flavour.LIGHT]

    def test_no_light_pool_means_no_on_demand_pools(self) -> None:
        assert self.order(cfg.Flavour.NODE, pool_data_size=1) == []
        assert self.order(cfg.Flavour.NODE, pool_node_size=1) == [cfg.Flavour.NODE]


class TestEntryMemory:
    """What the pools' memory budget counts one ready container as."""

    @pytest.mark.parametrize("flavour", list(cfg.Flavour))
    def test_gvisor_adds_its_sentry_to_every_flavour(self, flavour: cfg.Flavour) -> None:
        from runner.docker import ENTRY_MB, entry_mb

        assert entry_mb(flavour, None) == entry_mb(flavour, "runc") == ENTRY_MB[flavour]
        assert entry_mb(flavour, "runsc") > ENTRY_MB[flavour]
        assert entry_mb(flavour, "runsc-net") == entry_mb(flavour, "runsc")

    def test_a_sandbox_under_gvisor_budgets_its_pools_with_it(self) -> None:
        from runner.docker import DockerSandbox, entry_mb

        box = DockerSandbox(
            client=lambda: None,  # type: ignore[arg-type,return-value]
            image="img",
            runtime="runsc",
            pool_size=1,
            pool_data_size=1,
        )
        try:
            assert {flavour: pool.entry_mb for flavour, pool in box._pools.items()} == {
                flavour: entry_mb(flavour, "runsc") for flavour in box._pools
            }
        finally:
            box.close()


class TestDefaultBudget:
    """With no budget configured, a gVisor host keeps as many sandboxes ready as a
    runc one: the default adds the Sentries of those the default is sized for."""

    def test_runc_keeps_the_documented_default(self) -> None:
        from runner.docker import DEFAULT_POOL_BUDGET_MB, default_pool_budget_mb

        assert default_pool_budget_mb(None) == default_pool_budget_mb("runc") == 2048.0
        assert DEFAULT_POOL_BUDGET_MB == 2048.0

    def test_gvisor_adds_the_sentries_of_the_same_sandboxes(self) -> None:
        from runner.docker import BUDGET_SIZED_FOR, default_pool_budget_mb, entry_mb

        runc = sum(n * entry_mb(f, None) for f, n in BUDGET_SIZED_FOR.items())
        gvisor = sum(n * entry_mb(f, "runsc") for f, n in BUDGET_SIZED_FOR.items())
        assert default_pool_budget_mb("runsc") - default_pool_budget_mb(None) == gvisor - runc
        assert default_pool_budget_mb("runsc") == default_pool_budget_mb("runsc-net") == 3452.0

    @pytest.mark.parametrize(("runtime", "budget"), [("runc", 2048), ("runsc", 3452)])
    def test_a_sandbox_without_a_budget_takes_its_runtimes_default(
        self, runtime: str, budget: int
    ) -> None:
        from runner.docker import DockerSandbox

        def unused() -> None:
            raise AssertionError("no engine call expected")

        # None explicitly: the test plugin gives other sandboxes a budget of 0.
        box = DockerSandbox(unused, image="img", runtime=runtime, pool_budget_mb=None)  # type: ignore[arg-type]
        assert box.stats()["pool_budget_mb"] == budget
        configured = DockerSandbox(unused, image="img", runtime=runtime, pool_budget_mb=100)  # type: ignore[arg-type]
        assert configured.stats()["pool_budget_mb"] == 100


@pytest.mark.parametrize(
    ("url", "reads_environment"),
    [("unix:///var/run/no-such-docker.sock", False), ("tcp://127.0.0.1:2375", True)],
)
def test_a_socket_client_does_not_read_the_environment_at_every_call(
    url: str, reads_environment: bool
) -> None:
    import docker

    from runner.docker import _without_environment

    api = docker.APIClient(base_url=url, version="1.41")
    try:
        assert _without_environment(api) is api
        assert api.trust_env is reads_environment
    finally:
        api.close()
