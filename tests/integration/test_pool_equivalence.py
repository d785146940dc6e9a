"""A program behaves the same in a forked child of the agent as under ``python3 main.py``.

Each program runs as ``python3 main.py`` in a fresh container (the reference) and
in a forked child of the agent, in each of the ways a run gets one: a cold start
(LIGHT agent), a warm LIGHT container, and a warm DATA container (an agent that
preloaded numpy, pandas and matplotlib); stdout, stderr, the exit code and the
output files must be identical.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from runner.base import Language, Limits, RunResult
from runner.docker import DockerSandbox
from tests.support.docker_plugin import execute, input_file

pytestmark = pytest.mark.docker

PROGRAMS: dict[str, str] = {
    "print": "print('hello', 42)\n",
    "stderr_interleaved_flushed": (
        "import sys\n"
        "for i in range(3):\n"
        "    print('out', i, flush=True)\n"
        "    print('err', i, file=sys.stderr, flush=True)\n"
    ),
    "stdout_block_buffered": "import os\nprint('buffered')\nos.write(1, b'direct\\n')\n",
    "stderr_line_buffered": (
        "import os, sys\nsys.stderr.write('partial')\nos.write(2, b'[direct]')\n"
        "sys.stderr.write(' line\\n')\nos.write(2, b'after\\n')\n"
    ),
    "big_unflushed_then_os_exit": "import os\nprint('x' * 5000)\nprint('tail')\nos._exit(0)\n",
    "exit_3": "import sys\nprint('before')\nsys.exit(3)\n",
    "exit_message": "import sys\nsys.exit('something went wrong')\n",
    "exit_none": "raise SystemExit\n",
    "exit_256_and_negative": "import sys\nsys.exit(256 + 7)\n",
    "exit_minus_one": "raise SystemExit(-1)\n",
    "exit_builtin": "exit(4)\n",
    "value_error": (
        "def inner():\n    raise ValueError('bad value')\n\n"
        "def outer():\n    inner()\n\nprint('start')\nouter()\n"
    ),
    "chained_exception": (
        "try:\n    1 / 0\nexcept ZeroDivisionError as exc:\n    raise KeyError('k') from exc\n"
    ),
    "syntax_error": "print('never')\ndef broken(:\n    pass\n",
    "indentation_error": "if True:\nprint('x')\n",
    "keyboard_interrupt": "print('going')\nraise KeyboardInterrupt\n",
    "custom_excepthook": (
        "import sys\n"
        "def hook(kind, value, tb):\n"
        "    print('hooked:', kind.__name__, value, tb.tb_frame.f_code.co_name, file=sys.stderr)\n"
        "sys.excepthook = hook\nraise RuntimeError('via hook')\n"
    ),
    "recursion_error": "def f(n):\n    return f(n + 1)\n\nf(0)\n",
    "identity": (
        "import os, sys\n"
        "print(__name__, __file__, __doc__, __package__, __spec__, __cached__)\n"
        "print(type(__loader__).__name__, __loader__.name, type(__builtins__).__name__)\n"
        "print(list(globals()))\n"
        "print(sys.argv, sys.orig_argv, sys.path[:2], os.getcwd())\n"
        "import __main__\nprint(__main__.__dict__ is globals())\n"
    ),
    "docstring_and_annotations": '"""Module doc."""\nx: int = 1\nprint(__doc__, __annotations__)\n',
    "environment": (
        "import os, getpass\n"
        "print(sorted(k for k in os.environ if k.startswith(('RCE', 'PYTHON'))))\n"
        "print(os.environ.get('PYTHONPATH'), os.environ['HOME'], getpass.getuser())\n"
    ),
    "stdio_objects": (
        "import sys\n"
        "for s in (sys.stdin, sys.stdout, sys.stderr):\n"
        "    print(s.name, s.mode, s.encoding, s.errors, s.line_buffering, s.isatty(),\n"
        "          s.buffer.raw.name, type(s.buffer).__name__)\n"
        "print(sys.stdin is sys.__stdin__, sys.stdout is sys.__stdout__)\n"
    ),
    "stdin_is_empty": "import sys\nprint(repr(sys.stdin.read()))\ninput('prompt> ')\n",
    "signals_and_flags": (
        "import signal, sys\n"
        "print(signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGPIPE))\n"
        "print(sys.flags)\n"
    ),
    "process_session": (
        "import os\nprint(os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())\n"
    ),
    "atexit": (
        "import atexit\n"
        "atexit.register(print, 'registered first, runs last')\n"
        "atexit.register(print, 'registered last, runs first')\n"
        "print('main done')\n"
    ),
    "atexit_after_exception": (
        "import atexit\natexit.register(print, 'atexit still runs')\nraise OSError('oops')\n"
    ),
    "atexit_raising": (
        "import atexit\ndef bad():\n    raise ValueError('in atexit')\n"
        "atexit.register(bad)\nprint('ok')\n"
    ),
    "threads_joined": (
        "import threading, time\n"
        "def work():\n    time.sleep(0.3)\n    print('worker done')\n"
        "threading.Thread(target=work).start()\n"
        "threading.Thread(target=lambda: time.sleep(60), daemon=True).start()\n"
        "print('main done')\n"
    ),
    "thread_exception": (
        "import threading\n"
        "def boom():\n    raise ValueError('in thread')\n"
        "t = threading.Thread(target=boom, name='T1')\nt.start()\nt.join()\nprint('after')\n"
    ),
    "subprocess_echo": (
        "import subprocess\n"
        "done = subprocess.run(['echo', 'from child'], capture_output=True, text=True)\n"
        "print(done.stdout, end='')\n"
        "subprocess.run(['sh', '-c', 'echo inherited; echo inherited-err >&2'])\n"
    ),
    "unclosed_file_and_del_at_exit": (
        "class Noisy:\n    def __del__(self):\n        print('finalized')\n"
        "keep = Noisy()\n"
        "f = open('unclosed.txt', 'w')\nf.write('written but never closed')\n"
    ),
    "warnings": (
        "import warnings\nwarnings.warn('careful')\n"
        "def f():\n    warnings.warn('deprecated thing', DeprecationWarning, stacklevel=2)\nf()\n"
    ),
    "closed_stdout": "import sys\nprint('a')\nsys.stdout.close()\nprint('b')\n",
    "import_uploaded_module": "import helper\nprint(helper.VALUE)\n",
    "numpy_pandas": (
        "import numpy as np, pandas as pd\n"
        "df = pd.DataFrame({'a': np.arange(5), 'b': np.linspace(0, 1, 5)})\n"
        "print(df.describe().round(3))\n"
        "df.to_csv('out.csv', index=False)\n"
        "print(np.array([1, 2]) @ np.array([3, 4]))\n"
    ),
    "matplotlib": (
        "import matplotlib\nimport matplotlib.pyplot as plt\n"
        "print(matplotlib.get_backend())\n"
        "plt.plot([1, 2, 3])\nplt.savefig('plot.png')\nprint('saved')\n"
    ),
    "gc": "import gc\nprint(gc.isenabled(), gc.get_threshold())\n",
}

HELPER = input_file("helper.py", b"VALUE = 'imported from /mnt/data'\n")


@pytest.fixture(scope="module")
def cold(
    docker_client: docker.DockerClient, sandbox_image: str, run_labels: dict[str, str]
) -> Iterator[DockerSandbox]:
    """The reference: Python runs as a fresh ``python3 main.py``."""
    box = DockerSandbox(docker_client, image=sandbox_image, labels=run_labels, cold_flavour=None)
    yield box
    box.close()


#: How the forked child is reached: DockerSandbox arguments.
FORKED = {
    "cold_light": {},
    "warm_light": {"pool_size": 2, "pool_limits": Limits()},
    # Without a LIGHT pool, the DATA pool serves every request.
    "warm_data": {"pool_data_size": 2, "pool_limits": Limits()},
}


@pytest.fixture(scope="module", params=sorted(FORKED))
def pooled(
    request: pytest.FixtureRequest,
    docker_client: docker.DockerClient,
    sandbox_image: str,
    run_labels: dict[str, str],
) -> Iterator[DockerSandbox]:
    """A sandbox whose Python runs in a forked child of the agent."""
    args: dict[str, Any] = FORKED[request.param]
    box = DockerSandbox(docker_client, image=sandbox_image, labels=run_labels, **args)
    yield box
    box.close()


_ADDRESS = re.compile(r"0x[0-9a-f]{6,}")


def observed(result: RunResult) -> tuple[str, str, int, dict[str, bytes]]:
    """What a user sees, with object addresses (random in both modes) masked."""
    files = {o.name: o.data.read() for o in result.outputs}
    result.close()
    return _mask(result.stdout), _mask(result.stderr), result.exit_code, files


def _mask(text: str) -> str:
    return _ADDRESS.sub("0x?", text)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_pooled_run_matches_cold_run(name: str, cold: DockerSandbox, pooled: DockerSandbox) -> None:
    code = PROGRAMS[name]
    cold_result = observed(execute(cold, code, files=(HELPER,), args=("x", "y z")))
    pooled_result = observed(execute(pooled, code, files=(HELPER,), args=("x", "y z")))
    assert pooled_result == cold_result


def test_bash_is_the_same_in_both(cold: DockerSandbox, pooled: DockerSandbox) -> None:
    code = 'echo "$0" "$@"; pwd; echo err >&2; exit 5\n'
    results = [
        observed(execute(box, code, lang=Language.BASH, args=("a",))) for box in (cold, pooled)
    ]
    assert results[0] == results[1]
    assert results[0][1:3] == ("err\n", 5)


FONT_LIST = (
    "import logging, os\n"
    "logging.basicConfig(level=logging.INFO)\n"
    "import matplotlib\n"
    "print([n for n in os.listdir(matplotlib.get_cachedir()) if n.startswith('fontlist-')])\n"
    "import matplotlib.pyplot\n"
)


def test_matplotlib_finds_the_images_font_list(cold: DockerSandbox, pooled: DockerSandbox) -> None:
    """The agent copied the image's font list into the fresh cache folder before the
    program: matplotlib reads it instead of running fc-list over every font again."""
    for box in (cold, pooled):
        out, err, code, _ = observed(execute(box, FONT_LIST))
        assert code == 0, err
        assert out.startswith("['fontlist-v"), out
        assert "generated new fontManager" not in err
