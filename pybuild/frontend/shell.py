"""Dockerfile word expansion: quote removal, escapes and ``$VAR`` substitution, as BuildKit's shell lexer does it.

This module owns the behaviour of BuildKit's ``frontend/dockerfile/shell/lex.go`` (a port of what it does, not of
its code). It knows nothing about instructions; callers pick the knobs. It never runs a shell: ``RUN``, ``CMD`` and
``ENTRYPOINT`` text is not expanded here (the container's shell does that).

What a word goes through, left to right:

* ``'...'`` is literal (no escapes inside); ``"..."`` keeps everything but expands ``$`` and lets the escape
  character escape ``"``, ``$`` and itself (before any other character it stays); outside quotes the escape
  character (``\\``, or a backtick after ``# escape=```) makes the next character literal and a trailing one is
  dropped.
* ``$NAME``, ``${NAME}``; names are letters, digits and ``_``; ``$1``/``$001`` (all digits) and the special
  parameters ``$@ $* $# $? $- $$ $! $0`` are looked up like names (so they are normally unset and empty); a ``$``
  not followed by a name stays (``$.`` -> ``$.``).
* ``${V:-w} ${V-w} ${V:+w} ${V+w} ${V:?msg} ${V?msg}``: the colon forms treat empty as unset. ``w`` is itself a
  word (nested ``${...}``, quotes, escapes; ``\\}`` for a literal brace).
* ``${V#p} ${V##p} ${V%p} ${V%%p}`` (shortest/longest prefix/suffix) and ``${V/p/r} ${V//p/r}`` (first/all):
  ``p`` is a shell pattern with ``*``, ``?`` and ``\\`` escapes (``\\*``, ``\\?``, ``\\\\``; ``\\}``/``\\/`` inside
  ``${}``). Like BuildKit, bracket expressions ``[...]`` are NOT supported: brackets are literal characters.
  ``${V//p/r}`` expands Go regexp templates in ``r`` (``$0`` is the match, ``$$`` a dollar); ``${V/p/r}`` does not.
* Anything else in ``${...}`` (``${}``, ``${:x}``, ``${V=w}``, ``${V:#p}``, a missing ``}``) is a ShellError, as is
  an unterminated quote. Nesting deeper than ``MAX_NESTING`` substitutions is a ShellError too (BuildKit has no
  limit; no real Dockerfile comes near it).

The knobs, and where BuildKit (dockerfile2llb, parser) uses which:

===========================================  ==========================================================
call                                         used for
===========================================  ==========================================================
``Lexer(escape).process_word``               ENV and LABEL keys and values, ADD/COPY sources, dest,
 / ``process_word_with_matches``             ``--chown --chmod --checksum``, WORKDIR, USER, VOLUME,
                                             STOPSIGNAL, ARG values, RUN ``--mount`` options, FROM's
                                             image and ``--platform`` (against the global ARGs). The
                                             ``unmatched`` names feed the UndefinedVar lint (BuildKit
                                             reports them even when expansion then fails).
``Lexer(escape).process_words``              EXPOSE: each argument may expand into several ports.
``Lexer("\\\\", skip_process_quotes=True)``    bodies of COPY/ADD heredocs whose delimiter is unquoted:
 ``.process_word``                           ``$`` is expanded but quotes are ordinary text; always
                                             backslash, whatever ``# escape=`` says.
``Lexer(escape, raw_quotes=True,``           the RUN step's display name in progress output; on error
 ``skip_unset_env=True).process_word``       BuildKit shows the command unexpanded.
``Lexer("\\\\", raw_quotes=True,``             the raw parser finding heredoc words on a RUN/COPY/ADD
 ``raw_escapes=True, skip_unset_env=True)``  line (env empty); then each ``<<WORD`` is run through
 ``.process_words(line, {})``                ``Lexer("\\\\", skip_unset_env=True)`` with raw_quotes
                                             False and True: if the quote counts differ, the
                                             delimiter was quoted and the body is not expanded.
===========================================  ==========================================================

``raw_quotes`` keeps the quote characters in the output; ``raw_escapes`` keeps escape characters (inside
``${V:-w}`` words they are processed anyway; inside ``#``/``%``/``/`` operands they are always kept so the pattern
sees them); ``skip_unset_env`` leaves references to unset variables as written (``$X``, ``${X}``, ``${X:-w}``
with ``w`` already processed; ``${X//p/r}`` comes back as ``${X/p/r}``, as in BuildKit); ``case_insensitive``
matches names like BuildKit on Windows (upper-cased); ``skip_process_quotes`` makes quotes ordinary text.
Words are split on unquoted whitespace (Go's ``unicode.IsSpace``); whitespace coming from a variable splits too,
quoted whitespace does not, and ``<<`` keeps the blanks that follow it in the same word.

Known difference: BuildKit's ProcessWords shares one word buffer between the outer word and the word inside
``${V:-w}`` (and the other operator forms), so text before such a substitution in the same word is lost
(``abc${x:-d}e`` -> ``["de"]``). That is a bug; here the result is ``["abcde"]``. ProcessWord is not affected.
Two messages differ on purpose: ``${NAME`` at the end of a word says "missing '}'" (BuildKit: "unsupported
modifier (\ufffd)"), and a bad ``${V%p}`` pattern is quoted as written (BuildKit quotes it reversed).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from pybuild.errors import Location, PybuildError
from pybuild.frontend import _shell_pattern

__all__ = ["MAX_NESTING", "Expansion", "Lexer", "ShellError", "env_from_list", "go_quote", "pattern_to_regex"]

MAX_NESTING: Final = 100
"""Most ``${...}`` inside one another (each level costs a few Python frames; Dockerfiles use two or three)."""

# Go's unicode.IsSpace (Python's str.isspace also takes \x1c-\x1f, which Go does not)
_SPACES: Final = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
_SPACE_RUN: Final = re.compile(f"[{_SPACES}]+")
_SPECIAL_PARAMS: Final = "@*#?-$!0"
_HEREDOC_BLANKS: Final = "\t\r "
_BOM: Final = "\ufeff"


@dataclass(frozen=True)
class Expansion:
    """The result of expanding one word, with the variable names it looked up."""

    value: str  # the word with quotes removed and variables expanded (not split)
    matched: frozenset[str]  # names that were looked up and set (even if empty)
    unmatched: frozenset[str]  # names that were looked up and not set
    words: tuple[str, ...] = ()  # the same text split into words (filled by process_words_with_matches)


class ShellError(PybuildError):
    """A word that cannot be expanded: BuildKit's message, no location (the caller attaches the line).

    ``detail`` is the bare reason (``syntax error: bad substitution``); ``message`` adds the word, as BuildKit
    does (``failed to process "${}": syntax error: bad substitution``). ``matched``/``unmatched`` hold the names
    looked up before the failure, for the UndefinedVar lint.
    """

    def __init__(
        self, message: str, location: Location | None = None, hint: str | None = None, *,
        detail: str | None = None, matched: frozenset[str] = frozenset(), unmatched: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(message, location, hint)
        self.detail = detail if detail is not None else message
        self.matched = matched
        self.unmatched = unmatched


def env_from_list(env: Iterable[str]) -> dict[str, str]:
    """BuildKit's lookup rules for a ``K=V`` list: split at the first ``=``, a bare ``K`` is set and empty,
    and a later entry for the same name wins."""
    out: dict[str, str] = {}
    for entry in env:
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def pattern_to_regex(pattern: str, *, greedy: bool = True, anchored: bool = True) -> str:
    """The Go regular expression BuildKit derives from a shell pattern; raises ShellError when invalid."""
    try:
        return _shell_pattern.pattern_to_regex(pattern, greedy=greedy, anchored=anchored)
    except _shell_pattern.PatternError as e:
        raise ShellError(str(e)) from None


def go_quote(s: str) -> str:
    """Go's ``strconv.Quote`` (what ``%q`` prints), so error messages read exactly like BuildKit's."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch == " " or (unicodedata.category(ch)[0] in "LMNPS"):
            out.append(ch)
        else:
            cp = ord(ch)
            if cp < 0x80:
                out.append(f"\\x{cp:02x}")
            elif 0xD800 <= cp <= 0xDFFF:
                out.append("\\ufffd")  # a lone surrogate stands for bytes Go would see as invalid UTF-8
            elif cp <= 0xFFFF:
                out.append(f"\\u{cp:04x}")
            else:
                out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES: Final = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


