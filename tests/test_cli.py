from __future__ import annotations

from pybuild import __version__
from pybuild.cli import insert_default_command

from .conftest import run_cli


def test_version() -> None:
    p = run_cli(["--version"])
    assert p.returncode == 0
    assert p.stdout.strip() == f"pybuild version {__version__}"


def test_help_lists_commands() -> None:
    p = run_cli(["--help"])
    assert p.returncode == 0
    assert "--root" in p.stdout


def test_build_is_default_command() -> None:
    assert insert_default_command(["-t", "x:1", "."]) == ["build", "-t", "x:1", "."]
    assert insert_default_command(["--root", "/r", "-t", "x", "."]) == ["--root", "/r", "build", "-t", "x", "."]
    assert insert_default_command(["--root=/r", "."]) == ["--root=/r", "build", "."]
    assert insert_default_command(["check", "."]) == ["check", "."]
    assert insert_default_command(["--version"]) == ["--version"]
    assert insert_default_command([]) == []


def test_unknown_flag_is_usage_error() -> None:
    p = run_cli(["images", "--no-such-flag"])
    assert p.returncode == 2
    assert "Traceback" not in p.stderr


COMMANDS_WITH_HELP = [
    ["build"], ["check"], ["run"], ["images"], ["tag"], ["rmi"], ["inspect"], ["history"], ["import"], ["save"],
    ["load"], ["prune"], ["store", "verify"], ["store", "gc"], ["cache", "ls"], ["cache", "du"], ["cache", "prune"],
]


def test_every_command_help_has_an_example() -> None:
    missing = []
    for cmd in COMMANDS_WITH_HELP:
        p = run_cli([*cmd, "--help"])
        assert p.returncode == 0, (cmd, p.stderr)
        if "Example" not in p.stdout:
            missing.append(" ".join(cmd))
    assert not missing
