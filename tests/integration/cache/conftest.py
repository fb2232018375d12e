"""Fixtures for the build-cache tests: a fresh store per test, copied from a session template holding
busybox:latest (imported by the real fixtures/base/busybox.sh) and busybox:changed (the same root filesystem
re-imported with one more file and one more ENV, to play a changed base image).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cachetest_util import MARKER, REPO, assert_store_clean

from pybuild.image.importer import import_tarball
from pybuild.store.store import Store
from tests.support import make_busybox_store


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration/cache/" in str(item.fspath):
            item.add_marker(pytest.mark.root)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="builds need root, overlayfs and namespaces (CI is root)"))


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cache-template")
    root = make_busybox_store(base / "store")
    rootfs = base / "rootfs"
    subprocess.run([str(REPO / "fixtures/base/busybox.sh"), "--rootfs-only", str(rootfs)], check=True)
    (rootfs / "etc" / "base-rev").write_text("2\n")
    tar_path = base / "changed.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(rootfs, arcname=".")
    with Store.open(root) as store:
        import_tarball(store, tar_path, "busybox:changed",
                       changes=["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                "ENV BASE_REV=2", 'CMD ["sh"]'])
    shutil.rmtree(rootfs)
    return root


@pytest.fixture
def cache_store(template_store: Path, tmp_path: Path, marker: str) -> Iterator[Path]:
    """A store of this test's own (copied from the template: cache tests prune, retag and kill builds). Afterwards
    no build process may be left, nothing mounted under it, and it must verify."""
    root = tmp_path / "store"
    shutil.copytree(template_store, root, symlinks=True)
    yield root
    assert_store_clean(root, marker)


@pytest.fixture
def marker(monkeypatch: pytest.MonkeyPatch) -> str:
    """A unique value in this test's environment (and so in every build helper's): leftovers are found by it."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, value)
    return value

