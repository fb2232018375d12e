"""The build planner: typed instructions -> stages in dependency order, each step fully expanded.

This is the part of BuildKit's ``dockerfile2llb/convert.go`` that knows both instructions and the graph:
global ARGs before the first FROM, per-stage ARG scope and ``--build-arg`` overrides, the predefined
platform args, stage names and indices, ``FROM <stage>``, ``COPY --from`` and ``RUN --mount=from=``
references, ``--target`` pruning, ONBUILD triggers, and ``$VAR`` expansion exactly where BuildKit expands
(never in RUN/CMD/ENTRYPOINT text). It also runs the build checks that need that state.

It knows nothing about files, mounts being made, or the store: base images come from a
``BaseImageResolver`` the caller passes in (None, or a resolver returning None, means "unknown": the
stage is planned with an empty environment and checks that would need the image's env stay quiet).
"""

from __future__ import annotations

import difflib
import posixpath
import re
import signal as _signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from pybuild.errors import Location, PybuildError
from pybuild.frontend.instructions import parse_dockerfile, parse_instruction, parse_mount
from pybuild.frontend.shell import Expansion, Lexer, ShellError
from pybuild.model import instructions as ins
from pybuild.model.ast import Dockerfile
from pybuild.model.oci import DEFAULT_PATH, ContainerConfig, Platform
from pybuild.model.reference import parse_reference
from pybuild.planner.lint import CheckConfig, Linter, LintWarning, check_secret_key, static_checks
from pybuild.planner.platform import format_platform, format_platform_all, host_platform, parse_platform

# Proxy build args are always allowed, reach RUN's environment, and are kept out of the image and history.
PROXY_ARGS = frozenset(
    {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy",
     "ALL_PROXY", "all_proxy"}
)
PREDEFINED_PLATFORM_ARGS = (
    "BUILDPLATFORM", "BUILDOS", "BUILDOSVERSION", "BUILDARCH", "BUILDVARIANT", "TARGETPLATFORM", "TARGETOS",
    "TARGETOSVERSION", "TARGETARCH", "TARGETVARIANT", "TARGETSTAGE",
)
_NON_ENV_ARGS = frozenset({"BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"})


# --- what the caller provides ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseImage:
    """What the planner needs to know about a base image: its config (Env, OnBuild, WorkingDir, User, Shell)."""

    config: ContainerConfig = field(default_factory=ContainerConfig)
    platform: Platform | None = None
    ref: str = ""  # the resolved reference (e.g. pinned by digest); "" = as written


class BaseImageResolver(Protocol):
    def resolve(self, ref: str, platform: Platform) -> BaseImage | None:
        """Look up an image reference for a platform; None when it is not known (planning goes on without it)."""
        ...


# --- what the planner returns ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a COPY --from / RUN --mount reads from: a stage of this plan, or an external image."""

    stage: int | None = None  # index of the stage (its position in the Dockerfile)
    image: str | None = None  # image reference as written, for `COPY --from=alpine`


@dataclass(frozen=True)
class Step:
    """One instruction of a stage, fully expanded, with everything it can see."""

    stage: int  # the stage's index
    index: int  # position in the stage's steps (ONBUILD triggers come first)
    instruction: ins.Instruction  # expanded (RUN/CMD/ENTRYPOINT text stays as written)
    env: tuple[tuple[str, str], ...]  # the environment the step sees: image Env + ENV + ARG values, in order
    args: tuple[tuple[str, str], ...]  # ARGs in scope with their values as RUN history shows them (_history_args)
    config_env: tuple[tuple[str, str], ...]  # the image config's Env before this step (ARGs excluded)
    workdir: str  # working directory the step runs in (for WORKDIR: the new, normalised directory)
    user: str  # USER in effect ("" = root)
    shell: tuple[str, ...]  # shell used for shell-form commands
    sources: tuple[Source | None, ...] = ()  # COPY: (from,) or (); RUN: one per mount (None = context/scratch)


