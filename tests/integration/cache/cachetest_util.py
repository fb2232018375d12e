"""Helpers for the build-cache tests: builds through the library or the CLI, what each step did, store snapshots
and leftover checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybuild.events import Event, StepCached, StepDone, StepMiss, StepNote, StepStarted
from pybuild.executor.engine import BuildRequest, BuildResult, build
from pybuild.store.store import Store
from tests import support

REPO = Path(__file__).resolve().parents[3]
MARKER = "PYBUILD_CACHE_TEST"  # set in every build's environment; leftover processes are found by it


@dataclass
class Step:
    name: str  # "[main 4/7] COPY src/ /src/"
    status: str = "started"  # cached | done | error | started
    miss: str | None = None  # the MISS reason shown, if any
    notes: list[str] = field(default_factory=list)


@dataclass
class Sink:
    """Collects events and says what each step did."""

    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def steps(self) -> list[Step]:
        by_vertex: dict[int, Step] = {}
        for e in self.events:
            if isinstance(e, StepStarted):
                by_vertex[e.step] = Step(e.name)
            elif isinstance(e, StepCached):
                by_vertex[e.step].status = "cached"
            elif isinstance(e, StepDone):
                by_vertex[e.step].status = "done"
            elif isinstance(e, StepMiss):
                by_vertex[e.step].miss = e.reason
            elif isinstance(e, StepNote):
                by_vertex[e.step].notes.append(e.text)
        return [by_vertex[v] for v in sorted(by_vertex)]

    def stage_steps(self, stage: str | None = None) -> list[Step]:
        """The steps after FROM (of one stage when named), in order."""
        prefix = f"[{stage} " if stage else "["
        return [s for s in self.steps() if s.name.startswith(prefix) and " FROM " not in s.name]


def lib_build(root: Path, context: Path | None, **kw: Any) -> tuple[BuildResult, Sink]:
    """Build through the library (what `pybuild build` calls) into the store at root."""
    sink = Sink()
    with Store.open(root) as store:
        result = build(store, BuildRequest(context=context, **kw), sink)
    return result, sink


def cli_env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYBUILD_ROOT": str(root),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def cli(root: Path, *args: str, input: bytes | None = None, timeout: float = 300,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m pybuild ARGS` against the store at root; raises with its output when check and it fails."""
    p = subprocess.run([sys.executable, "-m", "pybuild", *args], env=cli_env(root), input=input,
                       capture_output=True, timeout=timeout)
    out = subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode("utf-8", "replace"),
                                      p.stderr.decode("utf-8", "replace"))
    if check and out.returncode != 0:
        raise AssertionError(f"pybuild {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def cli_popen(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pybuild", *args], env=cli_env(root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def write_context(parent: Path, dockerfile: str, files: Mapping[str, str | bytes] | None = None) -> Path:
    ctx = parent / f"ctx-{uuid.uuid4().hex[:8]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, data in (files or {}).items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    return ctx


def content_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under the store's blobs/ and layers/ with its (size, mtime_ns): what a build wrote there."""
    out: dict[str, tuple[int, int]] = {}
    for top in ("blobs", "layers"):
        for dirpath, dirnames, filenames in os.walk(root / top):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def read_file_in_image(root: Path, ref: str, path: str, dest: Path) -> bytes:
    """A file's content in the image, from its root filesystem exported with `--output type=local`."""
    from pybuild.export.outputs import OutputSpec, write_output

    with Store.open(root) as store:
        write_output(store, store.resolve(ref), OutputSpec("local", dest))
    return (dest / path.lstrip("/")).read_bytes()


def processes_with(token: str) -> list[int]:
    return support.processes_with(MARKER, token)


def assert_store_clean(root: Path, token: str) -> None:
    """No process of this test left, nothing mounted under the store, and the store verifies."""
    support.assert_clean(root, MARKER, token)


def statuses(steps: Sequence[Step]) -> list[str]:
    return [s.status for s in steps]
