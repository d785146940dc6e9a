"""A warm data interpreter: ``python3 pywarm.py FIFO``, started by the agent of the data
flavour before the job (``rce_agent.warm``, kind ``python``).

It imports the data libraries, says ``READY`` on its stdout and blocks on the FIFO.
The job (the program's path and arguments, JSON) makes it the program: the interpreter
state of a fresh ``python3 main.py args...`` (``pychild.run``), in this process.

Before, the agent imported the libraries itself and forked a child per job. Under
gVisor's ptrace platform that fork and the faults of the child's first writes to the
pages it shares with the agent cost more than a pandas groupby itself (in one runsc
container: fork and exit 190-210 ms, fork and groupby 330-420 ms, the groupby in the
importing process 150 ms); a process that imported the libraries itself writes to
pages of its own. Run as a script by the agent, never imported.
"""

import os
import sys

# Python put this package's folder first on sys.path: import the package by name from
# its parent instead (what the agent's __main__ does).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from rce_agent import pychild  # noqa: E402 - after the path fix above
from rce_agent.wire import READY  # noqa: E402


def _preload_quietly() -> None:
    """Import the data libraries with stdout and stderr on /dev/null: what they print
    while loading belongs to no program (a cold program importing them prints it
    itself, as the forked child of a preloading agent did not)."""
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        pychild.preload(pychild.PRELOAD_MODULES)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def main() -> None:
    """Preload, say ready, read the job to EOF, run it as ``__main__``; never returns."""
    _preload_quietly()
    fd = os.open(sys.argv[1], os.O_RDONLY)
    os.write(1, READY)
    pychild.run_fed(fd, dict(os.environ))


main()
