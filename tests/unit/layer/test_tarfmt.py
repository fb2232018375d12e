"""The tar header codec: the fast encoder and decoder agree with the general ones, byte for byte and field for
field, and the fast decoder never accepts a header the general one would read differently or reject."""

from __future__ import annotations

import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from pybuild.layer.tarfmt import (
    BLOCK,
    REGTYPE,
    FileHeaders,
    HeaderError,
    PlainFileHeaders,
    parse_header,
    ustar_header,
)

names = st.binary(min_size=1, max_size=100).filter(lambda b: b"\0" not in b)
fields = st.tuples(
    names,
    st.integers(0, 0o7777),
    st.integers(0, 0o7777777),
    st.integers(0, 0o7777777),
    st.integers(0, 0o77777777777),
    st.integers(0, 0o77777777777),
)


@given(fields)
def test_file_headers_write_what_ustar_header_writes(f: tuple[bytes, int, int, int, int, int]) -> None:
    name, mode, uid, gid, size, mtime = f
    buf = bytearray(2 * BLOCK)
    FileHeaders().put(buf, BLOCK, name, mode, uid, gid, size, mtime)
    assert bytes(buf[BLOCK:]) == ustar_header(name, mode, uid, gid, size, mtime, REGTYPE)


@given(fields)
def test_plain_headers_read_what_was_written(f: tuple[bytes, int, int, int, int, int]) -> None:
    block = ustar_header(*f, REGTYPE)
    assert PlainFileHeaders().parse(block) == f
    h = parse_header(block)
    assert (h.name, h.mode, h.uid, h.gid, h.size, h.mtime) == f


@settings(max_examples=300)
@given(fields, fields, st.lists(st.tuples(st.integers(0, BLOCK - 1), st.integers(0, 255)), max_size=3))
def test_plain_headers_never_disagree_with_the_general_reader(
    f: tuple[bytes, int, int, int, int, int], g: tuple[bytes, int, int, int, int, int],
    changes: list[tuple[int, int]],
) -> None:
    parser = PlainFileHeaders()
    parser.parse(ustar_header(*g, REGTYPE))  # an earlier header leaves its shared fields cached
    block = bytearray(ustar_header(*f, REGTYPE))
    for i, value in changes:
        block[i] = value
    got = parser.parse(bytes(block))
    if got is None:
        return  # not for the fast path: the general reader decides
    try:
        h = parse_header(bytes(block))
    except HeaderError:
        raise AssertionError(f"fast path accepted a header the general reader rejects: {bytes(block)!r}") from None
    assert h.typeflag == REGTYPE
    assert got == (h.name, h.mode, h.uid, h.gid, h.size, h.mtime)


def test_headers_from_pythons_tarfile_take_the_fast_path() -> None:
    info = tarfile.TarInfo("usr/bin/tool")
    info.size, info.mode, info.uid, info.gid, info.mtime = 1234, 0o755, 0, 0, 1_700_000_000
    block = info.tobuf(format=tarfile.USTAR_FORMAT)[:BLOCK]
    assert PlainFileHeaders().parse(block) == (b"usr/bin/tool", 0o755, 0, 0, 1234, 1_700_000_000)
