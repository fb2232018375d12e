"""A small LALR(1) runtime for the instruction grammar: Lark's tables, without importing Lark on every run.

Lark builds the parser (grammar/dockerfile.lark, parser="lalr", lexer="contextual"); ``export`` copies out what
parsing needs (the parse table, each state's terminals in Lark's matching order, which children each rule keeps
and which callback builds its value) as plain data that ``save``/``load`` keep in the cache directory with
marshal. ``TableParser`` then parses with those tables the way Lark's LALR parser and contextual lexer do:
importing Lark, unpickling its parser and compiling one union regex per lexer state cost ~30 ms per process,
which was most of `pybuild check` on a small file. Terminals are compiled one at a time, when a state first
tries them: a state's union regex returns its first alternative that matches, so trying its terminals in the
same order gives the same token.

``export`` returns None for anything this runtime does not reproduce (ignored or embedded string terminals,
token callbacks, rule shapes other than Lark's plain LALR child filter); the caller then parses with Lark.
"""

from __future__ import annotations

import marshal
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

FORMAT = 3  # bump when the tables' layout changes

# tables["states"][state][symbol] = (shift, arg): shift to state arg, or reduce by rule number arg.
Tables = dict[str, Any]


class Token:
    """A lexed terminal, with the attributes the grammar callbacks read from a Lark Token."""

    __slots__ = ("column", "line", "type", "value")

    def __init__(self, type: str, value: str, line: int, column: int) -> None:
        self.type = type
        self.value = value
        self.line = line
        self.column = column

    def __repr__(self) -> str:
        return f"Token({self.type!r}, {self.value!r})"


class Tree:
    """What a rule without a callback builds (Lark's default Tree): only ever inlined into its parent."""

    __slots__ = ("children", "data")

    def __init__(self, data: str, children: list[Any]) -> None:
        self.data = data
        self.children = children


class ParseError(Exception):
    """Input the tables reject; ``kind`` is the Lark exception Lark would have raised, line/column 1-based."""

    def __init__(self, kind: str, line: int, column: int) -> None:
        super().__init__(f"{kind} at line {line} column {column}")
        self.kind = kind
        self.line = line
        self.column = column


def export(lark: Any) -> Tables | None:
    """The tables of a Lark instance (LALR, contextual lexer), or None if it uses what TableParser lacks."""
    from lark import lexer as lark_lexer
    from lark.lexer import PatternRE
    from lark.parsers.lalr_analysis import Shift

    create_unless: Any = lark_lexer._create_unless  # what BasicLexer does to string terminals and callbacks

    frontend = lark.parser
    options = lark.options
    conf = lark.lexer_conf
    if (options.parser != "lalr" or options.lexer != "contextual" or options.postlex is not None
            or options.lexer_callbacks or conf.ignore or conf.g_regex_flags or conf.use_bytes or options.regex):
        return None
    transformer = options.transformer
    table = frontend.parser.parser.parse_table
    builders = lark._parse_tree_builder.rule_builders
    rule_index = {rule: i for i, (rule, _) in enumerate(builders)}
    rules = []
    for rule, chain in builders:
        include = None
        for wrapper in chain:
            if getattr(getattr(wrapper, "func", None), "__name__", "") != "ChildFilterLALR_NoPlaceholders":
                return None
            include = tuple((int(i), bool(expand)) for i, expand in wrapper.args[0])
        name = rule.alias or rule.options.template_source or rule.origin.name
        if not hasattr(transformer, name) and not name.startswith("_"):
            return None  # a Tree that is not inlined would reach the callbacks
        rules.append((str(rule.origin.name), len(rule.expansion), str(name), include))
    terminals = {str(t.name): t for t in conf.terminals}  # Lark's names may be str subclasses: not marshallable
    if any(hasattr(transformer, name) for name in terminals):
        return None  # token callbacks
    lexer_orders: dict[tuple[str, ...], int] = {}
    lexers = {}
    for state, lexer in frontend.lexer.lexers.items():
        kept, callbacks = create_unless(lexer.terminals, 0, re, False)
        if callbacks or len(kept) != len(lexer.terminals) or lexer.ignore_types or lexer.user_callbacks:
            return None
        order = tuple(str(t.name) for t in lexer.terminals)
        lexers[int(state)] = lexer_orders.setdefault(order, len(lexer_orders))
    root = tuple(str(t.name) for t in frontend.lexer.root_lexer.terminals)
    if (set(table.start_states) != {"start"} or set(table.end_states) != {"start"}
            or not all(isinstance(t.pattern, PatternRE) or t.name.startswith("_") for t in terminals.values())):
        return None
    states = {
        int(state): {str(sym): (True, int(arg)) if action is Shift else (False, rule_index[arg])
                     for sym, (action, arg) in actions.items()}
        for state, actions in table.states.items()
    }
    return {
        "format": FORMAT,
        "terminals": {name: str(t.pattern.to_regexp()) for name, t in terminals.items()},
        "orders": [list(order) for order in lexer_orders],
        "lexers": lexers,
        "root": list(root),
        "states": states,
        "rules": rules,
        "start": int(table.start_states["start"]),
        "end": int(table.end_states["start"]),
    }


