"""COPY and ADD materialised into a root filesystem directory, with Docker's (BuildKit's) file semantics.

``copy_into`` writes selected sources (``pybuild.context.Match`` values from ``BuildContext.select``, heredoc bodies
as ``InlineFile``, downloaded URLs as ``RemoteFile``) into ``dest_root``, which is the container filesystem as seen
from ``/``: a merged overlay view, a step's upper dir, or an empty dir for ``--link``; the executor picks. Every
destination path is resolved chroot-style inside ``dest_root`` so the image's own symlinks are followed *within* the
image and never out of it. Rules followed (see the Dockerfile reference and BuildKit's fsutil copier):

* a directory source copies its contents; a file goes to ``dest`` as a file unless ``dest`` ends with ``/`` (or is an
  existing directory); several sources need a ``/``-terminated destination unless all are directories; relative
  ``dest`` is under WORKDIR; ``--exclude`` filters below directory sources and drops matched files by name;
* missing parents of the destination are created 0755, owned by ``--chown`` (else 0:0);
* ownership is 0:0 for build-context sources, kept for ``--from`` sources, ``--chown`` overrides both; permission
  bits, mtimes and xattrs are kept; ``--chmod`` (octal or symbolic) applies to every copied file and directory;
* symlinks inside a copied tree are copied as symlinks; hard links within one copy stay hard links;
* ADD extracts local tar archives (any compression, detected by content) with traversal protection.

It knows nothing about the planner, the cache or the store; callers pass plain values.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybuild.context.context import BuildContext, Match, excluded_at_top
from pybuild.context.patterns import PatternMatcher, go_clean
from pybuild.context.rootfs import host_path, mkdir_all, resolve_virtual
from pybuild.errors import PybuildError
from pybuild.model.overlayfs import OVERLAY_XATTR_PREFIXES

__all__ = [
    "ChmodSpec",
    "CopyStats",
    "InlineFile",
    "RemoteFile",
    "Source",
    "check_destination",
    "copy_into",
    "copy_sources",
    "destination_path",
    "extract_archive",
    "is_archive",
    "parse_chmod",
]


@dataclass(frozen=True)
class InlineFile:
    """A heredoc source (``COPY <<EOF /dest``): ``content`` becomes a file called ``name``, mode 0644, mtime now."""

    name: str
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class RemoteFile:
    """A downloaded ADD URL: the bytes are in ``path``; mode 0600; mtime from Last-Modified when known."""

    path: Path
    name: str
    mtime: float | None = None
    mode: int = 0o600
    url: str = ""


Source = Match | InlineFile | RemoteFile


@dataclass
class CopyStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    other: int = 0
    bytes: int = 0
    archives: int = 0
    created_paths: list[str] = field(default_factory=list)  # in-image paths of the top-level results


# --------------------------------------------------------------------------------------------------------------------
# --chmod


_WHO_BITS = {"u": 0o4700, "g": 0o2070, "o": 0o1007}
_RWX_SHIFT = {"u": 6, "g": 3, "o": 0}


@dataclass(frozen=True)
class ChmodSpec:
    """A parsed ``--chmod``: an octal mode, or chmod(1) symbolic clauses applied with a zero umask."""

    text: str
    octal: int | None = None
    clauses: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def apply(self, mode: int, is_dir: bool) -> int:
        """The new permission bits (0o7777) for an entry whose current bits are ``mode``."""
        if self.octal is not None:
            return self.octal
        mode &= 0o7777
        for who, ops in self.clauses:
            targets = who or "ugo"
            for op, perms in ops:
                bits = 0
                if perms in ("u", "g", "o"):
                    src = (mode >> _RWX_SHIFT[perms]) & 0o7
                    for t in targets:
                        bits |= src << _RWX_SHIFT[t]
                else:
                    for t in targets:
                        sh = _RWX_SHIFT[t]
                        for p in perms:
                            if p == "r":
                                bits |= 0o4 << sh
                            elif p == "w":
                                bits |= 0o2 << sh
                            elif p == "x":
                                bits |= 0o1 << sh
                            elif p == "X":
                                if is_dir or mode & 0o111:
                                    bits |= 0o1 << sh
                            elif p == "s":
                                bits |= {"u": 0o4000, "g": 0o2000, "o": 0}[t]
                            elif p == "t":
                                bits |= 0o1000 if t == "o" else 0
                if op == "+":
                    mode |= bits
                elif op == "-":
                    mode &= ~bits
                else:
                    clear = 0
                    for t in targets:
                        clear |= _WHO_BITS[t]
                    mode = (mode & ~clear) | bits
        return mode & 0o7777


def parse_chmod(text: str) -> ChmodSpec:
    """Parse a ``--chmod`` value: octal up to 07777 (``755``, ``0644``) or symbolic (``u=rwX,go=rX``, ``+x``)."""
    bad_octal = PybuildError(f"invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777")
    if text and all(c in "0123456789" for c in text):
        if any(c in "89" for c in text):
            raise bad_octal
        value = int(text, 8)
        if value > 0o7777:
            raise bad_octal
        return ChmodSpec(text, octal=value)
    clauses: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for clause in text.split(","):
        i = 0
        who = ""
        while i < len(clause) and clause[i] in "ugoa":
            who += clause[i]
            i += 1
        if "a" in who:
            who = "ugo"
        who = "".join(sorted(set(who), key="ugo".index))
        ops: list[tuple[str, str]] = []
        if i >= len(clause):
            raise PybuildError(f"invalid chmod parameter: {text!r}: missing operator (+, - or =) in {clause!r}",
                               hint="use octal (755) or chmod(1) symbolic modes such as u=rwX,go=rX or +x")
        while i < len(clause):
            op = clause[i]
            if op not in "+-=":
                raise PybuildError(f"invalid chmod parameter: {text!r}: unexpected {op!r} in {clause!r}",
                                   hint="use octal (755) or chmod(1) symbolic modes such as u=rwX,go=rX or +x")
            i += 1
            j = i
            if j < len(clause) and clause[j] in "ugo":
                j += 1
            else:
                while j < len(clause) and clause[j] in "rwxXst":
                    j += 1
            ops.append((op, clause[i:j]))
            i = j
        clauses.append((who, tuple(ops)))
    return ChmodSpec(text, clauses=tuple(clauses))


# --------------------------------------------------------------------------------------------------------------------
# destinations


def destination_path(dest: str, workdir: str = "/") -> tuple[str, bool]:
    """The absolute in-image destination and whether it is written as a directory (ends with ``/`` or ``/.``, or
    is ``.``); a relative destination is under ``workdir``."""
    dir_form = dest in ("", ".") or dest.endswith("/") or dest.endswith("/.")
    if dest.startswith("/"):
        return go_clean(dest), dir_form
    return go_clean(go_clean("/" + workdir) + "/" + dest), dir_form


def check_destination(n_sources: int, dest: str, *, instruction: str = "COPY", parents: bool = False,
                      all_dirs: bool = False) -> None:
    """Docker's rule: several sources (or a glob matching several) need a directory destination ending in ``/``.

    Not enforced when every source is a directory (their contents merge into ``dest`` either way, and BuildKit
    accepts ``COPY dir1 dir2 /app``) nor for ``--parents`` (the destination is always a directory).
    """
    _, dir_form = destination_path(dest)
    if n_sources > 1 and not dir_form and not parents and not all_dirs:
        raise PybuildError(
            f"When using {instruction} with more than one source file, the destination must be a directory and end "
            "with a /",
            hint=f"write the destination as {dest.rstrip('/') + '/'!r}",
        )


# --------------------------------------------------------------------------------------------------------------------
# the copier


class _Copier:
    def __init__(self, root: Path, *, chown: tuple[int, int] | None, chmod: ChmodSpec | None, preserve_owner: bool,
                 instruction: str) -> None:
        self.root = root
        self.chown = chown
        self.chmod = chmod
        self.preserve_owner = preserve_owner
        self.instruction = instruction
        self.links: dict[tuple[int, int], Path] = {}
        self.dir_times: list[tuple[Path, int, int]] = []  # applied last: writing into a dir changes its mtime
        self.stats = CopyStats()

    def owner(self, st: os.stat_result) -> tuple[int, int]:
        if self.chown is not None:
            return self.chown
        if self.preserve_owner:
            return st.st_uid, st.st_gid
        return 0, 0

    def mode(self, st_mode: int, is_dir: bool) -> int:
        if self.chmod is not None:
            return self.chmod.apply(st_mode, is_dir)
        return stat.S_IMODE(st_mode)

    def finish(self) -> None:
        for path, atime, mtime in reversed(self.dir_times):
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)

    # -- placing one non-directory entry ---------------------------------------------------------------------------

    def _clear(self, dst: Path, what: str, vdst: str) -> None:
        try:
            st = os.lstat(dst)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise PybuildError(f"{self.instruction}: cannot replace directory {vdst!r} with {what}",
                               hint="remove the directory first or copy to a different path")
        os.unlink(dst)

    def _meta(self, dst: Path, st: os.stat_result, src: Path | None) -> None:
        uid, gid = self.owner(st)
        os.lchown(dst, uid, gid)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dst, self.mode(st.st_mode, stat.S_ISDIR(st.st_mode)))
        if src is not None:
            _copy_xattrs(src, dst)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def place(self, src: Path, st: os.stat_result, dst: Path, vdst: str) -> None:
        """Copy one non-directory entry ``src`` (lstat ``st``) to the exact host path ``dst``."""
        mode = st.st_mode
        self._clear(dst, "a file", vdst)
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            first = self.links.get(key) if st.st_nlink > 1 else None
            if first is not None:
                os.link(first, dst, follow_symlinks=False)
                self.stats.files += 1
                return  # a hard link shares the first copy's inode and metadata
            self.stats.bytes += _copy_data(src, dst)
            self.stats.files += 1
            if st.st_nlink > 1:
                self.links[key] = dst
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), dst)
            self.stats.symlinks += 1
        else:
            os.mknod(dst, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            self.stats.other += 1
        self._meta(dst, st, src)

    def place_bytes(self, data: bytes | Path, name_mode: int, mtime: float | None, dst: Path, vdst: str) -> None:
        self._clear(dst, "a file", vdst)
        if isinstance(data, Path):
            self.stats.bytes += _copy_data(data, dst)
        else:
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.stats.bytes += len(data)
        self.stats.files += 1
        uid, gid = self.chown if self.chown is not None else (0, 0)
        os.lchown(dst, uid, gid)
        os.chmod(dst, self.chmod.apply(name_mode, False) if self.chmod is not None else name_mode)
        when = time.time() if mtime is None else mtime
        os.utime(dst, (when, when), follow_symlinks=False)

    # -- top-level targets -----------------------------------------------------------------------------------------

    def leaf_target(self, target_v: str, name: str) -> tuple[Path, str]:
        """Where a non-directory source lands: inside ``target_v`` if that is a directory, else at ``target_v``."""
        host = host_path(self.root, target_v)
        if os.path.isdir(host) and not os.path.islink(host):
            parent_v, leaf = target_v, name
        else:
            parent_v, _, leaf = target_v.rpartition("/")
            parent_v = parent_v or "/"
        parent_v, _ = mkdir_all(self.root, parent_v, owner=self.chown)
        vdst = (parent_v.rstrip("/") + "/" + leaf)
        self.stats.created_paths.append(vdst)
        return host_path(self.root, parent_v) / leaf, vdst

    def copy_dir(self, m: Match, target_v: str, exclude: PatternMatcher | None) -> None:
        """Merge the contents of directory source ``m`` into ``target_v`` (created if missing)."""
        host = host_path(self.root, target_v)
        try:
            tst = os.lstat(host)
        except FileNotFoundError:
            tst = None
        if tst is not None and not stat.S_ISDIR(tst.st_mode):
            raise PybuildError(f"{self.instruction}: cannot copy directory {m.source!r} to {target_v!r}: it exists "
                               "and is not a directory")
        if tst is None:
            target_v, _ = mkdir_all(self.root, target_v, owner=self.chown)
            host = host_path(self.root, target_v)
        self.stats.created_paths.append(target_v)
        include = PatternMatcher(list(m.include)) if m.include else None
        dirs: dict[str, tuple[Path, str]] = {"": (host, target_v)}
        for e in m.context.walk(m.rel, exclude=exclude, include=include):
            if e.sub == "":
                # the destination directory keeps its own mode and owner but takes the source's times (BuildKit)
                self.dir_times.append((host, e.st.st_atime_ns, e.st.st_mtime_ns))
                continue
            parent_sub, _, name = e.sub.rpartition("/")
            parent_host, parent_v = dirs[parent_sub]
            dst = parent_host / name
            vdst = parent_v.rstrip("/") + "/" + name
            if e.is_dir:
                dirs[e.sub] = self._merge_dir(e.path, e.st, dst, vdst)
            else:
                self.place(e.path, e.st, dst, vdst)

    def _merge_dir(self, src: Path, st: os.stat_result, dst: Path, vdst: str) -> tuple[Path, str]:
        try:
            existing = os.lstat(dst)
        except FileNotFoundError:
            existing = None
        if existing is None:
            os.mkdir(dst, 0o700)
        elif stat.S_ISLNK(existing.st_mode):
            # the image's own symlink to a directory (e.g. /lib -> usr/lib): merge into its target, resolved inside
            # the root, and leave the target's metadata alone
            resolved_v = resolve_virtual(self.root, vdst)
            resolved = host_path(self.root, resolved_v)
            if os.path.isdir(resolved) and not os.path.islink(resolved):
                return resolved, resolved_v
            raise PybuildError(f"{self.instruction}: cannot copy a directory to {vdst!r}: it is a symlink that does "
                               "not lead to a directory")
        elif not stat.S_ISDIR(existing.st_mode):
            raise PybuildError(f"{self.instruction}: cannot copy a directory to {vdst!r}: a file exists there")
        self.stats.dirs += 1
        uid, gid = self.owner(st)
        os.lchown(dst, uid, gid)
        os.chmod(dst, self.mode(st.st_mode, True))
        _copy_xattrs(src, dst)
        self.dir_times.append((dst, st.st_atime_ns, st.st_mtime_ns))
        return dst, vdst


def _copy_data(src: Path, dst: Path) -> int:
    """Copy a regular file's bytes into a new file ``dst`` (never following a symlink there); returns the size."""
    with open(src, "rb") as fsrc:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as fdst:
            size = os.fstat(fsrc.fileno()).st_size
            done = 0
            # copy_file_range can reflink on the same filesystem; sendfile covers the rest without user-space copies
            for fn in (os.copy_file_range, os.sendfile):
                try:
                    while done < size:
                        if fn is os.sendfile:
                            n = os.sendfile(fdst.fileno(), fsrc.fileno(), done, size - done)
                        else:
                            n = os.copy_file_range(fsrc.fileno(), fdst.fileno(), size - done, done, done)
                        if n == 0:
                            break
                        done += n
                    break
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) or done:
                        raise
            if done < size or size == 0:
                # the file grew, or a pseudo-file reports size 0: finish with plain reads
                fsrc.seek(done)
                fdst.seek(done)
                shutil.copyfileobj(fsrc, fdst, 1 << 20)
                done = fdst.tell()
            return done


