"""The raw Dockerfile syntax tree: what the parser produces, with source positions.

This mirrors BuildKit's raw parser: each logical instruction becomes one Node with its keyword, its leading
``--flag`` words and its arguments split according to the instruction (see the conformance FORMAT.md §1).
It knows nothing about meaning (argument counts, expansion) and nothing about execution; the instruction
layer (pybuild.frontend.instructions) turns nodes into typed instructions.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heredoc:
    """One ``<<EOF`` body attached to a RUN/COPY/ADD node."""

    name: str  # the delimiter word, quotes removed
    content: str  # the body exactly as read, every line with its newline; NOT chomped (as BuildKit): apply chomp later
    expand: bool  # False when the delimiter was quoted: no $VAR expansion in the body
    chomp: bool  # True for <<-EOF: leading tabs removed from each body line
    fd: int | None = None  # e.g. 3<<EOF; None when not given


@dataclass(frozen=True)
class Node:
    """One instruction as written.

    keyword is lower-cased; ``flags`` are the leading ``--flag`` words with quotes removed (as BuildKit
    records them, e.g. ``--from=build``); ``args`` are split as BuildKit's raw parser splits them for this
    keyword. For ENV and LABEL, args are triples (key, value, separator) flattened in order.
    ``original`` is the logical line with continuations joined, as BuildKit's Node.Original.
    ``child`` holds the nested instruction of ONBUILD.
    """

    keyword: str
    args: tuple[str, ...]
    flags: tuple[str, ...] = ()
    json_form: bool = False
    heredocs: tuple[Heredoc, ...] = ()
    child: Node | None = None
    original: str = ""
    start_line: int = 0  # 1-based, first physical line of the instruction
    end_line: int = 0  # last physical line (including heredoc bodies)
    column: int = 1  # column of the keyword on start_line
    prev_comments: tuple[str, ...] = ()  # comment lines directly above (doc comments for ARG/stages)


@dataclass(frozen=True)
class ParseWarning:
    """A warning the parser found (e.g. an empty continuation line)."""

    message: str
    line: int
    column: int = 0
    rule: str = ""  # e.g. "NoEmptyContinuation"


@dataclass(frozen=True)
class Dockerfile:
    """A whole parsed file."""

    path: str  # as the user named it (for messages)
    nodes: tuple[Node, ...]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)  # lower-cased name -> value
    warnings: tuple[ParseWarning, ...] = ()
    lines: tuple[str, ...] = ()  # physical source lines, for error carets
