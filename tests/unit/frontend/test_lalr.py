"""The table-driven instruction parser (pybuild.frontend._lalr) against Lark itself, and its cache file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybuild.frontend import _grammar, _lalr
from pybuild.frontend.parser import parse
from tests.conftest import CONFORMANCE, REPO

ESCAPES = ("\\", "`")
_PARSERS: dict[tuple[str, bool], _grammar.InstructionParser] = {}


def parser(esc: str, tables: bool) -> _grammar.InstructionParser:
    key = (esc, tables)
    if key not in _PARSERS:
        _PARSERS[key] = _grammar.InstructionParser(esc, tables=tables)
    return _PARSERS[key]


def outcome(esc: str, tables: bool, lines: list[str]) -> tuple[Any, ...]:
    try:
        return ("ok", parser(esc, tables).parse(lines))
    except _grammar.LineError as e:
        return ("error", e.message, e.index, e.pos)


def corpus_batches() -> list[tuple[str, list[str]]]:
    """The line lists the real parser hands the grammar for every conformance and real-world Dockerfile."""
    batches: list[tuple[str, list[str]]] = []
    original = _grammar.InstructionParser.parse

    def record(self: _grammar.InstructionParser, lines: list[str]) -> list[_grammar.RawInstruction]:
        batches.append((self._callbacks.esc, list(lines)))
        return original(self, lines)

    paths = [p for p in CONFORMANCE.rglob("*") if p.is_file() and p.suffix not in (".json", ".md")
             and p.name not in ("LICENSE", "LICENSES")]
    _grammar.InstructionParser.parse = record  # type: ignore[method-assign]
    try:
        for path in paths:
            try:
                parse(path.read_bytes())
            except Exception:  # negative cases: what reached the grammar still counts
                pass
    finally:
        _grammar.InstructionParser.parse = original  # type: ignore[method-assign]
    return batches


def test_tables_parse_the_corpus_like_lark() -> None:
    batches = corpus_batches()
    assert len(batches) > 300
    cases = batches + [(esc, [line]) for esc, lines in batches for line in lines]
    differ = [(esc, lines) for esc, lines in cases if outcome(esc, True, lines) != outcome(esc, False, lines)]
    assert not differ, differ[:3]


_PIECES = st.sampled_from([
    "FROM", "RUN", "cmd", "Env", "LABEL", "ARG", "COPY", "ADD", "HEALTHCHECK", "ONBUILD", "EXPOSE", "USER",
    "WORKDIR", "SHELL", "VOLUME", "STOPSIGNAL", "MAINTAINER", "ENTRYPOINT", "NONE", "foo", " ", "\t", "\u00a0",
    "\u2000", "\u3000", "\x85", "\x0b", "\r", "\\", "`", "'", '"', "[", "]", ",", "=", "-", "--", "--from=a",
    '["a", "b"]', "[]", "a", "b=c", "$x", "\\u0041", "\n",
])


@settings(max_examples=400, deadline=None)
@given(esc=st.sampled_from(ESCAPES), lines=st.lists(st.lists(_PIECES, max_size=10).map("".join), min_size=1,
                                                    max_size=3))
def test_tables_parse_random_lines_like_lark(esc: str, lines: list[str]) -> None:
    # not only valid input: empty lines and stray newlines exercise the error paths (kind, line, column)
    assert outcome(esc, True, lines) == outcome(esc, False, lines)


def _run_parse(cache: Path, code: str = "") -> subprocess.CompletedProcess[str]:
    code = code or ("import sys; from pybuild.frontend.parser import parse, dump; "
                    "print(dump(parse('FROM x').nodes[0]), 'lark' in sys.modules)")
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "XDG_CACHE_HOME": str(cache)}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_tables_are_cached_and_lark_is_not_imported_then(tmp_path: Path) -> None:
    p = _run_parse(tmp_path)
    assert p.returncode == 0 and p.stdout == '(from "x") True\n', p.stderr
    (tables,) = (tmp_path / "pybuild").glob("dockerfile-tables-backslash-*.marshal")
    before = tables.stat().st_mtime_ns
    p = _run_parse(tmp_path)
    assert p.returncode == 0 and p.stdout == '(from "x") False\n', p.stderr
    assert tables.stat().st_mtime_ns == before


@pytest.mark.parametrize("content", [b"garbage", b""])
def test_corrupt_tables_are_rebuilt(tmp_path: Path, content: bytes) -> None:
    assert _run_parse(tmp_path).returncode == 0
    (tables,) = (tmp_path / "pybuild").glob("dockerfile-tables-backslash-*.marshal")
    tables.write_bytes(content)
    p = _run_parse(tmp_path)
    assert p.returncode == 0 and p.stdout == '(from "x") True\n', p.stderr
    assert _lalr.load(tables) is not None


def test_tables_of_another_grammar_or_lark_are_not_used(tmp_path: Path) -> None:
    assert _run_parse(tmp_path).returncode == 0
    (path,) = (tmp_path / "pybuild").glob("dockerfile-tables-backslash-*.marshal")
    tables = _lalr.load(path)
    assert tables is not None and tables["source"][0] == _grammar.grammar_text(_grammar.GRAMMAR_FILE)
    tables["source"] = [tables["source"][0], "some other lark"]
    _lalr.save(path, tables)
    p = _run_parse(tmp_path)
    assert p.returncode == 0 and p.stdout == '(from "x") True\n', p.stderr  # rebuilt with Lark
    rebuilt = _lalr.load(path)
    assert rebuilt is not None and rebuilt["source"][1] != "some other lark"
