"""`pybuild login`, `logout` and `search` against a real registry with htpasswd auth."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
from regtest_util import PASSWORD, USER, RegistryProc, make_image, seed

from pybuild.cli import main


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "dockercfg"
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("PYBUILD_REGISTRIES_CONF", str(tmp_path / "none.conf"))
    (tmp_path / "none.conf").write_text("")
    return d / "config.json"


def test_login_logout(basic_registry: RegistryProc, docker_config: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    host = basic_registry.host
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong\n"))
    assert main(["login", "-u", USER, "--password-stdin", host]) == 1
    err = capsys.readouterr().err
    assert f"error: login {host}: {host} refused the credentials (HTTP 401)" in err and "Traceback" not in err
    assert not docker_config.exists()

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["login", "-u", USER, "--password-stdin", host]) == 0
    assert "Login Succeeded" in capsys.readouterr().out
    assert stat.S_IMODE(docker_config.stat().st_mode) == 0o600
    assert host in json.loads(docker_config.read_text())["auths"]

    # the saved credentials are used: search the catalog
    from regtest_util import skopeo  # noqa: F401  (seed uses it)

    seed(make_image({"a": b"a"}), docker_config.parent.parent, f"{host}/team/app:1", f"--dest-creds={USER}:{PASSWORD}")
    assert main(["search", f"{host}/app"]) == 0
    assert capsys.readouterr().out.splitlines() == ["NAME", f"{host}/team/app"]

    assert main(["logout", host]) == 0
    assert f"Removing login credentials for {host}" in capsys.readouterr().out
    assert main(["search", f"{host}/app"]) == 1
    assert "authentication required" in capsys.readouterr().err
    assert main(["logout", host]) == 0
    assert f"Not logged in to {host}" in capsys.readouterr().out


def test_login_usage(docker_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["login", "--password-stdin", "localhost:5000"]) == 2
    assert "needs a username" in capsys.readouterr().err
    assert main(["login", "-u", "x", "-p", "y", "bad_host!"]) == 2
    assert "invalid registry 'bad_host!'" in capsys.readouterr().err
    assert main(["search", "busybox"]) == 1
    assert "Docker Hub has no catalog" in capsys.readouterr().err
