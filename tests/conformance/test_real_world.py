"""All real-world Dockerfiles (shared/conformance/real-world) parse and plan without error (warnings are fine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuild.errors import PybuildError
from pybuild.planner.load import check, load_and_plan
from tests.conftest import CONFORMANCE, run_cli

REAL_WORLD = sorted((CONFORMANCE / "real-world").glob("*.Dockerfile"))


def test_the_corpus_is_there() -> None:
    assert len(REAL_WORLD) == 170


@pytest.mark.parametrize("path", REAL_WORLD, ids=[p.name for p in REAL_WORLD])
def test_check_has_no_error(path: Path) -> None:
    result = check(path)
    assert result.errors == (), "\n".join(e.render() for e in result.errors)
    assert result.plan is not None and result.plan.stages


@pytest.mark.parametrize("path", REAL_WORLD, ids=[p.name for p in REAL_WORLD])
def test_plan_for_default_target(path: Path) -> None:
    """What `pybuild build` plans: the stages the last stage needs, dependencies first.

    A FROM that only works with a --build-arg (``ARG BASE`` / ``FROM $BASE``) is an error when building
    without it, as in BuildKit; `check` reported it as InvalidDefaultArgInFrom instead.
    """
    needs_arg = any(w.rule == "InvalidDefaultArgInFrom" for w in check(path).warnings)
    if needs_arg:
        with pytest.raises(PybuildError):
            load_and_plan(path)
        return
    p = load_and_plan(path)
    assert p.stages[-1].index == p.target
    assert all(d < s.index for s in p.stages for d in s.deps)
    assert [s.index for s in p.stages] == sorted(s.index for s in p.stages)


@pytest.mark.parametrize(
    "name",
    [
        "moby__buildkit__Dockerfile.Dockerfile",
        "docker-library__golang__1.26__windows__nanoserver-ltsc2022__Dockerfile.Dockerfile",
        "docker-library__python__3.6__jessie__onbuild__Dockerfile.Dockerfile",
        "dotnet__dotnet-docker__samples__aspnetapp__Dockerfile.nanoserver.Dockerfile",
    ],
)
def test_check_cli_real_process(name: str) -> None:
    p = run_cli(["check", "-f", str(CONFORMANCE / "real-world" / name), "--format", "json"])
    assert p.returncode == 0, p.stderr
    assert '"errors": []' in p.stdout
    assert "Traceback" not in p.stderr
