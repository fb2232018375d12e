"""The build context: .dockerignore patterns, source selection and digests, and chroot-style rootfs look-ups."""

from pybuild.context.context import (
    BuildContext,
    ChecksumCache,
    Entry,
    FileKey,
    Match,
    MemoryChecksumCache,
    digest_sources,
    file_digest,
)
from pybuild.context.patterns import (
    BadPatternError,
    PatternMatcher,
    find_ignore_file,
    go_clean,
    go_match,
    load_ignore,
    read_ignore_file,
)
from pybuild.context.rootfs import mkdir_all, resolve_chown, resolve_in_root, resolve_user, resolve_virtual

__all__ = [
    "BadPatternError",
    "BuildContext",
    "ChecksumCache",
    "Entry",
    "FileKey",
    "Match",
    "MemoryChecksumCache",
    "PatternMatcher",
    "digest_sources",
    "file_digest",
    "find_ignore_file",
    "go_clean",
    "go_match",
    "load_ignore",
    "mkdir_all",
    "read_ignore_file",
    "resolve_chown",
    "resolve_in_root",
    "resolve_user",
    "resolve_virtual",
]
