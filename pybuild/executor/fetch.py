"""ADD of http(s) URLs: download to a local file with checksum verification, and the ADD entry point.

``download`` streams a URL into a file in a directory the caller owns (hashing as it goes), checks ``--checksum``
and reads Last-Modified; the result is a ``RemoteFile`` that ``copy_into`` places (mode 0600, never extracted, as
Docker does). ``add_sources`` is the one-call ADD: URLs are downloaded, local sources selected in the context and
local tar archives extracted. Git URLs and ``--keep-git-dir`` are not supported (a clear error says so).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pybuild.context.context import BuildContext
from pybuild.errors import PybuildError
from pybuild.executor.copy import (
    ChmodSpec,
    CopyStats,
    InlineFile,
    RemoteFile,
    Source,
    check_destination,
    copy_into,
    parse_chmod,
)

__all__ = ["Downloaded", "add_sources", "download", "is_git_source", "is_url", "url_filename"]

_CHUNK = 1 << 20
_USER_AGENT = "pybuild/0.1 (ADD)"


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def is_git_source(source: str) -> bool:
    """Sources BuildKit would clone rather than download (``git@…``, ``….git``, ``git://``)."""
    if source.startswith(("git@", "git://", "ssh://")):
        return True
    return is_url(source) and source.split("#", 1)[0].endswith(".git")


def url_filename(url: str) -> str:
    """The file name ADD gives a download: the URL path's last component, or ``__unnamed__`` (BuildKit)."""
    from urllib.parse import unquote, urlsplit

    base = posixpath.basename(unquote(urlsplit(url).path))
    return base if base not in ("", ".", "/", "..") else "__unnamed__"


@dataclass(frozen=True)
class Downloaded:
    file: RemoteFile
    digest: str  # "sha256:<hex>" of the content
    size: int


_CHECKSUM = re.compile(r"^sha256:[0-9a-f]{64}$")


def _parse_checksum(checksum: str) -> str:
    value = checksum.strip()
    if ":" in value and not value.startswith("sha256:"):
        raise PybuildError(f"unsupported --checksum algorithm in {checksum!r}: only sha256 is supported for URLs")
    if not _CHECKSUM.match(value):
        raise PybuildError(f"invalid --checksum {checksum!r}: expected sha256:<64 lowercase hex digits>")
    return value


def download(url: str, into: Path, *, checksum: str | None = None, timeout: float = 60.0) -> Downloaded:
    """Download ``url`` into a new file inside directory ``into``; verify ``checksum`` ("sha256:<hex>") if given.

    HTTP and connection failures raise a PybuildError naming the URL. The file's mtime hint comes from the
    Last-Modified header (None when absent or unparsable).
    """
    import urllib.error
    import urllib.request
    from email.utils import parsedate_to_datetime

    want = _parse_checksum(checksum) if checksum else None
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    fd, tmp = tempfile.mkstemp(prefix="add-", dir=into)
    h = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    last_modified = resp.headers.get("Last-Modified")
                    while chunk := resp.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            except urllib.error.HTTPError as e:
                raise PybuildError(f"failed to download {url}: HTTP {e.code} {e.reason}",
                                   hint="check the URL; ADD does not send credentials") from None
            except urllib.error.URLError as e:
                raise PybuildError(f"failed to download {url}: {e.reason}",
                                   hint="check the URL and that the host is reachable") from None
            except (OSError, ValueError) as e:
                raise PybuildError(f"failed to download {url}: {e}") from None
        digest = "sha256:" + h.hexdigest()
        if want is not None and digest != want:
            raise PybuildError(f"checksum mismatch for {url}: expected {want}, got {digest}",
                               hint="the remote file changed or the --checksum value is wrong")
        mtime: float | None = None
        if last_modified:
            try:
                mtime = parsedate_to_datetime(last_modified).timestamp()
            except (TypeError, ValueError, IndexError):
                mtime = None
    except BaseException:
        os.unlink(tmp)
        raise
    return Downloaded(RemoteFile(Path(tmp), url_filename(url), mtime, url=url), digest, size)


def check_add_sources(sources: Sequence[str], checksum: str | None) -> None:
    """Refuse what ADD cannot do here before anything is fetched: git sources, a misplaced --checksum."""
    for s in sources:
        if is_git_source(s):
            raise PybuildError(f"ADD of git repositories is not supported by pybuild: {s!r}",
                               hint="clone it in a RUN step, or download an archive URL instead")
    if checksum:
        if len(sources) != 1:
            raise PybuildError("checksum can't be specified for multiple sources")
        if not is_url(sources[0]):
            raise PybuildError("checksum requires HTTP(S) or Git sources")


def as_local(f: RemoteFile, tmp: Path) -> Source:
    """A downloaded file as a source that copy_into may extract (ADD --unpack=true of a URL)."""
    named = tmp / "named"
    named.mkdir(exist_ok=True)
    target = named / f.name
    os.replace(f.path, target)
    os.chmod(target, f.mode)
    if f.mtime is not None:
        os.utime(target, (f.mtime, f.mtime))
    ctx = BuildContext.from_rootfs(named, label=f.url or f.name)
    return ctx.select([f.name])[0]


def add_sources(dest_root: Path, context: BuildContext, sources: Sequence[str], dest: str, *,
                workdir: str = "/", chown: tuple[int, int] | None = None, chmod: str | ChmodSpec | None = None,
                exclude: Sequence[str] = (), checksum: str | None = None, unpack: bool | None = None,
                inline: Sequence[InlineFile] = (), download_dir: Path | None = None,
                timeout: float = 60.0) -> CopyStats:
    """ADD ``sources`` (context paths, globs or http(s) URLs, as written) to ``dest`` inside ``dest_root``.

    Local tar archives are extracted unless ``unpack`` is False; URLs are downloaded (into ``download_dir``, or a
    temporary directory) and, unless ``unpack`` is True, placed as files. ``checksum`` needs exactly one URL source.
    """
    if inline or any(is_url(s) for s in sources):
        # downloads and heredocs are files: fail before fetching anything
        check_destination(len(sources) + len(inline), dest, instruction="ADD")
    spec = parse_chmod(chmod) if isinstance(chmod, str) else chmod
    check_add_sources(sources, checksum)
    with tempfile.TemporaryDirectory(prefix="pybuild-add-", dir=download_dir) as tmp:
        items: list[Source] = []
        for s in sources:
            if is_url(s):
                items.append(download(s, Path(tmp), checksum=checksum, timeout=timeout).file)
            else:
                items.extend(context.select([s]))
        items.extend(inline)
        if unpack:
            # --unpack=true also extracts downloaded archives: hand them over as local matches
            items = [as_local(i, Path(tmp)) if isinstance(i, RemoteFile) else i for i in items]
        return copy_into(dest_root, items, dest, workdir=workdir, chown=chown, chmod=spec, exclude=exclude,
                         preserve_owner=not context.is_build_context, unpack=unpack is not False,
                         instruction="ADD")
