"""gc/prune keep what is referenced and drop what is not; verify finds damage; the CLI reports it."""

from __future__ import annotations

import os
from pathlib import Path

from storetest_util import add_tar_layers, image_config, small_image

from pybuild.model.oci import MT_OCI_LAYER, digest_hex
from pybuild.store import Store
from tests.conftest import run_cli


def _blob_names(root: Path) -> set[str]:
    return {"sha256:" + p.name for p in (root / "blobs" / "sha256").iterdir()}


def test_gc_keeps_referenced_and_drops_unreferenced(store_root: Path) -> None:
    with Store.open(store_root) as store:
        base = add_tar_layers(store, [{"base": b"base"}])
        top_a = add_tar_layers(store, [{"a": b"a"}], base[0].chain_id)
        top_b = add_tar_layers(store, [{"b": b"b"}], base[0].chain_id)
        a = store.put_image(image_config(base + top_a), base + top_a, names=["a:1"])
        b = store.put_image(image_config(base + top_b), base + top_b, names=["b:1"])
        stray = store.put_blob_bytes(b"unreferenced")
        rep = store.gc()
        assert rep.blobs == (stray.digest,)
        assert rep.layers == ()
        assert rep.freed_bytes >= len(b"unreferenced")
        assert not store.has_blob(stray.digest)
        for img in (a, b):
            for d in (img.manifest_digest, img.id, *(x.digest for x in img.manifest.layers)):
                assert store.has_blob(d)

        # Removing b frees its manifest, config and top layer, but not the shared base.
        store.remove_image(b)
        rep = store.gc()
        assert set(rep.blobs) == {b.manifest_digest, b.id, top_b[0].blob.digest if top_b[0].blob else ""}
        assert rep.layers == (top_b[0].chain_id,)
        assert store.has_layer(base[0].chain_id) and store.has_layer(top_a[0].chain_id)
        assert store.resolve("a:1").manifest_digest == a.manifest_digest
        assert store.verify() == []

        # Nameless images go with prune(untagged=True); then everything is free.
        store.untag("a:1")
        rep = store.prune()
        assert rep.images == (a.manifest_digest,)
        assert set(rep.layers) == {base[0].chain_id, top_a[0].chain_id}
        assert _blob_names(store_root) == set()
        assert store.list_images() == []
        assert store.verify() == []


def test_prune_all_images(store_root: Path) -> None:
    with Store.open(store_root) as store:
        small_image(store, "x:1")
        small_image(store, "y:1", {"y": b"y"})
        assert store.prune(untagged=True).images == ()
        assert len(store.prune(all_images=True).images) == 2
        assert _blob_names(store_root) == set()


def test_pins_and_leases_protect_content(store_root: Path) -> None:
    with Store.open(store_root) as store, Store.open(store_root) as other:
        with store.lease():
            layers = add_tar_layers(store, [{"a": b"a"}, {"b": b"b"}])
            free = other.put_blob_bytes(b"free")
            # another process's gc must not take what this build holds
            rep = other.gc()
            assert rep.blobs == (free.digest,)
            assert store.has_layer(layers[1].chain_id)
            store.pin("cache", layers=[layers[1].chain_id])
        # lease over: the cache pin alone keeps the stack (ancestors included)
        assert other.gc().layers == ()
        assert store.has_layer(layers[0].chain_id)
        assert store.has_blob(layers[0].blob.digest if layers[0].blob else "")
        store.unpin("cache")
        assert set(other.gc().layers) == {x.chain_id for x in layers}


def test_dead_process_lease_is_ignored(store_root: Path) -> None:
    with Store.open(store_root) as store:
        d = store.put_blob_bytes(b"leased")
        # What a build killed inside a lease leaves: pins whose owner lock nobody holds.
        store.pin("lease:deadbeef0000:1", blobs=[d.digest])
        assert store.gc().blobs == (d.digest,)


def test_verify_detects_corrupt_blob_and_missing_layer_dir(store_root: Path) -> None:
    with Store.open(store_root) as store:
        img = small_image(store, "v:1")
        assert store.verify() == []
        layer = store.image_layers(img)[0]
        # fake an unpacked layer whose directory then disappears
        diff = store_root / "layers" / digest_hex(layer.chain_id) / "diff"
        diff.mkdir(parents=True)
        store._finish_unpack(layer.chain_id, None, 0)
        assert store.layer(layer.chain_id).unpacked
        assert store.verify() == []
        os.rmdir(diff)
        blob = store.blob_path(img.id)
        blob.write_bytes(blob.read_bytes() + b" ")
        kinds = {(p.kind, p.subject) for p in store.verify()}
        assert ("corrupt-blob", img.id) in kinds
        assert ("missing-layer-dir", layer.chain_id) in kinds

    p = run_cli(["--root", str(store_root), "store", "verify"])
    assert p.returncode == 1
    assert "corrupt-blob" in p.stdout and "missing-layer-dir" in p.stdout


def test_verify_detects_missing_blob(store_root: Path) -> None:
    with Store.open(store_root) as store:
        img = small_image(store, "v:1")
        store.blob_path(img.manifest.layers[0].digest).unlink()
        kinds = {p.kind for p in store.verify()}
        assert "missing-blob" in kinds


def test_cli_verify_ok_and_gc(store_root: Path) -> None:
    with Store.open(store_root) as store:
        small_image(store, "ok:1")
        store.put_blob_bytes(b"junk", MT_OCI_LAYER)
    p = run_cli(["--root", str(store_root), "store", "verify"])
    assert p.returncode == 0, p.stderr
    assert "store OK" in p.stdout
    p = run_cli(["--root", str(store_root), "store", "gc"])
    assert p.returncode == 0, p.stderr
    assert "removed 1 blob(s)" in p.stdout
