"""The grammar ships inside the wheel: install pybuild into a fresh venv and run `pybuild check` elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO


@pytest.mark.slow
def test_wheel_install_runs_check_from_another_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("pybuild-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", str(wheel)], check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "Dockerfile").write_text("FROM busybox\nRUN echo hi\nCMD [\"sh\"]\n")
    p = subprocess.run([str(venv / "bin/pybuild"), "check", "."], cwd=work, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    # The installed copy must not be reading the source tree's grammar.
    p = subprocess.run([str(venv / "bin/python"), "-c", "import pybuild, sys; print(pybuild.__file__)"],
                       cwd=work, capture_output=True, text=True, check=True)
    assert str(REPO) not in p.stdout
