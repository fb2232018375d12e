"""Renderers for build events: plain (BuildKit's CI log style), rawjson (one JSON object per line), quiet.

This is the only place that prints build progress. The terminal renderer (rich) lives in render_tty so that
plain, rawjson and quiet builds never import rich; :func:`make_renderer` picks one for the CLI.

Plain output follows BuildKit's ``--progress=plain`` printer: a header ``#N NAME`` per step (vertex), its
lines as ``#N <seconds> <line>``, then ``#N DONE 1.2s``, ``#N CACHED`` or ``#N ERROR: ...``; a blank line
separates vertices. When output of another step arrives while one is still open (parallel stages), the open
one is closed with ``#N ...`` and the other's header printed again. The image export ends the log like
BuildKit's image exporter::

    #7 exporting to image
    #7 writing image sha256:... done
    #7 naming to docker.io/library/app:latest done
    #7 DONE 0.0s

rawjson (``--progress=rawjson``) writes one JSON object per event and line, ``type`` first. Every object has it; the
other fields, per type, are a stable interface (new fields may be added, none renamed or removed):

    step_started  step (int, the #N vertex number), name (str, e.g. "[2/4] RUN make")
    log           step, elapsed (float seconds since the step started), line (str, no newline)
    cached        step, name
    miss          step, reason (str: why the cache could not be used)
    note          step, text (str: a remark such as --explain-cache details)
    progress      step, label (str), done (int bytes), total (int bytes or null when unknown)
    done          step, elapsed (float seconds)
    error         step, elapsed, message (str: the step's error, first line)
    finished      image_id (str, sha256:...), names (list of str), size (int bytes), elapsed (float seconds),
                  steps_cached (int), steps_run (int)
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Protocol, TextIO

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


class Renderer(Protocol):
    """An EventSink the CLI closes when the build ends, successfully or not (stops live displays)."""

    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


def make_renderer(progress: str, *, quiet: bool = False, err: TextIO | None = None) -> Renderer:
    """The renderer for `--progress MODE` (auto, plain, tty, rawjson) and `-q`, writing to err (stderr).

    auto is the terminal display when err is a terminal (and TERM is not dumb), plain otherwise.
    """
    import os

    out = err if err is not None else sys.stderr
    if quiet:
        return QuietRenderer()
    if progress == "rawjson":
        return JsonRenderer(out)
    if progress == "auto":
        isatty = getattr(out, "isatty", None)
        progress = "tty" if callable(isatty) and isatty() and os.environ.get("TERM", "") != "dumb" else "plain"
    if progress == "tty":
        from pybuild.render_tty import TtyRenderer

        return TtyRenderer(out)
    return PlainRenderer(out)


def format_bytes(n: int) -> str:
    """Bytes as BuildKit's plain progress shows them: ``512B``, ``1.23MB`` (decimal units, two decimals)."""
    if n < 1000:
        return f"{n}B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000.0
        if value < 1000.0 or unit == "PB":
            return f"{value:.2f}{unit}"
    raise AssertionError("unreachable")


def strip_step_prefix(message: str, name: str) -> str:
    """A step error without the step's own name in front (the header line already names the step)."""
    prefix = name + ": "
    return message[len(prefix):] if name and message.startswith(prefix) else message


def full_name(name: str) -> str:
    """docker.io/library/app:latest for app:latest, as BuildKit's exporter names images."""
    from pybuild.errors import PybuildError
    from pybuild.model.reference import parse_reference

    try:
        return parse_reference(name).full()
    except (PybuildError, ValueError):  # the engine already checked the name; a display must never fail
        return name


# BuildKit throttles unfinished byte progress: a new line only after 5% more or 5 seconds.
_MIN_PROGRESS_DELTA = 0.05
_MIN_TIME_DELTA = 5.0


