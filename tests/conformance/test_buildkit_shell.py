"""BuildKit's shell-lexer vectors (envVarTest, wordsTest, expansion-cases.json) run against pybuild.frontend.shell.

The file formats are described in shared/conformance/buildkit/FORMAT.md §2-§4.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pybuild.frontend.shell import Lexer, ShellError, env_from_list, pattern_to_regex
from tests.conftest import CONFORMANCE

SHELL_DIR = CONFORMANCE / "buildkit" / "shell"

# vectors we knowingly fail: id -> reason. Keep empty.
KNOWN_FAILURES: dict[str, str] = {}

ENV_VAR_TEST_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _xfail_known(case_id: str) -> None:
    if case_id in KNOWN_FAILURES:
        pytest.xfail(KNOWN_FAILURES[case_id])


# --- envVarTest (FORMAT.md §2) ------------------------------------------------------------------


def _env_var_cases() -> list[Any]:
    cases = []
    text = (SHELL_DIR / "envVarTest").read_text(encoding="utf-8")
    for lineno, raw in enumerate(text.split("\n"), 1):
        if raw.startswith("#"):
            continue
        line = raw.strip()
        if not line:
            continue
        fields = line.split("|")
        assert len(fields) == 3, f"envVarTest:{lineno}: expected 3 fields"
        platform, source, expected = (f.strip() for f in fields)
        assert platform in ("A", "U", "W"), f"envVarTest:{lineno}: bad platform {platform!r}"
        cases.append(pytest.param(platform, source, expected, id=f"envVarTest:{lineno}"))
    return cases


ENV_VAR_CASES = _env_var_cases()


def test_env_var_file_has_vectors() -> None:
    assert len(ENV_VAR_CASES) > 200


@pytest.mark.parametrize(("platform", "source", "expected"), ENV_VAR_CASES)
def test_env_var(platform: str, source: str, expected: str, request: pytest.FixtureRequest) -> None:
    _xfail_known(request.node.callspec.id)
    # W lines are BuildKit on Windows, where names match case-insensitively
    lex = Lexer("\\", case_insensitive=platform == "W")
    if expected == "error":
        with pytest.raises(ShellError):
            lex.process_word(source, ENV_VAR_TEST_ENV)
    else:
        assert lex.process_word(source, ENV_VAR_TEST_ENV) == expected


# --- wordsTest (FORMAT.md §3) -------------------------------------------------------------------


def _words_cases() -> list[Any]:
    cases = []
    env: dict[str, str] = {}
    text = (SHELL_DIR / "wordsTest").read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    for lineno, line in enumerate(lines, 1):
        if line.startswith("#"):
            continue
        if line.startswith("ENV "):
            name, _, value = line[4:].lstrip(" ").partition("=")
            env[name] = value
            continue
        assert line.strip(), f"wordsTest:{lineno}: blank lines are not part of the format"
        assert line.count("|") == 1, f"wordsTest:{lineno}: expected exactly one '|'"
        source, _, expected = line.partition("|")
        expected = expected.lstrip(" ")
        words = None if expected == "error" else expected.split(",")
        cases.append(pytest.param(source.strip(), words, dict(env), id=f"wordsTest:{lineno}"))
    return cases


WORDS_CASES = _words_cases()


def test_words_file_has_vectors() -> None:
    assert len(WORDS_CASES) > 20


@pytest.mark.parametrize(("source", "expected", "env"), WORDS_CASES)
def test_words(
    source: str, expected: list[str] | None, env: dict[str, str], request: pytest.FixtureRequest,
) -> None:
    _xfail_known(request.node.callspec.id)
    lex = Lexer("\\")
    if expected is None:
        with pytest.raises(ShellError):
            lex.process_words(source, env)
    else:
        assert lex.process_words(source, env) == expected


# --- expansion-cases.json (FORMAT.md §4) --------------------------------------------------------


def _load_cases() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SHELL_DIR / "expansion-cases.json").read_text(encoding="utf-8"))
    return data


CASES = _load_cases()


def _params(key: str) -> list[Any]:
    return [pytest.param(case, id=f"{key}[{i}]:{case['input']}") for i, case in enumerate(CASES[key])]


@pytest.mark.parametrize("case", _params("process_word_cases"))
def test_process_word_case(case: dict[str, Any], request: pytest.FixtureRequest) -> None:
    _xfail_known(request.node.callspec.id)
    lex = Lexer("\\")
    if case.get("error"):
        with pytest.raises(ShellError) as info:
            lex.process_word_with_matches(case["input"], case["env"])
        if "unmatched" in case:
            assert info.value.unmatched == frozenset(case["unmatched"])
        return
    result = lex.process_word_with_matches(case["input"], case["env"])
    assert result.value == case["expected"]
    assert lex.process_word(case["input"], case["env"]) == case["expected"]
    if "matched" in case:
        assert result.matched == frozenset(case["matched"])
    if "unmatched" in case:
        assert result.unmatched == frozenset(case["unmatched"])


@pytest.mark.parametrize("case", _params("required_variable_cases"))
def test_required_variable_case(case: dict[str, Any], request: pytest.FixtureRequest) -> None:
    _xfail_known(request.node.callspec.id)
    lex = Lexer("\\")
    if case.get("error"):
        with pytest.raises(ShellError) as info:
            lex.process_word(case["input"], case["env"])
        assert case["error_contains"] in info.value.message
    else:
        assert lex.process_word(case["input"], case["env"]) == case["expected"]


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=f"env_list_rules[{i}]") for i, c in enumerate(CASES["env_list_rules"])]
)
def test_env_list_rule(case: dict[str, Any]) -> None:
    env = env_from_list(case["env"])
    assert env.get(case["lookup"], "") == case["value"]
    # and the lexer sees the same value
    assert Lexer().process_word("$" + case["lookup"], env) == case["value"]


@pytest.mark.parametrize(("pattern", "regex"), sorted(CASES["pattern_conversion"]["valid"].items()))
def test_pattern_conversion_valid(pattern: str, regex: str) -> None:
    assert pattern_to_regex(pattern, greedy=True, anchored=True) == regex


@pytest.mark.parametrize("pattern", CASES["pattern_conversion"]["invalid"])
def test_pattern_conversion_invalid(pattern: str) -> None:
    with pytest.raises(ShellError):
        pattern_to_regex(pattern, greedy=True, anchored=True)


def test_conformance_files_are_where_expected() -> None:
    for name in ("envVarTest", "wordsTest", "expansion-cases.json"):
        assert Path(SHELL_DIR / name).is_file(), name
