"""The image commands end to end through the real CLI (a subprocess per command, --root in tmp) and the
real tools that read what we write: skopeo, umoci, podman."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from imagetest_util import Podman, layer_tar, need_tool, run, tar_members, write_tar

from pybuild.model.oci import sha256_digest
from tests.conftest import run_cli


def rootfs_tar() -> bytes:
    """A small root filesystem: directories, files, a symlink and a hard link."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in (("etc/motd", b"hello from pybuild\n"), ("bin/tool", b"#!/bin/sh\necho tool\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("bin/alias")
        link.type, link.linkname = tarfile.SYMTYPE, "tool"
        tar.addfile(link)
        hard = tarfile.TarInfo("etc/motd2")
        hard.type, hard.linkname = tarfile.LNKTYPE, "etc/motd"
        tar.addfile(hard)
    return out.getvalue()


COMPRESSORS = {
    "none": lambda b: b,
    "gzip": lambda b: gzip.compress(b, mtime=0),
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
    "xz": lzma.compress,
    "bzip2": bz2.compress,
}


class Cli:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, input: bytes | None = None, ok: bool = True) -> tuple[int, str, str]:
        p = run_cli(["--root", str(self.root), *args], input=input)
        if ok:
            assert p.returncode == 0, f"{args}: exit {p.returncode}\n{p.stderr}"
        return p.returncode, p.stdout, p.stderr

    def inspect(self, ref: str) -> dict[str, object]:
        _, out, _ = self("inspect", ref)
        result: dict[str, object] = json.loads(out)[0]
        return result

    def names(self) -> set[str]:
        _, out, _ = self("images", "--format", "json")
        return {f"{o['Repository']}:{o['Tag']}" for o in map(json.loads, out.splitlines())}

    def verify(self) -> None:
        code, out, err = self("store", "verify", ok=False)
        assert code == 0, out + err


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "store")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(COMPRESSORS["gzip"](rootfs_tar()))
    return path


def _fail(cli: Cli, *args: str, input: bytes | None = None) -> str:
    code, out, err = cli(*args, input=input, ok=False)
    assert code == 1, f"exit {code}: {out}{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.count("error:") == 1, err
    return err


# --- import ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", list(COMPRESSORS))
def test_import_detects_compression(cli: Cli, tmp_path: Path, compression: str) -> None:
    src = tmp_path / f"rootfs.{compression}"
    src.write_bytes(COMPRESSORS[compression](rootfs_tar()))
    _, out, _ = cli("import", str(src), "rootfs:1")
    info = cli.inspect("rootfs:1")
    assert info["Id"] == out.strip()
    # the layer is the tarball's bytes, whatever the compression was
    assert info["RootFS"] == {"Type": "layers", "Layers": [sha256_digest(rootfs_tar())]}


def test_import_from_stdin_with_changes_and_message(cli: Cli) -> None:
    changes = ['CMD ["/bin/tool", "x"]', "ENV A=1 B=two", "ENV C=$A", "EXPOSE 80 53/udp", "LABEL team=core",
               "USER 1000", "WORKDIR /srv", "WORKDIR app", "VOLUME /data", "STOPSIGNAL SIGINT",
               "ONBUILD RUN echo child", "ENTRYPOINT /bin/tool"]
    args = [a for c in changes for a in ("--change", c)]
    cli("import", "-", "app:2", *args, "--message", "first import", input=COMPRESSORS["zstd"](rootfs_tar()))
    info = cli.inspect("app:2")
    assert info["Comment"] == "first import"
    assert info["Config"] == {
        "Cmd": ["/bin/tool", "x"],
        "Entrypoint": ["/bin/sh", "-c", "/bin/tool"],
        "Env": ["A=1", "B=two", "C=1"],
        "ExposedPorts": {"53/udp": {}, "80/tcp": {}},
        "Labels": {"team": "core"},
        "User": "1000",
        "WorkingDir": "/srv/app",
        "Volumes": {"/data": {}},
        "StopSignal": "SIGINT",
        "OnBuild": ["RUN echo child"],
    }
    _, out, _ = cli("history", "app:2", "--format", "json")
    (row,) = map(json.loads, out.splitlines())
    assert row["Comment"] == "first import" and row["ID"] == str(info["Id"])[7:19]


