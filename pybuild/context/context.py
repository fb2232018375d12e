"""The source side of COPY/ADD: a directory tree seen through .dockerignore, source selection and content digests.

``BuildContext`` wraps a root directory — the build context, or another stage's / image's rootfs for ``--from`` (then
with no ignore patterns) — and answers what COPY may see: ``walk`` yields the visible entries below a path (ignored
directories are still entered when an ``!`` exception could re-include something, and then appear only if something
below them is visible, as BuildKit's filtered transfer does), ``select`` turns source arguments as written (globs,
symlinks, ``--parents`` pivots) into ``Match`` values. ``digest_sources`` hashes exactly what a copy of those matches
would produce (paths, types, modes, contents, link targets; never mtimes), optionally reusing per-file content
digests from a ``ChecksumCache`` keyed by (dev, inode, size, mtime_ns, ctime_ns) so that an unchanged context is not
re-read.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from pybuild.context.patterns import (
    NO_INFO,
    MatchInfo,
    PatternMatcher,
    contains_wildcards,
    go_clean,
    go_match,
    load_ignore,
    split_wildcards,
)
from pybuild.context.rootfs import resolve_virtual
from pybuild.errors import PybuildError


class Entry(NamedTuple):
    """One visible filesystem entry met while walking.

    A NamedTuple, not a dataclass: a context walk makes one per file, and hashing a 30,000-file context for the
    cache must stay cheap (a frozen dataclass costs several times more to create).
    """

    rel: str  # path relative to the root, symlinks in its directories resolved ("." is the root)
    sub: str  # path relative to where the walk started ("" for the start itself)
    host: str  # the host path
    st: os.stat_result  # lstat result

    @property
    def path(self) -> Path:
        return Path(self.host)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


@dataclass(frozen=True)
class Match:
    """One selected source: what to read (``rel`` in ``context``) and the name it gets at the destination."""

    source: str  # the source argument as written
    rel: str  # resolved path relative to the context root ("." = the root); a dangling symlink stays unresolved
    name: str  # destination name when copied into a directory: the last component as matched, before following
    is_dir: bool
    context: BuildContext = field(compare=False, repr=False)
    include: tuple[str, ...] = ()  # --parents: only paths (relative to rel) matching these patterns are copied


def _join(a: str, b: str) -> str:
    if a in ("", "."):
        return b
    return f"{a}/{b}"


class BuildContext:
    """A source tree for COPY/ADD: the build context (with its .dockerignore) or a stage/image rootfs for --from."""

    def __init__(self, root: Path, ignore: PatternMatcher | None = None, *, is_build_context: bool = True,
                 label: str | None = None) -> None:
        self.root = Path(root)
        self.ignore = ignore if ignore is not None else PatternMatcher()
        self.is_build_context = is_build_context
        self.label = label or ("the build context" if is_build_context else str(root))

    @classmethod
    def from_dir(cls, root: Path, dockerfile: Path | None = None) -> BuildContext:
        """The build context at ``root`` with its ignore file (``<Dockerfile>.dockerignore`` beside the Dockerfile
        taking precedence over ``root/.dockerignore``)."""
        if not root.is_dir():
            raise PybuildError(f"build context {str(root)!r} is not a directory")
        return cls(root, load_ignore(root, dockerfile))

    @classmethod
    def from_rootfs(cls, root: Path, label: str | None = None) -> BuildContext:
        """Another stage's or image's filesystem as a --from source: no ignore file, ownership is meaningful."""
        return cls(root, PatternMatcher(), is_build_context=False, label=label)

    # ---------------------------------------------------------------------------------------------------------------
    # paths

    def host(self, rel: str) -> Path:
        return self.root if rel in ("", ".") else self.root / rel

    def resolve(self, path: str, *, follow_final: bool = True) -> str:
        """Resolve ``path`` (relative to the root; a leading "/" is the root) inside the root; returns a rel path."""
        v = resolve_virtual(self.root, path, follow_final=follow_final)
        return v.lstrip("/") or "."

    def _ignore_chain(self, rel: str) -> tuple[bool, MatchInfo]:
        """Is ``rel`` ignored, and its per-pattern results to hand to its children (computed root-down)?"""
        if rel in ("", ".") or not self.ignore:
            return False, NO_INFO
        ignored, info = False, NO_INFO
        comps = rel.split("/")
        for k in range(1, len(comps) + 1):
            ignored, info = self.ignore.matches_with_parent("/".join(comps[:k]), info)
        return ignored, info

    def is_ignored(self, rel: str) -> bool:
        """True when .dockerignore hides ``rel`` itself (it may still appear as the parent of a re-included path)."""
        return self._ignore_chain(rel)[0]

    def is_visible(self, rel: str) -> bool:
        """Does ``rel`` exist in the context as COPY sees it?"""
        try:
            st = os.lstat(self.host(rel))
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not self.is_ignored(rel):
            return True
        if not stat.S_ISDIR(st.st_mode) or not self.ignore.has_exclusions:
            return False
        return next(iter(self.walk(rel)), None) is not None

    # ---------------------------------------------------------------------------------------------------------------
    # walking

    def walk(self, start: str = ".", *, exclude: PatternMatcher | None = None, include: PatternMatcher | None = None,
             prune: Callable[[Entry], bool] | None = None) -> Iterator[Entry]:
        """Yield the visible entries at and below the resolved path ``start``, parents before children, names sorted.

        ``exclude`` (COPY --exclude) and ``include`` (--parents) patterns match paths relative to ``start``; like
        .dockerignore they hide entries, and a directory that is hidden but has visible entries below is yielded just
        before the first of them. ``prune(entry)`` returning True stops the walk from entering that directory.
        """
        start = go_clean(start) if start not in ("", ".") else "."
        path = self.host(start)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        ignored, ign_info = self._ignore_chain(start)
        entry = Entry(start, "", str(path), st)
        pending: list[Entry] = []
        if not ignored:
            yield entry
            if not entry.is_dir or (prune is not None and prune(entry)):
                return
        elif not entry.is_dir or not self._may_reinclude(start):
            return
        else:
            pending.append(entry)
        yield from self._walk_dir(entry, ign_info, NO_INFO, NO_INFO, pending, exclude, include, prune)

    def _may_reinclude(self, rel: str) -> bool:
        """Could an ``!`` exception re-include something below the ignored directory ``rel``?"""
        return self.ignore.has_exclusions and self.ignore.could_match_below(rel, exceptions=True)

    def _walk_dir(self, parent: Entry, ign_info: MatchInfo, exc_info: MatchInfo, inc_info: MatchInfo,
                  pending: list[Entry], exclude: PatternMatcher | None, include: PatternMatcher | None,
                  prune: Callable[[Entry], bool] | None) -> Iterator[Entry]:
        try:
            with os.scandir(parent.host) as it:
                dirents = sorted(it, key=lambda d: d.name)
        except OSError as e:
            raise PybuildError(f"cannot read directory {parent.rel!r} in {self.label}: {e.strerror}") from None
        for de in dirents:
            rel = _join(parent.rel, de.name)
            sub = _join(parent.sub, de.name)
            st = de.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            selected, descend = True, is_dir
            c_ign, c_exc, c_inc = NO_INFO, NO_INFO, NO_INFO
            if self.ignore:
                hit, c_ign = self.ignore.matches_with_parent(rel, ign_info)
                if hit:
                    selected = False
                    descend = descend and self._may_reinclude(rel)
            if exclude:
                hit, c_exc = exclude.matches_with_parent(sub, exc_info)
                if hit:
                    selected = False
                    descend = descend and exclude.has_exclusions
            if include:
                hit, c_inc = include.matches_with_parent(sub, inc_info)
                if not hit:
                    selected = False
                    descend = descend and include.could_match_below(sub)
            entry = Entry(rel, sub, de.path, st)
            if selected:
                if pending:
                    yield from pending
                    pending.clear()
                yield entry
                if descend and prune is not None and prune(entry):
                    descend = False
            if descend:
                if not selected:
                    pending.append(entry)
                yield from self._walk_dir(entry, c_ign, c_exc, c_inc, pending, exclude, include, prune)
                if not selected and pending and pending[-1] is entry:
                    pending.pop()

    # ---------------------------------------------------------------------------------------------------------------
    # selecting sources

    def _clean_source(self, source: str) -> str:
        """The source as a clean path relative to the root; a build-context source may not climb out of it."""
        if self.is_build_context:
            cleaned = go_clean(source)
            if cleaned == ".." or cleaned.startswith("../"):
                raise PybuildError(f"source {source!r} is outside the build context",
                                   hint="COPY/ADD can only read files inside the context directory; move the file "
                                        "into it or pass a larger context")
        return go_clean("/" + source).lstrip("/") or "."

    def _not_found(self, source: str, path: str) -> PybuildError:
        hint = None
        lexical = self.host(path)
        if self.ignore and os.path.lexists(lexical) and self.is_ignored(path):
            hint = f"{path!r} is excluded by .dockerignore"
        elif os.path.islink(lexical):
            hint = (f"{path!r} is a symlink to {os.readlink(lexical)!r}, which is resolved inside {self.label} "
                    "and does not exist there")
        elif self.is_build_context:
            hint = "source paths are relative to the root of the build context"
        return PybuildError(f"source {source!r} not found in {self.label}", hint=hint)

    def select(self, sources: Sequence[str], *, parents: bool = False) -> list[Match]:
        """Turn source arguments as written into matches, in order.

        A literal path must exist (else an error naming it); a glob (Go filepath.Match, ``*`` not crossing ``/``)
        may match nothing, as in BuildKit. Symlinks are resolved inside the root, the matched path itself included.
        With ``parents`` (COPY --parents) each source becomes an include pattern below its ``/./`` pivot (or the
        root), and the returned match is the pivot directory.
        """
        out: list[Match] = []
        for source in sources:
            if parents:
                out.extend(self._select_parents(source))
                continue
            path = self._clean_source(source)
            if contains_wildcards(path):
                out.extend(self._select_glob(source, path))
                continue
            rel = self.resolve(path)
            link_rel = self.resolve(path, follow_final=False)
            if not self.is_visible(rel) or (link_rel != rel and not self.is_visible(link_rel)):
                raise self._not_found(source, path)
            name = "" if path == "." else path.rsplit("/", 1)[-1]
            out.append(Match(source, rel, name, os.path.isdir(self.host(rel)), context=self))
        return out

    def _select_glob(self, source: str, path: str) -> list[Match]:
        base, pattern = split_wildcards(path)
        base_rel = self.resolve(base or ".")
        if not os.path.isdir(self.host(base_rel)):
            return []
        depth = pattern.count("/") + 1
        out: list[Match] = []

        def prune(e: Entry) -> bool:
            return e.sub != "" and (e.sub.count("/") + 1 >= depth or go_match(pattern, e.sub))

        for e in self.walk(base_rel, prune=prune):
            if e.sub == "" or e.sub.count("/") + 1 != depth or not go_match(pattern, e.sub):
                continue
            rel = e.rel
            if stat.S_ISLNK(e.st.st_mode):
                target = self.resolve(e.rel)
                if os.path.lexists(self.host(target)):
                    if not self.is_visible(target):
                        continue
                    rel = target
                # a dangling link matched by a glob is copied as the link itself
            out.append(Match(source, rel, e.sub.rsplit("/", 1)[-1], os.path.isdir(self.host(rel)), context=self))
        return out

    def _select_parents(self, source: str) -> list[Match]:
        pivot, sep, pattern = source.partition("/./")
        if not sep:
            pivot, pattern = "/", source
        pattern = go_clean("/" + pattern).lstrip("/")
        if pattern in ("", "."):
            pattern = "**"
        bases = self.select([pivot]) if (contains_wildcards(pivot) or pivot != "/") else \
            [Match(source, ".", "", True, context=self)]
        out: list[Match] = []
        for b in bases:
            if not b.is_dir:
                raise PybuildError(f"--parents source {source!r}: {pivot!r} is not a directory")
            if not contains_wildcards(pattern):
                required = self.resolve(_join(b.rel, pattern))
                if not self.is_visible(required):
                    raise self._not_found(source, _join(b.rel, pattern))
            out.append(Match(source, b.rel, b.name, True, include=(pattern,), context=self))
        return out


# ---------------------------------------------------------------------------------------------------------------------
# digests


class FileKey(NamedTuple):
    """What identifies one version of a file on disk without reading it."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileKey:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class ChecksumCache(Protocol):
    """Remembers content digests of files by FileKey (the store provides a persistent one)."""

    def get(self, key: FileKey) -> str | None: ...

    def put(self, key: FileKey, digest: str) -> None: ...


