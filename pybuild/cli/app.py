"""The typer application object and the options every command shares.

Command modules (check.py, images.py, ...) import ``app`` from here and register themselves; they parse
flags and call a library function, nothing more. Heavy imports happen inside the command bodies so that
``pybuild --version`` stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import typer

from pybuild import __version__

app = typer.Typer(
    name="pybuild",
    help="pybuild: a daemonless Dockerfile build engine.\n\nExample: pybuild -t myapp:1 .",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class GlobalOptions:
    root: Path | None = None
    debug: bool = False


OPTIONS = GlobalOptions()


def default_root() -> Path:
    """The store root: --root, else $PYBUILD_ROOT, else $XDG_DATA_HOME/pybuild, else ~/.local/share/pybuild."""
    if OPTIONS.root is not None:
        return OPTIONS.root
    env = os.environ.get("PYBUILD_ROOT")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "pybuild"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"pybuild version {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    root: Path | None = typer.Option(
        None, "--root", help="Store root (default $PYBUILD_ROOT or $XDG_DATA_HOME/pybuild).", metavar="DIR"
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors (same as PYBUILD_DEBUG=1)."),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """pybuild builds OCI images from Dockerfiles without a daemon.

    Build is the default command: `pybuild -t myapp:1 .` is `pybuild build -t myapp:1 .`.
    """
    OPTIONS.root = root
    OPTIONS.debug = debug or os.environ.get("PYBUILD_DEBUG", "") not in ("", "0")
