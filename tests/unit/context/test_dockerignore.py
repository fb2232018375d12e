"""`.dockerignore` semantics: pattern vectors (Docker's patternmatcher rules), file parsing, and what a walk of a
real context directory shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuild.context import BuildContext, PatternMatcher, find_ignore_file, go_clean, go_match, read_ignore_file
from pybuild.context.patterns import BadPatternError, contains_wildcards, split_wildcards
from pybuild.errors import PybuildError

# (patterns, path, ignored?) — a path is ignored when the last pattern matching it (or a parent dir) is not "!"
VECTORS: list[tuple[list[str], str, bool]] = [
    (["*"], "file.go", True),
    (["*"], "dir/file.go", True),  # "*" matches the top dir, so everything below it
    (["*.go"], "file.go", True),
    (["*.go"], "dir/file.go", False),  # "*" never crosses "/"
    (["**/*.go"], "dir/file.go", True),
    (["**/*.go"], "file.go", True),  # "**" matches zero directories too
    (["**/*.go"], "a/b/c/file.go", True),
    (["**"], "anything/at/all", True),
    (["**/"], "dir/file", True),
    (["**/**"], "dir/file", True),
    (["dir/**"], "dir/file", True),
    (["dir/**"], "dir/a/b", True),
    (["dir/**"], "dir", False),  # "dir/**" needs something below dir
    (["**/dir"], "dir", True),
    (["**/dir"], "x/y/dir/file", True),
    (["**/dir2/*"], "dir/dir2/file", True),
    (["**/dir2/**"], "dir/dir2/dir3/file", True),
    (["**file"], "dir/dir/file", True),
    (["**file"], "dir/myfile", True),
    (["**/file"], "dir/myfile", False),
    (["**/file*.txt"], "dir/dir/file.txt", True),
    (["**/**/*.txt2"], "dir/dir/file.txt", False),
    (["a**/*.txt"], "a/dir/dir/file.txt", True),
    (["a/*.txt"], "a/dir/file.txt", False),
    (["a/*.txt"], "a/file.txt", True),
    (["a[b-d]e"], "ace", True),
    (["a[b-d]e"], "aae", False),
    (["a[^b-d]e"], "aze", True),
    (["abc?def"], "abcZdef", True),
    (["abc?def"], "abcdef", False),
    (["abc.def"], "abcZdef", False),  # "." is literal
    ([".*"], ".git", True),
    ([".*"], "git", False),
    (["**/.foo"], "bar.foo", False),
    (["a(b)c/def"], "a(b)c/def", True),
    (["a.|)$(}+{bc"], "a.|)$(}+{bc", True),
    (["a\\*b"], "a*b", True),
    (["a\\*b"], "axb", False),
    (["dist/*.whl"], "dist/pkg-1.0+local-py3-none-any.whl", True),
    # exceptions: last match wins
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["!README.md", "*.md"], "README.md", True),  # a later pattern overrides the exception
    (["*.md", "!README.md", "README.md"], "README.md", True),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs", "!docs/README.md"], "docs/other.md", True),
    (["docs/", "!docs/README.md"], "docs/README.md", False),  # trailing slash cleaned away
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["**", "!keep/this"], "keep/this/file", False),  # an exception on a dir re-includes what is below it
    (["**", "!keep/this", "keep/this/file"], "keep/this/file", True),
    (["**", "!dist/*.whl"], "dist/x.whl", False),
    # cleaning
    (["./a/../b"], "b", True),
    (["a//b/"], "a/b/c", True),
    (["  spaced  "], "spaced", True),
    ([], "anything", False),
    (["*"], ".", False),  # the context root itself is never excluded
]


@pytest.mark.parametrize(("patterns", "path", "expected"), VECTORS)
def test_pattern_vectors(patterns: list[str], path: str, expected: bool) -> None:
    pm = PatternMatcher(patterns)
    assert pm.matches(path) is expected
    # walking root-down with per-pattern parent results gives the same answer as checking parents directly
    comps = path.split("/")
    info: tuple[bool, ...] = ()
    hit = False
    for k in range(1, len(comps) + 1):
        hit, info = pm.matches_with_parent("/".join(comps[:k]), info)
    if path != ".":
        assert hit is expected


def test_bad_patterns_are_rejected_with_a_clear_error() -> None:
    for bad in ["[", "a[", "[^", "[]a]", "[-x]", "[x-]", "[a-b-c]", "\\"]:
        with pytest.raises(BadPatternError):
            PatternMatcher([bad])
    with pytest.raises(BadPatternError, match='illegal exclusion pattern: "!"'):
        PatternMatcher(["!"])


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "ab/c", False),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[^c]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a?b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("[a-ζ]*", "α", True),
    ("a?b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[x\\-]", "-", True),
    ("[\\-x]", "a", False),
    ("arr[[]0].txt", "arr[0].txt", True),
    ("**", "a/b", False),  # in COPY sources "**" is just two stars
    ("*x", "xxx", True),
    ("[z-a]", "m", False),  # a reversed range is valid and matches nothing
])
def test_go_filepath_match(pattern: str, name: str, expected: bool) -> None:
    assert go_match(pattern, name) is expected


def test_go_clean_and_wildcard_helpers() -> None:
    assert go_clean("") == "."
    assert go_clean("a/./b/../c/") == "a/c"
    assert go_clean("/../x") == "/x"
    assert go_clean("../../x") == "../../x"
    assert go_clean("//a//b") == "/a/b"
    assert contains_wildcards("a/*.txt") and contains_wildcards("x?") and contains_wildcards("[ab]")
    assert not contains_wildcards("a\\*b") and not contains_wildcards("plain/path")
    assert split_wildcards("/src/lib/*/x.txt") == ("/src/lib", "*/x.txt")
    assert split_wildcards("*.txt") == ("", "*.txt")
    assert split_wildcards("a/b") == ("a/b", "")


def test_read_ignore_file_rules() -> None:
    text = (
        "\ufeff# comment\n"
        "\n"
        "   \n"
        "/leading/slash\n"
        "trailing/slash/\n"
        "  spaced  \n"
        " # not a comment (the # is not in column one)\n"
        "!  /negated/and/spaced  \n"
        "a/./b/../c\n"
        "crlf\r\n"
        "/\n"
    )
    assert read_ignore_file(text) == [
        "leading/slash", "trailing/slash", "spaced", "# not a comment (the # is not in column one)",
        "!negated/and/spaced", "a/c", "crlf", "/",
    ]


def _tree(root: Path, files: list[str], ignore: str | None = None) -> BuildContext:
    for f in files:
        p = root / f
        if f.endswith("/"):
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f)
    if ignore is not None:
        (root / ".dockerignore").write_text(ignore)
    return BuildContext.from_dir(root)


def _visible(ctx: BuildContext) -> list[str]:
    return [e.rel for e in ctx.walk() if e.rel != "."]


def test_walk_hides_ignored_files_and_directories(tmp_path: Path) -> None:
    ctx = _tree(tmp_path, ["a.txt", "b.log", "src/main.py", "src/x.log", "node_modules/m/index.js", "empty/"],
                "*.log\nnode_modules\n**/*.log\n")
    assert _visible(ctx) == [".dockerignore", "a.txt", "empty", "src", "src/main.py"]


def test_walk_reincludes_below_an_ignored_directory(tmp_path: Path) -> None:
    ctx = _tree(tmp_path, ["docs/README.md", "docs/guide/intro.md", "docs/other.txt", "keep.txt"],
                "docs\n!docs/guide/intro.md\n")
    # the ignored parents appear (just before their first visible child) because something below is re-included
    assert _visible(ctx) == [".dockerignore", "docs", "docs/guide", "docs/guide/intro.md", "keep.txt"]
    assert ctx.is_ignored("docs") and ctx.is_visible("docs") and not ctx.is_visible("docs/other.txt")


def test_walk_ignored_directory_with_no_reincluded_child_vanishes(tmp_path: Path) -> None:
    ctx = _tree(tmp_path, ["build/out.o", "build/sub/x.o", "src/a.c"], "build\n!src/*.c\n")
    assert _visible(ctx) == [".dockerignore", "src", "src/a.c"]
    assert not ctx.is_visible("build")


def test_exception_then_reexclusion_ordering(tmp_path: Path) -> None:
    ctx = _tree(tmp_path, ["a/x.txt", "a/y.txt", "a/z.md"], "a\n!a/*.txt\na/y.txt\n")
    assert _visible(ctx) == [".dockerignore", "a", "a/x.txt"]


def test_everything_ignored_except(tmp_path: Path) -> None:
    ctx = _tree(tmp_path, ["app/main.go", "app/vendor/v.go", "README", "secret.key"], "*\n!app\napp/vendor\n")
    assert _visible(ctx) == ["app", "app/main.go"]


def test_leading_and_trailing_slashes_in_ignore_file(tmp_path: Path) -> None:
    ctx = _tree(tmp_path, ["tmp/a", "sub/tmp/b", "out/c"], "/tmp\nout/\n")
    assert _visible(ctx) == [".dockerignore", "sub", "sub/tmp", "sub/tmp/b"]


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    ctx_dir = tmp_path / "ctx"
    _tree(ctx_dir, ["a.txt", "b.txt"], "a.txt\n")
    df_dir = tmp_path / "df"
    df_dir.mkdir()
    dockerfile = df_dir / "app.Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    assert find_ignore_file(ctx_dir, dockerfile) == ctx_dir / ".dockerignore"
    (df_dir / "app.Dockerfile.dockerignore").write_text("b.txt\n")
    assert find_ignore_file(ctx_dir, dockerfile) == df_dir / "app.Dockerfile.dockerignore"
    ctx = BuildContext.from_dir(ctx_dir, dockerfile)
    assert _visible(ctx) == [".dockerignore", "a.txt"]


def test_malformed_ignore_file_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("ok\n[broken\n")
    with pytest.raises(PybuildError, match=r"\.dockerignore: invalid pattern '\[broken'"):
        BuildContext.from_dir(tmp_path)
