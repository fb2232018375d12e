"""Hostile and broken layers: every escape attempt and every damaged stream ends in LayerError, never a
traceback, and nothing is written outside the destination."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import uuid
from pathlib import Path

import pytest
from layertest_util import make_tar, member

from pybuild.layer import Compression, LayerError, apply_layer, open_decompressed, write_layer

pytestmark = pytest.mark.root


@pytest.fixture
def arena(tmp_path: Path) -> Path:
    """<arena>/dest is where layers go; <arena>/outside holds a secret and must never change."""
    (tmp_path / "dest").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/secret").write_text("secret\n")
    return tmp_path


def _outside_untouched(arena: Path) -> None:
    assert sorted(p.name for p in arena.iterdir()) == ["dest", "outside"]
    assert [p.name for p in (arena / "outside").iterdir()] == ["secret"]
    assert (arena / "outside/secret").read_text() == "secret\n"
    assert os.stat(arena / "outside/secret").st_nlink == 1


def _apply(blob: bytes, dest: Path) -> None:
    apply_layer(io.BytesIO(blob), dest)


@pytest.mark.parametrize("name", ["../escaped", "a/../../escaped", "./../escaped", "a/b/../../../escaped"])
def test_dot_dot_is_refused(arena: Path, name: str) -> None:
    blob = make_tar((member(name), b"pwned\n"))
    with pytest.raises(LayerError, match="outside the layer root"):
        _apply(blob, arena / "dest")
    _outside_untouched(arena)


def test_dot_dot_that_stays_inside_is_cleaned_like_docker(arena: Path) -> None:
    _apply(make_tar((member("a/../b"), b"ok\n")), arena / "dest")
    assert (arena / "dest/b").read_text() == "ok\n"


def test_absolute_names_are_taken_relative_to_dest(arena: Path) -> None:
    """Like Docker: a leading `/` (or `./`) is dropped, so `/etc/x` lands in <dest>/etc/x, never in /etc."""
    unique = f"pybuild-layer-test-{uuid.uuid4().hex}"
    blob = make_tar((member(f"/etc/{unique}"), b"abs\n"), (member(f"./{unique}-dot"), b"dot\n"))
    _apply(blob, arena / "dest")
    assert (arena / "dest/etc" / unique).read_text() == "abs\n"
    assert (arena / "dest" / f"{unique}-dot").read_text() == "dot\n"
    assert not Path("/etc", unique).exists()
    _outside_untouched(arena)


@pytest.mark.parametrize("target", ["ABS", "../outside", "../../../../../../../../{arena}/outside"])
def test_no_writing_through_a_symlink(arena: Path, target: str) -> None:
    link_target = str(arena / "outside") if target == "ABS" else target.format(arena=str(arena).lstrip("/"))
    blob = make_tar(
        (member("link", tarfile.SYMTYPE, linkname=link_target), None),
        (member("link/planted"), b"pwned\n"),
    )
    with pytest.raises(LayerError, match="symbolic link 'link'"):
        _apply(blob, arena / "dest")
    _outside_untouched(arena)
    assert os.readlink(arena / "dest/link") == link_target  # the symlink itself is fine to have


def test_directory_replaced_by_symlink_then_written_through(arena: Path) -> None:
    blob = make_tar(
        (member("d", tarfile.DIRTYPE, mode=0o755), None),
        (member("d/ok"), b"fine\n"),
        (member("d", tarfile.SYMTYPE, linkname=str(arena / "outside")), None),
        (member("d/planted"), b"pwned\n"),
    )
    with pytest.raises(LayerError, match="symbolic link 'd'"):
        _apply(blob, arena / "dest")
    _outside_untouched(arena)


def test_symlink_then_file_with_the_same_name_replaces_the_link(arena: Path) -> None:
    """A later entry with the link's own name replaces the link; it must not write to the link's target."""
    blob = make_tar(
        (member("victim", tarfile.SYMTYPE, linkname=str(arena / "outside/secret")), None),
        (member("victim"), b"pwned\n"),
    )
    _apply(blob, arena / "dest")
    assert (arena / "dest/victim").read_text() == "pwned\n"
    assert not (arena / "dest/victim").is_symlink()
    _outside_untouched(arena)


@pytest.mark.parametrize("linkname", ["../outside/secret", "a/../../outside/secret"])
def test_hard_link_out_of_the_root_is_refused(arena: Path, linkname: str) -> None:
    blob = make_tar((member("stolen", tarfile.LNKTYPE, linkname=linkname), None))
    with pytest.raises(LayerError, match="outside the layer root"):
        _apply(blob, arena / "dest")
    _outside_untouched(arena)


def test_absolute_hard_link_stays_inside(arena: Path) -> None:
    """`/etc/passwd` as a link target means <dest>/etc/passwd, which this layer does not have."""
    blob = make_tar((member("stolen", tarfile.LNKTYPE, linkname="/etc/passwd"), None))
    with pytest.raises(LayerError, match="not in the layer"):
        _apply(blob, arena / "dest")
    assert not (arena / "dest/stolen").exists()


def test_hard_link_through_a_symlink_is_refused(arena: Path) -> None:
    blob = make_tar(
        (member("s", tarfile.SYMTYPE, linkname=str(arena / "outside")), None),
        (member("stolen", tarfile.LNKTYPE, linkname="s/secret"), None),
    )
    with pytest.raises(LayerError, match="symbolic link 's'"):
        _apply(blob, arena / "dest")
    _outside_untouched(arena)


def test_hard_link_to_a_symlink_links_the_symlink_itself(arena: Path) -> None:
    blob = make_tar(
        (member("s", tarfile.SYMTYPE, linkname=str(arena / "outside/secret")), None),
        (member("h", tarfile.LNKTYPE, linkname="s"), None),
    )
    _apply(blob, arena / "dest")
    assert os.readlink(arena / "dest/h") == str(arena / "outside/secret")
    _outside_untouched(arena)


def test_whiteout_names_cannot_escape(arena: Path) -> None:
    with pytest.raises(LayerError, match="outside the layer root"):
        _apply(make_tar((member("../.wh.outside"), b"")), arena / "dest")
    with pytest.raises(LayerError, match="not a valid whiteout"):
        _apply(make_tar((member("a/.wh.."), b"")), arena / "dest")
    _outside_untouched(arena)


def test_overlay_xattrs_in_a_layer_are_dropped(arena: Path) -> None:
    info = member("d", tarfile.DIRTYPE, mode=0o755)
    info.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/elsewhere", "SCHILY.xattr.user.note": "kept"}
    _apply(make_tar((info, None)), arena / "dest")
    names = os.listxattr(arena / "dest/d")
    assert "trusted.overlay.redirect" not in names and "user.note" in names


def _good_layer(tmp_path: Path, compression: Compression) -> bytes:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data").write_bytes(os.urandom(300_000))
    (src / "small").write_text("small\n")
    out = io.BytesIO()
    write_layer(src, out, compression)
    return out.getvalue()


@pytest.mark.parametrize("compression", list(Compression))
@pytest.mark.parametrize("cut", ["half", "minus-one", "header-only"])
def test_truncated_layers(
    tmp_path_factory: pytest.TempPathFactory, arena: Path, compression: Compression, cut: str
) -> None:
    blob = _good_layer(tmp_path_factory.mktemp("build"), compression)
    keep = {"half": len(blob) // 2, "minus-one": len(blob) - 1, "header-only": 10}[cut]
    if compression is Compression.NONE and cut == "minus-one":
        keep = len(blob) - 1024 - 1  # the end-of-archive blocks are zeros: cut into the last entry's data
    with pytest.raises(LayerError, match="layer is truncated or corrupt"):
        _apply(blob[:keep], arena / "dest")
    _outside_untouched(arena)


def test_corrupted_compressed_data(tmp_path_factory: pytest.TempPathFactory, arena: Path) -> None:
    for compression in (Compression.ZSTD, Compression.GZIP):
        blob = bytearray(_good_layer(tmp_path_factory.mktemp("build"), compression))
        for i in range(len(blob) // 3, len(blob) // 3 + 64):
            blob[i] ^= 0x5A
        with pytest.raises(LayerError, match="layer is truncated or corrupt"):
            _apply(bytes(blob), arena / "dest")
    _outside_untouched(arena)


@pytest.mark.parametrize(
    "garbage",
    [
        os.urandom(4096),
        b"\x28\xb5\x2f\xfd" + os.urandom(4096),  # zstd magic, then noise
        b"\x1f\x8b" + os.urandom(4096),  # gzip magic, then noise
        b"",  # nothing at all
        b"\0" * 100,  # shorter than one header
    ],
    ids=["noise", "zstd-noise", "gzip-noise", "empty", "short-zeros"],
)
def test_garbage(arena: Path, garbage: bytes) -> None:
    with pytest.raises(LayerError, match="layer is truncated or corrupt"):
        _apply(garbage, arena / "dest")
    _outside_untouched(arena)


def test_tar_with_bad_checksum(arena: Path) -> None:
    blob = bytearray(make_tar((member("f"), b"data\n")))
    blob[0] ^= 1  # the name changes, the stored checksum no longer matches
    with pytest.raises(LayerError, match="checksum"):
        _apply(bytes(blob), arena / "dest")


def test_open_decompressed_reports_truncation_as_layer_error() -> None:
    data = gzip.compress(b"x" * 100_000)[:-20]
    with pytest.raises(LayerError, match="truncated or corrupt"):
        open_decompressed(io.BytesIO(data)).read()


def test_root_entry_sets_the_roots_metadata_only(arena: Path) -> None:
    root = member("./", tarfile.DIRTYPE, mode=0o750)
    root.uid, root.gid = 12, 34
    _apply(make_tar((root, None), (member("./f"), b"f\n")), arena / "dest")
    st = (arena / "dest").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)) == (0o750, 12, 34, 1_700_000_000)
    with pytest.raises(LayerError, match="names the layer root but is not a directory"):
        _apply(make_tar((member("."), b"x")), arena / "dest")
    _outside_untouched(arena)
