"""The build cache index inside the store: step records, context file checksums, listing and pruning.

A record says: the step whose cache key is `key` produced the layer stack `chain_id` and the image config
`config`. It also keeps the step's named inputs (zlib-compressed JSON) so a later miss can say what changed,
and its `position` (which Dockerfile, stage and step) so that the latest record for the same place is found.
Layers a record needs are pinned under the owner "cache", so `gc` keeps them until the record is pruned;
nothing a named image needs is ever removed by a cache prune (gc computes reachability from images too).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybuild.context.context import FileKey

if TYPE_CHECKING:
    from pybuild.store.store import PruneReport, Store

PIN_OWNER = "cache"

# A file changed less than this long ago may change again without its (size, mtime, ctime) changing: timestamps
# come from a coarse clock (a jiffy on Linux; whole seconds on ext2/ext3/HFS+, two on FAT). Such a digest is used
# for the build that computed it but never saved, or a later write in the same tick would be served a stale digest
# (git's "racily clean" problem).
RACY_WINDOW_NS = 2_000_000_000


@dataclass(frozen=True)
class CacheRecord:
    key: str
    position: str
    instruction: str
    chain_id: str | None
    config: bytes
    inputs: dict[str, Any]
    size: int = 0
    created: float = 0.0
    last_used: float = 0.0


class CacheIndex:
    """Records of executed steps, in the store's SQLite database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store._db  # the cache is part of the store: same database, same transactions

    def lookup(self, key: str) -> CacheRecord | None:
        """The record for key whose layers are still in the store (touching its last-used time), or None.

        The record's layers join the Store's current lease in the same transaction, so a `cache prune` running
        meanwhile cannot take them from the build that is about to stack on them.
        """
        with self.store._tx():
            row = self.db.execute(
                "SELECT key, position, instruction, chain_id, config, inputs, size, created, last_used FROM cache "
                "WHERE key=?", (key,)).fetchone()
            if row is None:
                return None
            rec = _record(row)
            if rec.chain_id is not None:
                if not self.store.has_layer(rec.chain_id):
                    self.delete([key])  # its layers were removed behind the cache's back (store gc --all, damage)
                    return None
                self.store._pin_new("layer", rec.chain_id)
            self.db.execute("UPDATE cache SET last_used=? WHERE key=?", (time.time(), key))
        return rec

    def latest(self, position: str, instruction: str) -> CacheRecord | None:
        """The newest record for the same place in the same Dockerfile, else for the same instruction text."""
        cols = "key, position, instruction, chain_id, config, inputs, size, created, last_used"
        row = self.db.execute(f"SELECT {cols} FROM cache WHERE position=? ORDER BY created DESC LIMIT 1",
                              (position,)).fetchone()
        if row is None:
            row = self.db.execute(f"SELECT {cols} FROM cache WHERE instruction=? ORDER BY created DESC LIMIT 1",
                                  (instruction,)).fetchone()
        return _record(row) if row is not None else None

    def put(self, rec: CacheRecord) -> None:
        now = time.time()
        inputs = zlib.compress(json.dumps(rec.inputs, sort_keys=True).encode(), 6)
        with self.store._tx():
            self.db.execute(
                "INSERT OR REPLACE INTO cache(key, position, instruction, chain_id, config, inputs, size, created, "
                "last_used) VALUES (?,?,?,?,?,?,?,?,?)",
                (rec.key, rec.position, rec.instruction, rec.chain_id, rec.config, inputs, rec.size, now, now))
            if rec.chain_id is not None:
                self.store.pin(PIN_OWNER, layers=[rec.chain_id])

    def records(self) -> list[CacheRecord]:
        rows = self.db.execute(
            "SELECT key, position, instruction, chain_id, config, inputs, size, created, last_used FROM cache "
            "ORDER BY last_used DESC").fetchall()
        return [_record(r) for r in rows]

    def delete(self, keys: Iterable[str]) -> None:
        """Drop records, and the pins of layer stacks no remaining record uses."""
        keys = list(keys)
        with self.store._tx():
            for k in keys:
                self.db.execute("DELETE FROM cache WHERE key=?", (k,))
            still = {c for (c,) in self.db.execute("SELECT DISTINCT chain_id FROM cache WHERE chain_id IS NOT NULL")}
            pinned = {d for (d,) in self.db.execute(
                "SELECT digest FROM pins WHERE owner=? AND kind='layer'", (PIN_OWNER,))}
            gone = pinned - still
            if gone:  # in the same transaction: a record put meanwhile keeps its pin
                self.store.unpin(PIN_OWNER, layers=gone)

    def prune(self, *, everything: bool = False, keep_storage: int | None = None,
              older_than: float | None = None) -> tuple[int, PruneReport]:
        """Remove records least recently used first, then collect garbage. Returns (records removed, gc report).

        everything: all records; keep_storage: keep the most recently used records whose layers add up to at
        most this many bytes; older_than: only records not used for this many seconds. With no option, records
        unused for 48 hours go (like `docker builder prune`'s default of dangling cache).
        """
        recs = self.records()  # most recently used first
        now = time.time()
        if everything:
            doomed = [r.key for r in recs]
        elif keep_storage is not None:
            kept = 0
            doomed = []
            # A record's size is the layer it added on top of chain_id (0 when it added none); records that
            # produced the same layer share its bytes, so they count once.
            counted: set[str] = set()
            for r in recs:
                cost = r.size if r.size and r.chain_id not in counted else 0
                young = older_than is not None and now - r.last_used < older_than
                if young or kept + cost <= keep_storage:
                    kept += cost
                    if r.size and r.chain_id is not None:
                        counted.add(r.chain_id)
                else:
                    doomed.append(r.key)
        else:
            limit = older_than if older_than is not None else 48 * 3600
            doomed = [r.key for r in recs if now - r.last_used >= limit]
        self.delete(doomed)
        return len(doomed), self.store.gc()