def test_import_is_reproducible_with_source_date_epoch(tmp_path: Path, rootfs: Path) -> None:
    ids = []
    for n in range(2):
        p = run_cli(["--root", str(tmp_path / f"s{n}"), "import", str(rootfs), "x:1"],
                    env={"SOURCE_DATE_EPOCH": "1700000000"})
        assert p.returncode == 0, p.stderr
        ids.append(p.stdout.strip())
    assert ids[0] == ids[1]


def test_skopeo_and_umoci_read_the_store(cli: Cli, rootfs: Path, tmp_path: Path) -> None:
    need_tool("skopeo")
    need_tool("umoci")
    cli("import", str(rootfs), "busybox:latest")
    info = cli.inspect("busybox")
    p = run(["skopeo", "inspect", f"oci:{cli.root}:busybox:latest"])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Digest"] == info["Descriptor"]["digest"]  # type: ignore[index]
    bundle = tmp_path / "bundle"
    p = run(["umoci", "unpack", "--rootless", "--image", f"{cli.root}:busybox:latest", str(bundle)])
    assert p.returncode == 0, p.stderr
    assert (bundle / "rootfs" / "etc" / "motd").read_bytes() == b"hello from pybuild\n"
    assert (bundle / "rootfs" / "bin" / "alias").is_symlink()


# --- save and load -----------------------------------------------------------------------------------------


def _digests(cli: Cli, ref: str) -> tuple[object, object, object]:
    info = cli.inspect(ref)
    p = run(["skopeo", "inspect", "--raw", f"oci:{cli.root}:{ref}"])
    assert p.returncode == 0, p.stderr
    layers = [x["digest"] for x in json.loads(p.stdout)["layers"]]
    return info["Id"], info["Descriptor"]["digest"], layers  # type: ignore[index]


@pytest.mark.parametrize("fmt", ["docker", "oci"])
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_import_save_load_keeps_every_digest(tmp_path: Path, rootfs: Path, fmt: str, compression: str) -> None:
    need_tool("skopeo")
    a, b = Cli(tmp_path / "a"), Cli(tmp_path / "b")
    a("import", str(rootfs), "app:1", "--compression", compression)
    a("tag", "app:1", "app:latest")
    saved = tmp_path / "saved.tar"
    a("save", "-o", str(saved), "--format", fmt, "app:1", "app:latest")
    _, out, _ = b("load", "-i", str(saved))
    assert out.splitlines() == ["Loaded image: app:1", "Loaded image: app:latest"]
    assert _digests(a, "app:1") == _digests(b, "app:1") == _digests(b, "app:latest")
    b.verify()
    # and back again: the second save is byte-identical
    again = tmp_path / "again.tar"
    b("save", "-o", str(again), "--format", fmt, "app:1", "app:latest")
    assert again.read_bytes() == saved.read_bytes()


def test_load_from_stdin_and_save_to_stdout(tmp_path: Path, rootfs: Path) -> None:
    a, b = Cli(tmp_path / "a"), Cli(tmp_path / "b")
    a("import", str(rootfs), "app:1")
    raw = subprocess.run([sys.executable, "-m", "pybuild", "--root", str(a.root), "save", "app"],
                         capture_output=True, check=True).stdout
    _, out, _ = b("load", input=raw)
    assert out.strip() == "Loaded image: app:1"


