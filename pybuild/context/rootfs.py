"""Paths and users inside a root directory, resolved as if that directory were ``/`` (chroot-style).

Owns ``resolve_in_root`` (symlinks are followed but never out of the root: an absolute target restarts at the root,
``..`` stops at it), ``mkdir_all`` on top of it, and the image user look-ups: ``resolve_user`` (USER / RUN semantics of
runc's GetExecUser) and ``resolve_chown`` (COPY/ADD ``--chown`` semantics), both reading the *image's* /etc/passwd and
/etc/group through the same resolution so a hostile image cannot make us read host files.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pybuild.errors import PybuildError

MAX_SYMLINK_HOPS = 255  # as Linux's and containerd's limits: a loop must fail, not spin
MAX_ID = 2**31 - 1
_MAX_USER_FILE = 10 << 20


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c and c != "."]


def resolve_virtual(root: Path | str, path: str, *, follow_final: bool = True) -> str:
    """Resolve ``path`` inside ``root`` and return the absolute in-root path ("/" based, no symlinks left in it
    except, with ``follow_final=False``, the last component). Missing components are kept literally."""
    return _walk_in_root(os.fspath(root), path, follow_final=follow_final)


def _walk_in_root(root: str, path: str, *, follow_final: bool = True,
                  create: Callable[[str], None] | None = None) -> str:
    """Walk ``path`` component by component as if ``root`` were `/`, following symlinks inside it.

    Without ``create``, missing components are kept literally (resolve_virtual). With it, each missing component is
    created by ``create(host_path)`` and every existing one must be a directory (mkdir_all).
    """
    todo = deque(_components(path))
    done: list[str] = []
    hops = 0
    while todo:
        comp = todo.popleft()
        if comp == "..":
            if done:
                done.pop()
            continue
        if not todo and not follow_final:
            done.append(comp)
            break
        host = os.path.join(root, *done, comp)
        try:
            st = os.lstat(host)
        except (FileNotFoundError, NotADirectoryError):
            if create is not None:
                create(host)
            done.append(comp)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise PybuildError(f"too many levels of symbolic links resolving {path!r}")
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            todo.extendleft(reversed(_components(target)))
            continue
        if create is not None and not stat.S_ISDIR(st.st_mode):
            where = "/" + "/".join([*done, comp])
            raise PybuildError(f"cannot create directory {path!r}: {where!r} exists and is not a directory")
        done.append(comp)
    return "/" + "/".join(done)


def resolve_in_root(root: Path, path: str, *, follow_final: bool = True) -> Path:
    """The host path for in-root ``path`` after chroot-style symlink resolution (see resolve_virtual)."""
    v = resolve_virtual(root, path, follow_final=follow_final)
    return root / v.lstrip("/") if v != "/" else root


def host_path(root: Path, vpath: str) -> Path:
    """Join an already-resolved in-root path onto the root."""
    rel = vpath.lstrip("/")
    return root / rel if rel else root


def mkdir_all(root: Path, vpath: str, *, mode: int = 0o755,
              owner: tuple[int, int] | None = None) -> tuple[str, list[Path]]:
    """Create ``vpath`` and its missing parents inside ``root`` (chroot-style), like ``mkdir -p``.

    Returns the resolved in-root path and the directories created (outermost first). New directories get ``mode``
    exactly (not masked by the umask) and ``owner`` (0:0 when None).
    """
    created: list[Path] = []
    uid, gid = owner or (0, 0)

    def create(host: str) -> None:
        os.mkdir(host, mode)
        os.chmod(host, mode)
        os.lchown(host, uid, gid)
        created.append(Path(host))

    return _walk_in_root(os.fspath(root), vpath, create=create), created


# --------------------------------------------------------------------------------------------------------------------
# /etc/passwd and /etc/group


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def _read_user_file(rootfs: Path, vpath: str) -> list[list[str]] | None:
    """Lines of a colon-separated file in the image, split into fields; None when the file does not exist."""
    host = resolve_in_root(rootfs, vpath)
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise PybuildError(f"cannot read the image's {vpath}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise PybuildError(f"the image's {vpath} is not a regular file")
        data = f.read(_MAX_USER_FILE + 1)
    if len(data) > _MAX_USER_FILE:
        raise PybuildError(f"the image's {vpath} is larger than {_MAX_USER_FILE} bytes")
    rows: list[list[str]] = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rows.append(line.split(":"))
    return rows


def _int(field: str) -> int:
    try:
        return int(field)
    except ValueError:
        return 0  # as runc: a malformed numeric field reads as 0


def read_passwd(rootfs: Path) -> list[PasswdEntry] | None:
    rows = _read_user_file(rootfs, "/etc/passwd")
    if rows is None:
        return None
    out = []
    for r in rows:
        r = r + [""] * (7 - len(r))
        out.append(PasswdEntry(r[0], _int(r[2]), _int(r[3]), r[5]))
    return out


def read_group(rootfs: Path) -> list[GroupEntry] | None:
    rows = _read_user_file(rootfs, "/etc/group")
    if rows is None:
        return None
    out = []
    for r in rows:
        r = r + [""] * (4 - len(r))
        members = tuple(m.strip() for m in r[3].split(",") if m.strip())
        out.append(GroupEntry(r[0], _int(r[2]), members))
    return out


def _numeric(value: str, what: str) -> int | None:
    """The id if ``value`` is numeric (then it is never looked up as a name), else None."""
    if not value.isdigit() and not (value.startswith(("-", "+")) and value[1:].isdigit()):
        return None
    n = int(value)
    if n < 0 or n > MAX_ID:
        raise PybuildError(f"{what} id {value} is out of range (0..{MAX_ID})")
    return n


def _split_spec(spec: str) -> tuple[str, str]:
    user, _, group = spec.partition(":")
    group = group.split(":", 1)[0]
    return user, group


def resolve_user(rootfs: Path, spec: str) -> tuple[int, int, list[int]]:
    """Resolve a USER value (``user``, ``uid``, ``user:group``, ``uid:gid``, mixed) in the image at ``rootfs``.

    Returns (uid, gid, supplementary gids). As runc/BuildKit: a numeric user needs no passwd entry (gid then 0
    unless an entry exists); a named user must exist; supplementary groups come from /etc/group membership only when
    no group was given explicitly.
    """
    user_arg, group_arg = _split_spec(spec)
    uid_num = _numeric(user_arg, "user") if user_arg else None
    gid_num = _numeric(group_arg, "group") if group_arg else None

    uid, gid, sgids = 0, 0, list[int]()
    passwd = read_passwd(rootfs)
    matched: PasswdEntry | None = None
    for e in passwd or []:
        if (not user_arg and e.uid == 0) or (uid_num is not None and e.uid == uid_num) or (
            user_arg and uid_num is None and e.name == user_arg
        ):
            matched = e
            break
    if matched is not None:
        uid, gid = matched.uid, matched.gid
    elif user_arg:
        if uid_num is None:
            where = "no /etc/passwd in the image" if passwd is None else "no such entry in the image's /etc/passwd"
            raise PybuildError(f"unable to find user {user_arg}: {where}",
                               hint="create the user first (e.g. RUN useradd) or use a numeric uid")
        uid = uid_num

    if group_arg or matched is not None:
        groups = read_group(rootfs) or []
        if group_arg:
            found = next((g for g in groups if (g.gid == gid_num if gid_num is not None else g.name == group_arg)),
                         None)
            if found is not None:
                gid = found.gid
            elif gid_num is not None:
                gid = gid_num
            else:
                raise PybuildError(f"unable to find group {group_arg}: no such entry in the image's /etc/group",
                                   hint="create the group first or use a numeric gid")
        else:
            assert matched is not None
            sgids = [g.gid for g in groups if matched.name in g.members]
    return uid, gid, sgids


def resolve_chown(rootfs: Path, spec: str) -> tuple[int, int]:
    """Resolve a COPY/ADD ``--chown`` value against the image at ``rootfs`` (the stage being built).

    ``user`` by name takes the user's uid and primary gid; a numeric user alone means gid = uid; a group, by name or
    number, overrides the gid. Names that the image does not know are an error (BuildKit silently uses 0; Docker's
    reference says the build fails, which is what we do).
    """
    if not spec or spec.startswith(":"):
        raise PybuildError(f"invalid --chown value {spec!r}: expected user, user:group, uid or uid:gid")
    user_arg, group_arg = _split_spec(spec)
    uid_num = _numeric(user_arg, "user")
    if uid_num is not None:
        uid, gid = uid_num, uid_num
    else:
        passwd = read_passwd(rootfs)
        entry = next((e for e in passwd or [] if e.name == user_arg), None)
        if entry is None:
            where = "no /etc/passwd in the image" if passwd is None else "no such entry in the image's /etc/passwd"
            raise PybuildError(f"--chown: unable to find user {user_arg}: {where}",
                               hint="use a numeric uid:gid, or create the user in an earlier step")
        uid, gid = entry.uid, entry.gid
    if group_arg:
        gid_num = _numeric(group_arg, "group")
        if gid_num is not None:
            gid = gid_num
        else:
            groups = read_group(rootfs)
            g = next((g for g in groups or [] if g.name == group_arg), None)
            if g is None:
                where = "no /etc/group in the image" if groups is None else "no such entry in the image's /etc/group"
                raise PybuildError(f"--chown: unable to find group {group_arg}: {where}",
                                   hint="use a numeric gid, or create the group in an earlier step")
            gid = g.gid
    return uid, gid
