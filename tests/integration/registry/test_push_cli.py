"""`pybuild push` to a real registry: skopeo reads what we push; a second push moves no blobs; pull round-trips."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from regtest_util import PASSWORD, USER, RegistryProc, skopeo

from pybuild.cli import main


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dockercfg"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "registries.conf").write_text("")
    monkeypatch.setenv("PYBUILD_REGISTRIES_CONF", str(tmp_path / "registries.conf"))
    return tmp_path


def _imported(env: Path, root: str, name: str) -> None:
    tar = env / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        for path, data in {"etc/hello": b"hello\n", "bin/app": b"#!/bin/sh\necho app\n"}.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    assert main(["--root", root, "import", str(tar), name]) == 0


def test_push_and_round_trip(registry: RegistryProc, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(env / "store")
    _imported(env, root, "app:1")
    capsys.readouterr()
    dest = f"{registry.host}/team/app:1"
    digestfile = env / "digest"
    assert main(["--root", root, "push", "--digestfile", str(digestfile), "app:1", dest]) == 0
    out = capsys.readouterr().out.splitlines()
    digest = digestfile.read_text()
    assert out[-1].startswith(f"{dest}: digest: {digest} size: ") and sum("Pushed" in x for x in out) == 2
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{dest}").stdout)
    assert info["Digest"] == digest and len(info["Layers"]) == 1
    # everything is there already: nothing uploads
    assert main(["--root", root, "push", "app:1", dest]) == 0
    out = capsys.readouterr().out
    assert "Pushed" not in out and out.count("Layer already exists") == 2
    # a fresh store pulls the same manifest back
    root2 = str(env / "store2")
    assert main(["--root", root2, "pull", "-q", dest]) == 0
    capsys.readouterr()
    assert main(["--root", root2, "inspect", dest]) == 0
    pulled = json.loads(capsys.readouterr().out)[0]["Id"]
    assert main(["--root", root, "inspect", "app:1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["Id"] == pulled

def test_push_needs_login(basic_registry: RegistryProc, env: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(env / "store")
    _imported(env, root, "app:1")
    dest = f"{basic_registry.host}/app:1"
    assert main(["--root", root, "push", "app:1", dest]) == 1
    err = capsys.readouterr().err
    assert f"error: push {dest}" in err and "authentication required" in err and "Traceback" not in err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD))
    assert main(["login", "-u", USER, "--password-stdin", basic_registry.host]) == 0
    assert main(["--root", root, "push", "-q", "app:1", dest]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("sha256:")


def test_push_compression_gzip(registry: RegistryProc, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(env / "store")
    _imported(env, root, "app:1")  # imported layers are zstd by default
    dest = f"{registry.host}/gz/app:1"
    assert main(["--root", root, "push", "--compression", "gzip", "app:1", dest]) == 0
    capsys.readouterr()
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{dest}").stdout)
    assert [x["mediaType"] for x in raw["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    # the same image (same config, so same ID) comes back; a second conversion gives the same blob
    assert main(["--root", root, "push", "--compression", "gzip", "app:1", dest]) == 0
    assert "Pushed" not in capsys.readouterr().out
    root2 = str(env / "store2")
    assert main(["--root", root2, "pull", "-q", dest]) == 0
    capsys.readouterr()
    assert main(["--root", root2, "inspect", dest]) == 0
    pulled = json.loads(capsys.readouterr().out)[0]["Id"]
    assert main(["--root", root, "inspect", "app:1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["Id"] == pulled
    assert main(["--root", root, "push", "--compression", "xz", "app:1", dest]) == 1
    assert "unsupported --compression 'xz'" in capsys.readouterr().err


@pytest.mark.root
def test_build_push(registry: RegistryProc, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = env / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("built\n")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\nCMD [\"/a\"]\n")
    root = str(env / "store")
    t1, t2 = f"{registry.host}/built/app:1", f"{registry.host}/built/app:latest"
    assert main(["--root", root, "build", "--progress", "plain", "-t", t1, "-t", t2, "--push", str(ctx)]) == 0
    err = capsys.readouterr().err
    assert f"pushed {t1}@sha256:" in err and f"pushed {t2}@sha256:" in err
    for t in (t1, t2):
        info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{t}").stdout)
        assert len(info["Layers"]) == 1
    assert main(["--root", root, "build", "--push", str(ctx)]) == 2
    assert "--push needs a name" in capsys.readouterr().err
