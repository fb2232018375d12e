"""A build can never reach the host's files through symlinks: not from a bind mount of the context, not by
exporting an image into a directory that holds links, and secrets keep their source= id and a relative target."""

from __future__ import annotations

import os
from pathlib import Path

from buildtest_util import ListSink, export_rootfs, lib_build, write_case


def _log(sink: ListSink) -> str:
    return "\n".join(getattr(e, "line", "") for e in sink.events)


def test_context_bind_mount_resolves_symlinks_inside_the_context(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, "FROM busybox:latest\n"
                               "RUN --mount=type=bind,source=hostroot,target=/m "
                               "sh -c 'ls /m; cat /m/etc/passwd 2>/dev/null || echo no-host-passwd'\n",
                     {"inside.txt": "x\n"})
    os.symlink("/", ctx / "hostroot")  # resolves to the context's own root, never the host's `/`
    sink = ListSink()
    lib_build(busybox_store, ctx, sink, no_cache=True)
    log = _log(sink)
    assert "inside.txt" in log and "no-host-passwd" in log


def test_local_output_replaces_links_instead_of_following_them(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, "FROM busybox:latest\nRUN mkdir -p /app && echo new > /app/file\n")
    result = lib_build(busybox_store, ctx)
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    dest = tmp_path / "out"
    (dest / "app").mkdir(parents=True)
    os.symlink(victim, dest / "app" / "file")  # left over from somewhere: must be replaced, not written through
    export_rootfs(busybox_store, result.image, dest)
    assert victim.read_text() == "untouched\n"
    assert not (dest / "app" / "file").is_symlink()
    assert (dest / "app" / "file").read_text() == "new\n"


def test_secret_by_source_and_relative_target(busybox_store: Path, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t\n")
    ctx = write_case(tmp_path, "FROM busybox:latest\nWORKDIR /w\n"
                               "RUN --mount=type=secret,source=tok,target=rel cat /w/rel\n")
    sink = ListSink()
    lib_build(busybox_store, ctx, sink, secrets={"tok": secret}, no_cache=True)
    assert "s3cr3t" in _log(sink)
