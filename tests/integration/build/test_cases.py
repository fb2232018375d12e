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
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from buildtest_util import CASES, ListSink, base_image, check_rootfs, export_rootfs, layer_members, lib_build

from pybuild.errors import PybuildError
from pybuild.store.store import Store
from tests.conftest import run_cli

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

    added_layers = layer_members(busybox_store, img)[base_layers:]
    for layer in added_layers:
        # What the sandbox provides per step never reaches a layer.
        names = {m.name for m in layer}
        assert not names & {"etc/hosts", "etc/resolv.conf", "etc/hostname", "proc", "dev", "sys"}, names
        assert not [n for n in names if n.startswith(("proc/", "dev/", "sys/", "run/secrets/"))], names
    if "layer_has" in spec or "layer_lacks" in spec:
        for idx, names in spec.get("layer_has", {}).items():
            present = {m.name for m in added_layers[int(idx)]}
            for n in names:
                assert n in present, f"layer {idx} lacks {n}: {sorted(present)}"
        for idx, names in spec.get("layer_lacks", {}).items():
            present = {m.name for m in added_layers[int(idx)]}
            for n in names:
                assert n not in present, f"layer {idx} has {n}"

    if "files" in spec or "absent" in spec:
        check_rootfs(export_rootfs(busybox_store, img, tmp_path / "rootfs"), spec)


CLI_CASES = ["build-env-arg", "build-workdir-user", "build-metadata", "build-dockerignore-specific"]


@pytest.mark.parametrize("name", CLI_CASES)
def test_build_case_through_cli(name: str, busybox_store: Path, tmp_path: Path) -> None:
    """The same golden cases through `pybuild build` (flags from expected.json), read back with --output local."""
    case = CASES / name
    spec = json.loads((case / "expected.json").read_text())
    ctx = _prepare(case, tmp_path, spec)
    args = ["--root", str(busybox_store), "build", "-q", "-t", f"cli-{name}:1", "--output",
            f"type=local,dest={tmp_path / 'rootfs'}"]
    for k, v in spec.get("build_args", {}).items():
        args += ["--build-arg", f"{k}={v}"]
    for k, v in spec.get("labels", {}).items():
        args += ["--label", f"{k}={v}"]
    if "dockerfile" in spec:
        args += ["-f", str(ctx / spec["dockerfile"])]
    p = run_cli([*args, str(ctx)])
    assert p.returncode == 0, p.stderr
    with Store.open(busybox_store) as store:
        img = store.resolve(f"cli-{name}:1")
    assert p.stdout.strip() == img.id
    config = img.config.config.to_dict()
    for key, value in spec.get("config", {}).items():
        assert config.get(key) == value, key
    check_rootfs(tmp_path / "rootfs", spec)
