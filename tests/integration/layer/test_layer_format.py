"""What write_layer puts in the tarball, read back with Python's tarfile, GNU tar and the zstd CLI."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from pybuild.layer import (
    MEDIA_TYPE_TAR,
    MEDIA_TYPE_TAR_GZIP,
    MEDIA_TYPE_TAR_ZSTD,
    Compression,
    LayerError,
    LayerInfo,
    apply_layer,
    detect_compression,
    open_decompressed,
    write_layer,
    writer,
)

pytestmark = pytest.mark.root

CAP = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"


def _tree(root: Path) -> Path:
    """An upper-dir-like tree: files, an overlay whiteout, an opaque dir, xattrs, hard links, long names."""
    (root / "b/sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "b/sub/deep.bin").write_bytes(os.urandom(70_000))
    (root / "b/-dash").write_text("sorts before /\n")
    os.mknod(root / "b/removed", stat.S_IFCHR | 0o600, 0)  # overlay whiteout
    (root / "opq").mkdir()
    os.setxattr(root / "opq", "trusted.overlay.opaque", b"y")
    os.setxattr(root / "opq", "trusted.overlay.impure", b"y")
    (root / "opq/inside").write_text("x\n")
    (root / "cap").write_text("binary\n")
    os.setxattr(root / "cap", "security.capability", CAP)
    os.link(root / "a.txt", root / "b/a-again")
    os.symlink("../a.txt", root / "b/link")
    long_name = "n" * 150
    (root / long_name).write_text("long\n")
    os.symlink("t" * 200, root / "longlink")
    os.mkfifo(root / "fifo")
    for p in [root, *root.rglob("*")]:
        os.utime(p, (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    return root


def _members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        return tf.getmembers()


def _write(src: Path, compression: Compression = Compression.NONE, sde: int | None = None) -> tuple[bytes, LayerInfo]:
    out = io.BytesIO()
    info = write_layer(src, out, compression, source_date_epoch=sde)
    return out.getvalue(), info


def test_python_tarfile_reads_entries_whiteouts_and_xattrs(tmp_path: Path) -> None:
    blob, _ = _write(_tree(tmp_path / "src"))
    members = _members(blob)
    names = [m.name for m in members]
    # Walk order: a directory's entries sorted bytewise, each directory's contents right after it
    assert names[:3] == ["a.txt", "b", "b/-dash"]
    assert names.index("b/sub") < names.index("b/sub/deep.bin") < names.index("cap")
    # the opaque marker follows its directory, before the directory's contents
    assert names.index("opq") + 1 == names.index("opq/.wh..wh..opq") < names.index("opq/inside")
    by_name = {m.name: m for m in members}
    wh = by_name["b/.wh.removed"]
    assert wh.isreg() and wh.size == 0 and wh.mode == 0o600
    assert "b/removed" not in by_name
    assert by_name["b/a-again"].islnk() and by_name["b/a-again"].linkname == "a.txt"
    assert by_name["b/link"].issym() and by_name["b/link"].linkname == "../a.txt"
    assert by_name["n" * 150].isreg()
    assert by_name["longlink"].linkname == "t" * 200
    assert by_name["fifo"].isfifo()
    cap = by_name["cap"].pax_headers["SCHILY.xattr.security.capability"]
    assert cap.encode("utf-8", "surrogateescape") == CAP
    assert not any("overlay" in k for m in members for k in m.pax_headers)
    for m in members:
        assert m.uname == "" and m.gname == "" and m.mtime == 1_600_000_000
        assert "atime" not in m.pax_headers and "ctime" not in m.pax_headers
    assert by_name["b/sub/deep.bin"].size == 70_000


def test_gnu_tar_lists_and_extracts_it(tmp_path: Path) -> None:
    blob, _ = _write(_tree(tmp_path / "src"))
    (tmp_path / "layer.tar").write_bytes(blob)
    listing = subprocess.run(["tar", "-tvf", tmp_path / "layer.tar"], capture_output=True, text=True, check=True)
    assert listing.stderr == ""
    assert "b/.wh.removed" in listing.stdout and "opq/.wh..wh..opq" in listing.stdout
    assert "n" * 150 in listing.stdout and "longlink -> " + "t" * 200 in listing.stdout
    assert "b/a-again link to a.txt" in listing.stdout
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xf", tmp_path / "layer.tar", "-C", out], check=True)
    assert (out / "b/sub/deep.bin").read_bytes() == (tmp_path / "src/b/sub/deep.bin").read_bytes()
    assert os.getxattr(out / "cap", "security.capability") == CAP
    assert os.stat(out / "b/a-again").st_ino == os.stat(out / "a.txt").st_ino


def test_same_tree_same_bytes(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    for compression in Compression:
        first, info1 = _write(src, compression)
        second, info2 = _write(src, compression)
        assert first == second and info1 == info2
    # an identical tree made separately (other inode numbers, other creation order) gives the same layer too
    other = tmp_path / "other"
    subprocess.run(["cp", "-a", src, other], check=True)
    assert _write(other)[0] == _write(src)[0]


def test_source_date_epoch_clamps_newer_times_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "old").write_text("old\n")
    (src / "new").write_text("new\n")
    (src / "newdir").mkdir()
    os.utime(src / "old", (1_000_000_000, 1_000_000_000))
    os.utime(src / "new", (1_900_000_000, 1_900_000_000))
    os.utime(src / "newdir", (1_900_000_000, 1_900_000_000))
    blob, _ = _write(src, sde=1_500_000_000)
    mtimes = {m.name: m.mtime for m in _members(blob)}
    assert mtimes == {"new": 1_500_000_000, "newdir": 1_500_000_000, "old": 1_000_000_000}
    # clamping makes the layer independent of when the files were made
    os.utime(src / "new", (1_800_000_000, 1_800_000_000))
    assert _write(src, sde=1_500_000_000)[0] == blob


@pytest.mark.parametrize(
    ("compression", "media_type", "kind"),
    [
        (Compression.ZSTD, MEDIA_TYPE_TAR_ZSTD, "zstd"),
        (Compression.GZIP, MEDIA_TYPE_TAR_GZIP, "gzip"),
        (Compression.NONE, MEDIA_TYPE_TAR, "none"),
    ],
)
def test_media_types_and_digests(tmp_path: Path, compression: Compression, media_type: str, kind: str) -> None:
    src = _tree(tmp_path / "src")
    blob, info = _write(src, compression)
    plain, _ = _write(src, Compression.NONE)
    assert info.media_type == media_type
    assert info.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert info.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert info.size == len(blob)
    assert detect_compression(blob[:8]) == kind
    assert open_decompressed(io.BytesIO(blob)).read() == plain


def test_zstd_cli_and_gzip_module_read_the_blobs(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    plain, _ = _write(src)
    zst, _ = _write(src, Compression.ZSTD)
    (tmp_path / "layer.tar.zst").write_bytes(zst)
    out = subprocess.run(["zstd", "-d", "-c", tmp_path / "layer.tar.zst"], capture_output=True, check=True)
    assert out.stdout == plain
    subprocess.run(["zstd", "-t", "-q", tmp_path / "layer.tar.zst"], check=True)  # frame checksum verifies
    assert gzip.decompress(_write(src, Compression.GZIP)[0]) == plain


def test_big_values_use_pax(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    os.chown(src / "f", 3_000_000, 4_000_000)  # beyond ustar's 7 octal digits
    os.utime(src / "f", (9_000_000_000, 9_000_000_000))  # year 2255: beyond 11 octal digits
    blob, _ = _write(src)
    (m,) = _members(blob)
    assert (m.uid, m.gid, m.mtime) == (3_000_000, 4_000_000, 9_000_000_000)
    dest = tmp_path / "dest"
    apply_layer(io.BytesIO(blob), dest)
    st = (dest / "f").stat()
    assert (st.st_uid, st.st_gid, int(st.st_mtime)) == (3_000_000, 4_000_000, 9_000_000_000)


def test_other_compressions_and_tools_apply(tmp_path: Path) -> None:
    """Layers made by other tools: GNU tar (its own format, xz/bzip2/gzip compressed) apply the same way."""
    src = _tree(tmp_path / "src")
    os.unlink(src / "b/removed")  # GNU tar would archive the device node as such
    (src / "opq/.wh..wh..opq").touch()  # what the OCI marker looks like on disk in a tree tar archives
    expected = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.name != ".wh..wh..opq")
    for flags, kind in ((["--xattrs", "-J"], "xz"), (["--xattrs", "-j"], "bzip2"), (["--xattrs", "-z"], "gzip"),
                        (["--format=gnu"], "none")):  # GNU format: long names as ././@LongLink entries
        archive = tmp_path / f"layer-{kind}.tar"
        subprocess.run(["tar", *flags, "-cf", archive, "-C", src, "."], check=True)
        dest = tmp_path / f"dest-{kind}"
        with open(archive, "rb") as f:
            stats = apply_layer(f, dest)
        assert stats.compression == kind
        assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == expected
        assert (dest / ("n" * 150)).read_text() == "long\n"
        assert os.readlink(dest / "longlink") == "t" * 200
        assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"  # from the .wh..wh..opq entry


def test_source_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="cannot read layer source"):
        write_layer(tmp_path / "missing", io.BytesIO())


def _several_buffers(root: Path) -> Path:
    """A tree whose tar spans several of the writer's buffers: a big file across them, many small files after."""
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(3 * writer.BUF_SIZE + 12345))
    (root / "text").mkdir()
    for i in range(3000):  # compressible, so that compressing is slower than walking
        (root / "text" / f"f{i:04}").write_text(f"line {i}\n" * (i % 97))
    return root


