"""Whole-stream compression sniffing for archives and tarballs handed to load and import.

Detects gzip, zstd, xz and bzip2 from magic bytes and returns a decompressing reader; decompression
errors (truncation, corruption) surface as ArchiveError with the given description.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from typing import Any, BinaryIO

from pybuild.export.common import ArchiveError

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)


def detect_compression(head: bytes) -> str:
    """``"gzip" | "zstd" | "xz" | "bzip2" | "none"`` from a stream's first bytes (6 are enough)."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "none"


class _Peeked(io.RawIOBase):
    """Replays bytes already read from a non-seekable stream before reading on."""

    def __init__(self, head: bytes, inner: BinaryIO) -> None:
        super().__init__()
        self.head = head
        self.inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.head:
            n = min(len(buf), len(self.head))
            buf[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.inner.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class _Guarded(io.RawIOBase):
    """Turns a decompressor's assorted exceptions into one ArchiveError naming what was read."""

    def __init__(self, inner: Any, what: str, kind: str) -> None:
        super().__init__()
        self.inner = inner
        self.what = what
        self.kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        try:
            data = self.inner.read(len(buf))
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
            raise ArchiveError(f"{self.what} is corrupt or truncated ({self.kind}): {e}") from None
        except Exception as e:  # zstandard.ZstdError does not derive from a stdlib class
            if type(e).__name__ == "ZstdError":
                raise ArchiveError(f"{self.what} is corrupt or truncated (zstd): {e}") from None
            raise
        buf[: len(data)] = data
        return len(data)


class _ZstdReader:
    """Frame-by-frame zstd decompression that notices truncation (zstandard's stream_reader returns a short
    read instead), and reads on across concatenated frames (pzstd and multi-threaded writers emit several)."""

    def __init__(self, source: BinaryIO) -> None:
        import zstandard

        self._zstd = zstandard
        self.source = source
        self.obj: Any = zstandard.ZstdDecompressor().decompressobj()
        self.in_frame = False
        self.pending = b""

    def read(self, size: int) -> bytes:
        while not self.pending:
            chunk = self.source.read(1 << 16)
            if not chunk:
                if self.in_frame:
                    raise EOFError("compressed data ends in the middle of a zstd frame")
                return b""
            self.pending = self._feed(chunk)
        out, self.pending = self.pending[:size], self.pending[size:]
        return out

    def _feed(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            self.in_frame = True
            out.append(self.obj.decompress(chunk))
            if not self.obj.eof:
                break
            chunk = self.obj.unused_data
            self.in_frame = False
            self.obj = self._zstd.ZstdDecompressor().decompressobj()
        return b"".join(out)


def open_decompressed(stream: BinaryIO, what: str) -> tuple[BinaryIO, str]:
    """A reader of ``stream``'s decompressed bytes, and the compression found."""
    head = stream.read(6)
    kind = detect_compression(head)
    source = io.BufferedReader(_Peeked(head, stream), 1 << 16)
    inner: Any
    if kind == "none":
        return source, kind  # type: ignore[return-value]
    if kind == "gzip":
        inner = gzip.GzipFile(fileobj=source, mode="rb")
    elif kind == "xz":
        inner = lzma.LZMAFile(source)  # noqa: SIM115
    elif kind == "bzip2":
        inner = bz2.BZ2File(source)
    else:
        inner = _ZstdReader(source)
    return io.BufferedReader(_Guarded(inner, what, kind), 1 << 20), kind  # type: ignore[return-value]
