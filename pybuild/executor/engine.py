"""The build engine: execute a Plan step by step into the store.

For each stage the target needs (dependencies first): start from the base (an image in the store, an earlier
stage, or scratch), then for each step either change the image config (metadata instructions), run a command in
the sandbox over an overlay of the parent's layers (RUN), or copy files into such an overlay (COPY/ADD). A step
that changed files becomes a layer by committing the overlay's upper directory through the store. The target
stage's result is stored as an image and named.

The engine never prints: it reports to an EventSink. It never mounts: the sandbox package does that.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pybuild.context.context import BuildContext, source_entries
from pybuild.errors import Location, PybuildError
from pybuild.events import (
    BuildFinished,
    Event,
    EventSink,
    Progress,
    StepCached,
    StepDone,
    StepError,
    StepLog,
    StepMiss,
    StepNote,
    StepStarted,
)
from pybuild.executor import cachekey, imageconfig
from pybuild.executor.fsjobs import resolve_image_user
from pybuild.executor.runstep import StepFailed, context_mask, run_argv
from pybuild.layer import Compression
from pybuild.model import instructions as ins
from pybuild.model.oci import DEFAULT_PATH, ContainerConfig, History, ImageConfig, Platform, RootFS
from pybuild.planner.plan import BaseImage, Plan, Source, Stage, Step
from pybuild.planner.platform import format_platform, host_platform
from pybuild.store.cache import CacheRecord, FileChecksums
from pybuild.store.store import Image, Layer, Store

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

_OUTPUT_TAIL = 20  # lines of a failed step's output shown in its error
_PROGRESS_AFTER = 1.0  # seconds a layer commit runs before its byte progress is shown


@dataclass(frozen=True)
class BuildRequest:
    """Everything a build needs besides the store (what `pybuild build` flags become)."""

    context: Path | None  # None: no context (Dockerfile from stdin with `-` as context)
    dockerfile: str | None = None  # path as given to -f; None = CONTEXT/Dockerfile; "-" = dockerfile_data
    dockerfile_data: bytes | None = None  # the Dockerfile's bytes when it came from stdin
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    network: str = "default"  # default | none | host: what RUN gets unless it says --network itself
    secrets: Mapping[str, Path] = field(default_factory=dict)  # id -> file
    platform: str | None = None
    no_cache_filter: tuple[str, ...] = ()  # stages (names or indices) never taken from the cache
    explain_cache: bool = False  # say for every step why it hit or missed
    compression: Compression = Compression.ZSTD


@dataclass(frozen=True)
class BuildResult:
    image: Image
    names: tuple[str, ...]
    steps_run: int
    steps_cached: int
    elapsed: float
    warnings: tuple[str, ...] = ()  # build-check warnings (`pybuild check`'s), one line each

    @property
    def image_id(self) -> str:
        return self.image.id


@dataclass
class _Counters:
    lock: threading.Lock = field(default_factory=threading.Lock)
    vertex: int = 0  # BuildKit-style step numbers (#N), in start order
    run: int = 0
    cached: int = 0


class _LockedSink:
    """Stages may run in threads: one event at a time reaches the renderer."""

    def __init__(self, inner: EventSink) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self.lock:
            self.inner.emit(event)


@dataclass
class _StageResult:
    """Where a stage stands: its config and layers so far (bottom first)."""

    config: ImageConfig
    layers: list[Layer]

    @property
    def chain_id(self) -> str | None:
        return self.layers[-1].chain_id if self.layers else None


class StoreResolver:
    """Base images for the planner, from the local store, pulled from a registry when missing (or always, with
    pull=True, once per build); the planner itself never sees the store or the registry."""

    def __init__(self, store: Store, *, pull: bool = False) -> None:
        self.store = store
        self.pull = pull
        self.images: dict[str, Image] = {}
        self.pull_errors: dict[str, PybuildError] = {}

    def resolve(self, ref: str, platform: Platform) -> BaseImage | None:
        if ref.lower() == "scratch":
            return None
        img = self.images.get(ref) or (None if self.pull else self.store.find(ref))
        if img is None and ref not in self.pull_errors:
            img = self._pull(ref, platform)
        if img is None:
            return None
        self.images[ref] = img
        return BaseImage(config=img.config.config, platform=img.config.platform, ref=img.manifest_digest)

    def _pull(self, ref: str, platform: Platform) -> Image | None:
        from pybuild.registry.pull import pull_image

        try:
            return pull_image(self.store, ref, platform).image
        except PybuildError as e:
            self.pull_errors[ref] = e  # reported with the FROM line by _missing_image
            return None


def _missing_image(ref: str, location: Location | None, pull_error: PybuildError | None = None) -> PybuildError:
    if pull_error is not None:
        return PybuildError(f"base image {ref!r}: {pull_error.message}", location, hint=pull_error.hint)
    return PybuildError(
        f"base image {ref!r} is not in the local store",
        location,
        hint="`pybuild pull NAME` fetches it from a registry; `pybuild import FILE NAME` (e.g. "
             "fixtures/base/busybox.sh) or `pybuild load -i ARCHIVE` make one locally",
    )


class _Builder:
    def __init__(self, store: Store, request: BuildRequest, plan: Plan, resolver: StoreResolver,
                 sink: EventSink) -> None:
        self.store = store
        self.request = request
        self.plan = plan
        self.resolver = resolver
        self.sink: EventSink = _LockedSink(sink)
        self.counters = _Counters()
        self.lease = ""  # the build's store lease, which also keeps worker threads' layers alive
        self.checksums: FileChecksums = store.file_checksums()
        self._build_context: BuildContext | None = None
        self.results: dict[int, _StageResult] = {}
        self.multi_stage = len(plan.stages) > 1
        self.epoch = _source_date_epoch()

    # --- stages -------------------------------------------------------------------------------------------------

    def build(self) -> _StageResult:
        """Run the stages in dependency order; stages that are ready at the same time run in parallel threads."""
        pending = list(self.plan.stages)
        running: dict[Future[_StageResult], Stage] = {}
        pool: ThreadPoolExecutor | None = None
        try:
            while pending or running:
                ready = [s for s in pending if all(d in self.results for d in s.deps)]
                if not running and len(ready) == 1:
                    # The common case needs no thread: one stage at a time, in this thread.
                    pending.remove(ready[0])
                    self.results[ready[0].index] = self._stage(ready[0])
                    continue
                # Stages in parallel: only then is concurrent.futures (and the logging it imports, ~2.5 ms) loaded.
                from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

                for st in ready:
                    pending.remove(st)
                    pool = pool or ThreadPoolExecutor(max_workers=4, thread_name_prefix="stage")
                    running[pool.submit(self._stage_in_thread, st)] = st
                if not running:
                    raise PybuildError("internal error: no stage can start (dependency cycle?)")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    st = running.pop(fut)
                    self.results[st.index] = fut.result()
        except BaseException:
            cancel_all()  # a failed or interrupted build stops the steps still running in other stages
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        return self.results[self.plan.target]

    def _stage_in_thread(self, stage: Stage) -> _StageResult:
        # SQLite connections and leases belong to one thread: a worker opens the store for itself, and hands its
        # layers to the build's lease before its own lease ends.
        store = Store.open(self.store.root)
        try:
            with store.lease():
                worker = copy.copy(self)
                worker.store = store
                sums = worker.checksums = store.file_checksums()  # persistent, like the main thread's
                try:
                    result = worker._stage(stage)
                finally:
                    sums.flush()
                if result.layers and self.lease:
                    store.pin(self.lease, layers=[result.layers[-1].chain_id])
                return result
        finally:
            store.close()

    def _label(self, stage: Stage, n: int) -> str:
        total = len(stage.steps) + 1
        prefix = f"{stage.display_name} " if (self.multi_stage or stage.name) else ""
        return f"[{prefix}{n}/{total}]"

    def _start(self, name: str) -> tuple[int, float]:
        with self.counters.lock:
            self.counters.vertex += 1
            v = self.counters.vertex
        self.sink.emit(StepStarted(v, name))
        return v, time.monotonic()

    def _stage(self, stage: Stage) -> _StageResult:
        v, t0 = self._start(f"{self._label(stage, 1)} FROM {stage.from_.base}")
        result = self._base(stage)
        self.sink.emit(StepDone(v, time.monotonic() - t0))
        no_cache = self.request.no_cache or (stage.name or "") in self.request.no_cache_filter \
            or str(stage.index) in self.request.no_cache_filter
        for n, step in enumerate(stage.steps, start=2):
            name = f"{self._label(stage, n)} {_describe(step.instruction)}"
            v, t0 = self._start(name)
            # Only ADD <url> needs a scratch dir before the cache lookup (the download is part of the key); a
            # directory made and removed per step costs a cached rebuild more than its lookups.
            downloads = isinstance(step.instruction, ins.Add) and any(_is_url(s) for s in step.instruction.sources)
            try:
                with self.store.new_scratch_dir("step") if downloads else contextlib.nullcontext() as scratch:
                    result = self._cached_step(stage, n, step, result, v, t0, name, scratch, no_cache)
            except PybuildError as e:
                self.sink.emit(StepError(v, (e.message.splitlines() or [""])[0], time.monotonic() - t0))
                raise e.with_location(step.instruction.location) from None
        return result

    def _cached_step(self, stage: Stage, n: int, step: Step, cur: _StageResult, v: int, t0: float, name: str,
                     scratch: Path | None, no_cache: bool) -> _StageResult:
        """Reuse the step's cached result when its key is known; otherwise run it and remember the result."""
        downloads: list[dict[str, Any]] = []
        inputs = self._inputs(stage, n, step, cur, scratch, downloads)
        key = inputs.key()
        position = self._position(stage, n)
        cache = self.store.cache
        rec = None if no_cache else cache.lookup(key)
        if self.request.explain_cache:
            self._explain(v, key, inputs, rec, cache.latest(position, inputs.instruction_text))
        if rec is not None:
            result = self._restore(rec, cur, step)
            if result is not None:
                with self.counters.lock:
                    self.counters.cached += 1
                self.sink.emit(StepCached(v, name))
                return result
        if no_cache:
            self.sink.emit(StepMiss(v, "--no-cache"))
        elif not self.request.explain_cache:
            old = cache.latest(position, inputs.instruction_text)
            if old is not None:
                reasons = cachekey.explain(old.inputs, inputs)
                if reasons:
                    # The first reason is the root cause (a changed parent explains everything after it);
                    # --explain-cache lists them all.
                    self.sink.emit(StepMiss(v, reasons[0]))
        result, layer = self._step(stage, step, cur, v, t0, name, downloads)
        cache.put(CacheRecord(key=key, position=position, instruction=inputs.instruction_text,
                              chain_id=result.chain_id, config=result.config.to_json(), inputs=inputs.to_dict(),
                              size=layer.blob.size if layer is not None and layer.blob is not None else 0))
        self.sink.emit(StepDone(v, time.monotonic() - t0))
        return result

    def _explain(self, v: int, key: str, inputs: cachekey.StepInputs, rec: CacheRecord | None,
                 old: CacheRecord | None) -> None:
        self.sink.emit(StepNote(v, f"cache key {key}"))
        if rec is not None:
            self.sink.emit(StepNote(v, "HIT: a record with this key exists"))
            return
        if old is None:
            self.sink.emit(StepNote(v, "MISS: no earlier record for this step"))
            return
        reasons = cachekey.explain(old.inputs, inputs) or ["the key differs (no named input differs)"]
        for r in reasons:
            self.sink.emit(StepNote(v, f"MISS: {r}"))

    def _restore(self, rec: CacheRecord, cur: _StageResult, step: Step) -> _StageResult | None:
        config = ImageConfig.from_json(rec.config)
        # Keys leave the parent's history out (cachekey.result_digest) and the instruction's spelling too, so the
        # record may come from a build whose lines read differently: the history is the current parent's plus
        # this step's entry as this build writes it (the record's time kept: a cached rebuild is the same image).
        if config.history:
            last = config.history[-1]
            entry = self._history_entry(step, last.created, last.empty_layer)
            config = replace(config, history=(*cur.config.history, entry))
        if rec.chain_id is None:
            return _StageResult(config, [])
        try:
            layers = self.store.layer_chain(rec.chain_id)
            if not all(x.path is not None and x.path.is_dir() for x in layers):
                self.store.ensure_unpacked(rec.chain_id)  # only a store whose unpacked dirs went pays this
                layers = self.store.layer_chain(rec.chain_id)
        except PybuildError:
            return None  # its layers are gone or damaged: run the step again
        if tuple(x.diff_id for x in layers) != config.diff_ids:
            return None
        return _StageResult(config, layers)

    def _position(self, stage: Stage, n: int) -> str:
        where = f"{self.request.context and self.request.context.absolute()}\0{self._dockerfile_path()}"
        return hashlib.sha256(f"{where}\0{stage.index}\0{n}".encode()).hexdigest()

    def _parent(self, stage: Stage, n: int, cur: _StageResult) -> tuple[str, str]:
        """(digest, description) of what step n starts from."""
        if n > 2:
            return cachekey.result_digest(cur.chain_id, cur.config), "previous step"
        if stage.base_stage is not None:
            base = self.plan.stage(stage.base_stage)
            return cachekey.result_digest(cur.chain_id, cur.config), f"stage {base.display_name}"
        if stage.base_image is None:
            return "scratch", "scratch"
        img = self._image(stage.base_image, stage.from_.location)
        return img.manifest_digest, f"base image {stage.base_image}"

    def _inputs(self, stage: Stage, n: int, step: Step, cur: _StageResult, scratch: Path | None,
                downloads: list[dict[str, Any]]) -> cachekey.StepInputs:
        inst = step.instruction
        parent, parent_desc = self._parent(stage, n, cur)
        variables: dict[str, str] = {}
        args: set[str] = set()
        if isinstance(inst, ins.Run | ins.Arg):
            # Only a RUN sees the variables (as its environment). Any other instruction is described in full by
            # its expanded form (the values it uses are in it) and the parent's result (whose config holds ENV).
            variables = {k: v for k, v in step.env if k not in _PROXY_ARGS}
            args = {k for k, _ in step.args if k not in _PROXY_ARGS}
        if isinstance(inst, ins.Arg):
            # An ARG's own value (default or --build-arg) is what this step depends on.
            for a in inst.args:
                if a.value is not None and a.key not in _PROXY_ARGS:
                    variables[a.key] = a.value
                    args.add(a.key)
        inputs = cachekey.StepInputs(
            parent=parent, parent_desc=parent_desc, instruction=cachekey.instruction_identity(inst),
            instruction_text=_describe(inst), variables=variables, args=sorted(args),
            platform=format_platform(stage.platform), options={"compression": str(self.request.compression)},
        )
        if isinstance(inst, ins.Entrypoint):
            # Whether ENTRYPOINT keeps the CMD depends on this stage's earlier lines, which the parent's config
            # does not show (keys leave history out): two Dockerfiles may reach the same parent either way.
            inputs.options["cmd_set"] = str(_cmd_set(stage, step))
        if self.epoch is not None:  # it changes file times and history: reproducible builds reuse only their own
            inputs.options["SOURCE_DATE_EPOCH"] = str(self.epoch)
        if isinstance(inst, ins.Copy | ins.Add):
            local = [x for x in inst.sources if not _is_url(x)]
            src = step.sources[0] if step.sources else None
            if isinstance(inst, ins.Copy) and inst.from_:
                inputs.mounts[f"--from={inst.from_}"] = self._source_result(src, inst.from_, inst.location)
            elif local:
                matches = self._context().select(local, parents=isinstance(inst, ins.Copy) and inst.parents)
                inputs.files = cachekey.file_entries(
                    source_entries(matches, exclude=inst.exclude, cache=self.checksums))
            if isinstance(inst, ins.Add):
                from pybuild.executor.fetch import check_add_sources, download

                check_add_sources(inst.sources, inst.checksum or None)
                for url in (x for x in inst.sources if _is_url(x)):
                    assert scratch is not None
                    got = download(url, scratch, checksum=inst.checksum or None)
                    f = got.file
                    downloads.append({"path": str(f.path), "name": f.name, "mtime": f.mtime, "url": url})
                    inputs.files[url] = got.digest
        elif isinstance(inst, ins.Run):
            # The network a RUN gets changes what it can produce (BuildKit keys on it too).
            inputs.options["network"] = inst.network if inst.network != "default" else self.request.network
            for i, m in enumerate(inst.mounts):
                if m.type != "bind":
                    continue
                src = step.sources[i] if i < len(step.sources) else None
                if src is not None and (src.stage is not None or src.image):
                    inputs.mounts[f"mount {m.target}"] = self._source_result(src, m.from_, inst.location)
                else:
                    matches = self._context().select([m.source or "."])
                    for path, digest in cachekey.file_entries(
                            source_entries(matches, cache=self.checksums)).items():
                        inputs.files[f"{m.target}:{path}"] = digest
        return inputs

    def _source_result(self, src: Source | None, ref: str, location: Location) -> str:
        if src is not None and src.stage is not None:
            res = self.results[src.stage]
            return cachekey.result_digest(res.chain_id, res.config)
        img = self._image(src.image if src is not None and src.image else ref, location)
        return img.manifest_digest

    def _context(self) -> BuildContext:
        if self.request.context is None:
            raise PybuildError("this instruction reads files from the build context, but the build has none",
                               hint="pass a context directory instead of `-`")
        if self._build_context is None:
            df = self._dockerfile_path()
            self._build_context = BuildContext.from_dir(self.request.context.absolute(),
                                                        Path(df) if df else None)
        return self._build_context

    def _base(self, stage: Stage) -> _StageResult:
        result = self._base_result(stage)
        if result.config.config.on_build:
            # The planner runs the base's ONBUILD triggers in this stage; like Docker, they go no further.
            cfg = result.config
            result.config = replace(cfg, config=replace(cfg.config, on_build=()))
        return result

    def _base_result(self, stage: Stage) -> _StageResult:
        if stage.base_stage is not None:
            parent = self.results[stage.base_stage]
            return _StageResult(parent.config, list(parent.layers))
        if stage.base_image is None:  # FROM scratch
            plat = stage.platform
            cfg = ImageConfig(architecture=plat.architecture, os=plat.os, variant=plat.variant,
                              config=ContainerConfig(env=(f"PATH={DEFAULT_PATH}",)))
            return _StageResult(cfg, [])
        img = self._image(stage.base_image, stage.from_.location)
        layers = self._unpacked_layers(img)
        return _StageResult(img.config, layers)

    def _image(self, ref: str, location: Location | None) -> Image:
        img = self.resolver.images.get(ref) or self.store.find(ref)
        if img is None:
            raise _missing_image(ref, location, self.resolver.pull_errors.get(ref))
        return img

    def _unpacked_layers(self, img: Image) -> list[Layer]:
        if img.top_chain_id is not None:
            self.store.ensure_unpacked(img.top_chain_id)
        return self.store.image_layers(img)

    # --- steps --------------------------------------------------------------------------------------------------

    def _step(self, stage: Stage, step: Step, cur: _StageResult, v: int, t0: float, name: str,
              downloads: list[dict[str, Any]]) -> tuple[_StageResult, Layer | None]:
        inst = step.instruction
        if isinstance(inst, ins.Run):
            layer = self._run(stage, step, cur, v, t0, name)
        elif isinstance(inst, ins.Copy | ins.Add):
            layer = self._copy(stage, step, cur, downloads, v)
        elif isinstance(inst, ins.Workdir):
            layer = self._workdir(step, cur, v)
        else:
            layer = None
        with self.counters.lock:
            self.counters.run += 1
        return self._record(stage, cur, step, layer), layer

    def _record(self, stage: Stage, cur: _StageResult, step: Step, layer: Layer | None) -> _StageResult:
        inst = step.instruction
        config = cur.config
        container = imageconfig.apply(config.config, inst, shell=step.shell, workdir=step.workdir,
                                      cmd_set=_cmd_set(stage, step))
        author = inst.maintainer if isinstance(inst, ins.Maintainer) else config.author
        entry = self._history_entry(step, _timestamp(self.epoch), layer is None)
        layers = [*cur.layers, layer] if layer is not None else list(cur.layers)
        rootfs = RootFS(diff_ids=tuple(x.diff_id for x in layers))
        new = replace(config, config=container, author=author, history=(*config.history, entry), rootfs=rootfs)
        return _StageResult(new, layers)

    @staticmethod
    def _history_entry(step: Step, created: str | None, empty_layer: bool) -> History:
        history_args = tuple((k, v) for k, v in step.args if k not in _PROXY_ARGS)
        return History(
            created=created,
            created_by=imageconfig.created_by(step.instruction, shell=step.shell, args=history_args,
                                              workdir=step.workdir),
            comment="buildkit.dockerfile.v0",
            empty_layer=empty_layer,
        )

    def _commit(self, upper: Path, parent: str | None, v: int) -> Layer | None:
        """The upper dir as a layer on parent, or None when the step changed nothing."""
        if not any(os.scandir(upper)):
            return None

        # Byte progress only for commits long enough to watch: small layers keep the log to one line per step.
        started = time.monotonic()
        shown = False

        def progress(done: int) -> None:
            nonlocal shown
            if shown or time.monotonic() - started >= _PROGRESS_AFTER:
                shown = True
                self.sink.emit(Progress(v, "committing layer", done, None))

        layer = self.store.commit_layer_dir(upper, parent, self.request.compression, source_date_epoch=self.epoch,
                                            progress=progress)
        if shown and layer.blob is not None:
            self.sink.emit(Progress(v, "committing layer", layer.blob.size, layer.blob.size))
        return layer

    def _lower_dirs(self, cur: _StageResult) -> list[str]:
        return self.store.lower_dirs(cur.chain_id) if cur.chain_id else []

    def _view(self, cur: _StageResult, mountpoint: Path, upper: Path | None = None,
              work: Path | None = None) -> FsView:
        return FsView(mountpoint=mountpoint, lower_dirs=self._lower_dirs(cur), upper_dir=upper, work_dir=work,
                      chdir_for_mount=self.store.root)

    def _workdir(self, step: Step, cur: _StageResult, v: int) -> Layer | None:
        with self.store.new_overlay_dirs("workdir") as (scratch, upper, work):
            run_job([self._view(cur, scratch / "root", upper, work)], "pybuild.executor.fsjobs:workdir",
                    {"path": step.workdir, "user": step.user})
            return self._commit(upper, cur.chain_id, v)

    def _source_view(self, step: Step, scratch: Path) -> tuple[FsView | None, str | None]:
        inst = step.instruction
        if not isinstance(inst, ins.Copy) or not inst.from_:
            return None, None
        src = step.sources[0] if step.sources else None
        mp = scratch / "from"
        if src is not None and src.stage is not None:
            res = self.results[src.stage]
            return self._view(res, mp), f"stage {inst.from_}"
        ref = src.image if src is not None and src.image else inst.from_
        img = self._image(ref, inst.location)
        layers = self._unpacked_layers(img)
        return self._view(_StageResult(img.config, layers), mp), f"image {ref}"

    def _copy(self, stage: Stage, step: Step, cur: _StageResult, downloads: list[dict[str, Any]],
              v: int) -> Layer | None:
        inst = step.instruction
        assert isinstance(inst, ins.Copy | ins.Add)
        word = "COPY" if isinstance(inst, ins.Copy) else "ADD"
        with self.store.new_overlay_dirs("copy") as (scratch, upper, work):
            # --link copies into an empty tree that becomes its own layer, independent of what is below it.
            dest_view = (FsView(mountpoint=scratch / "root", upper_dir=upper, work_dir=work) if inst.link
                         else self._view(cur, scratch / "root", upper, work))
            views = [dest_view]
            from_view, from_label = self._source_view(step, scratch)
            if from_view is not None:
                views.append(from_view)
            local = [s for s in inst.sources if not _is_url(s)]
            if any(_is_url(s) for s in inst.sources) and isinstance(inst, ins.Copy):
                raise PybuildError("COPY does not accept URLs as sources", hint="use ADD to download a file")
            payload = {
                "context": str(self.request.context.absolute()) if self.request.context else None,
                "dockerfile": self._dockerfile_path(),
                "from_view": from_view is not None,
                "from_label": from_label,
                "sources": local,
                "dest": inst.dest,
                "workdir": step.workdir,
                "chown": inst.chown,
                "chmod": inst.chmod,
                "exclude": list(inst.exclude),
                "parents": isinstance(inst, ins.Copy) and inst.parents,
                "unpack": isinstance(inst, ins.Add) and inst.unpack is not False,
                "instruction": word,
                "inline": [{"name": c.path, "content": c.data, "mode": 0o644} for c in inst.contents],
                "remote": downloads,
            }
            run_job(views, "pybuild.executor.fsjobs:copy", payload)
            if inst.link:
                # A --link layer is committed on its own and then stacked on the parent's chain.
                layer = self._commit(upper, None, v)
                return self._restack(layer, cur.chain_id) if layer is not None else None
            return self._commit(upper, cur.chain_id, v)

    def _restack(self, layer: Layer, parent: str | None) -> Layer:
        if parent is None:
            return layer
        assert layer.blob is not None
        stacked = self.store.add_layer_blob(layer.blob, parent, layer.diff_id)
        return self.store.ensure_unpacked(stacked.chain_id)

    def _dockerfile_path(self) -> str | None:
        """The Dockerfile's absolute path (None when it came from stdin), found as the planner found it."""
        from pybuild.planner.load import dockerfile_path

        if self.request.dockerfile == "-":
            return None
        path, _ = dockerfile_path(self.request.dockerfile, self.request.context or ".")
        return str(path.absolute()) if path is not None else None

    def _run(self, stage: Stage, step: Step, cur: _StageResult, v: int, t0: float, name: str) -> Layer | None:
        inst = step.instruction
        assert isinstance(inst, ins.Run)
        tail: collections.deque[str] = collections.deque(maxlen=_OUTPUT_TAIL)
        partial = bytearray()

        def on_output(chunk: bytes) -> None:
            partial.extend(chunk)
            while (i := partial.find(b"\n")) >= 0:
                line = partial[:i].decode("utf-8", "replace").rstrip("\r")
                del partial[: i + 1]
                tail.append(line)
                self.sink.emit(StepLog(v, line, time.monotonic() - t0))

        with self.store.new_overlay_dirs("run") as (scratch, upper, work), contextlib.ExitStack() as locks:
            who = resolve_image_user(self._view(cur, scratch / "user-view"), step.user)
            argv, extra_mounts = run_argv(inst, step.shell, scratch)
            env = dict(step.env)
            env.update(dict(self.plan.proxy_env))
            env.setdefault("PATH", DEFAULT_PATH)
            env.setdefault("HOME", who.home)  # as runc does when the image does not set it
            mounts, secret_env = self._run_mounts(inst, step, scratch, locks)
            env.update(secret_env)
            network = inst.network if inst.network != "default" else self.request.network
            spec = SandboxSpec(
                lower_dirs=self._lower_dirs(cur), upper_dir=upper, work_dir=work,
                chdir_for_mount=self.store.root, mounts=[*extra_mounts, *mounts],
                network="none" if network == "none" else "host",
            )
            proc = Process(argv=argv, env=[f"{k}={val}" for k, val in env.items()], cwd=step.workdir or "/",
                           uid=who.uid, gid=who.gid, additional_gids=who.groups)
            code = run_in_sandbox(spec, proc, on_output=on_output)
            if partial:
                on_output(b"\n")
            if code != 0:
                raise StepFailed(name, argv, code, list(tail))
            return self._commit(upper, cur.chain_id, v)

    def _cache_mount(self, m: ins.Mount, target: str, scratch: Path, n: int, locks: contextlib.ExitStack) -> Path:
        """The directory behind `--mount=type=cache`, honouring sharing=shared|private|locked."""
        owner = {"uid": m.uid or 0, "gid": m.gid or 0, "mode": 0o755 if m.mode is None else m.mode}
        path = self.store.cache_mount_dir(m.cache_id or target, **owner)
        if m.sharing in ("", "shared"):
            return path
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        locks.callback(os.close, fd)
        if m.sharing == "locked":
            fcntl.flock(fd, fcntl.LOCK_EX)  # wait for the other build's step to finish with it
            return path
        try:  # private: the shared directory if nobody uses it, else a fresh one for this step alone
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            private = scratch / f"cache-{n}"
            private.mkdir()
            os.chown(private, owner["uid"], owner["gid"])
            os.chmod(private, owner["mode"])
            return private
        return path

    def _run_mounts(self, inst: ins.Run, step: Step, scratch: Path, locks: contextlib.ExitStack,
                    ) -> tuple[list[BindMount | TmpfsMount | OverlayMount], dict[str, str]]:
        mounts: list[BindMount | TmpfsMount | OverlayMount] = []
        env: dict[str, str] = {}
        for n, m in enumerate(inst.mounts):
            src = step.sources[n] if n < len(step.sources) else None
            target = m.target if m.target.startswith("/") else "/" + (step.workdir.strip("/") + "/" + m.target
                                                                         ).lstrip("/")
            if m.type == "tmpfs":
                mounts.append(TmpfsMount(target, m.size_limit or None))
            elif m.type == "secret":
                sid = m.cache_id or m.source or (os.path.basename(m.target) if m.target else "")
                path = self.request.secrets.get(sid)
                if path is None:
                    if m.required:
                        raise PybuildError(f"secret {sid!r} is required but was not given",
                                           hint=f"pass --secret id={sid},src=FILE")
                    continue
                if m.env:
                    try:
                        env[m.env] = path.read_bytes().decode("utf-8", "surrogateescape")
                    except OSError as e:
                        raise PybuildError(f"cannot read secret {sid!r} from {path}: {e.strerror or e}") from None
                if m.env is None or m.target:
                    mounts.append(BindMount(path, target if m.target else f"/run/secrets/{sid}", readonly=True))
            elif m.type == "cache":
                mounts.append(BindMount(self._cache_mount(m, target, scratch, n, locks), target,
                                        readonly=m.readonly))
            elif m.type == "bind":
                if src is not None and src.stage is not None:
                    lowers = self._lower_dirs(self.results[src.stage])
                    mounts.append(OverlayMount(lowers, target, m.source or "/", readonly=m.readonly))
                elif src is not None and src.image:
                    img = self._image(src.image, inst.location)
                    lowers = self._lower_dirs(_StageResult(img.config, self._unpacked_layers(img)))
                    mounts.append(OverlayMount(lowers, target, m.source or "/", readonly=m.readonly))
                else:
                    if self.request.context is None:
                        raise PybuildError("RUN --mount=type=bind needs a build context")
                    mask = scratch / f"context-mask-{n}"
                    if context_mask(self._context(), mask):
                        # What .dockerignore hides stays hidden, as in BuildKit (whose context is sent filtered).
                        mounts.append(OverlayMount([str(mask), str(self.request.context.absolute())], target,
                                                   m.source or "/", readonly=m.readonly))
                        continue
                    if not m.readonly:
                        # rw: the step writes to a throw-away overlay over the context, never to the user's files.
                        mounts.append(OverlayMount([str(self.request.context.absolute())], target, m.source or "/",
                                                   readonly=False))
                        continue
                    from pybuild.context.rootfs import resolve_in_root

                    # Resolved as if the context were `/`: a symlink in it never exposes the host's files.
                    source = resolve_in_root(self.request.context.absolute(), m.source or "/")
                    mounts.append(BindMount(source, target, readonly=True))
            else:
                raise PybuildError(f"RUN --mount=type={m.type} is not supported")
        return mounts, env


