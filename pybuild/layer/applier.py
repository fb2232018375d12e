"""Layer tarball → directory in overlayfs upper-dir form (the applied dir serves as an overlay layer).

OCI whiteouts become overlay whiteouts: `.wh.<name>` → a 0:0 character device `<name>`, `.wh..wh..opq` → the
`trusted.overlay.opaque=y` xattr on its directory (we run as root). AUFS metadata (`.wh..wh.*`) is skipped.

Entry names are handled like Docker's `archive.UnpackLayer`: cleaned lexically, so a leading `/` or `./` is
dropped (`/etc/x` lands at `<dest>/etc/x`) and `a/../b` is `b`; a name that still climbs above the root (`../x`,
`a/../../x`) is refused. A `./` directory entry sets dest's own owner/mode/mtime (whole-tree tars carry one).
Unlike Docker (which relies on a chroot) and containerd (which resolves symlinks inside the root), a path whose
parent is a symlink in dest is refused: parents are opened one component at a time with O_NOFOLLOW and every
operation works relative to such a directory fd, so nothing lands outside dest. Hard link targets go through the
same walk and are linked with follow_symlinks=False. overlay's private xattrs (`trusted.overlay.*`,
`user.overlay.*`) in a layer are dropped: a layer must not steer overlayfs (redirects, metacopy).
An existing entry is replaced (directories merged), as a later layer would; the stream is read to its end so a
damaged compressed trailer is caught. On error dest is left half-written: the caller discards it.

Decompression runs in a prefetch thread (zstandard, zlib, lzma release the GIL), so it overlaps the file writes.
Plain files with clean names, the bulk of most layers, take an inlined path in _Applier._run (small files are
bound by per-file cost); every other entry, and any file that needs more than create/write/utime, goes through
parse_header and _entry.
"""

from __future__ import annotations

import errno
import os
import queue
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from pybuild.layer.base import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    ApplyStats,
    LayerError,
)
from pybuild.layer.compression import corrupt, open_raw_decompressed
from pybuild.layer.tarfmt import (
    AREGTYPE,
    BLKTYPE,
    BLOCK,
    CHRTYPE,
    CONTTYPE,
    DIRTYPE,
    FIFOTYPE,
    GNU_LONGLINK,
    GNU_LONGNAME,
    LNKTYPE,
    REGTYPE,
    SYMTYPE,
    XGLTYPE,
    XHDTYPE,
    ZERO_BLOCK,
    HeaderError,
    PlainFileHeaders,
    RawHeader,
    parse_header,
    parse_pax,
)
from pybuild.model.overlayfs import OPAQUE_XATTR, OVERLAY_XATTR_PREFIXES

CHUNK = 1 << 20
PREFETCH = 8  # chunks decompressed ahead
MAX_META = 16 << 20  # PAX / GNU long-name data larger than this is not a sane header
MAX_CACHED_DIRS = 128

_OPQ = OPAQUE_MARKER.encode()
_WH = WHITEOUT_PREFIX.encode()
_AUFS_META = b".wh..wh."
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_TYPES = (REGTYPE, AREGTYPE, CONTTYPE)
_T = TypeVar("_T")


def apply_layer(stream: BinaryIO, dest: Path) -> ApplyStats:
    """Unpack the layer tarball read from `stream` (compression detected from its first bytes) into `dest`.

    `dest` is created if missing; entries already there are replaced (directories merged), as a later layer
    would. Raises LayerError for a corrupt or truncated stream or an entry that would land outside `dest`.
    """
    try:
        dest.mkdir(parents=True, exist_ok=True)
        root_fd = os.open(dest, _DIR_FLAGS)
    except OSError as e:
        raise LayerError(f"cannot unpack a layer into {dest}: {e.strerror or e}") from None
    source: _Source | None = None
    try:
        kind, raw = open_raw_decompressed(stream)
        source = _Source(raw)
        applier = _Applier(root_fd, dest, kind)
        applier.run(source)
        source.drain()
        return applier.stats()
    finally:
        if source is not None:
            source.close()
        os.close(root_fd)


