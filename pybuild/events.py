"""Build progress events: what the engine reports, and the sink protocol renderers implement.

The engine never prints; it emits these to an EventSink. Renderers (pybuild.render) turn them into plain
BuildKit-style lines, rawjson, or a terminal display; tests collect them in a ListSink and assert on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class StepStarted:
    """A step began."""

    step: int  # BuildKit-style vertex number (#N)
    name: str  # e.g. "[build 2/5] RUN make"
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class StepLog:
    """One line of a running step's output."""

    step: int
    line: str  # one line of the step's output, without the newline
    elapsed: float  # seconds since the step started


@dataclass(frozen=True)
class StepCached:
    """A step's result came from the build cache."""

    step: int
    name: str


@dataclass(frozen=True)
class StepMiss:
    """Why a step could not use the cache (printed before it runs)."""

    step: int
    reason: str


@dataclass(frozen=True)
class StepNote:
    """A remark about a step that is not its output (e.g. --explain-cache details)."""

    step: int
    text: str


@dataclass(frozen=True)
class StepDone:
    """A step finished."""

    step: int
    elapsed: float


@dataclass(frozen=True)
class StepError:
    """A step failed."""

    step: int
    message: str
    elapsed: float


@dataclass(frozen=True)
class Progress:
    """Byte progress of a long transfer (layer commit, push, pull)."""

    step: int
    label: str
    done: int
    total: int | None


@dataclass(frozen=True)
class BuildFinished:
    """The build stored its image."""

    image_id: str  # config digest
    names: tuple[str, ...]
    size: int
    elapsed: float
    steps_cached: int
    steps_run: int


Event = StepStarted | StepLog | StepCached | StepMiss | StepNote | StepDone | StepError | Progress | BuildFinished


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class ListSink:
    """Collects events in memory (tests, and the last-lines buffer for failed steps)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


class NullSink:
    def emit(self, event: Event) -> None:
        pass
