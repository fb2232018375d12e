"""BuildKit's raw-parser conformance data (shared/conformance/buildkit/parser) against pybuild.frontend.parser.

Covers every positive testfile (dump byte for byte), every negative testfile (must fail), and every section of
parser-cases.json that concerns the raw parser. Cases we cannot pass go in KNOWN_FAILURES with a reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pybuild.errors import PybuildError
from pybuild.frontend._golang import NotStringArray, json_string_array
from pybuild.frontend._heredoc import HeredocError, chomp, heredocs_from_line, parse_heredoc_word
from pybuild.frontend.parser import detect_syntax, dump, parse, parse_directive
from tests.conftest import CONFORMANCE

PARSER = CONFORMANCE / "buildkit" / "parser"
POSITIVE = sorted(p for p in (PARSER / "testfiles").iterdir() if p.is_dir())
NEGATIVE = sorted(p for p in (PARSER / "testfiles-negative").iterdir() if p.is_dir())
CASES: dict[str, Any] = json.loads((PARSER / "parser-cases.json").read_text(encoding="utf-8"))

# case id -> why we do not pass it. Should stay empty; the one entry is a mistake in the hand-written summary,
# where we follow what BuildKit's code does rather than what the summary says.
KNOWN_FAILURES: dict[str, str] = {
    "heredocs_from_line:RUN <<- EOF": (
        "BuildKit's lexer splits this line into the words '<<-' and 'EOF' (only blanks directly after '<<' are "
        "glued to it), so BuildKit finds no heredoc; its Go test loops over the heredocs found and so checks "
        "nothing for this line. parser-cases.json copied the expected names literally."
    ),
}


def _check_known(case: str) -> None:
    if case in KNOWN_FAILURES:
        pytest.xfail(KNOWN_FAILURES[case])


def test_the_data_is_there() -> None:
    assert len(POSITIVE) == 33 and len(NEGATIVE) == 4


@pytest.mark.parametrize("case", POSITIVE, ids=[p.name for p in POSITIVE])
def test_testfiles_dump(case: Path) -> None:
    _check_known(case.name)
    df = parse((case / "Dockerfile").read_bytes(), str(case / "Dockerfile"))
    got = "".join(dump(node) + "\n" for node in df.nodes)
    assert got.encode("utf-8") == (case / "result").read_bytes()


@pytest.mark.parametrize("case", NEGATIVE, ids=[p.name for p in NEGATIVE])
def test_testfiles_negative(case: Path) -> None:
    _check_known(case.name)
    with pytest.raises(PybuildError) as e:
        parse((case / "Dockerfile").read_bytes(), "Dockerfile")
    assert e.value.location is not None and e.value.location.file == "Dockerfile"


# ---- heredocs


def test_heredoc_extraction() -> None:
    section = CASES["heredoc_extraction"]
    df = parse(section["dockerfile"])
    assert len(df.nodes) == len(section["instructions"])
    for want in section["instructions"]:
        node = df.nodes[want["instruction_index"]]
        assert node.original == want["source"]
        got = [
            {"name": h.name, "content": h.content, "expand": h.expand, "chomp": h.chomp, "fd": h.fd or 0}
            for h in node.heredocs
        ]
        assert got == want["heredocs"], want["source"]


def test_heredoc_extraction_line_numbers() -> None:
    df = parse(CASES["heredoc_extraction"]["dockerfile"])
    # "RUN <<INDENT" is on line 19; its body is two lines and the terminator is line 22
    node = df.nodes[8]
    assert (node.start_line, node.end_line) == (19, 22)
    assert [(n.start_line, n.end_line) for n in df.nodes[3:6]] == [(8, 8), (9, 9), (11, 12)]


def test_json_form_never_heredoc() -> None:
    df = parse(CASES["json_form_never_heredoc"]["dockerfile"])
    assert [n.heredocs for n in df.nodes[1:4]] == [(), (), ()]
    assert all(n.json_form for n in df.nodes[1:4])


def test_heredoc_chomp() -> None:
    section = CASES["heredoc_chomp"]
    assert chomp(section["input"]) == section["output"]


@pytest.mark.parametrize("word", CASES["heredoc_word"]["valid_name_EOF"])
def test_heredoc_word_valid(word: str) -> None:
    doc = parse_heredoc_word(word)
    assert doc is not None and doc.name == "EOF"
    assert doc.chomp == word.startswith("<<-")
    assert doc.expand == ("'" not in word and '"' not in word)


@pytest.mark.parametrize("word", CASES["heredoc_word"]["error_unterminated_quote"])
def test_heredoc_word_unterminated(word: str) -> None:
    with pytest.raises(HeredocError, match="unexpected end of statement"):
        parse_heredoc_word(word)


@pytest.mark.parametrize("word", CASES["heredoc_word"]["not_a_heredoc"])
def test_heredoc_word_not_heredoc(word: str) -> None:
    assert parse_heredoc_word(word) is None


@pytest.mark.parametrize("case", CASES["heredocs_from_line"], ids=lambda c: c["line"])
def test_heredocs_from_line(case: dict[str, Any]) -> None:
    _check_known(f"heredocs_from_line:{case['line']}")
    assert [h.name for h in heredocs_from_line(case["line"])] == case["names"]


# ---- JSON arrays


@pytest.mark.parametrize("case", CASES["json_arrays"]["valid"], ids=lambda c: c["text"])
def test_json_array_valid(case: dict[str, Any]) -> None:
    assert json_string_array(case["text"]) == case["values"]
    # and through the grammar, in every instruction that has a JSON form
    for keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "ADD", "COPY", "VOLUME"):
        node = parse(f"{keyword} {case['text']}").nodes[0]
        assert node.json_form and list(node.args) == case["values"], keyword
    node = parse(f"HEALTHCHECK CMD {case['text']}").nodes[0]
    assert node.json_form and list(node.args) == ["CMD", *case["values"]]


@pytest.mark.parametrize("text", CASES["json_arrays"]["error_not_all_strings"])
def test_json_array_not_all_strings(text: str) -> None:
    with pytest.raises(NotStringArray):
        json_string_array(text)
    for keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "ADD", "COPY", "VOLUME", "HEALTHCHECK CMD"):
        with pytest.raises(PybuildError, match="arrays must be comprised of strings only") as e:
            parse(f"{keyword} {text}")
        assert e.value.location is not None
        assert (e.value.location.line, e.value.location.column) == (1, len(keyword) + 2)


# ---- word splitting


@pytest.mark.parametrize("case", CASES["parse_words"]["cases"], ids=lambda c: c["input"])
def test_parse_words(case: dict[str, Any]) -> None:
    # ARG keeps parseWords' words as they are
    assert list(parse(f"ARG {case['input']}").nodes[0].args) == case["words"]


@pytest.mark.parametrize("case", CASES["name_value"], ids=lambda c: f"{c['instruction']} {c['args']}")
def test_name_value(case: dict[str, Any]) -> None:
    text = f"{case['instruction']} {case['args']}"
    if "error" in case:
        with pytest.raises(PybuildError) as e:
            parse(text)
        assert e.value.message == case["error"]
    else:
        assert list(parse(text).nodes[0].args) == case["values"]


# ---- line numbers, warnings, limits


def test_line_numbers() -> None:
    section = CASES["line_numbers"]
    df = parse((PARSER / section["dockerfile"]).read_bytes())
    root = section["root"]
    assert (df.nodes[0].start_line, df.nodes[-1].end_line) == (root["start_line"], root["end_line"])
    assert [(n.start_line, n.end_line) for n in df.nodes] == [
        (i["start_line"], i["end_line"]) for i in section["instructions"]
    ]


def test_empty_continuation_warning() -> None:
    section = CASES["empty_continuation_warning"]
    df = parse(section["dockerfile"])
    assert len(df.warnings) == section["warnings"]
    text = "\n".join(w.message for w in df.warnings)
    for piece in section["warning_texts_contain"]:
        assert piece in text
    assert all(w.rule == "NoEmptyContinuation" for w in df.warnings)


@pytest.mark.parametrize("text", ["FROM image\nLABEL test=" + "a" * 65536 + "\n", "a" * 65536])
def test_line_too_long(text: str) -> None:
    expected = CASES["line_too_long"]["error_equals"]
    if not text.startswith("FROM"):
        with pytest.raises(PybuildError):  # no instruction before the long line: that error wins, as in BuildKit
            parse(text)
        return
    with pytest.raises(PybuildError) as e:
        parse(text)
    assert e.value.message == expected
    assert e.value.location is not None and e.value.location.line == 2


def test_line_of_65535_bytes_is_fine() -> None:
    df = parse("FROM image\nLABEL t=" + "a" * (65535 - len("LABEL t=")) + "\n")
    assert len(df.nodes[1].args[1]) == 65535 - len("LABEL t=")


# ---- directives


@pytest.mark.parametrize("case", CASES["directives"]["cases"], ids=lambda c: repr(c["text"]))
def test_directives(case: dict[str, Any]) -> None:
    # the directive block is followed by comments only: add an instruction so the file parses
    df = parse(case["text"] + "FROM x\n")
    assert [{"name": k, "value": v} for k, v in df.directives.items()] == case["directives"]


@pytest.mark.parametrize("case", CASES["directives"]["detect_syntax"], ids=lambda c: repr(c["text"]))
def test_detect_syntax(case: dict[str, Any]) -> None:
    found = detect_syntax(case["text"])
    assert (found is not None) == case["found"]
    if found is not None:
        assert found.value == case["ref"]
        if "cmdline" in case:
            assert found.cmdline == case["cmdline"]
        if "line" in case:
            assert found.line == case["line"]


@pytest.mark.parametrize("case", CASES["directives"]["check_directive"], ids=lambda c: repr(c["text"]))
def test_check_directive(case: dict[str, Any]) -> None:
    found = parse_directive("check", case["text"])
    assert (found is not None) == case["found"]
    if found is not None:
        assert (found.value, found.line) == (case["value"], case["line"])
        if "cmdline" in case:
            assert found.cmdline == case["cmdline"]
