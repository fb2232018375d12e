"""A reader that hashes what passes through it: how the store and the archive code check digests while they
stream a blob, without a second pass."""

from __future__ import annotations

import hashlib
import io
from typing import IO, Any

CHUNK = 1 << 20


class HashingReader(io.RawIOBase):
    """Reads through to ``inner`` while hashing (sha256) and counting every byte read."""

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self.inner = inner
        self.hasher = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self.inner.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.hasher.update(data)
        self.count += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        data = self.inner.read(-1 if size is None else size)
        self.hasher.update(data)
        self.count += len(data)
        return data

    def drain(self) -> int:
        """Read to the end (bytes after what the consumer needed still count for the digest); returns how many
        bytes that was."""
        return drain(self)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


def drain(stream: Any, chunk: int = CHUNK) -> int:
    """Read a stream to its end, returning the number of bytes read."""
    total = 0
    while True:
        data = stream.read(chunk)
        if not data:
            return total
        total += len(data)
