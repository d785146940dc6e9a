"""The ``Sandbox`` port and its value types.

A ``Sandbox`` runs one job in a brand-new container that no other job has touched,
and destroys it afterwards. It restores the input files into ``/mnt/data``, runs
the code there, and returns what the program printed and the files it created,
changed or deleted. A failure of the user's program is a ``RunResult``; only a
failure of the engine raises (a ``core.errors.SandboxError``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO, Protocol

from core.errors import UnsupportedLanguage


class Language(StrEnum):
    """Languages the sandbox runs: LibreChat's ``SUPPORTED_LANGUAGES``."""

    PYTHON = "py"
    JAVASCRIPT = "js"
    TYPESCRIPT = "ts"
    C = "c"
    CPP = "cpp"
    JAVA = "java"
    PHP = "php"
    RUST = "rs"
    GO = "go"
    D = "d"
    FORTRAN = "f90"
    R = "r"
    BASH = "bash"


_ALIASES: dict[str, Language] = {
    **{lang.value: lang for lang in Language},
    "python": Language.PYTHON,
    "python3": Language.PYTHON,
    "javascript": Language.JAVASCRIPT,
    "node": Language.JAVASCRIPT,
    "nodejs": Language.JAVASCRIPT,
    "typescript": Language.TYPESCRIPT,
    "c++": Language.CPP,
    "cxx": Language.CPP,
    "rust": Language.RUST,
    "golang": Language.GO,
    "dlang": Language.D,
    "fortran": Language.FORTRAN,
    "f95": Language.FORTRAN,
    "rlang": Language.R,
    "sh": Language.BASH,
    "shell": Language.BASH,
}
SUPPORTED_LANGUAGES = tuple(sorted(_ALIASES))


def parse_language(lang: str) -> Language:
    """The ``Language`` for ``lang``, or ``UnsupportedLanguage`` naming the choices."""
    try:
        return _ALIASES[lang.strip().lower()]
    except KeyError:
        raise UnsupportedLanguage(
            f"lang {lang[:40]!r} is not supported; use one of: "
            f"{', '.join(item.value for item in Language)} (aliases: "
            f"{', '.join(a for a in SUPPORTED_LANGUAGES if a not in set(Language))})"
        ) from None


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit of one run, with its unit in its name."""

    run_timeout_s: float = 30.0
    memory_limit_bytes: int = 512 * 1024 * 1024
    #: CPU in nano-CPUs (1e9 = one core), as the original RCE_CPU_LIMIT.
    nano_cpus: int = 500_000_000
    pids_limit: int = 128
    #: Cap on stdout and on stderr, each.
    max_output_bytes: int = 1_000_000
    #: Largest output file collected; larger ones are skipped and named.
    max_file_bytes: int = 50 * 1024 * 1024
    #: Most output files collected; the rest are skipped and named.
    max_files: int = 100
    #: Size of the writable /mnt/data tmpfs.
    workspace_bytes: int = 512 * 1024 * 1024
    #: Size of the writable /tmp tmpfs.
    tmp_bytes: int = 64 * 1024 * 1024
    #: RLIMIT_NOFILE.
    max_open_files: int = 1024
    network_enabled: bool = False


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file to restore at ``/mnt/data/<name>`` before the code runs."""

    name: str
    size: int
    sha256: str
    #: Opens the bytes for streaming; the iterator is exhausted or closed by the sandbox.
    #: If the iterator has an int ``size`` attribute, that is the length of the version
    #: it actually opened (the file may have been replaced since ``size`` was read).
    open: Callable[[], Iterator[bytes]]


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One job: code, its arguments and the files it starts with."""

    language: Language
    code: str
    args: tuple[str, ...] = ()
    files: tuple[InputFile, ...] = ()
    limits: Limits = field(default_factory=Limits)
    #: Request id, for logs and container labels.
    exec_id: str = ""


@dataclass(slots=True)
class OutputFile:
    """A file the program created or changed under /mnt/data.

    ``data`` is a spooled temporary file positioned at 0; ``RunResult.close()``
    releases it.
    """

    name: str
    size: int
    sha256: str
    data: BinaryIO


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """An output left out of the result, and why (too large, too many, not regular)."""

    name: str
    reason: str


@dataclass(slots=True)
class RunResult:
    """What one run produced. A non-zero exit is a result, not an error."""

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool = False
    oom_killed: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    outputs: list[OutputFile] = field(default_factory=list)
    #: Input names that no longer exist after the run.
    deleted: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    duration_s: float = 0.0

    def close(self) -> None:
        """Release the spooled output files."""
        for out in self.outputs:
            out.data.close()


class Sandbox(Protocol):
    """Runs jobs, each in a fresh container that is destroyed afterwards."""

    def run(self, request: RunRequest) -> RunResult:
        """Run one job to completion (or to its timeout) and destroy its container.

        Raises ``SandboxUnavailable``, ``SandboxImageMissing`` or
        ``SandboxStartFailed`` when the engine fails; never for the program's own
        failures.
        """
        ...

    def ping(self) -> None:
        """Raise ``SandboxError`` unless the engine answers (readiness)."""
        ...

    def reap(self) -> int:
        """Remove this service's containers that outlived their deadline; return how many."""
        ...

    def close(self) -> None:
        """Release resources (drain a warm pool). Idempotent."""
        ...
