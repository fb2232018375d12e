"""Fuzzing the raw parser: any input gives a Dockerfile or a PybuildError, never another exception or a hang."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybuild.errors import PybuildError
from pybuild.frontend.parser import dump, parse
from pybuild.model.ast import Dockerfile
from tests.conftest import CONFORMANCE

REAL_WORLD = sorted((CONFORMANCE / "real-world").glob("*.Dockerfile"))
CORPUS = [p.read_text(encoding="utf-8") for p in REAL_WORLD[:40]] + [
    (p / "Dockerfile").read_text(encoding="utf-8")
    for p in sorted((CONFORMANCE / "buildkit" / "parser" / "testfiles").iterdir())
]
TRICKY = ["\\", "`", '"', "'", "[", "]", "<<", "<<-", "$", "${", "}", "\n", "\r\n", " ", "\t", "#", "=", "--",
          ",", "ONBUILD ", "RUN ", "COPY ", "ENV ", "# escape=`\n", "\u00a0", "\u3000", "\x00", "EOF\n", "\ufeff"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(data: str | bytes) -> None:
    try:
        df = parse(data)
    except PybuildError as e:
        assert e.message
        e.render()
        return
    assert isinstance(df, Dockerfile) and df.nodes
    for node in df.nodes:
        assert 1 <= node.start_line <= node.end_line
        assert dump(node).startswith("(")


@SETTINGS
@given(st.text(alphabet=st.sampled_from("\\`\"'[]<-${}\n\r \t#=,\u00a0\u3000\x00\ufeffRUNCOPYENV") | st.characters(),
               max_size=400))
def test_random_text(text: str) -> None:
    _check(text)


@SETTINGS
@given(st.lists(st.sampled_from([*TRICKY, "FROM x", 'CMD ["a"]', "a", "b=c"]), max_size=60))
def test_random_token_soup(pieces: list[str]) -> None:
    _check("".join(pieces))


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["delete", "duplicate", "insert"]))
        if op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 5)):]
        elif op == "duplicate":
            end = min(len(text), pos + draw(st.integers(1, 40)))
            text = text[:end] + text[pos:end] + text[end:]
        else:
            text = text[:pos] + draw(st.sampled_from(TRICKY)) + text[pos:]
    return text


@SETTINGS
@given(_mutated())
def test_mutated_real_world(text: str) -> None:
    _check(text)


def test_pathological_inputs_are_fast_and_safe() -> None:
    # long lines of characters that regular expressions could backtrack on
    for piece in ["\u3000", "\u3000a", "\\ ", "'", '"', '["a", ', "--x ", "a=", "\\", "$", "<<", "[", " \u00a0"]:
        for keyword in ["RUN", "COPY", "ENV", "ARG", "HEALTHCHECK CMD", "ONBUILD RUN", "LABEL a", "FROM"]:
            _check("FROM x\n" + keyword + " " + piece * (60000 // len(piece) // 2))
    _check("ONBUILD " * 8000 + "RUN x")
    _check("[" * 30000)
    _check("CMD " + "[" * 30000 + "]" * 30000)
    _check("\\\n" * 20000)
    _check("RUN <<EOF\n" * 5000)


def test_every_real_world_file_survives_truncation() -> None:
    for text in CORPUS[:10]:
        for cut in range(0, len(text), max(1, len(text) // 50)):
            _check(text[:cut])
