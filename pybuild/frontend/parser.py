"""The raw Dockerfile parser: text -> pybuild.model.ast.Dockerfile, mirroring BuildKit's raw parser.

Who does what:

* This module (Python) handles physical lines, because what they mean depends on state a grammar cannot
  see: the UTF-8 check and the BOM, parser directives at the top (``# syntax=``, ``# escape=`` which picks
  the escape character at run time, ``# check=``), comment lines (kept as ``prev_comments``), line
  continuations (the escape character at the end of a line, comment and blank lines inside a
  continuation, a continuation open at end of file), the 65535-byte line limit and heredoc bodies
  (``<<EOF``/``<<-EOF``/``<<"EOF"``/``3<<EOF``, several per line, also inside ONBUILD), which are lines
  taken out of the stream after an instruction. Each logical line is then trimmed and handed over.
* ``grammar/dockerfile.lark`` (via ``pybuild.frontend._grammar``) parses that one logical instruction:
  the keyword in any case, ``--flag`` words, JSON versus shell form, the argument shape of every
  instruction (ENV/LABEL pairs and legacy form, ARG words, HEALTHCHECK, nested ONBUILD, unknown words).
* ``_heredoc`` finds heredoc markers on a line; ``_golang`` holds the Go library behaviour (whitespace
  classes, ``strconv.Quote`` for ``dump``, JSON decoding).

Known deliberate differences from BuildKit: input must be UTF-8 text without NUL bytes (BuildKit reads
anything); BuildKit scans --flag words byte by byte, which mangles non-ASCII flag text, we work on
characters; ONBUILD nested more than 64 deep is an error (BuildKit rejects ONBUILD ONBUILD later anyway).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pybuild.errors import Location, PybuildError
from pybuild.frontend._golang import US, go_lower, go_quote, trim_space
from pybuild.frontend._grammar import LineError, RawInstruction, instruction_parser
from pybuild.frontend._heredoc import HeredocError, heredocs_from_line
from pybuild.model.ast import Dockerfile, Heredoc, Node, ParseWarning

__all__ = ["DirectiveMatch", "detect_syntax", "dump", "parse", "parse_directive", "parse_file"]

MAX_LINE_BYTES = 65535
MAX_ONBUILD_DEPTH = 64
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
# Go's \s is [\t\n\f\r ] (no \v); the value is the shortest text before trailing \s.
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_CONTINUATION = {
    esc: re.compile(rf"([^{re.escape(esc)}]){re.escape(esc)}[ \t]*\Z|^{re.escape(esc)}[ \t]*\Z")
    for esc in ("\\", "`")
}
_HEREDOC_KEYWORDS = frozenset({"add", "copy", "run"})


@dataclass(frozen=True)
class DirectiveMatch:
    """A parser directive found by detect_syntax/parse_directive."""

    value: str  # the first word of the value (BuildKit's "ref" for syntax)
    cmdline: str  # the whole value
    line: int  # 1-based line (0 for the JSON form without a shebang)


# ---------------------------------------------------------------------------------------------------------------
# Directives


class _DirectiveParser:
    """BuildKit's DirectiveParser: directive lines at the very top, until the first other line."""

    def __init__(self, comment: str = "#") -> None:
        self.comment = comment
        self.done = False
        self.seen: set[str] = set()

    def parse_line(self, line: str) -> tuple[str, str] | None:
        if self.done:
            return None
        if not line.startswith(self.comment):
            self.done = True
            return None
        m = _DIRECTIVE.match(line[len(self.comment):].lstrip(US))
        name = m.group(1).lower() if m else ""
        if m is None or name not in _KNOWN_DIRECTIVES:
            self.done = True
            return None
        if name in self.seen:
            raise ValueError(f"only one {name} parser directive can be used")
        self.seen.add(name)
        return name, m.group(2)


def _to_text(data: str | bytes) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data


