"""A fully cached rebuild does no work: no sandbox is started (RUN) and no filesystem job runs (COPY, WORKDIR),
nothing is written under the store's blobs/ and layers/, and the image ID is the same; a one-line change to the
last step runs that step only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cachetest_util import content_snapshot, lib_build, read_file_in_image, write_context

import pybuild.executor.engine as engine
import pybuild.sandbox.jobs as jobs

DOCKERFILE = """\
FROM busybox:latest
ARG VERSION=1
ENV APP_HOME=/srv/app
WORKDIR ${APP_HOME}
RUN mkdir -p bin etc && echo "version ${VERSION}" > etc/version
COPY app.sh bin/app.sh
RUN chmod 755 bin/app.sh && ./bin/app.sh > first-run.log
USER nobody
CMD ["/srv/app/bin/app.sh"]
RUN echo last > /tmp/last
"""


class Calls:
    """Counts what the engine starts: sandboxes (RUN) and filesystem jobs (COPY/ADD/WORKDIR/user lookup)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sandbox = 0
        self.jobs: list[str] = []
        real_sandbox, real_job = engine.run_in_sandbox, engine.run_job

        def sandbox(*a: Any, **kw: Any) -> int:
            self.sandbox += 1
            return real_sandbox(*a, **kw)

        def job(views: Any, func: str, *a: Any, **kw: Any) -> Any:
            self.jobs.append(func)
            return real_job(views, func, *a, **kw)

        monkeypatch.setattr(engine, "run_in_sandbox", sandbox)
        monkeypatch.setattr(engine, "run_job", job)
        monkeypatch.setattr(jobs, "run_job", job)  # USER lookups (fsjobs.resolve_image_user) start jobs too

    def reset(self) -> None:
        self.sandbox = 0
        self.jobs = []


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(monkeypatch)


def test_fully_cached_rebuild_runs_nothing_and_writes_no_layer(cache_store: Path, tmp_path: Path,
                                                               calls: Calls) -> None:
    ctx = write_context(tmp_path, DOCKERFILE, {"app.sh": "#!/bin/sh\necho app\n"})
    first, _ = lib_build(cache_store, ctx, tags=("reuse:1",))
    assert calls.sandbox == 3 and calls.jobs, "the cold build should have run its steps"
    calls.reset()
    before = content_snapshot(cache_store)

    again, sink = lib_build(cache_store, ctx, tags=("reuse:1",))

    assert calls.sandbox == 0
    assert calls.jobs == []
    assert content_snapshot(cache_store) == before
    assert again.image_id == first.image_id
    assert again.image.manifest_digest == first.image.manifest_digest
    assert again.steps_run == 0 and again.steps_cached == 9
    assert all(s.status == "cached" for s in sink.stage_steps())


def test_changing_the_last_step_runs_only_it(cache_store: Path, tmp_path: Path, calls: Calls) -> None:
    ctx = write_context(tmp_path, DOCKERFILE, {"app.sh": "#!/bin/sh\necho app\n"})
    first, _ = lib_build(cache_store, ctx, tags=("reuse:2",))
    (ctx / "Dockerfile").write_text(DOCKERFILE.replace("echo last >", "echo last, changed >"))
    calls.reset()

    second, sink = lib_build(cache_store, ctx, tags=("reuse:2",))

    assert calls.sandbox == 1
    assert calls.jobs == ["pybuild.executor.fsjobs:user"]  # the RUN's USER nobody, looked up in the image
    steps = sink.stage_steps()
    assert [s.status for s in steps] == ["cached"] * 8 + ["done"]
    assert steps[-1].miss is not None and steps[-1].miss.startswith("instruction changed")
    assert second.steps_run == 1 and second.image_id != first.image_id
    assert read_file_in_image(cache_store, "reuse:2", "/tmp/last", tmp_path / "out") == b"last, changed\n"
    # Its layers below the last are the first build's, shared.
    assert second.image.manifest.layers[:-1] == first.image.manifest.layers[:-1]


