"""Helpers for the layer tests: overlay mounts, a comparable snapshot of a tree, tar archives built by hand."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# redirect_dir=off: a renamed directory is copied up and its old name whited out, instead of a
#   `trusted.overlay.redirect` xattr that a layer tarball cannot express;
# metacopy=off: chmod/chown of a lower file copies its data up, instead of a metadata-only stub whose data
#   stays in the lower (a layer must carry the data);
# index=off: no inode index (hard-link copy-up bookkeeping that needs a shared work dir per lower set).
# These are the options the build sandbox mounts with, so the upper dirs here look like real step outputs.
OVERLAY_OPTS = "redirect_dir=off,metacopy=off,index=off"


@contextmanager
def overlay(merged: Path, lowers: list[Path], upper: Path | None = None, work: Path | None = None) -> Iterator[Path]:
    """Mount overlayfs at `merged` (read-only when no upper is given) and unmount it on the way out."""
    merged.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={':'.join(str(p) for p in lowers)},{OVERLAY_OPTS}"
    if upper is not None:
        assert work is not None
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        opts += f",upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def _xattrs(path: Path) -> dict[str, bytes]:
    out = {}
    for name in os.listxattr(path, follow_symlinks=False):
        if name.startswith(("trusted.overlay.", "user.overlay.")):
            continue
        out[name] = os.getxattr(path, name, follow_symlinks=False)
    return out


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a layer must preserve about each path under `root` (the root itself excluded): type, mode,
    owner, whole-second mtime, content digest, link target, device number, xattrs, and hard-link groups."""
    result: dict[str, tuple[object, ...]] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            content: object = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(p.read_bytes()).hexdigest()
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                content = (os.major(st.st_rdev), os.minor(st.st_rdev))
            result[rel] = (
                stat.filemode(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime), st.st_size if content else 0,
                content, tuple(sorted(_xattrs(p).items())),
            )
    for paths in inodes.values():
        if len(paths) > 1:
            for rel in paths:
                result[rel] = (*result[rel], tuple(sorted(paths)))
    return result


def make_tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    """An uncompressed PAX tar of the given members, exactly as listed (hostile names included)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, *, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    info.mtime = 1_700_000_000
    return info
