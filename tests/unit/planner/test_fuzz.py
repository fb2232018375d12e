"""Fuzzing the check library function: mutated real Dockerfiles and random text give a result, never a crash.

Only PybuildError is allowed out of parse/plan (``check`` turns it into an error entry); anything else, or a
hang, fails the test. Hypothesis' deadline catches pathological slowness without timing assertions.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybuild.errors import PybuildError
from pybuild.frontend.parser import parse
from pybuild.planner.load import check
from pybuild.planner.plan import plan
from tests.conftest import CONFORMANCE

CORPUS = [p.read_bytes() for p in sorted((CONFORMANCE / "real-world").glob("*.Dockerfile"))[::7]]
ALPHABET = st.sampled_from(
    [*"FROMRUNCOPYADDENVARGLABELWORKDIRONBUILD=$\\`'\"[]{}<>-#:/ \t\n\r,.0123456789aAzZ",
     "${", "<<EOF", "\nEOF\n", "--from=", "--mount=type=cache,target=", " AS ", "\\\n", "${A:-", "ONBUILD "]
)
SETTINGS = settings(max_examples=150, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def _no_hang(seconds: float = 20) -> Iterator[None]:
    """Turn a hang into a failure (a guard, not a speed check: nothing here comes near it)."""

    def fire(signum: int, frame: object) -> None:
        raise AssertionError(f"parse/plan did not finish within {seconds}s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _plan_text(data: bytes) -> None:
    with _no_hang():
        try:
            plan(parse(data, "fuzz"), all_stages=True, build_args={"A": "1"})
        except PybuildError:
            pass


@SETTINGS
@given(st.lists(ALPHABET, max_size=200).map("".join))
def test_random_text(text: str) -> None:
    _plan_text(text.encode())


@SETTINGS
@given(
    st.sampled_from(CORPUS),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=40), ALPHABET), max_size=6),
)
def test_mutated_real_dockerfiles(original: bytes, edits: list[tuple[int, int, str]]) -> None:
    data = bytearray(original)
    for pos, cut, insert in edits:
        at = pos % (len(data) + 1)
        data[at : at + cut] = insert.encode()
    _plan_text(bytes(data))


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_through_check(data: bytes) -> None:
    with _no_hang():
        result = check("-", stdin=data)
    assert result.ok or len(result.errors) == 1
