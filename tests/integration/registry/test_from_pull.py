"""FROM pulls a missing base image (and every base with --pull), through registries.conf mirrors."""

from __future__ import annotations

from pathlib import Path

import pytest
from regtest_util import RegistryProc, free_port, make_image, seed

from pybuild.cli import main

pytestmark = pytest.mark.root


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dockercfg"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "registries.conf").write_text("")
    monkeypatch.setenv("PYBUILD_REGISTRIES_CONF", str(tmp_path / "registries.conf"))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("mine\n")
    return tmp_path


def _build(env: Path, dockerfile: str, *extra: str) -> int:
    (env / "ctx" / "Dockerfile").write_text(dockerfile)
    out = env / f"out{len(list(env.glob('out*')))}"
    rc = main(["--root", str(env / "store"), "build", "--progress", "plain", *extra,
               "--output", f"type=local,dest={out}", str(env / "ctx")])
    env.joinpath("last_out").write_text(str(out))
    return rc


def _out(env: Path) -> Path:
    return Path(env.joinpath("last_out").read_text())


def test_from_pulls_missing_then_uses_local(registry: RegistryProc, env: Path) -> None:
    seed(make_image({"etc/base": b"v1\n"}), env, f"{registry.host}/base:1")
    df = f"FROM {registry.host}/base:1\nCOPY a.txt /a.txt\n"
    assert _build(env, df) == 0
    assert (_out(env) / "etc/base").read_text() == "v1\n" and (_out(env) / "a.txt").read_text() == "mine\n"
    # the tag moves on the registry: the local copy is used, unless --pull
    seed(make_image({"etc/base": b"v2\n"}), env, f"{registry.host}/base:1")
    assert _build(env, df) == 0
    assert (_out(env) / "etc/base").read_text() == "v1\n"
    assert _build(env, df, "--pull") == 0
    assert (_out(env) / "etc/base").read_text() == "v2\n"


def test_from_busybox_through_mirror(registry: RegistryProc, env: Path) -> None:
    seed(make_image({"bin/busybox": b"fake\n"}), env, f"{registry.host}/library/busybox:latest")
    (env / "registries.conf").write_text(
        f'[[registry]]\nprefix = "docker.io"\nlocation = "{registry.host}"\n'
        f'[[registry.mirror]]\nlocation = "{registry.host}"\n')
    assert _build(env, "FROM busybox:latest\nCOPY a.txt /a.txt\n") == 0
    assert (_out(env) / "bin/busybox").read_text() == "fake\n"


def test_from_unreachable_registry(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = f"127.0.0.1:{free_port()}"
    assert _build(env, f"FROM {host}/base:1\n") == 1
    err = capsys.readouterr().err
    assert "Dockerfile:1" in err and f"connection to registry {host} refused" in err and "Traceback" not in err
