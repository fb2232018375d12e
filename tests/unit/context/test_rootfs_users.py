"""Chroot-style path resolution and user/group look-ups in an image rootfs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pybuild.context import mkdir_all, resolve_chown, resolve_in_root, resolve_user, resolve_virtual
from pybuild.errors import PybuildError

PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1001:App:/home/app:/bin/sh
"""
GROUP = """root:x:0:
wheel:x:10:app,other
appgrp:x:1001:
docker:x:999:app
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


def test_resolve_follows_links_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    os.symlink("usr/lib", tmp_path / "lib")
    os.symlink("/etc", tmp_path / "abs")
    os.symlink("../../../../..", tmp_path / "usr" / "up")
    assert resolve_virtual(tmp_path, "/lib/x") == "/usr/lib/x"
    assert resolve_virtual(tmp_path, "/abs/passwd") == "/etc/passwd"
    assert resolve_virtual(tmp_path, "/usr/up/etc/shadow") == "/etc/shadow"
    assert resolve_virtual(tmp_path, "../../../etc") == "/etc"
    assert resolve_virtual(tmp_path, "/lib", follow_final=False) == "/lib"
    assert resolve_in_root(tmp_path, "/abs/passwd") == tmp_path / "etc" / "passwd"


def test_symlink_loop_is_an_error(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(PybuildError, match="too many levels of symbolic links"):
        resolve_virtual(tmp_path, "/a/x")


def test_mkdir_all_creates_inside_the_root_through_links(tmp_path: Path) -> None:
    os.symlink("/real", tmp_path / "link")
    v, created = mkdir_all(tmp_path, "/link/a/b", mode=0o755)
    assert v == "/real/a/b"
    assert created == [tmp_path / "real", tmp_path / "real/a", tmp_path / "real/a/b"]
    assert (os.stat(tmp_path / "real/a").st_mode & 0o7777) == 0o755
    (tmp_path / "file").write_text("")
    with pytest.raises(PybuildError, match="'/file' exists and is not a directory"):
        mkdir_all(tmp_path, "/file/x")


def test_resolve_user(rootfs: Path) -> None:
    assert resolve_user(rootfs, "") == (0, 0, [])
    assert resolve_user(rootfs, "root") == (0, 0, [])
    assert resolve_user(rootfs, "app") == (1000, 1001, [10, 999])  # supplementary groups from membership
    assert resolve_user(rootfs, "1000") == (1000, 1001, [10, 999])
    assert resolve_user(rootfs, "app:wheel") == (1000, 10, [])  # an explicit group drops the supplementary ones
    assert resolve_user(rootfs, "app:4242") == (1000, 4242, [])
    assert resolve_user(rootfs, "4242") == (4242, 0, [])  # numeric users need no passwd entry
    assert resolve_user(rootfs, "4242:docker") == (4242, 999, [])
    with pytest.raises(PybuildError, match="unable to find user nobody"):
        resolve_user(rootfs, "nobody")
    with pytest.raises(PybuildError, match="unable to find group nogroup"):
        resolve_user(rootfs, "app:nogroup")


def test_resolve_user_without_passwd(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "123:456") == (123, 456, [])
    with pytest.raises(PybuildError, match="no /etc/passwd in the image"):
        resolve_user(tmp_path, "app")


def test_resolve_chown(rootfs: Path) -> None:
    assert resolve_chown(rootfs, "app") == (1000, 1001)
    assert resolve_chown(rootfs, "1000") == (1000, 1000)  # numeric user alone: gid = uid (Docker reference)
    assert resolve_chown(rootfs, "55:appgrp") == (55, 1001)
    assert resolve_chown(rootfs, "daemon:7") == (1, 7)
    assert resolve_chown(rootfs, "10:11") == (10, 11)
    with pytest.raises(PybuildError, match="--chown: unable to find user ghost"):
        resolve_chown(rootfs, "ghost")
    with pytest.raises(PybuildError, match="--chown: unable to find group ghosts"):
        resolve_chown(rootfs, "app:ghosts")
    with pytest.raises(PybuildError, match="out of range"):
        resolve_chown(rootfs, "99999999999")


def test_user_files_are_read_through_the_image_symlinks_only(tmp_path: Path) -> None:
    # /etc/passwd in the image is a symlink to an absolute path: it must resolve inside the image, not on the host
    (tmp_path / "etc").mkdir()
    (tmp_path / "alt").mkdir()
    (tmp_path / "alt" / "passwd").write_text("builder:x:4321:4321::/:/bin/sh\n")
    os.symlink("/alt/passwd", tmp_path / "etc" / "passwd")
    assert resolve_user(tmp_path, "builder") == (4321, 4321, [])
    with pytest.raises(PybuildError):
        resolve_user(tmp_path, "root")  # the host's root entry is not visible
