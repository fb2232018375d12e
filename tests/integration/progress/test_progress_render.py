"""The renderers fed with events directly: plain's exact BuildKit lines, the rawjson schema, the terminal display
(rich writing ANSI to a file and to a real pseudo-terminal), and how the CLI picks one.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading

import pytest
from progresstest_util import strip_ansi

from pybuild.events import (
    BuildFinished,
    Event,
    Progress,
    StepCached,
    StepDone,
    StepError,
    StepLog,
    StepMiss,
    StepNote,
    StepStarted,
)
from pybuild.render import JsonRenderer, PlainRenderer, QuietRenderer, format_bytes, json_record, make_renderer
from pybuild.render_tty import TtyRenderer, clean_line

ID = "sha256:" + "ab" * 32
FAIL = '[2/3] RUN false: process "/bin/sh -c false" did not complete successfully: exit code: 1'


def feed(renderer: object, events: list[Event]) -> None:
    for e in events:
        renderer.emit(e)  # type: ignore[attr-defined]
    renderer.close()  # type: ignore[attr-defined]


def plain(events: list[Event]) -> str:
    out = io.StringIO()
    feed(PlainRenderer(out), events)
    return out.getvalue()


# --- plain ------------------------------------------------------------------------------------------------------


def test_plain_is_buildkit_style() -> None:
    text = plain([
        StepStarted(1, "[1/4] FROM busybox"), StepDone(1, 0.04),
        StepStarted(2, "[2/4] RUN make"), StepMiss(2, "--no-cache"), StepLog(2, "cc -o x x.c", 0.3214),
        StepLog(2, "", 0.5), StepDone(2, 1.25),
        StepStarted(3, "[3/4] COPY . /src"), StepCached(3, "[3/4] COPY . /src"),
        StepStarted(4, "[4/4] ENV A=1"), StepNote(4, "cache key sha256:k"), StepDone(4, 0.0),
        BuildFinished(ID, ("app:1", "registry.example:5000/team/app:latest"), 1234, 2.0, 1, 2),
    ])
    assert text == (
        "#1 [1/4] FROM busybox\n#1 DONE 0.0s\n\n"
        "#2 [2/4] RUN make\n#2 MISS: --no-cache\n#2 0.321 cc -o x x.c\n#2 0.500 \n#2 DONE 1.2s\n\n"
        "#3 [3/4] COPY . /src\n#3 CACHED\n\n"
        "#4 [4/4] ENV A=1\n#4 cache key sha256:k\n#4 DONE 0.0s\n\n"
        f"#5 exporting to image\n#5 writing image {ID} done\n"
        "#5 naming to docker.io/library/app:1 done\n"
        "#5 naming to registry.example:5000/team/app:latest done\n"
        "#5 DONE 0.0s\n"
    )


def test_plain_interleaved_steps_reprint_their_header() -> None:
    # Parallel stages: BuildKit closes the open vertex with "#N ..." and prints the other's header again.
    text = plain([
        StepStarted(1, "[a 1/2] RUN x"), StepLog(1, "from a", 0.1),
        StepStarted(2, "[b 1/2] RUN y"), StepLog(2, "from b", 0.1),
        StepLog(1, "a again", 0.2), StepDone(1, 0.3), StepDone(2, 0.4),
    ])
    assert text == (
        "#1 [a 1/2] RUN x\n#1 0.100 from a\n#1 ...\n\n"
        "#2 [b 1/2] RUN y\n#2 0.100 from b\n#2 ...\n\n"
        "#1 [a 1/2] RUN x\n#1 0.200 a again\n#1 DONE 0.3s\n\n"
        "#2 [b 1/2] RUN y\n#2 DONE 0.4s\n\n"
    )


def test_plain_error_names_the_step_once_and_leaves_a_gap_for_the_cli() -> None:
    text = plain([StepStarted(1, "[1/3] FROM busybox"), StepDone(1, 0.0), StepStarted(2, "[2/3] RUN false"),
                  StepLog(2, "oops", 0.01), StepError(2, FAIL, 0.02)])
    assert text.endswith(
        "#2 [2/3] RUN false\n#2 0.010 oops\n"
        '#2 ERROR: process "/bin/sh -c false" did not complete successfully: exit code: 1\n\n'
    )


def test_plain_progress_is_throttled_like_buildkit() -> None:
    events: list[Event] = [StepStarted(1, "[1/2] RUN big")]
    events += [Progress(1, "committing layer", n * 10, 1000) for n in range(0, 101)]
    text = plain([*events, StepDone(1, 1.0)])
    lines = [x for x in text.splitlines() if "committing layer" in x]
    # one line per 5% at most, and the completion with "done"
    assert 2 <= len(lines) <= 21
    assert lines[0] == "#1 committing layer 0B / 1.00kB"
    assert lines[-1].startswith("#1 committing layer 1.00kB / 1.00kB") and lines[-1].endswith(" done")
    assert format_bytes(999) == "999B" and format_bytes(1_234_567) == "1.23MB" and format_bytes(5 * 10**9) == "5.00GB"


# --- rawjson ----------------------------------------------------------------------------------------------------


def test_rawjson_fields_are_the_documented_ones() -> None:
    events: list[Event] = [
        StepStarted(1, "[1/2] FROM busybox"), StepMiss(1, "why"), StepNote(1, "note"), StepLog(1, "out", 0.12345),
        Progress(1, "pull", 5, None), StepCached(1, "[1/2] FROM busybox"), StepDone(2, 1.23456),
        StepError(3, "boom", 0.5), BuildFinished(ID, ("a:1",), 10, 2.5, 1, 2),
    ]
    out = io.StringIO()
    feed(JsonRenderer(out), events)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert records == [
        {"type": "step_started", "step": 1, "name": "[1/2] FROM busybox"},
        {"type": "miss", "step": 1, "reason": "why"},
        {"type": "note", "step": 1, "text": "note"},
        {"type": "log", "step": 1, "elapsed": 0.123, "line": "out"},
        {"type": "progress", "step": 1, "label": "pull", "done": 5, "total": None},
        {"type": "cached", "step": 1, "name": "[1/2] FROM busybox"},
        {"type": "done", "step": 2, "elapsed": 1.235},
        {"type": "error", "step": 3, "elapsed": 0.5, "message": "boom"},
        {"type": "finished", "image_id": ID, "names": ["a:1"], "size": 10, "elapsed": 2.5, "steps_cached": 1,
         "steps_run": 2},
    ]
    assert all(line.startswith('{"type": ') for line in out.getvalue().splitlines())
    assert json_record(StepDone(1, 0.0)) == {"type": "done", "step": 1, "elapsed": 0.0}


# --- terminal ---------------------------------------------------------------------------------------------------


def tty(events: list[Event], *, close: bool = True) -> str:
    out = io.StringIO()
    r = TtyRenderer(out)
    for e in events:
        r.emit(e)
    if close:
        r.close()
    return strip_ansi(out.getvalue())


def test_tty_lines_cached_miss_and_summary() -> None:
    text = tty([
        StepStarted(1, "[1/3] FROM busybox"), StepDone(1, 0.0),
        StepStarted(2, "[2/3] RUN make"), StepMiss(2, "the build context changed"), StepLog(2, "compiling", 0.1),
        StepDone(2, 1.5),
        StepStarted(3, "[3/3] COPY x /x"), StepCached(3, "[3/3] COPY x /x"),
        BuildFinished(ID, ("app:1",), 4_260_000, 2.0, 1, 1),
    ])
    lines = [x.rstrip() for x in text.splitlines()]
    assert any(x.startswith("✔ [2/3] RUN make") and x.endswith("1.5s") for x in lines)
    assert any(x.startswith("✔ [3/3] COPY x /x") and x.endswith("CACHED") for x in lines)
    assert "    cache miss: the build context changed" in lines
    assert f"✔ Built {ID}" in lines
    assert "  names  app:1" in lines and "  size   4.26MB" in lines and "  time   2.0s (1 cached, 1 run)" in lines
    # finished steps collapse their output: it was only ever in the live area, which is erased at the end
    assert text.rstrip().endswith("(1 cached, 1 run)")


def test_tty_failed_step_is_red_with_its_last_lines_and_no_message() -> None:
    out = io.StringIO()
    r = TtyRenderer(out)
    for e in [StepStarted(2, "[2/3] RUN false"), *(StepLog(2, f"line {i}", 0.1) for i in range(30)),
              StepError(2, FAIL, 0.2)]:
        r.emit(e)
    r.close()
    raw = out.getvalue()
    text = strip_ansi(raw)
    assert "\x1b[1;31m✘" in raw  # red
    lines = [x.rstrip() for x in text.splitlines()]
    failed = next(i for i, x in enumerate(lines) if x.startswith("✘ [2/3] RUN false"))
    assert lines[failed].endswith("ERROR 0.2s")
    assert lines[failed + 1: failed + 11] == [f"    > line {i}" for i in range(20, 30)]
    assert "did not complete successfully" not in text  # the CLI prints the message, once


def test_tty_close_marks_running_steps_canceled_and_is_idempotent() -> None:
    out = io.StringIO()
    r = TtyRenderer(out)
    r.emit(StepStarted(1, "[1/2] RUN sleep 100"))
    r.close()
    r.close()
    r.emit(StepDone(1, 1.0))  # late events after close are ignored
    lines = [x.rstrip() for x in strip_ansi(out.getvalue()).splitlines()]
    assert any(x.startswith("- [1/2] RUN sleep 100") and x.endswith("CANCELED") for x in lines)
    assert not any(x.startswith("✔") for x in lines)


def test_tty_live_area_shows_last_lines_progress_and_miss() -> None:
    r = TtyRenderer(io.StringIO(), tail_lines=3)
    for e in [StepStarted(1, "[1/1] RUN build"), StepMiss(1, "--no-cache"),
              *(StepLog(1, f"out {i}", 0.1) for i in range(5)), Progress(1, "committing layer", 500_000, 2_000_000)]:
        r.emit(e)
    buf = io.StringIO()
    from rich.console import Console

    Console(file=buf, width=120, force_terminal=True).print(r._render())
    r.close()
    lines = [x.rstrip() for x in strip_ansi(buf.getvalue()).splitlines()]
    assert lines[0].startswith("⠋ [1/1] RUN build")
    assert "    cache miss: --no-cache" in lines
    assert any(x.startswith("    committing layer") and x.endswith("500.00kB / 2.00MB") for x in lines)
    assert [x for x in lines if x.startswith("    out")] == ["    out 2", "    out 3", "    out 4"]
    assert lines[-1].startswith("Building ")


def test_tty_output_lines_lose_escape_and_control_characters() -> None:
    assert clean_line("\x1b[31mred\x1b[0m text") == "red text"
    assert clean_line("10%\r50%\r100%") == "100%"
    assert clean_line("a\tb\x07\x1b]0;title\x07c") == "a   bc"
    assert clean_line("progress\r") == "progress"


def test_tty_emits_from_threads_while_refreshing() -> None:
    # Stages run in threads; the refresh thread draws at the same time. Nothing may deadlock or be lost.
    out = io.StringIO()
    r = TtyRenderer(out, refresh_per_second=100)
    lock = threading.Lock()  # the engine's _LockedSink: one emit at a time

    def stage(base: int) -> None:
        for n in range(base, base + 20):
            for e in (StepStarted(n, f"[s{base} {n}] RUN x"), StepLog(n, "x" * 50, 0.0), StepDone(n, 0.0)):
                with lock:
                    r.emit(e)

    threads = [threading.Thread(target=stage, args=(b,)) for b in (100, 200, 300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "emitting from threads deadlocked"
    r.close()
    text = strip_ansi(out.getvalue())
    assert sum(1 for x in text.splitlines() if x.startswith("✔ [s")) == 60


# --- choosing a renderer ----------------------------------------------------------------------------------------


def test_make_renderer_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    pipe = io.StringIO()
    assert isinstance(make_renderer("auto", err=pipe), PlainRenderer)
    assert isinstance(make_renderer("plain", err=pipe), PlainRenderer)
    assert isinstance(make_renderer("rawjson", err=pipe), JsonRenderer)
    assert isinstance(make_renderer("rawjson", quiet=True, err=pipe), QuietRenderer)
    forced = make_renderer("tty", err=pipe)
    assert isinstance(forced, TtyRenderer)
    forced.close()
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as term:
            auto = make_renderer("auto", err=term)
            assert isinstance(auto, TtyRenderer)
            auto.close()
            monkeypatch.setenv("TERM", "dumb")
            assert isinstance(make_renderer("auto", err=term), PlainRenderer)
    finally:
        os.close(master)
        os.close(slave)


def test_plain_choice_never_imports_rich() -> None:
    code = ("import sys, io; from pybuild.render import make_renderer; "
            "r = make_renderer('auto', err=io.StringIO()); r.close(); "
            "import pybuild.cli.build; print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]"


def test_tty_on_a_non_utf8_terminal_degrades_to_ascii() -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    r = TtyRenderer(out)
    for e in [StepStarted(1, "[1/1] RUN echo é"), StepLog(1, "héllo ✓", 0.1), Progress(1, "layer", 5, 10),
              StepError(1, "boom", 0.2)]:
        r.emit(e)
    r.close()
    out.flush()
    lines = [x.rstrip() for x in strip_ansi(raw.getvalue().decode("ascii")).splitlines()]
    assert any(x.startswith("x [1/1] RUN echo ?") and x.endswith("ERROR 0.2s") for x in lines)
    assert "    > h?llo ?" in lines
