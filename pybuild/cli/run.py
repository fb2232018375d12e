"""`pybuild run`: run an image like `docker run`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import typer

from pybuild.cli.app import app, default_root
from pybuild.errors import UsageError


@app.command(
    "run",
    context_settings={"allow_interspersed_args": False},
    epilog="Example: pybuild run --rm -e NAME=world hello:1 /app/greet.sh",
)
def run_command(
    image: str = typer.Argument(..., help="Image to run (name, name:tag or ID)."),
    command: list[str] = typer.Argument(None, help="Command and arguments (replace the image's CMD)."),
    rm: bool = typer.Option(False, "--rm", help="Accepted for Docker compatibility: containers never persist."),
    env: list[str] = typer.Option([], "-e", "--env", help="Set KEY=VALUE (or KEY from this environment)."),
    env_file: list[Path] = typer.Option([], "--env-file", help="Read KEY=VALUE lines from a file."),
    volume: list[str] = typer.Option([], "-v", "--volume", help="Bind mount HOST:CONTAINER[:ro]."),
    workdir: str | None = typer.Option(None, "-w", "--workdir", help="Working directory inside the container."),
    user: str | None = typer.Option(None, "-u", "--user", help="User (name or uid[:gid])."),
    entrypoint: str | None = typer.Option(None, "--entrypoint", help="Override the image's ENTRYPOINT."),
    network: str = typer.Option("default", "--network", help="default, none or host."),
    name: str | None = typer.Option(None, "--name", help="Container name (informational)."),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="Keep stdin open."),
    tty: bool = typer.Option(False, "-t", "--tty", help="Allocate a pseudo-terminal."),
) -> None:
    """Run a command in a new container from IMAGE; exits with the container's exit code."""
    from pybuild.runtime.container import RunRequest, parse_env_file, parse_env_items, parse_volume, run
    from pybuild.store.store import Store

    if network not in ("default", "none", "host"):
        raise UsageError(f"invalid --network {network!r}: expected default, none or host")
    values: dict[str, str] = {}
    for f in env_file:
        values.update(parse_env_file(f))
    values.update(parse_env_items(env))
    request = RunRequest(
        image=image, command=tuple(command or ()), entrypoint=entrypoint, env=values,
        volumes=tuple(parse_volume(v) for v in volume), workdir=workdir, user=user, network=network, name=name,
        interactive=interactive, tty=tty,
    )
    store = Store.open(default_root())
    try:
        with _raw_terminal(interactive and tty):
            code = run(store, request, forward_signals=True)
    finally:
        store.close()
    raise typer.Exit(code)


@contextlib.contextmanager
def _raw_terminal(wanted: bool) -> Iterator[None]:
    """With -it on a terminal, pass keystrokes through untouched (the container's pty does echo and line editing)."""
    import sys
    import termios
    import tty

    if not wanted or not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
