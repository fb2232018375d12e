"""Fixtures for the progress-output tests: a store holding busybox:latest, and running the CLI on a pseudo-terminal.

The CLI tests build real images (root, overlayfs, namespaces); the renderer tests feed events directly and need
nothing. Only tests that use ``busybox_store`` are marked root.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import make_busybox_store


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration/progress/" in str(item.fspath) and "busybox_store" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.root)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="builds need root, overlayfs and namespaces (CI is root)"))


@pytest.fixture(scope="session")
def busybox_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store root of its own holding busybox:latest, imported by fixtures/base/busybox.sh."""
    return make_busybox_store(tmp_path_factory.mktemp("progress") / "store")
