"""The Lark side of the parser: loading grammar/dockerfile.lark, caching the built LALR parser, and turning
the grammar's tokens for one logical line into a RawInstruction (keyword, flags, split arguments).

The grammar decides the structure (which keyword, which tokens are flags, JSON or shell form, legacy or
key=value ENV, ...); the callbacks here only compute token values (strip the separator the token starts
with, remove quotes from flags, decode JSON, cut ENV words at "=") and raise LineError for the few
instruction-level errors BuildKit's raw parser reports. Lark is imported only to build the parser: its
tables are then kept in the cache directory and parsing runs on them (pybuild.frontend._lalr), so a process
that finds them never imports Lark (about 40 ms to build, ~30 ms to load Lark's own cache, ~1 ms the tables).
"""

from __future__ import annotations

import os
import sys
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pybuild.errors import PybuildError
from pybuild.frontend import _lalr
from pybuild.frontend._golang import BL, SP, US, NotStringArray, json_string_array

GRAMMAR_FILE = "dockerfile.lark"
BACKTICK_FILE = "dockerfile_backtick.lark"
_SP = SP.replace("\n", "")


@dataclass(frozen=True)
class RawInstruction:
    """One instruction as the grammar split it."""

    keyword: str  # as written
    keyword_pos: int  # offset of the keyword in its (trimmed) logical line
    flags: tuple[str, ...]
    args: tuple[str, ...]
    json_form: bool
    child: RawInstruction | None = None  # the instruction nested in ONBUILD


