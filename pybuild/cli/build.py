"""`pybuild build` (the default command): parse flags, then parse and plan the Dockerfile.

The executor is not wired in yet: after planning, the command stops with a clear message and exit 1.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pybuild.cli.app import app
from pybuild.errors import PybuildError, UsageError


@app.command("build")
def build_command(
    context: Path = typer.Argument(..., help="Build context directory."),
    tag: list[str] = typer.Option([], "-t", "--tag", help="Name the image NAME[:TAG] (repeatable)."),
    file: str | None = typer.Option(
        None, "-f", "--file", help="Dockerfile path (default CONTEXT/Dockerfile; - for stdin)."
    ),
    build_arg: list[str] = typer.Option([], "--build-arg", help="Build-time variable KEY=VALUE (repeatable)."),
    target: str | None = typer.Option(None, "--target", help="Build this stage (and what it needs) only."),
    label: list[str] = typer.Option([], "--label", help="Set an image label KEY=VALUE (repeatable)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the build cache."),
    pull: bool = typer.Option(False, "--pull", help="Always look for newer base images."),
    iidfile: Path | None = typer.Option(None, "--iidfile", help="Write the image ID to this file."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the image ID."),
    progress: str = typer.Option("auto", "--progress", help="Progress output: auto, plain, tty or rawjson."),
    network: str = typer.Option("default", "--network", help="Network for RUN: default, none or host."),
    secret: list[str] = typer.Option([], "--secret", help="Secret for RUN --mount=type=secret: id=ID,src=PATH."),
    output: list[str] = typer.Option([], "-o", "--output", help="Export: type=oci|docker|tar|local,dest=PATH."),
    platform: str | None = typer.Option(None, "--platform", help="Target platform, e.g. linux/amd64."),
) -> None:
    """Build an image from a Dockerfile (like `docker build`)."""
    from pybuild.cli.check import parse_build_args
    from pybuild.planner.load import load_and_plan
    from pybuild.planner.platform import parse_platform

    if progress not in ("auto", "plain", "tty", "rawjson"):
        raise UsageError(f"invalid --progress {progress!r}: expected auto, plain, tty or rawjson")
    if network not in ("default", "none", "host"):
        raise UsageError(f"invalid --network {network!r}: expected default, none or host")
    for kv in label:
        if "=" not in kv or kv.startswith("="):
            raise UsageError(f"invalid --label {kv!r}: expected KEY=VALUE")
    load_and_plan(
        file, context, build_args=parse_build_args(build_arg), target=target,
        platform=parse_platform(platform) if platform else None,
    )
    raise PybuildError("not implemented yet: the executor has not landed",
                       hint="`pybuild check` parses and plans the Dockerfile without building")
