"""Renderers for build events: plain (BuildKit's CI log style), rawjson (one JSON object per line), quiet.

This is the only place that prints build progress. The terminal renderer (rich) lives in render_tty so that
plain and quiet builds never import rich.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TextIO

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


class PlainRenderer:
    """BuildKit's plain progress: `#5 [2/4] RUN make`, `#5 0.321 output`, `#5 DONE 1.2s`, `#5 CACHED`."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stderr

    def emit(self, event: Event) -> None:
        w = self.out.write
        if isinstance(event, StepStarted):
            w(f"#{event.step} {event.name}\n")
        elif isinstance(event, StepCached):
            w(f"#{event.step} CACHED\n\n")
        elif isinstance(event, StepNote):
            w(f"#{event.step} {event.text}\n")
        elif isinstance(event, StepMiss):
            w(f"#{event.step} MISS: {event.reason}\n")
        elif isinstance(event, StepLog):
            w(f"#{event.step} {event.elapsed:.3f} {event.line}\n")
        elif isinstance(event, StepDone):
            w(f"#{event.step} DONE {event.elapsed:.1f}s\n\n")
        elif isinstance(event, StepError):
            w(f"#{event.step} ERROR: {event.message}\n\n")
        elif isinstance(event, Progress):
            pass  # plain logs stay readable: byte counts only matter on a terminal
        elif isinstance(event, BuildFinished):
            names = ", ".join(event.names)
            w(f"writing image {event.image_id} done" + (f", naming to {names}" if names else "") + "\n")
        self.out.flush()


class JsonRenderer:
    """--progress=rawjson: one JSON event per line, with a `type` field naming the event."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stderr

    def emit(self, event: Event) -> None:
        record = {"type": _TYPE_NAMES[type(event)], **asdict(event)}
        self.out.write(json.dumps(record, sort_keys=True) + "\n")
        self.out.flush()


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


class QuietRenderer:
    """-q: nothing while building; the CLI prints the image id at the end."""

    def emit(self, event: Event) -> None:
        pass
