"""Command-line entry point: argument pre-processing, command registration, and the one error handler."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Sequence

# Names of every top-level command and group; anything else as the first word means `build`.
COMMANDS = frozenset(
    {
        "build", "check", "images", "tag", "rmi", "inspect", "history", "import", "save", "load",
        "prune", "store", "run", "cache", "login", "logout", "search", "pull", "push",
    }
)
_GLOBAL_WITH_VALUE = {"--root"}
_GLOBAL_FLAGS = {"--debug"}


def insert_default_command(argv: list[str]) -> list[str]:
    """Make `build` the default command, as `docker build` users expect `pybuild -t x .` to work."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
            continue
        if arg.split("=", 1)[0] in _GLOBAL_WITH_VALUE or arg in _GLOBAL_FLAGS:
            i += 1
            continue
        break
    if i >= len(argv):
        return argv
    first = argv[i]
    if first in COMMANDS or first in ("--help", "-h", "--version"):
        return argv
    return [*argv[:i], "build", *argv[i:]]


# The module that registers each command; any other first word (images, tag, ... and --help, typos) loads them all.
_COMMAND_MODULES = {
    "build": "build", "check": "check", "run": "run", "cache": "cache", "store": "store",
    "login": "registry", "logout": "registry", "search": "registry", "pull": "registry",
    "push": "registry",
}
_ALL_MODULES = ("build", "cache", "check", "images", "run", "store", "registry")


def _command_word(argv: list[str]) -> str | None:
    """The command of an argv that insert_default_command has seen (None: no command, e.g. `--help`)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
        elif arg.split("=", 1)[0] in _GLOBAL_WITH_VALUE or arg in _GLOBAL_FLAGS:
            i += 1
        else:
            return arg
    return None


def _register(argv: list[str]) -> None:
    """Import the command modules, which registers their commands on the app.

    Only the module of the command being run: typer turns every registered command's signature into click
    parameters at start-up (a few ms each), and the modules import what their commands share.
    """
    import importlib

    from pybuild.cli.app import app

    module = _COMMAND_MODULES.get(_command_word(argv) or "")
    for name in (module,) if module else _ALL_MODULES:
        importlib.import_module(f"pybuild.cli.{name}")
    if module is None:  # help lists commands in registration order: keep it whatever an earlier call loaded
        order = {name: i for i, name in enumerate(_ALL_MODULES)}
        app.registered_commands.sort(key=lambda c: order.get(getattr(c.callback, "__module__", "").rsplit(".")[-1], 0))
        app.registered_groups.sort(key=lambda g: order.get(str(g.name), 0))  # the groups are named like their modules


_interrupted = 0  # the signal that stopped us: we exit 128 + it, as a process killed by it would


def _terminate(signum: int, frame: object) -> None:
    global _interrupted
    _interrupted = signum
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `pybuild` program (argv None: sys.argv) or, for tests, one command line in this process."""
    try:
        return _main(argv)
    finally:
        if argv is None:
            # The process exits next. Interpreter shutdown runs the garbage collector over every object, ~15 ms
            # after the imports of a build; frozen objects are skipped (still freed, atexit still runs).
            import gc

            gc.freeze()


def _main(argv: Sequence[str] | None) -> int:
    args = insert_default_command(list(sys.argv[1:] if argv is None else argv))
    if args == ["--version"]:  # what the app's --version callback prints, without importing typer (~20 ms)
        from pybuild import __version__

        print(f"pybuild version {__version__}")
        return 0

    from pybuild.cli.app import OPTIONS, app
    from pybuild.errors import PybuildError

    _register(args)
    # SIGTERM (CI cancelling a job, `kill`) stops a build the way Ctrl-C does: steps killed, scratch removed.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        rv = app(args=args, prog_name="pybuild", standalone_mode=False)
        if _interrupted:
            print("interrupted", file=sys.stderr)
            return 128 + _interrupted
        if isinstance(rv, int):  # click returns typer.Exit's code in non-standalone mode
            return rv
    except PybuildError as e:
        if OPTIONS.debug or os.environ.get("PYBUILD_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        print(e.render(), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 128 + (_interrupted or signal.SIGINT)
    except SystemExit as e:  # typer.Exit inside commands
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as e:
        # typer vendors its own click, so match its exceptions by shape rather than by class.
        name = type(e).__name__
        code = getattr(e, "exit_code", None)
        if name == "Exit" and isinstance(code, int):
            return code
        if name == "Abort":
            print("interrupted", file=sys.stderr)
            return 128 + (_interrupted or signal.SIGINT)
        show = getattr(e, "show", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        # A bug in pybuild, not a user error: say so plainly, traceback only on request.
        if OPTIONS.debug or os.environ.get("PYBUILD_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        print(f"pybuild: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("(set PYBUILD_DEBUG=1 for the traceback; please report this)", file=sys.stderr)
        return 3
    return 0
