"""Golden build cases: every fixtures/dockerfiles/build-*/ directory is built through the library and checked
against its expected.json.

expected.json keys (all optional):
  description   what the case is about
  dockerfile    -f value relative to the case directory (default: CONTEXT/Dockerfile)
  build_args, labels, target, secrets ({id: file in the case dir}), network
  prebuild      [{"dockerfile": "Dockerfile.base", "tag": "name"}]: built first, in the same store
  archives      {"name.tar.gz": "dir"}: tar archives (tar, tar.gz, tar.xz, tar.bz2, tar.zst) made from a directory
                of the case before the build
  base          "busybox:latest" (default) or "scratch": what history/layer counts are relative to
  files         {"/path": {"type": "file|dir|symlink", "content": str, "mode": "0644", "uid": n, "gid": n,
                 "link": target}} checked in the exported root filesystem (--output type=local)
  absent        ["/path"] that must not exist in the root filesystem
  config        {"Cmd": [...], ...}: OCI container config fields; null means the field must be absent
  history       [["created_by prefix", empty_layer], ...]: the entries the build added on top of the base
  layers        number of layers the build added on top of the base
  layer_has / layer_lacks   {"-1": ["etc/.wh.passwd"]}: tar member names of a layer (index from the bottom of
                the added layers; negative from the top)
  error         the build must fail with a PybuildError whose rendering contains this text
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from pybuild.errors import PybuildError

from buildtest_util import CASES, ListSink, base_image, export_rootfs, layer_members, lib_build

CASE_DIRS = sorted(p for p in CASES.glob("build-*") if (p / "expected.json").is_file())


def _make_archive(src: Path, dest: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(src)), recursive=False)
    raw = buf.getvalue()
    name = dest.name
    if name.endswith(".gz"):
        import gzip

        raw = gzip.compress(raw)
    elif name.endswith(".xz"):
        import lzma

        raw = lzma.compress(raw)
    elif name.endswith(".bz2"):
        import bz2

        raw = bz2.compress(raw)
    elif name.endswith(".zst"):
        raw = zstandard.ZstdCompressor().compress(raw)
    dest.write_bytes(raw)


def _prepare(case: Path, tmp: Path, spec: dict[str, Any]) -> Path:
    ctx = tmp / "ctx"
    shutil.copytree(case, ctx, symlinks=True)
    for name, src in spec.get("archives", {}).items():
        _make_archive(ctx / src, ctx / name)
    return ctx


def _check_file(rootfs: Path, path: str, want: dict[str, Any]) -> None:
    p = rootfs / path.lstrip("/")
    assert os.path.lexists(p), f"{path} is missing from the image"
    st = os.lstat(p)
    kind = want.get("type", "file")
    expected_fmt = {"file": stat.S_ISREG, "dir": stat.S_ISDIR, "symlink": stat.S_ISLNK}[kind]
    assert expected_fmt(st.st_mode), f"{path}: expected a {kind}, mode is {oct(st.st_mode)}"
    if "content" in want:
        assert p.read_text() == want["content"], path
    if "mode" in want:
        assert oct(stat.S_IMODE(st.st_mode)) == oct(int(want["mode"], 8)), path
    if "uid" in want:
        assert st.st_uid == want["uid"], f"{path}: uid"
    if "gid" in want:
        assert st.st_gid == want["gid"], f"{path}: gid"
    if "link" in want:
        assert os.readlink(p) == want["link"], path


@pytest.mark.parametrize("case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_build_case(case: Path, busybox_store: Path, tmp_path: Path) -> None:
    spec = json.loads((case / "expected.json").read_text())
    ctx = _prepare(case, tmp_path, spec)
    for pre in spec.get("prebuild", []):
        lib_build(busybox_store, ctx, dockerfile=str(ctx / pre["dockerfile"]), tags=(pre["tag"],))
    kwargs: dict[str, Any] = {
        "build_args": spec.get("build_args", {}),
        "labels": spec.get("labels", {}),
        "target": spec.get("target"),
        "secrets": {k: ctx / v for k, v in spec.get("secrets", {}).items()},
        "network": spec.get("network", "default"),
        "tags": (f"case-{case.name}:latest",),
    }
    if "dockerfile" in spec:
        kwargs["dockerfile"] = str(ctx / spec["dockerfile"])
    sink = ListSink()
    if "error" in spec:
        with pytest.raises(PybuildError) as info:
            lib_build(busybox_store, ctx, sink, **kwargs)
        assert spec["error"] in info.value.render()
        return
    result = lib_build(busybox_store, ctx, sink, **kwargs)
    img = result.image
    assert result.names == (f"case-{case.name}:latest",)

    base = None if spec.get("base", "busybox:latest") == "scratch" else base_image(busybox_store)
    base_hist = len(base.config.history) if base else 0
    base_layers = len(base.manifest.layers) if base else 0
    if base is not None:
        assert img.config.history[:base_hist] == base.config.history

    config = img.config.config.to_dict()
    for key, value in spec.get("config", {}).items():
        if value is None:
            assert key not in config, f"config {key} should be absent"
        else:
            assert config.get(key) == value, f"config {key}"

    if "history" in spec:
        added = img.config.history[base_hist:]
        got = [(h.created_by, h.empty_layer) for h in added]
        assert len(got) == len(spec["history"]), got
        for (created_by, empty), (prefix, want_empty) in zip(got, spec["history"], strict=True):
            assert created_by.startswith(prefix), (created_by, prefix)
            assert empty == want_empty, created_by
        # Every history entry without empty_layer stands for exactly one layer.
        assert sum(not h.empty_layer for h in img.config.history) == len(img.manifest.layers)

    if "layers" in spec:
        assert len(img.manifest.layers) - base_layers == spec["layers"]

    if "layer_has" in spec or "layer_lacks" in spec:
        added_layers = layer_members(busybox_store, img)[base_layers:]
        for idx, names in spec.get("layer_has", {}).items():
            present = {m.name for m in added_layers[int(idx)]}
            for n in names:
                assert n in present, f"layer {idx} lacks {n}: {sorted(present)}"
        for idx, names in spec.get("layer_lacks", {}).items():
            present = {m.name for m in added_layers[int(idx)]}
            for n in names:
                assert n not in present, f"layer {idx} has {n}"

    if "files" in spec or "absent" in spec:
        rootfs = export_rootfs(busybox_store, img, tmp_path / "rootfs")
        for path, want in spec.get("files", {}).items():
            _check_file(rootfs, path, want)
        for path in spec.get("absent", []):
            assert not os.path.lexists(rootfs / path.lstrip("/")), f"{path} should not be in the image"
