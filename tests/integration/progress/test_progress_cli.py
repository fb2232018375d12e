"""`pybuild build` progress as a user sees it: real builds, the CLI as a real process, the terminal display on a
real pseudo-terminal; plain and rawjson checked line by line (timings and digests normalised), -q to the byte,
and a failing RUN in every mode.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from progresstest_util import normalise_plain, run_pty, strip_ansi

from tests.conftest import run_cli

DOCKERFILE = "FROM busybox\nRUN echo hello && echo world\nCOPY a.txt /a.txt\nENV X=1\n"
FAILING = "FROM busybox\nRUN echo first; echo second; exit 7\n"


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["--root", str(root), *args])


def context(tmp_path: Path, dockerfile: str = DOCKERFILE) -> Path:
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:8]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "a.txt").write_text("a\n")
    return ctx


def no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback" not in t and "internal error" not in t


@pytest.fixture(scope="module")
def demo(busybox_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The small build run twice: --no-cache (every step runs) then with the cache (every step cached)."""
    tmp = tmp_path_factory.mktemp("demo")
    ctx = context(tmp)
    first = cli(busybox_store, "build", "--progress", "plain", "--no-cache", "--iidfile", str(tmp / "iid1"),
                "-t", "progress-demo", str(ctx))
    assert first.returncode == 0, first.stderr
    second = cli(busybox_store, "build", "--progress", "plain", "--iidfile", str(tmp / "iid2"),
                 "-t", "progress-demo", str(ctx))
    assert second.returncode == 0, second.stderr
    return {"ctx": ctx, "first": first, "second": second, "iid1": (tmp / "iid1").read_text(),
            "iid2": (tmp / "iid2").read_text()}


def test_plain_output_exactly(demo: dict[str, Any]) -> None:
    first, iid = demo["first"], demo["iid1"]
    assert first.stdout == ""
    assert normalise_plain(first.stderr) == (
        "#1 [1/4] FROM busybox\n"
        "#1 DONE 0.0s\n"
        "\n"
        "#2 [2/4] RUN echo hello && echo world\n"
        "#2 MISS: --no-cache\n"
        "#2 0.000 hello\n"
        "#2 0.000 world\n"
        "#2 DONE 0.0s\n"
        "\n"
        "#3 [3/4] COPY a.txt /a.txt\n"
        "#3 MISS: --no-cache\n"
        "#3 DONE 0.0s\n"
        "\n"
        "#4 [4/4] ENV X=1\n"
        "#4 MISS: --no-cache\n"
        "#4 DONE 0.0s\n"
        "\n"
        "#5 exporting to image\n"
        "#5 writing image sha256:ID done\n"
        "#5 naming to docker.io/library/progress-demo:latest done\n"
        "#5 DONE 0.0s\n"
    )
    assert f"#5 writing image {iid} done\n" in first.stderr


def test_plain_cached_rebuild_exactly(demo: dict[str, Any]) -> None:
    second = demo["second"]
    assert normalise_plain(second.stderr) == (
        "#1 [1/4] FROM busybox\n#1 DONE 0.0s\n\n"
        "#2 [2/4] RUN echo hello && echo world\n#2 CACHED\n\n"
        "#3 [3/4] COPY a.txt /a.txt\n#3 CACHED\n\n"
        "#4 [4/4] ENV X=1\n#4 CACHED\n\n"
        "#5 exporting to image\n#5 writing image sha256:ID done\n"
        "#5 naming to docker.io/library/progress-demo:latest done\n#5 DONE 0.0s\n"
    )
    assert demo["iid2"] == demo["iid1"]  # a fully cached rebuild is the same image


