"""What makes a step miss the cache, and what must not: real builds of one Dockerfile on busybox, changed one
input at a time (a table) and several at once (hypothesis), checking which steps of the target stage ran.

The target stage, step by step (index n as in "[main n/7]"):
  2 RUN random bytes   3 ENV MODE   4 COPY src/   5 ARG VERSION   6 RUN uses VERSION and MODE   7 RUN reads /src
A change must miss from the first step that sees it on (and every later step, since keys chain on the parent's
result); a change no step sees must hit everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cachetest_util import Sink, lib_build
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybuild.store.store import Store

DOCKERFILE = """\
ARG GLOBAL=1
FROM busybox:latest AS side
ARG SIDE=1
RUN echo "side $SIDE" > /side

FROM busybox:latest AS main
RUN head -c 16 /dev/urandom | od -x > /rand
ENV MODE={mode}
COPY src/ /src/
ARG VERSION=1
RUN echo "$VERSION $MODE" > /v
RUN ls -ln /src > /listing && cat /src/app.py >> /listing
"""

FILES = {"app.py": "print('hello')\n", "util.py": "X = 1\n", "notes.tmp": "scratch\n"}


@dataclass
class Setup:
    """One build's inputs: context directory, Dockerfile values, build args, which image busybox:latest is."""

    root: Path
    ctx: Path
    mode: str = "a"
    build_args: dict[str, str] = field(default_factory=dict)
    base: str = "original"

    def write(self) -> None:
        (self.ctx / "Dockerfile").write_text(DOCKERFILE.format(mode=self.mode))

    def build(self) -> Sink:
        self.write()
        with Store.open(self.root) as store:
            store.tag(self.base_ids[self.base], "busybox:latest")
        _, sink = lib_build(self.root, self.ctx, build_args=dict(self.build_args), tags=("keys:test",))
        return sink

    base_ids: dict[str, str] = field(default_factory=dict)


def make_setup(root: Path, parent: Path) -> Setup:
    ctx = parent / "ctx"
    (ctx / "src").mkdir(parents=True)
    for name, data in FILES.items():
        (ctx / "src" / name).write_text(data)
    (ctx / ".dockerignore").write_text("**/*.tmp\n")
    with Store.open(root) as store:
        ids = {"original": store.resolve("busybox:latest").manifest_digest,
               "changed": store.resolve("busybox:changed").manifest_digest}
    return Setup(root, ctx, base_ids=ids)


def reset(s: Setup) -> None:
    """Back to the baseline inputs (file contents, modes, Dockerfile, args, base)."""
    for name, data in FILES.items():
        p = s.ctx / "src" / name
        if p.read_text() != data:
            p.write_text(data)
        if p.stat().st_mode & 0o777 != 0o644:
            p.chmod(0o644)
    s.mode, s.build_args, s.base = "a", {}, "original"


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def _forget_first_run(s: Setup) -> None:
    # The first RUN's record is dropped, so it runs again and (reading /dev/urandom) gives a new result.
    with Store.open(s.root) as store:
        keys = [r.key for r in store.cache.records() if r.instruction.startswith("RUN head -c 16")]
        assert keys
        store.cache.delete(keys)


def _touch(s: Setup) -> None:
    p = s.ctx / "src" / "app.py"
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@dataclass(frozen=True)
class Change:
    name: str
    apply: Callable[[Setup], None]
    first_miss: int | None  # index of the first step of "main" that must miss; None: all must hit
    reason: str | None = None  # the MISS message of that step, when the engine can name it
    # ... and of the step after it: usually its parent changed; an ARG changes nothing a later step can see but
    # its value, so the RUN after it names the arg (Docker: a miss "upon its first usage, not its definition")
    next_reason: str = "previous step changed"


