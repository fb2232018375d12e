"""Helper process for `jobs.run_job`: private mount namespace, mount the views, run the job, report.

Invoked as `python -m pybuild.sandbox.jobhelper RESULT_FD` with the JSON config on stdin.
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
from pybuild.sandbox import _linux as L
from pybuild.sandbox.overlay import OverlayError, mount_layers


def _mount_view(view: dict[str, Any]) -> None:
    upper = view["upper_dir"]
    work = None
    if upper is not None:
        work = os.path.join(view["work_dir"], "overlay-work")
        os.makedirs(work, exist_ok=True)
    try:
        mount_layers(view["mountpoint"], view["lower_dirs"], upper=upper, work=work, chdir=view["chdir_for_mount"])
    except OverlayError as e:
        raise PybuildError(e.message, hint=e.hint) from None


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