@dataclass(frozen=True)
class Stage:
    """A planned stage: its base, steps and what it depends on."""

    index: int  # position in the Dockerfile (COPY --from=<index> refers to it)
    name: str | None  # lower-cased `AS` name
    from_: ins.From  # base and platform expanded
    base_stage: int | None  # the stage this one builds on, or None
    base_image: str | None  # external base image reference (None for scratch and stage bases)
    base: BaseImage | None  # what the resolver said about base_image (None: scratch, stage base, or unknown)
    platform: Platform  # platform the stage is built for (FROM --platform, else the target platform)
    steps: tuple[Step, ...]
    deps: frozenset[int]  # stages that must be built first (base stage, COPY --from, RUN --mount from=)
    images: tuple[str, ...]  # external images it needs (base, COPY --from=image, mounts from images)
    env: tuple[tuple[str, str], ...]  # the stage's environment at its end (what a child stage inherits)
    config_env: tuple[tuple[str, str], ...]  # the final image config Env
    workdir: str
    user: str
    shell: tuple[str, ...]

    @property
    def display_name(self) -> str:
        return self.name or f"stage-{self.index}"


@dataclass(frozen=True)
class Plan:
    """The whole build: the stages the target needs, dependencies first."""

    path: str
    stages: tuple[Stage, ...]  # only the stages the target needs, dependencies first
    target: int  # index of the target stage
    platform: Platform  # target platform
    build_platform: Platform
    global_args: tuple[tuple[str, str], ...]  # values visible to FROM lines (predefined + ARGs before FROM)
    build_args: Mapping[str, str]
    proxy_env: tuple[tuple[str, str], ...]  # give these to RUN, but keep them out of the image and history
    unused_build_args: tuple[str, ...]
    warnings: tuple[LintWarning, ...]
    check: CheckConfig
    escape: str = "\\"

    @property
    def target_stage(self) -> Stage:
        return self.stage(self.target)

    def stage(self, index: int) -> Stage:
        for s in self.stages:
            if s.index == index:
                return s
        raise KeyError(index)

    def lint_error(self) -> PybuildError | None:
        """With ``# check=error=true`` any warning is an error (BuildKit's "lint violation found")."""
        if not self.check.error or not self.warnings:
            return None
        rules = ", ".join(sorted({w.rule for w in self.warnings}))
        return PybuildError(f"lint violation found for rules: {rules}")


# --- planning ----------------------------------------------------------------------------------------------------