class FileChecksums:
    """A persistent ChecksumCache for build-context files: read once per build, new entries written at the end."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._data: dict[FileKey, str] | None = None
        self._new: dict[FileKey, str] = {}

    def _load(self) -> dict[FileKey, str]:
        if self._data is None:
            rows = self.store._db.execute(
                "SELECT dev, ino, size, mtime_ns, ctime_ns, digest FROM file_checksums").fetchall()
            # A FileKey is a NamedTuple: plain tuples of its fields hash and compare equal, and build faster.
            self._data = {(r[0], r[1], r[2], r[3], r[4]): r[5] for r in rows}  # type: ignore[misc]
        return self._data

    def get(self, key: FileKey) -> str | None:
        return self._load().get(key)

    def put(self, key: FileKey, digest: str) -> None:
        self._load()[key] = digest
        if key.ctime_ns < time.time_ns() - RACY_WINDOW_NS:
            self._new[key] = digest

    def flush(self) -> None:
        if not self._new:
            return
        now = time.time()
        with self.store._tx():
            # One row per inode: older versions of a file that changed can never match again.
            self.store._db.executemany("DELETE FROM file_checksums WHERE dev=? AND ino=?",
                                       [(k.dev, k.ino) for k in self._new])
            self.store._db.executemany(
                "INSERT OR REPLACE INTO file_checksums(dev, ino, size, mtime_ns, ctime_ns, digest, used) "
                "VALUES (?,?,?,?,?,?,?)", [(*k, d, now) for k, d in self._new.items()])
        self._new.clear()


def _record(row: Any) -> CacheRecord:
    return CacheRecord(key=row[0], position=row[1], instruction=row[2], chain_id=row[3], config=bytes(row[4]),
                       inputs=json.loads(zlib.decompress(row[5])), size=row[6], created=row[7], last_used=row[8])
