"""Filesystem work that needs a mounted image view: run inside `sandbox.jobs.run_job`'s helper process.

Each function takes a JSON payload and the mountpoints of the views the engine asked for, and returns a
JSON-serialisable result. They only touch the mounted views (and read the build context); the engine decides
what is mounted where.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pybuild.context.context import BuildContext
from pybuild.context.rootfs import mkdir_all, read_passwd, resolve_chown, resolve_user
from pybuild.executor.copy import InlineFile, RemoteFile, copy_into, copy_sources

if TYPE_CHECKING:
    from pybuild.sandbox.jobs import FsView


@dataclass(frozen=True)
class ImageUser:
    """A USER value resolved in an image: what the process runs as, and the HOME it gets unless the image sets one."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


ROOT_USER = ImageUser(0, 0, (), "/root")


def resolve_image_user(view: FsView, user: str) -> ImageUser:
    """Resolve USER through the image's own /etc/passwd and /etc/group (mounted read-only from `view`).

    Called in the build process: it runs the `user` job below in a helper. Root needs no lookup.
    """
    from pybuild.sandbox.jobs import run_job

    if user in ("", "root", "0", "0:0"):
        return ROOT_USER
    res = run_job([view], "pybuild.executor.fsjobs:user", {"user": user})
    return ImageUser(int(res[0]), int(res[1]), tuple(int(g) for g in res[2]), str(res[3]))


def user(payload: dict[str, Any], mounts: list[str]) -> list[Any]:
    """Resolve a USER value against the image at mounts[0]: [uid, gid, [supplementary gids], home]."""
    root = Path(mounts[0])
    uid, gid, groups = resolve_user(root, payload["user"])
    home = next((e.home for e in read_passwd(root) or [] if e.uid == uid), "/")
    return [uid, gid, groups, home]


def workdir(payload: dict[str, Any], mounts: list[str]) -> bool:
    """Create the WORKDIR in the image at mounts[0] (owned by the USER in effect) if it is missing."""
    root = Path(mounts[0])
    owner = None
    if payload.get("user"):
        uid, gid, _ = resolve_user(root, payload["user"])
        owner = (uid, gid)
    before = _exists(root, payload["path"])
    mkdir_all(root, payload["path"], owner=owner)
    return not before


def existing_dirs(payload: dict[str, Any], mounts: list[str]) -> list[str]:
    """Which of payload["paths"] are directories in the image at mounts[0] (symlinks resolved inside it)."""
    root = Path(mounts[0])
    return [p for p in payload["paths"] if _exists(root, p)]


def _exists(root: Path, vpath: str) -> bool:
    from pybuild.context.rootfs import host_path

    try:
        return os.path.isdir(host_path(root, vpath))
    except Exception:
        return False


def copy(payload: dict[str, Any], mounts: list[str]) -> dict[str, int]:
    """COPY/ADD into the image at mounts[0]; with --from, the source tree is mounts[1]."""
    dest_root = Path(mounts[0])
    chown = resolve_chown(dest_root, payload["chown"]) if payload.get("chown") else None
    if payload.get("from_view"):
        context = BuildContext.from_rootfs(Path(mounts[1]), label=payload.get("from_label"))
    elif payload.get("context"):
        df = payload.get("dockerfile")
        context = BuildContext.from_dir(Path(payload["context"]), Path(df) if df else None)
    else:
        context = None
    inline = [InlineFile(name=f["name"], content=f["content"].encode("utf-8", "surrogateescape"), mode=f["mode"])
              for f in payload.get("inline", [])]
    remote = [RemoteFile(path=Path(r["path"]), name=r["name"], mtime=r.get("mtime"), url=r.get("url", ""))
              for r in payload.get("remote", [])]
    common: dict[str, Any] = dict(workdir=payload["workdir"], chown=chown, chmod=payload.get("chmod") or None,
                                  exclude=payload.get("exclude", []), instruction=payload["instruction"])
    if payload["sources"]:
        if context is None:
            from pybuild.errors import PybuildError

            raise PybuildError(f"{payload['instruction']} needs a build context, but the build has none",
                               hint="pass a context directory instead of `-`")
        stats = copy_sources(dest_root, context, payload["sources"], payload["dest"], parents=payload["parents"],
                             unpack=payload["unpack"], inline=[*inline, *remote], **common)
    else:
        stats = copy_into(dest_root, [*inline, *remote], payload["dest"], unpack=payload["unpack"], **common)
    return {"files": stats.files, "dirs": stats.dirs}


def export_tree(payload: dict[str, Any], mounts: list[str]) -> int:
    """Copy the image view at mounts[0] into the host directory payload["dest"], keeping owners, modes and links.

    What is already in dest is replaced, never written through: an existing symlink (say, from an earlier export)
    is removed before its path is used, so an image can never make this write outside dest.
    """
    import shutil
    import stat as st_mod

    src_root = mounts[0]
    dest_root = payload["dest"]
    count = 0

    def clear(dst: str, want_dir: bool) -> None:
        try:
            old = os.lstat(dst)
        except FileNotFoundError:
            return
        if st_mod.S_ISDIR(old.st_mode):
            if not want_dir:
                shutil.rmtree(dst)
        else:
            os.unlink(dst)

    for dirpath, dirnames, filenames in os.walk(src_root):
        rel = os.path.relpath(dirpath, src_root)
        out_dir = dest_root if rel == "." else os.path.join(dest_root, rel)
        for name in [*dirnames, *filenames]:
            src = os.path.join(dirpath, name)
            dst = os.path.join(out_dir, name)
            st = os.lstat(src)
            is_dir = st_mod.S_ISDIR(st.st_mode)
            clear(dst, is_dir)
            if st_mod.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif is_dir:
                os.makedirs(dst, exist_ok=True)
            elif st_mod.S_ISREG(st.st_mode):
                shutil.copyfile(src, dst, follow_symlinks=False)
            else:
                os.mknod(dst, st.st_mode, st.st_rdev)
            os.lchown(dst, st.st_uid, st.st_gid)
            if not st_mod.S_ISLNK(st.st_mode):
                os.chmod(dst, st.st_mode & 0o7777)  # dst was just made by us: not a symlink
            count += 1
    # Directory times last, deepest first, so writing their contents does not change them again.
    for dirpath, _dirnames, _filenames in os.walk(src_root, topdown=False):
        rel = os.path.relpath(dirpath, src_root)
        st = os.lstat(dirpath)
        os.utime(dest_root if rel == "." else os.path.join(dest_root, rel), ns=(st.st_atime_ns, st.st_mtime_ns),
                 follow_symlinks=False)
    return count