def _copy_xattrs(src: Path, dst: Path) -> None:
    # best effort, as BuildKit: a filesystem without xattr support must not fail the copy
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(OVERLAY_XATTR_PREFIXES):
            continue  # overlayfs bookkeeping, meaningless outside its upper dir
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------------------------------
# tar archives (ADD)


@contextmanager
def _open_archive(path: Path) -> Iterator[Any]:
    """A streaming tarfile over ``path``, whatever its compression (detected from the content)."""
    import tarfile

    from pybuild.layer import open_decompressed

    with open(path, "rb") as raw, open_decompressed(raw) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
        yield tf


def is_archive(path: Path) -> bool:
    """Is ``path`` a regular file holding a tar archive (plain, gzip, bzip2, xz or zstd; judged by content)?"""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with _open_archive(path) as tf:
            return tf.next() is not None
    except Exception:
        return False


def extract_archive(archive: Path, dest_root: Path, target_v: str, *, chown: tuple[int, int] | None = None,
                    label: str = "") -> CopyStats:
    """Extract tar ``archive`` into directory ``target_v`` of ``dest_root`` like Docker's ADD.

    Entries keep the archive's owners (``chown`` overrides), modes and mtimes. Each path is resolved with the
    extraction directory as its root, so a symlink in the archive (or already there) cannot lead a later entry
    outside it; a name or hard link climbing out with ``..`` is refused.
    """
    import tarfile

    from pybuild.layer import LayerError

    label = label or archive.name
    base_v, _ = mkdir_all(dest_root, target_v, owner=chown)
    base = host_path(dest_root, base_v)
    stats = CopyStats(archives=1, created_paths=[base_v])
    try:
        with _open_archive(archive) as tf:
            _extract_members(tf, base, label, chown, stats)
    except (tarfile.TarError, EOFError, LayerError) as e:
        detail = e.message if isinstance(e, LayerError) else str(e)
        raise PybuildError(f"ADD {label}: archive is truncated or corrupt: {detail}") from None
    except OSError as e:
        raise PybuildError(f"ADD {label}: cannot extract the archive: {e}") from None
    return stats


