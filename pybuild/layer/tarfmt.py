"""The tar format itself: encoding ustar headers with PAX extensions, and decoding ustar/PAX/GNU headers.

Written by hand rather than through `tarfile` because a layer commit is dominated by per-file overhead and
tarfile's TarInfo machinery costs several times more per entry; this module is all of the format we need.
Checksums are computed with two adler32 calls: adler32's low half is 1 + the byte sum mod 65521, and a 256-byte
half-block sums to at most 65280, so each half gives its exact byte sum from C code.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
END_OF_ARCHIVE = bytes(2 * BLOCK)

REGTYPE = b"0"
AREGTYPE = b"\0"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
CONTTYPE = b"7"
XHDTYPE = b"x"  # PAX extended header for the next entry
XGLTYPE = b"g"  # PAX global header
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"

MAX_OCTAL_7 = 0o7777777
MAX_OCTAL_11 = 0o77777777777

_USTAR_TAIL = b"ustar\x0000" + bytes(64)  # magic, version, empty uname and gname
_PAD_END = bytes(167)  # prefix (unused: long names go to PAX) + the 12 bytes after it


def padding(size: int) -> int:
    """Bytes of zero padding after `size` bytes of entry data."""
    return -size % BLOCK


def _checksum(block: bytes | bytearray | memoryview) -> int:
    mv = memoryview(block)
    return (zlib.adler32(mv[:256]) & 0xFFFF) + (zlib.adler32(mv[256:]) & 0xFFFF) - 2


_HEAD = struct.Struct("100s48s8sc100s")  # name, the five numeric fields, checksum, typeflag, linkname
_TAIL = _USTAR_TAIL + b"0000000\x000000000\x00" + _PAD_END  # ... plus devmajor/devminor 0
_TAIL_SUM = sum(_TAIL)


def ustar_header(
    name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes,
    linkname: bytes = b"", devmajor: int = 0, devminor: int = 0,
) -> bytes:
    """One 512-byte ustar header; every field must already fit (encode_entry checks and uses PAX otherwise)."""
    numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    if devmajor or devminor:
        tail = _USTAR_TAIL + b"%07o\0%07o\0" % (devmajor, devminor) + _PAD_END
        tail_sum = sum(tail)
    else:
        tail, tail_sum = _TAIL, _TAIL_SUM
    # each piece is short enough for adler32's low half to be 1 + its exact byte sum; 0x100 = the blank checksum
    checksum = (
        (zlib.adler32(name) & 0xFFFF) + (zlib.adler32(numbers) & 0xFFFF) + (zlib.adler32(linkname) & 0xFFFF) - 3
        + typeflag[0] + 0x100 + tail_sum
    )
    return _HEAD.pack(name, numbers, b"%06o\0 " % checksum, typeflag, linkname) + tail


_FILE_HEAD = struct.Struct("100s24s12s12s8s")  # name, mode/uid/gid, size, mtime, checksum: the bytes that vary
_FILE_REST = REGTYPE + bytes(100) + _TAIL  # typeflag, empty linkname, the ustar tail


class FileHeaders:
    """ustar_header(name, mode, uid, gid, size, mtime, REGTYPE), written straight into a buffer, for the many
    plain files of a layer: the fields files share (mode, ids, mtime) are encoded and summed once per distinct
    combination. Same preconditions as ustar_header; the bytes are identical."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, int, int], tuple[bytes, bytes, int]] = {}
        self._last_key: tuple[int, int, int, int] | None = None
        self._last = (b"", b"", 0)

    def _shared(self, mode: int, uid: int, gid: int, mtime: int) -> tuple[bytes, bytes, int]:
        ids = b"%07o\0%07o\0%07o\0" % (mode, uid, gid)
        mt = b"%011o\0" % mtime
        # everything but the name and the size field; 8 * 0x20 = the checksum field while it is summed
        entry = (ids, mt, sum(ids) + sum(mt) + 8 * 0x20 + sum(_FILE_REST))
        if len(self._cache) < 4096:
            self._cache[(mode, uid, gid, mtime)] = entry
        return entry

    def put(self, buf: bytearray, pos: int, name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int) -> None:
        key = (mode, uid, gid, mtime)
        if key != self._last_key:  # files of a layer mostly come in runs that share all four
            self._last_key = key
            self._last = self._cache.get(key) or self._shared(mode, uid, gid, mtime)
        ids, mt, base = self._last
        size_field = b"%011o\0" % size
        # name (<= 100 bytes) and size field are short enough for adler32's low half to be 1 + their byte sum
        checksum = base + (zlib.adler32(name) & 0xFFFF) + (zlib.adler32(size_field) & 0xFFFF) - 2
        _FILE_HEAD.pack_into(buf, pos, name, ids, size_field, mt, b"%06o\0 " % checksum)
        buf[pos + 156 : pos + BLOCK] = _FILE_REST


