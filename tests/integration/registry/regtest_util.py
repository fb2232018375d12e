"""Real registries for the tests: Debian's docker-registry on 127.0.0.1 (open, htpasswd, token auth, TLS),
a test token issuer, a fault proxy, and images seeded with skopeo. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "tester", "s3cret-pw"
REFRESH_TOKEN = "test-refresh-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RegistryProc:
    host: str  # 127.0.0.1:PORT
    root: Path
    proc: subprocess.Popen[bytes]
    scheme: str = "http"
    ca: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _wait(url: str, proc: subprocess.Popen[bytes], ctx: Any = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            urllib.request.urlopen(url, timeout=1, context=ctx)
            return
        except urllib.error.HTTPError:
            return  # 401: it is up
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("docker-registry did not start")


def start_registry(tmp: Path, auth: str = "", tls: tuple[Path, Path] | None = None) -> RegistryProc:
    if not os.path.exists(REGISTRY_BIN):
        pytest.fail("docker-registry is not installed (scripts/test.sh installs it)")
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    tls_conf = f"\n  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}" if tls else ""
    cfg = f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {tmp / 'data'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: testsecret{tls_conf}
{auth}"""
    (tmp / "config.yml").write_text(cfg)
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(tmp / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    scheme = "https" if tls else "http"
    import ssl

    ctx = ssl._create_unverified_context() if tls else None
    _wait(f"{scheme}://127.0.0.1:{port}/v2/", proc, ctx)
    return RegistryProc(f"127.0.0.1:{port}", tmp, proc, scheme)


def _stop(r: RegistryProc) -> None:
    r.proc.terminate()
    try:
        r.proc.wait(10)
    except subprocess.TimeoutExpired:
        r.proc.kill()
        r.proc.wait()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProc]:
    r = start_registry(tmp_path / "reg")
    yield r
    _stop(r)


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[RegistryProc]:
    import bcrypt

    pw = tmp_path / "htpasswd"
    pw.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
    r = start_registry(tmp_path / "reg", auth=f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {pw}\n")
    yield r
    _stop(r)


# --- certificates ------------------------------------------------------------------------------------------

def _make_cert(cn: str, key: Any, issuer_key: Any, issuer_name: Any | None, *, ca: bool, ip: str | None = None
               ) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        import ipaddress

        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption()))


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[RegistryProc]:
    """A registry behind TLS with a self-signed CA (not in certs.d: the test decides where it goes)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _make_cert("pybuild test CA", ca_key, ca_key, None, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _make_cert("127.0.0.1", key, ca_key, ca.subject, ca=False, ip="127.0.0.1")
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "ca.crt").write_bytes(_pem(ca))
    (tmp_path / "tls" / "server.crt").write_bytes(_pem(cert))
    (tmp_path / "tls" / "server.key").write_bytes(_key_pem(key))
    r = start_registry(tmp_path / "reg", tls=(tmp_path / "tls" / "server.crt", tmp_path / "tls" / "server.key"))
    r.ca = tmp_path / "tls" / "ca.crt"
    yield r
    _stop(r)


# --- token auth --------------------------------------------------------------------------------------------

def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenIssuer:
    """Issues JWTs the registry trusts (RS256, x5c = the test certificate); records each request."""

    def __init__(self, service: str, issuer: str) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert = _make_cert("token issuer", self.key, self.key, None, ca=False)
        self.service, self.issuer = service, issuer
        self.requests: list[dict[str, Any]] = []
        self.expires_in = 300

    def token(self, subject: str, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        access = []
        for s in scopes:
            typ, _, rest = s.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": typ, "name": name, "actions": actions.split(",") if subject else []})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing + "." + _b64url(sig)


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[RegistryProc]:
    issuer = TokenIssuer("test-registry", "test-issuer")
    bundle = tmp_path / "issuer.crt"
    bundle.write_bytes(_pem(issuer.cert))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            import urllib.parse

            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            auth = self.headers.get("Authorization", "")
            issuer.requests.append({"query": q, "auth": auth})
            subject = ""
            if auth.startswith("Basic "):
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                if (user, pw) != (USER, PASSWORD):
                    self.send_response(401)
                    self.end_headers()
                    return
                subject = user
            body = json.dumps({"token": issuer.token(subject, q.get("scope", [])),
                               "expires_in": issuer.expires_in}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            # OAuth2 refresh-token grant, as `docker login` identity tokens use
            import urllib.parse

            n = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(n).decode())
            issuer.requests.append({"form": form, "auth": self.headers.get("Authorization", "")})
            if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [REFRESH_TOKEN]:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            scopes = form.get("scope", [""])[0].split()
            body = json.dumps({"access_token": issuer.token(USER, scopes), "expires_in": issuer.expires_in}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    realm = f"http://127.0.0.1:{srv.server_address[1]}/token"
    auth = (f"auth:\n  token:\n    realm: {realm}\n    service: test-registry\n    issuer: test-issuer\n"
            f"    rootcertbundle: {bundle}\n")
    r = start_registry(tmp_path / "reg", auth=auth)
    r.extra["issuer"] = issuer
    yield r
    _stop(r)
    srv.shutdown()
    srv.server_close()


# --- the fault proxy ---------------------------------------------------------------------------------------

class FaultProxy:
    """Forwards to a registry, with faults: drop (cut blob bodies halfway, once per blob), status (answer
    e.g. 500 or 429 to the next N requests), corrupt (flip a byte of blob bodies)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.drop = False
        self.dropped: set[str] = set()
        self.fail_status = 0
        self.fail_count = 0
        self.retry_after: str | None = None
        self.corrupt = False
        self.log: list[tuple[str, str, int]] = []
        # path -> (content type, body) answered instead of the registry
        self.override: dict[str, tuple[str, bytes]] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _handle(self) -> None:
                import http.client

                if proxy.fail_count > 0:
                    proxy.fail_count -= 1
                    proxy.log.append((self.command, self.path, proxy.fail_status))
                    self.send_response(proxy.fail_status)
                    if proxy.retry_after is not None:
                        self.send_header("Retry-After", proxy.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                if self.path in proxy.override:
                    ctype, payload = proxy.override[self.path]
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                proxy.log.append((self.command, self.path, resp.status))
                is_blob = "/blobs/sha256:" in self.path and self.command == "GET" and resp.status in (200, 206)
                if is_blob and proxy.corrupt and data:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if is_blob and proxy.drop and self.path not in proxy.dropped and len(data) > 1:
                    proxy.dropped.add(self.path)
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fault_proxy(registry: RegistryProc) -> Iterator[FaultProxy]:
    p = FaultProxy(registry.host)
    yield p
    p.close()


# --- images ------------------------------------------------------------------------------------------------

@dataclass
class SampleImage:
    manifest: bytes
    config: bytes
    layers: list[bytes]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def make_image(files: dict[str, bytes], n_layers: int = 1) -> SampleImage:
    """A small OCI image: n_layers gzip layers of the given files (split between them)."""
    layers: list[bytes] = []
    diff_ids: list[str] = []
    items = sorted(files.items())
    for i in range(n_layers):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name, data in items[i::n_layers]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 0
                t.addfile(info, io.BytesIO(data))
        diff_ids.append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
        layers.append(gzip.compress(raw.getvalue(), mtime=0))
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()

    def desc(mt: str, b: bytes) -> dict[str, Any]:
        return {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(b).hexdigest(), "size": len(b)}

    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", b) for b in layers],
    }).encode()
    return SampleImage(manifest, config, layers)


def write_oci_layout(img: SampleImage, d: Path) -> Path:
    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for b in [img.manifest, img.config, *img.layers]:
        (blobs / hashlib.sha256(b).hexdigest()).write_bytes(b)
    (d / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.digest,
        "size": len(img.manifest), "annotations": {"org.opencontainers.image.ref.name": "t"}}]}))
    return d


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("skopeo") is None:
        pytest.fail("skopeo is not installed (scripts/test.sh installs it)")
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=check, timeout=120)


def seed(img: SampleImage, tmp: Path, dest: str, *creds: str) -> None:
    """Push img with skopeo (the independent client) to docker://dest."""
    layout = write_oci_layout(img, tmp / f"oci-{os.urandom(3).hex()}")
    skopeo("copy", "-q", "--dest-tls-verify=false", *creds, f"oci:{layout}:t", f"docker://{dest}")
