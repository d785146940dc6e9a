"""Java 17: whatever its public class is called.

The source launcher (``java Name.java``, one JVM, compiles in memory) runs the
first top-level class of the file; when that is not the class to run (a helper
declared before the public class), ``javac`` then ``java`` run the public class.
JVM flags favour start-up: C1 only, the serial GC, no perf data file, and the
image's application class-data-sharing archive of the source launcher (javac's
classes; it halves the CPU a hello costs). The JVM's own warnings go to stderr, so a
stale archive can never print into the program's stdout.
"""

from __future__ import annotations

import os

from rce_agent.langs.base import Plan, WarmRun, compile_and_run, write_source

#: Made at image build time by one source-launcher run with these flags.
JAVA_CDS_ARCHIVE = "/opt/rce/java.jsa"
BASE_JVM_FLAGS = [
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-XX:-UsePerfData",
    "-XX:MaxRAMPercentage=60",
    "-Xshare:auto",
    "-Xlog:disable",
    "-Xlog:all=warning:stderr",
]


def jvm_flags() -> list[str]:
    """The JVM flags, with the image's CDS archive when there is one."""
    if os.path.isfile(JAVA_CDS_ARCHIVE):
        return [*BASE_JVM_FLAGS, f"-XX:SharedArchiveFile={JAVA_CDS_ARCHIVE}"]
    return list(BASE_JVM_FLAGS)


#: The patterns below, as ``re`` source (compiled at the first java job: ``re`` costs
#: every sandbox about 2 ms of CPU at its start).
_TOP_LEVEL = (
    r"^(?P<mods>(?:(?:public|final|abstract|sealed|non-sealed|strictfp)\s+)*)"
    r"(?:class|interface|enum|record)\s+(?P<name>[A-Za-z_$][\w$]*)"
)
_PACKAGE = r"^\s*package\s+([\w.]+)\s*;"
_COMMENTS = r"/\*.*?\*/|//[^\n]*"


def classes(code: str) -> tuple[str | None, str | None, str | None]:
    """(first top-level type, public top-level type, package) of ``code``, by a
    line-start heuristic that ignores comments."""
    import re

    text = re.sub(_COMMENTS, " ", code, flags=re.DOTALL)
    first = public = None
    for match in re.finditer(_TOP_LEVEL, text, re.MULTILINE):
        first = first or match["name"]
        if public is None and "public" in match["mods"].split():
            public = match["name"]
    package = re.search(_PACKAGE, text, re.MULTILINE)
    return first, public, package[1] if package else None


def java(code: str, build_dir: str) -> Plan:
    first, public, package = classes(code)
    name = public or first or "Main"
    source = f"{name}.java"
    path = write_source(build_dir, source, code)
    flags = jvm_flags()
    if public is None or public == first:
        return Plan(argv=["java", *flags, path], warm=WarmRun("java", path))
    out = os.path.join(build_dir, "classes")
    qualified = f"{package}.{name}" if package else name
    return compile_and_run(
        build_dir,
        ["javac", *(f"-J{flag}" for flag in flags), "-d", out, source],
        ["java", *flags, "-cp", out, qualified],
    )
