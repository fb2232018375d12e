"""``import``: a root filesystem tarball becomes a one-layer image, as ``docker import`` makes it.

The tarball may be gzip, zstd, xz, bzip2 or plain. It is read once: the decompressed bytes are hashed
(the diff ID), checked block by block as a tar (so a truncated or corrupt tarball is an error, not a
short layer) and recompressed straight into the store's blob writer. The layer keeps the tarball's
entries byte for byte; only the compression changes.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import sys
import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from pybuild.errors import PybuildError
from pybuild.export.common import ArchiveError
from pybuild.export.compression import open_decompressed
from pybuild.image.changes import apply_changes, parse_changes
from pybuild.model.oci import (
    MT_OCI_LAYER,
    MT_OCI_LAYER_GZIP,
    MT_OCI_LAYER_ZSTD,
    ContainerConfig,
    History,
    ImageConfig,
    RootFS,
)
from pybuild.model.reference import normalize_name
from pybuild.store import Image, Store

COMPRESSIONS = ("gzip", "zstd", "none")
_BLOCK = 512


class TarChecker:
    """Incremental tar structure check: header checksums, member sizes, and a proper end of archive.

    Fed the decompressed stream in arbitrary chunks; :meth:`finish` raises when the stream ended inside a
    member or before the end-of-archive marker.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.pending = bytearray()
        self.skip = 0
        self.offset = 0
        self.ended = False
        self.members = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos = 0
        while pos < len(view) and not self.ended:
            if self.skip:
                n = min(self.skip, len(view) - pos)
                self.skip -= n
                pos += n
                continue
            n = min(_BLOCK - len(self.pending), len(view) - pos)
            self.pending += view[pos : pos + n]
            pos += n
            if len(self.pending) == _BLOCK:
                self._header(bytes(self.pending))
                self.pending.clear()
                self.offset += _BLOCK
        self.offset += len(view) - pos if self.ended else 0

    def _header(self, block: bytes) -> None:
        if block.count(0) == _BLOCK:
            self.ended = True  # trailing zero blocks and record padding follow; nothing else is read
            return
        try:
            stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
        except ValueError:
            stored = -1
        actual = sum(block[:148]) + 8 * 32 + sum(block[156:])
        if stored != actual:
            what = "a tar archive" if self.members == 0 else "a valid tar archive"
            raise ArchiveError(
                f"{self.label} is not {what}: bad tar header checksum at offset {self.offset}",
                hint="import takes a root filesystem tarball (tar, optionally gzip/zstd/xz/bzip2-compressed)",
            )
        size = _tar_number(block[124:136])
        if size < 0:
            raise ArchiveError(f"{self.label}: bad member size in the tar header at offset {self.offset}")
        kind = block[156:157]
        # Links, directories, devices and FIFOs carry no data whatever their size field says.
        if kind in (b"1", b"2", b"3", b"4", b"5", b"6"):
            size = 0
        self.skip = (size + _BLOCK - 1) // _BLOCK * _BLOCK
        self.offset += self.skip
        self.members += 1

    def finish(self) -> None:
        if self.ended:
            return
        if self.members == 0 and self.offset == 0 and not self.pending:
            raise ArchiveError(f"{self.label} is empty", hint="import takes a root filesystem tarball")
        raise ArchiveError(f"{self.label} is truncated: the tar stream ends before its end-of-archive marker")


def _tar_number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 for sizes of 8 GiB and more
        n = int.from_bytes(field[1:], "big")
        return -1 if field[:1] == b"\xff" else n
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        return -1


class _CompressingReader(io.RawIOBase):
    """Reads the plain tar, checking and hashing it, and hands out its compressed form."""

    def __init__(self, plain: BinaryIO, compression: str, checker: TarChecker) -> None:
        super().__init__()
        self.plain = plain
        self.checker = checker
        self.diff = hashlib.sha256()
        self.buf = bytearray()
        self.done = False
        self.compressor: Any
        if compression == "gzip":
            self.compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip header with mtime 0: reproducible
        elif compression == "zstd":
            import zstandard

            self.compressor = zstandard.ZstdCompressor(level=3).compressobj()
        else:
            self.compressor = None

    def readable(self) -> bool:
        return True

    def readinto(self, out: Any) -> int:
        while len(self.buf) < len(out) and not self.done:
            chunk = self.plain.read(1 << 20)
            if chunk:
                self.diff.update(chunk)
                self.checker.feed(chunk)
                self.buf += self.compressor.compress(chunk) if self.compressor else chunk
            else:
                self.checker.finish()
                if self.compressor is not None:
                    self.buf += self.compressor.flush()
                self.done = True
        n = min(len(out), len(self.buf))
        out[:n] = self.buf[:n]
        del self.buf[:n]
        return n

    @property
    def diff_id(self) -> str:
        return "sha256:" + self.diff.hexdigest()


def _host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def _now() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    ts = int(epoch) if epoch and epoch.isdigit() else time.time()
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if not epoch else "%Y-%m-%dT%H:%M:%SZ")


def import_tarball(
    store: Store, source: Path | None, name: str | None = None, *, changes: Sequence[str] = (),
    message: str | None = None, compression: str = "gzip", stdin: BinaryIO | None = None,
) -> Image:
    """Import the tarball at source (``None``: stdin) as a one-layer image, named name when given.

    changes are Dockerfile instructions applied to the image config (CMD ENTRYPOINT ENV EXPOSE LABEL
    ONBUILD USER VOLUME WORKDIR STOPSIGNAL), as ``docker import --change``. SOURCE_DATE_EPOCH, when set,
    fixes the created time so the same tarball gives the same image ID.
    """
    if compression not in COMPRESSIONS:
        raise PybuildError(f"unknown compression {compression!r}", hint=f"one of: {', '.join(COMPRESSIONS)}")
    norm = normalize_name(name) if name else None
    parsed_changes = parse_changes(changes)  # before reading anything: a typo costs no I/O
    label = str(source) if source is not None else "standard input"
    media_type = {"gzip": MT_OCI_LAYER_GZIP, "zstd": MT_OCI_LAYER_ZSTD, "none": MT_OCI_LAYER}[compression]
    if source is not None:
        try:
            raw: BinaryIO = open(source, "rb")  # noqa: SIM115
        except OSError as e:
            raise PybuildError(f"cannot open {source}: {e.strerror}") from None
    else:
        raw = stdin if stdin is not None else sys.stdin.buffer
    with store.lease(), raw:
        plain, _kind = open_decompressed(raw, label)
        reader = _CompressingReader(plain, compression, TarChecker(label))
        blob = store.put_blob(reader, media_type=media_type)  # type: ignore[arg-type]
        layer = store.add_layer_blob(blob, None, reader.diff_id)
        created = _now()
        comment = message if message else f"Imported from {source if source is not None else '-'}"
        config = ImageConfig(
            architecture=_host_arch(), os="linux", created=created,
            config=apply_changes(ContainerConfig(), parsed_changes),
            rootfs=RootFS(diff_ids=(reader.diff_id,)),
            history=(History(created=created, comment=comment),),
            extra={"comment": comment},
        )
        return store.put_image(config, [layer], names=[norm] if norm else [])