def _extract_members(tf: Any, base: Path, label: str, chown: tuple[int, int] | None, stats: CopyStats) -> None:
    dir_times: list[tuple[Path, float]] = []

    def inside(name: str) -> str:
        cleaned = go_clean(name)
        if cleaned == ".." or cleaned.startswith("../"):
            raise PybuildError(f"ADD {label}: archive entry {name!r} would be extracted outside the destination",
                               hint="the archive is malformed or malicious; it was refused")
        return go_clean("/" + cleaned)

    for member in _members(tf, label):
        vpath = inside(member.name)
        if vpath == "/":
            dst = base
        else:
            parent, _, leaf = vpath.rpartition("/")
            parent_v, _ = mkdir_all(base, parent or "/")
            dst = host_path(base, parent_v) / leaf
        try:
            existing = os.lstat(dst)
        except FileNotFoundError:
            existing = None
        if existing is not None and not (stat.S_ISDIR(existing.st_mode) and member.isdir()):
            if stat.S_ISDIR(existing.st_mode):
                shutil.rmtree(dst)
            else:
                os.unlink(dst)
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(dst, 0o700)
            stats.dirs += 1
        elif member.isreg():
            src = tf.extractfile(member)
            assert src is not None
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            stats.files += 1
            stats.bytes += member.size
        elif member.issym():
            os.symlink(member.linkname, dst)
            stats.symlinks += 1
        elif member.islnk():
            target_v = inside(member.linkname)
            tparent, _, tleaf = target_v.rpartition("/")
            tparent_v = resolve_virtual(base, tparent or "/")
            target = host_path(base, tparent_v) / tleaf
            if not os.path.lexists(target):
                raise PybuildError(f"ADD {label}: hard link {member.name!r} points to missing {member.linkname!r}")
            os.link(target, dst, follow_symlinks=False)
            stats.files += 1
            continue  # shares the target's inode and metadata
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            os.mknod(dst, kind | 0o600, os.makedev(member.devmajor, member.devminor))
            stats.other += 1
        else:
            continue  # other GNU/PAX specials carry no file
        uid, gid = chown if chown is not None else (member.uid, member.gid)
        os.lchown(dst, uid, gid)
        if not member.issym():
            os.chmod(dst, member.mode & 0o7777)
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                try:
                    os.setxattr(dst, key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"),
                                follow_symlinks=False)
                except OSError:
                    pass
        if member.isdir():
            dir_times.append((dst, float(member.mtime)))
        else:
            os.utime(dst, (member.mtime, member.mtime), follow_symlinks=False)
    for d, mtime in reversed(dir_times):
        os.utime(d, (mtime, mtime), follow_symlinks=False)