def test_saved_archives_are_read_by_skopeo_and_podman(tmp_path: Path, rootfs: Path) -> None:
    need_tool("skopeo")
    need_tool("podman")
    cli = Cli(tmp_path / "store")
    cli("import", str(rootfs), "app:1", "--compression", "zstd")
    info = cli.inspect("app:1")
    docker, oci = tmp_path / "d.tar", tmp_path / "o.tar"
    cli("save", "-o", str(docker), "app:1")
    cli("save", "-o", str(oci), "--format", "oci", "app:1")
    p = run(["skopeo", "inspect", f"docker-archive:{docker}"])
    assert p.returncode == 0, p.stderr
    p = run(["skopeo", "copy", f"oci-archive:{oci}", f"dir:{tmp_path / 'dir'}"])
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "dir" / "manifest.json").read_text())["config"]["digest"] == info["Id"]
    podman = Podman(tmp_path)
    try:
        p = podman("load", "-i", str(docker))
        assert p.returncode == 0, p.stderr
        p = podman("image", "inspect", "app:1", "--format", "{{.Id}}")
        assert p.stdout.strip() == str(info["Id"])[7:]
        # What podman saves (uncompressed layers, legacy v1 directories) loads back into a fresh store.
        # podman cannot write a zstd layer into a docker-archive itself, so this image has gzip layers.
        cli("import", str(rootfs), "gz:1", "--compression", "gzip", "-m", "gzip")
        gz_id = cli.inspect("gz:1")["Id"]
        cli("save", "-o", str(docker), "gz:1")
        assert podman("load", "-i", str(docker)).returncode == 0
        for fmt in ("docker-archive", "oci-archive"):
            out = tmp_path / f"podman-{fmt}.tar"
            p = podman("save", "--format", fmt, "-o", str(out), "gz:1")
            assert p.returncode == 0, p.stderr
            fresh = Cli(tmp_path / f"fresh-{fmt}")
            _, loaded, _ = fresh("load", "-i", str(out))
            assert loaded.strip() == "Loaded image: gz:1"
            assert fresh.inspect("gz:1")["Id"] == gz_id
            fresh.verify()
    finally:
        podman.close()


# --- bad input: one clear error, nothing half-written --------------------------------------------------------


@pytest.fixture
def seeded(cli: Cli, rootfs: Path) -> Iterator[Cli]:
    cli("import", str(rootfs), "keep:1")
    before = cli.names()
    yield cli
    assert cli.names() == before
    cli.verify()


def test_import_truncated_tarball(seeded: Cli, tmp_path: Path) -> None:
    data = rootfs_tar()
    for name, blob in (("plain", data[:700]), ("gzip", gzip.compress(data)[:200]),
                       ("zstd", zstandard.ZstdCompressor().compress(data)[:100])):
        path = tmp_path / f"cut.{name}"
        path.write_bytes(blob)
        assert "truncated" in _fail(seeded, "import", str(path), f"cut:{name}")


def test_import_corrupt_and_non_tar(seeded: Cli, tmp_path: Path) -> None:
    data = bytearray(rootfs_tar())
    data[600:620] = b"\xff" * 20  # inside the second header: its checksum no longer matches
    path = tmp_path / "corrupt.tar"
    path.write_bytes(bytes(data))
    assert "not a valid tar archive" in _fail(seeded, "import", str(path), "bad:1")
    path.write_bytes(b"just some text\n" * 100)
    assert "not a tar archive" in _fail(seeded, "import", str(path), "bad:2")
    path.write_bytes(b"")
    assert "is empty" in _fail(seeded, "import", str(path), "bad:3")
    assert "cannot open" in _fail(seeded, "import", str(tmp_path / "missing.tar"), "bad:4")


def test_import_rejects_bad_change(seeded: Cli, rootfs: Path) -> None:
    assert "RUN is not a valid change command" in _fail(seeded, "import", str(rootfs), "x:1", "-c", "RUN true")


def test_load_rejects_non_image_archive(seeded: Cli, tmp_path: Path) -> None:
    path = tmp_path / "rootfs.tar"
    path.write_bytes(rootfs_tar())
    assert "not an image archive" in _fail(seeded, "load", "-i", str(path))


