"""Helpers for the store tests: tiny layer tars, images made from them, and a child-process runner."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from pybuild.model.oci import MT_OCI_LAYER, ContainerConfig, History, ImageConfig, RootFS
from pybuild.store import Image, Layer, Store

REPO = Path(__file__).resolve().parents[3]


def layer_tar(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed, deterministic layer tar holding regular files (parent dirs implied)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def add_tar_layers(store: Store, contents: Sequence[Mapping[str, bytes]], parent: str | None = None) -> list[Layer]:
    """Store each tar as a layer on top of the previous one; returns them bottom first."""
    layers: list[Layer] = []
    for files in contents:
        desc = store.put_blob_bytes(layer_tar(files), MT_OCI_LAYER)
        lay = store.add_layer_blob(desc, parent)
        layers.append(lay)
        parent = lay.chain_id
    return layers


def image_config(layers: Sequence[Layer], **cc: object) -> ImageConfig:
    return ImageConfig(
        created="2024-01-01T00:00:00Z",
        config=ContainerConfig(**cc),  # type: ignore[arg-type]
        rootfs=RootFS(diff_ids=tuple(x.diff_id for x in layers)),
        history=tuple(History(created="2024-01-01T00:00:00Z", created_by=f"layer {i}") for i in range(len(layers))),
    )


def small_image(store: Store, tag: str, files: Mapping[str, bytes] | None = None, *names: str) -> Image:
    """A one-layer image named tag (plus names)."""
    layers = add_tar_layers(store, [files or {"hello.txt": tag.encode()}])
    return store.put_image(image_config(layers), layers, names=(tag, *names))


def spawn_python(code: str, *args: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
    """Run code in a fresh interpreter (argv[1:] = args) with pybuild importable."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
