"""Builds killed with SIGKILL (during a RUN, during a layer write) and builds running at the same time in one
store: the next build succeeds, reuses what was finished before the kill, never uses anything half-written, and
`pybuild store verify` passes throughout. All builds are real `pybuild build` processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from cachetest_util import cli, cli_popen, read_file_in_image, write_context

from tests.support import wait_until

HANG = """\
FROM busybox:latest
RUN echo one > /one
RUN echo two > /two
ARG HANG=0
RUN echo "started-$HANG" && if [ "$HANG" = 1 ]; then sleep 600; fi && echo done > /done
"""

BIG = 100_000_000
BIG_WRITE = f"""\
FROM busybox:latest
RUN echo one > /one
RUN head -c {BIG} /dev/urandom > /big && echo wrote
RUN echo after > /after
"""


def read_until(proc: subprocess.Popen[bytes], pattern: str) -> list[str]:
    """Lines of the build's progress up to the first matching pattern (the build is still running then)."""
    assert proc.stderr is not None
    seen = []
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        seen.append(line)
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"the build ended before {pattern!r}:\n" + "\n".join(seen))


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def verify(root: Path) -> None:
    cli(root, "store", "verify")


def statuses(output: str) -> dict[str, str]:
    """Step name -> CACHED | DONE, from plain progress."""
    names = dict(re.findall(r"^#(\d+) (\[.*)$", output, re.M))
    out = {}
    for num, word in re.findall(r"^#(\d+) (CACHED|DONE)", output, re.M):
        if num in names:  # not "#N exporting to image"
            out[names[num].split("] ", 1)[1]] = word
    return out


def test_kill_during_run(cache_store: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path, HANG)
    proc = cli_popen(cache_store, "build", "--progress", "plain", "--build-arg", "HANG=1", "-t", "crash:run",
                     str(ctx))
    read_until(proc, r"^#\d+ [\d.]+ started-1$")
    kill(proc)
    verify(cache_store)

    out = cli(cache_store, "build", "--progress", "plain", "-t", "crash:run", str(ctx)).stderr
    st = statuses(out)
    assert st["RUN echo one > /one"] == "CACHED"
    assert st["RUN echo two > /two"] == "CACHED"
    assert st['RUN echo "started-$HANG" && if [ "$HANG" = 1 ]; then sleep 600; fi && echo done > /done'] == "DONE"
    assert read_file_in_image(cache_store, "crash:run", "/done", tmp_path / "out") == b"done\n"
    verify(cache_store)


def _layer_temp_growing(root: Path) -> bool:
    """A layer blob of the big step is being written (its temp file already holds some bytes)."""
    return any("-layer-" in e.name and _size(e) > 1_000_000 for e in os.scandir(root / "tmp"))


