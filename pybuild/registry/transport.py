"""HTTP to one registry host: TLS (system CAs + certs.d), plain HTTP where allowed, auth challenges, retries.

Standard library only (http.client + ssl): the protocol needs nothing more, and a streamed blob body must not be
buffered by a library. One ``Transport`` per registry host; it is safe to share between threads (each request
opens its own connection; the token cache is locked).

- TLS: the system CAs plus ``<dir>/<host>/*.crt`` (CAs) and ``*.cert``/``*.key`` pairs (client certificates)
  for each dir of ``PYBUILD_CERTS_DIRS`` (colon-separated; default ``/etc/containers/certs.d:/etc/docker/certs.d``).
- Plain HTTP only for localhost, 127.0.0.0/8, ::1, or hosts marked insecure; those try HTTPS first like Docker.
- Auth: ``GET /v2/`` learns the challenge; Bearer tokens (realm/service/scope, with credentials or anonymous,
  identity tokens as OAuth refresh tokens) are reused until ``expires_in``; Basic sends the credentials.
- 429 and 5xx are retried with exponential backoff, honouring ``Retry-After``.
- Redirects are followed, and Authorization is never sent to another host.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pybuild.errors import PybuildError
from pybuild.registry.credentials import Credentials

DEFAULT_CERTS_DIRS = "/etc/containers/certs.d:/etc/docker/certs.d"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "pybuild/0.1"
TIMEOUT = float(os.environ.get("PYBUILD_REGISTRY_TIMEOUT", "60"))


class RegistryError(PybuildError):
    """A failure talking to a registry; status is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None, hint: str | None = None,
                 codes: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.codes = codes


def is_local_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (with or without a port): plain HTTP is allowed there, as Docker does."""
    h = host
    if h.startswith("["):
        h = h[1:h.find("]")]
    elif h.count(":") == 1:
        h = h.split(":")[0]
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _split_host(host: str, default_port: int) -> tuple[str, int]:
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[1:end], host[end + 1:]
        return name, int(rest[1:]) if rest.startswith(":") else default_port
    name, _, port = host.partition(":")
    return name, int(port) if port else default_port


def tls_context(host: str, verify: bool = True) -> ssl.SSLContext:
    """System CAs plus the host's certs.d CAs and client certificate."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    dirs = os.environ.get("PYBUILD_CERTS_DIRS", DEFAULT_CERTS_DIRS)
    for base in filter(None, dirs.split(":")):
        d = Path(base) / host
        if not d.is_dir():
            continue
        try:
            for f in sorted(d.iterdir()):
                if f.suffix == ".crt" and verify:
                    ctx.load_verify_locations(cafile=str(f))
                elif f.suffix == ".cert":
                    key = f.with_suffix(".key")
                    if not key.is_file():
                        raise PybuildError(f"client certificate {f} has no key {key.name} next to it")
                    ctx.load_cert_chain(str(f), str(key))
        except (ssl.SSLError, OSError) as e:
            raise PybuildError(f"cannot load the TLS files in {d}: {e}") from None
    return ctx


@dataclass
class Challenge:
    scheme: str  # "bearer", "basic" or "" (no auth needed)
    params: dict[str, str] = field(default_factory=dict)


_PARAM_RE = re.compile(r'\s*([a-zA-Z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3) or "")
              for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params)


@dataclass
class _Token:
    value: str
    expires: float


