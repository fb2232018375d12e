"""Remote images: index platform selection (attestations skipped), mirrors from registries.conf, RepoDigests."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from regtest_util import RegistryProc, SampleImage, free_port, make_image, seed, skopeo

from pybuild.errors import PybuildError
from pybuild.model.oci import MT_OCI_INDEX, MT_OCI_MANIFEST, Platform
from pybuild.model.reference import parse_reference
from pybuild.registry.client import Registry
from pybuild.registry.config import parse_registries_conf
from pybuild.registry.remote import fetch_image


def _d(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _push(reg: Registry, repo: str, img: SampleImage) -> None:
    for b in [img.config, *img.layers]:
        reg.upload_blob(repo, _d(b), len(b), lambda b=b: io.BytesIO(b))
    reg.put_manifest(repo, img.digest, img.manifest, MT_OCI_MANIFEST)


def _index(reg: Registry, repo: str, tag: str) -> tuple[bytes, SampleImage, SampleImage]:
    amd, arm = make_image({"arch": b"amd64"}), make_image({"arch": b"arm64"})
    att = make_image({"att": b"in-toto"})
    for img in (amd, arm, att):
        _push(reg, repo, img)

    def entry(img: SampleImage, os: str, arch: str) -> dict[str, object]:
        return {"mediaType": MT_OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest),
                "platform": {"os": os, "architecture": arch}}

    index = json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
        entry(att, "unknown", "unknown"), entry(arm, "linux", "arm64"), entry(amd, "linux", "amd64")]}).encode()
    reg.put_manifest(repo, tag, index, MT_OCI_INDEX)
    return index, amd, arm


def test_index_platforms(registry: RegistryProc) -> None:
    reg = Registry(registry.host)
    index, amd, arm = _index(reg, "multi/app", "1")
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/multi/app:1").stdout)
    assert len(raw["manifests"]) == 3
    conf = parse_registries_conf("")
    ref = parse_reference(f"{registry.host}/multi/app:1")
    a = fetch_image(ref, Platform("amd64", "linux"), conf=conf)
    assert a.manifest_digest == amd.digest and a.config_bytes == amd.config
    assert a.repo_digest == f"{registry.host}/multi/app@{_d(index)}"
    with a.open_layer(a.layers[0]) as r:
        assert b"".join(r) == amd.layers[0]
    b = fetch_image(ref, Platform("arm64", "linux", "v8"), conf=conf)
    assert b.manifest_digest == arm.digest
    with pytest.raises(PybuildError, match=r"no image for platform linux/s390x \(the index has: linux/amd64, "
                                           r"linux/arm64\)"):
        fetch_image(ref, Platform("s390x", "linux"), conf=conf)


def test_mirror_for_docker_io(registry: RegistryProc, tmp_path: Path) -> None:
    """A registries.conf mirror for docker.io pointing at the local registry makes busybox:latest pull from it."""
    img = make_image({"bin/busybox": b"not really"})
    seed(img, tmp_path, f"{registry.host}/library/busybox:latest")
    dead = f"127.0.0.1:{free_port()}"
    conf = parse_registries_conf(f"""
[[registry]]
prefix = "docker.io"
location = "{registry.host}"
[[registry.mirror]]
location = "{dead}"
[[registry.mirror]]
location = "{registry.host}"
""")
    r = fetch_image(parse_reference("busybox"), Platform("amd64", "linux"), conf=conf)
    assert r.manifest_digest == img.digest and r.endpoint.mirror and r.endpoint.host == registry.host
    assert r.repo_digest == f"busybox@{img.digest}"
    with pytest.raises(PybuildError) as e:
        fetch_image(parse_reference("nothere"), Platform("amd64", "linux"), conf=conf)
    assert "manifest unknown" in e.value.message and f"mirror {dead}: " in e.value.message