def _big_blob_installed(root: Path) -> bool:
    return any(_size(e) > BIG // 2 for e in os.scandir(root / "blobs" / "sha256"))


def _size(e: os.DirEntry[str]) -> int:
    try:
        return e.stat(follow_symlinks=False).st_size
    except FileNotFoundError:  # renamed away meanwhile
        return 0


@pytest.mark.parametrize("moment", ["while the layer blob is written", "just after the blob is installed"])
def test_kill_during_layer_write(cache_store: Path, tmp_path: Path, moment: str) -> None:
    ctx = write_context(tmp_path, BIG_WRITE)
    proc = cli_popen(cache_store, "build", "--progress", "plain", "-t", "crash:layer", str(ctx))
    read_until(proc, r"^#\d+ [\d.]+ wrote$")  # the RUN finished: its upper dir is being committed
    ready = _layer_temp_growing if moment.startswith("while") else _big_blob_installed
    wait_until(lambda: ready(cache_store) or proc.poll() is not None, moment, limit=300)
    assert proc.poll() is None, "the build finished before it could be killed"
    kill(proc)
    verify(cache_store)

    out = cli(cache_store, "build", "--progress", "plain", "-t", "crash:layer", str(ctx)).stderr
    st = statuses(out)
    assert st["RUN echo one > /one"] == "CACHED"
    big_step = st[f"RUN head -c {BIG} /dev/urandom > /big && echo wrote"]
    if moment.startswith("while"):
        assert big_step == "DONE"  # nothing of the killed commit may be reused
    verify(cache_store)
    dest = tmp_path / "out"
    assert read_file_in_image(cache_store, "crash:layer", "/after", dest) == b"after\n"
    assert (dest / "big").stat().st_size == BIG
    # The killed build's temp files are swept by the next process that opens the store.
    leftovers = [e.name for e in os.scandir(cache_store / "tmp") if not e.name.endswith(".owner")]
    assert leftovers == []


SHARED = "FROM busybox:latest\nRUN echo shared > /shared && sleep 1\nRUN echo {who} > /who\n"


def test_two_builds_at_once_share_steps(cache_store: Path, tmp_path: Path) -> None:
    ctx_a = write_context(tmp_path, SHARED.format(who="a"))
    ctx_b = write_context(tmp_path, SHARED.format(who="b"))
    for round_ in range(2):  # cold, then both fully cached
        procs = {who: cli_popen(cache_store, "build", "--progress", "plain", "-t", f"two:{who}", str(ctx))
                 for who, ctx in (("a", ctx_a), ("b", ctx_b))}
        outs = {}
        for who, p in procs.items():
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()
            outs[who] = err.decode()
        for who in ("a", "b"):
            dest = tmp_path / f"out-{round_}-{who}"
            assert read_file_in_image(cache_store, f"two:{who}", "/who", dest) == f"{who}\n".encode()
            assert (dest / "shared").read_text() == "shared\n"
            if round_ == 1:
                assert outs[who].count(" CACHED") == 2, outs[who]
        verify(cache_store)


def test_cache_prune_while_building(cache_store: Path, tmp_path: Path) -> None:
    """A prune of everything prunable during a build must not take the layers the build is using or making."""
    ctx = write_context(tmp_path, "FROM busybox:latest\nRUN echo one > /one\nRUN echo go && sleep 2\n"
                                  "RUN cat /one > /copy\nRUN echo more > /more\n")
    proc = cli_popen(cache_store, "build", "--progress", "plain", "-t", "busy:2", str(ctx))
    read_until(proc, r"^#\d+ [\d.]+ go$")
    cli(cache_store, "cache", "prune", "--all")
    cli(cache_store, "prune", "--all")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    dest = tmp_path / "out"
    assert read_file_in_image(cache_store, "busy:2", "/copy", dest) == b"one\n"
    assert (dest / "more").read_text() == "more\n"
    verify(cache_store)


def test_cache_prune_while_building_on_cached_steps(cache_store: Path, tmp_path: Path) -> None:
    """Layers a build took from the cache are the build's until it ends: a `cache prune --all` while it runs a
    step on top of them (their image already removed, so only the cache's records kept them) must not take them."""
    ctx = write_context(tmp_path, "FROM busybox:latest\nRUN echo one > /one\nRUN echo two > /two\nARG N\n"
                                  "RUN echo go-$N && sleep 2 && cat /one /two > /both\n")
    cli(cache_store, "build", "--build-arg", "N=1", "-t", "race:1", str(ctx))
    cli(cache_store, "rmi", "race:1")
    proc = cli_popen(cache_store, "build", "--progress", "plain", "--build-arg", "N=2", "-t", "race:2", str(ctx))
    seen = read_until(proc, r"^#\d+ [\d.]+ go-2$")
    assert sum(line.endswith(" CACHED") for line in seen) == 2, seen
    cli(cache_store, "cache", "prune", "--all")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert read_file_in_image(cache_store, "race:2", "/both", tmp_path / "out") == b"one\ntwo\n"
    verify(cache_store)
