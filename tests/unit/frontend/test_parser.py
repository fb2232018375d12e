"""Unit tests of the raw Dockerfile parser: structure, positions, directives, heredocs, errors, grammar loading."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pybuild.errors import PybuildError
from pybuild.frontend import _grammar
from pybuild.frontend._golang import go_lower, go_quote
from pybuild.frontend._heredoc import heredocs_from_line
from pybuild.frontend.parser import dump, parse, parse_file
from pybuild.model.ast import Node
from tests.conftest import CONFORMANCE, REPO


def dumps(text: str | bytes) -> list[str]:
    return [dump(n) for n in parse(text).nodes]


def error(text: str | bytes) -> PybuildError:
    with pytest.raises(PybuildError) as e:
        parse(text, "Dockerfile")
    return e.value


# ---- instruction shapes (the grammar)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from Debian AS Build", '(from "Debian" "AS" "Build")'),
        ("RuN echo  'a  b'  ", '(run "echo  \'a  b\'")'),
        ('CMD ["a", "b c"]', '(cmd "a" "b c")'),
        ('CMD ["a", "b c"] x', '(cmd "[\\"a\\", \\"b c\\"] x")'),  # not JSON: shell form
        ('CMD ["a"', '(cmd "[\\"a\\"")'),
        ("CMD ['a']", "(cmd \"['a']\")"),
        ('ENTRYPOINT ["a", 1e999]', '(entrypoint "[\\"a\\", 1e999]")'),  # Go cannot decode it: shell form
        ('COPY "a b" c', '(copy "\\"a" "b\\"" "c")'),
        ("COPY --from=build --chown=1:1 a /b/", '(copy ["--from=build" "--chown=1:1"] "a" "/b/")'),
        ('COPY --x="a b" --y=\'c\\ d\' e f', '(copy ["--x=a b" "--y=c d"] "e" "f")'),
        ("COPY -- --not-a-flag b", '(copy "--not-a-flag" "b")'),
        ('COPY --"" --not-a-flag b', '(copy "--not-a-flag" "b")'),
        ("RUN --", "(run)"),
        ("RUN --mount=type=cache,target=/x make", '(run ["--mount=type=cache,target=/x"] "make")'),
        ("ENV A=1 B=\"2 3\" C=", '(env "A" "1" "=" "B" "\\"2 3\\"" "=" "C" "" "=")'),
        ("ENV PATH /usr/bin:$PATH", '(env "PATH" "/usr/bin:$PATH" "")'),
        ('ENV "a b" c', '(env "\\"a" "b\\" c" "")'),  # legacy: the key is cut at the first blank
        ("ENV a\\ b=c", '(env "a\\\\ b" "c" "=")'),
        ("LABEL a=b", '(label "a" "b" "=")'),
        ("ARG A B=2 'C=3 4'", '(arg "A" "B=2" "\'C=3 4\'")'),
        ("ARG", "(arg)"),
        ("EXPOSE 80 443/tcp", '(expose "80" "443/tcp")'),
        ('EXPOSE ["80"]', '(expose "[\\"80\\"]")'),  # no JSON form
        ("HEALTHCHECK NONE", '(healthcheck "NONE")'),
        ("HEALTHCHECK --retries=3 CMD curl -f x", '(healthcheck ["--retries=3"] "CMD" "curl -f x")'),
        ("ONBUILD", "(onbuild)"),
        ("ONBUILD copy --from=x a b", '(onbuild (copy ["--from=x"] "a" "b"))'),
        ("ONBUILD --f RUN x", '(onbuild ["--f"] (run "x"))'),
        ("ONBUILD ONBUILD RUN x", "(onbuild (onbuild (run \"x\")))"),
        ("FOO bar baz", '(foo "")'),
        ("FOO --x bar", '(foo ["--x"] "")'),
        ("RUNX y", '(runx "")'),  # the keyword ends at a blank only
        ("MAINTAINER  Jane Doe <j@d>", '(maintainer "Jane Doe <j@d>")'),
        ("USER a b", '(user "a b")'),
        ("WORKDIR \t/a b\t", '(workdir "/a b")'),
        ("STOPSIGNAL", "(stopsignal)"),
        ("VOLUME /a /b", '(volume "/a" "/b")'),
        ("SHELL [\"sh\", \"-c\"]", '(shell "sh" "-c")'),
        ("WOR\u212aDIR /x", '(workdir "/x")'),  # Go's ToLower turns the Kelvin sign into k
        ("RUN \u00e9t\u00e9 \u2665 \u200b", '(run "\u00e9t\u00e9 \u2665 \\u200b")'),
    ],
)
def test_instruction_shapes(text: str, expected: str) -> None:
    assert dumps(text) == [expected]


def test_json_form_attribute() -> None:
    nodes = parse('CMD ["a b"]\nCMD a b\nCOPY ["a", "b"]\nHEALTHCHECK CMD ["x"]\n').nodes
    assert [n.json_form for n in nodes] == [True, False, True, True]
    assert nodes[0].args == nodes[1].args == ("a b",)


def test_onbuild_child_node() -> None:
    node = parse("  ONBUILD   COPY --from=x a b\n").nodes[0]
    assert node.keyword == "onbuild" and node.args == () and node.column == 3
    child = node.child
    assert isinstance(child, Node)
    assert (child.keyword, child.flags, child.args) == ("copy", ("--from=x",), ("a", "b"))
    assert child.original == "COPY --from=x a b" and child.column == 13


def test_keyword_lower_and_original() -> None:
    node = parse("\tRun  echo hi  \\\n  there\n").nodes[0]
    assert node.keyword == "run"
    assert node.original == "Run  echo hi    there"
    assert node.args == ("echo hi    there",)
    assert (node.start_line, node.end_line, node.column) == (1, 2, 2)


# ---- physical lines


def test_continuations_comments_and_blank_lines() -> None:
    df = parse("FROM x\nRUN a \\\n# comment\n\n  b \\\n\\\n   c\nRUN d\\\\\nRUN e\\")
    assert [dump(n) for n in df.nodes] == ['(from "x")', '(run "a   b    c")', '(run "d\\\\\\\\")', '(run "e")']
    assert [(n.start_line, n.end_line) for n in df.nodes] == [(1, 1), (2, 7), (8, 8), (9, 9)]
    assert [(w.rule, w.line) for w in df.warnings] == [("NoEmptyContinuation", 7)]
    assert df.warnings[0].message == "Empty continuation line found in: RUN a   b    c"


def test_crlf_and_bom() -> None:
    df = parse(b"\xef\xbb\xbf# escape=`\r\nFROM x\r\nRUN a `\r\n  b\r\n")
    assert df.escape == "`" and df.directives == {"escape": "`"}
    assert [dump(n) for n in df.nodes] == ['(from "x")', '(run "a   b")']
    assert df.lines[0] == "# escape=`"


def test_backtick_escape() -> None:
    df = parse('# escape=`\nFROM x\nCOPY --x=`"a `\n  b\nENV P=c:\\dir Q=`"1`"\nRUN dir c:\\ `\n  && x\n')
    assert [dump(n) for n in df.nodes] == [
        '(from "x")', '(copy ["--x=\\"a"] "b")', '(env "P" "c:\\\\dir" "=" "Q" "`\\"1`\\"" "=")',
        '(run "dir c:\\\\   && x")',
    ]


def test_directives_stop_at_first_other_line() -> None:
    df = parse("# Syntax = docker/dockerfile:1 // x\n# check=skip=all\n# unknown=1\n# escape=`\nFROM x\n")
    assert df.escape == "\\"
    assert df.directives == {"syntax": "docker/dockerfile:1", "check": "skip=all"}


def test_prev_comments() -> None:
    df = parse("# syntax=x\n# about the base\n\n# more\nFROM x\n#\n# the version\nARG V=1\nRUN a\n  # not kept\n")
    assert [n.prev_comments for n in df.nodes] == [("about the base", "more"), ("the version",), ()]


def test_lone_escape_is_an_empty_instruction() -> None:
    assert dumps("\\\n") == ['("")']


# ---- heredocs


def test_heredocs_in_run_copy_and_onbuild() -> None:
    text = (
        "FROM x\n"
        "RUN <<A cat - <<-'B' > out\n$x\nA\n\tliteral $y\n\tB\n"
        "COPY <<EOF /dest\r\nline\r\nEOF\r\n"
        "ONBUILD RUN 3<<\"C\"\nbody\nC\n"
        "RUN [\"<<EOF\"]\n"
        "USER <<X\n"
    )
    df = parse(text)
    run, copy, onbuild, json_run, user = df.nodes[1:]
    assert [(h.name, h.content, h.expand, h.chomp, h.fd) for h in run.heredocs] == [
        ("A", "$x\n", True, False, None), ("B", "\tliteral $y\n", False, True, None)]
    assert (run.start_line, run.end_line) == (2, 6)
    assert [(h.name, h.content) for h in copy.heredocs] == [("EOF", "line\r\n")]
    assert [(h.name, h.fd, h.expand) for h in onbuild.heredocs] == [("C", 3, False)]
    assert onbuild.child is not None and onbuild.child.heredocs == onbuild.heredocs
    assert json_run.heredocs == () and user.heredocs == ()


def test_heredoc_marker_needs_no_blank_after_dash() -> None:
    # BuildKit splits "<<- EOF" into two words and finds no heredoc (see the conformance KNOWN_FAILURES).
    assert heredocs_from_line("RUN <<- EOF") == []
    assert [h.name for h in heredocs_from_line("RUN <<  EOF  > foo")] == ["EOF"]


def test_unterminated_heredoc() -> None:
    e = error("FROM x\n  RUN <<EOF\nbody\n")
    assert e.message == "unterminated heredoc 'EOF'"
    assert e.location is not None and (e.location.line, e.location.column) == (2, 3)
    assert e.hint is not None and "EOF" in e.hint


def test_line_that_cannot_be_split_has_no_heredocs() -> None:
    # the whole line has an unterminated quote: BuildKit finds no words, so no heredoc and no error
    df = parse("FROM x\nRUN <<'EOF\nEOF\n")
    assert [dump(n) for n in df.nodes] == ['(from "x")', '(run "<<\'EOF")', '(eof "")']


# ---- errors with positions


def test_error_positions_and_render() -> None:
    e = error("FROM x\nENV A=1 \\\n    B 2\n")
    assert e.message == 'Syntax error - can\'t find = in "B". Must be of the form: name=value'
    assert e.location is not None
    assert (e.location.file, e.location.line, e.location.column) == ("Dockerfile", 3, 5)
    assert e.render().splitlines() == [
        "Dockerfile:3:5: error: " + e.message,
        "  3 |     B 2",
        "    |     ^",
    ]


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ("", "file with no instructions", 1, 0),
        ("# just a comment\n\n", "file with no instructions", 2, 0),
        ("FROM x\nENV PATH\n", "ENV must have two arguments", 2, 1),
        ("FROM x\nLABEL a\n", "LABEL must have two arguments", 2, 1),
        ('FROM x\nCMD ["a", ["b"]]\n', "when using JSON array syntax, arrays must be comprised of strings only", 2, 5),
        ("# escape=x\nFROM x\n", "invalid escape token 'x' does not match ` or \\", 1, 1),
        ("# escape=\\\n# ESCAPE=`\nFROM x\n", "only one escape parser directive can be used", 2, 1),
        ("FROM x\nRUN <<EOF\n", "unterminated heredoc 'EOF'", 2, 1),
        (b"FROM x\nRUN \xc3\x28\n", "Dockerfile is not a text Dockerfile: it contains invalid UTF-8 (byte 0xc3)", 2, 5),
        (b"\x7fELF\x02\x01\x00\x00", "Dockerfile is not a text Dockerfile: it contains a NUL byte", 1, 7),
        ("FROM x\nRUN " + "a" * 70000, "dockerfile line greater than max allowed size of 65535", 2, 0),
    ],
)
def test_errors(text: str | bytes, message: str, line: int, column: int) -> None:
    e = error(text)
    assert e.message == message
    assert e.location is not None and (e.location.line, e.location.column) == (line, column)
    e.render()  # never fails, even with odd source lines


def test_onbuild_nesting_limit() -> None:
    assert dump(parse("ONBUILD " * 60 + "RUN x").nodes[0]).count("(onbuild") == 60
    e = error("ONBUILD " * 5000 + "RUN x")
    assert e.message == "ONBUILD instructions nested too deeply"


def test_parse_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PybuildError, match="no such Dockerfile"):
        parse_file(tmp_path / "missing")
    with pytest.raises(PybuildError, match="is a directory"):
        parse_file(tmp_path)
    f = tmp_path / "Dockerfile"
    f.write_text("FROM x\nENV A\n")
    with pytest.raises(PybuildError) as e:
        parse_file(f, display="ctx/Dockerfile")
    assert e.value.location is not None and str(e.value.location) == "ctx/Dockerfile:2:1"
    assert e.value.location.source_line == "ENV A"
    assert parse_file(f.with_name("ok"), None).path if f.with_name("ok").write_text("FROM x") else False


# ---- Go helpers


def test_go_quote() -> None:
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("\x00\x07\x08\x0c\n\r\t\x0b\x7f") == '"\\x00\\a\\b\\f\\n\\r\\t\\v\\x7f"'
    assert go_quote("\u00a0\u200b\ufeff\U000e0001\u2665") == '"\\u00a0\\u200b\\ufeff\\U000e0001\u2665"'


def test_go_lower() -> None:
    assert go_lower("RUN") == "run"
    assert go_lower("\u0130\u03a3") == "i\u03c3"  # no dotted-i expansion, no final sigma


# ---- grammar file, cache, speed-relevant loading


def test_backtick_overrides_stay_in_sync() -> None:
    base = _grammar.grammar_text(_grammar.GRAMMAR_FILE)
    overrides = _grammar.grammar_text(_grammar.BACKTICK_FILE)
    found = re.findall(r"^%override (\w+(?:\.\d+)?): (/.*/)$", overrides, re.M)
    assert {name.split(".")[0] for name, _ in found} == {"FLAG", "PWORD", "TRAILING_ESC", "LEGACY_KEY"}
    for name, pattern in found:
        original = re.search(rf"^{re.escape(name)}: (/.*/)$", base, re.M)
        assert original is not None, name
        assert pattern == original.group(1).replace("\\\\", "`"), name
    # and no other terminal mentions the escape character (JSON's own backslash escapes are not it)
    others = [line for line in base.splitlines() if re.match(r"^[A-Z_]+(\.\d+)?: ", line)
              and not re.match(r"^(FLAG|PWORD|TRAILING_ESC|LEGACY_KEY|JSON_ARRAY)\b", line)]
    assert len(others) > 20 and all("\\\\" not in line for line in others)


def test_grammar_is_package_data() -> None:
    # what an installed wheel uses: pybuild/grammar is the grammar/ directory, shipped as pybuild.grammar
    from importlib.resources import files

    root = files("pybuild.grammar")
    for name in (_grammar.GRAMMAR_FILE, _grammar.BACKTICK_FILE):
        assert root.joinpath(name).read_text(encoding="utf-8") == (REPO / "grammar" / name).read_text(encoding="utf-8")


def _run_parse(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "from pybuild.frontend.parser import parse, dump; print(dump(parse('FROM x').nodes[0]))"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_parser_cache_is_written_and_reused(tmp_path: Path) -> None:
    p = _run_parse({"XDG_CACHE_HOME": str(tmp_path)})
    assert p.returncode == 0 and p.stdout == '(from "x")\n', p.stderr
    files = list((tmp_path / "pybuild").glob("dockerfile-backslash-*.lark-cache"))
    assert len(files) == 1
    before = files[0].stat().st_mtime_ns
    assert _run_parse({"XDG_CACHE_HOME": str(tmp_path)}).returncode == 0
    assert files[0].stat().st_mtime_ns == before


def test_parser_works_with_read_only_cache(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    (ro / "pybuild").mkdir(parents=True)
    (ro / "pybuild").chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        # root ignores permission bits, so also point the cache at a path under a regular file
        for cache in (ro, tmp_path / "file"):
            (tmp_path / "file").touch()
            p = _run_parse({"XDG_CACHE_HOME": str(cache)})
            assert p.returncode == 0 and p.stdout == '(from "x")\n' and p.stderr == "", p.stderr
    finally:
        (ro / "pybuild").chmod(stat.S_IRWXU)


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    assert _run_parse({"XDG_CACHE_HOME": str(tmp_path)}).returncode == 0
    (cache,) = (tmp_path / "pybuild").glob("dockerfile-backslash-*")
    cache.write_bytes(b"garbage")
    p = _run_parse({"XDG_CACHE_HOME": str(tmp_path)})
    assert p.returncode == 0 and p.stdout == '(from "x")\n', p.stderr


# ---- the real-world corpus


REAL_WORLD = sorted((CONFORMANCE / "real-world").glob("*.Dockerfile"))


@pytest.mark.parametrize("path", REAL_WORLD, ids=[p.name for p in REAL_WORLD])
def test_real_world_parses(path: Path) -> None:
    df = parse_file(path)
    assert df.nodes
    assert all(n.start_line <= n.end_line <= len(df.lines) for n in df.nodes)
    for node in df.nodes:
        assert dump(node).startswith("(")


def test_real_world_count() -> None:
    assert len(REAL_WORLD) == 170
