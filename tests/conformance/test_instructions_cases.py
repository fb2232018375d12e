"""Every case of shared/conformance/buildkit/instructions-cases.json against the instruction layer.

'dockerfile' is parsed with the real parser; the instruction checked is the first one (FORMAT.md §4).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pybuild.errors import PybuildError
from pybuild.frontend.instructions import handle_json_args, parse_dockerfile, parse_instruction
from pybuild.frontend.parser import parse
from pybuild.model import instructions as ins
from pybuild.model.ast import Node
from tests.conftest import CONFORMANCE

CASES: dict[str, Any] = json.loads((CONFORMANCE / "buildkit" / "instructions-cases.json").read_text())


def _first(text: str) -> ins.Instruction:
    df = parse(text)
    return parse_instruction(df.nodes[0], df.path, df.lines)


@pytest.mark.parametrize("case", CASES["error_cases"], ids=[c["name"] for c in CASES["error_cases"]])
def test_error_case(case: dict[str, Any]) -> None:
    with pytest.raises(PybuildError) as e:
        _first(case["dockerfile"])
    if "error_equals" in case:
        assert e.value.message == case["error_equals"]
    else:
        assert case["error_contains"] in e.value.message
    assert e.value.location is not None and e.value.location.line == 1


def _check_ok(expect: dict[str, Any], text: str) -> None:
    if "global_args" in expect:  # doc comments: the whole file
        parsed = parse_dockerfile(parse(text))
        got_globals = [{"key": a.key, "doc_comment": a.doc_comment} for m in parsed.meta_args for a in m.args]
        assert got_globals == expect["global_args"]
        for stage, want in zip(parsed.stages, expect["stages"], strict=True):
            assert stage.from_.doc_comment == want["doc_comment"]
            got_cmds = [
                {"type": c.name, "args": [{"key": a.key, "doc_comment": a.doc_comment} for a in c.args]}
                for c in stage.commands if isinstance(c, ins.Arg)
            ]
            assert got_cmds == want["commands"]
        return
    inst = _first(text)
    assert inst.name == expect["type"]
    if "flags_used" in expect:
        assert isinstance(inst, ins.Run)
        assert sorted(inst.flags_used) == sorted(expect["flags_used"])
    if "dest_path" in expect:
        assert isinstance(inst, ins.Copy)
        assert inst.dest == expect["dest_path"]
        assert list(inst.sources) == expect["source_paths"]
        assert [{"path": c.path, "data": c.data, "expand": c.expand} for c in inst.contents] == \
            expect["source_contents"]
    if "cmd_line" in expect:
        assert isinstance(inst, ins.Run)
        assert inst.prepend_shell == expect["prepend_shell"]
        assert list(inst.cmd) == expect["cmd_line"]
        assert [{"name": f.name, "data": f.data, "chomp": f.chomp} for f in inst.files] == expect["files"]


@pytest.mark.parametrize(
    "case", CASES["ok_cases"], ids=[f"{i}-{c['name']}" for i, c in enumerate(CASES["ok_cases"])]
)
def test_ok_case(case: dict[str, Any]) -> None:
    _check_ok(case["expect"], case["dockerfile"])


def _node(keyword: str, values: list[str], *, json_form: bool = False) -> Node:
    return Node(keyword, tuple(values), json_form=json_form, original=f"{keyword.upper()} ...", start_line=1,
                end_line=1)


def test_ast_kvps_not_multiple_of_three() -> None:
    case = CASES["ast_level_cases"][0]
    for kw in ("env", "label"):
        with pytest.raises(PybuildError) as e:
            parse_instruction(_node(kw, case["raw_ast"]["values"]))
        assert e.value.message == f"Bad input to {kw.upper()}, too many arguments"


def test_ast_blank_names() -> None:
    case = CASES["ast_level_cases"][1]
    for kw in ("env", "label"):
        with pytest.raises(PybuildError) as e:
            parse_instruction(_node(kw, case["raw_ast"]["values"]))
        assert e.value.message == f"{kw.upper()} names can not be blank"
    with pytest.raises(PybuildError) as e2:
        _first(case["dockerfile"])
    assert e2.value.message == "ENV names can not be blank"


def test_ast_healthcheck_cmd_shell() -> None:
    case = CASES["ast_level_cases"][2]
    from_ast = parse_instruction(_node("healthcheck", case["raw_ast"]["values"]))
    from_text = _first("HEALTHCHECK CMD hello world")
    for got in (from_ast, from_text):
        assert isinstance(got, ins.Healthcheck)
        assert list(got.health.test) == case["expect"]["health_test"]


def test_ast_healthcheck_interval_bound() -> None:
    case = CASES["ast_level_cases"][3]
    for value, outcome in case["flag_values"].items():
        text = f"HEALTHCHECK --interval={value} CMD true"
        if outcome.startswith("error"):
            with pytest.raises(PybuildError, match="cannot be less than 1ms"):
                _first(text)
        else:
            got = _first(text)
            assert isinstance(got, ins.Healthcheck)
            assert got.health.interval == (0 if value == "0ms" else 1_000_000)


def test_ast_shell_form_joining() -> None:
    case = CASES["ast_level_cases"][4]
    for c in case["cases"]:
        assert list(handle_json_args(c["args"], c["json"])) == c["result"]