def test_rawjson_exactly(busybox_store: Path, demo: dict[str, Any]) -> None:
    p = cli(busybox_store, "build", "--progress", "rawjson", "-t", "progress-demo", str(demo["ctx"]))
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    records = [json.loads(line) for line in p.stderr.splitlines()]
    for r in records:
        if "elapsed" in r:
            assert isinstance(r["elapsed"], float) and r["elapsed"] >= 0
            r["elapsed"] = 0
    finished = records[-1]
    assert finished["image_id"] == demo["iid1"] and finished["size"] > 0
    finished["size"] = 0
    assert records == [
        {"type": "step_started", "step": 1, "name": "[1/4] FROM busybox"},
        {"type": "done", "step": 1, "elapsed": 0},
        {"type": "step_started", "step": 2, "name": "[2/4] RUN echo hello && echo world"},
        {"type": "cached", "step": 2, "name": "[2/4] RUN echo hello && echo world"},
        {"type": "step_started", "step": 3, "name": "[3/4] COPY a.txt /a.txt"},
        {"type": "cached", "step": 3, "name": "[3/4] COPY a.txt /a.txt"},
        {"type": "step_started", "step": 4, "name": "[4/4] ENV X=1"},
        {"type": "cached", "step": 4, "name": "[4/4] ENV X=1"},
        {"type": "finished", "image_id": demo["iid1"], "names": ["progress-demo:latest"], "size": 0,
         "elapsed": 0, "steps_cached": 3, "steps_run": 0},
    ]


def test_rawjson_logs_of_a_run(busybox_store: Path, tmp_path: Path) -> None:
    # Its own RUN line: a --no-cache run replaces the cache records of identical steps in other tests.
    ctx = context(tmp_path, "FROM busybox\nRUN echo json-one && echo json-two\n")
    p = cli(busybox_store, "build", "--progress", "rawjson", "--no-cache", str(ctx))
    assert p.returncode == 0, p.stderr
    logs = [json.loads(line) for line in p.stderr.splitlines() if '"type": "log"' in line]
    assert [(r["step"], r["line"]) for r in logs] == [(2, "json-one"), (2, "json-two")]


def test_quiet_prints_exactly_the_id(busybox_store: Path, demo: dict[str, Any], tmp_path: Path) -> None:
    p = cli(busybox_store, "build", "-q", "--iidfile", str(tmp_path / "iid"), "-t", "progress-demo",
            str(demo["ctx"]))
    assert p.returncode == 0, p.stderr
    assert p.stdout == (tmp_path / "iid").read_text() + "\n"
    assert p.stdout.startswith("sha256:") and len(p.stdout) == len("sha256:") + 64 + 1
    assert p.stderr == ""


def test_tty_on_a_pseudo_terminal(busybox_store: Path, tmp_path: Path) -> None:
    # the RUN changes a file: after a RUN that changes nothing, COPY a.txt would hit another test's record
    ctx = context(tmp_path, "FROM busybox\nRUN echo tty-out > /tty-out\nCOPY a.txt /a.txt\n")
    code, raw = run_pty(["--root", str(busybox_store), "build", "-t", "progress-tty:1", str(ctx)])
    assert code == 0, raw
    assert "\x1b[" in raw  # `--progress auto` on a terminal is the live display
    text = strip_ansi(raw)
    lines = [x.rstrip() for x in text.splitlines()]
    assert any(x.startswith("✔ [1/3] FROM busybox") for x in lines), text
    run_line = next(x for x in lines if x.startswith("✔ [2/3] RUN echo tty-out"))
    assert run_line.split()[-1].endswith("s")  # its elapsed time
    built = next(x for x in lines if x.startswith("✔ Built sha256:"))
    image_id = built.split()[-1]
    assert "  names  progress-tty:1" in lines
    assert any(x.startswith("  size   ") and x.endswith("MB") for x in lines)
    assert "  time" in text and "(0 cached, 2 run)" in text
    no_traceback(text)

    code, raw = run_pty(["--root", str(busybox_store), "build", "--progress", "tty", "-t", "progress-tty:1",
                         str(ctx)])
    assert code == 0, raw
    lines = [x.rstrip() for x in strip_ansi(raw).splitlines()]
    assert any(x.startswith("✔ [2/3] RUN echo tty-out") and x.endswith("CACHED") for x in lines)
    assert any(x.startswith("✔ [3/3] COPY a.txt /a.txt") and x.endswith("CACHED") for x in lines)
    assert f"✔ Built {image_id}" in lines
    assert "(2 cached, 0 run)" in strip_ansi(raw)


