"""What several test packages need: a store holding busybox:latest, and checks that nothing of a run is left.

Leftover processes are found by a marker variable the test puts in the environment of everything it starts;
leftover mounts by the test's paths in /proc/self/mountinfo.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_busybox_store(root: Path, *, env: dict[str, str] | None = None) -> Path:
    """Import busybox:latest into the store at root with fixtures/base/busybox.sh (the README's way)."""
    # The script runs `pybuild` from PATH: make it this interpreter's (the one with this checkout installed).
    full_env = {**os.environ, **(env or {}), "PYBUILD_ROOT": str(root),
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    subprocess.run([str(REPO / "fixtures/base/busybox.sh")], check=True, env=full_env, stdout=subprocess.DEVNULL)
    return root


def processes_with(variable: str, token: str) -> list[int]:
    """Processes (other than this one) whose environment has variable=token."""
    needle = f"{variable}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def mounts_under(path: Path) -> list[str]:
    """Lines of this process's mount table that mention path."""
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(path) in line]


def wait_until(predicate: Callable[[], bool], what: str, limit: float = 120) -> None:
    """Poll for an asynchronous effect (process death); a generous limit against hangs, not a speed assertion."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def assert_clean(root: Path, variable: str, token: str) -> None:
    """No process of the test left, nothing mounted under the store at root, and the store verifies."""
    from pybuild.store.store import Store

    wait_until(lambda: not processes_with(variable, token), "the build's processes to exit")
    assert mounts_under(root) == []
    with Store.open(root) as store:
        assert store.verify() == []