def load(path: Path) -> Tables | None:
    """Tables saved by ``save``; None if the file is missing, unreadable, corrupt or of another format."""
    try:
        data = marshal.loads(path.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return data


def save(path: Path, tables: Tables) -> None:
    """Write the tables atomically (temp file + rename); a directory we cannot write is not an error."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tables-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(marshal.dumps(tables))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except (OSError, ValueError):  # ValueError: marshal met an object it cannot write (a bug: parse with Lark)
        pass


class TableParser:
    """Parses text with exported tables, calling ``transformer``'s methods the way Lark's LALR parser would."""

    def __init__(self, tables: Tables, transformer: object) -> None:
        self._states: dict[int, dict[str, tuple[bool, int]]] = tables["states"]
        self._start: int = tables["start"]
        self._end: int = tables["end"]
        self._patterns: dict[str, str] = tables["terminals"]
        self._root: list[str] = tables["root"]
        orders: list[list[str]] = tables["orders"]
        self._lexers: dict[int, list[str]] = {state: orders[i] for state, i in tables["lexers"].items()}
        self._compiled: dict[str, Callable[[str, int], re.Match[str] | None]] = {}
        self._rules: list[tuple[str, int, Callable[[list[Any]], Any], tuple[tuple[int, bool], ...] | None]] = []
        for origin, size, name, include in tables["rules"]:
            method = getattr(transformer, name, None)
            if method is None:
                def method(children: list[Any], _name: str = name) -> Tree:
                    return Tree(_name, children)
            self._rules.append((origin, size, method, include))

    def _match(self, name: str, text: str, pos: int) -> re.Match[str] | None:
        matcher = self._compiled.get(name)
        if matcher is None:
            matcher = self._compiled[name] = re.compile(self._patterns[name]).match
        return matcher(text, pos)

    def parse(self, text: str) -> Any:
        states, rules = self._states, self._rules
        stack = [self._start]
        values: list[Any] = []
        pos, line, line_start, end = 0, 1, 0, len(text)
        token: Token | None = None
        while True:
            if pos < end:
                for name in self._lexers[stack[-1]]:
                    m = self._match(name, text, pos)
                    if m is not None:
                        break
                else:
                    # Lark's contextual lexer: UnexpectedToken if the text is a terminal of some other state
                    kind = "UnexpectedCharacters"
                    if any(self._match(name, text, pos) for name in self._root):
                        kind = "UnexpectedToken"
                    raise ParseError(kind, line, pos - line_start + 1)
                value = m.group(0)
                token = Token(name, value, line, pos - line_start + 1)
                pos += len(value)
                newlines = value.count("\n")
                if newlines:
                    line += newlines
                    line_start = pos - len(value) + value.rindex("\n") + 1
                is_end = False
            else:
                token = Token("$END", "", token.line, token.column) if token else Token("$END", "", 1, 1)
                is_end = True
            while True:  # feed the token: reduce until it can be shifted (or, at the end, accepted)
                action = states[stack[-1]].get(token.type)
                if action is None:
                    raise ParseError("UnexpectedToken", token.line, token.column)
                shift, arg = action
                if shift:
                    stack.append(arg)
                    values.append(token)
                    break
                origin, size, method, include = rules[arg]
                if size:
                    children = values[-size:]
                    del stack[-size:]
                    del values[-size:]
                else:
                    children = []
                if include is not None:
                    kept: list[Any] = []
                    for i, expand in include:
                        if expand:
                            kept += children[i].children
                        else:
                            kept.append(children[i])
                    children = kept
                values.append(method(children))
                stack.append(states[stack[-1]][origin][1])
                if is_end and stack[-1] == self._end:
                    return values[-1]