def pax_records(records: list[tuple[bytes, bytes]]) -> bytes:
    """Encode PAX records ("<len> <key>=<value>\\n", the length counting itself)."""
    out = []
    for key, value in records:
        body = b" " + key + b"=" + value + b"\n"
        n = len(body)
        length = n + len(str(n))
        if len(str(length)) != len(str(n)):
            length = n + len(str(length))
        out.append(b"%d" % length + body)
    return b"".join(out)


def encode_entry(
    name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes,
    linkname: bytes = b"", devmajor: int = 0, devminor: int = 0, xattrs: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """The header block(s) of one entry: a PAX header first when something does not fit ustar, then ustar."""
    pax: list[tuple[bytes, bytes]] = []
    if len(name) > 100:
        pax.append((b"path", name))
        name = name[:100]
    if len(linkname) > 100:
        pax.append((b"linkpath", linkname))
        linkname = linkname[:100]
    if size > MAX_OCTAL_11:
        pax.append((b"size", b"%d" % size))
        size = 0
    if not 0 <= mtime <= MAX_OCTAL_11:
        pax.append((b"mtime", b"%d" % mtime))
        mtime = 0
    if uid > MAX_OCTAL_7:
        pax.append((b"uid", b"%d" % uid))
        uid = 0
    if gid > MAX_OCTAL_7:
        pax.append((b"gid", b"%d" % gid))
        gid = 0
    if xattrs:
        pax.extend((b"SCHILY.xattr." + k, v) for k, v in xattrs)
    header = ustar_header(name, mode, uid, gid, size, mtime, typeflag, linkname, devmajor, devminor)
    if not pax:
        return header
    pax.sort()
    data = pax_records(pax)
    # Go's naming for the PAX header's own entry: deterministic, and harmless if a reader ignores PAX
    slash = name.rfind(b"/", 0, len(name) - 1)
    pax_name = (name[: slash + 1] + b"PaxHeaders.0/" + name[slash + 1 :].rstrip(b"/"))[:100]
    return (
        ustar_header(pax_name, 0o644, 0, 0, len(data), mtime, XHDTYPE)
        + data
        + bytes(padding(len(data)))
        + header
    )


# ---------------------------------------------------------------------------------------------------------------
# Decoding

class HeaderError(ValueError):
    """A header block that is not a tar header (the caller reports the layer as corrupt)."""


@dataclass(slots=True)
class RawHeader:
    """One decoded ustar/GNU header, before PAX or GNU long-name overrides are applied."""

    name: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    typeflag: bytes
    linkname: bytes
    devmajor: int
    devminor: int
    xattrs: dict[bytes, bytes] = field(default_factory=dict)


def _number(field_: bytes) -> int:
    if field_ and field_[0] & 0x80:  # GNU base-256: big-endian two's complement, top bit of the first byte set
        value = int.from_bytes(field_, "big", signed=False) & ~(0x80 << (8 * (len(field_) - 1)))
        if field_[0] & 0x40:
            value -= 1 << (8 * len(field_) - 1)
        return value
    text = field_.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise HeaderError(f"bad number field {field_!r}") from None


def is_zero_block(block: bytes | memoryview) -> bool:
    return block == ZERO_BLOCK


def _checksum_ok(block: bytes, stored: int) -> bool:
    unsigned = _checksum(block) - sum(block[148:156]) + 8 * 0x20
    if stored == unsigned:
        return True
    signed = unsigned - 256 * sum(1 for c in block[:148] + block[156:] if c >= 0x80)
    return stored == signed


def parse_header(block: bytes) -> RawHeader:
    """Decode one 512-byte header, checking its checksum (unsigned, or the signed sum some old tars wrote)."""
    # fast path: the five numeric fields mode..mtime as NUL/space-terminated octal, as nearly every writer does
    numbers = block[100:148].replace(b"\0", b" ").split()
    try:
        if len(numbers) != 5:
            raise ValueError
        mode, uid, gid, size, mtime = [int(x, 8) for x in numbers]
    except ValueError:
        mode, uid, gid = _number(block[100:108]), _number(block[108:116]), _number(block[116:124])
        size, mtime = _number(block[124:136]), _number(block[136:148])
    if not _checksum_ok(block, _number(block[148:156])):
        raise HeaderError("header checksum mismatch")
    name = block[:100]
    end = name.find(b"\0")
    if end >= 0:
        name = name[:end]
    if block[257:263] == b"ustar\0" and block[345]:
        name = block[345:500].split(b"\0", 1)[0] + b"/" + name
    typeflag = block[156:157]
    linkname = block[157:257]
    end = linkname.find(b"\0")
    if end >= 0:
        linkname = linkname[:end]
    devmajor = devminor = 0
    if typeflag in (b"3", b"4"):
        devmajor, devminor = _number(block[329:337]), _number(block[337:345])
    return RawHeader(name, mode, uid, gid, size, mtime, typeflag, linkname, devmajor, devminor, {})


class PlainFileHeaders:
    """A fast reading of the most common header: a regular file (typeflag '0') in POSIX ustar form with no name
    prefix, octal numbers and a "%06o\\0 " checksum, as we and Go's archive/tar write it. The fields files share
    are decoded once per distinct value: mode and ids, mtime, and everything from the typeflag on (the "tail":
    typeflag, link name, magic, user/group names, device numbers, prefix), which is checked and summed once.
    Anything else, including a bad checksum, gives None: parse_header then decides (and reports)."""

    def __init__(self) -> None:
        self._ids: dict[bytes, tuple[int, int, int]] = {}
        self._mtimes: dict[bytes, int] = {}
        self._tail = b""
        # the checksum minus the first 148 bytes' sum: the tail's sum plus the checksum field counted as spaces;
        # adler32's low half is 1 + the byte sum (exact for 148 bytes), hence the - 1
        self._tail_add = 0

    def _new_tail(self, block: bytes) -> bool:
        if block[156] != 0x30 or block[345] or block[257:263] != b"ustar\0":
            return False
        self._tail = block[156:]
        self._tail_add = sum(self._tail) + 8 * 0x20 - 1
        return True

    def parse(self, block: bytes) -> tuple[bytes, int, int, int, int, int] | None:
        """(name, mode, uid, gid, size, mtime), or None."""
        if block[156:] != self._tail and not self._new_tail(block):
            return None
        if block[135] not in (0, 0x20) or (
            block[148:156] != b"%06o\0 " % ((zlib.adler32(block[:148]) & 0xFFFF) + self._tail_add)
        ):
            return None
        try:
            size = int(block[124:135], 8)
            ids_field = block[100:124]
            ids = self._ids.get(ids_field)
            if ids is None:
                ids = (_number(block[100:108]), _number(block[108:116]), _number(block[116:124]))
                if len(self._ids) < 1024:
                    self._ids[ids_field] = ids
            mtime_field = block[136:148]
            mtime = self._mtimes.get(mtime_field)
            if mtime is None:
                mtime = _number(mtime_field)
                if len(self._mtimes) < 1024:
                    self._mtimes[mtime_field] = mtime
        except (ValueError, HeaderError):
            return None
        if size < 0:
            return None
        end = block.find(0, 0, 100)
        return block[: end if end >= 0 else 100], ids[0], ids[1], ids[2], size, mtime


def parse_pax(data: bytes) -> dict[bytes, bytes]:
    """Decode PAX records into key → raw value (values may be binary, e.g. xattrs)."""
    records: dict[bytes, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] == 0:  # some writers pad the record block with NULs
            break
        space = data.find(b" ", pos, min(end, pos + 24))
        if space < 0:
            raise HeaderError("bad PAX record length")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise HeaderError("bad PAX record length") from None
        if length <= space - pos + 1 or pos + length > end or data[pos + length - 1] != 0x0A:
            raise HeaderError("bad PAX record")
        key, eq, value = data[space + 1 : pos + length - 1].partition(b"=")
        if not eq:
            raise HeaderError("PAX record without '='")
        records[key] = value
        pos += length
    return records
