"""The OCI distribution API on one repository: manifests, blobs (streamed, resumed), uploads, mounts, catalog.

Every failure a user can cause is a RegistryError naming the registry and the reference
(``pull 127.0.0.1:5000/x:1: manifest unknown``). A blob read verifies its digest and size while it streams;
a manifest over 4 MiB or a schema1 manifest is refused.
"""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO

from pybuild.model.oci import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MT_DOCKER_MANIFEST,
    MT_DOCKER_MANIFEST_LIST,
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
    check_digest,
    sha256_digest,
    sniff_media_type,
)
from pybuild.registry.credentials import Credentials, lookup
from pybuild.registry.transport import RegistryError, Response, Transport

MAX_MANIFEST = 4 * 1024 * 1024
ACCEPT = ", ".join((MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST_LIST, MT_DOCKER_MANIFEST))
SCHEMA1_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})
# opens a fresh binary stream of the blob each call (a retry re-reads it)
Opener = Callable[[], AbstractContextManager[IO[bytes]]]
CHUNK = 8 * 1024 * 1024  # upload chunk size, and the size above which an upload is chunked
MAX_RESUMES = 5


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    media_type: str
    digest: str


class Registry:
    """A client for the repositories of one registry host (thread-safe: share one per host)."""

    def __init__(self, host: str, *, credentials: Credentials | None = None, insecure: bool = False,
                 retries: int = 4, backoff: float = 0.5, chunk_size: int = CHUNK) -> None:
        self.host = host
        self.transport = Transport(host, credentials if credentials is not None else lookup(host),
                                   insecure=insecure, retries=retries, backoff=backoff)
        self.chunk_size = chunk_size

    # --- manifests -----------------------------------------------------------------------------------------

    def get_manifest(self, repo: str, ref: str, *, what: str | None = None) -> FetchedManifest:
        """The manifest or index at repo:ref (a tag or digest), as its original bytes."""
        what = what or f"pull {self.host}/{repo}{_sep(ref)}{ref}"
        with self.transport.request("GET", f"/v2/{repo}/manifests/{ref}", scopes=[f"repository:{repo}:pull"],
                                    what=what, headers={"Accept": ACCEPT}) as r:
            length = r.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_MANIFEST:
                raise RegistryError(f"{what}: manifest is {int(length)} bytes, over the 4 MiB limit")
            data = r.read(MAX_MANIFEST + 1)
            if len(data) > MAX_MANIFEST:
                raise RegistryError(f"{what}: manifest is over the 4 MiB limit")
            ctype = (r.headers.get("Content-Type") or "").split(";")[0].strip()
            header_digest = r.headers.get("Docker-Content-Digest")
        if ctype in SCHEMA1_TYPES:
            raise RegistryError(f"{what}: the registry only has a Docker schema 1 manifest, which pybuild does "
                                "not support", hint="re-push the image with a current Docker, skopeo or pybuild")
        media_type = ctype if ctype in MANIFEST_TYPES | INDEX_TYPES else sniff_media_type(data)
        if media_type in SCHEMA1_TYPES or media_type not in MANIFEST_TYPES | INDEX_TYPES:
            raise RegistryError(f"{what}: unsupported manifest type {media_type or ctype!r}")
        digest = sha256_digest(data)
        if ref.startswith("sha256:") and digest != ref:
            raise RegistryError(f"{what}: the registry sent a manifest whose digest is {digest}")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise RegistryError(f"{what}: manifest digest {digest} does not match the registry's {header_digest}")
        return FetchedManifest(data, media_type, digest)

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or digest; returns its digest."""
        what = f"push {self.host}/{repo}{_sep(ref)}{ref}"
        with self.transport.request("PUT", f"/v2/{repo}/manifests/{ref}", scopes=[f"repository:{repo}:pull,push"],
                                    what=what, headers={"Content-Type": media_type}, body=data,
                                    ok=(200, 201, 202)) as r:
            r.read()
        return sha256_digest(data)

    # --- blobs ---------------------------------------------------------------------------------------------

    def has_blob(self, repo: str, digest: str, *, what: str | None = None) -> int | None:
        """The blob's size if the repository has it (HEAD), else None."""
        what = what or f"HEAD {self.host}/{repo}@{digest}"
        with self.transport.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=[f"repository:{repo}:pull"],
                                    what=what, ok=(200, 404)) as r:
            if r.status == 404:
                return None
            n = r.headers.get("Content-Length")
            return int(n) if n and n.isdigit() else 0

    def open_blob(self, repo: str, digest: str, size: int | None = None, *, what: str | None = None) -> BlobReader:
        """A verifying, resuming reader of a blob."""
        check_digest(digest)
        return BlobReader(self, repo, digest, size, what or f"pull {self.host}/{repo}@{digest}")

    def _get_blob(self, repo: str, digest: str, offset: int, what: str) -> Response:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return self.transport.request("GET", f"/v2/{repo}/blobs/{digest}", scopes=[f"repository:{repo}:pull"],
                                      what=what, headers=headers, ok=(200, 206))

    # --- uploads -------------------------------------------------------------------------------------------

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount: True if the registry linked the blob, False if it did not (upload instead)."""
        what = f"push {self.host}/{repo}: mount {digest} from {from_repo}"
        q = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        with self.transport.request(
                "POST", f"/v2/{repo}/blobs/uploads/?{q}",
                scopes=[f"repository:{repo}:pull,push", f"repository:{from_repo}:pull"], what=what,
                headers={"Content-Length": "0"}, body=b"", ok=(201, 202)) as r:
            r.read()
            if r.status == 201:
                return True
            location = r.headers.get("Location")
        if location:  # the registry opened an upload instead: cancel it rather than leave it dangling
            try:
                with self.transport.request("DELETE", self._abs(location), scopes=[f"repository:{repo}:pull,push"],
                                            what=what, ok=(200, 202, 204, 404), retry=False) as r2:
                    r2.read()
            except RegistryError:
                pass
        return False

    def upload_blob(self, repo: str, digest: str, size: int, opener: Opener) -> None:
        """Upload a blob from opener() (a fresh binary stream each call): monolithic up to chunk_size, else
        PATCH chunks with Content-Range, then the closing PUT ?digest=."""
        what = f"push {self.host}/{repo}@{digest}"
        scopes = [f"repository:{repo}:pull,push"]
        with self.transport.request("POST", f"/v2/{repo}/blobs/uploads/", scopes=scopes, what=what,
                                    headers={"Content-Length": "0"}, body=b"", ok=(202,)) as r:
            r.read()
            location = self._location(r, what)
        with opener() as f:
            if size <= self.chunk_size:
                body = f.read()
                if len(body) != size:
                    raise RegistryError(f"{what}: the local blob is {len(body)} bytes, expected {size}")
                url = _with_query(location, digest=digest)
                with self.transport.request("PUT", url, scopes=scopes, what=what, body=body, ok=(201,), headers={
                        "Content-Type": "application/octet-stream", "Content-Length": str(size)}) as r:
                    r.read()
                return
            offset = 0
            while offset < size:
                chunk = f.read(min(self.chunk_size, size - offset))
                if not chunk:
                    raise RegistryError(f"{what}: the local blob ended at {offset} of {size} bytes")
                with self.transport.request("PATCH", location, scopes=scopes, what=what, body=chunk,
                                            ok=(202,), headers={
                                                "Content-Type": "application/octet-stream",
                                                "Content-Length": str(len(chunk)),
                                                "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}) as r:
                    r.read()
                    location = self._location(r, what)
                offset += len(chunk)
        with self.transport.request("PUT", _with_query(location, digest=digest), scopes=scopes, what=what,
                                    body=b"", headers={"Content-Length": "0"}, ok=(201,)) as r:
            r.read()

    def _location(self, r: Response, what: str) -> str:
        loc = r.headers.get("Location")
        if not loc:
            raise RegistryError(f"{what}: {self.host} gave no upload location")
        return self._abs(loc)

    def _abs(self, location: str) -> str:
        if "://" in location:
            return location
        return self.transport._base("upload") + location

    # --- catalog -------------------------------------------------------------------------------------------

    def catalog(self, page: int = 100) -> Iterator[str]:
        """Repository names from /v2/_catalog, following Link pagination."""
        import json

        path: str | None = f"/v2/_catalog?n={page}"
        what = f"search {self.host}"
        while path:
            with self.transport.request("GET", path, scopes=["registry:catalog:*"], what=what) as r:
                try:
                    data = json.loads(r.read(16 << 20))
                except ValueError:
                    raise RegistryError(f"{what}: the catalog is not JSON") from None
                link = r.headers.get("Link", "")
            repos = data.get("repositories") if isinstance(data, dict) else None
            if not isinstance(repos, list):
                raise RegistryError(f"{what}: the catalog has no repository list")
            yield from (str(x) for x in repos)
            path = None
            if link.startswith("<") and 'rel="next"' in link:
                path = link[1:link.index(">")]

    def check_login(self) -> None:
        """Verify the credentials: /v2/ with them (Basic), or a token for no scope (Bearer)."""
        what = f"login {self.host}"
        with self.transport.request("GET", "/v2/", what=what) as r:
            r.read()


def _sep(ref: str) -> str:
    return "@" if ref.startswith("sha256:") else ":"


def _with_query(url: str, **params: str) -> str:
    u = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qsl(u.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(u._replace(query=urllib.parse.urlencode(q)))


class BlobReader:
    """Reads a blob, resuming with Range after a dropped connection, and checks digest and size at the end.

    read() raises RegistryError on a mismatch at EOF, so a consumer never commits wrong bytes as long as it
    reads to the end before committing (the store verifies again).
    """

    def __init__(self, registry: Registry, repo: str, digest: str, size: int | None, what: str) -> None:
        self._reg = registry
        self._repo = repo
        self.digest = digest
        self.size = size
        self._what = what
        self._hash = hashlib.sha256()
        self._offset = 0
        self._resp: Response | None = None
        self._resumes = 0
        self._done = False

    def _open(self) -> Response:
        r = self._reg._get_blob(self._repo, self.digest, self._offset, self._what)
        if self._offset and r.status == 200:
            # no Range support: skip what we already have
            left = self._offset
            while left:
                got = r.read(min(left, 1 << 20))
                if not got:
                    raise RegistryError(f"{self._what}: the blob got shorter on a retry")
                left -= len(got)
        return r

    def read(self, n: int = 1 << 20) -> bytes:
        if self._done:
            return b""
        while True:
            if self._resp is None:
                self._resp = self._open()
            err: BaseException | None = None
            try:
                data = self._resp.raw.read(n)
            except (OSError, http.client.HTTPException) as e:
                data, err = b"", e
            else:
                if data or self.size is None or self._offset >= self.size:
                    break
                # EOF before the declared size: a dropped connection (Content-Length lied or was cut)
            self._resp.close()
            self._resp = None
            if self._resumes >= MAX_RESUMES:
                raise RegistryError(f"{self._what}: the connection dropped {self._resumes + 1} times at byte "
                                    f"{self._offset}" + (f": {err}" if err else ""))
            self._resumes += 1
            time.sleep(min(0.2 * self._resumes, 2.0))
        if data:
            self._offset += len(data)
            self._hash.update(data)
            if self.size is not None and self._offset > self.size:
                self.close()
                raise RegistryError(f"{self._what}: the blob is longer than its {self.size} bytes")
            return data
        self._done = True
        self.close()
        got = "sha256:" + self._hash.hexdigest()
        if self.size is not None and self._offset != self.size:
            raise RegistryError(f"{self._what}: got {self._offset} bytes, expected {self.size}")
        if got != self.digest:
            raise RegistryError(f"{self._what}: the registry sent a blob whose digest is {got}")
        return b""

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read():
            yield chunk

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
