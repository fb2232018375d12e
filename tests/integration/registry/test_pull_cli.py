"""`pybuild pull` from a real registry (seeded by skopeo) into a store: verified, idempotent, nothing half-stored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from regtest_util import FaultProxy, RegistryProc, make_image, seed

from pybuild.cli import main


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dockercfg"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    conf = tmp_path / "registries.conf"
    conf.write_text("")
    monkeypatch.setenv("PYBUILD_REGISTRIES_CONF", str(conf))
    return tmp_path


def test_pull(registry: RegistryProc, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = make_image({"etc/hello": b"hi\n", "bin/x": os.urandom(50_000)}, n_layers=2)
    seed(img, env, f"{registry.host}/team/app:1")
    root = str(env / "store")
    assert main(["--root", root, "pull", f"{registry.host}/team/app:1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{registry.host}/team/app:1" and f"Digest: {img.digest}" in out
    assert sum("Pull complete" in line for line in out) == 2
    assert main(["--root", root, "images", "--format", "json"]) == 0
    assert f'"Repository":"{registry.host}/team/app"' in capsys.readouterr().out
    assert main(["--root", root, "pull", "-q", f"{registry.host}/team/app:1"]) == 0
    assert capsys.readouterr().out == f"{registry.host}/team/app:1\n"
    assert main(["--root", root, "store", "verify"]) == 0


def test_pull_errors_store_nothing(registry: RegistryProc, fault_proxy: FaultProxy, env: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    img = make_image({"a": b"a" * 10_000})
    seed(img, env, f"{registry.host}/app:1")
    root = str(env / "store")
    assert main(["--root", root, "pull", f"{registry.host}/app:2"]) == 1
    assert capsys.readouterr().err.startswith(f"error: pull {registry.host}/app:2: manifest unknown")
    fault_proxy.corrupt = True
    assert main(["--root", root, "pull", f"{fault_proxy.host}/app:1"]) == 1
    err = capsys.readouterr().err
    assert "digest" in err and "Traceback" not in err
    assert main(["--root", root, "images", "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["--root", root, "store", "gc"]) == 0
    import hashlib

    names = {b.name for b in (env / "store" / "blobs" / "sha256").iterdir()}
    assert hashlib.sha256(img.layers[0]).hexdigest() not in names  # the corrupt layer never became a blob


def test_pull_busybox_through_docker_io_mirror(registry: RegistryProc, env: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    img = make_image({"bin/busybox": b"fake"})
    seed(img, env, f"{registry.host}/library/busybox:latest")
    (env / "registries.conf").write_text(
        f'[[registry]]\nprefix = "docker.io"\nlocation = "{registry.host}"\n'
        f'[[registry.mirror]]\nlocation = "{registry.host}"\n')
    root = str(env / "store")
    assert main(["--root", root, "pull", "busybox"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "docker.io/library/busybox:latest"
    assert main(["--root", root, "images"]) == 0
    assert "busybox" in capsys.readouterr().out
