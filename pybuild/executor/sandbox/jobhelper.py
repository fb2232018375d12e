"""Helper process for `jobs.run_job`: private mount namespace, mount the views, run the job, report.

Invoked as `python -m pybuild.executor.sandbox.jobhelper RESULT_FD` with the JSON config on stdin.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import sys
import traceback
from typing import Any

from pybuild.errors import PybuildError
from pybuild.executor.sandbox import _linux as L
from pybuild.executor.sandbox.helper import _OVERLAY_OPTIONAL, _OVERLAY_OPTIONS


def _mount_view(view: dict[str, Any]) -> None:
    target = view["mountpoint"]
    lowers: list[str] = view["lower_dirs"]
    upper = view["upper_dir"]
    if view["chdir_for_mount"]:
        os.chdir(view["chdir_for_mount"])
    if upper is None and len(lowers) <= 1:
        # overlayfs needs two lower dirs when there is no upper one: bind the single layer instead, and an image
        # with no layers at all (FROM scratch) is an empty read-only tmpfs.
        if lowers:
            L.mount(os.path.abspath(lowers[0]), target, None, L.MS_BIND | L.MS_REC)
            L.mount(None, target, None, L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY)
        else:
            L.mount("tmpfs", target, "tmpfs", L.MS_RDONLY, "mode=755")
        return
    if upper is not None and not lowers:
        L.mount(upper, target, None, L.MS_BIND | L.MS_REC)
        return
    lower = ":".join(d.replace("\\", "\\\\").replace(":", "\\:") for d in lowers)
    base = f"lowerdir={lower}"
    if upper is not None:
        work = os.path.join(view["work_dir"], "overlay-work")
        os.makedirs(work, exist_ok=True)
        base += f",upperdir={upper},workdir={work}"
    options = list(_OVERLAY_OPTIONS) if upper is not None else []
    while True:
        try:
            L.mount("overlay", target, "overlay", 0 if upper else L.MS_RDONLY, ",".join([base, *options]))
            return
        except OSError:
            optional = [o for o in options if o in _OVERLAY_OPTIONAL]
            if not optional:
                raise
            options.remove(optional[0])


def main(argv: list[str]) -> int:
    result_fd = int(argv[1])
    L.prctl(L.PR_SET_PDEATHSIG, signal.SIGKILL)
    msg: dict[str, Any]
    try:
        cfg = json.loads(sys.stdin.buffer.read())
        L.unshare(L.CLONE_NEWNS)
        L.mount(None, "/", None, L.MS_REC | L.MS_PRIVATE)
        for view in cfg["views"]:
            _mount_view(view)
        os.chdir("/")
        module, _, func = cfg["job"].partition(":")
        fn = getattr(importlib.import_module(module), func)
        msg = {"result": fn(cfg["payload"], [v["mountpoint"] for v in cfg["views"]])}
    except PybuildError as e:
        loc = dataclasses.asdict(e.location) if e.location else None
        msg = {"error": e.message, "hint": e.hint, "location": loc}
    except OSError as e:
        msg = {"error": f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")}
    except Exception as e:
        if os.environ.get("PYBUILD_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        msg = {"error": f"internal error in filesystem job: {type(e).__name__}: {e}",
               "hint": "set PYBUILD_DEBUG=1 for the traceback; please report this"}
    with os.fdopen(result_fd, "wb") as f:
        f.write(json.dumps(msg).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
