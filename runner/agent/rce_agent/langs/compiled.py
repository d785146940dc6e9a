"""Compiled languages: c, cpp, d, f90, rs, go; each builds one file in the build dir."""

from __future__ import annotations

import os

from rce_agent.langs.base import Plan, compile_and_run, write_source

#: A Go build cache warmed at image build time, copied to the build dir (Go needs a
#: writable cache and a cold one costs ~0.2 s).
GO_CACHE_SEED = "/opt/rce/gocache"


def _native(build_dir: str, source: str, code: str, compiler: list[str]) -> Plan:
    write_source(build_dir, source, code)
    exe = os.path.join(build_dir, "main")
    return compile_and_run(build_dir, [*compiler, "-o", exe, source], [exe])


def c(code: str, build_dir: str) -> Plan:
    """gcc, C17 with GNU extensions, linked with libm."""
    exe = os.path.join(build_dir, "main")
    write_source(build_dir, "main.c", code)
    return compile_and_run(
        build_dir, ["gcc", "-std=gnu17", "-O2", "-pipe", "-o", exe, "main.c", "-lm"], [exe]
    )


#: Precompiled ``<iostream>`` and ``<bits/stdc++.h>`` for exactly ``CPP_FLAGS``, built
#: at image build time; each sits beside a header that only ``#include_next``s the real
#: one, so a file whose first include is another header compiles as without them.
CPP_PCH_DIR = "/opt/rce/pch"
CPP_FLAGS = ["-std=gnu++17", "-O1"]


def cpp(code: str, build_dir: str) -> Plan:
    """g++, C++17 with GNU extensions, linked with libm; -O1 (-O2 doubles the compile
    time of iostream-heavy code), with the image's precompiled headers (a hello's
    compile costs about 40% of the CPU it costs without)."""
    exe = os.path.join(build_dir, "main")
    write_source(build_dir, "main.cpp", code)
    pch = ["-I", CPP_PCH_DIR] if os.path.isdir(CPP_PCH_DIR) else []
    return compile_and_run(
        build_dir, ["g++", *CPP_FLAGS, *pch, "-pipe", "-o", exe, "main.cpp", "-lm"], [exe]
    )


#: gold links a hello about 15-30% faster than ld.bfd (compile CPU of a hello: f90
#: 59 -> 41 ms, d 238 -> 208 ms; docs/benchmarks.md); under the sandbox's 0.5-CPU
#: quota that can save a whole 100 ms throttling period.
GOLD = "-fuse-ld=gold"


def d(code: str, build_dir: str) -> Plan:
    """gdc (GCC's D), -O1, linked by gold."""
    return _native(build_dir, "main.d", code, ["gdc", "-O1", "-pipe", GOLD])


def fortran(code: str, build_dir: str) -> Plan:
    """gfortran, free form, linked by gold; module files stay in the build dir (-J)."""
    return _native(build_dir, "main.f90", code, ["gfortran", "-O2", "-pipe", GOLD, "-J", build_dir])


#: rustc's flags beside the edition: -O1; std's debug info left out of the binary (the
#: program's own code has none; only a ``RUST_BACKTRACE`` of std's frames loses file
#: and line) and linked by gold. Together they halve a hello's compile CPU (236 -> 125
#: ms, docs/benchmarks.md). No ``-C prefer-dynamic``: the image has no libstd .so.
RUST_FLAGS = ["-C", "opt-level=1", "-C", "strip=debuginfo", "-C", "link-arg=-fuse-ld=gold"]


def rust(code: str, build_dir: str) -> Plan:
    """rustc (rustc-web), edition 2021."""
    return _native(build_dir, "main.rs", code, ["rustc", "--edition", "2021", *RUST_FLAGS])


#: The linker leaves out the symbol table and DWARF (``-s -w``): a hello's build costs
#: 310 ms of CPU instead of 425 (docs/benchmarks.md). Panics, stack traces and
#: ``runtime.Caller`` read the pclntab, which stays; only debuggers lose.
GO_LDFLAGS = "-ldflags=-s -w"


def go(code: str, build_dir: str) -> Plan:
    """``go build`` of the single file, with a writable cache seeded from the image."""
    write_source(build_dir, "main.go", code)
    exe = os.path.join(build_dir, "main")
    cache = os.path.join(build_dir, "gocache")
    plan = compile_and_run(build_dir, ["go", "build", GO_LDFLAGS, "-o", exe, "main.go"], [exe])
    seed = f"if [ -d {GO_CACHE_SEED} ]; then cp -R {GO_CACHE_SEED} {cache}; fi; "
    return Plan(
        argv=[plan.argv[0], plan.argv[1], seed + plan.argv[2], *plan.argv[3:]],
        env={"GOCACHE": cache, "GOPATH": os.path.join(build_dir, "gopath")},
    )
