"""Shared fixtures: paths to the conformance data and a way to run the CLI as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PYBUILD_SHARED", REPO.parent / "shared"))
CONFORMANCE = SHARED / "conformance"


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    return root


def run_cli(
    args: Sequence[str], *, cwd: Path | None = None, input: str | bytes | None = None,
    env: dict[str, str] | None = None, timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m pybuild ARGS` as a separate process and capture its output as text."""
    full_env = {**os.environ, **(env or {})}
    data = input.encode() if isinstance(input, str) else input
    p = subprocess.run(
        [sys.executable, "-m", "pybuild", *args], cwd=cwd, input=data, env=full_env,
        capture_output=True, timeout=timeout,
    )
    return subprocess.CompletedProcess(
        p.args, p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    )
