"""What `pybuild build --progress plain` says about the cache: MISS reasons, --no-cache, --explain-cache and
--no-cache-filter, through the real CLI."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

from cachetest_util import cli, write_context

from pybuild.store.store import Store

APP = """\
FROM busybox:latest
ARG VERSION=1
RUN echo "v$VERSION" > /version
COPY src/ /src/
RUN ls /src > /listing
"""
SRC = {f"src/{n}.py": f"# {n}\n" for n in ("app", "b", "c", "d", "e")}


def plain_build(root: Path, ctx: Path, *extra: str) -> str:
    return cli(root, "build", "--progress", "plain", *extra, str(ctx)).stderr


def step_lines(output: str, instruction: str) -> list[str]:
    """The lines of the step whose name ends with instruction (its #N lines)."""
    m = re.search(rf"^#(\d+) \[[^\]]*\] {re.escape(instruction)}$", output, re.M)
    assert m, f"no step {instruction!r} in:\n{output}"
    return [line for line in output.splitlines() if line.startswith(f"#{m.group(1)} ")]


def test_file_changes_name_the_first_file_and_count_the_rest(cache_store: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path, APP, SRC)
    plain_build(cache_store, ctx)
    for n in ("app", "b", "c", "d"):
        (ctx / f"src/{n}.py").write_text(f"# {n} changed\n")
    out = plain_build(cache_store, ctx)
    lines = step_lines(out, "COPY src/ /src/")
    assert any(re.fullmatch(r"#\d+ MISS: src/app\.py changed \(and 3 more files\)", x) for x in lines), lines
    assert any(x.endswith("MISS: previous step changed") for x in step_lines(out, "RUN ls /src > /listing"))
    assert any(x.endswith(" CACHED") for x in step_lines(out, 'RUN echo "v$VERSION" > /version'))


def test_build_arg_change_is_named(cache_store: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path, APP, SRC)
    plain_build(cache_store, ctx)
    out = plain_build(cache_store, ctx, "--build-arg", "VERSION=2")
    assert re.search(r"^#\d+ MISS: build arg VERSION changed$", out, re.M), out


def test_base_image_change_is_named(cache_store: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path, APP, SRC)
    plain_build(cache_store, ctx)
    # Re-import busybox:latest from its own layer with one more ENV: the same files, a new image.
    with Store.open(cache_store) as store:
        img = store.resolve("busybox:latest")
        layer_blob = store.blob_path(img.manifest.layers[0].digest)
    from pybuild.layer.compression import open_decompressed

    tar_path = tmp_path / "busybox.tar"
    with open(layer_blob, "rb") as f, open_decompressed(f) as plain, open(tar_path, "wb") as out_f:
        out_f.write(plain.read())
    with tarfile.open(tar_path) as t:
        assert "./bin/busybox" in t.getnames() or "bin/busybox" in t.getnames()
    cli(cache_store, "import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change", "ENV REIMPORTED=1", str(tar_path), "busybox:latest")
    out = plain_build(cache_store, ctx)
    first = step_lines(out, "ARG VERSION=1")
    assert any(x.endswith("MISS: base image busybox:latest changed") for x in first), out
    assert " CACHED" not in out


def test_no_cache_says_so_for_every_step(cache_store: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path, APP, SRC)
    plain_build(cache_store, ctx)
    out = plain_build(cache_store, ctx, "--no-cache")
    for inst in ("ARG VERSION=1", 'RUN echo "v$VERSION" > /version', "COPY src/ /src/", "RUN ls /src > /listing"):
        assert any(x.endswith("MISS: --no-cache") for x in step_lines(out, inst)), out
    assert " CACHED" not in out


def test_explain_cache_compares_every_step(cache_store: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path, APP, SRC)
    first = plain_build(cache_store, ctx, "--explain-cache")
    for inst in ("ARG VERSION=1", "RUN ls /src > /listing"):
        lines = step_lines(first, inst)
        assert any(re.search(r" cache key sha256:[0-9a-f]{64}$", x) for x in lines), lines
        assert any(x.endswith("MISS: no earlier record for this step") for x in lines), lines
    (ctx / "src/e.py").write_text("# e changed\n")
    out = plain_build(cache_store, ctx, "--explain-cache", "--build-arg", "VERSION=3")
    for inst, reason in [("ARG VERSION=1", "MISS: build arg VERSION changed"),
                         ('RUN echo "v$VERSION" > /version', "MISS: build arg VERSION changed"),
                         ("COPY src/ /src/", "MISS: src/e.py changed"),
                         ("RUN ls /src > /listing", "MISS: previous step changed")]:
        lines = step_lines(out, inst)
        assert any(x.endswith(reason) for x in lines), (inst, lines)
        assert any(" cache key sha256:" in x for x in lines)
    # The COPY step lists every input that differs: its parent and the file (a build arg is a RUN's input only).
    copy = [x.split(" MISS: ")[1] for x in step_lines(out, "COPY src/ /src/") if " MISS: " in x]
    assert copy == ["previous step changed", "src/e.py changed"]
    run = [x.split(" MISS: ")[1] for x in step_lines(out, 'RUN echo "v$VERSION" > /version') if " MISS: " in x]
    assert run == ["build arg VERSION changed"]  # the ARG before it changed nothing else it can see
    again = plain_build(cache_store, ctx, "--explain-cache", "--build-arg", "VERSION=3")
    for inst in ("ARG VERSION=1", "COPY src/ /src/", "RUN ls /src > /listing"):
        lines = step_lines(again, inst)
        assert any(x.endswith("HIT: a record with this key exists") for x in lines), lines
        assert any(x.endswith(" CACHED") for x in lines), lines


def test_no_cache_filter_runs_only_that_stage(cache_store: Path, tmp_path: Path) -> None:
    dockerfile = ("FROM busybox:latest AS deps\nRUN echo deps > /deps\n\n"
                  "FROM deps AS app\nRUN echo app > /app\nRUN cat /deps /app > /both\n")
    ctx = write_context(tmp_path, dockerfile)
    plain_build(cache_store, ctx)
    out = plain_build(cache_store, ctx, "--no-cache-filter", "app")
    assert any(x.endswith(" CACHED") for x in step_lines(out, "RUN echo deps > /deps"))
    for inst in ("RUN echo app > /app", "RUN cat /deps /app > /both"):
        assert any(x.endswith("MISS: --no-cache") for x in step_lines(out, inst)), out
    by_index = plain_build(cache_store, ctx, "--no-cache-filter", "0")
    assert any(x.endswith("MISS: --no-cache") for x in step_lines(by_index, "RUN echo deps > /deps"))
