"""The persistent per-file checksum cache: an unchanged context is checked by stat alone, a changed file is read.

"Not read" is observed from outside pybuild: the context lives on a tmpfs mounted with `strictatime`, where every
read of a file advances its access time, and the builds run as separate `pybuild build` processes (so nothing is
remembered in memory). A file that changes without changing its (size, mtime, ctime) key, which happens on a
filesystem with coarse timestamps, is exercised on an ext2 image with whole-second timestamps.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cachetest_util import cli, read_file_in_image

from pybuild.context.context import BuildContext, source_entries
from pybuild.store.cache import RACY_WINDOW_NS
from pybuild.store.store import Store

DOCKERFILE = """\
FROM busybox:latest
COPY big/ /big/
COPY small.txt /small.txt
"""


@pytest.fixture
def atime_fs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs where every read updates the file's access time."""
    mnt = tmp_path / "atime"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "strictatime,size=64m,mode=0755", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
def coarse_fs(tmp_path: Path) -> Iterator[Path]:
    """An ext2 filesystem with 128-byte inodes: timestamps in whole seconds, ctime included."""
    img, mnt = tmp_path / "coarse.img", tmp_path / "coarse"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext2", "-q", "-F", "-I", "128", str(img)], check=True)
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def atimes(ctx: Path) -> dict[str, int]:
    """Access times of the files COPY reads (the Dockerfile and .dockerignore are read by every build)."""
    return {str(p.relative_to(ctx)): p.stat().st_atime_ns for p in sorted(ctx.rglob("*"))
            if p.is_file() and p.name not in ("Dockerfile", ".dockerignore")}


def wait_out_racy_window() -> None:
    """Digests of files changed in the last RACY_WINDOW_NS are not saved (see pybuild.store.cache)."""
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)


def test_unchanged_context_is_not_read_again(cache_store: Path, atime_fs: Path, tmp_path: Path) -> None:
    ctx = atime_fs / "ctx"
    (ctx / "big").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    for i in range(200):
        (ctx / "big" / f"f{i:03d}.bin").write_bytes(os.urandom(2048 + i))
    (ctx / "small.txt").write_text("one\n")
    wait_out_racy_window()
    cli(cache_store, "build", "-t", "sums:1", str(ctx))

    before = atimes(ctx)
    out = cli(cache_store, "build", "--progress", "plain", "-t", "sums:1", str(ctx)).stderr
    assert out.count(" CACHED") == 2, out
    assert atimes(ctx) == before, "a fully cached rebuild read context files"

    (ctx / "small.txt").write_text("two\n")
    before = atimes(ctx)
    out = cli(cache_store, "build", "--progress", "plain", "-t", "sums:1", str(ctx)).stderr
    assert out.count(" CACHED") == 1 and "MISS: small.txt changed" in out, out
    after = atimes(ctx)
    changed = sorted(k for k in after if after[k] != before[k])
    assert changed == ["small.txt"]
    assert read_file_in_image(cache_store, "sums:1", "/small.txt", tmp_path / "out") == b"two\n"


def test_same_size_and_restored_mtime_is_still_read(cache_store: Path, atime_fs: Path, tmp_path: Path) -> None:
    """The key has the ctime too: restoring the mtime after an edit of the same size does not fool it."""
    ctx = atime_fs / "ctx"
    (ctx / "big").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "big" / "a.bin").write_bytes(b"A" * 100)
    (ctx / "small.txt").write_text("one\n")
    wait_out_racy_window()
    cli(cache_store, "build", "-t", "sums:2", str(ctx))
    st = (ctx / "small.txt").stat()
    (ctx / "small.txt").write_text("ONE\n")
    os.utime(ctx / "small.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (ctx / "small.txt").stat().st_mtime_ns == st.st_mtime_ns
    out = cli(cache_store, "build", "--progress", "plain", "-t", "sums:2", str(ctx)).stderr
    assert "MISS: small.txt changed" in out, out
    assert read_file_in_image(cache_store, "sums:2", "/small.txt", tmp_path / "out") == b"ONE\n"


def test_racy_file_digest_is_not_saved(cache_store: Path, coarse_fs: Path) -> None:
    """A file rewritten (same size) within the second its digest was taken keeps its whole key on a filesystem
    with one-second timestamps; the saved checksums must not serve the old digest to a later build."""
    ctx = coarse_fs / "ctx"
    ctx.mkdir()
    path = ctx / "racy.txt"
    for _ in range(50):  # until both writes land in the same second (nearly always the first try)
        path.write_text("v1\n")
        key1 = path.stat()
        with Store.open(cache_store) as store:
            sums = store.file_checksums()
            matches = BuildContext.from_dir(ctx).select(["racy.txt"])
            list(source_entries(matches, cache=sums))
            sums.flush()
        path.write_text("v2\n")
        key2 = path.stat()
        if (key1.st_ino, key1.st_size, key1.st_mtime_ns, key1.st_ctime_ns) == \
                (key2.st_ino, key2.st_size, key2.st_mtime_ns, key2.st_ctime_ns):
            break
    else:
        pytest.fail("could not write twice within one second")
    with Store.open(cache_store) as store:
        records = dict(source_entries(BuildContext.from_dir(ctx).select(["racy.txt"]),
                                      cache=store.file_checksums()))
    assert records["racy.txt"].endswith("sha256:" + hashlib.sha256(b"v2\n").hexdigest() + "\n")


def test_parallel_stages_do_not_read_an_unchanged_context_again(cache_store: Path, atime_fs: Path) -> None:
    """Independent stages are built in threads; their context checksums must be saved like the main thread's."""
    ctx = atime_fs / "ctx"
    for d in ("a", "b"):
        (ctx / d).mkdir(parents=True)
        for i in range(20):
            (ctx / d / f"{i}.txt").write_text(f"{d}{i}\n")
    (ctx / "Dockerfile").write_text("FROM busybox:latest AS a\nCOPY a/ /a/\n\nFROM busybox:latest AS b\n"
                                    "COPY b/ /b/\n\nFROM busybox:latest\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n")
    wait_out_racy_window()
    cli(cache_store, "build", "-t", "sums:par", str(ctx))
    before = atimes(ctx)
    out = cli(cache_store, "build", "--progress", "plain", "-t", "sums:par", str(ctx)).stderr
    assert out.count(" CACHED") == 4, out
    assert atimes(ctx) == before, "a fully cached rebuild read context files"