class MemoryChecksumCache:
    """A ChecksumCache in a dict, for one process."""

    def __init__(self) -> None:
        self._data: dict[FileKey, str] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: FileKey) -> str | None:
        d = self._data.get(key)
        if d is None:
            self.misses += 1
        else:
            self.hits += 1
        return d

    def put(self, key: FileKey, digest: str) -> None:
        self._data[key] = digest


def file_digest(path: Path | str, st: os.stat_result | None = None, cache: ChecksumCache | None = None) -> str:
    """sha256 of a regular file's content, through ``cache`` when given."""
    if st is None:
        st = os.lstat(path)
    key = FileKey.of(st)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    with open(path, "rb") as f:
        digest = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    if cache is not None:
        cache.put(key, digest)
    return digest


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISFIFO(mode):
        return "p"
    if stat.S_ISCHR(mode):
        return "c"
    if stat.S_ISBLK(mode):
        return "b"
    return "s"


def excluded_at_top(m: Match, exclude: PatternMatcher) -> bool:
    """Is a matched *file* itself removed by --exclude? BuildKit matches --exclude only below a directory source;
    we also apply it to a top-level file by its name, as the Dockerfile reference's ``--exclude=*.txt hom*``
    example promises. A directory source is never dropped whole (its contents are filtered instead)."""
    return not m.is_dir and not m.include and bool(m.name) and exclude.matches(m.name)