def _members(tf: Any, label: str) -> Any:
    import tarfile

    while True:
        try:
            member = tf.next()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise PybuildError(f"ADD {label}: archive is truncated or corrupt: {e}") from None
        if member is None:
            return
        yield member


# --------------------------------------------------------------------------------------------------------------------
# entry points


def copy_into(dest_root: Path, sources: Sequence[Source], dest: str, *, workdir: str = "/",
              chown: tuple[int, int] | None = None, chmod: str | ChmodSpec | None = None,
              exclude: Sequence[str] = (), preserve_owner: bool = False, unpack: bool = False,
              instruction: str = "COPY") -> CopyStats:
    """Copy ``sources`` to ``dest`` inside the root filesystem directory ``dest_root``.

    ``workdir`` resolves a relative ``dest``; ``chown`` is a resolved (uid, gid) (see
    ``pybuild.context.resolve_chown``); ``chmod`` is a ``--chmod`` value; ``exclude`` are ``--exclude`` patterns
    (matched relative to each directory source); ``preserve_owner`` keeps source ownership (``--from``);
    ``unpack`` extracts local tar archives (ADD). Returns what was written.
    """
    spec = parse_chmod(chmod) if isinstance(chmod, str) else chmod
    dest_v, dir_form = destination_path(dest, workdir)
    parents = any(isinstance(s, Match) and s.include for s in sources)
    named = {s.source for s in sources if isinstance(s, Match)}
    n = max(len(sources), len(named) + sum(not isinstance(s, Match) for s in sources))
    all_dirs = all(isinstance(s, Match) and s.is_dir for s in sources)
    check_destination(n, dest, instruction=instruction, parents=parents, all_dirs=all_dirs)

    copier = _Copier(dest_root, chown=chown, chmod=spec, preserve_owner=preserve_owner, instruction=instruction)
    ensure_v = dest_v if dir_form else (dest_v.rpartition("/")[0] or "/")
    mkdir_all(dest_root, ensure_v, owner=chown)
    target_v = resolve_virtual(dest_root, dest_v)  # a symlink at the destination is followed, inside the root
    exclude_m = PatternMatcher(list(exclude)) if exclude else None
    for s in sources:
        if isinstance(s, Match) and exclude_m is not None and excluded_at_top(s, exclude_m):
            continue
        if isinstance(s, InlineFile):
            dst, vdst = copier.leaf_target(target_v, s.name)
            copier.place_bytes(s.content, s.mode, None, dst, vdst)
        elif isinstance(s, RemoteFile):
            dst, vdst = copier.leaf_target(target_v, s.name)
            copier.place_bytes(s.path, s.mode, s.mtime, dst, vdst)
        elif s.is_dir:
            copier.copy_dir(s, target_v, exclude_m)
        else:
            src = s.context.host(s.rel)
            if unpack and is_archive(src):
                st = extract_archive(src, dest_root, target_v, chown=chown, label=s.source)
                copier.stats.archives += 1
                copier.stats.files += st.files
                copier.stats.dirs += st.dirs
                copier.stats.symlinks += st.symlinks
                copier.stats.bytes += st.bytes
                copier.stats.created_paths.extend(st.created_paths)
                continue
            try:
                st_src = os.lstat(src)
            except FileNotFoundError:
                raise PybuildError(f"{instruction}: source {s.source!r} disappeared while copying") from None
            dst, vdst = copier.leaf_target(target_v, s.name)
            copier.place(src, st_src, dst, vdst)
    copier.finish()
    return copier.stats


def copy_sources(dest_root: Path, context: BuildContext, sources: Sequence[str], dest: str, *,
                 workdir: str = "/", chown: tuple[int, int] | None = None, chmod: str | ChmodSpec | None = None,
                 exclude: Sequence[str] = (), parents: bool = False, unpack: bool = False,
                 inline: Sequence[InlineFile | RemoteFile] = (), instruction: str = "COPY") -> CopyStats:
    """Select ``sources`` (as written) in ``context`` and copy them: the one-call form of COPY/ADD.

    ``inline`` are heredoc bodies (and already downloaded URLs), copied after the selected sources.

    Ownership is kept when ``context`` is a ``--from`` rootfs (``BuildContext.from_rootfs``) and reset to 0:0 for
    the build context.
    """
    if isinstance(chmod, str):
        chmod = parse_chmod(chmod)  # validate before touching anything
    matches: list[Source] = list(context.select(sources, parents=parents))
    matches.extend(inline)
    return copy_into(dest_root, matches, dest, workdir=workdir, chown=chown, chmod=chmod, exclude=exclude,
                     preserve_owner=not context.is_build_context, unpack=unpack, instruction=instruction)