class _Source:
    """The decompressed tar, read ahead by a thread in CHUNK pieces; exact reads and direct copies to fds."""

    def __init__(self, raw: object) -> None:
        self._raw = raw
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(PREFETCH)
        self._stop = threading.Event()
        self.chunk = b""
        self.view = memoryview(self.chunk)
        self.off = 0
        self._eof = False
        self._chunk_start = 0  # the tar offset of chunk[0]
        self._thread = threading.Thread(target=self._pump, name="layer-prefetch", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        read = getattr(self._raw, "read")  # noqa: B009 (raw is any object with read())
        item: bytes | BaseException | None
        while not self._stop.is_set():
            try:
                data = read(CHUNK)
                item = data if data else None
            except BaseException as e:
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes):
                return

    def _next_chunk(self) -> bool:
        if self._eof:
            return False
        item = self._queue.get()
        if item is None:
            self._eof = True
            return False
        if isinstance(item, BaseException):
            self._eof = True
            if isinstance(item, LayerError):
                raise item
            raise corrupt(f"cannot read the layer stream ({item})")
        self._chunk_start += len(self.chunk)
        self.chunk, self.off = item, 0
        self.view = memoryview(item)
        return True

    @property
    def offset(self) -> int:
        """Bytes of tar consumed, for error messages."""
        return self._chunk_start + self.off

    def _short(self, wanted: int) -> LayerError:
        return corrupt(f"unexpected end of data at offset {self.offset} (wanted {wanted} more bytes)")

    def read_exact(self, n: int) -> bytes:
        off = self.off
        if off + n <= len(self.chunk):
            self.off = off + n
            return self.chunk[off : off + n]
        parts = []
        got = 0
        while got < n:
            if self.off == len(self.chunk) and not self._next_chunk():
                raise self._short(n - got)
            take = min(n - got, len(self.chunk) - self.off)
            parts.append(self.chunk[self.off : self.off + take])
            self.off += take
            got += take
        return b"".join(parts)

    def write_to(self, fd: int, n: int) -> None:
        off = self.off
        if off + n <= len(self.chunk):  # the usual small file: one write from the current chunk
            written = os.write(fd, self.view[off : off + n])
            self.off = off + written
            n -= written
            if not n:
                return
        left = n
        while left:
            if self.off == len(self.chunk) and not self._next_chunk():
                raise self._short(left)
            take = min(left, len(self.chunk) - self.off)
            view = self.view[self.off : self.off + take]
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self.off += take
            left -= take

    def skip(self, n: int) -> None:
        left = n
        while left:
            if self.off == len(self.chunk) and not self._next_chunk():
                raise self._short(left)
            take = min(left, len(self.chunk) - self.off)
            self.off += take
            left -= take

    def drain(self) -> None:
        """Read to the end: the padding after the end-of-archive blocks, and the compressed stream's trailer (a
        zstd/gzip checksum or a cut-off frame is only noticed there)."""
        self.off = len(self.chunk)
        while self._next_chunk():
            self.off = len(self.chunk)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Headers:
    """Folds PAX and GNU long-name headers into the entry they describe."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.global_pax: dict[bytes, bytes] = {}
        self.pax: dict[bytes, bytes] = {}
        self.long_name: bytes | None = None
        self.long_link: bytes | None = None
        self.pending = False  # a PAX record or GNU long name/link applies to the next entry

    def entry(self, block: bytes, start: int) -> RawHeader | None:
        """The entry `block` (read at `start`) begins, or None if it was a meta header (its data consumed); the
        consumer reads or skips the entry's data (size rounded up to a block) before the next block."""
        source = self.source
        try:
            hdr = parse_header(block)
        except HeaderError as e:
            raise corrupt(f"bad tar header at offset {start} ({e})") from None
        flag = hdr.typeflag
        if flag in (XHDTYPE, XGLTYPE, GNU_LONGNAME, GNU_LONGLINK):
            if not 0 <= hdr.size <= MAX_META:
                raise corrupt(f"implausible extended header size {hdr.size} at offset {start}")
            data = source.read_exact(hdr.size)
            source.skip(-hdr.size % BLOCK)
            if flag == GNU_LONGNAME:
                self.long_name = data.rstrip(b"\0")
            elif flag == GNU_LONGLINK:
                self.long_link = data.rstrip(b"\0")
            else:
                try:
                    records = parse_pax(data)
                except HeaderError as e:
                    raise corrupt(f"bad PAX header at offset {start} ({e})") from None
                (self.global_pax if flag == XGLTYPE else self.pax).update(records)
            self.pending = True
            return None
        records = {**self.global_pax, **self.pax} if self.global_pax else self.pax
        if records:
            _apply_pax(hdr, records, start)
        if self.long_name is not None:
            hdr.name = self.long_name
        if self.long_link is not None:
            hdr.linkname = self.long_link
        self.pax, self.long_name, self.long_link = {}, None, None
        self.pending = bool(self.global_pax)
        if hdr.size < 0:
            raise corrupt(f"negative size at offset {start}")
        return hdr


