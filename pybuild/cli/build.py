"""`pybuild build` (the default command): flags in, a BuildRequest to the engine, progress out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pybuild.cli.app import app
from pybuild.errors import PybuildError, UsageError

if TYPE_CHECKING:
    from pybuild.layer import Compression


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
    no_cache_filter: list[str] = typer.Option([], "--no-cache-filter", help="Do not use the cache for this stage."),
    explain_cache: bool = typer.Option(False, "--explain-cache", help="Say for every step why it hit or missed."),
    compression: str = typer.Option("zstd", "--compression", help="Layer compression: zstd, gzip or none."),
    pull: bool = typer.Option(False, "--pull", help="Pull every base image from its registry, even if stored."),
    iidfile: Path | None = typer.Option(None, "--iidfile", help="Write the image ID to this file."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the image ID."),
    progress: str = typer.Option("auto", "--progress", help="Progress output: auto, plain, tty or rawjson."),
    network: str = typer.Option("default", "--network", help="Network for RUN: default, none or host."),
    secret: list[str] = typer.Option([], "--secret", help="Secret for RUN --mount=type=secret: id=ID,src=PATH."),
    output: list[str] = typer.Option([], "-o", "--output", help="Also export: type=oci|docker|local,dest=PATH."),
    platform: str | None = typer.Option(None, "--platform", help="Target platform, e.g. linux/amd64."),
    push: bool = typer.Option(False, "--push", help="Push the image to the registry of each -t name."),
) -> None:
    """Build an image from a Dockerfile (like `docker build`).

    Example: pybuild -t myapp:1 .   (same as: pybuild build -t myapp:1 .)
    """
    import sys

    from pybuild.cli.app import default_root
    from pybuild.cli.check import parse_build_args
    from pybuild.executor.engine import BuildRequest, build
    from pybuild.export.outputs import parse_output, write_output
    from pybuild.render import make_renderer
    from pybuild.store.store import Store

    if progress not in ("auto", "plain", "tty", "rawjson"):
        raise UsageError(f"invalid --progress {progress!r}: expected auto, plain, tty or rawjson")
    if network not in ("default", "none", "host"):
        raise UsageError(f"invalid --network {network!r}: expected default, none or host")
    labels: dict[str, str] = {}
    for kv in label:
        key, eq, value = kv.partition("=")
        if not eq or not key:
            raise UsageError(f"invalid --label {kv!r}: expected KEY=VALUE")
        labels[key] = value
    secrets: dict[str, Path] = {}
    for spec in secret:
        fields = dict(part.partition("=")[::2] for part in spec.split(","))
        sid = fields.get("id", "")
        src = fields.get("src") or fields.get("source") or ""
        if not sid or not src:
            raise UsageError(f"invalid --secret {spec!r}: expected id=ID,src=FILE")
        if not Path(src).is_file():
            raise PybuildError(f"secret {sid!r}: file {src} does not exist")
        secrets[sid] = Path(src).absolute()
    outputs = [parse_output(o) for o in output]
    if push and not tag:
        raise UsageError("--push needs a name to push to: add -t REGISTRY/REPOSITORY:TAG")

    stdin_data: bytes | None = None
    ctx: Path | None = context
    dockerfile = file
    if str(context) == "-":
        # `pybuild build - < Dockerfile`: the Dockerfile on stdin and no build context at all.
        if file not in (None, "-"):
            raise UsageError("with CONTEXT `-` the Dockerfile comes from stdin: drop -f")
        ctx, dockerfile = None, "-"
    elif not context.is_dir():
        raise PybuildError(f"build context {str(context)!r} is not a directory",
                           hint="pass the directory that holds your files, or `-` to read a Dockerfile from stdin")
    if dockerfile == "-":
        stdin_data = sys.stdin.buffer.read()

    # auto: the live display on a terminal, BuildKit's plain log otherwise (CI logs, pipes).
    renderer = make_renderer(progress, quiet=quiet, err=sys.stderr)
    request = BuildRequest(
        context=ctx, dockerfile=dockerfile, dockerfile_data=stdin_data, tags=tuple(tag),
        build_args=parse_build_args(build_arg), target=target, labels=labels, no_cache=no_cache, pull=pull,
        network=network, secrets=secrets, platform=platform, no_cache_filter=tuple(no_cache_filter),
        explain_cache=explain_cache, compression=_compression(compression),
    )
    store = Store.open(default_root())
    try:
        try:
            result = build(store, request, renderer)
        finally:
            renderer.close()  # a live display must be gone before the CLI prints an error
        for out in outputs:
            write_output(store, result.image, out)
        if push:
            from pybuild.registry.push import push_image

            for name in tag:  # each -t once, in the order given
                res = push_image(store, name)
                if not quiet:
                    print(f"pushed {res.reference}@{res.digest}", file=sys.stderr)
    finally:
        store.close()
    if not quiet:
        for line in result.warnings:
            print(line, file=sys.stderr)
    if iidfile is not None:
        try:
            iidfile.write_text(result.image_id)
        except OSError as e:
            raise PybuildError(f"cannot write --iidfile {iidfile}: {e.strerror or e}") from None
    if quiet:
        print(result.image_id)


def _compression(value: str) -> Compression:
    from pybuild.layer import Compression

    try:
        return Compression(value)
    except ValueError:
        raise UsageError(f"invalid --compression {value!r}: expected zstd, gzip or none") from None
