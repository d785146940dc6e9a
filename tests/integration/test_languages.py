"""Every LibreChat language on the real engine: the conformance table.

Per language: hello, arguments, reading an input file, writing an output file (which
comes back while the build products do not), a compile (or syntax) error, a runtime
error with its exit code, a timeout and the memory limit. Every language runs in a
warm LIGHT container (one pool serves every language; it is also where R, js and ts
fall back); R, js and ts also run in their own warm flavours, where an interpreter
started before the job runs the program.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import docker
import pytest

from runner.base import Language, Limits
from runner.docker import DockerSandbox
from tests.support.docker_plugin import UNDER_GVISOR, execute, input_file

pytestmark = [pytest.mark.docker, pytest.mark.slow]

C_MAIN = "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
CPP_MAIN = "#include <iostream>\n#include <fstream>\n#include <string>\n#include <vector>\n"

# lang -> {case: code}. Cases: hello, args (print them joined by "|"), read (print
# in.txt), write (codebook.csv = "a,b"), broken (does not compile/parse), exit3
# (ends with status 3), loop (never ends), memory (touches 1 GiB).
PROGRAMS: dict[str, dict[str, str]] = {
    "py": {
        "hello": "print('hello')",
        "args": "import sys; print('|'.join(sys.argv[1:]))",
        "read": "print(open('in.txt').read(), end='')",
        "write": "open('codebook.csv', 'w').write('a,b')",
        "broken": "def f(:\n",
        "exit3": "import sys; sys.exit(3)",
        "loop": "while True: pass",
        "memory": "x = bytearray(1 << 30)\nfor i in range(0, len(x), 4096): x[i] = 1",
    },
    "bash": {
        "hello": "echo hello",
        "args": 'IFS="|"; echo "$*"',
        "read": "cat in.txt",
        "write": "printf a,b > codebook.csv",
        "broken": "if then fi (",
        "exit3": "exit 3",
        "loop": "while :; do :; done",
        "memory": "x=$(head -c 1073741824 /dev/zero | tr '\\0' x); echo ${#x}",
    },
    "js": {
        "hello": "console.log('hello')",
        "args": "console.log(process.argv.slice(2).join('|'))",
        "read": "process.stdout.write(require('fs').readFileSync('in.txt', 'utf8'))",
        "write": "require('fs').writeFileSync('codebook.csv', 'a,b')",
        "broken": "function (",
        "exit3": "process.exit(3)",
        "loop": "for (;;) {}",
        "memory": "const a = []; for (;;) a.push(new Array(1e6).fill(1.5));",
    },
    "ts": {
        "hello": "const s: string = 'hello'; console.log(s)",
        "args": "const a: string[] = process.argv.slice(2); console.log(a.join('|'))",
        "read": "import * as fs from 'fs';\nprocess.stdout.write(fs.readFileSync('in.txt', 'utf8'))",  # noqa: E501
        "write": "import * as fs from 'fs';\nfs.writeFileSync('codebook.csv', 'a,b')",
        "broken": "const x: = 1",
        "exit3": "process.exit(3)",
        "loop": "for (;;) {}",
        "memory": "const a: number[][] = []; for (;;) a.push(new Array(1e6).fill(1.5));",
    },
    "c": {
        "hello": C_MAIN + 'int main(void){ puts("hello"); return 0; }',
        "args": C_MAIN + "int main(int c, char **v){ for (int i = 1; i < c; i++)"
        ' printf("%s%s", v[i], i + 1 < c ? "|" : "\\n"); return 0; }',
        "read": C_MAIN + 'int main(void){ FILE *f = fopen("in.txt", "r"); int ch;'
        " while ((ch = fgetc(f)) != EOF) putchar(ch); return 0; }",
        "write": C_MAIN + 'int main(void){ FILE *f = fopen("codebook.csv", "w");'
        ' fputs("a,b", f); fclose(f); return 0; }',
        "broken": "int main(void) { return x; }",
        "exit3": C_MAIN + "int main(void){ exit(3); }",
        "loop": "int main(void){ volatile int x = 0; for (;;) x++; }",
        "memory": C_MAIN + "int main(void){ size_t n = 1UL << 30; volatile char *p = malloc(n);"
        ' for (size_t i = 0; i < n; i += 4096) p[i] = 1; printf("%d\\n", p[0]); return 0; }',
    },
    "cpp": {
        "hello": CPP_MAIN + 'int main(){ std::cout << "hello" << std::endl; }',
        "args": CPP_MAIN + "int main(int c, char **v){ for (int i = 1; i < c; i++)"
        ' std::cout << v[i] << (i + 1 < c ? "|" : "\\n"); }',
        "read": CPP_MAIN + 'int main(){ std::ifstream f("in.txt"); std::cout << f.rdbuf(); }',
        "write": CPP_MAIN + 'int main(){ std::ofstream f("codebook.csv"); f << "a,b"; }',
        "broken": "int main() { return x; }",
        "exit3": CPP_MAIN + "int main(){ return 3; }",
        "loop": "int main(){ volatile int x = 0; for (;;) x++; }",
        "memory": CPP_MAIN + "int main(){ std::vector<char> v(1UL << 30, 1);"
        " std::cout << int(v.back()) << std::endl; }",
    },
    "java": {
        "hello": "public class Main { public static void main(String[] a) {"
        ' System.out.println("hello"); } }',
        "args": "class Helper {}\npublic class Greeter { public static void main(String[] a) {"
        ' System.out.println(String.join("|", a)); } }',
        "read": "import java.nio.file.*;\npublic class Reader { public static void main(String[] a)"
        ' throws Exception { System.out.print(Files.readString(Path.of("in.txt"))); } }',
        "write": "import java.nio.file.*;\npublic class W { public static void main(String[] a)"
        ' throws Exception { Files.writeString(Path.of("codebook.csv"), "a,b"); } }',
        "broken": "public class Main { public static void main(String[] a) { int x = ; } }",
        "exit3": "public class Main { public static void main(String[] a) { System.exit(3); } }",
        "loop": "public class Main { public static void main(String[] a) { for (;;) {} } }",
        "memory": "import java.util.*;\npublic class Main { public static void main(String[] a) {"
        " List<long[]> l = new ArrayList<>(); for (;;) l.add(new long[1 << 20]); } }",
    },
    "php": {
        "hello": '<?php echo "hello\\n";',
        "args": "<?php echo implode('|', array_slice($argv, 1)), \"\\n\";",
        "read": "<?php echo file_get_contents('in.txt');",
        "write": "<?php file_put_contents('codebook.csv', 'a,b');",
        "broken": "<?php function (",
        "exit3": "<?php exit(3);",
        "loop": "<?php for (;;) {}",
        "memory": "<?php ini_set('memory_limit', '-1'); $s = str_repeat('x', 1 << 30); echo strlen($s);",  # noqa: E501
    },
    "rs": {
        "hello": 'fn main() { println!("hello"); }',
        "args": "fn main() { let a: Vec<String> = std::env::args().skip(1).collect();"
        ' println!("{}", a.join("|")); }',
        "read": 'fn main() { print!("{}", std::fs::read_to_string("in.txt").unwrap()); }',
        "write": 'fn main() { std::fs::write("codebook.csv", "a,b").unwrap(); }',
        "broken": "fn main() { let x: i32 = ; }",
        "exit3": "fn main() { std::process::exit(3); }",
        "loop": "fn main() { let mut x: u64 = 0; loop { x = std::hint::black_box(x + 1); } }",
        "memory": 'fn main() { let v = vec![1u8; 1 << 30]; println!("{}", v[v.len() - 1]); }',
    },
    "go": {
        "hello": 'package main\nimport "fmt"\nfunc main() { fmt.Println("hello") }',
        "args": 'package main\nimport ("fmt"; "os"; "strings")\n'
        'func main() { fmt.Println(strings.Join(os.Args[1:], "|")) }',
        "read": 'package main\nimport ("fmt"; "os")\n'
        'func main() { b, _ := os.ReadFile("in.txt"); fmt.Print(string(b)) }',
        "write": 'package main\nimport "os"\nfunc main() { os.WriteFile("codebook.csv", []byte("a,b"), 0644) }',  # noqa: E501
        "broken": "package main\nfunc main() { x := }",
        "exit3": 'package main\nimport "os"\nfunc main() { os.Exit(3) }',
        "loop": "package main\nfunc main() { for {} }",
        "memory": 'package main\nimport "fmt"\nfunc main() { b := make([]byte, 1<<30);'
        " for i := range b { b[i] = 1 }; fmt.Println(b[len(b)-1]) }",
    },
    "d": {
        "hello": 'import std.stdio; void main() { writeln("hello"); }',
        "args": 'import std.stdio, std.array; void main(string[] a) { writeln(a[1 .. $].join("|")); }',  # noqa: E501
        "read": 'import std.stdio, std.file; void main() { write(readText("in.txt")); }',
        "write": 'import std.file; void main() { write("codebook.csv", "a,b"); }',
        "broken": "void main() { int x = ; }",
        "exit3": "int main() { return 3; }",
        "loop": "void main() { for (;;) {} }",
        "memory": "import std.stdio; void main() { auto a = new ubyte[1 << 30];"
        " a[] = 1; writeln(a[$ - 1]); }",
    },
    "f90": {
        "hello": "program h\n  print '(a)', 'hello'\nend program h",
        "args": "program a\n  character(len=64) :: x, y\n  call get_command_argument(1, x)\n"
        "  call get_command_argument(2, y)\n  print '(a)', trim(x) // '|' // trim(y)\nend program a",  # noqa: E501
        "read": "program r\n  character(len=64) :: line\n  open(10, file='in.txt')\n"
        "  read(10, '(a)') line\n  print '(a)', trim(line)\nend program r",
        "write": "program w\n  open(10, file='codebook.csv', status='replace', access='stream')\n"
        "  write(10) 'a,b'\n  close(10)\nend program w",
        "broken": "program b\n  x = = 1\nend program b",
        "exit3": "program e\n  stop 3\nend program e",
        "loop": "program l\n  integer :: i\n  i = 0\n  do\n    i = i + 1\n  end do\nend program l",
        "memory": "program m\n  integer(1), allocatable :: a(:)\n  allocate(a(1073741824))\n"
        "  a = 1\n  print *, a(1073741824)\nend program m",
    },
    "r": {
        "hello": "cat('hello\\n')",
        "args": "cat(paste(commandArgs(trailingOnly = TRUE), collapse = '|'), '\\n', sep = '')",
        "read": "cat(readLines('in.txt'), sep = '\\n')",
        "write": "cat('a,b', file = 'codebook.csv')",
        "broken": "f <- function( {",
        "exit3": "quit(status = 3)",
        "loop": "repeat {}",
        "memory": "x <- numeric(2^27); y <- numeric(2^27); cat(length(x) + length(y), '\\n')",
    },
}
LANGS = [lang.value for lang in Language]


def test_the_table_covers_every_language() -> None:
    assert sorted(PROGRAMS) == sorted(LANGS)


#: Languages with a warm flavour of their own (an interpreter waiting for the job).
WARM_LANGS = ["js", "ts", "r", "java"]
#: (language, pool): every language in the LIGHT pool, those above in their own too.
CASES = [(lang, "light") for lang in LANGS] + [(lang, "own") for lang in WARM_LANGS]


@pytest.fixture(scope="module")
def warm(
    docker_client: docker.DockerClient, sandbox_image: str, run_labels: dict[str, str]
) -> Iterator[DockerSandbox]:
    """A LIGHT pool of one only: every language runs there, started by the agent."""
    box = DockerSandbox(
        docker_client,
        image=sandbox_image,
        labels=run_labels,
        pool_size=1,
        pool_limits=Limits(),
        language_pools=False,
    )
    yield box
    box.close()


@pytest.fixture(scope="module")
def warm_own(
    docker_client: docker.DockerClient, sandbox_image: str, run_labels: dict[str, str]
) -> Iterator[DockerSandbox]:
    """A warm R, node and JVM kept ready (floors of 1)."""
    box = DockerSandbox(
        docker_client,
        image=sandbox_image,
        labels=run_labels,
        pool_size=1,
        pool_r_size=1,
        pool_node_size=1,
        pool_java_size=1,
        pool_limits=Limits(),
    )
    yield box
    box.close()


@pytest.fixture
def box(request: pytest.FixtureRequest, pool: str) -> DockerSandbox:
    """The sandbox of the case's pool; the own pools are full before each run, so the
    run takes a container of its language's flavour."""
    if pool == "light":
        return request.getfixturevalue("warm")  # type: ignore[no-any-return]
    own: DockerSandbox = request.getfixturevalue("warm_own")
    assert own.wait_pool_ready(120)
    return own


