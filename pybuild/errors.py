"""The one error type a user can cause, and how it is shown.

Everything below the CLI raises PybuildError (or a subclass); only the CLI renders it and picks the
exit code. A location, when there is one, points at the Dockerfile line the user must fix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A place in a file: 1-based line and column (column 0 = unknown)."""

    file: str
    line: int
    column: int = 0
    source_line: str | None = None  # the offending line's text, for the caret display

    def __str__(self) -> str:
        if self.column:
            return f"{self.file}:{self.line}:{self.column}"
        return f"{self.file}:{self.line}"


class PybuildError(Exception):
    """An error the user can act on: one message, maybe a location and a hint, never a traceback."""

    exit_code = 1

    def __init__(self, message: str, location: Location | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def with_location(self, location: Location) -> PybuildError:
        """Attach a location if the error has none yet (the instruction layer adds the node's line)."""
        if self.location is None:
            self.location = location
        return self

    def render(self) -> str:
        parts: list[str] = []
        prefix = f"{self.location}: " if self.location else ""
        parts.append(f"{prefix}error: {self.message}")
        loc = self.location
        if loc is not None and loc.source_line is not None:
            text = loc.source_line.rstrip("\n")
            shown = text if len(text) <= 200 else text[:200] + "..."
            parts.append(f"  {loc.line} | {shown}")
            if loc.column and loc.column - 1 <= len(shown):
                gutter = " " * (len(str(loc.line)) + 1)
                # keep tabs so the caret lines up under the offending character
                pad = "".join(c if c == "\t" else " " for c in shown[: loc.column - 1])
                parts.append(f"  {gutter}| {pad}^")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.render()


class UsageError(PybuildError):
    """Bad flags or arguments on the command line (exit 2, like Docker)."""

    exit_code = 2
