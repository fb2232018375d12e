"""OCI layers: a directory tree ⇄ a (compressed) layer tarball, with overlayfs whiteouts on both sides.

The store calls write_layer to commit a snapshot's upper dir and apply_layer to unpack a layer into a fresh dir
that later serves as an overlay lower; open_decompressed also serves `import` and ADD of local archives.
"""

from pybuild.layer.applier import apply_layer
from pybuild.layer.base import (
    MEDIA_TYPE_TAR,
    MEDIA_TYPE_TAR_GZIP,
    MEDIA_TYPE_TAR_ZSTD,
    ApplyStats,
    Compression,
    LayerError,
    LayerInfo,
)
from pybuild.layer.compression import detect_compression, open_decompressed
from pybuild.layer.writer import write_layer

__all__ = [
    "MEDIA_TYPE_TAR",
    "MEDIA_TYPE_TAR_GZIP",
    "MEDIA_TYPE_TAR_ZSTD",
    "ApplyStats",
    "Compression",
    "LayerError",
    "LayerInfo",
    "apply_layer",
    "detect_compression",
    "open_decompressed",
    "write_layer",
]
