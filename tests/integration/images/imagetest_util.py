"""Helpers for the image-command tests: small real images built in memory, and podman/skopeo/umoci runners."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import zstandard

from pybuild.export.common import ExportImage
from pybuild.model.oci import canonical_json, sha256_digest


def layer_tar(files: Mapping[str, bytes], *, dirs: Sequence[str] = ()) -> bytes:
    """An uncompressed layer tar with the given regular files (and directories), deterministic."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass
class MemImage:
    """An image held in memory: blobs by digest plus its manifest bytes."""

    manifest: bytes
    config: bytes
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)

    def export(self, *names: str) -> ExportImage:
        return ExportImage(tuple(names), self.manifest)


class MemBlobs:
    def __init__(self, *images: MemImage) -> None:
        self.blobs: dict[str, bytes] = {}
        for img in images:
            self.blobs.update(img.blobs)

    def open_blob(self, digest: str) -> BinaryIO:
        if digest not in self.blobs:
            raise FileNotFoundError(digest)
        return io.BytesIO(self.blobs[digest])


def mem_image(layers: Sequence[bytes], *, compression: str = "zstd", cmd: Sequence[str] = ("/bin/sh",)) -> MemImage:
    blobs: dict[str, bytes] = {}
    descs = []
    for plain in layers:
        if compression == "zstd":
            data, mt = zstandard.ZstdCompressor().compress(plain), "application/vnd.oci.image.layer.v1.tar+zstd"
        elif compression == "gzip":
            import gzip

            data, mt = gzip.compress(plain, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
        else:
            data, mt = plain, "application/vnd.oci.image.layer.v1.tar"
        blobs[sha256_digest(data)] = data
        descs.append({"mediaType": mt, "digest": sha256_digest(data), "size": len(data)})
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {"Cmd": list(cmd)},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(p) for p in layers]},
            "history": [{"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"} for i in range(len(layers))],
        }
    )
    blobs[sha256_digest(config)] = config
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": descs,
        }
    )
    return MemImage(manifest, config, blobs)


def run(argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=300, check=False, **kw)  # type: ignore[call-overload, no-any-return]


class Podman:
    """podman with private storage (vfs, so it needs neither overlay nor fuse-overlayfs).

    podman refuses a runroot path longer than 50 characters, so that one lives in a short /tmp directory.
    """

    def __init__(self, tmp: Path) -> None:
        import tempfile

        self.root = tmp / "podman-root"
        self.runroot = Path(tempfile.mkdtemp(prefix="pbr", dir="/tmp"))

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(["podman", "--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "vfs",
                    *args])

    def close(self) -> None:
        self("system", "reset", "--force")
        shutil.rmtree(self.runroot, ignore_errors=True)


def need_tool(name: str) -> None:
    # CI installs every tool (scripts/test.sh); a missing one there is a setup failure, not a skip.
    assert shutil.which(name), f"{name} is not installed (scripts/test.sh installs it)"


def tar_members(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for info in tar:
            f = tar.extractfile(info)
            if f is not None:
                out[info.name] = f.read()
    return out


def write_tar(path: Path, members: Mapping[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def json_bytes(obj: object) -> bytes:
    return json.dumps(obj).encode()
