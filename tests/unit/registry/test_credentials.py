"""Credentials from config.json (auths, credsStore, credHelpers) and auth.json; login's write is mode 0600."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from pybuild.registry import credentials as creds
from pybuild.registry.credentials import Credentials


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return tmp_path


def _auth(u: str, p: str) -> str:
    return base64.b64encode(f"{u}:{p}".encode()).decode()


def test_auths_and_hub_key(env: Path) -> None:
    (env / "docker").mkdir()
    (env / "docker" / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": _auth("hubuser", "hubpw")},
        "registry.example:5000": {"auth": _auth("u", "p:with:colons")},
        "https://tok.example": {"identitytoken": "refresh-me"},
    }}))
    assert creds.lookup("docker.io") == Credentials("hubuser", "hubpw")
    assert creds.lookup("registry-1.docker.io") == Credentials("hubuser", "hubpw")
    assert creds.lookup("registry.example:5000") == Credentials("u", "p:with:colons")
    assert creds.lookup("tok.example").identity_token == "refresh-me"
    assert not creds.lookup("other.example")


def test_auth_json_first_and_namespaces(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = env / "auth.json"
    f.write_text(json.dumps({"auths": {"r.example": {"auth": _auth("a", "1")},
                                       "r.example/team": {"auth": _auth("b", "2")}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(f))
    assert creds.lookup("r.example", "team/app") == Credentials("b", "2")
    assert creds.lookup("r.example", "other/app") == Credentials("a", "1")


def _helper(bindir: Path, name: str, store: Path) -> None:
    bindir.mkdir(exist_ok=True)
    script = bindir / f"docker-credential-{name}"
    script.write_text(f"""#!/usr/bin/env python3
import json, sys
db = {str(store)!r}
try:
    data = json.load(open(db))
except FileNotFoundError:
    data = {{}}
op = sys.argv[1]
if op == "get":
    url = sys.stdin.read().strip()
    if url not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({{"ServerURL": url, "Username": data[url][0], "Secret": data[url][1]}}))
elif op == "store":
    d = json.load(sys.stdin); data[d["ServerURL"]] = [d["Username"], d["Secret"]]
    json.dump(data, open(db, "w"))
elif op == "erase":
    data.pop(sys.stdin.read().strip(), None); json.dump(data, open(db, "w"))
""")
    script.chmod(0o755)


def test_helpers(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(env / "bin", "fake", env / "fake.json")
    _helper(env / "bin", "other", env / "other.json")
    monkeypatch.setenv("PATH", f"{env / 'bin'}:{os.environ['PATH']}")
    (env / "docker").mkdir()
    (env / "docker" / "config.json").write_text(json.dumps({"credsStore": "fake",
                                                            "credHelpers": {"special.example": "other"}}))
    assert not creds.lookup("r.example")
    creds.store("r.example", Credentials("u", "pw"))
    assert json.loads((env / "fake.json").read_text()) == {"r.example": ["u", "pw"]}
    assert creds.lookup("r.example") == Credentials("u", "pw")
    creds.store("special.example", Credentials("s", "t"))
    assert json.loads((env / "other.json").read_text()) == {"special.example": ["s", "t"]}
    assert creds.lookup("special.example") == Credentials("s", "t")
    assert creds.erase("r.example")
    assert not creds.lookup("r.example")


def test_store_writes_0600_and_erase(env: Path) -> None:
    path = creds.store("docker.io", Credentials("me", "pw"))
    assert path == env / "docker" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["auths"]["https://index.docker.io/v1/"]["auth"] == _auth("me", "pw")
    assert creds.erase("docker.io") and not creds.erase("docker.io")
    assert not creds.lookup("docker.io")
