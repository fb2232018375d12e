"""`pybuild run` as a process: signals reach the container, stdin only with -i, a terminal with -t."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import mounts_under


def _run(root: Path, *args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pybuild", "--root", str(root), "run", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]


def _wait_for_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"{text!r} never printed; stderr: {proc.stderr.read() if proc.stderr else ''}")


def test_sigterm_and_sigint_reach_the_container(busybox_store: Path) -> None:
    for sig, code in ((signal.SIGTERM, 5), (signal.SIGINT, 6)):
        script = f'trap "echo got-{sig.name}; exit {code}" {sig.name[3:]}; echo ready; while :; do sleep 0.1; done'
        proc = _run(busybox_store, "busybox:latest", "sh", "-c", script)
        _wait_for_line(proc, "ready")
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        assert f"got-{sig.name}" in out
        assert proc.returncode == code  # the container's own exit code becomes ours
    assert not mounts_under(busybox_store)


def test_a_container_killed_by_its_signal_exits_128_plus_it(busybox_store: Path) -> None:
    proc = _run(busybox_store, "busybox:latest", "sh", "-c", "echo ready; exec sleep 1000")
    _wait_for_line(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM


def test_stdin_only_with_i(busybox_store: Path) -> None:
    base = [sys.executable, "-m", "pybuild", "--root", str(busybox_store), "run"]
    p = subprocess.run([*base, "-i", "busybox:latest", "cat"], input="hello\n", capture_output=True, text=True,
                       timeout=60)
    assert (p.returncode, p.stdout) == (0, "hello\n")
    p = subprocess.run([*base, "busybox:latest", "cat"], input="hello\n", capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, "")  # without -i the container reads /dev/null, as with docker run


def test_tty_gives_the_container_a_terminal(busybox_store: Path) -> None:
    base = [sys.executable, "-m", "pybuild", "--root", str(busybox_store), "run"]
    p = subprocess.run([*base, "-t", "busybox:latest", "sh", "-c", "tty; echo TERM=$TERM"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "/dev/pts/" in p.stdout and "TERM=xterm" in p.stdout
    p = subprocess.run([*base, "busybox:latest", "tty"], capture_output=True, text=True, timeout=60)
    assert "not a tty" in p.stdout


def test_it_on_a_real_terminal(busybox_store: Path) -> None:
    """-it from an interactive terminal: keystrokes reach the shell, its output comes back, the exit code too."""
    pid, fd = os.forkpty()
    if pid == 0:  # child: the pybuild CLI on the pty
        os.execv(sys.executable, [sys.executable, "-m", "pybuild", "--root", str(busybox_store), "run", "-i", "-t",
                                  "busybox:latest", "sh"])
    out = b""
    sent = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not sent and b"# " in out:  # the shell's prompt: type a line as a person would
                os.write(fd, b"echo $((6*7)); exit 3\r")
                sent = True
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side of the pty closed, pybuild has exited
                break
            if not chunk:
                break
            out += chunk
    finally:
        done, status = os.waitpid(pid, os.WNOHANG)
        for _ in range(100):
            if done:
                break
            time.sleep(0.1)
            done, status = os.waitpid(pid, os.WNOHANG)
        if not done:  # never leave a hung CLI behind: fail instead
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert b"42" in out, out
    assert os.waitstatus_to_exitcode(status) == 3