def test_load_rejects_truncated_archive(seeded: Cli, tmp_path: Path) -> None:
    saved = tmp_path / "s.tar"
    seeded("tag", "keep:1", "saved:1")
    seeded("save", "-o", str(saved), "saved:1")
    seeded("rmi", "saved:1")
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 3])
    err = _fail(seeded, "load", "-i", str(saved))
    assert "truncated" in err or "missing" in err


def test_load_rejects_wrong_digest_in_manifest(seeded: Cli, tmp_path: Path) -> None:
    saved = tmp_path / "s.tar"
    seeded("save", "-o", str(saved), "--format", "oci", "keep:1")
    members = tar_members(saved)
    index = json.loads(members["index.json"])
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads(members[f"blobs/sha256/{manifest_digest[7:]}"])
    layer = manifest["layers"][0]
    # rename the layer blob to a wrong digest and point the manifest there: the content no longer matches
    wrong = "sha256:" + "ab" * 32
    members[f"blobs/sha256/{wrong[7:]}"] = members.pop(f"blobs/sha256/{layer['digest'][7:]}")
    layer["digest"] = wrong
    new_manifest = json.dumps(manifest).encode()
    members.pop(f"blobs/sha256/{manifest_digest[7:]}")
    members[f"blobs/sha256/{sha256_digest(new_manifest)[7:]}"] = new_manifest
    index["manifests"][0]["digest"] = sha256_digest(new_manifest)
    index["manifests"][0]["size"] = len(new_manifest)
    index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "evil:1"}
    members["index.json"] = json.dumps(index).encode()
    write_tar(saved, members)
    assert "does not match the digest in its manifest" in _fail(seeded, "load", "-i", str(saved))


def test_load_rejects_wrong_diff_id(seeded: Cli, tmp_path: Path) -> None:
    plain = layer_tar({"a": b"a"})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    path = tmp_path / "bad.tar"
    write_tar(path, {"l.tar": plain, "c.json": config,
                     "manifest.json": json.dumps([{"Config": "c.json", "RepoTags": ["evil:1"],
                                                   "Layers": ["l.tar"]}]).encode()})
    assert "does not match the diff ID" in _fail(seeded, "load", "-i", str(path))


# --- names: tag, rmi, images, prune ------------------------------------------------------------------------


def test_tag_images_and_filters(cli: Cli, rootfs: Path) -> None:
    _, image_id, _ = cli("import", str(rootfs), "app:1")
    cli("tag", "app:1", "localhost:5000/team/app:2")
    cli("tag", image_id.strip()[7:19], "other")
    _, out, _ = cli("images")
    lines = out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert sorted(line.split()[0] + ":" + line.split()[1] for line in lines[1:]) == [
        "app:1", "localhost:5000/team/app:2", "other:latest"]
    assert all(line.split()[2] == image_id.strip()[7:19] for line in lines[1:])
    _, out, _ = cli("images", "app")
    assert len(out.splitlines()) == 2
    _, out, _ = cli("images", "localhost:5000/*")
    assert "localhost:5000/team/app" in out and "other" not in out
    _, out, _ = cli("images", "-q")
    assert out.split() == [image_id.strip()[7:19]]
    _, out, _ = cli("images", "--format", "json")
    obj = json.loads(out.splitlines()[0])
    assert set(obj) >= {"Repository", "Tag", "ID", "CreatedSince", "CreatedAt", "Size", "Digest"}


def test_rmi_rules(cli: Cli, rootfs: Path) -> None:
    _, out, _ = cli("import", str(rootfs), "app:1")
    image_id = out.strip()
    cli("tag", "app:1", "app:2")
    cli("tag", "app:1", "mirror:1")
    # by ID while two repositories name it: refused without -f
    err = _fail(cli, "rmi", image_id[7:19])
    assert "image is referenced in multiple repositories" in err
    # by name: only that name goes
    _, out, _ = cli("rmi", "mirror:1")
    assert out.splitlines() == ["Untagged: mirror:1"]
    _, out, _ = cli("rmi", "app:2")
    assert out.splitlines() == ["Untagged: app:2"]
    _, out, _ = cli("rmi", "app:1")
    assert out.splitlines() == ["Untagged: app:1", f"Deleted: {image_id}"]
    assert cli.names() == set()
    assert "no such image" in _fail(cli, "rmi", "app:1")
    cli.verify()