class Lexer:
    """Expands Dockerfile words. Immutable and reentrant: each call keeps its own state."""

    def __init__(
        self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False,
        skip_unset_env: bool = False, case_insensitive: bool = False, skip_process_quotes: bool = False,
    ) -> None:
        if escape not in ("\\", "`"):
            raise ShellError(f"invalid escape token '{escape}' does not match ` or \\")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset_env = skip_unset_env
        self.case_insensitive = case_insensitive
        self.skip_process_quotes = skip_process_quotes
        quotes = "" if skip_process_quotes else "'\""
        # characters that need the slow path; '<' only matters when splitting words
        self._word_special = re.compile("[" + re.escape("$" + quotes + escape + _BOM) + "]")
        self._words_special = re.compile("[" + re.escape("$<" + quotes + escape + _BOM) + "]")
        self._stop_special = {
            stop: re.compile("[" + re.escape("$<" + quotes + escape + stop) + "]") for stop in ("", "}", "/")
        }
        self._dquote_special = re.compile("[" + re.escape('"$' + escape) + "]")

    def __repr__(self) -> str:
        return (
            f"Lexer(escape={self.escape!r}, raw_quotes={self.raw_quotes}, raw_escapes={self.raw_escapes}, "
            f"skip_unset_env={self.skip_unset_env}, case_insensitive={self.case_insensitive}, "
            f"skip_process_quotes={self.skip_process_quotes})"
        )

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand ``word`` as one word (BuildKit's ProcessWord): quotes removed, nothing split."""
        if self._word_special.search(word) is None:
            return word
        return self._run(word, env, split=False).value

    def process_word_with_matches(self, word: str, env: Mapping[str, str]) -> Expansion:
        """Like process_word, and report which variable names were found and which were not."""
        if self._word_special.search(word) is None:
            return Expansion(word, frozenset(), frozenset())
        return self._run(word, env, split=False)

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Expand ``word`` and split it like a shell would (BuildKit's ProcessWords)."""
        return list(self.process_words_with_matches(word, env).words)

    def process_words_with_matches(self, word: str, env: Mapping[str, str]) -> Expansion:
        """process_words plus the unsplit value and the variable names looked up."""
        if self._words_special.search(word) is None:
            words = tuple(w for w in _SPACE_RUN.split(word) if w)
            return Expansion(word, frozenset(), frozenset(), words)
        return self._run(word, env, split=True)

    def _run(self, word: str, env: Mapping[str, str], *, split: bool) -> Expansion:
        state = _State(self, word, env, split)
        try:
            value, words = state.top()
        except _Fail as e:
            raise ShellError(
                f"failed to process {go_quote(word)}: {e.detail}", detail=e.detail,
                matched=frozenset(state.matched), unmatched=frozenset(state.unmatched),
            ) from None
        except RecursionError:
            # only reachable when the caller's own stack is already nearly full
            raise ShellError(
                f"failed to process {go_quote(word)}: substitutions nested too deeply",
                detail="substitutions nested too deeply",
            ) from None
        return Expansion(value, frozenset(state.matched), frozenset(state.unmatched), tuple(words))


class _Fail(Exception):
    """Internal: an expansion error before the word is attached to the message."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class _Words:
    """Accumulates split words: unquoted whitespace ends a word, quoted or escaped text never does."""

    words: list[str] = field(default_factory=list)
    buf: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if not text:
            return
        parts = _SPACE_RUN.split(text)
        self.buf.append(parts[0])
        for part in parts[1:]:
            self._flush()
            self.buf.append(part)

    def add_raw(self, text: str) -> None:
        self.buf.append(text)

    def _flush(self) -> None:
        if self.buf:
            word = "".join(self.buf)
            self.buf.clear()
            if word:
                self.words.append(word)

    def finish(self) -> list[str]:
        self._flush()
        return self.words


class _State:
    """One expansion in progress: the input, a cursor, and the names looked up so far."""

    def __init__(self, lex: Lexer, word: str, env: Mapping[str, str], split: bool) -> None:
        self.lex = lex
        self.esc = lex.escape
        self.quotes = not lex.skip_process_quotes
        self.s = word
        self.n = len(word)
        # Go's text/scanner drops a byte-order mark at the very start of its input
        self.pos = 1 if word.startswith(_BOM) else 0
        self.split = split
        self.raw_escapes = lex.raw_escapes
        self.depth = 0
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()
        if lex.case_insensitive:
            upper: dict[str, str] = {}
            for k, v in env.items():
                upper[k.upper()] = v
            self.env: Mapping[str, str] = upper
        else:
            self.env = env

    def top(self) -> tuple[str, list[str]]:
        words = _Words() if self.split else None
        value = self.stop_on("", self.lex.raw_escapes, words)
        return value, (words.finish() if words is not None else [])

    def get(self, name: str) -> tuple[str, bool]:
        key = name.upper() if self.lex.case_insensitive else name
        try:
            value = self.env[key]
        except KeyError:
            self.unmatched.add(name)
            return "", False
        self.matched.add(name)
        return value, True

    def stop_on(self, stop: str, raw_escapes: bool, words: _Words | None) -> str:
        """Process up to ``stop`` (consumed) or to the end when ``stop`` is empty."""
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._stop_on(stop, words)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str, words: _Words | None) -> str:
        s, n, esc = self.s, self.n, self.esc
        special = self.lex._stop_special[stop]
        out: list[str] = []
        while self.pos < n:
            m = special.search(s, self.pos)
            if m is None:
                chunk = s[self.pos :]
                out.append(chunk)
                if words is not None:
                    words.add(chunk)
                self.pos = n
                break
            i = m.start()
            if i > self.pos:
                chunk = s[self.pos : i]
                out.append(chunk)
                if words is not None:
                    words.add(chunk)
            self.pos = i
            ch = s[i]
            if ch == stop:
                self.pos = i + 1
                return "".join(out)
            if ch == "$":
                text = self.dollar()
                out.append(text)
                if words is not None:
                    words.add(text)  # whitespace from a variable splits words
            elif ch == "<":
                text = self.possible_heredoc()
                out.append(text)
                if words is not None:
                    words.add_raw(text)
            elif ch == "'":
                text = self.single_quote()
                out.append(text)
                if words is not None:
                    words.add_raw(text)
            elif ch == '"':
                text = self.double_quote()
                out.append(text)
                if words is not None:
                    words.add_raw(text)
            else:  # the escape character
                self.pos = i + 1
                if self.raw_escapes:
                    out.append(esc)
                    if words is not None:
                        words.add_raw(esc)
                if self.pos >= n:
                    break  # a trailing escape is dropped
                nxt = s[self.pos]
                self.pos += 1
                out.append(nxt)
                if words is not None:
                    words.add_raw(nxt)
        if stop:
            raise _Fail(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def possible_heredoc(self) -> str:
        """``<`` is plain text, but ``<<`` keeps the blanks after it, so the heredoc word stays one word."""
        self.pos += 1
        if self.pos >= self.n or self.s[self.pos] != "<":
            return "<"
        start = self.pos - 1
        self.pos += 1
        while self.pos < self.n and self.s[self.pos] in _HEREDOC_BLANKS:
            self.pos += 1
        return self.s[start : self.pos]

    def single_quote(self) -> str:
        start = self.pos + 1
        end = self.s.find("'", start)
        if end < 0:
            self.pos = self.n
            raise _Fail("unexpected end of statement while looking for matching single-quote")
        self.pos = end + 1
        return self.s[start - 1 : end + 1] if self.lex.raw_quotes else self.s[start:end]

    def double_quote(self) -> str:
        s, n, esc = self.s, self.n, self.esc
        raw_quotes = self.lex.raw_quotes
        out = ['"'] if raw_quotes else []
        self.pos += 1
        special = self.lex._dquote_special
        while True:
            m = special.search(s, self.pos)
            if m is None:
                self.pos = n
                raise _Fail("unexpected end of statement while looking for matching double-quote")
            i = m.start()
            if i > self.pos:
                out.append(s[self.pos : i])
            ch = s[i]
            if ch == '"':
                self.pos = i + 1
                if raw_quotes:
                    out.append('"')
                return "".join(out)
            if ch == "$":
                self.pos = i
                out.append(self.dollar())
                continue
            # the escape character: it escapes only " $ and itself; before anything else it stays
            self.pos = i + 1
            if self.raw_escapes:
                out.append(esc)
            if self.pos >= n:
                continue  # reported as the missing closing quote
            nxt = s[self.pos]
            if nxt in ('"', "$", esc):
                out.append(nxt)
                self.pos += 1
            else:
                # BuildKit writes the escape itself here, so with raw escapes it appears twice
                out.append(esc)

    def name(self) -> str:
        """A parameter name at the cursor: all digits, one special character, or letters/digits/_."""
        s, n = self.s, self.n
        start = self.pos
        if start >= n:
            return ""
        c = s[start]
        if _is_digit(c):
            end = start + 1
            while end < n and _is_digit(s[end]):
                end += 1
            self.pos = end
            return s[start:end]
        if c in _SPECIAL_PARAMS:
            self.pos = start + 1
            return c
        end = start
        while end < n and (s[end] == "_" or s[end].isalpha() or _is_digit(s[end])):
            end += 1
        self.pos = end
        return s[start:end]

    def dollar(self) -> str:
        s, n = self.s, self.n
        self.pos += 1  # the '$'
        if self.pos >= n or s[self.pos] != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.get(name)
            if not found and self.lex.skip_unset_env:
                return "$" + name
            return value

        self.pos += 1  # the '{'
        if self.pos >= n:
            raise _Fail("syntax error: missing '}'")
        if s[self.pos] in "{}:":
            raise _Fail("syntax error: bad substitution")
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _Fail(f"syntax error: more than {MAX_NESTING} nested substitutions")
        try:
            return self._braced()
        finally:
            self.depth -= 1

    def _braced(self) -> str:
        s, n = self.s, self.n
        name = self.name()
        if self.pos >= n:
            # BuildKit reports "unsupported modifier (\ufffd)" here; the missing brace is the real problem
            raise _Fail("syntax error: missing '}'")
        op = s[self.pos]
        self.pos += 1
        if op == "}":
            value, found = self.get(name)
            if not found and self.lex.skip_unset_env:
                return "${" + name + "}"
            return value
        if op == "/":
            return self._replace(name)
        ops = op
        null_is_unset = False
        if op == ":":
            null_is_unset = True
            if self.pos >= n:
                raise _Fail("syntax error: missing '}'")
            op = s[self.pos]
            self.pos += 1
            ops += op
        elif op not in "+-?#%":
            raise _Fail(f"unsupported modifier ({ops}) in substitution")
        pattern_op = op in "#%"
        if null_is_unset and pattern_op:
            raise _Fail(f"unsupported modifier ({ops}) in substitution")
        word = self._operand("}", pattern_op, "syntax error: missing '}'")

        value, found = self.get(name)
        if not found and self.lex.skip_unset_env:
            return "${" + name + ops + word + "}"
        empty = not found or (null_is_unset and value == "")
        if op == "-":
            return word if empty else value
        if op == "+":
            return "" if empty else word
        if op == "?":
            if not found:
                raise _Fail(f"{name}: {word or 'is not allowed to be unset'}")
            if empty:
                raise _Fail(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if op in "#%":
            greedy = word.startswith(op)
            if greedy:
                word = word[1:]
            try:
                if op == "%":
                    return _shell_pattern.trim_suffix(word, value, greedy=greedy)
                return _shell_pattern.trim_prefix(word, value, greedy=greedy)
            except _shell_pattern.PatternError as e:
                raise _Fail(f"invalid pattern ({word}) in substitution: {e}") from None
        raise _Fail(f"unsupported modifier ({ops}) in substitution")

    def _replace(self, name: str) -> str:
        replace_all = self.pos < self.n and self.s[self.pos] == "/"
        if replace_all:
            self.pos += 1
        pattern = self._operand("/", True, "syntax error: missing '/' in ${}")
        replacement = self._operand("}", True, "syntax error: missing '}'")
        value, found = self.get(name)
        if not found and self.lex.skip_unset_env:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        try:
            return _shell_pattern.replace(pattern, value, replacement, replace_all=replace_all)
        except _shell_pattern.PatternError as e:
            raise _Fail(f"invalid pattern ({pattern}) in substitution: {e}") from None

    def _operand(self, stop: str, raw_escapes: bool, at_eof: str) -> str:
        """The word inside ``${...}`` up to ``stop``; running off the end reports ``at_eof`` instead."""
        try:
            return self.stop_on(stop, raw_escapes, None)
        except _Fail:
            if self.pos >= self.n:
                raise _Fail(at_eof) from None
            raise


def _is_digit(c: str) -> bool:
    # Go's unicode.IsDigit is category Nd, which is exactly str.isdecimal
    return c.isdecimal()
