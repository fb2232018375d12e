"""The terminal build display (rich): what `pybuild build` shows when stderr is a terminal.

Running steps sit in a live area at the bottom: a spinner, the step's name and its elapsed time, its cache-miss
reason, byte progress bars (layer commits, pulls, pushes) and, dimmed, the last few lines of its output. When a
step finishes, the live area drops it and one permanent line is printed above: a tick and its time, or CACHED;
miss reasons stay under it, its output collapses. A failed step is printed in red with its last output lines;
the error message itself is the CLI's to print (once). At the end comes a summary: image id, names, size, total
time, steps cached and run.

Only the CLI imports this module, and only for a terminal, so plain and quiet builds never import rich.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from pybuild.events import (
    BuildFinished,
    Event,
    Progress,
    StepCached,
    StepDone,
    StepError,
    StepLog,
    StepMiss,
    StepNote,
    StepStarted,
)
from pybuild.render import format_bytes

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.spinner import Spinner

TAIL_LINES = 6  # output lines shown under a running step
ERROR_LINES = 10  # output lines kept under a failed step

# Escape sequences (CSI, OSC, charset selections) and other control characters in a step's output would move
# the cursor inside the live area; what is left after the last carriage return is what a terminal would show.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[@-Z\\-_])")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_line(line: str) -> str:
    """A step's output line as plain printable text."""
    line = _ESCAPES.sub("", line)
    if "\r" in line:
        line = line.rsplit("\r", 1)[1] or line.replace("\r", "")
    return _CONTROLS.sub("", line.expandtabs(4))


def format_elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


@dataclass
class _Running:
    """What the live area knows about a running step."""

    step: int
    name: str
    started: float
    spinner: Spinner
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=ERROR_LINES))
    notes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text): kind is "miss" or "note"
    progress: dict[str, tuple[int, int | None]] = field(default_factory=dict)