class LineError(Exception):
    """An error in logical line number ``index`` (0-based, of the lines parsed together) at offset ``pos``."""

    def __init__(self, message: str, index: int, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.index = index
        self.pos = pos


def _error_at(message: str, tok: Any, skip: str = "") -> LineError:
    """A LineError pointing at a token's text after its leading separator characters ``skip``."""
    value = tok.value
    return LineError(message, tok.line - 1, tok.column - 1 + len(value) - len(value.lstrip(skip)))


def grammar_text(name: str) -> str:
    """A grammar file: from the installed package pybuild.grammar, else from <repo>/grammar/."""
    try:  # the package's directory, as installed or in the repo: importlib.resources costs ~5 ms to import
        return (Path(__file__).parent.parent / "grammar" / name).read_text(encoding="utf-8")
    except OSError:
        pass
    try:  # a zipped install
        from importlib.resources import files

        return files("pybuild.grammar").joinpath(name).read_text(encoding="utf-8")
    except (ImportError, OSError):
        pass
    try:
        return (Path(__file__).resolve().parents[2] / "grammar" / name).read_text(encoding="utf-8")
    except OSError as e:
        raise PybuildError(f"pybuild's grammar file {name} is missing: {e}", hint="reinstall pybuild") from None


def cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pybuild"


def _unquote_flag(word: str, esc: str) -> str:
    """Flag words lose their quotes; the escape character keeps the next character (also inside quotes)."""
    if "'" not in word and '"' not in word and esc not in word:
        return word
    out: list[str] = []
    quote = ""
    i, n = 0, len(word)
    while i < n:
        ch = word[i]
        i += 1
        if quote and ch == quote:
            quote = ""
            continue
        if not quote and ch in "'\"":
            quote = ch
            continue
        if ch == esc:
            if i == n:  # an escape at the very end is dropped
                break
            ch = word[i]
            i += 1
        out.append(ch)
    return "".join(out)


class _Callbacks:
    """Inline LALR callbacks, one per instruction rule; ``esc`` is the escape character.

    Lark looks callbacks up by rule name, so helpers must not be named like a rule (_words, _maybe_json...).
    """

    esc = "\\"

    # -- shared pieces

    def _head(self, children: list[Any]) -> tuple[str, int, list[str], list[Any]]:
        kw = children[0]
        text = kw.value.lstrip(US)
        flags = []
        rest = []
        for tok in children[1:]:
            kind = getattr(tok, "type", "")
            if kind == "FLAG":
                value = _unquote_flag(tok.value.lstrip(_SP), self.esc)
                if value != "--":  # a bare "--" at the end of the line is not recorded either
                    flags.append(value)
            elif kind != "FLAGS_END":
                rest.append(tok)
        return text, kw.column - 1 + len(kw.value) - len(text), flags, rest

    def _json(self, tok: Any, text: str) -> list[str] | None:
        try:
            return json_string_array(text)
        except NotStringArray as e:
            raise _error_at(str(e), tok, US) from None

    def _args_json(self, toks: list[Any], strip: str = US) -> tuple[tuple[str, ...], bool]:
        if not toks:
            return (), False
        tok = toks[0]
        if tok.type == "JSON_ARRAY":
            values = self._json(tok, tok.value)
            if values is not None:
                return tuple(values), True
        text = tok.value.lstrip(strip)
        if text.startswith("["):
            values = self._json(tok, text)
            if values is not None:  # only if the grammar's JSON terminal missed a valid array
                return tuple(values), True
        return (text,), False

    def _args_words(self, toks: list[Any]) -> tuple[str, ...]:
        return tuple(t.value.lstrip(US if t.type == "FIRST_WORD" else BL) for t in toks)

    def _args_json_list(self, toks: list[Any]) -> tuple[tuple[str, ...], bool]:
        if toks and toks[0].type == "JSON_ARRAY":
            return self._args_json(toks)
        if toks and toks[0].value.lstrip(US).startswith("["):
            values = self._json(toks[0], "".join(t.value for t in toks))
            if values is not None:
                return tuple(values), True
        return self._args_words(toks), False

    def _args_name_value(self, toks: list[Any], name: str, kw: Any) -> tuple[str, ...]:
        if not toks:
            return ()
        if toks[0].type == "LEGACY_KEY":
            if len(toks) < 2:
                raise _error_at(f"{name} must have two arguments", kw, US)
            return (toks[0].value.lstrip(US), toks[1].value.lstrip(BL), "")
        out: list[str] = []
        for tok in toks:
            if tok.type != "PWORD":
                continue
            word = tok.value.lstrip(US)
            key, eq, value = word.partition("=")
            if not eq:
                raise _error_at(
                    f'Syntax error - can\'t find = in "{word}". Must be of the form: name=value', tok, US
                )
            out += (key, value, "=")
        return tuple(out)

    def _make(self, children: list[Any], kind: str) -> RawInstruction:
        kw, pos, flags, toks = self._head(children)
        json_form = False
        child = None
        args: tuple[str, ...] = ()
        if kind == "maybe_json":
            args, json_form = self._args_json(toks)
        elif kind == "list":
            args, json_form = self._args_json_list(toks)
        elif kind == "words":
            args = self._args_words(toks)
        elif kind == "env":
            args = self._args_name_value(toks, "ENV", children[0])
        elif kind == "label":
            args = self._args_name_value(toks, "LABEL", children[0])
        elif kind == "arg":
            args = tuple(t.value.lstrip(US) for t in toks if t.type == "PWORD")
        elif kind == "health":
            if toks:
                typ = toks[0].value.lstrip(US)
                rest, json_form = self._args_json(toks[1:], strip=_SP)
                args = (typ, *rest)
        elif kind == "string":
            args = (toks[0].value.lstrip(US),) if toks else ()
        elif kind == "onbuild":
            if toks:
                child = toks[0]
        else:  # unknown instruction: kept, with one empty argument
            args = ("",)
        return RawInstruction(kw, pos, tuple(flags), args, json_form, child)

    # -- one callback per rule of the grammar

    def start(self, children: list[Any]) -> list[RawInstruction]:
        return children

    def run(self, c: list[Any]) -> RawInstruction:
        return self._make(c, "maybe_json")

    cmd = entrypoint = shell = run

    def add(self, c: list[Any]) -> RawInstruction:
        return self._make(c, "list")

    copy = volume = add

    def expose(self, c: list[Any]) -> RawInstruction:
        return self._make(c, "words")

    def env(self, c: list[Any]) -> RawInstruction:
        return self._make(c, "env")

    def label(self, c: list[Any]) -> RawInstruction:
        return self._make(c, "label")

    def arg(self, c: list[Any]) -> RawInstruction:
        return self._make(c, "arg")

    def healthcheck(self, c: list[Any]) -> RawInstruction:
        return self._make(c, "health")

    def maintainer(self, c: list[Any]) -> RawInstruction:
        return self._make(c, "string")

    stopsignal = user = workdir = maintainer

    def onbuild(self, c: list[Any]) -> RawInstruction:
        return self._make(c, "onbuild")

    def unknown(self, c: list[Any]) -> RawInstruction:
        return self._make(c, "unknown")


setattr(_Callbacks, "from", _Callbacks.expose)  # the rule is named "from", a Python keyword


class InstructionParser:
    """The LALR parser for one escape character, built once per process and cached on disk across them.

    Parsing runs on tables exported from Lark (pybuild.frontend._lalr), kept in the cache directory: a run that
    finds them imports no Lark. Lark builds them when they are missing or stale (from its own cache file).
    """

    def __init__(self, esc: str, *, tables: bool = True) -> None:
        """``tables=False`` parses with Lark itself (the tests compare the two)."""
        text = grammar_text(GRAMMAR_FILE)
        if esc == "`":
            text += "\n" + grammar_text(BACKTICK_FILE)
        self._callbacks = _Callbacks()
        self._callbacks.esc = esc
        self._lock = threading.Lock()
        self._lark: Any = None
        variant = "backtick" if esc == "`" else "backslash"
        # What the tables are made from, compared whole on load (no stale tables); its checksum names the file,
        # so that two installs sharing the cache directory (another Lark, another pybuild) do not take turns.
        source = [text, _lark_fingerprint(), _lalr.FORMAT, list(sys.version_info[:2])]
        tables_path = cache_dir() / f"dockerfile-tables-{variant}-{zlib.crc32(repr(source).encode()):08x}.marshal"
        loaded = _lalr.load(tables_path) if tables else None
        if loaded is None or loaded.get("source") != source:
            options: dict[str, Any] = {"parser": "lalr", "lexer": "contextual", "transformer": self._callbacks}
            self._lark = self._load(text, options, variant)
            loaded = _lalr.export(self._lark) if tables else None
            if loaded is not None:
                loaded["source"] = source
                _lalr.save(tables_path, loaded)
        self._tables = _lalr.TableParser(loaded, self._callbacks) if loaded is not None else None

    @staticmethod
    def _load(text: str, options: dict[str, Any], variant: str) -> Any:
        import hashlib

        lark = _import_lark()
        key = hashlib.sha256(f"{text}\0{lark.__version__}\0{sys.version_info[:2]}".encode()).hexdigest()[:24]
        directory = cache_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            return lark.Lark(text, **options)  # no cache directory: build in memory every time
        # Lark checks the grammar hash stored in the file, rebuilds a corrupt or stale cache and ignores a cache
        # it cannot write (read-only directory). The cache path is part of Lark's hash, so it must never change.
        return lark.Lark(text, cache=str(directory / f"dockerfile-{variant}-{key}.lark-cache"), **options)

    def parse(self, lines: list[str]) -> list[RawInstruction]:
        """Parse trimmed, non-empty logical lines (one parser run for all of them). Raises LineError."""
        with self._lock:
            if self._tables is not None:
                try:
                    result: list[RawInstruction] = self._tables.parse("\n".join(lines))
                except _lalr.ParseError as e:
                    raise LineError(f"cannot parse instruction ({e.kind})", e.line - 1, e.column - 1) from None
                return result
            from lark.exceptions import UnexpectedInput

            try:
                result = self._lark.parse("\n".join(lines))
            except UnexpectedInput as e:
                # The grammar accepts every line; reaching this is a bug, reported as a parse error anyway.
                line, column = getattr(e, "line", 1), getattr(e, "column", 1)
                raise LineError(f"cannot parse instruction ({e.__class__.__name__})", line - 1, column - 1) from None
            return result


def _lark_fingerprint() -> str:
    """Which Lark is installed (its __init__.py's path, size and time), without importing it."""
    from importlib.util import find_spec

    try:
        spec = find_spec("lark")
        origin = spec.origin if spec is not None else None
        st = os.stat(origin) if origin else None
    except (ImportError, ValueError, OSError):
        return ""
    return f"{origin}:{st.st_size}:{st.st_mtime_ns}" if st else ""


def _import_lark() -> Any:
    """Import Lark without its optional ``regex`` module: we never ask for it, and importing it costs ~6 ms."""
    if "lark" in sys.modules or "regex" in sys.modules:
        import lark

        return lark
    sys.modules["regex"] = None  # type: ignore[assignment]  # makes `import regex` raise ImportError
    try:
        import lark
    finally:
        if sys.modules.get("regex", 0) is None:
            del sys.modules["regex"]
    return lark


_PARSERS: dict[str, InstructionParser] = {}


def instruction_parser(esc: str) -> InstructionParser:
    parser = _PARSERS.get(esc)
    if parser is None:
        parser = _PARSERS[esc] = InstructionParser(esc)
    return parser
