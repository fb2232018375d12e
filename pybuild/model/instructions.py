"""Typed Dockerfile instructions: what each instruction means, after validation, before execution.

These mirror BuildKit's ``frontend/dockerfile/instructions`` commands. The instruction layer
(pybuild.frontend.instructions) builds them from raw ``Node``s with their words as written; the planner
returns copies with every word BuildKit expands already expanded (``dataclasses.replace``). Nothing here
knows about files, mounts being set up, or the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybuild.errors import Location


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """Fields every instruction has: where it is and how it was written."""

    location: Location  # file, first line, keyword column, source line
    end_line: int  # last physical line (heredoc bodies included)
    original: str  # the logical line, continuations joined (BuildKit's Node.Original)
    keyword: str  # the keyword as written ("Run", "COPY"): casing lints need it
    comments: tuple[str, ...] = ()  # comment lines directly above, "#" removed
    from_onbuild: bool = False  # injected from a base image's / base stage's ONBUILD triggers

    @property
    def name(self) -> str:
        """The upper-case instruction name, e.g. "RUN"."""
        return self.keyword.upper()


@dataclass(frozen=True)
class KeyValue:
    """One key=value pair of ENV or LABEL."""

    key: str
    value: str
    legacy: bool = False  # written as `ENV key value` (no "="): the LegacyKeyValueFormat lint


@dataclass(frozen=True)
class ArgDecl:
    """One name[=default] of an ARG instruction."""

    key: str
    value: str | None  # None: declared without a default
    doc_comment: str = ""


@dataclass(frozen=True)
class SourceContent:
    """A heredoc used as a COPY/ADD source: an in-memory file."""

    path: str  # the heredoc name, used as the file name
    data: str  # body; leading tabs already removed for <<-
    expand: bool  # False when the delimiter was quoted


@dataclass(frozen=True)
class InlineFile:
    """A heredoc attached to RUN: the executor feeds it to the shell (or runs it if it has a shebang)."""

    name: str
    data: str  # body as written: tabs NOT removed yet even when chomp (BuildKit strips them at dispatch)
    chomp: bool


@dataclass(frozen=True)
class Mount:
    """One ``RUN --mount=...`` (BuildKit's instructions.Mount)."""

    type: str = "bind"  # bind | cache | tmpfs | secret | ssh
    from_: str = ""  # stage name/index or image; "" = build context (bind) / empty (cache)
    source: str = ""
    target: str = ""
    readonly: bool = True
    size_limit: int = 0  # tmpfs bytes; 0 = unlimited
    cache_id: str = ""
    sharing: str = ""  # shared | private | locked; "" = shared
    required: bool = False
    env: str | None = None  # secret exposed as this env var
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True, kw_only=True)
class From(Instruction):
    """FROM [--platform=P] image [AS name]: starts a stage."""

    base: str  # image or stage name as written (expanded by the planner)
    stage_name: str | None = None  # lower-cased `AS name`
    as_keyword: str = ""  # the "AS" word as written, for FromAsCasing
    stage_name_as_written: str = ""  # for StageNameCasing
    platform: str | None = None  # --platform value
    doc_comment: str = ""


@dataclass(frozen=True, kw_only=True)
class Run(Instruction):
    """RUN: a command run in the sandbox; its file changes become a layer."""

    cmd: tuple[str, ...]  # shell form: one string; exec form: argv
    prepend_shell: bool  # True for shell form
    files: tuple[InlineFile, ...] = ()
    mount_specs: tuple[str, ...] = ()  # raw --mount values (the planner expands and parses them)
    mounts: tuple[Mount, ...] = ()  # parsed; filled by the planner after expansion
    network: str = "default"  # default | none | host
    security: str = "sandbox"  # sandbox | insecure
    flags_used: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Cmd(Instruction):
    """CMD: the default command (or arguments to ENTRYPOINT)."""

    cmd: tuple[str, ...]
    prepend_shell: bool


@dataclass(frozen=True, kw_only=True)
class Entrypoint(Instruction):
    """ENTRYPOINT: the command the container runs."""

    cmd: tuple[str, ...]
    prepend_shell: bool


@dataclass(frozen=True, kw_only=True)
class Shell(Instruction):
    """SHELL: the shell used for shell-form commands."""

    shell: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Env(Instruction):
    """ENV: environment variables set in the image."""

    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, kw_only=True)
class Label(Instruction):
    """LABEL: metadata labels of the image."""

    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, kw_only=True)
class Maintainer(Instruction):
    """MAINTAINER (deprecated): the image author."""

    maintainer: str


@dataclass(frozen=True, kw_only=True)
class Expose(Instruction):
    """EXPOSE: ports the container listens on."""

    ports: tuple[str, ...]  # as written; the planner expands and normalises to "80/tcp"


@dataclass(frozen=True, kw_only=True)
class _CopyBase(Instruction):
    """What COPY and ADD share."""

    sources: tuple[str, ...]  # paths / globs / URLs
    contents: tuple[SourceContent, ...]  # heredoc sources
    dest: str
    chown: str = ""
    chmod: str = ""
    link: bool = False
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Copy(_CopyBase):
    """COPY: files from the context, a stage or an image."""

    from_: str = ""  # --from: stage name, stage index or image; "" = build context
    parents: bool = False


@dataclass(frozen=True, kw_only=True)
class Add(_CopyBase):
    """ADD: like COPY, plus URLs and local archives extracted."""

    checksum: str = ""
    keep_git_dir: bool | None = None
    unpack: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Volume(Instruction):
    """VOLUME: paths that get their own volume at run time."""

    paths: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class User(Instruction):
    """USER: the user (and group) commands run as."""

    user: str


@dataclass(frozen=True, kw_only=True)
class Workdir(Instruction):
    """WORKDIR: the working directory, created if missing."""

    path: str


@dataclass(frozen=True, kw_only=True)
class Arg(Instruction):
    """ARG: build arguments, with optional defaults."""

    args: tuple[ArgDecl, ...]


@dataclass(frozen=True, kw_only=True)
class Onbuild(Instruction):
    """ONBUILD: a trigger stored in the image, run by builds that use it as a base."""

    expression: str  # the trigger text stored in the image config (heredoc bodies re-attached)
    trigger: Instruction  # the same trigger, parsed and validated


@dataclass(frozen=True, kw_only=True)
class StopSignal(Instruction):
    """STOPSIGNAL: the signal that stops the container."""

    signal: str


@dataclass(frozen=True)
class HealthConfig:
    """The image config's Healthcheck: durations in nanoseconds (0 = default), as OCI/Docker store them."""

    test: tuple[str, ...]  # ("NONE",) or ("CMD", argv...) or ("CMD-SHELL", "text")
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True, kw_only=True)
class Healthcheck(Instruction):
    """HEALTHCHECK: how to test the container is healthy (or NONE)."""

    health: HealthConfig


@dataclass(frozen=True)
class StageDef:
    """A FROM and the instructions up to the next FROM, as written."""

    index: int
    from_: From
    commands: tuple[Instruction, ...]


@dataclass(frozen=True)
class ParsedDockerfile:
    """The whole file as typed instructions: ARGs before the first FROM, then the stages."""

    path: str
    meta_args: tuple[Arg, ...]
    stages: tuple[StageDef, ...]
    escape: str = "\\"
