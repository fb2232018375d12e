"""Source selection (globs, symlinks, --parents, errors) and content digests over a real context directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pybuild.context import BuildContext, Match, MemoryChecksumCache, digest_sources
from pybuild.errors import PybuildError


@pytest.fixture
def ctx(tmp_path: Path) -> BuildContext:
    root = tmp_path / "ctx"
    for f in ["a.txt", "b.txt", "c.md", "src/x.py", "src/y.py", "src/sub/z.py", "real/file", "docs/skip.txt"]:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"content of {f}\n")
    os.symlink("real", root / "link")
    os.symlink("/etc/passwd", root / "abs-link")
    os.symlink("../../../../etc", root / "up-link")
    os.symlink("missing", root / "dangling.txt")
    (root / ".dockerignore").write_text("docs\n")
    return BuildContext.from_dir(root)


def names(ms: list[Match]) -> list[tuple[str, str, bool]]:
    return [(m.rel, m.name, m.is_dir) for m in ms]


def test_literal_sources(ctx: BuildContext) -> None:
    assert names(ctx.select(["a.txt", "src", "./src/", "/src/x.py", "."])) == [
        ("a.txt", "a.txt", False), ("src", "src", True), ("src", "src", True), ("src/x.py", "x.py", False),
        (".", "", True),
    ]


def test_globs_follow_go_rules(ctx: BuildContext) -> None:
    assert names(ctx.select(["*.txt"])) == [("a.txt", "a.txt", False), ("b.txt", "b.txt", False),
                                            ("dangling.txt", "dangling.txt", False)]
    assert names(ctx.select(["src/*.py"])) == [("src/x.py", "x.py", False), ("src/y.py", "y.py", False)]
    assert names(ctx.select(["*/*.py"])) == [("src/x.py", "x.py", False), ("src/y.py", "y.py", False)]
    assert names(ctx.select(["?.md"])) == [("c.md", "c.md", False)]
    assert ctx.select(["*.nomatch"]) == []  # an empty glob is not an error (BuildKit)
    assert names(ctx.select(["do*"])) == []  # .dockerignored entries are invisible to globs


def test_dangling_link_matched_by_glob_is_kept_as_link(ctx: BuildContext) -> None:
    (m,) = [m for m in ctx.select(["dangling*"])]
    assert m.rel == "dangling.txt" and not m.is_dir


def test_symlink_source_is_followed_inside_the_context(ctx: BuildContext) -> None:
    (m,) = ctx.select(["link"])
    assert (m.rel, m.name, m.is_dir) == ("real", "link", True)
    (m,) = ctx.select(["link/file"])
    assert m.rel == "real/file"
    # an absolute or climbing link resolves inside the context root, never on the host
    with pytest.raises(PybuildError) as e:
        ctx.select(["abs-link"])
    assert "not found" in e.value.message and "symlink" in (e.value.hint or "")
    with pytest.raises(PybuildError, match="not found"):
        ctx.select(["up-link/passwd"])


def test_missing_source_names_the_path_as_written(ctx: BuildContext) -> None:
    with pytest.raises(PybuildError) as e:
        ctx.select(["nope/file.txt"])
    assert e.value.message == "source 'nope/file.txt' not found in the build context"


def test_ignored_source_is_not_found_and_says_why(ctx: BuildContext) -> None:
    with pytest.raises(PybuildError) as e:
        ctx.select(["docs/skip.txt"])
    assert "not found" in e.value.message and ".dockerignore" in (e.value.hint or "")


def test_source_outside_the_context_is_refused(ctx: BuildContext) -> None:
    for bad in ["../x", "a/../../x", ".."]:
        with pytest.raises(PybuildError, match="is outside the build context"):
            ctx.select([bad])
    assert names(ctx.select(["/../a.txt"])) == [("a.txt", "a.txt", False)]  # rooted: cleaned back into the context


def test_from_rootfs_sources_clamp_at_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text("x")
    stage = BuildContext.from_rootfs(tmp_path, label="stage 'build'")
    want = [("etc/os-release", "os-release", False)] * 2
    assert names(stage.select(["/etc/os-release", "../etc/os-release"])) == want
    with pytest.raises(PybuildError, match="not found in stage 'build'"):
        stage.select(["/nope"])


def test_parents_pivot_and_patterns(ctx: BuildContext) -> None:
    (m,) = ctx.select(["src/sub/z.py"], parents=True)
    assert (m.rel, m.include) == (".", ("src/sub/z.py",))
    (m,) = ctx.select(["src/./sub/z.py"], parents=True)
    assert (m.rel, m.include) == ("src", ("sub/z.py",))
    with pytest.raises(PybuildError, match="not found"):
        ctx.select(["src/./nope.py"], parents=True)
    assert len(ctx.select(["src/**/*.nomatch"], parents=True)) == 1  # patterns may match nothing


def test_walk_with_include_patterns_visits_only_matching_branches(ctx: BuildContext) -> None:
    from pybuild.context import PatternMatcher

    got = [e.sub for e in ctx.walk(".", include=PatternMatcher(["src/**/*.py"]))]
    assert got == ["", "src", "src/sub", "src/sub/z.py", "src/x.py", "src/y.py"]


def test_digest_is_stable_across_mtime_and_changes_with_content_and_mode(ctx: BuildContext) -> None:
    root = ctx.root
    d1 = digest_sources(ctx.select(["."]))
    os.utime(root / "a.txt", (1, 1))
    os.utime(root / "src", (2, 2))
    assert digest_sources(ctx.select(["."])) == d1
    (root / "a.txt").write_text("changed\n")
    d2 = digest_sources(ctx.select(["."]))
    assert d2 != d1
    os.chmod(root / "a.txt", 0o600)
    d3 = digest_sources(ctx.select(["."]))
    assert d3 != d2
    os.unlink(root / "link")
    os.symlink("src", root / "link")
    assert digest_sources(ctx.select(["."])) != d3
    # ignored files never count
    d4 = digest_sources(ctx.select(["."]))
    (root / "docs" / "skip.txt").write_text("whatever")
    assert digest_sources(ctx.select(["."])) == d4
    # --exclude'd files do not count either
    d5 = digest_sources(ctx.select(["src"]), exclude=["sub"])
    (root / "src" / "sub" / "z.py").write_text("new")
    assert digest_sources(ctx.select(["src"]), exclude=["sub"]) == d5
    assert digest_sources(ctx.select(["src"])) != d5


def test_digest_depends_on_destination_name_not_on_source_location(ctx: BuildContext) -> None:
    assert digest_sources(ctx.select(["a.txt"])) != digest_sources(ctx.select(["b.txt"]))
    assert digest_sources(ctx.select(["link"])) != digest_sources(ctx.select(["real"]))  # name differs: link vs real


def test_checksum_cache_avoids_rereading_unchanged_files(ctx: BuildContext) -> None:
    cache = MemoryChecksumCache()
    d1 = digest_sources(ctx.select(["."]), cache=cache)
    first_misses = cache.misses
    assert first_misses > 0 and cache.hits == 0
    assert digest_sources(ctx.select(["."]), cache=cache) == d1
    assert cache.misses == first_misses and cache.hits == first_misses
    (ctx.root / "b.txt").write_text("new content, new size\n")
    d2 = digest_sources(ctx.select(["."]), cache=cache)
    assert d2 != d1 and cache.misses == first_misses + 1
    assert d2 == digest_sources(ctx.select(["."]))  # the cache never changes the answer