def run(box: DockerSandbox, lang: str, case: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return execute(box, PROGRAMS[lang][case], lang=Language(lang), **kwargs)  # type: ignore[arg-type]


def test_the_own_flavour_serves_its_languages(warm_own: DockerSandbox) -> None:
    """R, js, ts and java hit the pools of their flavours (and not the LIGHT one)."""
    for lang, flavour in (("r", "r"), ("js", "node"), ("ts", "node"), ("java", "java")):
        assert warm_own.wait_pool_ready(120)
        before = warm_own.stats()
        result = run(warm_own, lang, "hello")
        assert (result.exit_code, result.stdout) == (0, "hello\n"), result.stderr
        after = warm_own.stats()
        assert after[f"pool_hits_{flavour}"] == before[f"pool_hits_{flavour}"] + 1, lang
        assert after["pool_hits_light"] == before["pool_hits_light"], lang


@pytest.mark.parametrize(("lang", "pool"), CASES)
class TestConformance:
    def test_hello(self, box: DockerSandbox, lang: str) -> None:
        result = run(box, lang, "hello")
        assert (result.exit_code, result.stdout) == (0, "hello\n"), result.stderr
        assert not result.outputs

    def test_arguments_reach_the_program(self, box: DockerSandbox, lang: str) -> None:
        result = run(box, lang, "args", args=("a b", "c"))
        assert (result.exit_code, result.stdout) == (0, "a b|c\n"), result.stderr

    def test_an_input_file_is_readable_in_the_working_directory(
        self, box: DockerSandbox, lang: str
    ) -> None:
        result = run(box, lang, "read", files=(input_file("in.txt", b"from input\n"),))
        assert (result.exit_code, result.stdout) == (0, "from input\n"), result.stderr
        assert not result.outputs and not result.deleted

    def test_only_the_files_the_program_writes_come_back(
        self, box: DockerSandbox, lang: str
    ) -> None:
        result = run(box, lang, "write")
        assert result.exit_code == 0, result.stderr
        assert {o.name: o.data.read() for o in result.outputs} == {"codebook.csv": b"a,b"}
        assert not result.skipped
        result.close()

    def test_a_compile_error_is_a_result_with_the_diagnostics(
        self, box: DockerSandbox, lang: str
    ) -> None:
        result = run(box, lang, "broken")
        assert result.exit_code != 0 and result.stderr.strip(), result
        assert not result.outputs and not result.timed_out

    def test_a_runtime_exit_code_is_reported(self, box: DockerSandbox, lang: str) -> None:
        result = run(box, lang, "exit3")
        assert result.exit_code == 3, result

    def test_an_endless_program_times_out(self, box: DockerSandbox, lang: str) -> None:
        result = run(box, lang, "loop", run_timeout_s=8)
        assert result.timed_out and result.exit_code != 0, result
        assert "run time limit of 8 s" in result.stderr

    def test_the_memory_limit_stops_a_memory_hog(self, box: DockerSandbox, lang: str) -> None:
        result = run(box, lang, "memory")
        if UNDER_GVISOR and lang == "bash":
            # Under gVisor (ptrace) a pipe moves 100 MB in 25 s (2 s under runc), so
            # bash cannot build 512 MiB within the run: the run limit holds instead.
            assert result.exit_code != 0 and (result.timed_out or result.oom_killed), result
            return
        assert result.exit_code != 0 and not result.timed_out, result
        text = result.stderr.lower()
        if UNDER_GVISOR and "agent exit code 137" in text:
            # The cgroup's OOM kill can take the whole gVisor sandbox (its kernel with
            # the agent), which the engine does not always flag as OOMKilled.
            return
        assert result.oom_killed or "memory" in text or "alloc" in text, result.stderr[-2000:]


DEEP_PROGRAM = """\
import os
open('kept.txt', 'w').write('kept')
for i in range(40):
    name = f'{i:03d}' + 'd' * 117
    os.mkdir(name)
    os.chdir(name)
open('ok.txt', 'w').write('deep')
print('written')
"""


def test_an_output_with_a_name_over_the_limit_is_skipped_and_the_others_come_back(
    warm: DockerSandbox,
) -> None:
    """A path longer than any store keeps (40 levels of 120-byte directories) costs
    only that file: it is listed as skipped with the reason, the other output returns."""
    result = execute(warm, DEEP_PROGRAM, lang=Language.PYTHON)
    assert (result.exit_code, result.stdout) == (0, "written\n"), result.stderr
    assert {o.name: o.data.read() for o in result.outputs} == {"kept.txt": b"kept"}
    [skip] = result.skipped
    assert skip.name.startswith("000" + "d" * 117 + "/001")
    assert "longer than" in skip.reason, skip.reason
    result.close()


#: Programs whose whole output must not depend on the pool that ran them.
SAME_EITHER_WAY = {
    "r": [
        "print(commandArgs()); print(commandArgs(TRUE)); print(getwd()); print(search())\n"
        "print(sort(names(Sys.getenv()))); print(.Last.value); 1 + 1\n"
        'warning("w"); f <- function() stop("boom"); f()',
        "x y",
        "quit(status = 4)",
        'png("plot.png"); plot(1:3); invisible(dev.off()); cat(file.exists("plot.png"))',
    ],
    "js": [
        "console.log(process.argv, process.execArgv, process.cwd(), require.main === module,"
        " Object.keys(require.cache), module.parent, require('path').resolve('x'));"
        " throw new Error('boom')",
    ],
    "ts": ["const n: number = process.argv.length; console.log(n, process.argv.slice(2))"],
    "java": [
        "public class Main { public static void main(String[] a) throws Exception {"
        ' System.out.println(String.join("|", a) + " " + System.getProperty("sun.java.command")'
        ' + " " + System.getProperty("user.dir") + " " + System.getProperty("java.class.path"));'
        ' new java.io.FileWriter("out.txt").append("x").close();'
        ' throw new IllegalStateException("boom"); } }',
        "public class Main { public static void main(String[] a) { int x = ; } }",
        "class Helper {} public class Main { public static void main(String[] a) {"
        " System.out.println(new Helper() != null); } }",
    ],
}


@pytest.mark.parametrize(
    ("lang", "code"), [(lang, code) for lang, codes in SAME_EITHER_WAY.items() for code in codes]
)
def test_a_warm_interpreter_behaves_as_a_fresh_one(
    warm: DockerSandbox, warm_own: DockerSandbox, lang: str, code: str
) -> None:
    """stdout, stderr, exit code and outputs are those of ``Rscript main.R``,
    ``node main.js`` and ``java Main.java`` (R's temporary session directory aside)."""
    results = []
    for box in (warm, warm_own):
        assert box.wait_pool_ready(120)
        result = execute(box, code, lang=Language(lang), args=("a", "b c"))
        results.append(
            (
                result.exit_code,
                result.stdout,
                re.sub(r"Rtmp\w+", "Rtmp", result.stderr),
                sorted(o.name for o in result.outputs),
            )
        )
        result.close()
    assert results[0] == results[1]


def test_an_r_start_up_file_in_the_inputs_is_read_as_by_a_fresh_r(
    warm_own: DockerSandbox,
) -> None:
    """A .Rprofile among the inputs is sourced at start-up, as by ``Rscript``."""
    assert warm_own.wait_pool_ready(120)
    result = execute(
        warm_own,
        "cat(exists('from_profile'), '\\n')",
        lang=Language.R,
        files=(input_file(".Rprofile", b"from_profile <- 1\n"),),
    )
    assert (result.exit_code, result.stdout) == (0, "TRUE \n"), result.stderr