CHANGES = [
    Change("file content", lambda s: _append(s.ctx / "src" / "app.py", "print('more')\n"), 4,
           "src/app.py changed"),
    Change("file mode", lambda s: (s.ctx / "src" / "app.py").chmod(0o755), 4, "src/app.py changed"),
    Change("build arg the step sees", lambda s: s.build_args.update(VERSION="2"), 5, "build arg VERSION changed",
           "build arg VERSION changed"),
    Change("ENV before the step", lambda s: setattr(s, "mode", "b"), 3, "instruction changed"),
    Change("base image", lambda s: setattr(s, "base", "changed"), 2, "base image busybox:latest changed"),
    Change("earlier step's result", _forget_first_run, 2, None),
    Change("mtime only", _touch, None),
    Change("ignored file", lambda s: _append(s.ctx / "src" / "notes.tmp", "more\n"), None),
    Change("undeclared build arg", lambda s: s.build_args.update(NOPE="1"), None),
    Change("build arg of another stage", lambda s: s.build_args.update(SIDE="2"), None),
    Change("global arg not redeclared", lambda s: s.build_args.update(GLOBAL="2"), None),
    Change("proxy build arg", lambda s: s.build_args.update(HTTP_PROXY="http://proxy.invalid:3128"), None),
]
BY_NAME = {c.name: c for c in CHANGES}


def check(sink: Sink, first_miss: int | None) -> None:
    steps = sink.stage_steps("main")
    assert [s.name.split("]")[0] for s in steps] == [f"[main {n}/7" for n in range(2, 8)]
    for n, step in enumerate(steps, start=2):
        want = "cached" if first_miss is None or n < first_miss else "done"
        assert step.status == want, f"step {step.name}: {step.status}, want {want}\n{sink.steps()}"


@pytest.fixture
def setup(cache_store: Path, tmp_path: Path) -> Setup:
    s = make_setup(cache_store, tmp_path)
    s.build()
    return s


@pytest.mark.parametrize("change", CHANGES, ids=[c.name for c in CHANGES])
def test_one_change(setup: Setup, change: Change) -> None:
    check(setup.build(), None)  # the baseline rebuild hits everywhere
    change.apply(setup)
    sink = setup.build()
    check(sink, change.first_miss)
    if change.first_miss is not None:
        steps = sink.stage_steps("main")
        miss = steps[change.first_miss - 2].miss
        if change.reason is not None:
            assert miss is not None and change.reason in miss, miss
        if change.first_miss < 7:
            assert steps[change.first_miss - 1].miss == change.next_reason


def test_rerun_with_same_result_keeps_later_steps(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys chain on the parent's result, not its key: a step that runs again and yields the same layer and config
    (here: a --no-cache-filter'd stage with a deterministic RUN) keeps the steps after it cached."""
    dockerfile = "FROM busybox:latest AS a\nRUN echo same > /same\n\nFROM a AS b\nRUN cat /same > /copy\n"
    (setup.ctx / "Dockerfile.same").write_text(dockerfile)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # the same file mtimes and history times on every run
    lib_build(setup.root, setup.ctx, dockerfile=str(setup.ctx / "Dockerfile.same"))
    _, sink = lib_build(setup.root, setup.ctx, dockerfile=str(setup.ctx / "Dockerfile.same"), no_cache_filter=("a",))
    assert [s.status for s in sink.stage_steps("a")] == ["done"]
    assert [s.status for s in sink.stage_steps("b")] == ["cached"]


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(names=st.sets(st.sampled_from(sorted(BY_NAME)), min_size=2, max_size=4))
def test_changes_combined(setup: Setup, names: set[str]) -> None:
    """Several changes at once miss from the earliest step any of them reaches; the ones no step sees add nothing."""
    reset(setup)
    with Store.open(setup.root) as store:  # states built by earlier examples must not hit: start afresh
        store.cache.delete(r.key for r in store.cache.records())
    setup.build()
    for n in sorted(names):
        BY_NAME[n].apply(setup)
    firsts = [BY_NAME[n].first_miss for n in names if BY_NAME[n].first_miss is not None]
    check(setup.build(), min(firsts) if firsts else None)


def test_source_date_epoch_is_an_input(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers and history made without SOURCE_DATE_EPOCH must not be reused by a build that asks for it."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    sink = setup.build()
    steps = sink.stage_steps("main")
    assert all(s.status == "done" for s in steps)
    assert steps[0].miss == "SOURCE_DATE_EPOCH changed to 86400"
    again = setup.build()
    check(again, None)
    with Store.open(setup.root) as store:
        assert store.resolve("keys:test").config.created == "1970-01-02T00:00:00Z"