def _lines(text: str) -> Iterator[str]:
    """Lines as Go's bufio.ScanLines yields them (split at \n, one trailing \r dropped), lazily."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            end = len(text)
        yield text[start:end].removesuffix("\r")
        start = end + 1


def _detect(key: str, data: str | bytes, any_format: bool) -> DirectiveMatch | None:
    text = _to_text(data).removeprefix("\ufeff")
    line_no = 0
    if text.startswith("#!"):
        text = text.partition("\n")[2]
        line_no = 1
    prefixes = ("#", "//") if any_format else ("#",)
    for prefix in prefixes:
        directives = _DirectiveParser(prefix)
        for i, raw in enumerate(_lines(text)):
            try:
                found = directives.parse_line(raw)
            except ValueError:
                break
            if directives.done:
                break
            if found is not None and found[0] == key:
                return DirectiveMatch(found[1].split(" ", 1)[0], found[1], line_no + i + 1)
    if any_format and text.lstrip(" \t\r\n").startswith("{"):
        import json

        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return None
        value = obj.get(key) if isinstance(obj, dict) else None
        if isinstance(value, str):
            return DirectiveMatch(value, value, line_no)
    return None


def detect_syntax(data: str | bytes) -> DirectiveMatch | None:
    """BuildKit's DetectSyntax: ``# syntax=`` (after an optional ``#!`` line), ``//syntax=``, or JSON."""
    return _detect("syntax", data, any_format=True)


def parse_directive(key: str, data: str | bytes) -> DirectiveMatch | None:
    """BuildKit's ParseDirective (e.g. for ``check``): only the ``# key=value`` form."""
    return _detect(key.lower(), data, any_format=False)


# ---------------------------------------------------------------------------------------------------------------
# Physical lines


def _decode(data: str | bytes, path: str) -> str:
    """UTF-8 text without NUL bytes, else a clear error pointing at the first bad byte."""
    if isinstance(data, bytes):
        nul = data.find(b"\x00")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = e.start if nul < 0 else min(nul, e.start)
            _binary_error(data.decode("utf-8", "replace"), data[:bad].decode("utf-8", "replace"), path,
                          "a NUL byte" if bad == nul else f"invalid UTF-8 (byte 0x{data[bad]:02x})")
        if nul >= 0:
            _binary_error(text, text[: text.index("\x00")], path, "a NUL byte")
        return text
    if "\x00" in data:
        _binary_error(data, data[: data.index("\x00")], path, "a NUL byte")
    try:
        data.encode("utf-8")
    except UnicodeEncodeError as e:
        _binary_error(data.encode("utf-8", "replace").decode("utf-8"), data[: e.start], path, "invalid UTF-8")
    return data


def _binary_error(text: str, before: str, path: str, what: str) -> None:
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    source = text.split("\n")[line - 1].rstrip("\r").replace("\x00", "\ufffd")
    raise PybuildError(
        f"{path} is not a text Dockerfile: it contains {what}",
        Location(path, line, column, source),
        hint="a Dockerfile must be UTF-8 text; is this a binary file?",
    )


