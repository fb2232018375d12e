"""The layer package's vocabulary: compression kinds, media types, what writing and applying report, its error."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pybuild.errors import PybuildError

MEDIA_TYPE_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


class LayerError(PybuildError):
    """A layer could not be written or applied: bad source tree, corrupt/truncated/hostile tarball."""


class Compression(StrEnum):
    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"

    @property
    def media_type(self) -> str:
        return {
            Compression.ZSTD: MEDIA_TYPE_TAR_ZSTD,
            Compression.GZIP: MEDIA_TYPE_TAR_GZIP,
            Compression.NONE: MEDIA_TYPE_TAR,
        }[self]


@dataclass(frozen=True)
class LayerInfo:
    """What write_layer produced: the blob's identity (compressed) and the diff ID (uncompressed tar)."""

    digest: str  # "sha256:<hex>" of the bytes written to `out`
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    size: int  # bytes written to `out`
    media_type: str
    file_bytes: int = 0  # regular files' content in the tree (hard links once): what the tree takes unpacked


@dataclass(frozen=True)
class ApplyStats:
    """What apply_layer did, by kind of entry (hard links and whiteouts are not counted as files)."""

    compression: str  # as detected: "zstd" | "gzip" | "xz" | "bzip2" | "none"
    entries: int = 0  # tar entries seen, PAX/GNU meta headers excluded
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    specials: int = 0  # fifos and devices
    whiteouts: int = 0
    opaque_dirs: int = 0
    file_bytes: int = 0  # regular files' content
    xattr_errors: int = 0  # xattrs the destination filesystem refused (ENOTSUP/EPERM), skipped like Docker does
