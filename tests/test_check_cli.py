"""`pybuild check` and `pybuild build` as real processes: exit codes, text and JSON output, bad input."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO, run_cli

FIXTURES = REPO / "fixtures" / "dockerfiles"


def test_clean_multistage_file() -> None:
    p = run_cli(["check", str(FIXTURES / "multistage")])
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and p.stderr == ""


def test_warnings_text_format() -> None:
    p = run_cli(["check", "-f", str(FIXTURES / "lint-warnings" / "Dockerfile")])
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    path = str(FIXTURES / "lint-warnings" / "Dockerfile")
    assert f"{path}:1: warning: FromAsCasing: 'as' and 'FROM' keywords' casing do not match" in lines
    assert f"{path}:1: warning: StageNameCasing: Stage name 'Builder' should be lowercase" in lines
    assert f"{path}:2: warning: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label" \
        in lines
    rules = {line.split(": ")[2] for line in lines}
    assert {"LegacyKeyValueFormat", "JSONArgsRecommended", "MultipleInstructionsDisallowed"} <= rules


def test_warnings_json_format() -> None:
    p = run_cli(["check", "--format", "json", str(FIXTURES / "lint-warnings")])
    assert p.returncode == 0
    doc = json.loads(p.stdout)
    assert doc["errors"] == []
    first = doc["warnings"][0]
    assert set(first) >= {"rule", "message", "file", "line", "column"}
    assert {w["rule"] for w in doc["warnings"]} >= {"MaintainerDeprecated", "FromAsCasing"}


def test_check_error_directive_makes_warnings_fatal() -> None:
    p = run_cli(["check", str(FIXTURES / "check-error")])
    assert p.returncode == 1
    assert "warning: MaintainerDeprecated" in p.stdout
    assert "error: lint violation found for rules: MaintainerDeprecated" in p.stderr


def test_windows_escape_file() -> None:
    p = run_cli(["check", str(FIXTURES / "windows-escape")])
    assert p.returncode == 0, p.stderr


def test_onbuild_file_and_target() -> None:
    assert run_cli(["check", str(FIXTURES / "onbuild")]).returncode == 0
    p = run_cli(["check", "--target", "nope", str(FIXTURES / "onbuild")])
    assert p.returncode == 1
    assert 'error: target stage "nope" could not be found' in p.stderr


def test_build_args_flag() -> None:
    p = run_cli(["check", "--build-arg", "GO_VERSION=1.23", "--build-arg", "UNUSED=1", "--format", "json",
                 str(FIXTURES / "multistage")])
    assert p.returncode == 0
    rules = [w["rule"] for w in json.loads(p.stdout)["warnings"]]
    assert rules == ["UnusedBuildArg"]


def test_stdin() -> None:
    p = run_cli(["check", "-f", "-"], input="FROM scratch\nMAINTAINER me\n")
    assert p.returncode == 0
    assert p.stdout.startswith("<stdin>:2: warning: MaintainerDeprecated")


def one_error(p: object) -> str:
    import subprocess

    assert isinstance(p, subprocess.CompletedProcess)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, p.stderr
    return str(p.stderr)


def test_missing_dockerfile(tmp_path: Path) -> None:
    out = one_error(run_cli(["check", str(tmp_path)]))
    assert "cannot read Dockerfile" in out and "no such file" in out


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("")
    assert "empty" in one_error(run_cli(["check", str(tmp_path)]))


def test_binary_file(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_bytes(b"\x7fELF\x00\x01\x02\xff\xfe" * 50)
    one_error(run_cli(["check", str(tmp_path)]))


def test_no_from() -> None:
    out = one_error(run_cli(["check", str(FIXTURES / "no-from")]))
    assert ":2:" in out and "no build stage in current context" in out


def test_only_args(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("ARG A=1\n")
    assert "dockerfile contains no stages to build" in one_error(run_cli(["check", str(tmp_path)]))


def test_unterminated_heredoc() -> None:
    one_error(run_cli(["check", str(FIXTURES / "unterminated-heredoc")]))


def test_error_shows_line_and_caret(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY --chmown=1 a b\n")
    out = one_error(run_cli(["check", str(tmp_path)]))
    assert f"{tmp_path / 'Dockerfile'}:2:1: error: unknown flag: --chmown" in out
    assert "  2 | COPY --chmown=1 a b" in out and "^" in out and "hint: did you mean --chown?" in out


def test_deep_nesting(tmp_path: Path) -> None:
    depth = 5000
    (tmp_path / "Dockerfile").write_text("FROM scratch\nENV A=" + "${X:-" * depth + "x" + "}" * depth + "\n")
    one_error(run_cli(["check", str(tmp_path)]))


def test_huge_line(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nRUN echo " + "a" * 70000 + "\n")
    one_error(run_cli(["check", str(tmp_path)]))


def test_bad_format_flag() -> None:
    p = run_cli(["check", "--format", "xml", str(FIXTURES / "multistage")])
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_build_reports_plan_errors(tmp_path: Path) -> None:
    p = run_cli(["build", "--target", "nope", str(FIXTURES / "multistage")], env={"PYBUILD_ROOT": str(tmp_path)})
    assert p.returncode == 1 and 'target stage "nope" could not be found' in p.stderr
    assert "Traceback" not in p.stderr