def test_big_layers_are_zstd_frames_any_reader_takes(tmp_path: Path) -> None:
    src = _several_buffers(tmp_path / "src")
    plain, _ = _write(src)
    zst, info = _write(src, Compression.ZSTD)
    assert len(plain) > 4 * writer.BUF_SIZE
    assert zst.count(b"\x28\xb5\x2f\xfd") >= len(plain) // writer.BUF_SIZE  # one frame per buffer of tar
    assert info.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    (tmp_path / "layer.tar.zst").write_bytes(zst)
    out = subprocess.run(["zstd", "-d", "-c", tmp_path / "layer.tar.zst"], capture_output=True, check=True)
    assert out.stdout == plain
    assert open_decompressed(io.BytesIO(zst)).read() == plain
    apply_layer(io.BytesIO(zst), tmp_path / "dest")
    assert (tmp_path / "dest/big.bin").read_bytes() == (src / "big.bin").read_bytes()
    assert (tmp_path / "dest/text/f2999").read_text() == (src / "text/f2999").read_text()


@pytest.mark.parametrize("cpus", [1, 2, 3, 16])
def test_bytes_do_not_depend_on_the_number_of_cpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpus: int
) -> None:
    src = _several_buffers(tmp_path / "src")
    expected = {c: _write(src, c) for c in Compression}
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    monkeypatch.setattr(writer, "N_BUFFERS", 2)  # few buffers: the walking thread waits, and helps compress
    for compression in Compression:
        assert _write(src, compression) == expected[compression]


