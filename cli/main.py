"""The ``rce`` command (click): one entry point for operators.

    rce serve                 the API (uvicorn, the app factory, RCE_HOST/RCE_PORT)
    rce image build [--force] the sandbox image, with progress (images/build.sh)
    rce doctor [--jwt T] [--librechat-env FILE]   check the set-up, one line per check
    rce gc                    reap orphan sandbox containers and expired files now
    rce bench [--suite S] [ARGS...]
                              a benchmark (http: bench/bench.py; lang, ptc, runner, load)

The Makefile's targets are thin wrappers over these.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from cli.repo import BENCH_SUITES, BUILD_SCRIPT, REPO_ROOT


def _settings_or_exit() -> object:
    from handler.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            click.echo(
                f"error: {str(error.get('msg', '')).removeprefix('Value error, ')}", err=True
            )
        click.echo("run `rce doctor` for the fix", err=True)
        raise SystemExit(2) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rce")
def main() -> None:
    """rce: a sandboxed code interpreter API for LibreChat."""


@main.command()
def serve() -> None:
    """Serve the API on RCE_HOST:RCE_PORT (default 127.0.0.1:8000)."""
    import uvicorn

    from handler.settings import Settings

    settings = _settings_or_exit()
    assert isinstance(settings, Settings)
    uvicorn.run("handler.app:create_app", factory=True, host=settings.host, port=settings.port)


@main.group()
def image() -> None:
    """The CPU sandbox image."""


@image.command("build")
@click.option("--force", is_flag=True, help="Rebuild even when the recipe is unchanged.")
def image_build(force: bool) -> None:
    """Build the sandbox image (RCE_IMAGE_NAME) if its recipe changed, with progress."""
    if not BUILD_SCRIPT.is_file():
        raise click.ClickException(f"{BUILD_SCRIPT} not found: run rce from a checkout")
    args = [str(BUILD_SCRIPT), *(["--force"] if force else [])]
    # The script prints its phases, package counts and elapsed time on stderr: a live
    # line on a terminal, plain lines otherwise.
    raise SystemExit(subprocess.run(args, cwd=REPO_ROOT, check=False).returncode)


@main.command()
@click.option("--jwt", "token", metavar="TOKEN", help="A Bearer JWT from LibreChat to verify.")
@click.option(
    "--librechat-env",
    type=click.Path(path_type=Path, dir_okay=False),
    help="LibreChat's .env: compare LIBRECHAT_CODE_API_KEY and LIBRECHAT_CODE_BASEURL.",
)
def doctor(token: str | None, librechat_env: Path | None) -> None:
    """Check the engine, runtimes, image, store and auth; exit 1 on any failure."""
    from cli.doctor import Inputs, run_checks

    checks = run_checks(Inputs(jwt=token, librechat_env=librechat_env))
    for check in checks:
        click.echo(check.line())
    failed = sum(c.status == "fail" for c in checks)
    click.echo(f"{failed} check(s) failed" if failed else "all checks passed")
    raise SystemExit(1 if failed else 0)


@main.command()
def gc() -> None:
    """Reap orphan sandbox containers and expire old session files now."""
    from handler.maintenance import Maintenance
    from handler.services import build_services
    from handler.settings import Settings

    settings = _settings_or_exit()
    assert isinstance(settings, Settings)
    # No warm pool here: this process only sweeps.
    no_pools = dict.fromkeys(
        ("pool_size", "pool_data_size", "pool_r_size", "pool_node_size", "pool_java_size"), 0
    )
    services = build_services(settings.model_copy(update=no_pools))
    try:
        result = Maintenance(services).run_once()
    finally:
        services.close()
    click.echo(f"reaped {result.reaped} container(s), expired {result.expired} file(s)")
    for problem in result.problems:
        click.echo(f"error: {problem}", err=True)
    raise SystemExit(1 if result.problems else 0)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--suite",
    type=click.Choice(sorted(BENCH_SUITES)),
    default="http",
    show_default=True,
    help="http: every workload beside a bare docker run; lang: hello per language; "
    "ptc: programmatic round trips; runner: the runner without HTTP; load: burst, paced "
    "and concurrent load beside the lifecycle ceiling.",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(suite: str, args: tuple[str, ...]) -> None:
    """Run a benchmark (its options pass through)."""
    script = BENCH_SUITES[suite]
    if not script.is_file():
        raise click.ClickException(f"{script} not found: run rce from a checkout")
    env = {**os.environ}
    command = [sys.executable, str(script), *args]
    raise SystemExit(subprocess.run(command, cwd=REPO_ROOT, env=env, check=False).returncode)
