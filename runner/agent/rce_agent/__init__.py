"""The rce sandbox agent: the process a sandbox container starts; it runs one job.

It runs INSIDE the sandbox image (Debian bookworm's Python 3.11, standard library
only), as uid 1000 and as the container's PID 1, with a read-only root, ``/mnt/data``
and ``/tmp`` on noexec tmpfs, a private exec-able build tmpfs (``/var/rce``) and no
network. Nothing it reports is trusted by the host, which re-validates every name,
size and count.

Modules, one per concern:

- ``wire``: the job and reply framing (see its docstring for the protocol);
- ``restore``: unpacking the input files into ``/mnt/data``;
- ``supervise``: hardening of the agent, spawning, time limits, reaping, capture;
- ``collect``: walking ``/mnt/data`` for new and changed files;
- ``langs``: one runner per language (what to write, compile and run);
- ``pychild``: running Python in a forked child of a warm agent;
- ``main``: the job, start to end.

Every sandbox pays for the agent's imports at its start, before its job: the modules
on that path import neither ``typing`` nor ``dataclasses`` (with ``inspect``), which
cost about 12 ms of CPU per sandbox in the image, nor ``re``, ``enum`` and ``json``,
about 6 ms more (``signal`` is used through its C module ``_signal``, JSON through
``_json``: see ``wire``). Records are plain classes (``langs.base.Record``), and
annotations name ``typing`` only under a module-level ``TYPE_CHECKING = False``,
which type checkers read as ``typing.TYPE_CHECKING``
(tests/unit/agent/test_agent_imports.py).
"""
