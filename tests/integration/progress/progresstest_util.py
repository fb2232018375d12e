"""Helpers for the progress tests: the CLI on a real pseudo-terminal, ANSI stripping, timing normalisation."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import sys
import termios
from collections.abc import Sequence

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    """Terminal output as plain text: escape sequences gone, CRLF as LF, bare CRs as line breaks."""
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def run_pty(args: Sequence[str], *, env: dict[str, str] | None = None, columns: int = 160,
            rows: int = 50, limit: float = 300) -> tuple[int, str]:
    """Run `python -m pybuild ARGS` with stdin, stdout and stderr on a new pseudo-terminal (TERM=xterm).

    Returns the exit code and everything the terminal received. `limit` only guards against a hung child.
    """
    full_env = {**os.environ, "TERM": "xterm", "COLUMNS": str(columns), "LINES": str(rows), **(env or {})}
    full_env.pop("NO_COLOR", None)
    pid, fd = os.forkpty()
    if pid == 0:  # the child: its controlling terminal is the pty
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            os.execve(sys.executable, [sys.executable, "-m", "pybuild", *args], full_env)
        finally:
            os._exit(127)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], limit)
            if not ready:
                os.kill(pid, 9)
                raise AssertionError(f"pybuild {' '.join(args)} produced nothing for {limit}s")
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed its side of the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


_STEP_TIME = re.compile(r"^(#\d+) \d+\.\d{3} ", re.M)
_DONE_TIME = re.compile(r"^(#\d+ DONE) \d+\.\ds$", re.M)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def normalise_plain(text: str) -> str:
    """Plain progress with timings as 0.000 / 0.0s and digests as sha256:ID."""
    text = _STEP_TIME.sub(r"\1 0.000 ", text)
    text = _DONE_TIME.sub(r"\1 0.0s", text)
    return _DIGEST.sub("sha256:ID", text)
