"""Fixtures for the progress-output tests: a store holding busybox:latest, and running the CLI on a pseudo-terminal.

The CLI tests build real images (root, overlayfs, namespaces); the renderer tests feed events directly and need
nothing. Only tests that use ``busybox_store`` are marked root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration/progress/" in str(item.fspath) and "busybox_store" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.root)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="builds need root, overlayfs and namespaces (CI is root)"))


@pytest.fixture(scope="session")
def busybox_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store root of its own holding busybox:latest, imported by fixtures/base/busybox.sh."""
    root = tmp_path_factory.mktemp("progress") / "store"
    env = {**os.environ, "PYBUILD_ROOT": str(root),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    subprocess.run([str(REPO / "fixtures/base/busybox.sh")], check=True, env=env, stdout=subprocess.DEVNULL)
    return root
