"""Layers on disk: committing overlay upper dirs, unpacking blobs, short links and real overlay mounts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from storetest_util import add_tar_layers, image_config

from pybuild.errors import PybuildError
from pybuild.layer import Compression
from pybuild.model.oci import MT_OCI_LAYER_ZSTD, chain_id, digest_hex
from pybuild.store import Store


def _commit(store: Store, files: dict[str, str], parent: str | None, *, whiteouts: tuple[str, ...] = (),
            compression: Compression | None = None) -> str:
    with store.new_scratch_dir() as scratch:
        upper = scratch / "upper"
        upper.mkdir()
        for name, text in files.items():
            (upper / name).parent.mkdir(parents=True, exist_ok=True)
            (upper / name).write_text(text)
        for name in whiteouts:
            os.mknod(upper / name, 0o600 | 0o020000, os.makedev(0, 0))  # overlay whiteout: char 0/0
        lay = store.commit_layer_dir(upper, parent, compression)
        assert not upper.exists()  # moved into the store, not copied
    return lay.chain_id


def test_commit_layer_dir_moves_and_records(store_root: Path) -> None:
    with Store.open(store_root) as store:
        with store.new_scratch_dir() as scratch:
            assert scratch.parent == store_root / "tmp"
            upper = scratch / "upper"
            (upper / "etc").mkdir(parents=True)
            (upper / "etc" / "motd").write_text("hi\n")
            lay = store.commit_layer_dir(upper, None)
        assert lay.chain_id == lay.diff_id
        assert lay.blob is not None and lay.blob.media_type == MT_OCI_LAYER_ZSTD
        assert store.has_blob(lay.blob.digest)
        assert lay.path == store_root / "layers" / digest_hex(lay.chain_id) / "diff"
        assert (lay.path / "etc" / "motd").read_text() == "hi\n"
        assert os.readlink(store_root / "l" / lay.link_id) == f"../layers/{digest_hex(lay.chain_id)}/diff"
        assert store.lower_dirs(lay.chain_id) == [f"l/{lay.link_id}"]
        assert (store_root / "l" / lay.link_id / "etc" / "motd").read_text() == "hi\n"
        assert list((store_root / "tmp").glob("*-scratch-*")) == []

        top = _commit(store, {"etc/motd": "bye\n"}, lay.chain_id, compression=Compression.GZIP)
        assert store.layer(top).parent == lay.chain_id
        assert top == chain_id(lay.chain_id, store.layer(top).diff_id)
        assert len(store.lower_dirs(top)) == 2 and store.lower_dirs(top)[1] == f"l/{lay.link_id}"
        img = store.put_image(image_config(store.layer_chain(top)), store.layer_chain(top), names=["c:1"])
        assert img.chain_ids[-1] == top
        assert store.verify() == []


def test_identical_commit_is_deduplicated(store_root: Path) -> None:
    with Store.open(store_root) as store:
        a = _commit(store, {"x": "same"}, None)
        b = _commit(store, {"x": "same"}, None)
        assert a == b
        assert len(list((store_root / "layers").iterdir())) == 1
        assert store.verify() == []


def test_commit_refuses_unknown_parent(store_root: Path) -> None:
    with Store.open(store_root) as store, store.new_scratch_dir() as scratch, pytest.raises(PybuildError):
        store.commit_layer_dir(scratch, "sha256:" + "0" * 64)


def test_ensure_unpacked_from_blobs(store_root: Path) -> None:
    with Store.open(store_root) as store:
        layers = add_tar_layers(store, [{"a": b"1", "b": b"2"}, {"a": b"3"}])
        assert not layers[1].unpacked
        with pytest.raises(PybuildError, match="not unpacked"):
            store.lower_dirs(layers[1].chain_id)
        top = store.ensure_unpacked(layers[1].chain_id)
        assert top.path is not None and (top.path / "a").read_bytes() == b"3"
        assert store.layer(layers[0].chain_id).unpacked  # ancestors too
        assert len(store.lower_dirs(top.chain_id)) == 2
        assert store.verify() == []


def test_ensure_unpacked_rejects_wrong_diff_id(store_root: Path) -> None:
    with Store.open(store_root) as store:
        real = add_tar_layers(store, [{"a": b"1"}])[0]
        assert real.blob is not None
        liar = store.add_layer_blob(real.blob, None, diff_id="sha256:" + "5" * 64)
        with pytest.raises(PybuildError, match="unpacks to"):
            store.ensure_unpacked(liar.chain_id)
        assert not store.layer(liar.chain_id).unpacked
        assert not (store_root / "layers" / digest_hex(liar.chain_id) / "diff").exists()


@pytest.mark.root
def test_150_layers_fit_one_page_and_mount(store_root: Path, tmp_path: Path) -> None:
    with Store.open(store_root) as store:
        parent: str | None = None
        for i in range(150):
            files = {f"f{i}": str(i), "common": str(i)}
            parent = _commit(store, files, parent, whiteouts=("f10",) if i == 75 else ())
        assert parent is not None
        lowers = store.lower_dirs(parent)
        assert len(lowers) == 150
        option = "lowerdir=" + ":".join(lowers)
        assert len(option.encode()) < 4096 - 200  # room left for upperdir=tmp/...,workdir=tmp/...
        target = tmp_path / "mnt"
        target.mkdir()
        # relative lowerdirs: mount from the store root, as the executor does
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", option, str(target)], cwd=store_root,
                       check=True, capture_output=True)
        try:
            assert (target / "common").read_text() == "149"
            assert (target / "f0").read_text() == "0"
            assert (target / "f149").read_text() == "149"
            assert not (target / "f10").exists()  # whited out at layer 75
            assert (target / "f76").exists()
        finally:
            subprocess.run(["umount", str(target)], check=True)
        assert store.verify() == []


def test_layer_blob_moves_between_stores(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a") as a, Store.open(tmp_path / "b") as b:
        base = _commit(a, {"keep": "1", "gone": "2"}, None, compression=Compression.GZIP)
        top = _commit(a, {"new": "3"}, base, whiteouts=("gone",), compression=Compression.GZIP)
        parent: str | None = None
        for lay in a.layer_chain(top):
            assert lay.blob is not None
            with a.open_blob(lay.blob.digest) as f:
                desc = b.put_blob(f, expected_digest=lay.blob.digest, media_type=lay.blob.media_type)
            copied = b.add_layer_blob(desc, parent)  # diff_id computed by decompressing
            assert copied.diff_id == lay.diff_id and copied.chain_id == lay.chain_id
            parent = copied.chain_id
        unpacked = b.ensure_unpacked(top)
        assert unpacked.path is not None
        assert (unpacked.path / "new").read_text() == "3"
        st = os.lstat(unpacked.path / "gone")  # the whiteout is back in overlay form
        assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
        assert b.verify() == []