@pytest.mark.parametrize("what,change", [
    ("--no-cache", lambda kw: kw.update(no_cache=True)),
    ("--no-cache-filter", lambda kw: kw.update(no_cache_filter=("0",))),
])
def test_no_cache_runs_everything_again(cache_store: Path, tmp_path: Path, calls: Calls, what: str,
                                        change: Callable[[dict[str, Any]], None]) -> None:
    ctx = write_context(tmp_path, DOCKERFILE, {"app.sh": "#!/bin/sh\necho app\n"})
    lib_build(cache_store, ctx)
    calls.reset()
    kw: dict[str, Any] = {}
    change(kw)
    _, sink = lib_build(cache_store, ctx, **kw)
    assert calls.sandbox == 3
    assert all(s.status == "done" and s.miss == "--no-cache" for s in sink.stage_steps()), what


def _without_times(config: dict[str, Any]) -> dict[str, Any]:
    """An image config without what differs between two runs of the same build: times, and the layers (files
    carry their mtimes)."""
    config = dict(config)
    config.pop("created", None)
    config.pop("rootfs", None)
    config["history"] = [{k: v for k, v in h.items() if k != "created"} for h in config["history"]]
    return config


def test_a_changed_build_arg_misses_where_it_is_used_not_where_it_is_declared(cache_store: Path,
                                                                              tmp_path: Path) -> None:
    # Docker: "a cache miss occurs upon its first usage, not its definition"; RUN uses every ARG (its env).
    dockerfile = (
        "FROM busybox:latest\nARG WHO=a\nCOPY f.txt /f.txt\nWORKDIR /work\nLABEL fixed=1\nRUN echo $WHO > who\n"
        "COPY f.txt /again.txt\n"
    )
    ctx = write_context(tmp_path, dockerfile, {"f.txt": "file\n"})
    lib_build(cache_store, ctx, tags=("args:1",))
    cached, sink = lib_build(cache_store, ctx, tags=("args:1",), build_args={"WHO": "b"})
    steps = sink.stage_steps()
    # the ARG (no layer; its history line changes), then COPY/WORKDIR/LABEL cached, the RUN that sees WHO, and
    # the last COPY on top of the RUN's new layer
    assert [s.status for s in steps] == ["done", "cached", "cached", "cached", "done", "done"], sink.steps()
    assert steps[4].miss == "build arg WHO changed"
    assert read_file_in_image(cache_store, "args:1", "/work/who", tmp_path / "out") == b"b\n"
    # The cached steps' history is this build's: the same config as a build without the cache
    fresh, _ = lib_build(cache_store, ctx, tags=("args:2",), build_args={"WHO": "b"}, no_cache=True)
    assert _without_times(cached.image.config.to_dict()) == _without_times(fresh.image.config.to_dict())
    assert [h.created_by for h in cached.image.config.history][-6:-4] == ["ARG WHO=b", "COPY f.txt /f.txt # buildkit"]


def test_entrypoint_after_cmd_in_another_stage_is_not_served_a_kept_cmd(cache_store: Path, tmp_path: Path) -> None:
    # Both ENTRYPOINT steps start from the same layers and config (CMD ["x"]); Docker keeps the CMD only when the
    # same stage set it, so the two must not share a cache record.
    same_stage = write_context(tmp_path, 'FROM busybox:latest\nCMD ["x"]\nENTRYPOINT ["/e"]\n')
    other_stage = write_context(tmp_path, 'FROM busybox:latest AS a\nCMD ["x"]\n\nFROM a\nENTRYPOINT ["/e"]\n')
    kept, _ = lib_build(cache_store, same_stage)
    cleared, _ = lib_build(cache_store, other_stage)
    assert kept.image.config.config.cmd == ("x",)
    assert cleared.image.config.config.cmd is None
    assert cleared.image.config.config.entrypoint == ("/e",)