class Response:
    """A response whose body is not read yet (blobs stream from it)."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str) -> None:
        self.conn = conn
        self.raw = resp
        self.status = resp.status
        self.headers = resp.headers
        self.url = url

    def read(self, limit: int | None = None) -> bytes:
        try:
            return self.raw.read() if limit is None else self.raw.read(limit)
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"connection to {urllib.parse.urlsplit(self.url).netloc} lost: {e}") from None

    def close(self) -> None:
        self.raw.close()
        self.conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Transport:
    """Requests to one registry host, authenticated and retried."""

    def __init__(self, host: str, credentials: Credentials | None = None, *, insecure: bool = False,
                 retries: int = 4, backoff: float = 0.5) -> None:
        self.host = host
        self.credentials = credentials or Credentials()
        self.insecure = insecure
        self.retries = retries
        self.backoff = backoff
        self._scheme: str | None = None
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._lock = threading.Lock()
        self._ctx: ssl.SSLContext | None = None

    # --- connections ---------------------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ctx is None:
            self._ctx = tls_context(self.host, verify=not self.insecure)
        return self._ctx

    def _connect(self, scheme: str, host: str) -> http.client.HTTPConnection:
        if scheme == "https":
            name, port = _split_host(host, 443)
            ctx = self._context() if host == self.host else ssl.create_default_context()
            return http.client.HTTPSConnection(name, port, timeout=TIMEOUT, context=ctx)
        name, port = _split_host(host, 80)
        return http.client.HTTPConnection(name, port, timeout=TIMEOUT)

    def _raw(self, method: str, url: str, headers: Mapping[str, str], body: bytes | IO[bytes] | None) -> Response:
        u = urllib.parse.urlsplit(url)
        conn = self._connect(u.scheme, u.netloc)
        path = u.path + (f"?{u.query}" if u.query else "")
        try:
            conn.request(method, path, body=body, headers={"User-Agent": USER_AGENT, **headers})
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        return Response(conn, resp, url)

    def _fail_connect(self, e: BaseException, what: str) -> RegistryError:
        if isinstance(e, socket.gaierror):
            return RegistryError(f"{what}: cannot resolve registry host {self.host}: {e.strerror}")
        if isinstance(e, ConnectionRefusedError):
            return RegistryError(f"{what}: connection to registry {self.host} refused")
        if isinstance(e, ssl.SSLCertVerificationError):
            return RegistryError(f"{what}: TLS certificate of {self.host} not trusted: {e.verify_message}",
                                 hint=f"put its CA in /etc/containers/certs.d/{self.host}/ca.crt, or mark the "
                                      "registry insecure")
        if isinstance(e, ssl.SSLError):
            return RegistryError(f"{what}: TLS failure talking to {self.host}: {e.reason or e}")
        if isinstance(e, TimeoutError | socket.timeout):
            return RegistryError(f"{what}: registry {self.host} did not answer in {TIMEOUT:.0f} s")
        return RegistryError(f"{what}: cannot reach registry {self.host}: {e}")

    def _base(self, what: str) -> str:
        """The scheme to use, found once: HTTPS, falling back to HTTP only where allowed."""
        if self._scheme is not None:
            return f"{self._scheme}://{self.host}"
        plain_ok = self.insecure or is_local_host(self.host)
        try:
            with self._raw("GET", f"https://{self.host}/v2/", {}, None) as r:
                r.read()
                self._note_challenge(r)
            self._scheme = "https"
        except ssl.SSLCertVerificationError as e:
            raise self._fail_connect(e, what) from None  # a TLS server we do not trust: never downgrade
        except (ssl.SSLError, ConnectionResetError, http.client.BadStatusLine) as e:
            if not plain_ok:
                raise self._fail_connect(e, what) from None
            self._scheme = "http"
        except OSError as e:
            if not plain_ok or isinstance(e, socket.gaierror):
                raise self._fail_connect(e, what) from None
            self._scheme = "http"
        return f"{self._scheme}://{self.host}"

    def _note_challenge(self, r: Response) -> None:
        if r.status == 401:
            self._challenge = parse_challenge(r.headers.get("WWW-Authenticate", ""))
        elif r.status < 300 and self._challenge is None:
            self._challenge = Challenge("")

    # --- auth ----------------------------------------------------------------------------------------------

    def ping(self, what: str) -> Challenge:
        """GET /v2/ (once): which auth the registry asks for."""
        base = self._base(what)
        if self._challenge is None:
            try:
                with self._raw("GET", f"{base}/v2/", {}, None) as r:
                    r.read()
                    self._note_challenge(r)
                    if self._challenge is None:
                        raise RegistryError(f"{what}: {self.host} answered GET /v2/ with HTTP {r.status}: "
                                            "not a registry?", r.status)
            except OSError as e:
                raise self._fail_connect(e, what) from None
        assert self._challenge is not None
        return self._challenge

    def _basic(self) -> str:
        c = self.credentials
        return "Basic " + base64.b64encode(f"{c.username}:{c.password}".encode()).decode()

    def _token(self, scopes: tuple[str, ...], what: str, *, refresh: bool = False) -> str:
        with self._lock:
            t = self._tokens.get(scopes)
            if t is not None and not refresh and t.expires > time.monotonic():
                return t.value
        ch = self._challenge
        assert ch is not None
        realm = ch.params.get("realm")
        if not realm:
            raise RegistryError(f"{what}: {self.host} asks for a bearer token but names no realm")
        service = ch.params.get("service", "")
        c = self.credentials
        now = time.monotonic()
        if c.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": c.identity_token, "client_id": "pybuild",
                    "service": service, "scope": " ".join(scopes)}
            data = self._token_request("POST", realm, None, urllib.parse.urlencode(form).encode(), what)
        else:
            q = [("service", service)] if service else []
            q += [("scope", s) for s in scopes]
            if c.username:
                q.append(("account", c.username))
            url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(q)
            data = self._token_request("GET", url, self._basic() if c else None, None, what)
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{what}: the token server of {self.host} returned no token")
        expires_in = data.get("expires_in")
        ttl = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 60.0
        with self._lock:
            # renew a little early: a token that expires in flight makes the request fail
            self._tokens[scopes] = _Token(token, now + max(ttl - 10, ttl / 2))
        return token

    def _token_request(self, method: str, url: str, auth: str | None, body: bytes | None,
                       what: str) -> dict[str, Any]:
        headers = {"Authorization": auth} if auth else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            with self._raw(method, url, headers, body) as r:
                payload = r.read(1 << 20)
                status = r.status
        except OSError as e:
            raise self._fail_connect(e, what) from None
        if status in (401, 403):
            raise RegistryError(f"{what}: authentication to {self.host} failed: wrong username or password "
                                "(the token server said no)", status, hint=f"pybuild login {self.host}")
        if status >= 300:
            raise RegistryError(f"{what}: the token server of {self.host} answered HTTP {status}", status)
        try:
            data = json.loads(payload)
        except json.JSONDecodeError:
            raise RegistryError(f"{what}: the token server of {self.host} returned no JSON") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{what}: the token server of {self.host} returned no JSON object")
        return data

    def _auth_header(self, scopes: tuple[str, ...], what: str, *, refresh: bool = False) -> dict[str, str]:
        ch = self.ping(what)
        if ch.scheme == "bearer":
            return {"Authorization": "Bearer " + self._token(scopes, what, refresh=refresh)}
        if ch.scheme == "basic" and self.credentials:
            return {"Authorization": self._basic()}
        return {}

    # --- requests ------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, scopes: Iterable[str] = (), what: str,
                headers: Mapping[str, str] | None = None, body: bytes | IO[bytes] | None = None,
                ok: Iterable[int] = (200,), retry: bool = True) -> Response:
        """One request, authenticated for scopes; raise RegistryError unless the final status is in ok.

        path is relative to the host (``/v2/...``) or an absolute URL (upload locations). A body that is a file
        is not retried (it cannot be rewound here); bytes are.
        """
        scopes_t = tuple(sorted(set(scopes)))
        ok_set = frozenset(ok)
        base = self._base(what)
        url = path if "://" in path else base + path
        attempt = 0
        refreshed = False
        while True:
            hdrs = {**(headers or {}), **self._auth_header(scopes_t, what, refresh=refreshed and attempt == 0)}
            try:
                resp = self._follow(method, url, hdrs, body)
            except (OSError, http.client.HTTPException) as e:
                if retry and attempt < self.retries and not isinstance(e, socket.gaierror | ssl.SSLError) and (
                        body is None or isinstance(body, bytes)):
                    time.sleep(self.backoff * 2 ** attempt)
                    attempt += 1
                    continue
                raise self._fail_connect(e, what) from None
            if resp.status in ok_set:
                return resp
            if resp.status == 401 and not refreshed and self._challenge and self._challenge.scheme == "bearer":
                # the token may have expired or lack a scope the registry wants: get a fresh one, once
                new = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                resp.read()
                resp.close()
                if new.scheme == "bearer" and new.params.get("scope"):
                    scopes_t = tuple(sorted(set(scopes_t) | set(new.params["scope"].split(" "))))
                refreshed = True
                with self._lock:
                    self._tokens.pop(scopes_t, None)
                continue
            if resp.status in RETRY_STATUSES and retry and attempt < self.retries and (
                    body is None or isinstance(body, bytes)):
                delay = _retry_after(resp.headers.get("Retry-After"), self.backoff * 2 ** attempt)
                resp.read()
                resp.close()
                time.sleep(delay)
                attempt += 1
                continue
            raise self._status_error(resp, what)

    def _follow(self, method: str, url: str, headers: dict[str, str], body: bytes | IO[bytes] | None) -> Response:
        for _ in range(10):
            resp = self._raw(method, url, headers, body)
            if resp.status not in (301, 302, 303, 307, 308):
                return resp
            location = resp.headers.get("Location")
            resp.read()
            resp.close()
            if not location:
                return resp
            new = urllib.parse.urljoin(url, location)
            if urllib.parse.urlsplit(new).netloc != urllib.parse.urlsplit(url).netloc:
                # a blob store (S3, a CDN) gets a signed URL, never our credentials
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if resp.status == 303:
                method, body = "GET", None
            url = new
        raise RegistryError(f"too many redirects from {self.host}")

    def _status_error(self, resp: Response, what: str) -> RegistryError:
        status = resp.status
        try:
            payload = resp.read(1 << 16)
        finally:
            resp.close()
        codes: list[str] = []
        detail = ""
        try:
            errs = json.loads(payload).get("errors") or []
            codes = [str(e.get("code", "")) for e in errs if isinstance(e, dict)]
            detail = "; ".join(str(e.get("message") or e.get("code")) for e in errs if isinstance(e, dict))
        except (ValueError, AttributeError):
            pass
        if status == 401:
            msg = (f"{what}: authentication required by {self.host}" if not self.credentials
                   else f"{what}: {self.host} refused the credentials (HTTP 401)")
            return RegistryError(msg, status, hint=f"pybuild login {self.host}", codes=tuple(codes))
        if status == 403:
            return RegistryError(f"{what}: access denied by {self.host} (HTTP 403)" + (f": {detail}" if detail
                                 else ""), status, codes=tuple(codes))
        if status == 404:
            reason = detail or "not found"
            return RegistryError(f"{what}: {reason}", status, codes=tuple(codes))
        if status == 429:
            return RegistryError(f"{what}: {self.host} is rate-limiting us (HTTP 429, still after "
                                 f"{self.retries} retries)", status, codes=tuple(codes))
        return RegistryError(f"{what}: {self.host} answered HTTP {status}" + (f": {detail}" if detail else ""),
                             status, codes=tuple(codes))


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait: Retry-After as seconds or an HTTP date, capped at 60 s."""
    if not value:
        return default
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return default
    return min(max(when - time.time(), 0.0), 60.0)