# --- helpers ---------------------------------------------------------------------------------------------------

_PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                         "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})


def _describe(inst: ins.Instruction) -> str:
    text = " ".join(inst.original.split()) if inst.original else type(inst).__name__.upper()
    return text if len(text) <= 200 else text[:197] + "..."


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise PybuildError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds") from None


def _timestamp(epoch: int | None) -> str:
    t = datetime.fromtimestamp(epoch, UTC) if epoch is not None else datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if epoch is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_platform(request: BuildRequest) -> Platform:
    from pybuild.planner.platform import parse_platform

    host = host_platform()
    if request.platform is None:
        return host
    wanted = parse_platform(request.platform)
    if (wanted.os, wanted.architecture, wanted.variant or "") != (host.os, host.architecture, host.variant or ""):
        raise PybuildError(
            f"cannot build for {format_platform(wanted)}: this machine is {format_platform(host)} and pybuild "
            "has no emulation yet",
            hint="drop --platform, or build on a machine of that platform",
        )
    return wanted


def build(store: Store, request: BuildRequest, sink: EventSink) -> BuildResult:
    """Plan and execute the build, store the target stage as an image and name it with request.tags."""
    from pybuild.planner.load import load_and_plan

    t0 = time.monotonic()
    platform = _check_platform(request)
    resolver = StoreResolver(store, pull=request.pull)
    context = request.context if request.context is not None else Path(".")
    plan = load_and_plan(request.dockerfile, context, stdin=request.dockerfile_data,
                         build_args=request.build_args, target=request.target, platform=platform,
                         resolver=resolver)
    err = plan.lint_error()
    if err is not None:
        raise err
    for stage in plan.stages:
        if stage.base_image is not None and resolver.images.get(stage.base_image) is None \
                and store.find(stage.base_image) is None:
            raise _missing_image(stage.base_image, stage.from_.location, resolver.pull_errors.get(stage.base_image))
        if stage.platform != platform and (stage.platform.os, stage.platform.architecture) != \
                (platform.os, platform.architecture):
            raise PybuildError(f"FROM --platform={format_platform(stage.platform)} needs emulation, which pybuild "
                               "does not have yet", stage.from_.location)
    with store.lease() as lease:
        builder = _Builder(store, request, plan, resolver, sink)
        builder.lease = lease
        try:
            result = builder.build()
        finally:
            builder.checksums.flush()
        config = result.config
        if request.labels:
            labels = dict(config.config.labels)
            labels.update(request.labels)
            config = replace(config, config=replace(config.config, labels=labels))
        # The image's creation time is its last step's: a fully cached rebuild then gives the same image ID.
        last = config.history[-1].created if config.history else None
        config = replace(config, created=last or _timestamp(builder.epoch))
        names = tuple(_normalize_tag(t) for t in request.tags)
        image = store.put_image(config, result.layers, names=names)
    elapsed = time.monotonic() - t0
    counters = builder.counters
    sink.emit(BuildFinished(image.id, names, image.size, elapsed, counters.cached, counters.run))
    warnings = tuple(w.render() for w in plan.warnings)  # the build checks, unused build args among them
    return BuildResult(image, names, counters.run, counters.cached, elapsed, warnings)


def _cmd_set(stage: Stage, step: Step) -> bool:
    """Whether this stage set CMD before `step` (then an ENTRYPOINT keeps it, else clears it, as Docker does):
    derived from the plan, so a stage resumed from the cache knows it too."""
    return any(isinstance(s.instruction, ins.Cmd) for s in stage.steps[: step.index])


def _normalize_tag(tag: str) -> str:
    from pybuild.model.reference import parse_reference

    try:
        ref = parse_reference(tag)
    except (PybuildError, ValueError) as e:
        raise PybuildError(f"invalid tag {tag!r}: {e}") from None
    if ref.digest:
        raise PybuildError(f"invalid tag {tag!r}: a tag cannot contain a digest")
    return ref.familiar()


# Imported last: the sandbox package is only needed once a build runs.
from pybuild.sandbox import (  # noqa: E402
    BindMount,
    OverlayMount,
    Process,
    SandboxSpec,
    TmpfsMount,
    cancel_all,
    run_in_sandbox,
)
from pybuild.sandbox.jobs import FsView, run_job  # noqa: E402