def test_rmi_refuses_parent_of_child_image_unless_forced(tmp_path: Path, rootfs: Path) -> None:
    from pybuild.image.importer import import_tarball
    from pybuild.image.manage import remove_image
    from pybuild.layer import Compression
    from pybuild.model.oci import History, ImageConfig, RootFS
    from pybuild.store import Store

    with Store.open(tmp_path / "store") as store:
        base = import_tarball(store, rootfs, "base:1")
        (base_layer,) = store.image_layers(base)
        with store.new_scratch_dir() as scratch:
            (scratch / "upper").mkdir()
            (scratch / "upper" / "extra").write_text("child\n")
            top = store.commit_layer_dir(scratch / "upper", base_layer.chain_id, Compression.GZIP)
        config = ImageConfig(
            created=base.config.created, rootfs=RootFS((base_layer.diff_id, top.diff_id)),
            history=(*base.config.history, History(created_by="RUN make child")),
        )
        store.put_image(config, [base_layer, top], names=["child:1"])
    cli = Cli(tmp_path / "store")
    err = _fail(cli, "rmi", "base:1")
    assert "image has dependent child images" in err
    _, out, _ = cli("rmi", "-f", "base:1")
    assert out.splitlines() == ["Untagged: base:1", f"Deleted: {base.id}"]
    cli.verify()
    _, out, _ = cli("history", "child:1")
    rows = out.splitlines()
    assert len(rows) == 3 and "RUN make child" in rows[1] and rows[2].startswith("<missing>")
    with Store.open(tmp_path / "store") as store:
        # the child's layers (the base's included) survived the removal and the gc that followed
        child = store.resolve("child:1")
        assert store.image_layers(child)[0].chain_id == base_layer.chain_id
        assert remove_image(store, "child:1").deleted == child.id


def test_prune_reclaims_only_unreferenced(cli: Cli, rootfs: Path, tmp_path: Path) -> None:
    cli("import", str(rootfs), "keep:1")
    other = tmp_path / "other.tar"
    other.write_bytes(layer_tar({"only-here": b"x" * 5000}))
    _, out, _ = cli("import", str(other))  # nameless: dangling
    dangling = out.strip()
    _, out, _ = cli("prune", "-f")
    assert "deleted: " in out and "Total reclaimed space:" in out
    assert "0B" not in out.splitlines()[-1]
    _, out, _ = cli("images", "-q", "--no-trunc")
    assert dangling not in out and len(out.split()) == 1
    p = run(["skopeo", "inspect", f"oci:{cli.root}:keep:1"])
    assert p.returncode == 0, p.stderr
    cli.verify()
    _, out, _ = cli("prune", "-f")
    assert out.strip().splitlines()[-1] == "Total reclaimed space: 0B"
    _, out, _ = cli("prune", "-a", "-f")
    assert "untagged: keep:1" in out
    assert cli.names() == set()
    cli.verify()


def test_inspect_and_history_of_missing_image(cli: Cli) -> None:
    assert "no such image" in _fail(cli, "inspect", "nope:1")
    assert "no such image" in _fail(cli, "history", "nope:1")


def test_history_no_trunc_and_json(cli: Cli, rootfs: Path) -> None:
    long_msg = "m" * 60
    cli("import", str(rootfs), "app:1", "-m", long_msg)
    _, out, _ = cli("history", "--no-trunc", "app:1")
    assert long_msg in out and out.splitlines()[1].startswith("sha256:")
    _, out, _ = cli("history", "--format", "json", "app:1")
    assert json.loads(out)["Comment"] == long_msg