def test_auto_is_plain_when_not_a_terminal_and_tty_can_be_forced(busybox_store: Path, demo: dict[str, Any]) -> None:
    p = cli(busybox_store, "build", "-t", "progress-demo", str(demo["ctx"]))
    assert p.returncode == 0 and p.stderr.startswith("#1 [1/4] FROM busybox\n") and "\x1b" not in p.stderr
    forced = cli(busybox_store, "build", "--progress", "tty", "-t", "progress-demo", str(demo["ctx"]))
    assert forced.returncode == 0, forced.stderr
    assert "\x1b[" in forced.stderr and "✔ Built sha256:" in strip_ansi(forced.stderr)


def test_plain_build_never_imports_rich(busybox_store: Path, demo: dict[str, Any]) -> None:
    code = ("import sys; from pybuild.cli import main; "
            f"rc = main(['--root', {str(busybox_store)!r}, 'build', '--progress', 'plain', {str(demo['ctx'])!r}]); "
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] == 'rich'), file=sys.stdout)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.strip() == "0 []", p.stderr


# --- a failing RUN in every mode ---------------------------------------------------------------------------------

STEP = "[2/2] RUN echo first; echo second; exit 7"
EXIT = 'process "/bin/sh -c echo first; echo second; exit 7" did not complete successfully: exit code: 7'


def assert_cli_error(stderr: str) -> None:
    """The CLI's one error message: location, step, exit code, the last lines."""
    assert stderr.count(f"error: {STEP}: {EXIT}") == 1
    assert ":2:1: error:" in stderr
    assert "  > first\n  > second" in stderr
    no_traceback(stderr)


def test_failing_run_plain(busybox_store: Path, tmp_path: Path) -> None:
    p = cli(busybox_store, "build", "--progress", "plain", str(context(tmp_path, FAILING)))
    assert p.returncode == 1
    assert p.stdout == ""
    log, _, error = normalise_plain(p.stderr).partition("\n\n#2 ")
    assert log == "#1 [1/2] FROM busybox\n#1 DONE 0.0s"
    step, _, message = error.partition("\n\n")
    assert step == f"{STEP}\n#2 0.000 first\n#2 0.000 second\n#2 ERROR: {EXIT}"
    assert_cli_error(message)


def test_failing_run_rawjson(busybox_store: Path, tmp_path: Path) -> None:
    p = cli(busybox_store, "build", "--progress", "rawjson", str(context(tmp_path, FAILING)))
    assert p.returncode == 1
    lines = p.stderr.splitlines()
    records = [json.loads(x) for x in lines if x.startswith("{")]
    assert [r["line"] for r in records if r["type"] == "log"] == ["first", "second"]
    error = records[-1]
    assert error["type"] == "error" and error["step"] == 2 and error["message"] == f"{STEP}: {EXIT}"
    assert_cli_error("\n".join(x for x in lines if not x.startswith("{")) + "\n")


def test_failing_run_quiet(busybox_store: Path, tmp_path: Path) -> None:
    p = cli(busybox_store, "build", "-q", str(context(tmp_path, FAILING)))
    assert p.returncode == 1
    assert p.stdout == ""
    assert_cli_error(p.stderr)


def test_failing_run_tty(busybox_store: Path, tmp_path: Path) -> None:
    code, raw = run_pty(["--root", str(busybox_store), "build", str(context(tmp_path, FAILING))])
    assert code == 1
    assert "\x1b[1;31m✘" in raw  # the failed step in red
    text = strip_ansi(raw)
    lines = [x.rstrip() for x in text.splitlines()]
    failed = next(i for i, x in enumerate(lines) if x.startswith(f"✘ {STEP}"))
    assert lines[failed].split()[-2] == "ERROR"
    assert lines[failed + 1: failed + 3] == ["    > first", "    > second"]
    assert "Built" not in text
    assert_cli_error(text[text.index(lines[failed + 2]) + len(lines[failed + 2]):])
