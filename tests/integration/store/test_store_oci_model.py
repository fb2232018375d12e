"""The OCI image model: canonical JSON, parsing of OCI and Docker documents, references."""

from __future__ import annotations

import json

import pytest

from pybuild.errors import PybuildError
from pybuild.model.oci import (
    MT_DOCKER_MANIFEST,
    MT_OCI_CONFIG,
    ContainerConfig,
    Descriptor,
    Healthcheck,
    History,
    ImageConfig,
    Index,
    Manifest,
    RootFS,
    chain_ids,
    sha256_digest,
)
from pybuild.model.reference import normalize_name, parse_reference

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def test_config_canonical_json_roundtrip() -> None:
    cfg = ImageConfig(
        created="2024-01-01T00:00:00Z", author="me",
        config=ContainerConfig(
            user="app", exposed_ports=("80/tcp",), env=("PATH=/bin", "A=b=c"), entrypoint=("/bin/sh", "-c"),
            cmd=(), volumes=("/data",), working_dir="/w", labels={"k": "v"}, stop_signal="SIGTERM",
            healthcheck=Healthcheck(test=("CMD", "true"), interval=30_000_000_000, retries=3),
            on_build=("RUN x",), shell=("/bin/sh", "-c"), args_escaped=True,
        ),
        rootfs=RootFS(diff_ids=(D1, D2)),
        history=(History(created="2024-01-01T00:00:00Z", created_by="ADD x", empty_layer=False),
                 History(created_by="CMD", empty_layer=True)),
    )
    data = cfg.to_json()
    assert b" " not in data.replace(b"ADD x", b"").replace(b"RUN x", b"")
    assert list(json.loads(data)) == sorted(json.loads(data))
    back = ImageConfig.from_json(data)
    assert back == cfg
    assert back.to_json() == data
    assert json.loads(data)["config"]["Cmd"] == []  # explicitly empty survives, unlike unset
    assert "Entrypoint" not in json.loads(ImageConfig().to_json())["config"]
    assert back.config.env_dict() == {"PATH": "/bin", "A": "b=c"}


def test_unknown_fields_survive() -> None:
    raw = {
        "architecture": "arm64", "variant": "v8", "os": "linux", "os.features": ["x"], "container": "c",
        "config": {"Hostname": "h", "Cmd": ["sh"], "Tty": False},
        "rootfs": {"type": "layers", "diff_ids": [D1]},
        "history": [{"created_by": "x", "future_field": 1}],
    }
    cfg = ImageConfig.from_json(json.dumps(raw).encode())
    assert cfg.platform.variant == "v8"
    assert json.loads(cfg.to_json()) == raw


def test_manifest_and_index_parse_docker_types() -> None:
    m = {
        "schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7, "digest": D1},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 9, "digest": D2,
                    "urls": ["http://x"]}],
    }
    man = Manifest.from_json(json.dumps(m))
    assert man.media_type == MT_DOCKER_MANIFEST
    assert man.layers[0].extra == {"urls": ["http://x"]}
    assert json.loads(man.to_json()) == m
    idx = Index.from_json(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": MT_DOCKER_MANIFEST, "size": 1, "digest": D1,
                       "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}}],
    }))
    assert str(idx.manifests[0].platform) == "linux/arm/v7"
    with pytest.raises(PybuildError):
        Manifest.from_json(b"{not json")
    with pytest.raises(PybuildError):
        Descriptor.from_dict({"mediaType": MT_OCI_CONFIG, "digest": "md5:abc", "size": 1})


def test_chain_ids() -> None:
    c = chain_ids([D1, D2])
    assert c[0] == D1
    assert c[1] == sha256_digest(f"{D1} {D2}".encode())


@pytest.mark.parametrize(
    ("ref", "familiar", "full"),
    [
        ("busybox", "busybox:latest", "docker.io/library/busybox:latest"),
        ("library/busybox:1.36", "busybox:1.36", "docker.io/library/busybox:1.36"),
        ("docker.io/library/busybox", "busybox:latest", "docker.io/library/busybox:latest"),
        ("index.docker.io/foo/bar:x", "foo/bar:x", "docker.io/foo/bar:x"),
        ("myapp:1", "myapp:1", "docker.io/library/myapp:1"),
        ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
        ("localhost:5000/x/y:tag", "localhost:5000/x/y:tag", "localhost:5000/x/y:tag"),
        (f"quay.io/a/b@{D1}", f"quay.io/a/b@{D1}", f"quay.io/a/b@{D1}"),
        (f"busybox:1@{D1}", f"busybox:1@{D1}", f"docker.io/library/busybox:1@{D1}"),
    ],
)
def test_parse_reference(ref: str, familiar: str, full: str) -> None:
    r = parse_reference(ref)
    assert r.familiar() == familiar
    assert r.full() == full


@pytest.mark.parametrize("bad", ["", "Busybox", "a:b:c", "x/-y", "busybox:", f"b@{D1[:-1]}", "b:" + "t" * 129])
def test_parse_reference_rejects(bad: str) -> None:
    with pytest.raises(PybuildError):
        parse_reference(bad)


def test_normalize_name() -> None:
    assert normalize_name("busybox") == "busybox:latest"
    assert parse_reference("busybox").registry_host == "registry-1.docker.io"
