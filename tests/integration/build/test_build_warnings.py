"""A build shows the same build-check warnings as `pybuild check`, and `# check=error=true` fails it."""

from __future__ import annotations

from pathlib import Path

from buildtest_util import write_case

from tests.conftest import run_cli


def test_build_prints_check_warnings(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, "FROM busybox:latest\nMAINTAINER me\nCMD echo hi\n")
    p = run_cli(["--root", str(busybox_store), "build", "--progress", "plain", "--build-arg", "NOPE=1", str(ctx)])
    assert p.returncode == 0, p.stderr
    assert "warning: MaintainerDeprecated" in p.stderr
    assert "warning: JSONArgsRecommended" in p.stderr
    assert 'build-arg "NOPE" was not consumed' in p.stderr
    q = run_cli(["--root", str(busybox_store), "build", "-q", str(ctx)])
    assert q.returncode == 0 and q.stderr == ""


def test_check_error_true_fails_the_build(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, "# check=error=true\nFROM busybox:latest\nCMD echo hi\n")
    p = run_cli(["--root", str(busybox_store), "build", str(ctx)])
    assert p.returncode == 1
    assert "JSONArgsRecommended" in p.stderr and "Traceback" not in p.stderr