class TtyRenderer:
    """An EventSink drawing the build on a terminal; call close() when the build ends, however it ends."""

    def __init__(self, out: TextIO, *, tail_lines: int = TAIL_LINES, refresh_per_second: float = 10) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out, force_terminal=True, highlight=False, emoji=False, markup=False)
        self.unicode = self.console.encoding.lower().startswith("utf")
        self.ok, self.bad = ("✔", "✘") if self.unicode else ("+", "x")
        self.tail_lines = tail_lines
        self.running: dict[int, _Running] = {}  # in start order
        self.started = time.monotonic()
        self.done = 0
        self.cached = 0
        # The refresh thread reads the state under _state while holding rich's own lock; emit never prints while
        # holding _state, or the two would wait for each other. _emit keeps printed lines in event order.
        self._state = threading.Lock()
        self._emit = threading.Lock()
        self.live = Live(console=self.console, get_renderable=self._render, refresh_per_second=refresh_per_second,
                         transient=True, redirect_stdout=False, redirect_stderr=False)
        self.live_on = False
        self.closed = False

    # --- events -------------------------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        with self._emit:
            if self.closed:
                return
            printed = self._update(event)
            if not self.live_on and isinstance(event, StepStarted):
                self.live.start()
                self.live_on = True
            if printed and self.live_on:
                # Redraw the live area from the new state first: rich reprints its last drawing under each print.
                self.live.refresh()
            if printed:
                from rich.console import Group

                self.console.print(Group(*printed))
            if isinstance(event, BuildFinished):
                self._stop()
                self.console.print(self._summary(event))

    def close(self) -> None:
        """Stop the live area; steps still running (an interrupted build) are left on screen as CANCELED."""
        with self._emit:
            if self.closed:
                return
            with self._state:
                left = list(self.running.values())
                self.running.clear()
            self._stop()
            for r in left:
                self.console.print(self._line("-", "yellow", r.name, "CANCELED", "yellow"))
            self.closed = True

    def _stop(self) -> None:
        if self.live_on:
            self.live.stop()
            self.live_on = False

    def _update(self, event: Event) -> list[RenderableType]:
        """Apply an event to the state; returns what to print above the live area."""
        from rich.spinner import Spinner

        with self._state:
            if isinstance(event, StepStarted):
                self.running[event.step] = _Running(event.step, self._safe(event.name), event.at,
                                                    Spinner("dots" if self.unicode else "line", style="blue"))
                return []
            if isinstance(event, BuildFinished):
                return []
            r = self.running.get(event.step)
            if r is None:
                return []
            if isinstance(event, StepLog):
                r.tail.append(self._safe(clean_line(event.line)))
            elif isinstance(event, StepMiss):
                r.notes.append(("miss", self._safe(event.reason)))
            elif isinstance(event, StepNote):
                r.notes.append(("note", self._safe(event.text)))
            elif isinstance(event, Progress):
                r.progress[self._safe(event.label)] = (event.done, event.total)
            elif isinstance(event, StepCached):
                del self.running[event.step]
                self.done += 1
                self.cached += 1
                return [self._line(self.ok, "green", r.name, "CACHED", "cyan"), *self._notes(r)]
            elif isinstance(event, StepDone):
                del self.running[event.step]
                self.done += 1
                return [self._line(self.ok, "green", r.name, format_elapsed(event.elapsed), "dim"), *self._notes(r)]
            elif isinstance(event, StepError):
                del self.running[event.step]
                out: list[RenderableType] = [
                    self._line(self.bad, "bold red", r.name, f"ERROR {format_elapsed(event.elapsed)}", "bold red"),
                    *self._notes(r),
                ]
                out.extend(self._text(f"    > {line}", "red") for line in r.tail)
                return out
        return []

    # --- drawing ------------------------------------------------------------------------------------------------

    def _safe(self, text: str) -> str:
        """Text the terminal's encoding can carry (a step's output may be any bytes; rich writes strictly)."""
        if self.unicode:
            return text
        enc = self.console.encoding
        return text.encode(enc, "replace").decode(enc, "replace")

    def _text(self, text: str, style: str) -> RenderableType:
        from rich.text import Text

        return Text(text, style=style, no_wrap=True, overflow="ellipsis")

    def _line(self, mark: RenderableType, mark_style: str, name: str, right: str,
              right_style: str) -> RenderableType:
        """One step line: a mark, the step's name (cut to the width) and, right-aligned, its status."""
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(width=1, no_wrap=True)
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(justify="right", no_wrap=True)
        grid.add_row(Text(mark, style=mark_style) if isinstance(mark, str) else mark,
                     Text(name, style="bold" if mark_style == "bold red" else ""), Text(right, style=right_style))
        return grid

    def _notes(self, r: _Running) -> list[RenderableType]:
        return [self._text(f"    cache miss: {text}" if kind == "miss" else f"    {text}",
                           "yellow" if kind == "miss" else "dim") for kind, text in r.notes]

    def _render(self) -> RenderableType:
        """The live area (called by rich's refresh thread and on every update)."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        now = time.monotonic()
        parts: list[RenderableType] = []
        with self._state:
            for r in self.running.values():
                parts.append(self._line(r.spinner, "", r.name, format_elapsed(max(0.0, now - r.started)), "dim"))
                parts.extend(self._notes(r))
                for label, (done, total) in r.progress.items():
                    grid = Table.grid(padding=(0, 1))
                    grid.add_column(no_wrap=True)
                    grid.add_column(width=30)
                    grid.add_column(no_wrap=True)
                    amount = f"{format_bytes(done)} / {format_bytes(total)}" if total else format_bytes(done)
                    bar = ProgressBar(total=float(total) if total else None, completed=float(done), width=30,
                                      pulse=not total)
                    grid.add_row(f"    {label}", bar, amount)
                    parts.append(grid)
                parts.extend(self._text(f"    {line}", "dim") for line in list(r.tail)[-self.tail_lines:])
            plural = "" if self.done == 1 else "s"
            status = f"Building {format_elapsed(now - self.started)}  {self.done} step{plural} done"
            if self.cached:
                status += f" ({self.cached} cached)"
        parts.append(self._text(status, "blue"))
        return Group(*parts)

    def _summary(self, event: BuildFinished) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        from pybuild.image.display import human_size

        head = Text.assemble((f"{self.ok} ", "bold green"), ("Built ", "bold"), (event.image_id, "bold"))
        names = self._safe(", ".join(event.names)) if event.names else "(none: name it with -t NAME)"
        steps = f"{event.steps_cached} cached, {event.steps_run} run"
        rows = [("names", names), ("size", human_size(event.size)),
                ("time", f"{format_elapsed(event.elapsed)} ({steps})")]
        return Group(head, *(Text.assemble(f"  {k:<7}", (v, "")) for k, v in rows))
