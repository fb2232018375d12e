"""Run a Python function of pybuild's inside a private mount namespace with image filesystems mounted.

COPY, ADD and `COPY --from` need a real merged view of image layers: the destination is an overlay whose
upper dir becomes the step's layer (so copying into an existing directory copies it up with its metadata,
exactly as a RUN step would), and a `--from` source is a read-only view of another stage. Mounting is this
package's job alone, and never in the calling process, so a short-lived helper
(`python -m pybuild.sandbox.jobhelper`) unshares a mount namespace, mounts the views, calls
`module:function(payload, mountpoints)` and reports its JSON result. When the helper exits, its namespace
and every mount in it disappear with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pybuild.errors import Location, PybuildError
from pybuild.sandbox import _LIVE, _LIVE_LOCK, SandboxError, _helper_env


@dataclass(frozen=True)
class FsView:
    """A filesystem to mount at `mountpoint` for the job.

    lower_dirs: layer directories, topmost first (relative ones are resolved against `chdir_for_mount`).
    upper_dir/work_dir: give both for a writable overlay whose changes land in upper_dir; leave them None for a
    read-only view. No lower dirs and no upper dir means an empty read-only directory (FROM scratch).
    """

    mountpoint: Path
    lower_dirs: Sequence[str] = ()
    upper_dir: Path | None = None
    work_dir: Path | None = None
    chdir_for_mount: Path | None = None


def run_job(views: Sequence[FsView], job: str, payload: dict[str, Any]) -> Any:
    """Mount `views` in a fresh mount namespace (in a helper process) and return `job(payload, mountpoints)`.

    `job` is "package.module:function"; the function receives the payload and the list of mountpoint paths
    (as strings, in the order of `views`) and returns something JSON-serialisable. A PybuildError raised by
    the job is raised again here with its message, hint and location.
    """
    for v in views:
        Path(v.mountpoint).mkdir(parents=True, exist_ok=True)
    cfg = {
        "views": [
            {
                "mountpoint": str(Path(v.mountpoint).absolute()),
                "lower_dirs": list(v.lower_dirs),
                "upper_dir": str(Path(v.upper_dir).absolute()) if v.upper_dir else None,
                "work_dir": str(Path(v.work_dir).absolute()) if v.work_dir else None,
                "chdir_for_mount": str(Path(v.chdir_for_mount).absolute()) if v.chdir_for_mount else None,
            }
            for v in views
        ],
        "job": job,
        "payload": payload,
    }
    res_r, res_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pybuild.sandbox.jobhelper", str(res_w)],
            stdin=subprocess.PIPE, pass_fds=(res_w,), env=_helper_env(), cwd="/", start_new_session=True,
        )
    finally:
        os.close(res_w)
    with _LIVE_LOCK:
        _LIVE.add(proc)  # cancel_all() stops jobs too (SIGUSR1 ends the helper; its mounts die with it)
    try:
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(cfg).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        with os.fdopen(res_r, "rb") as f:
            raw = f.read()
        proc.wait()
    except BaseException:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    try:
        msg = json.loads(raw) if raw else {}
    except ValueError:
        msg = {}
    if "error" in msg:
        loc = msg.get("location")
        location = Location(**loc) if isinstance(loc, dict) else None
        raise PybuildError(str(msg["error"]), location, msg.get("hint"))
    if "result" not in msg:
        raise SandboxError(f"the filesystem job helper exited unexpectedly (status {proc.returncode})")
    return msg["result"]
