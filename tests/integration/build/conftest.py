"""Fixtures for the end-to-end build tests: a store holding busybox:latest and a check that nothing is left behind.

Every test here builds real images in one session-wide store (made by the real fixtures/base/busybox.sh), so
images built by one test can be reused by others; tests never prune or remove that store's images.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from buildtest_util import MARKER, assert_clean

from tests.support import make_busybox_store


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration/build/" in str(item.fspath):
            item.add_marker(pytest.mark.root)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="builds need root, overlayfs and namespaces (CI is root)"))


@pytest.fixture(scope="session")
def busybox_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store root holding busybox:latest, imported by fixtures/base/busybox.sh."""
    return make_busybox_store(tmp_path_factory.mktemp("build") / "store")


@pytest.fixture
def marker(monkeypatch: pytest.MonkeyPatch) -> str:
    """A unique value in this test's environment (and so in every build helper's): leftovers are found by it."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, value)
    return value


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest, marker: str) -> Iterator[None]:
    yield
    if "busybox_store" in request.fixturenames:
        assert_clean(request.getfixturevalue("busybox_store"), marker)