class _FailingOut(io.RawIOBase):
    def __init__(self, after: int) -> None:
        self.left = after

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        n = len(memoryview(b))  # type: ignore[arg-type]
        if n > self.left:
            raise OSError(28, "No space left on device")
        self.left -= n
        return n


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("compression", list(Compression))
def test_write_errors_stop_the_commit_with_one_message(tmp_path: Path, compression: Compression) -> None:
    src = _several_buffers(tmp_path / "src")
    fds = _open_fds()
    with pytest.raises(LayerError, match="cannot write layer: No space left on device"):
        write_layer(src, _FailingOut(after=writer.BUF_SIZE), compression)  # type: ignore[arg-type]
    assert not [t for t in threading.enumerate() if t.name == "layer-writer"]
    assert _open_fds() <= fds  # the big file's descriptor, handed to the workers, is closed too


@pytest.mark.parametrize("size", [1000, 5 * writer.DEFER_MIN])  # read by the walk / by the workers
def test_a_file_shrinking_while_archived_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a" * size)
    (src / "b").write_bytes(b"b" * 10)
    target = os.stat(src / "a").st_ino
    real_fstat = os.fstat

    def fstat_before_truncation(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        if st.st_ino != target:
            return st
        # the size the walk saw when it looked, before somebody truncated the file
        in_tuple = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size")
        extra = {k: getattr(st, k) for k in dir(st) if k.startswith("st_") and k not in in_tuple}
        return os.stat_result((*st[:6], size + 4096, *st[7:10]), extra)

    monkeypatch.setattr(os, "fstat", fstat_before_truncation)
    fds = _open_fds()
    with pytest.raises(LayerError, match=r"a shrank while being archived \(expected \d+ bytes\)"):
        write_layer(src, io.BytesIO())
    assert _open_fds() <= fds


def test_file_bytes_is_what_the_tree_takes(tmp_path: Path) -> None:
    from pybuild.store.fsutil import dir_size

    for src in (_tree(tmp_path / "tree"), _several_buffers(tmp_path / "several")):
        for compression in Compression:
            assert _write(src, compression)[1].file_bytes == dir_size(src) > 0


@pytest.mark.parametrize("compression", list(Compression))
def test_a_write_error_at_the_very_end_is_one_message_too(tmp_path: Path, compression: Compression) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "small").write_text("small\n")  # gzip then writes nothing before its final flush
    with pytest.raises(LayerError, match="cannot write layer: No space left on device"):
        write_layer(src, _FailingOut(after=0), compression)  # type: ignore[arg-type]


def test_a_read_error_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(3 * writer.BUF_SIZE))  # read by the workers, not the walk

    def failing_preadv(fd: int, buffers: object, offset: int) -> int:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "preadv", failing_preadv)
    fds = _open_fds()
    with pytest.raises(LayerError, match=r"cannot archive .*/src/big\.bin: Input/output error"):
        write_layer(src, io.BytesIO())
    assert _open_fds() <= fds