def source_entries(matches: Sequence[Match], *, exclude: Sequence[str] = (), cache: ChecksumCache | None = None,
                   include_owner: bool = False) -> Iterator[tuple[str, str]]:
    """What a copy of ``matches`` would read, one record per entry: (path as the user would name it, record).

    Records hold each match's destination name, then every visible entry below it (relative path, type, permission
    bits, file content digest, link target, device numbers; owners only with ``include_owner``, for --from sources
    whose ownership is preserved). Mtimes never count. The cache layer keeps these per path to say which file made a
    step miss.
    """
    excl = PatternMatcher(list(exclude)) if exclude else None
    for m in matches:
        if excl is not None and excluded_at_top(m, excl):
            continue
        ctx = m.context
        head = f"match\0{m.name}\0{'d' if m.is_dir else '-'}\0{len(m.include)}\0" + "".join(
            p + "\0" for p in m.include)
        yield m.source, head
        inc = PatternMatcher(list(m.include)) if m.include else None
        for e in ctx.walk(m.rel, exclude=excl if m.is_dir else None, include=inc):
            mode = e.st.st_mode
            kind = _kind(mode)
            if e.sub == "" and kind == "d":
                yield m.source + "/", "root\0"  # the top directory's own metadata is never copied
                continue
            if kind == "f":
                payload = file_digest(e.host, e.st, cache)
            elif kind == "l":
                payload = os.readlink(e.host)
            elif kind in "cb":
                payload = f"{os.major(e.st.st_rdev)},{os.minor(e.st.st_rdev)}"
            else:
                payload = ""
            owner = f"{e.st.st_uid}:{e.st.st_gid}" if include_owner else ""
            name = _join(m.rel, e.sub) if e.sub else m.rel
            yield name, f"{e.sub}\0{kind}\0{stat.S_IMODE(mode):o}\0{owner}\0{payload}\n"


def digest_sources(matches: Sequence[Match], *, exclude: Sequence[str] = (), cache: ChecksumCache | None = None,
                   include_owner: bool = False) -> str:
    """One "sha256:..." over everything a copy of ``matches`` would read (see :func:`source_entries`)."""
    h = hashlib.sha256()
    for _, record in source_entries(matches, exclude=exclude, cache=cache, include_owner=include_owner):
        h.update(record.encode("utf-8", "surrogateescape"))
    return "sha256:" + h.hexdigest()