def _apply_pax(hdr: RawHeader, records: dict[bytes, bytes], offset: int) -> None:
    try:
        for key, value in records.items():
            if key == b"path":
                hdr.name = value
            elif key == b"linkpath":
                hdr.linkname = value
            elif key == b"size":
                hdr.size = int(value)
            elif key == b"uid":
                hdr.uid = int(value)
            elif key == b"gid":
                hdr.gid = int(value)
            elif key == b"mtime":
                hdr.mtime = int(float(value))
            elif key.startswith(b"SCHILY.xattr."):
                hdr.xattrs[key[13:]] = value
            elif key.startswith(b"GNU.sparse."):
                raise LayerError("sparse files in layers are not supported", hint="re-create it without --sparse")
    except ValueError:
        raise corrupt(f"bad PAX value at offset {offset}") from None


def _umask() -> int | None:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _is_clean(name: bytes) -> bool:
    """A relative name with no empty, `.` or `..` part and no trailing slash (most names in a layer)."""
    return bool(name) and not name.startswith((b"/", b".")) and not name.endswith(b"/") and b"/." not in name and (
        b"//" not in name
    )


def _describe(name: bytes) -> str:
    return repr(os.fsdecode(name))


def _clean(name: bytes) -> list[bytes]:
    """Docker's lexical cleaning: drop empty, `.` and leading `/` parts, fold `..`; refuse climbing above root."""
    parts: list[bytes] = []
    for part in name.split(b"/"):
        if not part or part == b".":
            continue
        if part == b"..":
            if not parts:
                raise LayerError(f"layer entry {_describe(name)} points outside the layer root; refusing to unpack it")
            parts.pop()
        else:
            parts.append(part)
    return parts


