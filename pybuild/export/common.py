"""Types shared by the archive writer and reader: formats, blob sources, and a hashing stream.

The archive code works on raw manifest/config bytes and blob streams only; it never touches the store, so
it can be tested with a dict of blobs and used by anything that can open a blob by digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, BinaryIO, Protocol

from pybuild.errors import PybuildError
from pybuild.model.oci import (
    ANNOTATION_REF_NAME,
    INDEX_TYPES,
    LAYER_TYPES,
    MANIFEST_TYPES,
    MT_OCI_INDEX,
    MT_OCI_LAYER,
    MT_OCI_LAYER_GZIP,
    MT_OCI_LAYER_ZSTD,
    MT_OCI_MANIFEST,
    sha256_digest,
)

__all__ = ["INDEX_TYPES", "LAYER_TYPES", "MANIFEST_TYPES", "MT_OCI_INDEX", "MT_OCI_LAYER", "sha256_digest"]

OCI_LAYOUT_VERSION = "1.0.0"

# Annotations naming an image in an OCI index: the OCI one (skopeo, umoci) and containerd's (docker, nerdctl).
REF_NAME = ANNOTATION_REF_NAME
CONTAINERD_NAME = "io.containerd.image.name"

# Layer media type for a layer blob stored with the given compression (as detect_compression names it).
MEDIA_TYPE_FOR_COMPRESSION = {"none": MT_OCI_LAYER, "gzip": MT_OCI_LAYER_GZIP, "zstd": MT_OCI_LAYER_ZSTD}


class ArchiveFormat(StrEnum):
    DOCKER = "docker"  # docker-archive: manifest.json + repositories (+ an OCI layout, as docker >= 25 writes)
    OCI = "oci"  # oci-archive: an OCI image layout in a tar


class BlobSource(Protocol):
    """Anything that can open a blob by digest (the store does)."""

    def open_blob(self, digest: str) -> BinaryIO: ...


@dataclass(frozen=True)
class BlobRef:
    """A content descriptor reduced to what the archive formats need."""

    digest: str
    size: int
    media_type: str

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class ExportImage:
    """One image to put in an archive: its names (``busybox:latest``), and its manifest's original bytes."""

    names: tuple[str, ...]
    manifest: bytes


class ArchiveError(PybuildError):
    """A malformed, truncated or inconsistent archive or tarball."""


def digest_hex(digest: str) -> str:
    """The hex part of a ``sha256:<hex>`` digest, refusing anything else (it becomes a path in archives)."""
    alg, _, hexpart = digest.partition(":")
    if alg != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ArchiveError(f"unsupported or malformed digest {digest!r}", hint="only sha256 digests are supported")
    return hexpart


def blob_path(digest: str) -> str:
    return f"blobs/sha256/{digest_hex(digest)}"


def load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{what} is not valid JSON: {e}") from None


def parse_descriptor(obj: Any, what: str) -> BlobRef:
    if not isinstance(obj, dict):
        raise ArchiveError(f"{what}: descriptor is not a JSON object")
    digest, size, media_type = obj.get("digest"), obj.get("size"), obj.get("mediaType", "")
    if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArchiveError(f"{what}: descriptor needs a digest and a non-negative size")
    if not isinstance(media_type, str):
        raise ArchiveError(f"{what}: descriptor mediaType is not a string")
    digest_hex(digest)
    return BlobRef(digest, size, media_type)


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    config: BlobRef
    layers: tuple[BlobRef, ...]


def parse_manifest(data: bytes, what: str = "manifest") -> ParsedManifest:
    """The config and layer descriptors of an image manifest (OCI or Docker schema 2)."""
    obj = load_json(data, what)
    if not isinstance(obj, dict):
        raise ArchiveError(f"{what} is not a JSON object")
    media_type = obj.get("mediaType") or MT_OCI_MANIFEST
    if media_type in INDEX_TYPES or "manifests" in obj:
        raise ArchiveError(f"{what} is an image index, not a single-platform image manifest")
    if media_type not in MANIFEST_TYPES or obj.get("schemaVersion") != 2:
        raise ArchiveError(f"{what} has unsupported media type {media_type!r} (schemaVersion 2 is needed)")
    config = parse_descriptor(obj.get("config"), f"{what} config")
    layers_obj = obj.get("layers")
    if not isinstance(layers_obj, list):
        raise ArchiveError(f"{what} has no layers list")
    layers = tuple(parse_descriptor(item, f"{what} layer {i}") for i, item in enumerate(layers_obj))
    return ParsedManifest(media_type, config, layers)


def config_diff_ids(data: bytes, what: str = "image config") -> tuple[str, ...]:
    obj = load_json(data, what)
    rootfs = obj.get("rootfs") if isinstance(obj, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(d, str) for d in ids):
        raise ArchiveError(f"{what} has no rootfs.diff_ids list")
    for d in ids:
        digest_hex(d)
    return tuple(ids)
