"""Read a Dockerfile, parse it and plan it: the library functions behind ``pybuild check`` and ``pybuild build``.

``load_and_plan`` raises PybuildError on the first problem; ``check`` never raises for user errors and
returns the warnings together with the error (what ``pybuild check`` prints).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pybuild.errors import Location, PybuildError
from pybuild.model.ast import Dockerfile
from pybuild.model.oci import Platform
from pybuild.planner.lint import Linter, LintWarning
from pybuild.planner.plan import BaseImageResolver, Plan, plan

MAX_DOCKERFILE_BYTES = 64 << 20  # nobody writes a 64 MiB Dockerfile; refuse rather than exhaust memory


def dockerfile_path(file: str | Path | None, context: str | Path = ".") -> tuple[Path | None, str]:
    """Where to read the Dockerfile from, and how to name it in messages. ``-`` means stdin (path None).

    Like ``docker build``: ``-f`` defaults to CONTEXT/Dockerfile (or CONTEXT/dockerfile if only that exists);
    a relative ``-f`` is relative to the current directory.
    """
    if file is not None and str(file) == "-":
        return None, "<stdin>"
    if file is None:
        ctx = Path(context)
        path = ctx / "Dockerfile"
        if not path.exists() and (ctx / "dockerfile").exists():
            path = ctx / "dockerfile"
        return path, str(path)
    return Path(file), str(file)


def read_dockerfile(file: str | Path | None, context: str | Path = ".", *, stdin: bytes | None = None) -> Dockerfile:
    """Read and parse the Dockerfile (``file`` "-" reads ``stdin`` bytes, or the process's stdin)."""
    from pybuild.frontend.parser import parse

    path, display = dockerfile_path(file, context)
    if path is None:
        data = stdin if stdin is not None else sys.stdin.buffer.read(MAX_DOCKERFILE_BYTES + 1)
    else:
        try:
            if path.is_dir():
                raise PybuildError(f"cannot read Dockerfile {display}: is a directory",
                                   hint="pass the file with -f, or the directory as the build context")
            with path.open("rb") as f:
                data = f.read(MAX_DOCKERFILE_BYTES + 1)
        except FileNotFoundError:
            raise PybuildError(
                f"cannot read Dockerfile {display}: no such file",
                hint="name the file with -f FILE (or -f - for stdin), or pass the directory that holds it",
            ) from None
        except OSError as e:
            raise PybuildError(f"cannot read Dockerfile {display}: {e.strerror or e}") from None
    if len(data) > MAX_DOCKERFILE_BYTES:
        raise PybuildError(f"{display}: the Dockerfile is larger than {MAX_DOCKERFILE_BYTES >> 20} MiB")
    if not data:
        raise PybuildError("the Dockerfile cannot be empty", Location(display, 1), hint="add a FROM instruction")
    return parse(data, display)


def load_and_plan(
    file: str | Path | None = None,
    context: str | Path = ".",
    *,
    stdin: bytes | None = None,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    platform: Platform | None = None,
    resolver: BaseImageResolver | None = None,
    all_stages: bool = False,
) -> Plan:
    """Read, parse and plan; raise PybuildError on the first error. Lint warnings are in ``Plan.warnings``."""
    df = read_dockerfile(file, context, stdin=stdin)
    return plan(df, build_args=build_args, target=target, platform=platform, resolver=resolver,
                all_stages=all_stages)


@dataclass(frozen=True)
class CheckResult:
    """What `pybuild check` found: warnings and at most one error."""

    path: str
    warnings: tuple[LintWarning, ...]
    errors: tuple[PybuildError, ...]
    plan: Plan | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        return {
            "errors": [_error_dict(e) for e in self.errors],
            "warnings": [w.to_dict() for w in self.warnings],
        }


def _error_dict(e: PybuildError) -> dict[str, object]:
    loc = e.location
    return {
        "message": e.message, "file": loc.file if loc else None, "line": loc.line if loc else None,
        "column": loc.column if loc else None, "hint": e.hint,
    }


def check(
    file: str | Path | None = None,
    context: str | Path = ".",
    *,
    stdin: bytes | None = None,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    platform: Platform | None = None,
    resolver: BaseImageResolver | None = None,
) -> CheckResult:
    """Parse and plan without executing; collect warnings and the error, if any (never raises PybuildError).

    Without a target every stage is checked, as BuildKit's lint does. With ``# check=error=true`` the
    warnings also count as an error.
    """
    _, display = dockerfile_path(file, context)
    try:
        df = read_dockerfile(file, context, stdin=stdin)
    except PybuildError as e:
        return CheckResult(display, (), (e,))
    linter = Linter(df.path)
    try:
        p = plan(df, build_args=build_args, target=target, platform=platform, resolver=resolver,
                 all_stages=target is None, linter=linter, lint_only=True)
    except PybuildError as e:
        return CheckResult(df.path, linter.sorted(), (e,))
    err = p.lint_error()
    return CheckResult(df.path, p.warnings, (err,) if err else (), p)
