"""Shell patterns for ``${VAR#pat}``, ``${VAR%pat}`` and ``${VAR/pat/rep}``, matched the way BuildKit matches them.

BuildKit turns such a pattern into a Go regular expression (``*`` -> ``.*`` or ``.*?``, ``?`` -> ``.``, every other
character literal; no ``[...]`` bracket expressions) and runs Go's linear-time regexp engine. Python's backtracking
``re`` would hang on patterns such as ``*a*a*a*a*b`` against a long value, so the matching here is our own: the
pattern is a list of tokens and the set of positions it can reach is carried as one big-integer bitset over the
value, which costs O(len(pattern) * len(value) / 64) word operations and never backtracks.

For these patterns Go's leftmost-first semantics reduce to simple rules (each follows from the pattern having only
literals, ``?`` and ``*``): a lazy anchored match is the shortest matching prefix, a greedy one the longest, and an
unanchored greedy match starts at the leftmost possible position and is the longest from there. As in Go, ``.`` does
not match a newline, so neither ``?`` nor ``*`` crosses one.

Errors are raised as ``PatternError`` with BuildKit's wording; the lexer wraps them.
"""

from __future__ import annotations

import unicodedata
from typing import Final

# token kinds: a 1-character str is a literal; these two sentinels are the wildcards
ANY: Final = 0
STAR: Final = 1

Token = str | int

# characters Go's regexp syntax treats specially; escaped when rendering a pattern as a regex string
_REGEX_SPECIAL: Final = frozenset("[]{}.+()|^$")
_01: Final = bytes.maketrans(b"\x00\x01", b"01")


class PatternError(Exception):
    """A malformed shell pattern (a backslash before an ordinary character, or at the end)."""


