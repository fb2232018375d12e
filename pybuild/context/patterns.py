"""Path patterns with Docker's exact semantics: .dockerignore matching, Go's filepath.Match and filepath.Clean.

Owns three things, each mirroring the Go code Docker uses so that a context behaves the same in pybuild:

* ``PatternMatcher`` — moby/patternmatcher: ``*``, ``?``, ``[...]``, ``**``, ``!`` exceptions, last match wins, a
  pattern matching a directory also matching everything below it (via per-pattern parent results while walking).
* ``read_ignore_file`` — moby/patternmatcher/ignorefile: comments, blank lines, BOM, cleaning, leading ``/`` removal.
* ``go_match`` / ``contains_wildcards`` / ``split_wildcards`` — Go's ``filepath.Match`` as used for COPY/ADD source
  globs (``*`` never crosses ``/``; ``**`` is just two stars there).

Paths given to matchers are relative to the context root and slash-separated, never starting with ``/``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from pybuild.errors import PybuildError

# Characters that are regexp metacharacters but carry no meaning in a filepath pattern, so patternmatcher escapes
# them; everything else (notably ``[``, ``]`` and ``^``) goes into the regexp as written, exactly as Docker does.
_REGEX_ESCAPE = frozenset(".+()|{}$")


def go_clean(path: str) -> str:
    """Go's path/filepath.Clean for slash paths: the shortest equivalent path ("" → ".", no trailing slash)."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            # ".." at the root of an absolute path stays at the root
        else:
            out.append(comp)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


# --------------------------------------------------------------------------------------------------------------------
# Go filepath.Match


class BadPatternError(PybuildError):
    """A malformed glob or ignore pattern (Go's ErrBadPattern)."""


def _bad(pattern: str, why: str) -> BadPatternError:
    return BadPatternError(f"invalid pattern {pattern!r}: {why}")


def _go_pattern_regex(pattern: str) -> str:
    """Translate a Go filepath.Match pattern to a Python regexp, validating it the way Go does."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                raise _bad(pattern, "trailing backslash")
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif c == "[":
            i += 1
            negated = False
            if i < n and pattern[i] == "^":
                negated = True
                i += 1
            ranges: list[str] = []
            count = 0
            while True:
                if i < n and pattern[i] == "]" and count > 0:
                    i += 1
                    break
                lo, i = _class_char(pattern, i)
                hi = lo
                if i < n and pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                count += 1
                # Go accepts a reversed range and simply never matches it; Python would reject it.
                if lo <= hi:
                    ranges.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
            if not ranges:
                out.append(r"[\s\S]" if negated else "(?!)")
            else:
                # Go's class matches any rune, '/' included, so the negated form does not exclude '/'.
                out.append(("[^" if negated else "[") + "".join(ranges) + "]")
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise _bad(pattern, "malformed character class")
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise _bad(pattern, "trailing backslash in character class")
    return pattern[i], i + 1


_GO_CACHE: dict[str, re.Pattern[str]] = {}


def go_match(pattern: str, name: str) -> bool:
    """Go's filepath.Match: does ``name`` match ``pattern`` as a whole? Raises BadPatternError when malformed."""
    rx = _GO_CACHE.get(pattern)
    if rx is None:
        rx = re.compile(_go_pattern_regex(pattern), re.DOTALL)
        if len(_GO_CACHE) < 4096:
            _GO_CACHE[pattern] = rx
    return rx.fullmatch(name) is not None


def validate_go_pattern(pattern: str) -> None:
    """Raise BadPatternError if ``pattern`` is not a valid filepath.Match pattern."""
    _go_pattern_regex(pattern)


def contains_wildcards(name: str) -> bool:
    """True if ``name`` has an unescaped ``*``, ``?`` or ``[`` (BuildKit's containsWildcards)."""
    i = 0
    while i < len(name):
        c = name[i]
        if c == "\\":
            i += 2
            continue
        if c in "*?[":
            return True
        i += 1
    return False


