"""Whole-stream decompression for archives and tarballs handed to load and import.

The detection and the decompressing readers are the layer module's (`pybuild.layer.compression`); this adapter
only names the stream in errors and reports them as ArchiveError, as load and import do for every bad input.
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO, cast

from pybuild.export.common import ArchiveError
from pybuild.layer.base import LayerError
from pybuild.layer.compression import READ_SIZE, detect_compression, open_raw_decompressed

__all__ = ["detect_compression", "open_decompressed"]


class _Named(io.RawIOBase):
    """Turns the layer module's "truncated or corrupt" errors into ArchiveError naming the stream."""

    def __init__(self, inner: io.RawIOBase, what: str) -> None:
        super().__init__()
        self.inner = inner
        self.what = what

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            return self.inner.readinto(b) or 0
        except LayerError as e:
            raise ArchiveError(f"{self.what} is corrupt or truncated: {_detail(e)}") from None


def open_decompressed(stream: BinaryIO, what: str) -> tuple[BinaryIO, str]:
    """A reader of ``stream``'s decompressed bytes, and the compression found ("gzip", "zstd", "xz", "bzip2",
    "none")."""
    try:
        kind, raw = open_raw_decompressed(stream)
    except LayerError as e:
        raise ArchiveError(f"{what} is corrupt or truncated: {_detail(e)}") from None
    return cast(BinaryIO, io.BufferedReader(_Named(raw, what), READ_SIZE)), kind


def _detail(e: LayerError) -> str:
    return e.message.removeprefix("layer is truncated or corrupt: ")
