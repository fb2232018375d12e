"""The store's SQLite metadata database (``<root>/pybuild.db``): schema, migrations and transactions.

WAL mode so readers never block the one writer; every write runs in ``BEGIN IMMEDIATE`` so concurrent
pybuild processes queue on the write lock (with a generous busy timeout) instead of failing half-way.
The schema is versioned with ``PRAGMA user_version``; a store written by a newer pybuild is refused.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from pybuild.errors import PybuildError

SCHEMA_VERSION = 2

# Content-addressed facts (blobs, layers) plus the names and pins that keep them alive. Nothing keeps a
# reference count: gc computes reachability from images and pins, which cannot drift out of step.
_SCHEMA_V1 = """
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    media_type  TEXT NOT NULL,
    added       REAL NOT NULL
);
CREATE TABLE layers (
    chain_id      TEXT PRIMARY KEY,
    diff_id       TEXT NOT NULL,
    parent        TEXT,
    link_id       TEXT NOT NULL UNIQUE,
    unpacked      INTEGER NOT NULL DEFAULT 0,
    unpacked_size INTEGER,
    added         REAL NOT NULL
);
CREATE INDEX layers_parent ON layers(parent);
-- The compressed blobs known to hold a layer's diff (one per compression it was seen in).
CREATE TABLE layer_blobs (
    chain_id    TEXT NOT NULL,
    blob_digest TEXT NOT NULL,
    PRIMARY KEY (chain_id, blob_digest)
);
CREATE INDEX layer_blobs_blob ON layer_blobs(blob_digest);
CREATE TABLE images (
    manifest_digest TEXT PRIMARY KEY,
    media_type      TEXT NOT NULL,
    size            INTEGER NOT NULL,
    config_digest   TEXT NOT NULL,
    top_chain_id    TEXT,
    added           REAL NOT NULL
);
CREATE INDEX images_config ON images(config_digest);
-- Every blob an image's manifest points at (config and layers).
CREATE TABLE image_blobs (
    manifest_digest TEXT NOT NULL,
    blob_digest     TEXT NOT NULL,
    PRIMARY KEY (manifest_digest, blob_digest)
);
CREATE TABLE names (
    name            TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    added           REAL NOT NULL
);
CREATE INDEX names_manifest ON names(manifest_digest);
-- GC roots other than images: leases of running builds, the build cache. kind is 'blob' or 'layer'.
CREATE TABLE pins (
    owner  TEXT NOT NULL,
    kind   TEXT NOT NULL,
    digest TEXT NOT NULL,
    added  REAL NOT NULL,
    PRIMARY KEY (owner, kind, digest)
);
"""

# The build cache: one record per executed step, keyed by the step's cache key (see executor/cachekey.py), and
# the content digests of build-context files by what identifies a file version without reading it.
_SCHEMA_V2 = """
CREATE TABLE cache (
    key         TEXT PRIMARY KEY,
    position    TEXT NOT NULL,
    instruction TEXT NOT NULL,
    chain_id    TEXT,
    config      BLOB NOT NULL,
    inputs      BLOB NOT NULL,
    size        INTEGER NOT NULL DEFAULT 0,
    created     REAL NOT NULL,
    last_used   REAL NOT NULL
);
CREATE INDEX cache_position ON cache(position, created);
CREATE INDEX cache_instruction ON cache(instruction, created);
CREATE TABLE file_checksums (
    dev      INTEGER NOT NULL,
    ino      INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    used     REAL NOT NULL,
    PRIMARY KEY (dev, ino, size, mtime_ns, ctime_ns)
) WITHOUT ROWID;
"""

_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1, 2: _SCHEMA_V2}


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating and migrating) the database at path."""
    conn = sqlite3.connect(path, timeout=120, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 120000")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise PybuildError(f"cannot put the store database {path} in WAL mode (got {mode})")
    # Blob files are fsynced before the rows that point at them, so NORMAL can lose only the newest rows
    # on power loss (leaving orphans for gc), never make a row point at missing content.
    conn.execute("PRAGMA synchronous = NORMAL")
    _migrate(conn, path)
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise PybuildError(
                f"the store at {path.parent} was written by a newer pybuild (schema {version}, "
                f"this pybuild knows {SCHEMA_VERSION})",
                hint="upgrade pybuild or use another --root",
            )
        while version < SCHEMA_VERSION:
            version += 1
            for stmt in _MIGRATIONS[version].split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {version}")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction (BEGIN IMMEDIATE); nested use joins the outer one."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
