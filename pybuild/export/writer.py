"""Writing images into a docker-archive or an OCI-archive tar.

Both formats hold the same bytes: an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``)
with every blob copied as stored, so manifest, config and layer digests survive a save/load round trip.
The docker format adds ``manifest.json`` and ``repositories`` pointing into ``blobs/``, the shape
``docker save`` has written since Docker 25; ``docker load``, ``podman load`` and
``skopeo ... docker-archive:`` read it. Layers keep their compression (zstd included): containers/image
(podman, skopeo) and Docker >= 23 decompress zstd layer files in a docker-archive.

The tar is deterministic: sorted unique blobs, zero mtimes and ownership, so saving the same images twice
gives the same bytes.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Sequence
from typing import Any, BinaryIO

from pybuild.export.common import (
    CONTAINERD_NAME,
    MT_OCI_INDEX,
    OCI_LAYOUT_VERSION,
    REF_NAME,
    ArchiveError,
    ArchiveFormat,
    BlobRef,
    BlobSource,
    ExportImage,
    blob_path,
    parse_manifest,
    sha256_digest,
)
from pybuild.hashing import HashingReader
from pybuild.model.reference import parse_reference


def fully_qualified(name: str) -> str:
    """``busybox:latest`` -> ``docker.io/library/busybox:latest``, as containerd names images."""
    return parse_reference(name).full()


def _split_tag(name: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag); a digest reference keeps its digest as the tag part."""
    if "@" in name:
        repo, _, digest = name.partition("@")
        return repo, digest
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"


def _tar_info(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_archive(
    out: BinaryIO, images: Sequence[ExportImage], blobs: BlobSource, fmt: ArchiveFormat = ArchiveFormat.DOCKER
) -> None:
    """Write ``images`` as one archive to ``out`` (any writable stream; the tar is streamed).

    Every blob is re-hashed while copied, so a damaged store blob fails the save instead of producing an
    archive that fails to load later. Raises ArchiveError; ``out`` then holds a partial tar the caller discards.
    """
    if not images:
        raise ArchiveError("no images to save")
    parsed = [(img, parse_manifest(img.manifest, f"manifest of {', '.join(img.names) or 'image'}")) for img in images]

    wanted: dict[str, BlobRef] = {}
    for img, man in parsed:
        for ref in (*man.layers, man.config):
            wanted.setdefault(ref.digest, ref)
        digest = sha256_digest(img.manifest)
        wanted.setdefault(digest, BlobRef(digest, len(img.manifest), man.media_type))

    manifests_by_digest = {sha256_digest(img.manifest): img.manifest for img, _ in parsed}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        layout = json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode()
        _add_bytes(tar, "oci-layout", layout)
        tar.addfile(_tar_info("blobs", 0, directory=True))
        tar.addfile(_tar_info("blobs/sha256", 0, directory=True))
        for digest in sorted(wanted):
            ref = wanted[digest]
            if digest in manifests_by_digest:
                _add_bytes(tar, blob_path(digest), manifests_by_digest[digest])
            else:
                _add_blob(tar, ref, blobs)
        _add_bytes(tar, "index.json", _index_json(parsed))
        if fmt is ArchiveFormat.DOCKER:
            _add_bytes(tar, "manifest.json", _docker_manifest_json(parsed))
            _add_bytes(tar, "repositories", _repositories_json(parsed))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))


def _add_blob(tar: tarfile.TarFile, ref: BlobRef, blobs: BlobSource) -> None:
    try:
        stream = blobs.open_blob(ref.digest)
    except FileNotFoundError:
        raise ArchiveError(f"blob {ref.digest} is missing from the store", hint="run `pybuild store verify`") from None
    with stream:
        reader = HashingReader(stream)
        try:
            tar.addfile(_tar_info(blob_path(ref.digest), ref.size), reader)  # type: ignore[arg-type]
        except OSError as e:  # tarfile reports a short source as "unexpected end of data"
            raise ArchiveError(
                f"blob {ref.digest} in the store is shorter than its recorded size {ref.size}: {e}",
                hint="run `pybuild store verify`",
            ) from None
        extra = stream.read(1)
    if reader.digest != ref.digest or extra:
        raise ArchiveError(
            f"blob {ref.digest} in the store does not match its digest", hint="run `pybuild store verify`"
        )


def _index_json(parsed: Sequence[tuple[ExportImage, Any]]) -> bytes:
    entries: list[dict[str, Any]] = []
    for img, man in parsed:
        desc = BlobRef(sha256_digest(img.manifest), len(img.manifest), man.media_type).to_json()
        if not img.names:
            entries.append(desc)
        for name in img.names:
            entries.append({**desc, "annotations": {REF_NAME: name, CONTAINERD_NAME: fully_qualified(name)}})
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries}
    return json.dumps(index, separators=(",", ":")).encode()


def _docker_manifest_json(parsed: Sequence[tuple[ExportImage, Any]]) -> bytes:
    entries: list[dict[str, Any]] = []
    for img, man in parsed:
        entries.append(
            {
                "Config": blob_path(man.config.digest),
                "RepoTags": list(img.names) or None,
                "Layers": [blob_path(layer.digest) for layer in man.layers],
            }
        )
    return json.dumps(entries, separators=(",", ":")).encode()


def _repositories_json(parsed: Sequence[tuple[ExportImage, Any]]) -> bytes:
    # Legacy file: repository -> tag -> top layer id. Loaders use manifest.json; old tools still look here.
    repos: dict[str, dict[str, str]] = {}
    for img, man in parsed:
        if not man.layers:
            continue
        top = man.layers[-1].digest.partition(":")[2]
        for name in img.names:
            repo, tag = _split_tag(name)
            if not tag.startswith("sha256:"):
                repos.setdefault(repo, {})[tag] = top
    return json.dumps(repos, separators=(",", ":"), sort_keys=True).encode()
