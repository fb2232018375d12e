"""Round trip through real overlayfs: work done in a merged view → upper dir → layer → applied dir, and the
overlay of the applied dir must show exactly what the overlay of the original upper dir shows."""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import struct
import tarfile
from pathlib import Path

import pytest
from layertest_util import overlay, snapshot

from pybuild.layer import Compression, apply_layer, write_layer

pytestmark = pytest.mark.root

# struct vfs_cap_data, revision 2, effective flag, permitted = CAP_NET_BIND_SERVICE: what `setcap
# cap_net_bind_service+ep` stores
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
LONG_DIR = "d" * 60 + "/" + "e" * 60
LONG_FILE = "f" * 120
LONG_TARGET = "/" + "/".join(["target"] * 20)


def _build_lower(lower: Path) -> None:
    for rel, text in {
        "etc/config": "lower config\n",
        "keep.txt": "kept\n",
        "modify.txt": "before\n",
        "delete.txt": "gone soon\n",
        "deldir/a": "a\n",
        "deldir/b/c": "c\n",
        "renameme/x": "x\n",
        "renameme/sub/y": "y\n",
        "opaque/old1": "old1\n",
        "opaque/sub/old2": "old2\n",
        "bin/tool": "#!/bin/sh\necho tool\n",
        "chowned": "owner changes\n",
        "chmodded": "mode changes\n",
    }.items():
        p = lower / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    os.chmod(lower / "bin/tool", 0o755)


def _work_in(m: Path) -> None:
    """Real changes through the merged view, like a RUN step would make."""
    (m / "newfile.txt").write_text("new\n")
    (m / "newdir/with/nested").mkdir(parents=True)
    (m / "newdir/with/nested/file").write_text("nested\n")
    with open(m / "modify.txt", "a") as f:
        f.write("after\n")
    (m / "delete.txt").unlink()
    shutil.rmtree(m / "deldir")
    shutil.move(m / "renameme", m / "renamed")  # EXDEV with redirect_dir=off: copy + delete, like `mv`
    shutil.rmtree(m / "opaque")
    (m / "opaque").mkdir()
    (m / "opaque/new").write_text("fresh\n")
    os.setxattr(m / "bin/tool", "security.capability", CAPABILITY)
    os.setxattr(m / "newfile.txt", "user.pybuild.test", b"hello\x00\xff")
    os.chown(m / "chowned", 1234, 5678)
    os.chmod(m / "chmodded", 0o4750)
    (m / "hl_a").write_text("linked\n")
    os.link(m / "hl_a", m / "newdir/hl_b")
    os.link(m / "hl_a", m / "hl_c")
    os.symlink("newfile.txt", m / "rel_link")
    os.symlink("/etc/config", m / "abs_link")
    os.symlink("does/not/exist", m / "dangling")
    os.symlink(LONG_TARGET, m / "long_target_link")
    (m / LONG_DIR).mkdir(parents=True)
    (m / LONG_DIR / LONG_FILE).write_text("long name\n")
    os.mkfifo(m / "fifo")
    os.mknod(m / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (m / "empty").touch()
    (m / "dated").write_text("dated\n")
    os.utime(m / "dated", (1_500_000_000.7, 1_500_000_000.7))
    cwd = os.getcwd()
    os.chdir(m)  # AF_UNIX paths are limited to 108 bytes: bind relative to the merged dir
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind("sock")
        sock.close()
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("compression", list(Compression))
def test_overlay_round_trip(tmp_path: Path, compression: Compression) -> None:
    lower, upper, work = tmp_path / "lower", tmp_path / "upper", tmp_path / "work"
    _build_lower(lower)
    with overlay(tmp_path / "merged", [lower], upper, work) as m:
        _work_in(m)
        assert (m / "sock").is_socket()

    blob = io.BytesIO()
    info = write_layer(upper, blob, compression)
    applied = tmp_path / "applied"
    blob.seek(0)
    stats = apply_layer(blob, applied)
    assert stats.compression == compression.value
    assert stats.whiteouts == 3  # delete.txt, deldir, renameme (the socket is skipped, not whited out)
    assert stats.opaque_dirs == 1
    assert stats.hardlinks == 2
    assert info.size == len(blob.getvalue())

    # the applied dir is in overlay form: whiteouts are 0:0 char devices, the opaque dir has its xattr
    wh = (applied / "delete.txt").lstat()
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(applied / "opaque", "trusted.overlay.opaque") == b"y"
    assert not (applied / "sock").exists()

    with overlay(tmp_path / "view_orig", [upper, lower]) as orig:
        expected = snapshot(orig)
    with overlay(tmp_path / "view_new", [applied, lower]) as new:
        got = snapshot(new)
    assert set(got) == set(expected) - {"sock"}
    for rel in sorted(got):
        assert got[rel] == expected[rel], rel
    # the merged view really reflects the work
    for gone in ("delete.txt", "deldir", "renameme", "opaque/old1", "opaque/sub"):
        assert gone not in got
    assert got["bin/tool"][6] == (("security.capability", CAPABILITY),)
    assert got["chmodded"][0] == "-rwsr-x---"
    assert got["chowned"][1:3] == (1234, 5678)
    assert got["hl_a"][-1] == ("hl_a", "hl_c", "newdir/hl_b")
    assert got["dated"][3] == 1_500_000_000
    assert got[f"{LONG_DIR}/{LONG_FILE}"][5] is not None
    assert got["long_target_link"][5] == LONG_TARGET


def test_overlay_private_xattrs_stay_out_of_the_tar(tmp_path: Path) -> None:
    lower, upper, work = tmp_path / "lower", tmp_path / "upper", tmp_path / "work"
    _build_lower(lower)
    with overlay(tmp_path / "merged", [lower], upper, work) as m:
        _work_in(m)
    # the upper dir carries overlay's bookkeeping (at least the opaque marker) ...
    overlay_xattrs = [
        (p, n) for p in upper.rglob("*") for n in os.listxattr(p, follow_symlinks=False) if ".overlay." in n
    ]
    assert overlay_xattrs
    blob = io.BytesIO()
    write_layer(upper, blob, Compression.NONE)
    blob.seek(0)
    with tarfile.open(fileobj=blob) as tf:
        members = tf.getmembers()
    # ... none of which may reach the layer, while the capability does
    for m_ in members:
        assert not [k for k in m_.pax_headers if "overlay." in k], m_.name
    tool = next(m_ for m_ in members if m_.name == "bin/tool")
    assert tool.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == CAPABILITY
    names = {m_.name for m_ in members}
    assert {".wh.delete.txt", ".wh.deldir", ".wh.renameme", "opaque/.wh..wh..opq"} <= names
    assert "sock" not in names and ".wh.sock" not in names
