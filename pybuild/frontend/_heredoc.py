"""Finding heredoc markers (``<<EOF``, ``<<-"EOF"``, ``3<<EOF``) the way BuildKit's raw parser does.

Owns: the word splitting BuildKit uses to look for heredoc words on an instruction line (its shell lexer
run with an empty environment, unset variables kept as written, quotes and escapes kept raw) and the
classification of one word as a heredoc (name, expand, chomp, fd). The escape character is always the
backslash here, whatever ``# escape=`` says, as in BuildKit. The full shell expander lives in
``pybuild.frontend.shell``; this is the small, expansion-free subset the parser needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pybuild.frontend._golang import US, go_quote

_EOF = ""
_HEREDOC_WORD = re.compile(r"(\d*)<<(-?)[\t\n\f\r ]*([^<]*)\Z")
_SPECIAL_PARAMS = "@*#?-$!0"


class HeredocError(ValueError):
    """A heredoc word that cannot be read (an unterminated quote, a bad ${...})."""


@dataclass(frozen=True)
class HeredocWord:
    """A <<WORD heredoc marker as written."""

    name: str
    expand: bool
    chomp: bool
    fd: int | None  # None when no digits were written before <<


class _Words:
    """BuildKit's wordsStruct. The buffer is shared by nested scans on purpose: BuildKit resets one buffer
    per lexer at every (nested) scan, which drops text before a ${...:...} form; we keep that behaviour."""

    def __init__(self, buf: list[str]) -> None:
        self.buf = buf
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in US:
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf.clear()
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.buf.append(ch)
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def add_raw_string(self, s: str) -> None:
        self.buf.append(s)
        self.in_word = True

    def get_words(self) -> list[str]:
        if self.buf:
            self.words.append("".join(self.buf))
            self.buf.clear()
            self.in_word = False
        return self.words


class _Lexer:
    """ProcessWords with an empty environment and SkipUnsetEnv: variables are kept as written."""

    def __init__(self, text: str, *, raw_quotes: bool, raw_escapes: bool) -> None:
        self.text = text[1:] if text.startswith("\ufeff") else text  # text/scanner skips a leading BOM
        self.pos = 0
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.buf: list[str] = []

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def words(self) -> list[str]:
        return self.scan(_EOF, self.raw_escapes)[1]

    def scan(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        result: list[str] = []
        self.buf.clear()
        words = _Words(self.buf)
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            while (ch := self.peek()) != _EOF:
                if stop and ch == stop:
                    self.next()
                    return "".join(result), words.get_words()
                if ch in "$<'\"":
                    tmp = (
                        self.dollar() if ch == "$" else self.possible_heredoc() if ch == "<"
                        else self.single_quote() if ch == "'" else self.double_quote()
                    )
                    result.append(tmp)
                    if ch == "$":
                        words.add_string(tmp)
                    else:
                        words.add_raw_string(tmp)
                    continue
                ch = self.next()
                if ch == "\\":
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                    ch = self.next()
                    if ch == _EOF:
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
            if stop:
                raise HeredocError(f"unexpected end of statement while looking for matching {stop}")
            return "".join(result), words.get_words()
        finally:
            self.raw_escapes = saved

    def single_quote(self) -> str:
        quote = self.next()
        out = [quote] if self.raw_quotes else []
        while True:
            ch = self.next()
            if ch == _EOF:
                raise HeredocError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        quote = self.next()
        out = [quote] if self.raw_quotes else []
        while True:
            ch = self.peek()
            if ch == _EOF:
                raise HeredocError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == "\\":
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == _EOF:
                    continue
                if nxt in '"$\\':
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        out: list[str] = []
        while (ch := self.peek()) != _EOF:
            if not out and ch.isdecimal():
                while (c := self.peek()) != _EOF and c.isdecimal():
                    out.append(self.next())
                return "".join(out)
            if not out and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return "$" + name  # unset variables are kept as written ("$" alone when there is no name)
        self.next()
        ch = self.peek()
        if ch == _EOF:
            raise HeredocError("syntax error: missing '}'")
        if ch in "{}:":
            raise HeredocError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        chs = ch or "\ufffd"
        if ch == "}":
            return "${" + name + "}"
        if ch and ch in ":+-?#%":
            null_is_unset = ch == ":"
            if null_is_unset:
                ch = self.next()
                chs += ch or "\ufffd"
            raw = ch != "" and ch in "#%"
            if null_is_unset and raw:
                raise HeredocError(f"unsupported modifier ({chs}) in substitution")
            try:
                word, _ = self.scan("}", raw)
            except HeredocError:
                if self.peek() == _EOF:
                    raise HeredocError("syntax error: missing '}'") from None
                raise
            return "${" + name + chs + word + "}"
        if ch == "/":
            if self.peek() == "/":
                self.next()
            try:
                pattern, _ = self.scan("/", True)
            except HeredocError:
                if self.peek() == _EOF:
                    raise HeredocError("syntax error: missing '/' in ${}") from None
                raise
            try:
                replacement, _ = self.scan("}", True)
            except HeredocError:
                if self.peek() == _EOF:
                    raise HeredocError("syntax error: missing '}'") from None
                raise
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        raise HeredocError(f"unsupported modifier ({chs}) in substitution")

    def possible_heredoc(self) -> str:
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        space: list[str] = []
        while (ch := self.peek()) != _EOF and ch in "\t\r ":
            space.append(self.next())
        return "<<" + "".join(space)


def _process_words(text: str, *, raw_quotes: bool, raw_escapes: bool) -> list[str]:
    try:
        return _Lexer(text, raw_quotes=raw_quotes, raw_escapes=raw_escapes).words()
    except HeredocError as e:
        raise HeredocError(f"failed to process {go_quote(text)}: {e}") from None


def parse_heredoc_word(word: str) -> HeredocWord | None:
    """Classify one already-split word: a heredoc marker, None when it is not one.

    Raises HeredocError for a marker whose name cannot be read (``<<'EOF`` with no closing quote).
    """
    m = _HEREDOC_WORD.match(word)
    if m is None or not m.group(3):
        return None
    digits, dash, rest = m.groups()
    words = _process_words(rest, raw_quotes=False, raw_escapes=False)
    if len(words) != 1:
        return None
    raw = _process_words(rest, raw_quotes=True, raw_escapes=False)
    if len(raw) != len(words):
        raise HeredocError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    name = words[0]
    # Any quoting anywhere in the word disables expansion of the body.
    expand = name.count("'") + name.count('"') == raw[0].count("'") + raw[0].count('"')
    fd = min(int(digits), 2**64 - 1) if digits else None
    return HeredocWord(name=name, expand=expand, chomp=dash == "-", fd=fd)


def heredocs_from_line(line: str) -> list[HeredocWord]:
    """The heredoc markers of one logical instruction line, in order."""
    try:
        words = _Lexer(line, raw_quotes=True, raw_escapes=True).words()
    except HeredocError:
        return []  # BuildKit ignores a line it cannot split: no heredocs
    out = []
    for word in words:
        doc = parse_heredoc_word(word)
        if doc is not None:
            out.append(doc)
    return out


_LEADING_TABS = re.compile(r"^\t+", re.M)


def chomp(content: str) -> str:
    """Remove leading TABs from every line (the ``<<-`` form)."""
    return _LEADING_TABS.sub("", content)