class PlainRenderer:
    """BuildKit's plain progress: `#5 [2/4] RUN make`, `#5 0.321 output`, `#5 DONE 1.2s`, `#5 CACHED`."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stderr
        self.names: dict[int, str] = {}
        self.open: set[int] = set()
        self.current: int | None = None  # the vertex whose header was printed last and that is still open
        self.printed_any = False
        self.finished = False
        self.last_vertex = 0
        self.last_finish: float | None = None
        self.progress: dict[tuple[int, str], tuple[float, int, float]] = {}  # (step, label) -> start, done, at

    def close(self) -> None:
        if self.printed_any and not self.finished:
            self.out.write("\n")  # a failed or interrupted build: the CLI's error follows, set apart
        self.out.flush()

    def _header(self, step: int) -> None:
        """Make step the vertex being printed, as BuildKit's textMux does when the vertex changes."""
        if step == self.current:
            return
        w = self.out.write
        if self.current is not None and self.current in self.open:
            w(f"#{self.current} ...\n")
        if self.printed_any:
            w("\n")
        self.printed_any = True
        w(f"#{step} {self.names.get(step, '')}\n")
        self.current = step

    def _finish(self, step: int, line: str) -> None:
        self._header(step)
        self.out.write(f"#{step} {line}\n")
        self.open.discard(step)
        self.current = None
        self.last_finish = time.monotonic()

    def emit(self, event: Event) -> None:
        w = self.out.write
        if isinstance(event, StepStarted):
            self.names[event.step] = event.name
            self.open.add(event.step)
            self.last_vertex = max(self.last_vertex, event.step)
            self._header(event.step)
        elif isinstance(event, StepCached):
            self._finish(event.step, "CACHED")
        elif isinstance(event, StepNote):
            self._header(event.step)
            w(f"#{event.step} {event.text}\n")
        elif isinstance(event, StepMiss):
            self._header(event.step)
            w(f"#{event.step} MISS: {event.reason}\n")
        elif isinstance(event, StepLog):
            self._header(event.step)
            w(f"#{event.step} {event.elapsed:.3f} {event.line}\n")
        elif isinstance(event, StepDone):
            self._finish(event.step, f"DONE {event.elapsed:.1f}s")
        elif isinstance(event, StepError):
            message = strip_step_prefix(event.message, self.names.get(event.step, ""))
            self._finish(event.step, f"ERROR: {message}")
        elif isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, BuildFinished):
            self._exported(event)
            self.finished = True
        self.out.flush()

    def _progress(self, event: Progress) -> None:
        now = time.monotonic()
        key = (event.step, event.label)
        complete = event.total is not None and event.done >= event.total
        seen = self.progress.get(key)
        start = seen[0] if seen is not None else now
        if seen is not None and not complete:
            delta = (event.done - seen[1]) / event.total if event.total else 0.0
            if delta < _MIN_PROGRESS_DELTA and now - seen[2] < _MIN_TIME_DELTA:
                return
        self.progress[key] = (start, event.done, now)
        amount = f" {format_bytes(event.done)}" if event.done or event.total else ""
        if event.total:
            amount += f" / {format_bytes(event.total)}"
        took = f" {now - start:.1f}s" if now - start > 0.01 else ""
        self._header(event.step)
        self.out.write(f"#{event.step} {event.label}{amount}{took}{' done' if complete else ''}\n")

    def _exported(self, event: BuildFinished) -> None:
        # The engine stores the image after the last step; that time is the export vertex's.
        took = time.monotonic() - self.last_finish if self.last_finish is not None else 0.0
        v = self.last_vertex + 1
        self.names[v] = "exporting to image"
        self.open.add(v)
        self._header(v)
        w = self.out.write
        w(f"#{v} writing image {event.image_id} done\n")
        for name in event.names:
            w(f"#{v} naming to {full_name(name)} done\n")
        self._finish(v, f"DONE {took:.1f}s")


_TYPE_NAMES: dict[type, str] = {
    StepStarted: "step_started",
    StepLog: "log",
    StepCached: "cached",
    StepMiss: "miss",
    StepNote: "note",
    StepDone: "done",
    StepError: "error",
    Progress: "progress",
    BuildFinished: "finished",
}


def json_record(event: Event) -> dict[str, Any]:
    """The rawjson object for an event (the schema in this module's docstring)."""
    record: dict[str, Any] = {"type": _TYPE_NAMES[type(event)]}
    if isinstance(event, StepStarted):
        record.update(step=event.step, name=event.name)  # `at` is a monotonic clock: meaningless outside
    elif isinstance(event, StepLog):
        record.update(step=event.step, elapsed=round(event.elapsed, 3), line=event.line)
    elif isinstance(event, StepCached):
        record.update(step=event.step, name=event.name)
    elif isinstance(event, StepMiss):
        record.update(step=event.step, reason=event.reason)
    elif isinstance(event, StepNote):
        record.update(step=event.step, text=event.text)
    elif isinstance(event, Progress):
        record.update(step=event.step, label=event.label, done=event.done, total=event.total)
    elif isinstance(event, StepDone):
        record.update(step=event.step, elapsed=round(event.elapsed, 3))
    elif isinstance(event, StepError):
        record.update(step=event.step, elapsed=round(event.elapsed, 3), message=event.message)
    elif isinstance(event, BuildFinished):
        record.update(image_id=event.image_id, names=list(event.names), size=event.size,
                      elapsed=round(event.elapsed, 3), steps_cached=event.steps_cached, steps_run=event.steps_run)
    return record


class JsonRenderer:
    """--progress=rawjson: one JSON event per line, with a `type` field naming the event."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stderr

    def emit(self, event: Event) -> None:
        self.out.write(json.dumps(json_record(event)) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class QuietRenderer:
    """-q: nothing while building; the CLI prints the image id at the end."""

    def emit(self, event: Event) -> None:
        pass

    def close(self) -> None:
        pass