def _is_comment(line: str) -> bool:
    return line.lstrip(US).startswith("#")


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        if text.startswith("\ufeff"):
            text = text[1:]
        parts = text.split("\n")
        self.raw = [p + "\n" for p in parts[:-1]]
        if parts[-1]:
            self.raw.append(parts[-1])
        self.lines = tuple(r.rstrip("\r\n") for r in self.raw)
        # Go's scanner stops at a line that is too long: everything before it is parsed, then it fails.
        self.too_long: int | None = None
        for i, r in enumerate(self.raw):
            if len(r) > MAX_LINE_BYTES // 4 and len(r.rstrip("\n").encode("utf-8")) > MAX_LINE_BYTES:
                self.too_long = i
                self.raw = self.raw[:i]
                break
        self.escape = "\\"
        self.directives = _DirectiveParser()
        self.found_directives: dict[str, str] = {}
        self.warnings: list[ParseWarning] = []

    def location(self, line: int, column: int = 0) -> Location:
        src = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        return Location(self.path, line, column, src)

    def error(self, message: str, line: int, column: int = 0, hint: str | None = None) -> PybuildError:
        return PybuildError(message, self.location(line, column), hint=hint)

    def process_line(self, raw: str, strip_left: bool, line_no: int) -> tuple[str, bool]:
        token = raw.rstrip("\r\n")
        if strip_left:
            token = token.lstrip(US)
        try:
            found = self.directives.parse_line(token)
        except ValueError as e:
            raise self.error(str(e), line_no, 1) from None
        if found is not None:
            name, value = found
            if name == "escape":
                if value not in ("`", "\\"):
                    raise self.error(
                        f"invalid escape token '{value}' does not match ` or \\", line_no, 1,
                        hint="use '# escape=\\' or '# escape=`'",
                    )
                self.escape = value
            self.found_directives[name] = value
        return ("" if _is_comment(token) else token), found is not None

    def trim_continuation(self, token: str) -> tuple[str, bool]:
        m = _CONTINUATION[self.escape].search(token)
        if m is None:
            return token, True
        return token[: m.start()] + (m.group(1) or ""), False

    def run(self) -> Dockerfile:
        raw = self.raw
        n = len(raw)
        i = 0
        current = 0
        comments: list[str] = []
        pending: list[_Pending] = []  # instructions waiting for the grammar
        done: list[_Pending] = []
        while i < n:
            line_raw = raw[i]
            i += 1
            if _is_comment(line_raw):
                # BuildKit drops the first character, which is the '#' unless the comment is indented.
                comment = trim_space(line_raw[1:])
                comments = [*comments, comment] if comment else []
            token, is_directive = self.process_line(line_raw, True, current + 1)
            if is_directive:
                comments = comments[:-1]
            current += 1
            start = current
            column = len(line_raw.rstrip("\r\n")) - len(token) + 1 if token else 1
            token, eol = self.trim_continuation(token)
            if eol and not token:
                continue
            parts = [token]
            # (offset in the logical line, physical line, 0-based column) for every piece, for error carets
            segments = [(0, start, column - 1)]
            offset = len(token)
            empty_continuation = False
            while not eol and i < n:
                next_raw = raw[i]
                i += 1
                piece, _ = self.process_line(next_raw, False, current + 1)
                current += 1
                if _is_comment(next_raw):
                    continue
                if not piece.lstrip(US):
                    empty_continuation = True
                    continue
                piece, eol = self.trim_continuation(piece)
                parts.append(piece)
                segments.append((offset, current, 0))
                offset += len(piece)
            line = "".join(parts)
            if empty_continuation:
                self.warnings.append(ParseWarning(
                    "Empty continuation line found in: " + line, current, 0, "NoEmptyContinuation"
                ))
            node = _Pending(line, segments, start, column, tuple(comments), current)
            comments = []
            if "<<" not in line:
                pending.append(node)
                continue
            # Whether the next lines are heredoc bodies depends on this instruction: parse it now (after
            # the ones before it, so that the first error in the file is the one reported).
            self.parse_pending([*pending, node])
            done += pending
            done.append(node)
            pending = []
            if node.heredocs_possible():
                i, current = self.read_heredocs(node, line, i, current)
                node.end = current
        self.parse_pending(pending)
        done += pending
        if not done:
            raise self.error(
                "file with no instructions", max(current, 1), 0,
                hint="a Dockerfile needs at least one instruction, e.g. FROM <image>",
            )
        if self.too_long is not None:
            raise self.error(
                f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES}", self.too_long + 1, 0
            )
        directives = {k: v for k, v in self.found_directives.items() if k == "escape"}
        text = "".join(self.raw)
        for key, match in (("syntax", detect_syntax(text)), ("check", parse_directive("check", text))):
            if match is not None:
                directives[key] = match.value
        return Dockerfile(
            path=self.path, nodes=tuple(p.build() for p in done), escape=self.escape, directives=directives,
            warnings=tuple(self.warnings), lines=self.lines,
        )

    def parse_pending(self, pending: list[_Pending]) -> None:
        """Run the grammar over the instructions that have no RawInstruction yet."""
        todo = [p for p in pending if p.raw is None and p.stripped]
        for p in pending:
            if p.raw is None and not p.stripped:
                # An instruction made of nothing (e.g. a lone "\" line): BuildKit keeps it as an unknown word.
                p.raw = RawInstruction("", 0, (), ("",), False)
        if not todo:
            return
        try:
            results = instruction_parser(self.escape).parse([p.stripped for p in todo])
        except LineError as e:
            bad = todo[e.index]
            line_no, col = bad.position(e.pos)
            raise self.error(e.message, line_no, col) from None
        for p, result in zip(todo, results, strict=True):
            depth = 0
            probe: RawInstruction | None = result
            while probe is not None:
                depth += 1
                if depth > MAX_ONBUILD_DEPTH:
                    raise self.error("ONBUILD instructions nested too deeply", p.start, p.column)
                probe = probe.child
            p.raw = result

    def read_heredocs(self, node: _Pending, line: str, i: int, current: int) -> tuple[int, int]:
        try:
            markers = heredocs_from_line(line)
        except HeredocError as e:
            raise self.error(str(e), node.start, node.column) from None
        for marker in markers:
            body: list[str] = []
            while True:
                if i >= len(self.raw):
                    raise self.error(
                        f"unterminated heredoc {marker.name!r}", node.start, node.column,
                        hint=f"end the heredoc with a line containing only {marker.name}",
                    )
                raw = self.raw[i]
                i += 1
                current += 1
                candidate = raw.rstrip("\r\n")
                if marker.chomp:
                    candidate = candidate.lstrip("\t")
                if candidate == marker.name:
                    break
                body.append(raw)
            node.heredocs.append(Heredoc(
                name=marker.name, content="".join(body), expand=marker.expand, chomp=marker.chomp, fd=marker.fd,
            ))
        return i, current


