"""`pybuild run`: run an image's command in the same sandbox as RUN, over a throw-away upper directory.

The command follows Docker's CMD/ENTRYPOINT rules; the image's Env, User and WorkingDir apply unless
overridden; `-v HOST:CTR[:ro]` become bind mounts (a missing host path is created as a directory, as Docker
does) and the image's VOLUME paths get anonymous volumes holding the image's content there. Everything the
container writes is discarded with the scratch directory when it exits.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pybuild.errors import PybuildError
from pybuild.model.oci import DEFAULT_PATH, ContainerConfig
from pybuild.store.store import Store


class RunError(PybuildError):
    """The container could not be started (Docker's exit code 125)."""

    exit_code = 125


@dataclass(frozen=True)
class VolumeSpec:
    host: Path
    target: str
    readonly: bool = False


@dataclass(frozen=True)
class RunRequest:
    image: str
    command: tuple[str, ...] = ()  # replaces CMD
    entrypoint: str | None = None  # replaces ENTRYPOINT ("" clears it) and drops the image's CMD
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[VolumeSpec, ...] = ()
    workdir: str | None = None
    user: str | None = None
    network: str = "default"
    name: str | None = None
    interactive: bool = False
    tty: bool = False


def container_argv(config: ContainerConfig, command: Sequence[str], entrypoint: str | None) -> list[str]:
    """Docker's table: ENTRYPOINT + (command or CMD); `--entrypoint` replaces ENTRYPOINT and drops CMD."""
    if entrypoint is not None:
        entry = [entrypoint] if entrypoint else []
        cmd = list(command)
    else:
        entry = list(config.entrypoint or ())
        cmd = list(command) if command else list(config.cmd or ())
    argv = entry + cmd
    if not argv:
        raise RunError("no command specified", hint="the image has no CMD or ENTRYPOINT: give a command")
    return argv


def parse_volume(spec: str) -> VolumeSpec:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        raise RunError(f"invalid volume {spec!r}: expected HOST:CONTAINER[:ro|rw] with an absolute container path")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise RunError(f"invalid volume mode {mode!r} in {spec!r}: expected ro or rw")
    return VolumeSpec(Path(parts[0]).absolute(), parts[1], mode == "ro")


def parse_env_items(items: Iterable[str]) -> dict[str, str]:
    """Docker's `-e` values: KEY=VALUE, or a bare KEY that takes its value from our environment (if set)."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if eq:
            out[key] = value
        elif key in os.environ:
            out[key] = os.environ[key]
    return out


def parse_env_file(path: Path) -> dict[str, str]:
    """Docker's --env-file: `-e` values one per line; blank lines and # comments skipped."""
    try:
        text = path.read_text()
    except OSError as e:
        raise RunError(f"cannot read env file {path}: {e.strerror or e}") from None
    lines = (line.strip() for line in text.splitlines())
    return parse_env_items(line for line in lines if line and not line.startswith("#"))


def run(store: Store, request: RunRequest, *, forward_signals: bool = False) -> int:
    """Run the container to completion and return its exit code.

    forward_signals (the CLI, in the main thread): while the container runs, SIGINT, SIGTERM, SIGHUP and SIGQUIT
    go to its process, like `docker run`, instead of stopping us; before it starts they interrupt as usual.
    """
    from pybuild.executor.fsjobs import resolve_image_user
    from pybuild.sandbox import BindMount, OverlayMount, Process, SandboxError, SandboxSpec, run_in_sandbox
    from pybuild.sandbox.jobs import FsView, run_job

    try:
        image = store.resolve(request.image)
    except PybuildError as e:
        raise RunError(e.message, hint=e.hint) from None
    lowers = store.image_lower_dirs(image)
    cfg = image.config.config
    argv = container_argv(cfg, request.command, request.entrypoint)
    env = dict(e.partition("=")[::2] for e in cfg.env)
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(request.env)
    hostname = secrets.token_hex(6)
    env.setdefault("HOSTNAME", hostname)
    if request.tty:
        env.setdefault("TERM", "xterm")
    user = request.user if request.user is not None else cfg.user
    with store.new_overlay_dirs("container") as (scratch, upper, work):
        view = FsView(scratch / "user-view", lower_dirs=lowers, chdir_for_mount=store.root)
        try:
            who = resolve_image_user(view, user)
        except PybuildError as e:
            raise RunError(e.message, hint=e.hint) from None
        env.setdefault("HOME", who.home)
        mounts: list[BindMount | OverlayMount] = []
        seeded: set[str] = set()
        if cfg.volumes and lowers:
            view = FsView(scratch / "volume-view", lower_dirs=lowers, chdir_for_mount=store.root)
            seeded = set(run_job([view], "pybuild.executor.fsjobs:existing_dirs", {"paths": sorted(cfg.volumes)}))
        for n, vol in enumerate(sorted(cfg.volumes)):
            if vol in seeded:
                # Docker fills a new anonymous volume with the image's content there (owners included); a
                # writable overlay of that directory does the same without copying, and is discarded with us.
                mounts.append(OverlayMount(lowers, vol, vol, readonly=False))
                continue
            anon = scratch / f"volume-{n}"
            anon.mkdir()
            mounts.append(BindMount(anon, vol, readonly=False))
        for v in request.volumes:
            v.host.mkdir(parents=True, exist_ok=True) if not v.host.exists() else None
            mounts.append(BindMount(v.host, v.target, readonly=v.readonly))
        workdir = request.workdir or cfg.working_dir or "/"
        spec = SandboxSpec(lower_dirs=lowers, upper_dir=upper, work_dir=work, chdir_for_mount=store.root,
                           mounts=mounts, network="none" if request.network == "none" else "host",
                           hostname=hostname)
        proc = Process(argv=argv, env=[f"{k}={v}" for k, v in env.items()], cwd=workdir, uid=who.uid, gid=who.gid,
                       additional_gids=who.groups, tty=request.tty, stdin=request.interactive)
        try:
            with _forwarding_signals(forward_signals):
                return run_in_sandbox(spec, proc)
        except SandboxError as e:
            raise RunError(e.message, hint=e.hint) from None


_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@contextlib.contextmanager
def _forwarding_signals(enabled: bool) -> Iterator[None]:
    from pybuild.sandbox import signal_all

    if not enabled:
        yield
        return
    saved = {sig: signal.signal(sig, lambda signum, frame: signal_all(signum)) for sig in _FORWARDED}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
