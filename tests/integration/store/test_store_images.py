"""Blobs, images, names and references in a real store directory."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from storetest_util import add_tar_layers, image_config, layer_tar, small_image

from pybuild.errors import PybuildError
from pybuild.model.oci import (
    ANNOTATION_REF_NAME,
    MT_OCI_LAYER,
    Index,
    Manifest,
    sha256_digest,
)
from pybuild.store import Store


def test_open_creates_oci_layout(store_root: Path) -> None:
    with Store.open(store_root) as store:
        assert store.root == store_root
    assert json.loads((store_root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert Index.from_json((store_root / "index.json").read_bytes()).manifests == ()
    assert (store_root / "blobs" / "sha256").is_dir()
    assert (store_root / "pybuild.db").is_file()


def test_put_blob_roundtrip_and_dedup(store_root: Path) -> None:
    data = b"x" * 3_000_000
    with Store.open(store_root) as store:
        d = store.put_blob(io.BytesIO(data), media_type="application/test")
        assert d.digest == sha256_digest(data) and d.size == len(data)
        assert store.has_blob(d.digest)
        with store.open_blob(d.digest) as f:
            assert f.read() == data
        again = store.put_blob(io.BytesIO(data), expected_digest=d.digest)
        assert again.digest == d.digest
        assert store.blob_descriptor(d.digest).media_type == "application/test"
        assert list((store_root / "tmp").glob("*-blob-*")) == []


def test_put_blob_rejects_wrong_digest_and_leaves_nothing(store_root: Path) -> None:
    wrong = sha256_digest(b"something else")
    with Store.open(store_root) as store:
        with pytest.raises(PybuildError, match="does not match"):
            store.put_blob(io.BytesIO(b"payload"), expected_digest=wrong)
        assert not store.has_blob(wrong)
        assert not store.has_blob(sha256_digest(b"payload"))
        assert list((store_root / "blobs" / "sha256").iterdir()) == []
        assert list((store_root / "tmp").glob("*-blob-*")) == []
        with pytest.raises(PybuildError, match="no such blob"):
            store.open_blob(wrong)


def test_put_image_names_and_resolve(store_root: Path) -> None:
    with Store.open(store_root) as store:
        img = small_image(store, "busybox", None, "localhost:5000/x/y:tag")
        assert img.names == ("busybox:latest", "localhost:5000/x/y:tag")
        assert img.id == img.manifest.config.digest
        for ref in ("busybox", "busybox:latest", "docker.io/library/busybox:latest", "localhost:5000/x/y:tag",
                    img.id, img.id[len("sha256:"):], img.short_id, img.short_id[:4], img.manifest_digest,
                    f"busybox@{img.manifest_digest}"):
            assert store.resolve(ref).manifest_digest == img.manifest_digest, ref
        with pytest.raises(PybuildError, match="no such image"):
            store.resolve("nothere")
        assert store.find("nothere") is None
        # the manifest bytes are what we hash
        m = Manifest.from_json(store.read_blob(img.manifest_digest))
        assert m == img.manifest
        assert sha256_digest(m.to_json()) == img.manifest_digest


def test_tag_moves_name_and_untag(store_root: Path) -> None:
    with Store.open(store_root) as store:
        a = small_image(store, "app:1", {"a": b"1"})
        b = small_image(store, "app:2", {"b": b"2"})
        assert store.tag(a, "app") == "app:latest"
        store.tag(b, "app:latest")
        assert store.resolve("app").manifest_digest == b.manifest_digest
        assert store.resolve("app:1").names == ("app:1",)
        gone = store.untag("app:1")
        assert gone.manifest_digest == a.manifest_digest
        assert store.find("app:1") is None
        # a is nameless now but still an image
        assert a.manifest_digest in {i.manifest_digest for i in store.list_images()}
        with pytest.raises(PybuildError):
            store.tag(b, "app@" + b.manifest_digest)
        with pytest.raises(PybuildError, match="lowercase"):
            store.tag(b, "App:1")


def test_index_json_follows_names(store_root: Path) -> None:
    with Store.open(store_root) as store:
        a = small_image(store, "one:1")
        store.tag(a, "two:2")
        nameless = small_image(store, "three:3", {"z": b"z"})
        store.untag("three:3")
        index = Index.from_json((store_root / "index.json").read_bytes())
        named = {(x.annotations.get(ANNOTATION_REF_NAME), x.digest) for x in index.manifests}
        assert named == {("one:1", a.manifest_digest), ("two:2", a.manifest_digest),
                         (None, nameless.manifest_digest)}
        store.remove_image(a)
        index = Index.from_json((store_root / "index.json").read_bytes())
        assert [x.digest for x in index.manifests] == [nameless.manifest_digest]


def test_ambiguous_short_id(store_root: Path) -> None:
    with Store.open(store_root) as store:
        ids = {small_image(store, f"img:{i}", {"f": str(i).encode()}).id for i in range(40)}
        # with 40 ids some share a first hex digit
        firsts = [i[7] for i in ids]
        dup = next(c for c in firsts if firsts.count(c) > 1)
        with pytest.raises(PybuildError, match="ambiguous"):
            store.resolve(dup)


def test_put_manifest_keeps_foreign_bytes(store_root: Path) -> None:
    # A Docker-style manifest and config with fields we do not model and non-canonical spacing.
    layer = layer_tar({"etc/os-release": b"ID=test\n"})
    diff_id = sha256_digest(layer)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "docker_version": "24.0", "container": "abc",
        "config": {"Hostname": "", "Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, indent=3).encode()
    with Store.open(store_root) as store:
        store.put_blob_bytes(layer, "application/vnd.docker.image.rootfs.diff.tar")
        cdesc = store.put_blob_bytes(config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": cdesc.size,
                       "digest": cdesc.digest},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar", "size": len(layer),
                        "digest": diff_id}],
        }, indent=2).encode()
        img = store.put_manifest(manifest, names=["foreign:1"])
        assert img.manifest_digest == sha256_digest(manifest)
        assert store.read_blob(img.manifest_digest) == manifest
        assert img.config_bytes == config
        assert img.config.extra["docker_version"] == "24.0"
        assert img.config.config.extra == {"Hostname": ""}
        assert img.chain_ids == (diff_id,)
        assert [x.chain_id for x in store.image_layers(img)] == [diff_id]
        assert store.verify() == []


def test_put_image_checks_diff_ids(store_root: Path) -> None:
    with Store.open(store_root) as store:
        layers = add_tar_layers(store, [{"a": b"a"}, {"b": b"b"}])
        with pytest.raises(ValueError):
            store.put_image(image_config(layers[:1]), layers)
        img = store.put_image(image_config(layers), layers, names=["ok"])
        assert [x.blob.digest for x in store.image_layers(img) if x.blob] == [x.blob.digest for x in layers if x.blob]
        assert img.config.history[1].created_by == "layer 1"


def test_second_process_sees_names(store_root: Path) -> None:
    with Store.open(store_root) as s1, Store.open(store_root) as s2:
        img = small_image(s1, "shared:1")
        assert s2.resolve("shared:1").manifest_digest == img.manifest_digest
        s2.untag("shared:1")
        assert s1.find("shared:1") is None


def test_blob_with_layer_media_type_roundtrip(store_root: Path) -> None:
    with Store.open(store_root) as store:
        d = store.put_blob_bytes(layer_tar({"x": b"y"}), MT_OCI_LAYER)
        lay = store.add_layer_blob(d, None)
        assert lay.diff_id == d.digest == lay.chain_id
        assert not lay.unpacked
        assert store.layer(lay.chain_id).blob == d
