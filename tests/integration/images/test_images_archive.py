"""The archive formats on their own: what we write is read back by us, skopeo, podman and umoci, and bad
archives fail with one clear error."""

from __future__ import annotations

import gzip
import json
import lzma
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagetest_util import (
    MemBlobs,
    MemImage,
    Podman,
    json_bytes,
    layer_tar,
    mem_image,
    need_tool,
    run,
    tar_members,
    write_tar,
)

from pybuild.export.common import ArchiveError, ArchiveFormat
from pybuild.export.reader import open_archive
from pybuild.export.writer import write_archive
from pybuild.model.oci import sha256_digest


def _two_layers() -> list[bytes]:
    return [layer_tar({"bin/hello": b"hello\n"}, dirs=["bin"]), layer_tar({"etc/motd": b"hi\n"}, dirs=["etc"])]


def _two_layer_image() -> MemImage:
    return mem_image(_two_layers())


def _save(tmp: Path, fmt: ArchiveFormat, img: MemImage, *names: str) -> Path:
    path = tmp / f"saved-{fmt}.tar"
    with open(path, "wb") as f:
        write_archive(f, [img.export(*names)], MemBlobs(img), fmt)
    return path


@pytest.mark.parametrize("fmt", list(ArchiveFormat))
def test_round_trip_keeps_manifest_config_and_layers(tmp_path: Path, fmt: ArchiveFormat) -> None:
    img = _two_layer_image()
    path = _save(tmp_path, fmt, img, "myapp:1", "myapp:latest")
    with open_archive(path) as archive:
        assert archive.format is fmt
        (got,) = archive.images
        assert got.names == ("myapp:1", "myapp:latest")
        assert got.manifest == img.manifest
        assert got.config == img.config
        for layer in got.layers:
            checked = archive.check_layer(layer)
            assert not checked.convert
            assert checked.blob.digest in img.blobs
            with archive.open_for_store(checked) as f:
                assert sha256_digest(f.read()) == checked.blob.digest


def test_archive_bytes_are_deterministic(tmp_path: Path) -> None:
    img = _two_layer_image()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _save(tmp_path / "a", ArchiveFormat.DOCKER, img, "x:1")
    b = _save(tmp_path / "b", ArchiveFormat.DOCKER, img, "x:1")
    assert a.read_bytes() == b.read_bytes()


def test_docker_archive_layout(tmp_path: Path) -> None:
    img = _two_layer_image()
    members = tar_members(_save(tmp_path, ArchiveFormat.DOCKER, img, "localhost:5000/team/app:2"))
    (entry,) = json.loads(members["manifest.json"])
    assert entry["RepoTags"] == ["localhost:5000/team/app:2"]
    assert entry["Config"] == f"blobs/sha256/{img.config_digest[7:]}"
    assert all(p in members for p in entry["Layers"])
    assert list(json.loads(members["repositories"])) == ["localhost:5000/team/app"]
    index = json.loads(members["index.json"])
    ann = index["manifests"][0]["annotations"]
    assert ann["org.opencontainers.image.ref.name"] == "localhost:5000/team/app:2"
    assert ann["io.containerd.image.name"] == "localhost:5000/team/app:2"


def test_skopeo_reads_both_archives(tmp_path: Path) -> None:
    need_tool("skopeo")
    img = _two_layer_image()
    docker = _save(tmp_path, ArchiveFormat.DOCKER, img, "myapp:1")
    oci = _save(tmp_path, ArchiveFormat.OCI, img, "myapp:1")
    p = run(["skopeo", "inspect", f"docker-archive:{docker}"])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Architecture"] == "amd64"
    p = run(["skopeo", "inspect", "--raw", f"oci-archive:{oci}:myapp:1"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.encode() == img.manifest
    p = run(["skopeo", "copy", f"oci-archive:{oci}", f"dir:{tmp_path / 'dir'}"])
    assert p.returncode == 0, p.stderr
    for digest in img.blobs:
        assert (tmp_path / "dir" / digest[7:]).read_bytes() == img.blobs[digest]


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    need_tool("podman")
    p = Podman(tmp_path)
    yield p
    p.close()


def test_podman_loads_docker_archive_with_zstd_layers(tmp_path: Path, podman: Podman) -> None:
    img = _two_layer_image()
    path = _save(tmp_path, ArchiveFormat.DOCKER, img, "myapp:1")
    p = podman("load", "-i", str(path))
    assert p.returncode == 0, p.stderr
    assert "Loaded image: docker.io/library/myapp:1" in p.stdout
    p = podman("image", "inspect", "myapp:1", "--format", "{{.Id}}")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == img.config_digest[7:]


def test_umoci_unpacks_oci_archive(tmp_path: Path) -> None:
    need_tool("umoci")
    # Debian 12's umoci (0.4.7) predates zstd layers ("blob is not correct mediatype"), so gzip here.
    img = mem_image(_two_layers(), compression="gzip")
    path = _save(tmp_path, ArchiveFormat.OCI, img, "myapp:1")
    layout = tmp_path / "layout"
    with tarfile.open(path) as tar:
        tar.extractall(layout, filter="data")
    p = run(["umoci", "unpack", "--rootless", "--image", f"{layout}:myapp:1", str(tmp_path / "bundle")])
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "bundle" / "rootfs" / "bin" / "hello").read_bytes() == b"hello\n"
    assert (tmp_path / "bundle" / "rootfs" / "etc" / "motd").read_bytes() == b"hi\n"


def test_classic_docker_archive_with_xz_layer_is_converted(tmp_path: Path) -> None:
    plain = layer_tar({"a.txt": b"a\n"})
    config = json_bytes({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                                                                           "diff_ids": [sha256_digest(plain)]}})
    path = tmp_path / "classic.tar"
    write_tar(path, {
        "abc/layer.tar": lzma.compress(plain),
        f"{sha256_digest(config)[7:]}.json": config,
        "manifest.json": json_bytes(
            [{"Config": f"{sha256_digest(config)[7:]}.json", "RepoTags": ["docker.io/library/old:1"],
              "Layers": ["abc/layer.tar"]}]
        ),
    })
    with open_archive(path) as archive:
        (got,) = archive.images
        assert got.names == ("old:1",)
        assert got.manifest is None
        checked = archive.check_layer(got.layers[0])
        assert checked.convert and checked.compression == "xz"
        assert checked.blob.digest == sha256_digest(plain)
        assert checked.blob.size == len(plain)
        with archive.open_for_store(checked) as f:
            assert f.read() == plain


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress])
def test_compressed_archive_and_stdin(tmp_path: Path, compress: object) -> None:
    img = _two_layer_image()
    path = _save(tmp_path, ArchiveFormat.DOCKER, img, "myapp:1")
    packed = tmp_path / "packed.tar.x"
    packed.write_bytes(compress(path.read_bytes()))  # type: ignore[operator]
    with open_archive(packed) as archive:
        assert archive.images[0].manifest == img.manifest
    with open(path, "rb") as f, open_archive(None, f) as archive:
        assert archive.images[0].names == ("myapp:1",)