class _Dirs:
    """Directory fds under the root, keyed by path parts, each reached component by component with O_NOFOLLOW
    so that no symlink in dest is ever traversed."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self._fds: dict[tuple[bytes, ...], int] = {}
        self._plain: dict[tuple[bytes, ...], bool] = {}
        # parent path as it appears in clean tar names (b"usr/lib") -> (fd, plain), for the applier's fast path;
        # emptied whenever an fd is closed or a directory's metadata changes
        self.fast: dict[bytes, tuple[int, bool]] = {}

    def plain(self, parts: tuple[bytes, ...], fd: int) -> bool:
        """Whether a file created in this directory simply gets our ids and its mode minus the umask: the
        directory is not setgid and has no default ACL. Then the applier can skip fchown/fchmod."""
        known = self._plain.get(parts)
        if known is None:
            st = os.fstat(fd)
            known = not st.st_mode & stat.S_ISGID and "system.posix_acl_default" not in os.listxattr(fd)
            self._plain[parts] = known
        return known

    def trim(self) -> None:
        if len(self._fds) > MAX_CACHED_DIRS:
            self.close()

    def close(self) -> None:
        self.fast.clear()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def changed(self, parts: tuple[bytes, ...]) -> None:
        """The directory's owner or mode was just set: whether it is plain must be asked again."""
        self._plain.pop(parts, None)
        self.fast.clear()

    def lookup(self, parent: bytes, entry: bytes) -> tuple[int, bool]:
        """(fd, plain) of directory `parent` (b"" for the root), created if missing, for the fast path."""
        self.trim()
        parts = tuple(parent.split(b"/")) if parent else ()
        fd = self.get(parts, entry)
        assert fd is not None
        found = self.fast[parent] = (fd, self.plain(parts, fd))
        return found

    def forget(self, parts: tuple[bytes, ...]) -> None:
        """`parts` was removed or replaced: its fd (and its descendants') no longer name what is in dest."""
        self.fast.clear()
        n = len(parts)
        for key in [k for k in self._fds if k[:n] == parts]:
            os.close(self._fds.pop(key))
        for key in [k for k in self._plain if k[:n] == parts]:
            del self._plain[key]

    def adopt(self, parts: tuple[bytes, ...], fd: int) -> None:
        self.fast.clear()
        old = self._fds.pop(parts, None)
        if old is not None:
            os.close(old)
        self._fds[parts] = fd
        self._plain.pop(parts, None)

    def get(self, parts: tuple[bytes, ...], entry: bytes, create: bool = True) -> int | None:
        """The fd of directory `parts` (creating missing ones 0755 when `create`), None if missing and not
        `create`. `entry` is the tar name, for messages."""
        if not parts:
            return self.root_fd
        fd = self._fds.get(parts)
        if fd is not None:
            return fd
        depth = len(parts) - 1
        while depth and parts[:depth] not in self._fds:
            depth -= 1
        cur = self._fds[parts[:depth]] if depth else self.root_fd
        for i in range(depth, len(parts)):
            name = parts[i]
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=cur)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(name, 0o755, dir_fd=cur)
                fd = os.open(name, _DIR_FLAGS, dir_fd=cur)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                where = "/".join(os.fsdecode(p) for p in parts[: i + 1])
                st = os.stat(name, dir_fd=cur, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise LayerError(
                        f"layer entry {_describe(entry)} would be written through the symbolic link {where!r}; "
                        "refusing to write outside the layer root"
                    ) from None
                if not create:
                    return None
                raise LayerError(
                    f"layer entry {_describe(entry)} needs {where!r} to be a directory, but it is not"
                ) from None
            self._fds[parts[: i + 1]] = fd
            cur = fd
        return cur


class _Applier:
    def __init__(self, root_fd: int, dest: Path, kind: str) -> None:
        self.dirs = _Dirs(root_fd)
        self.dest = dest
        self.entries = self.files = self.dirs_made = self.symlinks = self.hardlinks = self.specials = 0
        self.whiteouts = self.opaque_dirs = self.file_bytes = self.xattr_errors = 0
        self.kind = kind
        self.dir_mtimes: dict[tuple[bytes, ...], int] = {}
        self.euid, self.egid = os.geteuid(), os.getegid()
        # permission bits a new file keeps as given to open(): all but the umask's (read without changing it,
        # since umask is process-wide); unknown → 0, i.e. always fchmod
        umask = _umask()
        self.creatable = 0 if umask is None else 0o777 & ~umask

    def stats(self) -> ApplyStats:
        return ApplyStats(
            compression=self.kind, entries=self.entries, files=self.files, dirs=self.dirs_made,
            symlinks=self.symlinks, hardlinks=self.hardlinks, specials=self.specials, whiteouts=self.whiteouts,
            opaque_dirs=self.opaque_dirs, file_bytes=self.file_bytes, xattr_errors=self.xattr_errors,
        )

    def run(self, source: _Source) -> None:
        try:
            self._run(source)
            self._set_dir_mtimes()
        finally:
            self.dirs.close()

    def _run(self, source: _Source) -> None:
        files = file_bytes = 0
        try:
            files, file_bytes = self._run_entries(source)
        finally:
            self.entries += files
            self.files += files
            self.file_bytes += file_bytes

    def _run_entries(self, source: _Source) -> tuple[int, int]:
        """Apply every entry; returns (files, bytes) of the plain files taken by the fast path (the other entries
        count themselves)."""
        headers = _Headers(source)
        parse_plain = PlainFileHeaders().parse
        dirs = self.dirs
        fast = dirs.fast
        euid, egid, creatable = self.euid, self.egid, self.creatable
        open_, write, utime, close = os.open, os.write, os.utime, os.close
        files = file_bytes = 0
        while True:
            off = source.off
            chunk = source.chunk
            if off + BLOCK <= len(chunk):  # read_exact's common case, inlined
                block = chunk[off : off + BLOCK]
                off += BLOCK
                source.off = off
            else:
                block = source.read_exact(BLOCK)
                chunk, off = source.chunk, source.off
            parsed = None if headers.pending else parse_plain(block)
            if parsed is not None:
                # The common entry, a plain file with a clean name, inlined: small files are bound by the per-file
                # cost. Same steps as _file (which has the comments); anything unusual goes there. `fast` only
                # holds parents of names that passed _is_clean, so for those only the base name is left to check.
                name, mode, uid, gid, size, mtime = parsed
                slash = name.rfind(b"/")
                if slash >= 0:
                    parent, base = name[:slash], name[slash + 1 :]
                else:
                    parent, base = b"", name
                try:
                    found = fast.get(parent)
                    if found is None and _is_clean(name):
                        found = dirs.lookup(parent, name)
                    if found is not None and base and base[0] != 0x2E:  # not "", ".*" (hidden, .wh.*)
                        pfd, plain = found
                        perm = mode & 0o7777
                        exact_mode = plain and not perm & ~creatable
                        try:
                            fd = open_(base, _NEW_FILE, perm if exact_mode else 0o600, dir_fd=pfd)
                        except FileExistsError:
                            fd = -1
                        if fd >= 0:
                            try:
                                padded = size + -size % BLOCK
                                if off + padded <= len(chunk) and (
                                    not size or write(fd, source.view[off : off + size]) == size
                                ):
                                    source.off = off + padded
                                else:  # data across chunks (or a short write): the general copy
                                    source.write_to(fd, size)
                                    source.skip(-size % BLOCK)
                                if not plain or uid != euid or gid != egid:
                                    os.fchown(fd, uid, gid)
                                if not exact_mode:
                                    os.fchmod(fd, perm)
                                utime(fd, (mtime, mtime))  # whole seconds: exact, and cheaper than ns=
                            finally:
                                close(fd)
                            files += 1
                            file_bytes += size
                            continue
                except OSError as e:
                    raise LayerError(
                        f"cannot unpack layer entry {_describe(name)} into {self.dest}: {e.strerror or e}"
                    ) from None
            if block == ZERO_BLOCK:
                return files, file_bytes
            hdr = headers.entry(block, source.offset - BLOCK)
            if hdr is None:
                continue
            dirs.trim()
            self.entries += 1
            try:
                self._entry(hdr, source)
            except LayerError:
                raise
            except OSError as e:
                raise LayerError(
                    f"cannot unpack layer entry {_describe(hdr.name)} into {self.dest}: {e.strerror or e}"
                ) from None

    def _entry(self, hdr: RawHeader, source: _Source) -> None:
        flag = hdr.typeflag
        name = hdr.name
        is_file = flag in _FILE_TYPES
        if flag == AREGTYPE and name.endswith(b"/"):  # pre-POSIX tars mark directories by the slash only
            flag, is_file = DIRTYPE, False
        if name.startswith((b"/", b".")) or b"/." in name or b"//" in name or name.endswith(b"/"):
            parts = _clean(name)
            if not parts:  # "./": the layer root's own metadata (tars of whole trees carry it), merged like Docker
                if flag != DIRTYPE:
                    raise LayerError(f"layer entry {_describe(name)} names the layer root but is not a directory")
                self._dir_metadata(hdr, self.dirs.root_fd, ())
                source.skip(hdr.size + -hdr.size % BLOCK)
                return
        else:  # nothing to clean (the usual name): skip the general walk over the parts
            parts = name.split(b"/")
        base = parts.pop()
        parent = tuple(parts)
        if base.startswith(_WH):
            self._whiteout(hdr, parent, base)
        else:
            pfd = self.dirs.get(parent, name)
            assert pfd is not None
            if is_file:
                self._file(hdr, pfd, parent, base, source)
                return  # _file consumed the data and its padding
            if flag == DIRTYPE:
                self._dir(hdr, pfd, parent, base)
            elif flag == SYMTYPE:
                self._symlink(hdr, pfd, parent, base)
            elif flag == LNKTYPE:
                self._hardlink(hdr, pfd, parent, base)
            elif flag in (CHRTYPE, BLKTYPE, FIFOTYPE):
                self._special(hdr, pfd, parent, base)
            elif flag != b"V":  # a GNU volume label is not a file; anything else we do not know
                raise LayerError(f"layer entry {_describe(name)} has unsupported type {flag.decode('latin-1')!r}")
        source.skip(hdr.size + -hdr.size % BLOCK)

    def _create(self, pfd: int, parent: tuple[bytes, ...], base: bytes, make: Callable[[], _T],
                keep_dir: bool = False) -> _T | None:
        """make() the entry; if the name is taken, replace what is there (a directory is kept when `keep_dir`:
        then None is returned)."""
        try:
            return make()
        except FileExistsError:
            pass
        if not self._replace(pfd, parent, base, keep_dir):
            return None
        return make()

    def _replace(self, pfd: int, parent: tuple[bytes, ...], base: bytes, keep_dir: bool = False) -> bool:
        """Remove what is at `base` (False: it is a directory and `keep_dir` says to merge into it)."""
        st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        is_dir = stat.S_ISDIR(st.st_mode)
        if keep_dir and is_dir:
            return False
        if is_dir:
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        self.dirs.forget((*parent, base))
        return True

    def _xattrs(self, hdr: RawHeader, target: int | str) -> None:
        for key, value in sorted(hdr.xattrs.items()):
            name = os.fsdecode(key)
            if name.startswith(OVERLAY_XATTR_PREFIXES):
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, value)
                else:
                    os.setxattr(target, name, value, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL):
                    raise
                self.xattr_errors += 1

    def _file(self, hdr: RawHeader, pfd: int, parent: tuple[bytes, ...], base: bytes, source: _Source) -> None:
        # Small files are bound by per-file syscalls, so skip chown/chmod when creation already gives the
        # right owner and mode (the common 0:0, 0644/0755 file in a plain directory).
        perm = hdr.mode & 0o7777
        plain = self.dirs.plain(parent, pfd)
        exact_mode = plain and not perm & ~self.creatable
        create_mode = perm if exact_mode else 0o600
        try:
            fd = os.open(base, _NEW_FILE, create_mode, dir_fd=pfd)
        except FileExistsError:
            self._replace(pfd, parent, base)
            fd = os.open(base, _NEW_FILE, create_mode, dir_fd=pfd)
        try:
            size = hdr.size
            if size:
                source.write_to(fd, size)
            source.skip(-size % BLOCK)
            # ownership first (chown clears setuid bits), then mode, then xattrs (chown and writes drop
            # security.capability), then the time
            if not plain or hdr.uid != self.euid or hdr.gid != self.egid:
                os.fchown(fd, hdr.uid, hdr.gid)
            if not exact_mode:
                os.fchmod(fd, perm)
            if hdr.xattrs:
                self._xattrs(hdr, fd)
            ns = hdr.mtime * 1_000_000_000
            os.utime(fd, ns=(ns, ns))
        finally:
            os.close(fd)
        self.files += 1
        self.file_bytes += size

    def _dir(self, hdr: RawHeader, pfd: int, parent: tuple[bytes, ...], base: bytes) -> None:
        self._create(pfd, parent, base, lambda: os.mkdir(base, 0o700, dir_fd=pfd), keep_dir=True)
        parts = (*parent, base)
        fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
        self.dirs.adopt(parts, fd)
        self._dir_metadata(hdr, fd, parts)
        self.dirs_made += 1

    def _dir_metadata(self, hdr: RawHeader, fd: int, parts: tuple[bytes, ...]) -> None:
        os.fchown(fd, hdr.uid, hdr.gid)
        os.fchmod(fd, hdr.mode & 0o7777)
        self.dirs.changed(parts)
        if hdr.xattrs:
            self._xattrs(hdr, fd)
        # set once the directory's contents are written (creating them changes it)
        self.dir_mtimes[parts] = hdr.mtime

    def _finish_nofollow(self, hdr: RawHeader, pfd: int, base: bytes, chmod: bool) -> None:
        os.chown(base, hdr.uid, hdr.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:  # only for a node we just created (not a symlink), so following is safe
            os.chmod(base, hdr.mode & 0o7777, dir_fd=pfd)
        if hdr.xattrs:
            self._xattrs(hdr, f"/proc/self/fd/{pfd}/{os.fsdecode(base)}")
        ns = hdr.mtime * 1_000_000_000
        os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def _symlink(self, hdr: RawHeader, pfd: int, parent: tuple[bytes, ...], base: bytes) -> None:
        self._create(pfd, parent, base, lambda: os.symlink(hdr.linkname, base, dir_fd=pfd))
        self._finish_nofollow(hdr, pfd, base, chmod=False)
        self.symlinks += 1

    def _special(self, hdr: RawHeader, pfd: int, parent: tuple[bytes, ...], base: bytes) -> None:
        if hdr.typeflag == FIFOTYPE:
            self._create(pfd, parent, base, lambda: os.mkfifo(base, 0o600, dir_fd=pfd))
        else:
            kind = stat.S_IFCHR if hdr.typeflag == CHRTYPE else stat.S_IFBLK
            dev = os.makedev(hdr.devmajor, hdr.devminor)
            self._create(pfd, parent, base, lambda: os.mknod(base, kind | 0o600, dev, dir_fd=pfd))
        self._finish_nofollow(hdr, pfd, base, chmod=True)
        self.specials += 1

    def _hardlink(self, hdr: RawHeader, pfd: int, parent: tuple[bytes, ...], base: bytes) -> None:
        target = _clean(hdr.linkname)
        if not target:
            raise LayerError(f"layer entry {_describe(hdr.name)} is a hard link to the layer root")
        tpfd = self.dirs.get(tuple(target[:-1]), hdr.name, create=False)
        missing = LayerError(
            f"layer entry {_describe(hdr.name)} is a hard link to {_describe(hdr.linkname)}, which is not in the layer"
        )
        if tpfd is None:
            raise missing
        try:
            self._create(
                pfd, parent, base,
                lambda: os.link(target[-1], base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False),
            )
        except FileNotFoundError:
            raise missing from None
        self.hardlinks += 1

    def _whiteout(self, hdr: RawHeader, parent: tuple[bytes, ...], base: bytes) -> None:
        if base == _OPQ:
            fd = self.dirs.get(parent, hdr.name)
            assert fd is not None
            os.setxattr(fd, OPAQUE_XATTR, b"y")
            self.opaque_dirs += 1
            return
        if base.startswith(_AUFS_META):
            return
        name = base[len(_WH) :]
        if name in (b"", b".", b".."):
            raise LayerError(f"layer entry {_describe(hdr.name)} is not a valid whiteout")
        pfd = self.dirs.get(parent, hdr.name)
        assert pfd is not None
        self._create(pfd, parent, name, lambda: os.mknod(name, stat.S_IFCHR, 0, dir_fd=pfd))
        os.chown(name, hdr.uid, hdr.gid, dir_fd=pfd, follow_symlinks=False)
        self.whiteouts += 1

    def _set_dir_mtimes(self) -> None:
        for parts, mtime in self.dir_mtimes.items():
            if not parts:
                os.utime(self.dirs.root_fd, ns=(mtime * 1_000_000_000, mtime * 1_000_000_000))
                continue
            try:
                pfd = self.dirs.get(parts[:-1], b"/".join(parts), create=False)
                if pfd is None:
                    continue
                st = os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):  # not replaced by a later entry
                    ns = mtime * 1_000_000_000
                    os.utime(parts[-1], ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
            except (FileNotFoundError, LayerError):  # gone, or under a symlink a later entry made: not ours
                continue
            self.dirs.trim()