def parse_pattern(pattern: str) -> list[Token]:
    """Split a shell pattern into tokens, following BuildKit's escape rules.

    Inside ``${...}`` the characters ``}`` and ``/`` must be escaped, but that backslash is not part of the
    pattern; any other backslash must precede ``*``, ``?`` or ``\\``.
    """
    tokens: list[Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            tokens.append(STAR)
        elif c == "?":
            tokens.append(ANY)
        elif c == "\\":
            if i < n and pattern[i] in "}/":
                continue  # the next character is taken literally on the next round
            if i >= n:
                raise PatternError("invalid escape '\\' at end of pattern")
            c = pattern[i]
            i += 1
            if c not in "*?\\":
                raise PatternError(f"invalid escape '\\{c}'")
            tokens.append(c)
        else:
            tokens.append(c)
    return tokens


def pattern_to_regex(pattern: str, *, greedy: bool, anchored: bool) -> str:
    """The Go-syntax regular expression BuildKit builds for ``pattern`` (kept for conformance and debugging).

    The text is also valid Python ``re`` syntax, but the lexer does not use it: see the module docstring.
    """
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    for tok in parse_pattern(pattern):
        if tok == STAR:
            out.append(star)
        elif tok == ANY:
            out.append(".")
        else:
            assert isinstance(tok, str)
            out.append("\\" + tok if tok in _REGEX_SPECIAL or tok in "*?\\" else tok)
    return "".join(out)


def reverse_pattern(pattern: str) -> str:
    """Reverse a pattern but keep each ``\\x`` escape pair in order (``a\\*c`` -> ``c\\*a``), as BuildKit does."""
    out = [""] * len(pattern)
    last = len(pattern) - 1
    i = 0
    while i <= last:
        c = pattern[i]
        if c == "\\" and i != last:
            out[last - i - 1] = c
            out[last - i] = pattern[i + 1]
            i += 2
        else:
            out[last - i] = c
            i += 1
    return "".join(out)


class _Matcher:
    """Runs one token list over one value with position bitsets (bit i = "at position i")."""

    def __init__(self, tokens: list[Token], value: str) -> None:
        self.tokens = tokens
        self.value = value
        n = len(value)
        self.n = n
        self.fixed = STAR not in tokens
        self._masks: dict[str, int] = {}
        # positions from which one step forward is allowed for a wildcard: everything but a newline
        self.step = ((1 << n) - 1) & ~self._mask("\n")

    def _mask(self, c: str) -> int:
        cached = self._masks.get(c)
        if cached is not None:
            return cached
        v = self.value
        i = v.find(c)
        if i < 0:
            mask = 0
        else:
            bits = bytearray(self.n)
            while i >= 0:
                bits[i] = 1
                i = v.find(c, i + 1)
            mask = int(bits.translate(_01)[::-1], 2)
        self._masks[c] = mask
        return mask

    def run(self, starts: int) -> int:
        """Set of end positions reachable from the position set ``starts`` by the whole pattern."""
        s = starts
        step = self.step
        for tok in self.tokens:
            if tok == STAR:
                # spread every position forward to the end of its newline-free run: adding the run's ones
                # carries from the lowest set bit to the run's end; OR-ing s restores bits the carry cleared
                s |= ((s & step) + step) ^ step
            elif tok == ANY:
                s = (s & step) << 1
            else:
                assert isinstance(tok, str)
                s = (s & self._mask(tok)) << 1
            if not s:
                break
        return s


def _lowest(bits: int) -> int:
    return (bits & -bits).bit_length() - 1


def trim_prefix(pattern: str, value: str, *, greedy: bool) -> str:
    """``${VAR#pat}`` (shortest) / ``${VAR##pat}`` (longest): drop the matching prefix, if any."""
    ends = _Matcher(parse_pattern(pattern), value).run(1)
    if not ends:
        return value
    end = ends.bit_length() - 1 if greedy else _lowest(ends)
    return value[end:]


def trim_suffix(pattern: str, value: str, *, greedy: bool) -> str:
    """``${VAR%pat}`` / ``${VAR%%pat}``: BuildKit reverses pattern and value and trims a prefix."""
    return trim_prefix(reverse_pattern(pattern), value[::-1], greedy=greedy)[::-1]


def replace(pattern: str, value: str, replacement: str, *, replace_all: bool) -> str:
    """``${VAR/pat/rep}`` and ``${VAR//pat/rep}`` with Go's regexp Replace semantics.

    A single replacement inserts ``replacement`` literally; replace-all expands it as a Go regexp template
    (``$0`` is the match, ``$$`` a dollar, other ``$name`` references are empty) and, like Go, skips an empty
    match that directly follows the previous match.
    """
    tokens = parse_pattern(pattern)
    n = len(value)
    fwd = _Matcher(tokens, value)
    # where can a match start? Run the reversed pattern over the reversed value from every position.
    rev_ends = _Matcher(tokens[::-1], value[::-1]).run((1 << (n + 1)) - 1)
    if not rev_ends:
        return value
    # a reversed match ending at k starts at n-k in the value: reverse the n+1 bits
    starts = int(bin(rev_ends)[2:].zfill(n + 1)[::-1], 2)
    fixed_len = len(tokens) if fwd.fixed else -1

    def end_from(start: int) -> int:
        if fixed_len >= 0:
            return start + fixed_len
        return fwd.run(1 << start).bit_length() - 1

    if not replace_all:
        a0 = _lowest(starts)
        return value[:a0] + replacement + value[end_from(a0) :]

    out: list[str] = []
    last_end = 0
    search = 0
    while search <= n:
        rest = starts >> search
        if not rest:
            break
        a0 = search + _lowest(rest)
        a1 = end_from(a0)
        out.append(value[last_end:a0])
        if a1 > last_end or a0 == 0:
            out.append(_expand_template(replacement, value[a0:a1]))
        last_end = a1
        # always advance at least one character, as Go does
        if search + 1 > a1:
            search += 1
        else:
            search = a1
    out.append(value[last_end:])
    return "".join(out)


def _is_name_char(c: str) -> bool:
    return c == "_" or c.isalpha() or unicodedata.category(c) == "Nd"


def _expand_template(template: str, match: str) -> str:
    """Go's Regexp.Expand for a regexp with no capture groups: only ``$0``/``${0}`` refers to something."""
    if "$" not in template:
        return template
    out: list[str] = []
    i, n = 0, len(template)
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        i = j + 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        k = i
        brace = k < n and template[k] == "{"
        if brace:
            k += 1
        name_start = k
        while k < n and _is_name_char(template[k]):
            k += 1
        name = template[name_start:k]
        if not name or (brace and (k >= n or template[k] != "}")):
            out.append("$")  # malformed reference: the dollar is literal text
            continue
        if brace:
            k += 1
        i = k
        if name == "0":
            out.append(match)
        # any other group number or name does not exist and expands to nothing
