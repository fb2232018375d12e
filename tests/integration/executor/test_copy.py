"""COPY semantics on real directories: destinations, errors, ownership, modes, times, symlink safety, patterns."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from pybuild.context import BuildContext, resolve_chown
from pybuild.errors import PybuildError
from pybuild.executor.copy import InlineFile, copy_into, copy_sources, parse_chmod

pytestmark = pytest.mark.root  # chown and mknod need root; CI runs as root


def make_context(root: Path, files: dict[str, str], ignore: str | None = None) -> BuildContext:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    if ignore is not None:
        (root / ".dockerignore").write_text(ignore)
    return BuildContext.from_dir(root)


@pytest.fixture
def ctx(tmp_path: Path) -> BuildContext:
    return make_context(tmp_path / "ctx", {
        "a.txt": "A\n", "b.txt": "B\n", "c.md": "C\n",
        "dir/one": "1\n", "dir/sub/two": "2\n", "dir/skip.log": "log\n",
        "secret.env": "TOKEN=x\n",
    }, ignore="secret.env\n*.log\n**/*.log\n")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:\n")
    return root


def read(p: Path) -> str:
    return p.read_text()


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def owner(p: Path) -> tuple[int, int]:
    st = os.lstat(p)
    return st.st_uid, st.st_gid


# -- destinations ------------------------------------------------------------------------------------------------


def test_file_to_file_dir_and_existing_dir(ctx: BuildContext, rootfs: Path) -> None:
    copy_sources(rootfs, ctx, ["a.txt"], "/x/renamed")
    assert read(rootfs / "x" / "renamed") == "A\n"
    copy_sources(rootfs, ctx, ["a.txt"], "/y/")
    assert read(rootfs / "y" / "a.txt") == "A\n"
    copy_sources(rootfs, ctx, ["b.txt"], "/y")  # no slash, but an existing directory: copied into it
    assert read(rootfs / "y" / "b.txt") == "B\n"


def test_directory_source_copies_its_contents(ctx: BuildContext, rootfs: Path) -> None:
    copy_sources(rootfs, ctx, ["dir"], "/app")
    assert sorted(os.listdir(rootfs / "app")) == ["one", "sub"]  # skip.log is .dockerignored
    assert read(rootfs / "app" / "sub" / "two") == "2\n"


def test_relative_destination_is_under_workdir(ctx: BuildContext, rootfs: Path) -> None:
    copy_sources(rootfs, ctx, ["a.txt"], "rel/", workdir="/usr/src/app")
    assert read(rootfs / "usr/src/app/rel/a.txt") == "A\n"
    copy_sources(rootfs, ctx, ["b.txt"], ".", workdir="/usr/src/app")
    assert read(rootfs / "usr/src/app/b.txt") == "B\n"


def test_whole_context_respects_dockerignore(ctx: BuildContext, rootfs: Path) -> None:
    copy_sources(rootfs, ctx, ["."], "/app/")
    assert sorted(os.listdir(rootfs / "app")) == [".dockerignore", "a.txt", "b.txt", "c.md", "dir"]
    assert not (rootfs / "app" / "dir" / "skip.log").exists()


def test_several_sources_need_a_directory_destination(ctx: BuildContext, rootfs: Path) -> None:
    msg = "When using COPY with more than one source file, the destination must be a directory and end with a /"
    with pytest.raises(PybuildError) as e:
        copy_sources(rootfs, ctx, ["a.txt", "b.txt"], "/dest")
    assert e.value.message == msg
    with pytest.raises(PybuildError, match="more than one source file"):
        copy_sources(rootfs, ctx, ["*.txt"], "/dest")  # a glob matching two
    assert not (rootfs / "dest").exists()
    copy_sources(rootfs, ctx, ["*.md"], "/single")  # a glob matching one: a file destination is fine
    assert read(rootfs / "single") == "C\n"
    with pytest.raises(PybuildError, match="more than one source file"):
        copy_sources(rootfs, ctx, ["dir", "a.txt"], "/mixed")
    copy_sources(rootfs, ctx, ["dir", "dir"], "/dirs")  # only directories: contents merge, as BuildKit allows
    assert sorted(os.listdir(rootfs / "dirs")) == ["one", "sub"]
    copy_sources(rootfs, ctx, ["*.txt", "c.md"], "/many/")
    assert sorted(os.listdir(rootfs / "many")) == ["a.txt", "b.txt", "c.md"]


def test_missing_and_outside_sources(ctx: BuildContext, rootfs: Path) -> None:
    with pytest.raises(PybuildError, match=re.escape("source 'nope.txt' not found in the build context")):
        copy_sources(rootfs, ctx, ["nope.txt"], "/")
    with pytest.raises(PybuildError, match=re.escape("source '../etc/passwd' is outside the build context")):
        copy_sources(rootfs, ctx, ["../etc/passwd"], "/")
    with pytest.raises(PybuildError, match="not found") as e:
        copy_sources(rootfs, ctx, ["secret.env"], "/")
    assert ".dockerignore" in (e.value.hint or "")


def test_directory_onto_file_and_file_onto_directory_are_errors(ctx: BuildContext, rootfs: Path) -> None:
    (rootfs / "afile").write_text("x")
    with pytest.raises(PybuildError, match="exists and is not a directory"):
        copy_sources(rootfs, ctx, ["dir"], "/afile")
    (rootfs / "t" / "a.txt").mkdir(parents=True)
    with pytest.raises(PybuildError, match=re.escape("cannot replace directory '/t/a.txt'")):
        copy_sources(rootfs, ctx, ["a.txt"], "/t/")


def test_existing_files_are_replaced_and_directories_merged(ctx: BuildContext, rootfs: Path) -> None:
    (rootfs / "app" / "sub").mkdir(parents=True)
    (rootfs / "app" / "sub" / "keep").write_text("kept")
    (rootfs / "app" / "one").write_text("old")
    copy_sources(rootfs, ctx, ["dir"], "/app/")
    assert read(rootfs / "app" / "one") == "1\n"
    assert read(rootfs / "app" / "sub" / "keep") == "kept"
    assert read(rootfs / "app" / "sub" / "two") == "2\n"


# -- ownership, modes, times ---------------------------------------------------------------------------------------


def test_context_files_become_root_owned_and_keep_modes_and_mtimes(ctx: BuildContext, rootfs: Path) -> None:
    src = ctx.root / "dir" / "one"
    os.chown(src, 1234, 5678)
    os.chmod(src, 0o751)
    os.utime(src, (1_000_000, 1_234_567))
    os.chmod(ctx.root / "dir" / "sub", 0o700)
    copy_sources(rootfs, ctx, ["dir"], "/app/")
    dst = rootfs / "app" / "one"
    assert owner(dst) == (0, 0)
    assert mode(dst) == 0o751
    assert os.lstat(dst).st_mtime == 1_234_567
    assert mode(rootfs / "app" / "sub") == 0o700


def test_chown_by_name_applies_to_files_dirs_and_created_parents(ctx: BuildContext, rootfs: Path) -> None:
    uid_gid = resolve_chown(rootfs, "app:staff")
    assert uid_gid == (1000, 50)
    copy_sources(rootfs, ctx, ["dir"], "/new/parent/app/", chown=uid_gid)
    for p in ["new", "new/parent", "new/parent/app", "new/parent/app/one", "new/parent/app/sub"]:
        assert owner(rootfs / p) == (1000, 50), p
    assert mode(rootfs / "new" / "parent") == 0o755


def test_chmod_octal_and_symbolic(ctx: BuildContext, rootfs: Path) -> None:
    os.chmod(ctx.root / "dir" / "one", 0o700)
    copy_sources(rootfs, ctx, ["dir"], "/o/", chmod="640")
    assert mode(rootfs / "o" / "one") == 0o640
    assert mode(rootfs / "o" / "sub") == 0o640  # as BuildKit: --chmod applies to copied directories too
    assert mode(rootfs / "o") == 0o755  # a created destination keeps 0755
    copy_sources(rootfs, ctx, ["dir"], "/s/", chmod="u=rwX,go=rX")
    assert mode(rootfs / "s" / "one") == 0o755  # was executable, so X keeps x
    assert mode(rootfs / "s" / "sub" / "two") == 0o644
    assert mode(rootfs / "s" / "sub") == 0o755
    copy_sources(rootfs, ctx, ["a.txt"], "/plusx", chmod="+x")
    assert mode(rootfs / "plusx") == 0o755
    with pytest.raises(PybuildError, match=re.escape("invalid chmod parameter: '999'. it should be octal")):
        copy_sources(rootfs, ctx, ["a.txt"], "/bad", chmod="999")
    with pytest.raises(PybuildError, match="invalid chmod parameter"):
        parse_chmod("u+q")


def test_from_stage_sources_keep_ownership(tmp_path: Path, rootfs: Path) -> None:
    stage = tmp_path / "stage"
    (stage / "opt" / "tool").mkdir(parents=True)
    (stage / "opt" / "tool" / "bin").write_text("#!/bin/sh\n")
    os.chown(stage / "opt" / "tool" / "bin", 42, 43)
    os.chown(stage / "opt" / "tool", 44, 45)
    src = BuildContext.from_rootfs(stage, label="stage 'build'")
    copy_sources(rootfs, src, ["/opt/tool"], "/usr/local/tool")
    assert owner(rootfs / "usr/local/tool/bin") == (42, 43)
    copy_sources(rootfs, src, ["/opt"], "/o2/")
    assert owner(rootfs / "o2" / "tool") == (44, 45)
    copy_sources(rootfs, src, ["/opt/tool/bin"], "/o3", chown=(7, 8))
    assert owner(rootfs / "o3") == (7, 8)


def test_heredoc_inline_files(rootfs: Path) -> None:
    copy_into(rootfs, [InlineFile("EOF", b"hello\n")], "/etc/motd")
    assert read(rootfs / "etc" / "motd") == "hello\n" and mode(rootfs / "etc" / "motd") == 0o644
    copy_into(rootfs, [InlineFile("script.sh", b"#!/bin/sh\n"), InlineFile("b", b"")], "/bin/", chmod="755",
              chown=(1000, 1000))
    assert mode(rootfs / "bin" / "script.sh") == 0o755 and owner(rootfs / "bin" / "b") == (1000, 1000)


# -- symlinks ------------------------------------------------------------------------------------------------------


def test_destination_symlinks_resolve_inside_dest_root(ctx: BuildContext, rootfs: Path, tmp_path: Path) -> None:
    host_etc_passwd = Path("/etc/passwd").read_bytes()
    os.symlink("/etc", rootfs / "evil")  # absolute: means the image's /etc
    os.symlink("../../../../../../../../etc/passwd", rootfs / "pw")
    copy_sources(rootfs, ctx, ["a.txt"], "/evil/copied")
    assert read(rootfs / "etc" / "copied") == "A\n"
    assert not Path("/etc/copied").exists()
    copy_sources(rootfs, ctx, ["b.txt"], "/pw")  # a final symlink is followed, inside the root
    assert read(rootfs / "etc" / "passwd") == "B\n"
    assert Path("/etc/passwd").read_bytes() == host_etc_passwd
    copy_sources(rootfs, ctx, ["dir"], "/evil/deep/")
    assert read(rootfs / "etc" / "deep" / "sub" / "two") == "2\n"


def test_copy_merges_into_image_symlinked_directories(ctx: BuildContext, rootfs: Path, tmp_path: Path) -> None:
    (rootfs / "usr" / "lib").mkdir(parents=True)
    os.symlink("usr/lib", rootfs / "lib")
    tree = make_context(tmp_path / "tree", {"lib/libx.so": "x", "etc/conf": "c"})
    copy_sources(rootfs, tree, ["."], "/")
    assert os.path.islink(rootfs / "lib")
    assert read(rootfs / "usr" / "lib" / "libx.so") == "x"


def test_context_symlinks_are_copied_as_links_never_followed_out(tmp_path: Path, rootfs: Path) -> None:
    ctx = make_context(tmp_path / "c", {"d/real.txt": "r"})
    os.symlink("/etc/shadow", ctx.root / "d" / "abs")
    os.symlink("../../../../outside", ctx.root / "d" / "rel")
    os.symlink("real.txt", ctx.root / "d" / "ok")
    copy_sources(rootfs, ctx, ["d"], "/d/")
    assert os.readlink(rootfs / "d" / "abs") == "/etc/shadow"
    assert os.readlink(rootfs / "d" / "rel") == "../../../../outside"
    assert os.readlink(rootfs / "d" / "ok") == "real.txt"
    # a top-level symlink source is followed, inside the context: the content is copied under the link's name
    copy_sources(rootfs, ctx, ["d/ok"], "/top/")
    assert not os.path.islink(rootfs / "top" / "ok") and read(rootfs / "top" / "ok") == "r"
    with pytest.raises(PybuildError, match="not found"):
        copy_sources(rootfs, ctx, ["d/abs"], "/x")  # /etc/shadow resolved inside the context: absent


def test_hard_links_stay_hard_links(tmp_path: Path, rootfs: Path) -> None:
    ctx = make_context(tmp_path / "c", {"h/a": "same"})
    os.link(ctx.root / "h" / "a", ctx.root / "h" / "b")
    copy_sources(rootfs, ctx, ["h"], "/h/")
    assert os.lstat(rootfs / "h" / "a").st_ino == os.lstat(rootfs / "h" / "b").st_ino


def test_special_files_from_a_stage(tmp_path: Path, rootfs: Path) -> None:
    stage = tmp_path / "stage"
    (stage / "dev").mkdir(parents=True)
    os.mkfifo(stage / "dev" / "fifo")
    os.mknod(stage / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(stage / "dev" / "null", 0o666)  # mknod's mode is masked by the umask
    copy_sources(rootfs, BuildContext.from_rootfs(stage), ["/dev"], "/dev/")
    assert stat.S_ISFIFO(os.lstat(rootfs / "dev" / "fifo").st_mode)
    st = os.lstat(rootfs / "dev" / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3) and mode(rootfs / "dev" / "null") == 0o666


# -- --exclude, --parents, --link ------------------------------------------------------------------------------------


def test_exclude_patterns(tmp_path: Path, rootfs: Path) -> None:
    ctx = make_context(tmp_path / "c", {
        "dir1/a.png": "", "dir1/b.txt": "", "dir2/c.png": "", "dir2/deep/d.png": "", "dir2/deep/e.md": "",
        "home.txt": "", "home.md": "",
    })
    copy_sources(rootfs, ctx, ["."], "/1/", exclude=["*/*.png"])
    assert sorted(str(p.relative_to(rootfs / "1")) for p in (rootfs / "1").rglob("*")) == [
        "dir1", "dir1/b.txt", "dir2", "dir2/deep", "dir2/deep/d.png", "dir2/deep/e.md", "home.md", "home.txt"]
    copy_sources(rootfs, ctx, ["dir*"], "/2/", exclude=["**/*.png", "deep"])
    assert sorted(os.listdir(rootfs / "2")) == ["b.txt"]
    copy_sources(rootfs, ctx, ["hom*"], "/4/", exclude=["*.txt"])  # the Dockerfile reference's example
    assert os.listdir(rootfs / "4") == ["home.md"]
    copy_sources(rootfs, ctx, ["dir*"], "/6", exclude=["*"])  # directories are filtered, not dropped whole
    assert os.listdir(rootfs / "6") == []
    copy_sources(rootfs, ctx, ["dir2"], "/3/", exclude=["*", "!deep/e.md"])
    assert sorted(str(p.relative_to(rootfs / "3")) for p in (rootfs / "3").rglob("*")) == ["deep", "deep/e.md"]


def test_parents_keeps_source_directories(tmp_path: Path, rootfs: Path) -> None:
    ctx = make_context(tmp_path / "c", {"x/a.txt": "xa", "y/a.txt": "ya", "src/a.txt": "1", "src/p/b.txt": "2",
                                        "src/p/q/c.txt": "3", "src/p/q/d.bin": "4", "x/y/z.txt": "z"})
    copy_sources(rootfs, ctx, ["./x/a.txt", "./y/a.txt"], "/parents/", parents=True)
    assert read(rootfs / "parents/x/a.txt") == "xa" and read(rootfs / "parents/y/a.txt") == "ya"
    copy_sources(rootfs, ctx, ["./src/**/*.txt"], "/globbed/", parents=True)
    got = sorted(str(p.relative_to(rootfs / "globbed")) for p in (rootfs / "globbed").rglob("*"))
    assert got == ["src", "src/a.txt", "src/p", "src/p/b.txt", "src/p/q", "src/p/q/c.txt"]
    copy_sources(rootfs, ctx, ["./x/./y/*.txt"], "/pivot/", parents=True)
    assert read(rootfs / "pivot/y/z.txt") == "z"
    with pytest.raises(PybuildError, match="not found"):
        copy_sources(rootfs, ctx, ["./x/nope.txt"], "/p2/", parents=True)


def test_link_copies_into_an_empty_directory(ctx: BuildContext, tmp_path: Path) -> None:
    layer = tmp_path / "link-layer"
    layer.mkdir()
    copy_sources(layer, ctx, ["dir"], "/app/sub/")
    assert sorted(p.name for p in layer.iterdir()) == ["app"]
    assert read(layer / "app" / "sub" / "sub" / "two") == "2\n"


def test_reincluded_files_below_an_ignored_directory_are_copied(tmp_path: Path, rootfs: Path) -> None:
    ctx = make_context(tmp_path / "c", {"docs/README.md": "r", "docs/api/x.md": "x", "docs/build.sh": "b"},
                       ignore="docs\n!docs/README.md\n")
    copy_sources(rootfs, ctx, ["docs"], "/d/")
    assert os.listdir(rootfs / "d") == ["README.md"]
    copy_sources(rootfs, ctx, ["."], "/all/")
    assert sorted(str(p.relative_to(rootfs / "all")) for p in (rootfs / "all").rglob("*")) == [
        ".dockerignore", "docs", "docs/README.md"]