class _Pending:
    """One logical instruction line on its way to a Node: grammar result and end line come later."""

    def __init__(
        self, line: str, segments: list[tuple[int, int, int]], start: int, column: int, comments: tuple[str, ...],
        end: int,
    ) -> None:
        self.line = line
        stripped = line.lstrip(US)
        self.lead = len(line) - len(stripped)
        self.stripped = stripped.rstrip(US)
        self.segments = segments
        self.start = start
        self.column = column
        self.comments = comments
        self.end = end
        self.raw: RawInstruction | None = None
        self.heredocs: list[Heredoc] = []

    def position(self, pos: int) -> tuple[int, int]:
        """(physical line, 1-based column) of an offset in the stripped logical line."""
        pos += self.lead
        segments = self.segments
        k = 0
        while k + 1 < len(segments) and segments[k + 1][0] <= pos:
            k += 1
        off, line_no, col0 = segments[k]
        return line_no, col0 + (pos - off) + 1

    def heredocs_possible(self) -> bool:
        raw = self.raw
        assert raw is not None
        if go_lower(raw.keyword) == "onbuild" and raw.child is not None:
            raw = raw.child
        return go_lower(raw.keyword) in _HEREDOC_KEYWORDS and not raw.json_form

    def build(self) -> Node:
        assert self.raw is not None
        heredocs = tuple(self.heredocs)
        # Build the ONBUILD chain from the inside out (no recursion over the nesting).
        chain: list[RawInstruction] = []
        probe: RawInstruction | None = self.raw
        while probe is not None:
            chain.append(probe)
            probe = probe.child
        node: Node | None = None
        for depth in range(len(chain) - 1, -1, -1):
            raw = chain[depth]
            line_no, col = self.position(raw.keyword_pos)
            node = Node(
                keyword=go_lower(raw.keyword), args=raw.args, flags=raw.flags, json_form=raw.json_form,
                heredocs=heredocs, child=node,
                original=self.line if depth == 0 else self.stripped[raw.keyword_pos:],
                start_line=self.start, end_line=self.end,
                column=col if line_no == self.start else self.column,
                prev_comments=self.comments if depth == 0 else (),
            )
        assert node is not None
        return node


# ---------------------------------------------------------------------------------------------------------------
# Public API


def parse(data: str | bytes, path: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile text (bytes must be UTF-8). Raises PybuildError with a location on bad input."""
    return _Parser(_decode(data, path), path).run()


def parse_file(path: Path, display: str | None = None) -> Dockerfile:
    """Read and parse a Dockerfile; ``display`` is the name used in messages (default: the path)."""
    name = display if display is not None else str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PybuildError(f"{name}: no such Dockerfile", hint="check the path given with -f") from None
    except IsADirectoryError:
        raise PybuildError(f"{name} is a directory, not a Dockerfile") from None
    except OSError as e:
        raise PybuildError(f"cannot read {name}: {e.strerror or e}") from None
    return parse(data, name)


def dump(node: Node) -> str:
    """BuildKit's test dump of one instruction: ``(copy ["--from=x"] "a" "b")``, ONBUILD nested."""
    parts = [node.keyword]
    if node.flags:
        parts.append("[" + " ".join(go_quote(f) for f in node.flags) + "]")
    if node.child is not None:
        parts.append(dump(node.child))
    parts.extend(go_quote(a) for a in node.args)
    return "(" + trim_space(" ".join(parts)) + ")"
