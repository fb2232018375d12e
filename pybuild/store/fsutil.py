"""Filesystem primitives for the store: atomic writes, fsync, file locks and the per-process temp area.

Every object in the store appears by rename(2) of something complete that was built in ``<root>/tmp``
(same filesystem), so a reader never sees half of anything and a killed writer leaves only temp debris.
Each live Store holds an exclusive flock on ``tmp/<token>.owner``; temp entries are named ``<token>-...``,
so anyone can tell a dead process's debris (its owner lock can be taken) from a live one's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

OWNER_SUFFIX = ".owner"


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in directory path durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, tmp_dir: Path, prefix: str) -> None:
    """Replace path with data: write a temp file in tmp_dir, fsync, rename over path, fsync the directory."""
    _install_temp(path, data, tmp_dir, prefix, replace=True)


def atomic_create(path: Path, data: bytes, tmp_dir: Path, prefix: str) -> bool:
    """Like atomic_write, but never replaces an existing path (another process may have made it, and changed it,
    since we looked): False when path already existed."""
    return _install_temp(path, data, tmp_dir, prefix, replace=False)


def _install_temp(path: Path, data: bytes, tmp_dir: Path, prefix: str, *, replace: bool) -> bool:
    tmp = tmp_dir / f"{prefix}-{secrets.token_hex(8)}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if replace:
            os.rename(tmp, path)
        else:
            try:
                os.link(tmp, path)  # unlike rename, fails when path exists
            except FileExistsError:
                return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # gone already after a rename
    fsync_dir(path.parent)
    return True


def rename_noreplace(src: Path, dst: Path) -> bool:
    """Rename a directory into place unless dst already exists; False (src untouched) when it does."""
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    return True


def _mount_points() -> list[str]:
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    out: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4:
            # mountinfo escapes spaces and friends as octal
            out.append(fields[4].encode().decode("unicode_escape"))
    return out


def remove_tree(path: Path) -> None:
    """Delete path (file, symlink or tree) best-effort, but never descend into something still mounted.

    A dead build's scratch dir may still carry a mount we must not delete through; such trees are left
    alone (the store's only job is not to damage anything).
    """
    p = str(path)
    if any(m == p or m.startswith(p + "/") for m in _mount_points()):
        return
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return

    def _onerror(func: object, fpath: str, exc: BaseException) -> None:
        # A directory without write/execute permission (overlay's work/work is mode 000): open it up.
        parent = os.path.dirname(fpath)
        with contextlib.suppress(OSError):
            os.chmod(parent, 0o700)
            os.chmod(fpath, 0o700)
        with contextlib.suppress(OSError):
            if os.path.isdir(fpath) and not os.path.islink(fpath):
                shutil.rmtree(fpath, ignore_errors=True)
            else:
                os.unlink(fpath)

    shutil.rmtree(path, onerror=lambda f, fp, ei: _onerror(f, fp, ei[1]))


class Owner:
    """This process's claim on a temp namespace in ``tmp/``: an exclusive flock held until close()."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        while True:
            self.token = secrets.token_hex(6)
            pending = tmp_dir / f"{self.token}{OWNER_SUFFIX}.new"
            self._fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            # Locked before it gets its final name, so a cleaner never sees an unlocked live owner file.
            try:
                os.rename(pending, tmp_dir / f"{self.token}{OWNER_SUFFIX}")
                break
            except FileNotFoundError:
                # A concurrent sweep took it for debris between our create and our lock: start again.
                os.close(self._fd)

    def temp_path(self, kind: str) -> Path:
        return self.tmp_dir / f"{self.token}-{kind}-{secrets.token_hex(6)}"

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp_dir / f"{self.token}{OWNER_SUFFIX}")
            os.close(self._fd)
            self._fd = -1


def owner_alive(tmp_dir: Path, token: str) -> bool:
    """Whether the process that owns token still runs (its owner lock is held)."""
    path = tmp_dir / f"{token}{OWNER_SUFFIX}"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def clean_stale_temp(tmp_dir: Path) -> int:
    """Remove the temp debris of dead processes; returns how many entries went."""
    removed = 0
    names = os.listdir(tmp_dir)
    live: set[str] = set()
    dead: set[str] = set()
    for name in names:
        if name.endswith(OWNER_SUFFIX):
            token = name[: -len(OWNER_SUFFIX)]
            path = tmp_dir / name
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live.add(token)
                os.close(fd)
                continue
            # We hold the dead owner's lock: remove its debris, then its owner file.
            dead.add(token)
            for other in names:
                if other.startswith(token + "-"):
                    remove_tree(tmp_dir / other)
                    removed += 1
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            os.close(fd)
    for name in names:
        token = name.split("-", 1)[0].split(".", 1)[0]
        if token in live or token in dead:
            continue
        path = tmp_dir / name
        if name.endswith(OWNER_SUFFIX + ".new"):
            # An owner file being born holds its lock already; a dead one does not.
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            os.close(fd)
            removed += 1
            continue
        if owner_alive(tmp_dir, token):
            continue
        # No owner file at all: its process died (owner files are created before any temp entry).
        remove_tree(path)
        removed += 1
    return removed


class FileLock:
    """A flock on a file, shared or exclusive, re-entrant within one object."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._depth = 0
        self._mode = 0

    @contextlib.contextmanager
    def held(self, exclusive: bool) -> Iterator[None]:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if self._depth:
            if exclusive and self._mode != fcntl.LOCK_EX:
                raise RuntimeError("cannot upgrade a shared store lock to exclusive")
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, mode)
        self._mode = mode
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def dir_size(path: Path) -> int:
    """Bytes used by the regular files under path (hard links counted once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):  # os.walk lists symlinks, fifos, devices among files
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_size
    return total
