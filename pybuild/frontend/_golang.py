"""Small re-implementations of Go library behaviour that BuildKit's raw parser relies on.

Owns: Go's whitespace classes (``unicode.IsSpace`` and the byte-wise and ASCII variants the parser uses),
``strings.TrimSpace``/``ToLower``, ``strconv.Quote`` (for the conformance dump) and ``encoding/json``'s
decision on whether text is a JSON array of strings. Nothing here knows about Dockerfiles.
"""

from __future__ import annotations

import json
from typing import Any

# unicode.IsSpace: Python's str.isspace() also accepts the separators \x1c-\x1f, Go does not.
US = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
# unicode.IsSpace applied to single bytes (how BuildKit scans --flag words and the HEALTHCHECK type).
SP = "\t\n\x0b\x0c\r \x85\xa0"
# The regexp [\t\v\f\r ]+ that splits the keyword and the words of FROM/COPY/...
BL = "\t\x0b\x0c\r "


def go_is_space(ch: str) -> bool:
    return ch in US


def trim_space(s: str) -> str:
    """strings.TrimSpace."""
    return s.strip(US)


def go_lower(s: str) -> str:
    """strings.ToLower: per code point, without Python's final-sigma and dotted-I special casing."""
    if s.isascii():
        return s.lower()
    out = []
    for ch in s:
        low = ch.lower()
        out.append(low if len(low) == 1 else "i" if ch == "\u0130" else ch)
    return "".join(out)


_QUOTE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t", "\v": "\\v"}


def go_quote(s: str) -> str:
    """strconv.Quote: Go string literal syntax, printable runes kept as UTF-8, the rest escaped."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    out = ['"']
    for ch in s:
        esc = _QUOTE_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch.isprintable():  # Python's printable set is Go's: categories L, M, N, P, S and the space
            out.append(ch)
        else:
            cp = ord(ch)
            if 0xDC80 <= cp <= 0xDCFF:  # a byte that was not valid UTF-8 (surrogateescape)
                out.append(f"\\x{cp - 0xDC00:02x}")
            elif cp < 0x80:
                out.append(f"\\x{cp:02x}")
            elif cp <= 0xFFFF:
                out.append(f"\\u{cp:04x}")
            else:
                out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


class NotStringArray(ValueError):
    """Valid JSON array, but not every element is a string (BuildKit refuses, it does not fall back)."""


class _NotGoJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotGoJSON(name)  # NaN/Infinity are not JSON; Go rejects them


def _go_number(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotGoJSON(text)  # Go's float64 conversion fails: an Unmarshal error, so shell form
    return value


def _fix_surrogates(s: str) -> str:
    # Go decodes an unpaired \ud800-style escape to U+FFFD; Python keeps the lone surrogate.
    if any("\ud800" <= ch <= "\udfff" for ch in s):
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in s)
    return s


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_go_number, parse_int=_go_number)


def json_string_array(text: str) -> list[str] | None:
    """BuildKit's parseJSON: the decoded strings, or None when the text is not a JSON array at all.

    Raises NotStringArray when it is valid JSON whose elements are not all strings.
    """
    text = text.lstrip(US)
    if not text.startswith("["):
        return None
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise NotStringArray("when using JSON array syntax, arrays must be comprised of strings only")
    return [_fix_surrogates(v) for v in value]