def split_wildcards(path: str) -> tuple[str, str]:
    """Split a path before its first component with a wildcard: "/a/b/*/c.txt" → ("/a/b", "*/c.txt")."""
    literal: list[str] = []
    rest: list[str] = []
    for comp in go_clean(path).split("/"):
        if rest or contains_wildcards(comp):
            rest.append(comp)
        else:
            literal.append(comp)
    head = "/".join(literal)
    if literal and not head:
        head = "/"
    return head, "/".join(rest)


# --------------------------------------------------------------------------------------------------------------------
# moby/patternmatcher


class _Kind(Enum):
    EXACT = 1
    PREFIX = 2
    SUFFIX = 3
    REGEXP = 4


@dataclass(frozen=True)
class Pattern:
    """One cleaned ignore pattern; ``exclusion`` is True for ``!pattern`` (an exception that re-includes)."""

    text: str
    exclusion: bool
    kind: _Kind
    regex: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])  # the pattern ends with "**"
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]  # the pattern starts with "**"
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]  # "**/foo" also matches "foo"
        assert self.regex is not None
        return self.regex.match(path) is not None


def _compile(text: str, exclusion: bool) -> Pattern:
    """Classify and compile a cleaned pattern the way patternmatcher does (exact, prefix, suffix or regexp)."""
    parts = ["^"]
    kind = _Kind.EXACT
    i, n = 0, len(text)
    first = True
    while i < n:
        c = text[i]
        i += 1
        if c == "*":
            if i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":  # "**/" is treated as "**"
                    i += 1
                if i >= n:
                    # a trailing "**" accepts everything below, as in .gitignore
                    if kind is _Kind.EXACT:
                        kind = _Kind.PREFIX
                    else:
                        parts.append(".*")
                        kind = _Kind.REGEXP
                else:
                    parts.append("(.*/)?")  # any number of directories, including none
                    kind = _Kind.REGEXP
                if first:
                    kind = _Kind.SUFFIX
            else:
                parts.append("[^/]*")
                kind = _Kind.REGEXP
        elif c == "?":
            parts.append("[^/]")
            kind = _Kind.REGEXP
        elif c in _REGEX_ESCAPE:
            parts.append("\\" + c)
        elif c == "\\":
            if i < n:
                parts.append("\\" + text[i])
                i += 1
                kind = _Kind.REGEXP
            else:
                parts.append("\\\\")
        elif c in "[]":
            parts.append(c)
            kind = _Kind.REGEXP
        else:
            parts.append(c)
        first = False
    regex: re.Pattern[str] | None = None
    if kind is _Kind.REGEXP:
        parts.append("$")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "possible nested set" FutureWarnings for patterns like "[[]"
                regex = re.compile("".join(parts))
        except re.error as e:
            raise _bad(text, str(e)) from None
    return Pattern(text, exclusion, kind, regex)


MatchInfo = tuple[bool, ...]
"""Per-pattern results for a directory, handed to its children while walking (empty = unknown)."""

NO_INFO: MatchInfo = ()


