"""ADD: local tar archives (every compression, detected by content), traversal protection, and URL downloads from
a tiny HTTP server on 127.0.0.1 (checksums, Last-Modified, errors)."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.server
import io
import lzma
import os
import re
import stat
import tarfile
import threading
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest
import zstandard

from pybuild.context import BuildContext
from pybuild.errors import PybuildError
from pybuild.executor.copy import copy_sources, is_archive
from pybuild.executor.fetch import add_sources, download, url_filename

pytestmark = pytest.mark.root


def tar_bytes(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tf.addfile(e)
            else:
                name, data = e
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                ti.mode = 0o640
                ti.uid, ti.gid = 1001, 1002
                ti.mtime = 1_500_000_000
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def dir_entry(name: str, mode: int = 0o750) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = mode
    ti.mtime = 1_400_000_000
    return ti


def link_entry(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = target
    return ti


SAMPLE = tar_bytes([dir_entry("pkg/"), ("pkg/bin/tool", b"#!/bin/sh\necho hi\n"), ("pkg/README", b"readme\n"),
                    link_entry("pkg/link", "README")])

COMPRESSORS = {
    "plain": lambda b: b,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}


@pytest.fixture
def ctx(tmp_path: Path) -> BuildContext:
    root = tmp_path / "ctx"
    root.mkdir()
    return BuildContext.from_dir(root)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    r.mkdir()
    return r


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_add_extracts_local_archives_detected_by_content(kind: str, ctx: BuildContext, rootfs: Path) -> None:
    # a misleading name on purpose: detection looks at the bytes
    (ctx.root / "payload.bin").write_bytes(COMPRESSORS[kind](SAMPLE))
    assert is_archive(ctx.root / "payload.bin")
    add_sources(rootfs, ctx, ["payload.bin"], "/opt")  # no trailing slash: an archive always goes into a dir
    tool = rootfs / "opt" / "pkg" / "bin" / "tool"
    assert tool.read_text() == "#!/bin/sh\necho hi\n"
    st = os.lstat(tool)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime) == (1001, 1002, 0o640, 1_500_000_000)
    assert stat.S_IMODE(os.lstat(rootfs / "opt" / "pkg").st_mode) == 0o750
    assert os.lstat(rootfs / "opt" / "pkg").st_mtime == 1_400_000_000  # set after its contents were written
    assert os.readlink(rootfs / "opt" / "pkg" / "link") == "README"


def test_add_archive_with_chown(ctx: BuildContext, rootfs: Path) -> None:
    (ctx.root / "a.tar").write_bytes(SAMPLE)
    add_sources(rootfs, ctx, ["a.tar"], "/x/", chown=(5, 6))
    st = os.lstat(rootfs / "x" / "pkg" / "README")
    assert (st.st_uid, st.st_gid) == (5, 6)


def test_non_archives_are_copied_as_files(ctx: BuildContext, rootfs: Path) -> None:
    (ctx.root / "empty.tar.gz").write_bytes(b"")
    (ctx.root / "fake.tgz").write_bytes(gzip.compress(b"not a tar at all" * 100))
    (ctx.root / "notes.txt").write_text("hello")
    add_sources(rootfs, ctx, ["empty.tar.gz", "fake.tgz", "notes.txt"], "/d/")
    assert sorted(os.listdir(rootfs / "d")) == ["empty.tar.gz", "fake.tgz", "notes.txt"]
    # COPY never extracts
    (ctx.root / "real.tar").write_bytes(SAMPLE)
    copy_sources(rootfs, ctx, ["real.tar"], "/c/")
    assert (rootfs / "c" / "real.tar").read_bytes() == SAMPLE
    add_sources(rootfs, ctx, ["real.tar"], "/u/", unpack=False)
    assert (rootfs / "u" / "real.tar").is_file()


def test_traversal_archive_is_refused(ctx: BuildContext, tmp_path: Path) -> None:
    rootfs = tmp_path / "deep" / "rootfs"
    rootfs.mkdir(parents=True)
    (ctx.root / "evil.tar").write_bytes(tar_bytes([("ok", b"fine"), ("../../escaped", b"pwned")]))
    with pytest.raises(PybuildError, match=re.escape("archive entry '../../escaped' would be extracted outside")):
        add_sources(rootfs, ctx, ["evil.tar"], "/x/")
    assert not (tmp_path / "deep" / "escaped").exists() and not (tmp_path / "escaped").exists()
    (ctx.root / "evil2.tar").write_bytes(tar_bytes([("a/../../../escaped2", b"pwned")]))
    with pytest.raises(PybuildError, match="outside the destination"):
        add_sources(rootfs, ctx, ["evil2.tar"], "/")
    assert not list(tmp_path.rglob("escaped2"))


def test_archive_symlink_cannot_lead_outside(ctx: BuildContext, rootfs: Path, tmp_path: Path) -> None:
    host_target = tmp_path / "host-dir"
    host_target.mkdir()
    entries: list[tarfile.TarInfo | tuple[str, bytes]] = [
        link_entry("etc-link", "/etc"), ("etc-link/shadow-test", b"written"),
        link_entry("up", "../../../../../../../" + str(host_target)), ("up/owned", b"written"),
    ]
    (ctx.root / "links.tar").write_bytes(tar_bytes(entries))
    add_sources(rootfs, ctx, ["links.tar"], "/dest/")
    # both were written inside the extraction directory, as if it were "/" (Docker's chroot extraction)
    assert (rootfs / "dest" / "etc" / "shadow-test").read_text() == "written"
    assert not Path("/etc/shadow-test").exists()
    assert list(host_target.iterdir()) == []
    assert (rootfs / "dest" / str(host_target).lstrip("/") / "owned").read_text() == "written"


def test_archive_hard_link_outside_is_refused(ctx: BuildContext, rootfs: Path) -> None:
    (ctx.root / "hl.tar").write_bytes(tar_bytes([link_entry("h", "../../etc/passwd", tarfile.LNKTYPE)]))
    with pytest.raises(PybuildError, match="outside the destination"):
        add_sources(rootfs, ctx, ["hl.tar"], "/x/")
    (ctx.root / "hl2.tar").write_bytes(tar_bytes([("f", b"data"), link_entry("g", "f", tarfile.LNKTYPE)]))
    add_sources(rootfs, ctx, ["hl2.tar"], "/y/")
    assert os.lstat(rootfs / "y" / "f").st_ino == os.lstat(rootfs / "y" / "g").st_ino


def test_truncated_archive_is_a_clear_error(ctx: BuildContext, rootfs: Path) -> None:
    # the first entry is readable (so it is an archive), the data stops half-way
    big = tar_bytes([("small", b"x"), ("big", os.urandom(4 << 20))])
    (ctx.root / "cut.tar.gz").write_bytes(gzip.compress(big, 1)[: 2 << 20])
    with pytest.raises(PybuildError, match="archive is truncated or corrupt"):
        add_sources(rootfs, ctx, ["cut.tar.gz"], "/x/")


# -- URLs ------------------------------------------------------------------------------------------------------------

BODY = b"remote content\n" * 100
LAST_MODIFIED = 1_600_000_000


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/files/"):
            data = BODY
            if self.path.endswith(".tar.gz"):
                data = gzip.compress(SAMPLE)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            if "nodate" not in self.path:
                self.send_header("Last-Modified", formatdate(LAST_MODIFIED, usegmt=True))
            self.end_headers()
            self.wfile.write(data)
        else:
            self.send_error(404, "Not Found")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join()


def test_url_download_to_directory_and_file(server: str, ctx: BuildContext, rootfs: Path) -> None:
    add_sources(rootfs, ctx, [f"{server}/files/data.bin"], "/dl/")
    f = rootfs / "dl" / "data.bin"
    st = os.lstat(f)
    assert f.read_bytes() == BODY
    assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (0, 0)
    assert st.st_mtime == LAST_MODIFIED
    add_sources(rootfs, ctx, [f"{server}/files/data.bin"], "/named", chmod="644", chown=(3, 4))
    st = os.lstat(rootfs / "named")
    assert stat.S_IMODE(st.st_mode) == 0o644 and (st.st_uid, st.st_gid) == (3, 4)


def test_url_archives_are_not_extracted(server: str, ctx: BuildContext, rootfs: Path) -> None:
    add_sources(rootfs, ctx, [f"{server}/files/pkg.tar.gz"], "/dl/")
    assert (rootfs / "dl" / "pkg.tar.gz").is_file()
    add_sources(rootfs, ctx, [f"{server}/files/pkg.tar.gz"], "/ex/", unpack=True)
    assert (rootfs / "ex" / "pkg" / "README").read_text() == "readme\n"


def test_url_checksum(server: str, ctx: BuildContext, rootfs: Path, tmp_path: Path) -> None:
    good = "sha256:" + hashlib.sha256(BODY).hexdigest()
    d = download(f"{server}/files/nodate.bin", tmp_path, checksum=good)
    assert d.digest == good and d.size == len(BODY) and d.file.mtime is None and d.file.name == "nodate.bin"
    add_sources(rootfs, ctx, [f"{server}/files/x.bin"], "/ok", checksum=good)
    assert (rootfs / "ok").read_bytes() == BODY
    bad = "sha256:" + "0" * 64
    with pytest.raises(PybuildError, match="checksum mismatch") as e:
        add_sources(rootfs, ctx, [f"{server}/files/y.bin"], "/bad", checksum=bad)
    assert good in e.value.message and not (rootfs / "bad").exists()
    with pytest.raises(PybuildError, match="only sha256"):
        add_sources(rootfs, ctx, [f"{server}/files/y.bin"], "/bad", checksum="md5:abc")
    (ctx.root / "local").write_text("x")
    with pytest.raises(PybuildError, match="checksum requires HTTP"):
        add_sources(rootfs, ctx, ["local"], "/bad", checksum=good)


def test_url_errors(server: str, ctx: BuildContext, rootfs: Path) -> None:
    with pytest.raises(PybuildError, match=re.escape(f"failed to download {server}/missing: HTTP 404 Not Found")):
        add_sources(rootfs, ctx, [f"{server}/missing"], "/x")
    with pytest.raises(PybuildError, match=re.escape("failed to download http://127.0.0.1:1/")):
        add_sources(rootfs, ctx, ["http://127.0.0.1:1/"], "/x")
    with pytest.raises(PybuildError, match="git repositories is not supported"):
        add_sources(rootfs, ctx, ["https://example.com/repo.git"], "/x")


def test_url_filename() -> None:
    assert url_filename("https://h/a/b/file.tar.gz?x=1#frag") == "file.tar.gz"
    assert url_filename("https://h/") == "__unnamed__"
    assert url_filename("https://h") == "__unnamed__"
    assert url_filename("https://h/dir/with%20space") == "with space"
