"""`pybuild cache ls|du|prune` through the CLI: what is listed, what goes (least recently used first, --all,
--keep-storage, --filter until=), and that nothing a named image needs is ever removed."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from cachetest_util import cli, read_file_in_image, write_context

ONE_MB = """\
FROM busybox:latest
ARG WHO
RUN head -c 1000000 /dev/urandom > /$WHO.bin && echo "$WHO" > /who
"""


def build(root: Path, ctx: Path, tag: str, *extra: str) -> str:
    return cli(root, "build", "--progress", "plain", "-t", tag, *extra, str(ctx)).stderr


def removed(output: str) -> int:
    m = re.search(r"Removed (\d+) cache record", output)
    assert m, output
    return int(m.group(1))


def keys(root: Path) -> set[str]:
    with sqlite3.connect(root / "pybuild.db") as db:
        return {k for (k,) in db.execute("SELECT key FROM cache")}


def backdate(root: Path, which: set[str], seconds: float) -> int:
    """Pretend these records were last used `seconds` earlier (hours cannot be waited for in a test)."""
    with sqlite3.connect(root / "pybuild.db") as db:
        return sum(db.execute("UPDATE cache SET last_used = last_used - ? WHERE key=?", (seconds, k)).rowcount
                   for k in which)


def run_step_status(output: str) -> str:
    m = re.search(r"^#(\d+) \[[^\]]*\] RUN head", output, re.M)
    assert m, output
    return "CACHED" if re.search(rf"^#{m.group(1)} CACHED$", output, re.M) else "RAN"


def test_ls_and_du(cache_store: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path, ONE_MB)
    build(cache_store, ctx, "ls:a", "--build-arg", "WHO=a")
    ls = cli(cache_store, "cache", "ls").stdout
    assert ls.splitlines()[0].split() == ["CACHE", "ID", "SIZE", "LAST", "USED", "INSTRUCTION"]
    assert any("RUN head -c 1000000" in line and ("MB" in line or "kB" in line) for line in ls.splitlines()), ls
    assert any("ARG WHO" in line for line in ls.splitlines()), ls
    du = cli(cache_store, "cache", "du").stdout
    assert re.search(r"^Records:\s+2$", du, re.M), du
    assert re.search(r"^Total:\s+1(\.\d+)?\s*MB$", du, re.M), du


def test_prune_all_keeps_what_named_images_need(cache_store: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path, ONE_MB)
    build(cache_store, ctx, "keep:a", "--build-arg", "WHO=a")
    out = cli(cache_store, "cache", "prune", "--all").stdout
    assert removed(out) == 2
    assert cli(cache_store, "cache", "du").stdout.splitlines()[0].split() == ["Records:", "0"]
    cli(cache_store, "store", "verify")
    run = cli(cache_store, "run", "--rm", "keep:a", "sh", "-c", "cat /who; wc -c < /a.bin")
    assert run.stdout.split() == ["a", "1000000"]
    # No record is left, so the same build runs again.
    assert run_step_status(build(cache_store, ctx, "keep:a", "--build-arg", "WHO=a")) == "RAN"


def test_records_keep_layers_of_removed_images_until_pruned(cache_store: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path, ONE_MB)
    build(cache_store, ctx, "gone:a", "--build-arg", "WHO=a")
    cli(cache_store, "rmi", "gone:a")
    cli(cache_store, "prune")  # the image is gone and its content collected, but the cache's pins keep the layers
    assert run_step_status(build(cache_store, ctx, "gone:a", "--build-arg", "WHO=a")) == "CACHED"
    cli(cache_store, "rmi", "gone:a")
    out = cli(cache_store, "cache", "prune", "--all").stdout
    assert removed(out) == 2
    m = re.search(r"Total reclaimed space: ([\d.]+)\s*(\w+)", out)
    assert m and m.group(2) in ("MB", "MiB"), out  # the 1 MB layer went with its record
    cli(cache_store, "store", "verify")
    assert run_step_status(build(cache_store, ctx, "gone:a", "--build-arg", "WHO=a")) == "RAN"


def test_keep_storage_removes_least_recently_used_first(cache_store: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path, ONE_MB)
    build(cache_store, ctx, "lru:a", "--build-arg", "WHO=a")
    build(cache_store, ctx, "lru:b", "--build-arg", "WHO=b")
    assert run_step_status(build(cache_store, ctx, "lru:a", "--build-arg", "WHO=a")) == "CACHED"  # a: most recent
    out = cli(cache_store, "cache", "prune", "--keep-storage", "1.5MB").stdout
    assert removed(out) == 1  # b's 1 MB RUN record; the ARG records take no space
    cli(cache_store, "store", "verify")
    assert run_step_status(build(cache_store, ctx, "lru:a", "--build-arg", "WHO=a")) == "CACHED"
    assert run_step_status(build(cache_store, ctx, "lru:b", "--build-arg", "WHO=b")) == "RAN"
    for who in ("a", "b"):  # both images are whole
        dest = tmp_path / f"out-{who}"
        assert read_file_in_image(cache_store, f"lru:{who}", "/who", dest) == f"{who}\n".encode()
        assert (dest / f"{who}.bin").stat().st_size == 1_000_000


def test_filter_until_and_default_age(cache_store: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path, ONE_MB)
    build(cache_store, ctx, "age:a", "--build-arg", "WHO=a")
    of_a = keys(cache_store)
    build(cache_store, ctx, "age:b", "--build-arg", "WHO=b")
    of_b = keys(cache_store) - of_a
    assert backdate(cache_store, of_b, 3 * 3600) == 2
    assert removed(cli(cache_store, "cache", "prune", "--filter", "until=2h").stdout) == 2
    assert run_step_status(build(cache_store, ctx, "age:a", "--build-arg", "WHO=a")) == "CACHED"
    # With no option, records unused for 48 hours go.
    assert backdate(cache_store, of_a, 47 * 3600) == 2
    assert removed(cli(cache_store, "cache", "prune").stdout) == 0
    assert backdate(cache_store, of_a, 2 * 3600) == 2
    assert removed(cli(cache_store, "cache", "prune").stdout) == 2
    assert run_step_status(build(cache_store, ctx, "age:a", "--build-arg", "WHO=a")) == "RAN"
    cli(cache_store, "store", "verify")
    bad = cli(cache_store, "cache", "prune", "--filter", "since=1h", check=False)
    assert bad.returncode != 0 and "until=DURATION" in bad.stderr and "Traceback" not in bad.stderr


def test_keep_storage_counts_a_layer_records_share_once(cache_store: Path, tmp_path: Path) -> None:
    # The RUN's key changes with WHO, its result does not (cp -p keeps the mtime): two records, one layer.
    dockerfile = "FROM busybox:latest\nCOPY blob.bin /blob.bin\nARG WHO\nRUN cp -p /blob.bin /copy.bin\n"
    ctx = write_context(tmp_path, dockerfile, {"blob.bin": os.urandom(1_000_000)})
    build(cache_store, ctx, "share:a", "--build-arg", "WHO=a")
    build(cache_store, ctx, "share:b", "--build-arg", "WHO=b")
    with sqlite3.connect(cache_store / "pybuild.db") as db:
        runs = db.execute("SELECT chain_id, size FROM cache WHERE instruction LIKE 'RUN cp%'").fetchall()
    assert len(runs) == 2 and runs[0] == runs[1] and runs[0][1] > 900_000
    # COPY's 1 MB + the RUN's 1 MB, once: everything fits in 2.5 MB
    assert removed(cli(cache_store, "cache", "prune", "--keep-storage", "2.5MB").stdout) == 0
    # the RUN records (most recently used) keep their shared 1 MB; COPY's record no longer fits
    assert removed(cli(cache_store, "cache", "prune", "--keep-storage", "1.5MB").stdout) == 1
    cli(cache_store, "store", "verify")