class PatternMatcher:
    """An ordered list of ignore patterns; a path is matched when the last pattern that matches it is not ``!``."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.patterns: list[Pattern] = []
        self.has_exclusions = False
        for raw in patterns:
            p = raw.strip()
            if not p:
                continue
            p = go_clean(p)
            exclusion = False
            if p.startswith("!"):
                if len(p) == 1:
                    raise BadPatternError('illegal exclusion pattern: "!"')
                exclusion = True
                p = p[1:]
                self.has_exclusions = True
            validate_go_pattern(p)
            self.patterns.append(_compile(p, exclusion))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"PatternMatcher({[('!' if p.exclusion else '') + p.text for p in self.patterns]!r})"

    def matches(self, path: str) -> bool:
        """Is ``path`` matched, looking at it and each of its parent directories (MatchesOrParentMatches)?"""
        path = go_clean(path)
        if path == ".":
            return False  # the context root itself can never be excluded
        parents = path.split("/")[:-1]
        matched = False
        for pat in self.patterns:
            # an inclusion cannot change an already-matched path, nor an exception an unmatched one
            if pat.exclusion != matched:
                continue
            hit = pat.match(path)
            if not hit:
                for k in range(1, len(parents) + 1):
                    if pat.match("/".join(parents[:k])):
                        hit = True
                        break
            if hit:
                matched = not pat.exclusion
        return matched

    def matches_with_parent(self, path: str, parent: MatchInfo = NO_INFO) -> tuple[bool, MatchInfo]:
        """Match ``path`` given its parent directory's results (MatchesUsingParentResults); returns this path's.

        A pattern that matched the parent counts as matching every path below it; with no parent information the
        parent directories are checked one by one instead.
        """
        if parent and len(parent) != len(self.patterns):
            raise ValueError("parent match info is for a different matcher")
        matched = False
        info: list[bool] = []
        for idx, pat in enumerate(self.patterns):
            hit = parent[idx] if parent else False
            if not hit:
                if pat.exclusion != matched:
                    info.append(False)
                    continue
                hit = pat.match(path)
                if not hit and not parent:
                    comps = path.split("/")[:-1]
                    for k in range(1, len(comps) + 1):
                        if pat.match("/".join(comps[:k])):
                            hit = True
                            break
            info.append(hit)
            if hit:
                matched = not pat.exclusion
        return matched, tuple(info)

    def could_match_below(self, directory: str, *, exceptions: bool = False) -> bool:
        """Could a pattern match something inside ``directory``? (False only when certainly not.)

        Considers the plain patterns, or with ``exceptions`` the ``!`` ones. Used to avoid walking whole trees: a
        directory whose path diverges from a pattern's literal leading components cannot contain a match.
        """
        dcomps = [] if directory in ("", ".") else directory.split("/")
        for pat in self.patterns:
            if pat.exclusion != exceptions:
                continue
            pcomps = pat.text.split("/")
            for k, dc in enumerate(dcomps):
                if k >= len(pcomps):
                    break  # the pattern matched an ancestor; the caller's parent info handles that
                pc = pcomps[k]
                if contains_wildcards(pc):
                    return True
                if pc != dc:
                    break
            else:
                return True
        return False


def read_ignore_file(text: str) -> list[str]:
    """Parse .dockerignore content into patterns, exactly as Docker's ignorefile.ReadAll does."""
    patterns: list[str] = []
    for idx, line in enumerate(text.split("\n")):
        if line.endswith("\r"):
            line = line[:-1]
        if idx == 0 and line.startswith("\ufeff"):
            line = line[1:]
        if line.startswith("#"):  # only a "#" in the very first column starts a comment
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def find_ignore_file(context_root: Path, dockerfile: Path | None = None) -> Path | None:
    """The ignore file that applies: ``<Dockerfile name>.dockerignore`` beside the Dockerfile wins over the
    context's ``.dockerignore``; None when there is neither."""
    if dockerfile is not None:
        specific = dockerfile.parent / (dockerfile.name + ".dockerignore")
        if specific.is_file():
            return specific
    generic = context_root / ".dockerignore"
    if generic.is_file():
        return generic
    return None


def load_ignore(context_root: Path, dockerfile: Path | None = None) -> PatternMatcher:
    """Read the applicable ignore file into a matcher (an empty matcher when there is none)."""
    path = find_ignore_file(context_root, dockerfile)
    if path is None:
        return PatternMatcher()
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise PybuildError(f"cannot read {path}: {e.strerror}") from None
    try:
        return PatternMatcher(read_ignore_file(text))
    except BadPatternError as e:
        raise PybuildError(f"{path.name}: {e.message}", hint="fix or remove the pattern in the ignore file") from None