# -- bad input ---------------------------------------------------------------------------------------------


def _error(path: Path) -> str:
    with pytest.raises(ArchiveError) as info, open_archive(path) as archive:
        for img in archive.images:
            for layer in img.layers:
                archive.check_layer(layer)
    return info.value.message


@pytest.mark.parametrize("where", ["inside a layer", "between members", "before the end marker"])
def test_truncated_archive(tmp_path: Path, where: str) -> None:
    path = _save(tmp_path, ArchiveFormat.DOCKER, _two_layer_image(), "myapp:1")
    with tarfile.open(path) as tar:
        infos = tar.getmembers()
        end = tar.offset
    layer = next(i for i in infos if i.name.startswith("blobs/sha256/") and i.size > 200)
    cut = {"inside a layer": layer.offset_data + 100, "between members": layer.offset, "before the end marker": end}
    path.write_bytes(path.read_bytes()[: cut[where]])
    message = _error(path)
    assert "truncated" in message or "missing" in message


def test_not_a_tar(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"this is not an archive\n" * 100)
    assert "not a tar archive" in _error(path)


def test_tar_without_images(tmp_path: Path) -> None:
    path = tmp_path / "rootfs.tar"
    path.write_bytes(layer_tar({"etc/passwd": b"root:x:0:0::/root:/bin/sh\n"}))
    assert "not an image archive" in _error(path)


def test_wrong_layer_digest_in_manifest(tmp_path: Path) -> None:
    img = _two_layer_image()
    path = _save(tmp_path, ArchiveFormat.OCI, img, "myapp:1")
    members = tar_members(path)
    layer_digest = json.loads(img.manifest)["layers"][0]["digest"]
    # swap the layer's content for another layer's bytes under the same name
    other = json.loads(img.manifest)["layers"][1]["digest"]
    members[f"blobs/sha256/{layer_digest[7:]}"] = members[f"blobs/sha256/{other[7:]}"]
    write_tar(path, members)
    assert "does not match the digest in its manifest" in _error(path)


def test_wrong_diff_id_in_config(tmp_path: Path) -> None:
    plain = layer_tar({"a": b"a"})
    config = json_bytes({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}})
    path = tmp_path / "bad.tar"
    write_tar(path, {"l.tar": plain, "c.json": config,
                     "manifest.json": json_bytes([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l.tar"]}])})
    assert "does not match the diff ID" in _error(path)


def test_corrupt_zstd_layer(tmp_path: Path) -> None:
    img = _two_layer_image()
    path = _save(tmp_path, ArchiveFormat.DOCKER, img, "myapp:1")
    members = tar_members(path)
    for name in json.loads(members["manifest.json"])[0]["Layers"]:
        members[name] = members[name][: len(members[name]) // 2]
    members.pop("index.json")  # a plain docker-archive: no manifest digests to catch it first
    write_tar(path, members)
    assert "corrupt or truncated" in _error(path)


def test_missing_layer_file(tmp_path: Path) -> None:
    img = _two_layer_image()
    path = _save(tmp_path, ArchiveFormat.OCI, img, "myapp:1")
    members = tar_members(path)
    del members[f"blobs/sha256/{json.loads(img.manifest)['layers'][0]['digest'][7:]}"]
    write_tar(path, members)
    assert "missing layer blob" in _error(path)


def test_save_refuses_a_corrupt_store_blob(tmp_path: Path) -> None:
    img = _two_layer_image()
    blobs = MemBlobs(img)
    digest = json.loads(img.manifest)["layers"][0]["digest"]
    blobs.blobs[digest] = blobs.blobs[digest][:-1] + b"\0"
    with open(tmp_path / "out.tar", "wb") as f, pytest.raises(ArchiveError, match="does not match its digest"):
        write_archive(f, [img.export("x:1")], blobs, ArchiveFormat.OCI)