def _env_items(d: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(d.items())


def _env_from_list(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in items:
        k, _, v = e.partition("=")
        out[k] = v
    return out


@dataclass
class _State:
    """What dispatching a stage tracks as it walks the instructions."""

    env: dict[str, str]  # BuildKit's state env: what expansion and RUN see
    config_env: dict[str, str]
    args: dict[str, str | None]  # ARGs declared so far (BuildKit's buildArgs)
    workdir: str = ""
    workdir_set: bool = False
    user: str = ""
    shell: tuple[str, ...] = ()  # SHELL set by the image or a SHELL instruction
    env_known: bool = True  # False when the base image is unknown: its Env may hold anything

    def copy(self) -> _State:
        return replace(self, env=dict(self.env), config_env=dict(self.config_env), args=dict(self.args))


def _history_args(state: _State) -> tuple[tuple[str, str], ...]:
    """The ARGs declared so far with the values a RUN's history line shows, as BuildKit writes them: every
    declared ARG, valued from the environment (so an ENV of the same name wins), else its own value, else empty
    (`|2 VERSION=1 UNSET=`)."""
    return tuple((k, state.env.get(k, v if v is not None else "")) for k, v in state.args.items())


@dataclass
class _StageInfo:
    """A stage while it is being planned."""

    index: int
    definition: ins.StageDef
    from_: ins.From
    base_stage: int | None
    image: str | None  # external base image as expanded
    platform: Platform | None
    commands: list[ins.Instruction]
    sources: list[tuple[Source | None, ...]]
    onbuild_done: bool = False
    base: BaseImage | None = None
    lenient: bool = False  # lint_only and the base name is not usable: plan on an unknown base


def plan(
    dockerfile: Dockerfile,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    platform: Platform | None = None,
    build_platform: Platform | None = None,
    resolver: BaseImageResolver | None = None,
    all_stages: bool = False,
    linter: Linter | None = None,
    lint_only: bool = False,
) -> Plan:
    """Plan a parsed Dockerfile.

    ``all_stages`` plans every stage, not just what the target needs (what ``pybuild check`` does without
    ``--target``, like BuildKit's lint). Pass a ``linter`` to keep the warnings found before an error.
    ``lint_only`` is for checking without building: a FROM whose image name is empty or invalid only because a
    global ARG has no default (``ARG BASE`` / ``FROM $BASE``) is reported as InvalidDefaultArgInFrom and the
    stage planned on an unknown base, instead of failing.
    """
    return _Planner(
        dockerfile, dict(build_args or {}), target, platform, build_platform, resolver, all_stages, linter,
        lint_only,
    ).run()


class _Planner:
    def __init__(
        self, df: Dockerfile, build_args: dict[str, str], target: str | None, platform: Platform | None,
        build_platform: Platform | None, resolver: BaseImageResolver | None, all_stages: bool,
        linter: Linter | None = None, lint_only: bool = False,
    ) -> None:
        self.df = df
        self.build_args = build_args
        self.target_name = target
        self.build_platform = build_platform or host_platform()
        self.platform = platform or self.build_platform
        self.resolver = resolver
        self.all_stages = all_stages
        self.lint_only = lint_only
        self.invalid_default: set[int] = set()  # stages whose FROM is invalid with the ARG defaults
        self.lexer = Lexer(df.escape)
        self.empty_lexer = Lexer(df.escape)
        self.raw_lexer = Lexer("\\", skip_process_quotes=True)  # heredoc bodies: quotes are plain text
        try:
            check = CheckConfig.parse(df.directives.get("check"))
        except PybuildError as e:
            raise e.with_location(Location(df.path, 1, 0, df.lines[0] if df.lines else None)) from None
        self.lint = linter or Linter(df.path)
        self.lint.config = check
        self.consumed: set[str] = set()

    # -- helpers ----------------------------------------------------------------------------------------------

    def _expand(
        self, word: str, env: Mapping[str, str], inst: ins.Instruction | None, state: _State | None,
        *, lexer: Lexer | None = None,
    ) -> str:
        lx = lexer or self.lexer
        try:
            res = lx.process_word_with_matches(word, env)
        except ShellError as e:
            # BuildKit reports the undefined names it saw even when the word then fails
            if inst is not None and state is not None and e.unmatched:
                self._report_undefined(e.unmatched, inst, state)
            if inst is not None:
                raise e.with_location(inst.location) from None
            raise
        if inst is not None and state is not None and res.unmatched:
            self._report_undefined(res.unmatched, inst, state)
        return res.value

    def _report_undefined(self, names: frozenset[str], inst: ins.Instruction, state: _State) -> None:
        for name in sorted(names):
            if name in state.args or name in _NON_ENV_ARGS:
                continue
            # An unknown base image may define anything; still flag what is plainly an ARG out of scope.
            if not state.env_known and name not in self.declared_args:
                continue
            close = difflib.get_close_matches(name, list(state.env), n=1, cutoff=0.6)
            msg = f"Usage of undefined variable '${name}'"
            if close:
                msg += f" (did you mean ${close[0]}?)"
            self.lint.report("UndefinedVar", msg, inst.location)

    def _default_args(self) -> dict[str, str]:
        bp, tp = self.build_platform, self.platform
        target = self.target_name or self.parsed.stages[-1].from_.stage_name or "default"
        values = {
            "BUILDPLATFORM": format_platform(bp), "BUILDOS": bp.os, "BUILDOSVERSION": bp.os_version,
            "BUILDARCH": bp.architecture, "BUILDVARIANT": bp.variant,
            "TARGETPLATFORM": format_platform_all(tp), "TARGETOS": tp.os, "TARGETOSVERSION": tp.os_version,
            "TARGETARCH": tp.architecture, "TARGETVARIANT": tp.variant, "TARGETSTAGE": target,
        }
        return {k: self.build_args.get(k, v) for k, v in values.items()}

    def _meta_args(self, base: dict[str, str], build_args: Mapping[str, str]) -> dict[str, str]:
        args = dict(base)
        for cmd in self.parsed.meta_args:
            for kp in cmd.args:
                if kp.key in build_args:
                    args[kp.key] = build_args[kp.key]
                elif kp.value is not None:
                    args[kp.key] = self._expand(kp.value, args, cmd, None)
        return args

    # -- the main flow ----------------------------------------------------------------------------------------

    def run(self) -> Plan:
        df = self.df
        self.parsed = parsed = parse_dockerfile(df)
        static_checks(self.lint, parsed, df.warnings)
        if not parsed.stages:
            where = parsed.meta_args[-1].location if parsed.meta_args else Location(df.path, 1, 0)
            raise PybuildError("dockerfile contains no stages to build", where, hint="add a FROM instruction")
        self.declared_args = {a.key for inst in parsed.meta_args for a in inst.args}
        for st in parsed.stages:
            for c in st.commands:
                if isinstance(c, ins.Arg):
                    self.declared_args.update(a.key for a in c.args)

        self.names: dict[str, int] = {}
        for st in parsed.stages:
            name = st.from_.stage_name
            if name:
                if name in self.names:
                    raise PybuildError(
                        f'duplicate stage name "{name}", stage names should be unique', st.from_.location,
                        hint=f"stage {self.names[name]} already uses this name",
                    )
                self.names[name] = st.index

        if self.target_name is not None:
            if self.target_name.lower() not in self.names:
                close = difflib.get_close_matches(self.target_name.lower(), list(self.names), n=1)
                raise PybuildError(
                    f'target stage "{self.target_name}" could not be found',
                    hint=f"did you mean {close[0]}?" if close else
                    ("stages: " + ", ".join(self.names) if self.names else "the Dockerfile has no named stages"),
                )
            target = self.names[self.target_name.lower()]
        else:
            target = len(parsed.stages) - 1

        defaults = self._default_args()
        self._check_default_args_in_from(defaults)
        self.global_args = self._meta_args(defaults, self.build_args)
        for meta in parsed.meta_args:
            self.consumed.update(a.key for a in meta.args)

        self.stages = [self._init_stage(st) for st in parsed.stages]
        for info in self.stages:
            for cmd in info.commands:
                info.sources.append(self._sources(cmd))

        reachable = self._resolve_reachable(target)
        self._check_cycles()
        order = sorted(reachable)
        finals: dict[int, tuple[Stage, _State]] = {}
        for i in order:
            finals[i] = self._dispatch(self.stages[i], finals)

        proxy_names = {p.lower() for p in PROXY_ARGS}
        proxy = tuple((k, v) for k, v in sorted(self.build_args.items()) if k.lower() in proxy_names)
        unused = tuple(
            k for k in sorted(self.build_args)
            if k not in self.consumed and k not in PREDEFINED_PLATFORM_ARGS and k.lower() not in proxy_names
            and not k.startswith("BUILDKIT_") and k != "SOURCE_DATE_EPOCH"
        )
        for k in unused:
            self.lint.report("UnusedBuildArg", f'build-arg "{k}" was not consumed by any ARG instruction', None)
        return Plan(
            path=df.path,
            stages=tuple(finals[i][0] for i in order),
            target=target,
            platform=self.platform,
            build_platform=self.build_platform,
            global_args=_env_items(self.global_args),
            build_args=dict(self.build_args),
            proxy_env=proxy,
            unused_build_args=unused,
            warnings=self.lint.sorted(),
            check=self.lint.config,
            escape=df.escape,
        )

    def _check_default_args_in_from(self, defaults: dict[str, str]) -> None:
        try:
            args = self._meta_args(defaults, {})
        except PybuildError:
            return
        for st in self.parsed.stages:
            try:
                res = self.lexer.process_word_with_matches(st.from_.base, args)
            except PybuildError:
                return
            value = res.value
            if value == "scratch" or value.lower() in self.names:
                continue
            try:
                parse_reference(value)
            except PybuildError:
                self.invalid_default.add(st.index)
                self.lint.report(
                    "InvalidDefaultArgInFrom",
                    f"Default value for ARG {st.from_.base} results in empty or invalid base image name",
                    st.from_.location,
                )

    def _init_stage(self, st: ins.StageDef) -> _StageInfo:
        f = st.from_
        known = set(self.global_args) | self.consumed
        res = self._from_expand(f.base, f)
        for name in sorted(res.unmatched - known):
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            msg = f"FROM argument '{name}' is not declared" + (f" (did you mean {close[0]}?)" if close else "")
            self.lint.report("UndefinedArgInFrom", msg, f.location)
        base = res.value
        lenient = self.lint_only and st.index in self.invalid_default
        if not base and not lenient:
            raise PybuildError(f"base name ({f.base}) should not be blank", f.location)
        stage_platform: Platform | None = None
        platform_text = f.platform
        if f.platform:
            pres = self._from_expand(f.platform, f)
            for name in sorted(pres.unmatched - known):
                self.lint.report("UndefinedArgInFrom", f"FROM argument '{name}' is not declared", f.location)
            value = pres.value
            if len(pres.matched) == 1 and not pres.unmatched and "TARGETPLATFORM" in pres.matched and \
                    value == self.global_args.get("TARGETPLATFORM"):
                self.lint.report(
                    "RedundantTargetPlatform",
                    f"Setting platform to predefined {f.platform} in FROM is redundant as this is the default "
                    "behavior", f.location,
                )
            if not pres.matched and not pres.unmatched:
                try:
                    p = parse_platform(value)
                    name = f.stage_name or ""
                    if p.os not in name and p.architecture not in name:
                        self.lint.report(
                            "FromPlatformFlagConstDisallowed",
                            f'FROM --platform flag should not use constant value "{value}"', f.location,
                        )
                except PybuildError:
                    pass
            if not value:
                raise PybuildError(f"empty platform value from expression {f.platform}", f.location)
            try:
                stage_platform = parse_platform(value)
            except PybuildError as e:
                raise PybuildError(f"failed to parse platform {f.platform}: {e.message}", f.location) from None
            platform_text = value
        earlier = {n: i for n, i in self.names.items() if i < st.index}
        base_stage = earlier.get(base.lower())
        image = None if base_stage is not None or base == "scratch" or not base else base
        expanded = replace(f, base=base, platform=platform_text)
        info = _StageInfo(st.index, st, expanded, base_stage, image, stage_platform, list(st.commands), [])
        info.lenient = lenient
        return info

    def _from_expand(self, word: str, f: ins.From) -> Expansion:
        try:
            return self.lexer.process_word_with_matches(word, self.global_args)
        except PybuildError as e:
            raise e.with_location(f.location) from None

    def _stage_ref(self, ref: str, *, numeric: bool) -> Source:
        if numeric and ref.isdigit():
            idx = int(ref)
            if idx >= len(self.parsed.stages):
                raise PybuildError(f"invalid stage index {idx}",
                                   hint=f"the Dockerfile has {len(self.parsed.stages)} stage(s), numbered from 0")
            return Source(stage=idx)
        if ref.lower() in self.names:
            return Source(stage=self.names[ref.lower()])
        return Source(image=ref)

    def _sources(self, cmd: ins.Instruction) -> tuple[Source | None, ...]:
        try:
            if isinstance(cmd, ins.Copy):
                if not cmd.from_:
                    return ()
                if self.empty_lexer.process_word(cmd.from_, {}) != cmd.from_:
                    raise PybuildError(
                        "variable expansion is not supported for --from, define a new stage with FROM using ARG "
                        "from global scope as a workaround"
                    )
                return (self._stage_ref(cmd.from_, numeric=True),)
            if isinstance(cmd, ins.Run):
                out: list[Source | None] = []
                for spec in cmd.mount_specs:
                    m = parse_mount(spec)
                    out.append(self._stage_ref(m.from_, numeric=True) if m.from_ else None)
                return tuple(out)
        except PybuildError as e:
            raise e.with_location(cmd.location) from None
        return ()

    def _resolve_reachable(self, target: int) -> set[int]:
        while True:
            reach = set(range(len(self.stages))) if self.all_stages else self._closure(target)
            new_deps = False
            for i in sorted(reach):
                info = self.stages[i]
                if info.onbuild_done:
                    continue
                info.onbuild_done = True
                triggers: list[ins.Instruction] = []
                if info.base_stage is not None:
                    base_def = self.stages[info.base_stage].definition
                    triggers = [c.trigger for c in base_def.commands if isinstance(c, ins.Onbuild)]
                elif info.image is not None:
                    triggers = self._resolve_image(info)
                if not triggers:
                    continue
                injected = [replace(t, location=info.from_.location, end_line=info.from_.location.line,
                                    from_onbuild=True) for t in triggers]
                srcs = [self._sources(t) for t in injected]
                info.commands[:0] = injected
                info.sources[:0] = srcs
                if any(s is not None and s.stage is not None for ss in srcs for s in ss):
                    new_deps = True
            if not new_deps:
                return reach

    def _resolve_image(self, info: _StageInfo) -> list[ins.Instruction]:
        assert info.image is not None
        try:
            parse_reference(info.image)
        except PybuildError as e:
            if info.lenient:
                return []
            raise PybuildError(f'failed to parse stage name "{info.image}": {e.message}', info.from_.location,
                               hint="image names are lower-case: [registry/]name[:tag][@digest]") from None
        if self.resolver is None:
            return []
        info.base = self.resolver.resolve(info.image, info.platform or self.platform)
        if info.base is None:
            return []
        triggers: list[ins.Instruction] = []
        for text in info.base.config.on_build:
            triggers.append(self._parse_trigger(text, info))
        return triggers

    def _parse_trigger(self, text: str, info: _StageInfo) -> ins.Instruction:
        from pybuild.frontend.parser import parse

        where = f"ONBUILD trigger of {info.image}"
        try:
            df = parse(text, where)
            if len(df.nodes) != 1:
                raise PybuildError("onbuild trigger should be a single expression")
            inst = parse_instruction(df.nodes[0], where, df.lines)
            if isinstance(inst, ins.From | ins.Onbuild | ins.Maintainer):
                raise PybuildError(f"{inst.name} isn't allowed as an ONBUILD trigger")
        except PybuildError as e:
            raise PybuildError(f"{where}: {e.message}", info.from_.location, hint=e.hint) from None
        return inst

    def _closure(self, target: int) -> set[int]:
        seen: set[int] = set()
        todo = [target]
        while todo:
            i = todo.pop()
            if i in seen:
                continue
            seen.add(i)
            info = self.stages[i]
            if info.base_stage is not None:
                todo.append(info.base_stage)
            for ss in info.sources:
                todo.extend(s.stage for s in ss if s is not None and s.stage is not None)
        return seen

    def _check_cycles(self) -> None:
        edges: dict[int, list[tuple[int, ins.Instruction]]] = {}
        for info in self.stages:
            e = edges.setdefault(info.index, [])
            if info.base_stage is not None:
                e.append((info.base_stage, info.from_))
            for cmd, ss in zip(info.commands, info.sources, strict=True):
                e.extend((s.stage, cmd) for s in ss if s is not None and s.stage is not None)
        state: dict[int, int] = {}  # 1 = on the current path, 2 = done
        for start in edges:
            if state.get(start):
                continue
            stack: list[tuple[int, int]] = [(start, 0)]
            state[start] = 1
            while stack:
                node, k = stack[-1]
                if k < len(edges[node]):
                    stack[-1] = (node, k + 1)
                    dep, cmd = edges[node][k]
                    if state.get(dep) == 1:
                        name = self.stages[start].from_.stage_name or f"stage-{start}"
                        raise PybuildError(f"circular dependency detected on stage: {name}", cmd.location)
                    if not state.get(dep):
                        state[dep] = 1
                        stack.append((dep, 0))
                else:
                    state[node] = 2
                    stack.pop()

    # -- dispatch: walk one stage's instructions ------------------------------------------------------------

    def _stage_platform(self, info: _StageInfo, finals: Mapping[int, tuple[Stage, _State]]) -> Platform:
        """FROM --platform, else the base stage's platform, else the base image's, else the target platform."""
        if info.platform is not None:
            return info.platform
        if info.base_stage is not None:
            return finals[info.base_stage][0].platform
        if info.base is not None and info.base.platform is not None:
            return info.base.platform
        return self.platform

    def _initial_state(self, info: _StageInfo, finals: Mapping[int, tuple[Stage, _State]]) -> _State:
        if info.base_stage is not None:
            return finals[info.base_stage][1].copy()
        cfg = info.base.config if info.base is not None else ContainerConfig()
        env = _env_from_list(cfg.env)
        if "PATH" not in env and self._stage_platform(info, finals).os != "windows":
            env["PATH"] = DEFAULT_PATH
        known = (info.image is None and not info.lenient) or info.base is not None
        wd = posixpath.normpath(cfg.working_dir) if cfg.working_dir.startswith("/") else cfg.working_dir
        return _State(env=dict(env), config_env=dict(env), args={}, workdir=wd, user=cfg.user,
                      shell=tuple(cfg.shell or ()), env_known=known)

    def _dispatch(self, info: _StageInfo, finals: Mapping[int, tuple[Stage, _State]]) -> tuple[Stage, _State]:
        state = self._initial_state(info, finals)
        name = info.from_.stage_name or f"stage-{info.index}"
        trackers: dict[str, ins.Instruction] = {}
        steps: list[Step] = []
        deps: set[int] = set() if info.base_stage is None else {info.base_stage}
        images: list[str] = [info.image] if info.image else []
        platform = self._stage_platform(info, finals)
        default_shell = ("cmd", "/S", "/C") if platform.os == "windows" else ("/bin/sh", "-c")
        for n, (cmd, srcs) in enumerate(zip(info.commands, info.sources, strict=True)):
            for s in srcs:
                if s is None:
                    continue
                if s.stage is not None:
                    if s.stage >= info.index:
                        other = self.stages[s.stage].from_.stage_name or str(s.stage)
                        if isinstance(cmd, ins.Copy):
                            msg = f'cannot copy from stage "{other}", it needs to be defined before current stage ' \
                                  f'"{name}"'
                        else:
                            msg = f'cannot mount from stage "{other}", stage needs to be defined before current ' \
                                  "command"
                        raise PybuildError(msg, cmd.location)
                    deps.add(s.stage)
                elif s.image and s.image not in images:
                    images.append(s.image)
            before = state.copy()
            try:
                expanded = self._step(cmd, state, trackers)
            except PybuildError as e:
                raise e.with_location(cmd.location) from None
            steps.append(Step(
                stage=info.index, index=n, instruction=expanded, env=_env_items(before.env),
                args=_history_args(before),
                config_env=_env_items(before.config_env),
                workdir=(state.workdir or "/") if isinstance(cmd, ins.Workdir) else (before.workdir or "/"),
                user=before.user, shell=before.shell or default_shell, sources=srcs,
            ))
        stage = Stage(
            index=info.index, name=info.from_.stage_name, from_=info.from_, base_stage=info.base_stage,
            base_image=info.image, base=info.base, platform=platform, steps=tuple(steps),
            deps=frozenset(deps), images=tuple(images), env=_env_items(state.env),
            config_env=_env_items(state.config_env), workdir=state.workdir or "/", user=state.user,
            shell=state.shell or default_shell,
        )
        return stage, state

    def _step(self, cmd: ins.Instruction, state: _State, trackers: dict[str, ins.Instruction]) -> ins.Instruction:
        env = dict(state.env)  # every word of one instruction sees the environment from before it

        def ex(word: str) -> str:
            return self._expand(word, env, cmd, state)

        if isinstance(cmd, ins.Env):
            pairs = tuple(ins.KeyValue(ex(p.key), ex(p.value), p.legacy) for p in cmd.pairs)
            for p in pairs:
                if p.legacy:
                    self._legacy(cmd)
                check_secret_key(self.lint, "ENV", p.key, cmd.location)
                state.env[p.key] = p.value
                state.config_env[p.key] = p.value
            return replace(cmd, pairs=pairs)
        if isinstance(cmd, ins.Label):
            pairs = tuple(ins.KeyValue(ex(p.key), ex(p.value), p.legacy) for p in cmd.pairs)
            if any(p.legacy for p in pairs):
                self._legacy(cmd)
            return replace(cmd, pairs=pairs)
        if isinstance(cmd, ins.Arg):
            return self._arg(cmd, state)
        if isinstance(cmd, ins.Copy | ins.Add):
            contents = tuple(
                replace(c, data=self._expand(c.data, env, cmd, state, lexer=self.raw_lexer)) if c.expand else c
                for c in cmd.contents
            )
            out = replace(cmd, chown=ex(cmd.chown), chmod=ex(cmd.chmod), sources=tuple(ex(s) for s in cmd.sources),
                          dest=ex(cmd.dest), contents=contents)
            if isinstance(out, ins.Add):
                out = replace(out, checksum=ex(out.checksum))
            return out
        if isinstance(cmd, ins.Workdir):
            path = ex(cmd.path)
            # a drive-letter path (C:\\app) is absolute in the Windows images such files are written for
            if not state.workdir_set and not path.startswith("/") and not re.match(r"[A-Za-z]:[\\/]|\\\\", path):
                self.lint.report("WorkdirRelativePath",
                                 f'Relative workdir "{path}" can have unexpected results if the base image changes',
                                 cmd.location)
            state.workdir_set = True
            state.workdir = posixpath.normpath(posixpath.join("/", state.workdir or "/", path))
            if state.workdir.startswith("//"):
                state.workdir = "/" + state.workdir.lstrip("/")
            return replace(cmd, path=path)
        if isinstance(cmd, ins.User):
            state.user = ex(cmd.user)
            return replace(cmd, user=state.user)
        if isinstance(cmd, ins.Volume):
            paths = tuple(ex(p) for p in cmd.paths)
            if any(p == "" for p in paths):
                raise PybuildError("VOLUME specified can not be an empty string")
            return replace(cmd, paths=paths)
        if isinstance(cmd, ins.StopSignal):
            sig = ex(cmd.signal)
            _check_signal(sig)
            return replace(cmd, signal=sig)
        if isinstance(cmd, ins.Expose):
            words: list[str] = []
            for port in cmd.ports:
                try:
                    words.extend(self.lexer.process_words(port, env))
                except PybuildError as e:
                    raise e.with_location(cmd.location) from None
            return replace(cmd, ports=tuple(self._ports(words, cmd)))
        if isinstance(cmd, ins.Run):
            mounts = tuple(parse_mount(spec, ex) for spec in cmd.mount_specs)
            return replace(cmd, mounts=mounts)
        if isinstance(cmd, ins.Cmd | ins.Entrypoint | ins.Healthcheck):
            kind = type(cmd).__name__
            if kind in trackers:
                self.lint.report(
                    "MultipleInstructionsDisallowed",
                    f"Multiple {cmd.keyword} instructions should not be used in the same stage because only the "
                    "last one will be used", trackers[kind].location,
                )
            trackers[kind] = cmd
            if isinstance(cmd, ins.Cmd | ins.Entrypoint) and cmd.prepend_shell and not state.shell:
                self.lint.report(
                    "JSONArgsRecommended",
                    f"JSON arguments recommended for {cmd.keyword} to prevent unintended behavior related to OS "
                    "signals", cmd.location,
                )
            return cmd
        if isinstance(cmd, ins.Shell):
            state.shell = cmd.shell
            return cmd
        return cmd  # MAINTAINER, ONBUILD: nothing to expand

    def _legacy(self, cmd: ins.Instruction) -> None:
        self.lint.report(
            "LegacyKeyValueFormat",
            f'"{cmd.keyword} key=value" should be used instead of legacy "{cmd.keyword} key value" format',
            cmd.location,
        )

    def _arg(self, cmd: ins.Arg, state: _State) -> ins.Arg:
        decls = []
        for a in cmd.args:
            check_secret_key(self.lint, "ARG", a.key, cmd.location)
            value = a.value
            if a.key in self.build_args:
                value = self.build_args[a.key]
            elif value is not None:
                value = self._expand(value, state.env, cmd, state)
            elif a.key in self.global_args:
                value = self.global_args[a.key]
            if value is not None and a.key not in _NON_ENV_ARGS:
                state.env[a.key] = value
            state.args[a.key] = value
            self.consumed.add(a.key)
            decls.append(replace(a, value=value))
        return replace(cmd, args=tuple(decls))

    def _ports(self, ports: Sequence[str], cmd: ins.Instruction) -> list[str]:
        out: list[str] = []
        for raw in ports:
            parts = raw.split(":")
            if len(parts) == 1:
                ip, host, container = "", "", raw
            elif len(parts) == 2:
                ip, host, container = "", parts[0], parts[1]
            else:
                ip, host, container = ":".join(parts[:-2]), parts[-2], parts[-1]
            port, _, proto = container.partition("/")
            if not port:
                raise PybuildError(f'invalid port: "{raw}": no port specified')
            proto = proto or "tcp"
            if proto.lower() not in ("tcp", "udp", "sctp"):
                raise PybuildError(f'invalid port: "{raw}": invalid proto: {proto}')
            if proto != proto.lower():
                self.lint.report("ExposeProtoCasing",
                                 f"Defined protocol '{raw}' in EXPOSE instruction should be lowercase", cmd.location)
            if ip or host:
                self.lint.report(
                    "ExposeInvalidFormat",
                    f"EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'",
                    cmd.location,
                )
            start, end = _port_range(port)
            out.extend(f"{p}/{proto.lower()}" for p in range(start, end + 1))
        return out


def _port_range(text: str) -> tuple[int, int]:
    start_s, dash, end_s = text.partition("-")

    def num(s: str) -> int:
        if not re.fullmatch(r"[+-]?\d+", s):
            raise PybuildError(f"invalid containerPort: {text}")
        v = int(s)
        if not 0 <= v <= 65535:
            raise PybuildError(f"invalid containerPort: {text}")
        return v

    start = num(start_s)
    if not dash or start_s == end_s:
        return start, start
    end = num(end_s)
    if end < start:
        raise PybuildError(f"invalid containerPort: {text}")
    return start, end


def _check_signal(sig: str) -> None:
    """moby/sys/signal.ParseSignal: a positive number or a signal name, with or without SIG."""
    if sig.isdigit():
        if int(sig) == 0:
            raise PybuildError(f"invalid signal: {sig}")
        return
    name = sig.upper().removeprefix("SIG")
    if name in {s.name.removeprefix("SIG") for s in _signal.Signals}:
        return
    m = re.fullmatch(r"RTM(IN|AX)([+-]\d+)?", name)
    if m and (not m.group(2) or 0 <= int(m.group(2)[1:]) <= 15):
        return
    raise PybuildError(f"invalid signal: {sig}")
