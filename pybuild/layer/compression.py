"""Recognising and undoing a layer's (or any archive's) compression, with truncation and corruption turned into
LayerError.

zstandard, lzma and bz2 are imported only when a stream needs them.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from typing import IO, Any, BinaryIO, cast

from pybuild.layer.base import LayerError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"
HEAD_SIZE = 6  # enough bytes for every magic above
READ_SIZE = 1 << 20


def detect_compression(head: bytes) -> str:
    """Name the compression of a stream from its first bytes: "zstd" | "gzip" | "xz" | "bzip2" | "none"."""
    if head.startswith(ZSTD_MAGIC) or _is_skippable_magic(head):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    return "none"


def _is_skippable_magic(b: bytes) -> bool:
    # zstd skippable frames (0x184D2A50..5F, little endian) may precede the first real frame
    return len(b) >= 4 and b[0] & 0xF0 == 0x50 and b[1:4] == b"\x2a\x4d\x18"


def corrupt(detail: str) -> LayerError:
    return LayerError(f"layer is truncated or corrupt: {detail}")


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """A buffered reader of `stream`'s decompressed bytes, whatever its compression (detected from its head).

    Reads raise LayerError("layer is truncated or corrupt: ...") on a corrupt or truncated stream; the caller keeps
    ownership of `stream` (closing the reader does not close it).
    """
    _, raw = open_raw_decompressed(stream)
    return cast(BinaryIO, io.BufferedReader(raw, buffer_size=READ_SIZE))


def open_raw_decompressed(stream: BinaryIO) -> tuple[str, io.RawIOBase]:
    """Like open_decompressed, unbuffered, also naming the compression found."""
    head = b""
    while len(head) < HEAD_SIZE:
        more = stream.read(HEAD_SIZE - len(head))
        if not more:
            break
        head += more
    kind = detect_compression(head)
    source = _Prefixed(head, stream)
    inner: Any
    if kind == "none":
        inner = cast(IO[bytes], source)
    elif kind == "gzip":
        import gzip

        inner = gzip.GzipFile(fileobj=source, mode="rb")
    elif kind == "xz":
        import lzma

        inner = lzma.LZMAFile(cast(IO[bytes], source))  # noqa: SIM115
    elif kind == "bzip2":
        import bz2

        inner = bz2.BZ2File(source)
    else:
        import zstandard

        tracker = _ZstdFrameTracker(source)
        inner = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], tracker), read_size=READ_SIZE, read_across_frames=True, closefd=False
        )
        return kind, _Decompressed(inner, kind, at_eof=tracker.check_complete)
    return kind, _Decompressed(inner, kind)


class _Prefixed(io.RawIOBase):
    """Gives back the bytes already read for detection, then the rest of the stream."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        if self._head:
            n = min(len(mv), len(self._head))
            mv[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(mv))
        n = len(data)
        mv[:n] = data
        return n

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._stream.read(size)


class _Decompressed(io.RawIOBase):
    """Reads from a decompressor, translating its exceptions (and a truncated end) into LayerError."""

    def __init__(self, inner: IO[bytes], kind: str, at_eof: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._kind = kind
        self._at_eof = at_eof
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._done:
            return b""
        try:
            data = self._inner.read(size if size >= 0 else -1)
        except LayerError:
            raise
        except EOFError as e:  # gzip, xz, bz2: "ended before the end-of-stream marker was reached"
            raise corrupt(f"{self._kind} stream ended early ({e})") from None
        except (OSError, zlib.error, ValueError) as e:
            raise corrupt(f"bad {self._kind} data ({e})") from None
        except Exception as e:
            # zstandard.ZstdError, lzma.LZMAError and the like; named lazily so their modules stay unimported
            raise corrupt(f"bad {self._kind} data ({e})") from None
        if not data and size != 0:
            self._done = True
            if self._at_eof is not None:
                self._at_eof()
        return data

    def readinto(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        data = self.read(len(mv))
        n = len(data)
        mv[:n] = data
        return n


class _ZstdFrameTracker(io.RawIOBase):
    """Passes the compressed stream through while following zstd's frame/block structure, so that a stream cut
    short is reported (python-zstandard's stream_reader quietly returns what it has)."""

    # states
    _MAGIC, _SKIP_SIZE, _FHD, _BLOCK = range(4)

    def __init__(self, source: io.RawIOBase) -> None:
        self._source = source
        self._state = self._MAGIC
        self._want = 4  # bytes to collect into _pending for the current state
        self._pending = b""
        self._skip = 0  # bytes to pass over before collecting again
        self._checksum = False
        self._frames = 0
        self._lost = False  # structure not understood: leave the verdict to the decompressor

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size if size >= 0 else READ_SIZE)
        if data and not self._lost:
            self._follow(data)
        return data or b""

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        n = len(data)
        memoryview(b).cast("B")[:n] = data
        return n

    def _follow(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            take = min(self._want - len(self._pending), n - i)
            self._pending += data[i : i + take]
            i += take
            if len(self._pending) == self._want:
                got, self._pending = self._pending, b""
                self._advance(got)
                if self._lost:
                    return

    def _advance(self, got: bytes) -> None:
        if self._state == self._MAGIC:
            if got == ZSTD_MAGIC:
                self._state, self._want = self._FHD, 1
            elif _is_skippable_magic(got):
                self._state, self._want = self._SKIP_SIZE, 4
            else:
                self._lost = True
        elif self._state == self._SKIP_SIZE:
            self._skip = int.from_bytes(got, "little")
            self._state, self._want = self._MAGIC, 4
        elif self._state == self._FHD:
            fhd = got[0]
            single_segment = (fhd >> 5) & 1
            self._checksum = bool((fhd >> 2) & 1)
            fcs = (1 if single_segment else 0, 2, 4, 8)[fhd >> 6]
            self._skip = (0 if single_segment else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
            self._state, self._want = self._BLOCK, 3
        else:
            header = int.from_bytes(got, "little")
            last, block_type, block_size = header & 1, (header >> 1) & 3, header >> 3
            if block_type == 3:
                self._lost = True
                return
            self._skip = 1 if block_type == 1 else block_size
            if last:
                self._skip += 4 if self._checksum else 0
                self._frames += 1
                self._state, self._want = self._MAGIC, 4

    def check_complete(self) -> None:
        """Raise if the stream ended inside a frame (called when the decompressor reports the end)."""
        if self._lost:
            return
        if self._frames == 0 or self._state != self._MAGIC or self._pending or self._skip:
            raise corrupt("zstd stream ended in the middle of a frame")
