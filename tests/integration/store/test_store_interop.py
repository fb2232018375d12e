"""Other OCI tools read our store directly: skopeo by name, umoci unpacks by name."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from storetest_util import add_tar_layers, image_config

from pybuild.store import Store


def _make(store_root: Path) -> str:
    with Store.open(store_root) as store:
        layers = add_tar_layers(store, [{"etc/hello": b"hello\n"}, {"usr/share/x": b"x\n", "etc/hello": b"bye\n"}])
        img = store.put_image(image_config(layers, cmd=("/bin/sh",), env=("PATH=/bin",)), layers,
                              names=["busybox:latest", "localhost:5000/x/y:tag"])
        return img.manifest_digest


def test_skopeo_inspects_by_name(store_root: Path) -> None:
    digest = _make(store_root)
    for name in ("busybox:latest", "localhost:5000/x/y:tag"):
        p = subprocess.run(["skopeo", "inspect", f"oci:{store_root}:{name}"], capture_output=True, text=True,
                           check=False)
        assert p.returncode == 0, p.stderr
        info = json.loads(p.stdout)
        assert info["Digest"] == digest
        assert info["Env"] == ["PATH=/bin"]
        assert len(info["Layers"]) == 2


def test_skopeo_copies_out_of_our_layout(store_root: Path, tmp_path: Path) -> None:
    _make(store_root)
    dest = tmp_path / "copy"
    p = subprocess.run(["skopeo", "copy", f"oci:{store_root}:busybox:latest", f"oci:{dest}:copied"],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr


def test_umoci_unpacks_by_name(store_root: Path, tmp_path: Path) -> None:
    _make(store_root)
    bundle = tmp_path / "bundle"
    p = subprocess.run(["umoci", "unpack", "--image", f"{store_root}:busybox:latest", str(bundle)],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert (bundle / "rootfs" / "etc" / "hello").read_text() == "bye\n"
    assert (bundle / "rootfs" / "usr" / "share" / "x").read_text() == "x\n"
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/sh"]
