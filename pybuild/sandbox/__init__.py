"""The RUN sandbox: run one process in fresh namespaces on an overlay of image layers.

This package is the only code in pybuild that calls unshare/mount/pivot_root, and even it never does
so in the calling process: `run_in_sandbox` spawns a helper (`python -m pybuild.sandbox.helper`)
which enters new pid/mount/uts/ipc (and, for network="none", net) namespaces, mounts the overlay,
/proc, a minimal /dev, a read-only /sys and the step's /etc/hosts, /etc/resolv.conf and /etc/hostname,
masks the paths Docker masks, `pivot_root`s into the overlay and runs the command under a tiny init
(pid 1) that reaps zombies and forwards SIGINT/SIGTERM. Capabilities are cut to Docker's default set
and no_new_privs is set before the command is exec'd.

Guarantees the caller can build on:
  * writes land in `upper_dir` (overlay semantics: deletions of lower files become whiteouts);
  * mountpoints the sandbox had to create (for /etc/hosts, /proc, bind targets...) are removed from
    `upper_dir` after the run, so they never end up in a layer;
  * when the run ends (normally, by error, Ctrl-C, or the caller being killed) no mount is left in the
    host and no process of the step survives: everything lives in namespaces that die with the helper.

`work_dir` is scratch space owned by the sandbox for one run: it must be on the same filesystem as
`upper_dir` (overlay puts its workdir there) and the caller deletes it afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pybuild.errors import PybuildError

__all__ = [
    "DEFAULT_CAPABILITIES",
    "BindMount",
    "OverlayMount",
    "Process",
    "SandboxError",
    "SandboxSpec",
    "TmpfsMount",
    "cancel_all",
    "default_hosts",
    "host_resolv_conf",
    "run_in_sandbox",
    "signal_all",
]

# Docker's default capability set (moby oci/caps/defaults.go), as capability numbers.
DEFAULT_CAPABILITIES: frozenset[int] = frozenset(
    {
        0,  # CHOWN
        1,  # DAC_OVERRIDE
        3,  # FOWNER
        4,  # FSETID
        5,  # KILL
        6,  # SETGID
        7,  # SETUID
        8,  # SETPCAP
        10,  # NET_BIND_SERVICE
        13,  # NET_RAW
        18,  # SYS_CHROOT
        27,  # MKNOD
        29,  # AUDIT_WRITE
        31,  # SETFCAP
    }
)


class SandboxError(PybuildError):
    """The sandbox could not be set up or the command could not be started (not: the command failed)."""


@dataclass(frozen=True)
class BindMount:
    """Bind `source` (a host path, file or directory) at `target` (absolute path inside the sandbox)."""

    source: Path
    target: str
    readonly: bool = True


@dataclass(frozen=True)
class TmpfsMount:
    """A fresh tmpfs at `target`; `size` in bytes (None = the kernel default, half of RAM)."""

    target: str
    size: int | None = None


@dataclass(frozen=True)
class OverlayMount:
    """Mount `source` (a path inside the image) of a read-only view of image layers at `target`.

    For `RUN --mount=type=bind,from=<stage or image>`. lower_dirs are topmost first and, like
    SandboxSpec.lower_dirs, may be relative to `chdir_for_mount`. With readonly=False the step may write
    to it, and the writes are thrown away with the sandbox's work dir (Docker's `rw` bind semantics).
    """

    lower_dirs: Sequence[str]
    target: str
    source: str = "/"
    readonly: bool = True


@dataclass(frozen=True)
class SandboxSpec:
    """Where the root filesystem comes from and what the step sees around its process.

    lower_dirs: overlay lower directories, topmost first. Relative entries are resolved against
        `chdir_for_mount`, so a long stack can be passed as short link names and still fit the
        kernel's one-page limit on mount options (as Docker's overlay2 driver does with l/ links).
        Empty means no overlay: `upper_dir` itself is the root filesystem and is modified in place
        (for `pybuild run` on an unpacked rootfs).
    upper_dir: where the step's writes land (overlay upperdir), or the rootfs when lower_dirs is empty.
    work_dir: sandbox scratch space, same filesystem as upper_dir; the caller removes it afterwards.
    hosts / resolv_conf: contents of /etc/hosts and /etc/resolv.conf for the step (None: a BuildKit-like
        hosts file naming `hostname`; the host's resolv.conf). They are read-only bind mounts and never
        part of the layer.
    """

    lower_dirs: Sequence[str]
    upper_dir: Path
    work_dir: Path
    chdir_for_mount: Path | None = None
    mounts: Sequence[BindMount | TmpfsMount | OverlayMount] = ()
    network: Literal["host", "none"] = "host"
    hostname: str = "buildkitsandbox"
    hosts: str | None = None
    resolv_conf: str | None = None


@dataclass(frozen=True)
class Process:
    """What to exec: argv exactly (the caller builds `/bin/sh -c ...` for shell form), env exactly.

    uid/gid/additional_gids are numeric; resolving USER names against /etc/passwd is the caller's job.
    tty: give the process a pseudo-terminal (output then has \\r\\n line ends). stdin: connect the
    caller's stdin, otherwise the process reads /dev/null.
    """

    argv: Sequence[str]
    env: Sequence[str] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: Sequence[int] = field(default_factory=tuple)
    tty: bool = False
    stdin: bool = False


def default_hosts(hostname: str) -> str:
    """The /etc/hosts BuildKit gives a RUN step."""
    return f"127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def host_resolv_conf() -> str:
    """The host's /etc/resolv.conf, or Google's resolvers (Docker's fallback) when there is none."""
    try:
        return Path("/etc/resolv.conf").read_text()
    except OSError:
        return "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def _validate(spec: SandboxSpec, process: Process) -> None:
    if not process.argv:
        raise SandboxError("nothing to run: the command is empty")
    for target in [m.target for m in spec.mounts] + [process.cwd]:
        if not target.startswith("/"):
            raise SandboxError(f"sandbox path {target!r} is not absolute")
    for d in spec.lower_dirs:
        # mount(2) splits its options at commas and overlay has no escape for them.
        if "," in d:
            raise SandboxError(f"overlay lower directory {d!r} contains a comma, which mount options cannot carry")
    if spec.network not in ("host", "none"):
        raise SandboxError(f"unknown network mode {spec.network!r}", hint="use 'host' or 'none'")
    for entry in process.env:
        if "=" not in entry:
            raise SandboxError(f"environment entry {entry!r} has no '='")


def _config(spec: SandboxSpec, process: Process) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = []
    for m in spec.mounts:
        if isinstance(m, BindMount):
            mounts.append({"type": "bind", "source": str(Path(m.source).absolute()), "target": m.target,
                           "readonly": m.readonly})
        elif isinstance(m, OverlayMount):
            mounts.append({"type": "overlay", "lower_dirs": list(m.lower_dirs), "source": m.source,
                           "target": m.target, "readonly": m.readonly})
        else:
            mounts.append({"type": "tmpfs", "target": m.target, "size": m.size})
    return {
        "lower_dirs": list(spec.lower_dirs),
        "upper_dir": str(Path(spec.upper_dir).absolute()),
        "work_dir": str(Path(spec.work_dir).absolute()),
        "chdir_for_mount": str(Path(spec.chdir_for_mount).absolute()) if spec.chdir_for_mount else None,
        "mounts": mounts,
        "network": spec.network,
        "hostname": spec.hostname,
        "hosts": spec.hosts if spec.hosts is not None else default_hosts(spec.hostname),
        "resolv_conf": spec.resolv_conf if spec.resolv_conf is not None else host_resolv_conf(),
        "argv": list(process.argv),
        "env": list(process.env),
        "cwd": process.cwd,
        "uid": process.uid,
        "gid": process.gid,
        "additional_gids": list(process.additional_gids),
        "tty": process.tty,
        "stdin": process.stdin,
        "capabilities": sorted(DEFAULT_CAPABILITIES),
    }


def _helper_env() -> dict[str, str]:
    # The helper must import this very pybuild, installed or not.
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    return env


_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def signal_all(signum: int) -> None:
    """Pass a signal on to the commands running in this process's sandboxes (`pybuild run` forwards Ctrl-C)."""
    with _LIVE_LOCK:
        helpers = list(_LIVE)
    for h in helpers:
        try:
            h.send_signal(signum)
        except ProcessLookupError:
            pass


def cancel_all() -> None:
    """Stop every step running in this process's sandboxes (from another thread, e.g. on Ctrl-C).

    Each interrupted run_in_sandbox call returns the killed command's status; the caller decides what that means.
    """
    with _LIVE_LOCK:
        helpers = list(_LIVE)
    for h in helpers:
        try:
            h.send_signal(signal.SIGUSR1)
        except ProcessLookupError:
            pass


def run_in_sandbox(
    spec: SandboxSpec, process: Process, *, on_output: Callable[[bytes], None] | None = None
) -> int:
    """Run `process` in a sandbox built from `spec`; return its exit code (128+N if killed by signal N).

    on_output receives stdout and stderr merged, in chunks as they arrive (as BuildKit shows RUN
    output); without it the process writes straight to this process's stdout/stderr.
    Raises SandboxError if the sandbox cannot be set up or the command cannot be exec'd.
    If this call is interrupted (KeyboardInterrupt...), the step is killed and cleaned up first.
    """
    _validate(spec, process)
    Path(spec.work_dir).mkdir(parents=True, exist_ok=True)
    cfg_r, cfg_w = os.pipe()
    status_r, status_w = os.pipe()
    out_r = out_w = -1
    if on_output is not None:
        out_r, out_w = os.pipe()
    try:
        helper = subprocess.Popen(
            [sys.executable, "-m", "pybuild.sandbox.helper", str(cfg_r), str(status_w), str(os.getpid())],
            stdin=None if process.stdin else subprocess.DEVNULL,
            stdout=out_w if on_output is not None else None,
            stderr=out_w if on_output is not None else None,
            pass_fds=(cfg_r, status_w),
            env=_helper_env(),
            cwd="/",
            # Terminal signals reach only us; we decide how the step is stopped (below).
            start_new_session=True,
        )
    finally:
        os.close(cfg_r)
        os.close(status_w)
        if out_w >= 0:
            os.close(out_w)
    with _LIVE_LOCK:
        _LIVE.add(helper)
    try:
        try:
            with os.fdopen(cfg_w, "wb") as f:
                f.write(json.dumps(_config(spec, process)).encode())
        except BrokenPipeError:
            pass  # the helper died early; its status (or lack of one) says why
        if on_output is not None:
            while chunk := os.read(out_r, 65536):
                on_output(chunk)
        helper.wait()
    except BaseException:
        # SIGUSR1 asks the helper to kill the whole step and clean up; SIGKILL if even that hangs.
        try:
            helper.send_signal(signal.SIGUSR1)
            helper.wait(timeout=30)
        except BaseException:
            helper.kill()
            helper.wait()
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(helper)
        if out_r >= 0:
            os.close(out_r)
        with os.fdopen(status_r, "rb") as f:
            status = f.read()
    return _result(status, helper.returncode)


def _result(status: bytes, helper_code: int) -> int:
    try:
        msg = json.loads(status) if status else {}
    except ValueError:
        msg = {}
    if "error" in msg:
        raise SandboxError(str(msg["error"]), hint=msg.get("hint"))
    if "exit_code" in msg:
        return int(msg["exit_code"])
    raise SandboxError(f"the sandbox helper exited unexpectedly (status {helper_code})",
                       hint="run again with the helper's stderr visible (no on_output) to see why")
