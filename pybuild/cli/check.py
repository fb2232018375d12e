"""`pybuild check`: parse and plan a Dockerfile without executing it; print errors and build-check warnings."""

from __future__ import annotations

from pathlib import Path

import typer

from pybuild.cli.app import app
from pybuild.errors import UsageError


def parse_build_args(values: list[str]) -> dict[str, str]:
    """``--build-arg K=V`` (or bare ``K``: take the value from the environment, like docker build)."""
    import os

    out: dict[str, str] = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not key:
            raise UsageError(f"invalid --build-arg {v!r}: expected KEY=VALUE")
        if not eq:
            if key not in os.environ:
                continue  # docker build silently drops a bare KEY that is not in the environment
            value = os.environ[key]
        out[key] = value
    return out


@app.command("check")
def check_command(
    context: Path = typer.Argument(Path("."), help="Build context directory (where the Dockerfile is looked for)."),
    file: str | None = typer.Option(
        None, "-f", "--file", help="Dockerfile path (default CONTEXT/Dockerfile; - for stdin)."
    ),
    target: str | None = typer.Option(None, "--target", help="Check only what this stage needs."),
    build_arg: list[str] = typer.Option([], "--build-arg", help="Build-time variable KEY=VALUE (repeatable)."),
    platform: str | None = typer.Option(None, "--platform", help="Target platform, e.g. linux/arm64."),
    fmt: str = typer.Option("text", "--format", help="Output format: text or json."),
) -> None:
    """Check a Dockerfile: parse, plan and run the build checks, without building.

    Exit 0 when there is no error, 1 on an error (with `# check=error=true`, warnings are errors too).

    Example: pybuild check --format json -f build/Dockerfile .
    """
    import json
    import sys

    from pybuild.planner.load import check
    from pybuild.planner.platform import parse_platform

    if fmt not in ("text", "json"):
        raise UsageError(f"invalid --format {fmt!r}: expected text or json")
    result = check(file, context, build_args=parse_build_args(build_arg), target=target,
                   platform=parse_platform(platform) if platform else None)
    if fmt == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        for w in result.warnings:
            sys.stdout.write(w.render() + "\n")
        for e in result.errors:
            sys.stderr.write(e.render() + "\n")
    if result.errors:
        raise typer.Exit(1)
