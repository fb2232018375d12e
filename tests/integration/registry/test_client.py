"""The registry client against a real docker-registry: pull/push, auth, TLS, faults; skopeo on the other side."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from regtest_util import PASSWORD, REFRESH_TOKEN, USER, FaultProxy, RegistryProc, make_image, seed, skopeo

from pybuild.model.oci import MT_OCI_MANIFEST
from pybuild.registry.client import Registry
from pybuild.registry.credentials import Credentials
from pybuild.registry.transport import RegistryError

FILES = {"etc/hello": b"hello\n", "bin/tool": os.urandom(300_000), "usr/share/x": b"x" * 1000}


def _digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _pull_all(reg: Registry, repo: str, ref: str) -> tuple[bytes, list[bytes]]:
    m = reg.get_manifest(repo, ref)
    man = json.loads(m.data)
    blobs = []
    for d in [man["config"], *man["layers"]]:
        with reg.open_blob(repo, d["digest"], d["size"]) as r:
            blobs.append(b"".join(r))
    return m.data, blobs


def _push(reg: Registry, repo: str, tag: str, img: object) -> str:
    from regtest_util import SampleImage

    assert isinstance(img, SampleImage)
    for b in [img.config, *img.layers]:
        d = _digest(b)
        if reg.has_blob(repo, d) is None:
            reg.upload_blob(repo, d, len(b), lambda b=b: io.BytesIO(b))
    return reg.put_manifest(repo, tag, img.manifest, MT_OCI_MANIFEST)


def test_pull_what_skopeo_pushed(registry: RegistryProc, tmp_path: Path) -> None:
    img = make_image(FILES, n_layers=2)
    seed(img, tmp_path, f"{registry.host}/team/app:1")
    reg = Registry(registry.host)
    m = reg.get_manifest("team/app", "1")
    assert m.digest == img.digest and m.media_type == MT_OCI_MANIFEST
    _, blobs = _pull_all(reg, "team/app", "1")
    assert blobs == [img.config, *img.layers]
    assert reg.get_manifest("team/app", img.digest).data == img.manifest
    assert reg.has_blob("team/app", _digest(img.layers[0])) == len(img.layers[0])
    assert reg.has_blob("team/app", _digest(b"nope")) is None
    assert list(reg.catalog()) == ["team/app"]


def test_push_skopeo_reads_it(registry: RegistryProc) -> None:
    img = make_image(FILES, n_layers=3)
    reg = Registry(registry.host, chunk_size=64 * 1024)  # the 300 kB layer goes in PATCH chunks
    digest = _push(reg, "pushed/app", "v1", img)
    assert digest == img.digest
    out = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/pushed/app:v1").stdout)
    assert out == json.loads(img.manifest)
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/pushed/app:v1").stdout)
    assert info["Digest"] == img.digest and len(info["Layers"]) == 3
    # a cross-repository mount links the blob without uploading it
    layer = img.layers[0]
    assert reg.mount_blob("other/app", _digest(layer), "pushed/app") is True
    assert reg.has_blob("other/app", _digest(layer)) == len(layer)
    assert reg.mount_blob("other/app", _digest(b"missing" * 10), "pushed/app") is False


def test_missing_tag_and_repo(registry: RegistryProc) -> None:
    reg = Registry(registry.host)
    with pytest.raises(RegistryError) as e:
        reg.get_manifest("nope/app", "1")
    assert e.value.message == f"pull {registry.host}/nope/app:1: manifest unknown"
    assert e.value.status == 404


def test_refused_and_unknown_host() -> None:
    from regtest_util import free_port

    port = free_port()
    with pytest.raises(RegistryError, match=f"connection to registry 127.0.0.1:{port} refused"):
        Registry(f"127.0.0.1:{port}").get_manifest("x", "1")
    with pytest.raises(RegistryError, match=r"cannot resolve registry host no-such-host\.invalid"):
        Registry("no-such-host.invalid", retries=0).get_manifest("x", "1")


def test_basic_auth(basic_registry: RegistryProc, tmp_path: Path) -> None:
    img = make_image({"a": b"a"})
    reg = Registry(basic_registry.host, credentials=Credentials(USER, PASSWORD))
    _push(reg, "app", "1", img)
    reg.check_login()
    assert _pull_all(reg, "app", "1")[0] == img.manifest
    with pytest.raises(RegistryError) as e:
        Registry(basic_registry.host, credentials=Credentials(USER, "wrong")).get_manifest("app", "1")
    assert e.value.status == 401 and "refused the credentials" in e.value.message
    with pytest.raises(RegistryError, match="authentication required"):
        Registry(basic_registry.host, credentials=Credentials()).get_manifest("app", "1")
    # skopeo reads it with the same credentials
    skopeo("inspect", "--tls-verify=false", f"--creds={USER}:{PASSWORD}", f"docker://{basic_registry.host}/app:1")


def test_token_auth(token_registry: RegistryProc) -> None:
    issuer = token_registry.extra["issuer"]
    img = make_image({"a": b"a", "b": b"b"}, n_layers=2)
    reg = Registry(token_registry.host, credentials=Credentials(USER, PASSWORD))
    _push(reg, "team/app", "1", img)
    pushes = [r for r in issuer.requests if r["query"].get("scope") == ["repository:team/app:pull,push"]]
    assert len(pushes) == 1, issuer.requests  # one token, reused until expires_in
    assert pushes[0]["query"]["service"] == ["test-registry"] and pushes[0]["auth"].startswith("Basic ")
    assert _pull_all(reg, "team/app", "1")[0] == img.manifest
    # the mount asks for pull on the source repository as well
    assert reg.mount_blob("team/copy", _digest(img.layers[0]), "team/app")
    assert any(sorted(r["query"].get("scope", [])) == ["repository:team/app:pull", "repository:team/copy:pull,push"]
               for r in issuer.requests)
    with pytest.raises(RegistryError) as e:
        Registry(token_registry.host, credentials=Credentials(USER, "wrong")).get_manifest("team/app", "1")
    assert "wrong username or password" in e.value.message
    with pytest.raises(RegistryError) as e2:  # anonymous: the issuer grants nothing
        Registry(token_registry.host, credentials=Credentials()).get_manifest("team/app", "1")
    assert e2.value.status == 401


def test_tls_with_certs_d(tls_registry: RegistryProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tls_registry.ca is not None
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PYBUILD_CERTS_DIRS", str(empty))
    with pytest.raises(RegistryError, match=f"TLS certificate of {tls_registry.host} not trusted"):
        Registry(tls_registry.host).get_manifest("x", "1")
    certs = tmp_path / "certs.d"
    (certs / tls_registry.host).mkdir(parents=True)
    (certs / tls_registry.host / "ca.crt").write_bytes(tls_registry.ca.read_bytes())
    monkeypatch.setenv("PYBUILD_CERTS_DIRS", f"{empty}:{certs}")
    img = make_image({"a": b"tls"})
    reg = Registry(tls_registry.host)
    _push(reg, "app", "1", img)
    assert reg.transport._scheme == "https"
    assert _pull_all(reg, "app", "1")[0] == img.manifest
    # insecure: TLS without verification
    monkeypatch.setenv("PYBUILD_CERTS_DIRS", str(empty))
    assert Registry(tls_registry.host, insecure=True).get_manifest("app", "1").digest == img.digest


def test_resume_after_dropped_connection(registry: RegistryProc, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    img = make_image(FILES)
    seed(img, tmp_path, f"{registry.host}/app:1")
    fault_proxy.drop = True
    reg = Registry(fault_proxy.host)
    _, blobs = _pull_all(reg, "app", "1")
    assert blobs == [img.config, *img.layers]
    assert fault_proxy.dropped  # the layer was cut once and resumed with Range


def test_retry_500_and_429(registry: RegistryProc, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    img = make_image({"a": b"a"})
    seed(img, tmp_path, f"{registry.host}/app:1")
    reg = Registry(fault_proxy.host, backoff=0.01)
    reg.transport.ping("test")
    fault_proxy.fail_status, fault_proxy.fail_count = 500, 2
    assert reg.get_manifest("app", "1").digest == img.digest
    fault_proxy.fail_status, fault_proxy.fail_count, fault_proxy.retry_after = 429, 1, "1"
    import time

    t = time.monotonic()
    assert reg.get_manifest("app", "1").digest == img.digest
    assert time.monotonic() - t >= 0.9  # Retry-After honoured
    fault_proxy.fail_status, fault_proxy.fail_count, fault_proxy.retry_after = 429, 100, "0"
    with pytest.raises(RegistryError, match=r"rate-limiting us \(HTTP 429, still after 4 retries\)") as e:
        reg.get_manifest("app", "1")
    assert f"pull {fault_proxy.host}/app:1" in e.value.message


def test_wrong_digest_refused(registry: RegistryProc, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    img = make_image({"a": b"a" * 5000})
    seed(img, tmp_path, f"{registry.host}/app:1")
    fault_proxy.corrupt = True
    reg = Registry(fault_proxy.host)
    d = _digest(img.layers[0])
    with pytest.raises(RegistryError, match="sent a blob whose digest is"), \
            reg.open_blob("app", d, len(img.layers[0])) as r:
        b"".join(r)


def test_manifest_limits_and_schema1(fault_proxy: FaultProxy) -> None:
    reg = Registry(fault_proxy.host)
    fault_proxy.override["/v2/app/manifests/big"] = (MT_OCI_MANIFEST, b" " * (4 * 1024 * 1024 + 1))
    with pytest.raises(RegistryError, match=r"pull .*/app:big: manifest is 4194305 bytes, over the 4 MiB limit"):
        reg.get_manifest("app", "big")
    fault_proxy.override["/v2/app/manifests/old"] = (
        "application/vnd.docker.distribution.manifest.v1+prettyjws", b'{"schemaVersion": 1}')
    with pytest.raises(RegistryError, match="only has a Docker schema 1 manifest"):
        reg.get_manifest("app", "old")


def test_redirect_drops_authorization() -> None:
    """A redirect to another host (a blob store) must not carry our credentials; one to the same host does."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, str | None]] = []
    ports: dict[str, int] = {}

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            if self.path == "/v2/":
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="x"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path.startswith("/v2/app/blobs/"):
                self.send_response(307)
                self.send_header("Location", f"http://localhost:{ports['p']}/store/blob")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    ports["p"] = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        reg = Registry(f"127.0.0.1:{ports['p']}", credentials=Credentials(USER, PASSWORD))
        with reg.transport.request("GET", "/v2/app/blobs/sha256:" + "a" * 64, what="t") as r:
            assert r.read() == b"ok"
        by_path = dict(seen)
        assert by_path["/v2/app/blobs/sha256:" + "a" * 64] is not None  # the registry got the credentials
        assert by_path["/store/blob"] is None  # localhost:PORT is another host than 127.0.0.1:PORT
    finally:
        srv.shutdown()
        srv.server_close()


def test_identity_token(token_registry: RegistryProc) -> None:
    """An identitytoken (from config.json or a helper's <token> user) is an OAuth refresh token: POST to the realm."""
    issuer = token_registry.extra["issuer"]
    img = make_image({"a": b"id"})
    reg = Registry(token_registry.host, credentials=Credentials(identity_token=REFRESH_TOKEN))
    _push(reg, "app", "1", img)
    assert reg.get_manifest("app", "1").digest == img.digest
    posts = [r for r in issuer.requests if "form" in r]
    assert posts and all(r["auth"] == "" for r in posts)  # no password goes anywhere
    assert posts[0]["form"]["service"] == ["test-registry"]
    with pytest.raises(RegistryError, match="wrong username or password"):
        Registry(token_registry.host, credentials=Credentials(identity_token="stale")).get_manifest("app", "1")
