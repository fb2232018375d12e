"""The local content store: the ONLY code that writes under the store root.

Layout of ``<root>``::

    oci-layout, index.json, blobs/sha256/<hex>   an OCI image layout; image names are ref.name annotations,
                                                 so ``skopeo inspect oci:<root>:busybox:latest`` works
    pybuild.db                                   SQLite metadata (see db.py)
    layers/<chain-hex>/diff                      unpacked layers, usable as overlay lowerdirs (overlay whiteouts)
    l/<LINKID>                                   short symlinks to ../layers/<chain-hex>/diff so a deep
                                                 ``lowerdir=l/A:l/B:...`` fits in one page
    tmp/                                         temp files, unpack and scratch dirs (same filesystem)
    lock                                         flock: shared for writers, exclusive for gc

Everything appears by rename of a complete, verified object; metadata rows are written after the content
they describe and removed before it, so a crash at any point leaves at worst unreferenced debris that
``gc`` sweeps. Several processes may share a store: SQLite transactions order metadata changes, the
``lock`` file keeps gc away from writers, and content-addressing makes concurrent identical writes
harmless (the second rename loses and is discarded).

Nothing here keeps reference counts: gc computes what images and pins (leases of running builds, the
build cache) reach. A build should hold a :meth:`Store.lease` so layers it committed but has not yet put
in an image survive a concurrent ``pybuild prune``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from pybuild.errors import PybuildError
from pybuild.hashing import HashingReader
from pybuild.model.oci import (
    ANNOTATION_REF_NAME,
    MT_DOCKER_CONFIG,
    MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_MANIFEST,
    MT_OCI_CONFIG,
    MT_OCI_INDEX,
    MT_OCI_LAYER,
    MT_OCI_LAYER_GZIP,
    MT_OCI_LAYOUT_VERSION,
    MT_OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    canonical_json,
    chain_id,
    chain_ids,
    check_digest,
    digest_hex,
    is_digest,
    sha256_digest,
    sniff_media_type,
)
from pybuild.model.reference import Reference, parse_reference
from pybuild.store import db as dbmod
from pybuild.store.fsutil import (
    FileLock,
    Owner,
    atomic_create,
    atomic_write,
    clean_stale_temp,
    dir_size,
    fsync_dir,
    owner_alive,
    remove_tree,
    rename_noreplace,
)

if TYPE_CHECKING:
    from pybuild.layer import Compression
    from pybuild.store.cache import CacheIndex, FileChecksums

OCTET_STREAM = "application/octet-stream"
_CHUNK = 1 << 20
LINK_ID_LEN = 12  # base32: 60 bits; "l/XXXXXXXXXXXX:" is 15 bytes, so 150 layers take 2250 of a 4096 page
_UNCOMPRESSED_LAYER_TYPES = frozenset({MT_OCI_LAYER, "application/vnd.docker.image.rootfs.diff.tar"})


# --- public data types -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One layer of a stack as the store knows it.

    chain_id identifies the layer together with everything below it (OCI ChainID); diff_id is the digest
    of its uncompressed tar; blob is the compressed blob this handle refers to (a chain may be known in
    several compressions); path is ``<root>/layers/<hex>/diff`` once unpacked, else None.
    """

    chain_id: str
    diff_id: str
    parent: str | None
    blob: Descriptor | None
    link_id: str
    path: Path | None = None
    unpacked_size: int | None = None

    @property
    def unpacked(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class Image:
    """A stored image: a manifest, its parsed config and the names pointing at it. id is the config digest."""

    id: str
    descriptor: Descriptor  # of the manifest: media type, digest, size
    manifest: Manifest
    config: ImageConfig
    config_bytes: bytes = field(repr=False)
    names: tuple[str, ...] = ()
    chain_ids: tuple[str, ...] = ()
    added: float = 0.0  # when it entered this store (unix time)

    @property
    def manifest_digest(self) -> str:
        return self.descriptor.digest

    @property
    def short_id(self) -> str:
        """12 hex digits of the ID, as ``docker images`` shows."""
        return digest_hex(self.id)[:12]

    @property
    def top_chain_id(self) -> str | None:
        return self.chain_ids[-1] if self.chain_ids else None

    @property
    def size(self) -> int:
        """Bytes of the blobs it consists of (compressed layers + config)."""
        return self.manifest.config.size + sum(x.size for x in self.manifest.layers)


@dataclass(frozen=True)
class Problem:
    """One piece of damage found by :meth:`Store.verify`."""

    kind: str  # corrupt-blob, missing-blob, missing-layer-dir, missing-layer, broken-link, stale-index, ...
    subject: str  # the digest, chain id, name or path concerned
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}: {self.message}"


@dataclass(frozen=True)
class PruneReport:
    """What gc/prune removed."""

    images: tuple[str, ...] = ()  # manifest digests of removed images
    names: tuple[str, ...] = ()
    blobs: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()  # chain ids whose records (and unpacked dirs) went
    freed_bytes: int = 0


# --- helpers -----------------------------------------------------------------------------------------------




class _CountingWriter(io.RawIOBase):
    """Pass writes through to a file, counting them and reporting progress.

    write_layer hashes what it writes itself; hashing here too would cost a second full pass over every layer.
    """

    def __init__(self, inner: IO[bytes], progress: Callable[[int], None] | None = None) -> None:
        self.inner = inner
        self.count = 0
        self.progress = progress

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n: int = self.inner.write(b)
        self.count += n
        if self.progress is not None:
            self.progress(self.count)
        return n

    def tell(self) -> int:
        return self.count

    def flush(self) -> None:
        self.inner.flush()


def _link_id(chain: str, attempt: int) -> str:
    seed = chain if attempt == 0 else f"{chain}#{attempt}"
    return base64.b32encode(hashlib.sha256(seed.encode()).digest()).decode()[:LINK_ID_LEN]


def _not_found(what: str, ref: str, hint: str | None = None) -> PybuildError:
    return PybuildError(f"no such {what}: {ref}", hint=hint)


# --- the store ---------------------------------------------------------------------------------------------


class Store:
    """A content store rooted at a directory. Open with :meth:`open`; use as a context manager or close().

    One Store object is meant for one thread; several processes may use one root at once.
    """

    def __init__(self, root: Path, conn: sqlite3.Connection, owner: Owner) -> None:
        self._root = root
        self._db = conn
        self._owner = owner
        self._lock = FileLock(root / "lock")
        self._leases: list[str] = []
        self._cache: CacheIndex | None = None
        self._lease_seq = 0

    # --- opening -------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path) -> Store:
        """Open the store at root, creating the layout on first use and sweeping dead processes' temp files."""
        root = Path(os.path.abspath(root))
        try:
            for sub in ("blobs/sha256", "layers", "l", "tmp"):
                (root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PybuildError(f"cannot create the store at {root}: {e.strerror}", hint="pick another --root") from None
        tmp = root / "tmp"
        # Claim a temp namespace first: a process opening the store at the same time sweeps every temp file
        # that no live owner claims, and would take our half-written layout files for debris.
        owner = Owner(tmp)
        try:
            if not (root / "oci-layout").exists():
                atomic_write(root / "oci-layout", canonical_json({"imageLayoutVersion": MT_OCI_LAYOUT_VERSION}),
                             tmp, f"{owner.token}-oci-layout")
            if not (root / "index.json").exists():
                atomic_create(root / "index.json", Index().to_json(), tmp, f"{owner.token}-index")
            conn = dbmod.connect(root / "pybuild.db")
        except sqlite3.DatabaseError as e:
            owner.close()
            raise PybuildError(f"cannot open the store database {root / 'pybuild.db'}: {e}",
                               hint="run `pybuild store verify`, or use another --root") from None
        except BaseException:
            owner.close()
            raise
        store = cls(root, conn, owner)
        clean_stale_temp(tmp)
        return store

    def close(self) -> None:
        self._db.close()
        self._lock.close()
        self._owner.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root(self) -> Path:
        """The store root (absolute). The executor chdirs here to use :meth:`lower_dirs` paths."""
        return self._root

    # --- internals -----------------------------------------------------------------------------------------

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return dbmod.transaction(self._db)

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        """Held around every change of content: keeps a concurrent gc (exclusive) out."""
        return self._lock.held(exclusive=False)

    def _tmp(self, kind: str) -> Path:
        return self._owner.temp_path(kind)

    def _pin_new(self, kind: str, digest: str) -> None:
        if self._leases:
            self._db.execute(
                "INSERT OR IGNORE INTO pins(owner, kind, digest, added) VALUES (?,?,?,?)",
                (self._leases[-1], kind, digest, time.time()),
            )

    def _layer_dir(self, chain: str) -> Path:
        return self._root / "layers" / digest_hex(chain)

    # --- blobs ---------------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where the blob with this digest lives (whether or not it exists)."""
        return self._root / "blobs" / "sha256" / digest_hex(digest)

    def has_blob(self, digest: str) -> bool:
        return is_digest(digest) and self.blob_path(digest).is_file()

    def blob_descriptor(self, digest: str) -> Descriptor:
        """A descriptor for a stored blob, with the media type it was stored under."""
        row = self._db.execute("SELECT size, media_type FROM blobs WHERE digest=?", (check_digest(digest),)).fetchone()
        if row is None or not self.has_blob(digest):
            raise _not_found("blob", digest)
        return Descriptor(media_type=row[1], digest=digest, size=row[0])

    def _record_blob(self, digest: str, size: int, media_type: str) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO blobs(digest, size, media_type, added) VALUES (?,?,?,?)",
                (digest, size, media_type, time.time()),
            )
            self._pin_new("blob", digest)

    def _install_blob(self, tmp: Path, digest: str) -> None:
        dest = self.blob_path(digest)
        if dest.exists():
            tmp.unlink()
            return
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)
        fsync_dir(dest.parent)

    def put_blob(
        self, stream: IO[bytes], *, expected_digest: str | None = None, expected_size: int | None = None,
        media_type: str = OCTET_STREAM,
    ) -> Descriptor:
        """Store the bytes of stream as a blob and return its descriptor.

        With expected_digest, a blob already present is not read again (the stream is left unread), and
        content that hashes differently is rejected (PybuildError) without ever becoming visible.
        """
        if expected_digest is not None:
            check_digest(expected_digest)
            if self.has_blob(expected_digest):
                size = self.blob_path(expected_digest).stat().st_size
                self._record_blob(expected_digest, size, media_type)
                return Descriptor(media_type=media_type, digest=expected_digest, size=size)
        with self._writing():
            tmp = self._tmp("blob")
            h = hashlib.sha256()
            n = 0
            try:
                with open(tmp, "wb") as f:
                    while chunk := stream.read(_CHUNK):
                        f.write(chunk)
                        h.update(chunk)
                        n += len(chunk)
                    f.flush()
                    os.fsync(f.fileno())
                digest = "sha256:" + h.hexdigest()
                if expected_digest is not None and digest != expected_digest:
                    raise PybuildError(
                        f"content does not match its digest: expected {expected_digest}, got {digest}",
                        hint="the source is corrupt or was modified in transit",
                    )
                if expected_size is not None and n != expected_size:
                    raise PybuildError(f"blob {digest} has {n} bytes, expected {expected_size}")
                self._install_blob(tmp, digest)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise
            self._record_blob(digest, n, media_type)
        return Descriptor(media_type=media_type, digest=digest, size=n)

    def put_blob_bytes(self, data: bytes, media_type: str = OCTET_STREAM) -> Descriptor:
        """Store bytes held in memory as a blob."""
        return self.put_blob(io.BytesIO(data), expected_digest=sha256_digest(data), media_type=media_type)

    def open_blob(self, digest: str) -> BinaryIO:
        """Open a stored blob for reading (binary file object; the caller closes it)."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise _not_found("blob", digest, "the store may be damaged: run `pybuild store verify`") from None

    def read_blob(self, digest: str) -> bytes:
        """The whole content of a (small) blob: a manifest or config."""
        with self.open_blob(digest) as f:
            return f.read()

    # --- layers --------------------------------------------------------------------------------------------

    def _layer_from_row(self, row: sqlite3.Row | tuple[Any, ...], blob: Descriptor | None) -> Layer:
        chain, diff_id, parent, link, unpacked, usize = row
        if blob is None:
            blob = self._some_blob(chain)
        path = self._layer_dir(chain) / "diff" if unpacked else None
        return Layer(chain_id=chain, diff_id=diff_id, parent=parent, blob=blob, link_id=link, path=path,
                     unpacked_size=usize)

    def _some_blob(self, chain: str) -> Descriptor | None:
        for (d,) in self._db.execute(
            "SELECT blob_digest FROM layer_blobs WHERE chain_id=? ORDER BY rowid", (chain,)
        ).fetchall():
            row = self._db.execute("SELECT size, media_type FROM blobs WHERE digest=?", (d,)).fetchone()
            if row is not None and self.has_blob(d):
                return Descriptor(media_type=row[1], digest=d, size=row[0])
        return None

    def _layer_row(self, chain: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db.execute(
            "SELECT chain_id, diff_id, parent, link_id, unpacked, unpacked_size FROM layers WHERE chain_id=?",
            (chain,),
        ).fetchone()
        return row

    def has_layer(self, chain_id: str) -> bool:
        return self._layer_row(chain_id) is not None

    def layer(self, chain_id: str) -> Layer:
        """The layer with this chain id (blob: the first known compressed blob of it)."""
        row = self._layer_row(check_digest(chain_id))
        if row is None:
            raise _not_found("layer", chain_id)
        return self._layer_from_row(row, None)

    def layer_chain(self, chain_id: str) -> list[Layer]:
        """The layer and all its ancestors, bottom first."""
        out: list[Layer] = []
        cur: str | None = chain_id
        while cur is not None:
            lay = self.layer(cur)
            out.append(lay)
            cur = lay.parent
        out.reverse()
        return out

    def _ensure_layer_record(self, chain: str, diff_id: str, parent: str | None, blob: str | None) -> None:
        with self._tx():
            if self._layer_row(chain) is None:
                if parent is not None and self._layer_row(parent) is None:
                    raise _not_found("parent layer", parent)
                for attempt in range(100):
                    link = _link_id(chain, attempt)
                    taken = self._db.execute("SELECT 1 FROM layers WHERE link_id=?", (link,)).fetchone()
                    if not taken:
                        break
                self._db.execute(
                    "INSERT INTO layers(chain_id, diff_id, parent, link_id, unpacked, added) VALUES (?,?,?,?,0,?)",
                    (chain, diff_id, parent, link, time.time()),
                )
            if blob is not None:
                self._db.execute("INSERT OR IGNORE INTO layer_blobs(chain_id, blob_digest) VALUES (?,?)",
                                 (chain, blob))
            self._pin_new("layer", chain)

    def add_layer_blob(self, blob: Descriptor, parent_chain_id: str | None, diff_id: str | None = None) -> Layer:
        """Record a stored layer blob as the layer on top of parent_chain_id (None: a bottom layer).

        For pulled, loaded and imported layers. diff_id comes from the image config when known; otherwise
        the blob is decompressed once to compute it. Nothing is unpacked: see :meth:`ensure_unpacked`.
        """
        if not self.has_blob(blob.digest):
            raise _not_found("blob", blob.digest)
        if diff_id is None:
            if blob.media_type in _UNCOMPRESSED_LAYER_TYPES:
                diff_id = blob.digest
            else:
                from pybuild.layer import open_decompressed

                with self.open_blob(blob.digest) as f, open_decompressed(f) as plain:
                    reader = HashingReader(plain)
                    reader.drain()
                    diff_id = reader.digest
        check_digest(diff_id)
        chain = chain_id(parent_chain_id, diff_id)
        with self._writing():
            self._record_blob(blob.digest, blob.size, blob.media_type)
            self._ensure_layer_record(chain, diff_id, parent_chain_id, blob.digest)
        row = self._layer_row(chain)
        assert row is not None
        return self._layer_from_row(row, blob)

    def _finish_unpack(self, chain: str, staged: Path | None, measured_size: int) -> None:
        """Move a complete diff dir into layers/<hex>/diff (or drop it if another process won), link it."""
        ldir = self._layer_dir(chain)
        ldir.mkdir(exist_ok=True)
        if staged is not None and not rename_noreplace(staged, ldir / "diff"):
            remove_tree(staged)
        fsync_dir(ldir)
        row = self._layer_row(chain)
        assert row is not None
        self._make_link(row[3], chain)
        with self._tx():
            self._db.execute("UPDATE layers SET unpacked=1, unpacked_size=? WHERE chain_id=?", (measured_size, chain))

    def _make_link(self, link_id: str, chain: str) -> None:
        link = self._root / "l" / link_id
        target = f"../layers/{digest_hex(chain)}/diff"
        with contextlib.suppress(OSError):
            if os.readlink(link) == target:
                return
        tmp = self._root / "l" / f".{link_id}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.rename(tmp, link)
        fsync_dir(link.parent)

    def commit_layer_dir(
        self, src_dir: Path, parent_chain_id: str | None, compression: Compression | None = None, *,
        source_date_epoch: int | None = None, progress: Callable[[int], None] | None = None,
    ) -> Layer:
        """Turn a finished overlay upper dir into a stored layer on top of parent_chain_id.

        Writes the layer blob from src_dir (``pybuild.layer.write_layer``), then MOVES src_dir into
        ``layers/<chain>/diff`` instead of unpacking the blob again. src_dir must be unmounted and inside the
        store's filesystem: make it under :meth:`new_scratch_dir`. On return src_dir no longer exists.
        progress, if given, is called with the number of compressed bytes written so far.
        """
        from pybuild.layer import Compression as _Compression
        from pybuild.layer import write_layer

        src_dir = Path(src_dir)
        if not src_dir.is_dir():
            raise PybuildError(f"layer source {src_dir} is not a directory")
        if parent_chain_id is not None and not self.has_layer(parent_chain_id):
            raise _not_found("parent layer", parent_chain_id)
        comp = _Compression.ZSTD if compression is None else compression
        with self._writing():
            tmp = self._tmp("layer")
            try:
                with open(tmp, "wb") as f:
                    hw = _CountingWriter(f, progress)
                    # write_layer hashes exactly the bytes it hands to hw, which all reach the file.
                    info = write_layer(src_dir, cast(BinaryIO, hw), comp, source_date_epoch=source_date_epoch)
                    f.flush()
                    os.fsync(f.fileno())
                if hw.count != info.size:
                    raise RuntimeError(f"write_layer reported {info.size} bytes, wrote {hw.count}")
                self._install_blob(tmp, info.digest)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise
            blob = Descriptor(media_type=info.media_type, digest=info.digest, size=hw.count)
            self._record_blob(blob.digest, blob.size, blob.media_type)
            chain = chain_id(parent_chain_id, info.diff_id)
            self._ensure_layer_record(chain, info.diff_id, parent_chain_id, blob.digest)
            row = self._layer_row(chain)
            assert row is not None
            if row[4]:
                remove_tree(src_dir)  # an identical layer is already unpacked
            else:
                size = info.file_bytes  # what dir_size(src_dir) would add up, without a second walk
                staged = self._tmp("diff")
                try:
                    os.rename(src_dir, staged)
                except OSError:
                    # Not on the store's filesystem: fall back to unpacking the blob we just wrote.
                    remove_tree(src_dir)
                    self.ensure_unpacked(chain)
                else:
                    self._finish_unpack(chain, staged, size)
        row = self._layer_row(chain)
        assert row is not None
        return self._layer_from_row(row, blob)

    def ensure_unpacked(self, chain_id: str) -> Layer:
        """Unpack the layer and all its ancestors that are not yet unpacked; returns the layer.

        Verifies each blob's digest and the layer's diff_id while applying it; a mismatch is an error and
        leaves nothing behind.
        """
        from pybuild.layer import apply_layer, open_decompressed

        chain = self.layer_chain(chain_id)
        with self._writing():
            for lay in chain:
                row = self._layer_row(lay.chain_id)
                assert row is not None
                if row[4] and (self._layer_dir(lay.chain_id) / "diff").is_dir():
                    continue
                final = self._layer_dir(lay.chain_id) / "diff"
                if final.is_dir():  # a crash after the rename but before the row update
                    self._finish_unpack(lay.chain_id, None, dir_size(final))
                    continue
                blob = self._some_blob(lay.chain_id)
                if blob is None:
                    raise PybuildError(
                        f"layer {lay.chain_id} cannot be unpacked: none of its blobs is in the store",
                        hint="run `pybuild store verify`; pull or load the image again",
                    )
                staged = self._tmp("unpack")
                staged.mkdir(mode=0o755)  # the layer root's mode, unless the tar sets "./"
                try:
                    with self.open_blob(blob.digest) as f:
                        packed = HashingReader(f)
                        with open_decompressed(cast(BinaryIO, packed)) as plain_raw:
                            plain = HashingReader(plain_raw)
                            apply_layer(cast(BinaryIO, plain), staged)
                            plain.drain()
                        packed.drain()
                    if packed.digest != blob.digest:
                        raise PybuildError(f"blob {blob.digest} is corrupt (hashes to {packed.digest})",
                                           hint="run `pybuild store verify`")
                    if plain.digest != lay.diff_id:
                        raise PybuildError(
                            f"layer blob {blob.digest} unpacks to {plain.digest}, but the image says {lay.diff_id}"
                        )
                    size = dir_size(staged)
                except BaseException:
                    remove_tree(staged)
                    raise
                self._finish_unpack(lay.chain_id, staged, size)
        return self.layer(chain_id)

    def lower_dirs(self, chain_id: str) -> list[str]:
        """Overlay lowerdirs for the stack ending at chain_id: link paths relative to :attr:`root`, topmost first.

        Every layer must be unpacked (see :meth:`ensure_unpacked`). Use as
        ``os.chdir(store.root); mount(..., "lowerdir=" + ":".join(dirs))``.
        """
        out: list[str] = []
        for lay in reversed(self.layer_chain(chain_id)):
            if not lay.unpacked:
                raise PybuildError(f"layer {lay.chain_id} is not unpacked", hint="call ensure_unpacked first")
            out.append(f"l/{lay.link_id}")
        return out

    @contextlib.contextmanager
    def new_scratch_dir(self, kind: str = "scratch") -> Iterator[Path]:
        """A fresh empty directory in the store's filesystem (for overlay upper/work dirs), removed on exit.

        Whatever is still inside on exit is deleted; a dir passed to :meth:`commit_layer_dir` is moved out
        first. A process killed meanwhile leaves it to the next Store.open's sweep.
        """
        path = self._tmp(kind)
        path.mkdir(mode=0o700)
        try:
            yield path
        finally:
            remove_tree(path)

    @contextlib.contextmanager
    def new_overlay_dirs(self, kind: str = "scratch") -> Iterator[tuple[Path, Path, Path]]:
        """:meth:`new_scratch_dir` holding empty ``upper`` and ``work`` dirs: yields (scratch, upper, work)."""
        with self.new_scratch_dir(kind) as scratch:
            upper, work = scratch / "upper", scratch / "work"
            upper.mkdir()
            work.mkdir()
            yield scratch, upper, work

    def image_lower_dirs(self, image: Image) -> list[str]:
        """The image's layers as overlay lowerdirs (see :meth:`lower_dirs`), unpacking what is not yet; [] for an
        image with no layers."""
        if image.top_chain_id is None:
            return []
        self.ensure_unpacked(image.top_chain_id)
        return self.lower_dirs(image.top_chain_id)

    @property
    def cache(self) -> CacheIndex:
        """The build cache's records (see pybuild.store.cache)."""
        from pybuild.store.cache import CacheIndex

        if self._cache is None:
            self._cache = CacheIndex(self)
        return self._cache

    def file_checksums(self) -> FileChecksums:
        """A persistent checksum cache for build-context files; call flush() to save what it learned."""
        from pybuild.store.cache import FileChecksums

        return FileChecksums(self)

    def cache_mount_dir(self, cache_id: str, *, uid: int = 0, gid: int = 0, mode: int = 0o755) -> Path:
        """The persistent directory behind ``RUN --mount=type=cache,id=ID`` (created empty on first use).

        It lives beside the layers, never in one: its contents survive between builds and are shared by every
        step that names the same id. uid, gid and mode apply when it is created (BuildKit's uid=, gid=, mode=).
        """
        path = self._root / "cache-mounts" / hashlib.sha256(cache_id.encode()).hexdigest()[:32]
        if not path.is_dir():
            path.parent.mkdir(mode=0o755, exist_ok=True)
            tmp = self._tmp("cache-mount")
            tmp.mkdir()
            os.chown(tmp, uid, gid)
            os.chmod(tmp, mode)
            try:
                os.rename(tmp, path)
            except OSError:  # another build created it first: use theirs
                tmp.rmdir()
        return path

    # --- images --------------------------------------------------------------------------------------------

    def put_image(
        self, config: ImageConfig | bytes, layers: Sequence[Layer], *, media_type: str = MT_OCI_MANIFEST,
        annotations: dict[str, str] | None = None, names: Iterable[str] = (),
    ) -> Image:
        """Store an image we built: writes the config (serialised canonically unless given as bytes) and a new
        manifest over layers (bottom first; each must carry a blob), records it, then tags names.

        media_type is MT_OCI_MANIFEST (default) or MT_DOCKER_MANIFEST (gzip layers only).
        """
        config_bytes = config if isinstance(config, bytes) else config.to_json()
        parsed = ImageConfig.from_json(config_bytes)
        if tuple(x.diff_id for x in layers) != parsed.diff_ids:
            raise ValueError("put_image: config rootfs.diff_ids do not match the layers")
        docker = media_type == MT_DOCKER_MANIFEST
        descs: list[Descriptor] = []
        for lay in layers:
            if lay.blob is None:
                raise ValueError(f"put_image: layer {lay.chain_id} has no blob")
            d = Descriptor(media_type=lay.blob.media_type, digest=lay.blob.digest, size=lay.blob.size)
            if docker:
                if d.media_type not in (MT_OCI_LAYER_GZIP, MT_DOCKER_LAYER_GZIP):
                    raise PybuildError(f"a Docker manifest cannot hold a {d.media_type} layer",
                                       hint="use OCI media types or gzip compression")
                d = Descriptor(media_type=MT_DOCKER_LAYER_GZIP, digest=d.digest, size=d.size)
            descs.append(d)
        cfg_desc = self.put_blob_bytes(config_bytes, MT_DOCKER_CONFIG if docker else MT_OCI_CONFIG)
        manifest = Manifest(config=Descriptor(cfg_desc.media_type, cfg_desc.digest, cfg_desc.size),
                            layers=tuple(descs), media_type=media_type, annotations=annotations or {})
        return self.put_manifest(manifest.to_json(), media_type, names=names)

    def put_manifest(self, manifest: bytes, media_type: str | None = None, *, names: Iterable[str] = ()) -> Image:
        """Record an image whose manifest bytes (and blobs) came from elsewhere (load, pull, import).

        The config and layer blobs must already be stored (put_blob); the manifest bytes are kept verbatim
        so its digest is unchanged. Layer records are created from the config's diff_ids.
        """
        mt = media_type or sniff_media_type(manifest)
        m = Manifest.from_json(manifest, mt)
        if not self.has_blob(m.config.digest):
            raise _not_found("config blob", m.config.digest)
        config_bytes = self.read_blob(m.config.digest)
        config = ImageConfig.from_json(config_bytes)
        if len(config.diff_ids) != len(m.layers):
            raise PybuildError(
                f"image manifest lists {len(m.layers)} layers but its config has {len(config.diff_ids)} diff_ids"
            )
        with self._writing():
            parent: str | None = None
            for desc, diff_id in zip(m.layers, config.diff_ids, strict=True):
                if not self.has_blob(desc.digest):
                    raise _not_found("layer blob", desc.digest)
                parent = self.add_layer_blob(desc, parent, diff_id).chain_id
            mdesc = self.put_blob_bytes(manifest, mt)
            with self._tx():
                self._db.execute(
                    "INSERT OR IGNORE INTO images(manifest_digest, media_type, size, config_digest, top_chain_id,"
                    " added) VALUES (?,?,?,?,?,?)",
                    (mdesc.digest, mt, mdesc.size, m.config.digest, parent, time.time()),
                )
                for d in (m.config.digest, *(x.digest for x in m.layers)):
                    self._db.execute("INSERT OR IGNORE INTO image_blobs(manifest_digest, blob_digest) VALUES (?,?)",
                                     (mdesc.digest, d))
                for name in names:
                    self._set_name(name, mdesc.digest)
        self._write_index()
        return self._image(mdesc.digest)

    def _image(self, manifest_digest: str) -> Image:
        row = self._db.execute(
            "SELECT media_type, size, config_digest, added FROM images WHERE manifest_digest=?", (manifest_digest,)
        ).fetchone()
        if row is None:
            raise _not_found("image", manifest_digest)
        mt, size, cfg, added = row
        manifest = Manifest.from_json(self.read_blob(manifest_digest), mt)
        config_bytes = self.read_blob(cfg)
        config = ImageConfig.from_json(config_bytes)
        names = tuple(
            n for (n,) in self._db.execute(
                "SELECT name FROM names WHERE manifest_digest=? ORDER BY added, name", (manifest_digest,)
            )
        )
        return Image(
            id=cfg, descriptor=Descriptor(media_type=mt, digest=manifest_digest, size=size), manifest=manifest,
            config=config, config_bytes=config_bytes, names=names, chain_ids=tuple(chain_ids(config.diff_ids)),
            added=added,
        )

    def list_images(self) -> list[Image]:
        """Every stored image, newest first."""
        rows = self._db.execute("SELECT manifest_digest FROM images ORDER BY added DESC, manifest_digest").fetchall()
        return [self._image(d) for (d,) in rows]

    def image_layers(self, image: Image) -> list[Layer]:
        """The image's layers, bottom first, each carrying the blob descriptor its manifest uses."""
        out: list[Layer] = []
        for desc, chain in zip(image.manifest.layers, image.chain_ids, strict=True):
            row = self._layer_row(chain)
            if row is None:
                raise _not_found("layer", chain, "the store may be damaged: run `pybuild store verify`")
            out.append(self._layer_from_row(row, desc))
        return out

    def find(self, ref: str) -> Image | None:
        """Like :meth:`resolve` but None when nothing matches."""
        try:
            return self.resolve(ref)
        except PybuildError as e:
            if e.message.startswith("no such image"):
                return None
            raise

    def resolve(self, ref: str) -> Image:
        """Find an image by name (``busybox`` = ``busybox:latest``), full or short ID (config digest, with or
        without ``sha256:``, any unique hex prefix), manifest digest, or ``name@sha256:<manifest digest>``.
        """
        ref = ref.strip()
        hint = "`pybuild images` lists the local images"
        if not ref:
            raise _not_found("image", "''", hint)
        db = self._db
        # A name first, as Docker does: "abc" may be both a name and an ID prefix.
        try:
            r: Reference | None = parse_reference(ref)
        except PybuildError:
            r = None
        if r is not None and r.digest is None:
            row = db.execute("SELECT manifest_digest FROM names WHERE name=?", (r.familiar(),)).fetchone()
            if row is not None:
                return self._image(row[0])
        elif r is not None and r.digest is not None:
            row = db.execute("SELECT manifest_digest FROM images WHERE manifest_digest=?", (r.digest,)).fetchone()
            if row is not None:
                return self._image(row[0])
            raise _not_found("image", ref, hint)
        hexpart = ref[len("sha256:"):] if ref.startswith("sha256:") else ref
        if hexpart and all(c in "0123456789abcdef" for c in hexpart) and len(hexpart) <= 64:
            if len(hexpart) == 64:
                full = "sha256:" + hexpart
                row = db.execute(
                    "SELECT manifest_digest FROM images WHERE config_digest=? ORDER BY added DESC", (full,)
                ).fetchone() or db.execute("SELECT manifest_digest FROM images WHERE manifest_digest=?",
                                           (full,)).fetchone()
                if row is not None:
                    return self._image(row[0])
            else:
                rows = db.execute(
                    "SELECT DISTINCT config_digest FROM images WHERE config_digest LIKE ?", (f"sha256:{hexpart}%",)
                ).fetchall()
                if len(rows) > 1:
                    raise PybuildError(f"ambiguous image ID prefix {ref!r}: {len(rows)} images match",
                                       hint="give more digits")
                if rows:
                    row = db.execute(
                        "SELECT manifest_digest FROM images WHERE config_digest=? ORDER BY added DESC", (rows[0][0],)
                    ).fetchone()
                    return self._image(row[0])
        raise _not_found("image", ref, hint)

    def _set_name(self, name: str, manifest_digest: str) -> str:
        r = parse_reference(name)
        if r.digest is not None:
            raise PybuildError(f"cannot name an image with a digest: {name}", hint="use name:tag")
        norm = r.familiar()
        self._db.execute(
            "INSERT INTO names(name, manifest_digest, added) VALUES (?,?,?) ON CONFLICT(name) DO UPDATE SET "
            "manifest_digest=excluded.manifest_digest, added=excluded.added",
            (norm, manifest_digest, time.time()),
        )
        return norm

    def tag(self, image: Image | str, name: str) -> str:
        """Point name (normalised: ``busybox`` → ``busybox:latest``) at image, moving it if it existed."""
        img = image if isinstance(image, Image) else self.resolve(image)
        with self._tx():
            if self._db.execute("SELECT 1 FROM images WHERE manifest_digest=?", (img.manifest_digest,)).fetchone() \
                    is None:
                raise _not_found("image", img.manifest_digest)
            norm = self._set_name(name, img.manifest_digest)
        self._write_index()
        return norm

    def untag(self, name: str) -> Image:
        """Remove a name; returns the image it pointed to (which stays, possibly nameless, until removed)."""
        norm = parse_reference(name).familiar()
        with self._tx():
            row = self._db.execute("SELECT manifest_digest FROM names WHERE name=?", (norm,)).fetchone()
            if row is None:
                raise _not_found("image", name, "`pybuild images` lists the local images")
            self._db.execute("DELETE FROM names WHERE name=?", (norm,))
        self._write_index()
        return self._image(row[0])

    def remove_image(self, image: Image) -> list[str]:
        """Forget an image and all its names; returns the names removed. Content goes at the next gc()."""
        with self._tx():
            names = [n for (n,) in self._db.execute("SELECT name FROM names WHERE manifest_digest=?",
                                                    (image.manifest_digest,))]
            self._db.execute("DELETE FROM names WHERE manifest_digest=?", (image.manifest_digest,))
            self._db.execute("DELETE FROM image_blobs WHERE manifest_digest=?", (image.manifest_digest,))
            self._db.execute("DELETE FROM images WHERE manifest_digest=?", (image.manifest_digest,))
        self._write_index()
        return names

    def _write_index(self) -> None:
        """Rewrite index.json from the database, inside a write transaction so writers take turns."""
        with self._tx():
            named = self._db.execute(
                "SELECT n.name, i.manifest_digest, i.media_type, i.size FROM names n JOIN images i "
                "ON n.manifest_digest = i.manifest_digest ORDER BY n.name"
            ).fetchall()
            unnamed = self._db.execute(
                "SELECT manifest_digest, media_type, size FROM images WHERE manifest_digest NOT IN "
                "(SELECT manifest_digest FROM names) ORDER BY added, manifest_digest"
            ).fetchall()
            ms = [Descriptor(media_type=mt, digest=d, size=size, annotations={ANNOTATION_REF_NAME: name})
                  for name, d, mt, size in named]
            ms += [Descriptor(media_type=mt, digest=d, size=size) for d, mt, size in unnamed]
            data = Index(manifests=tuple(ms), media_type=MT_OCI_INDEX).to_json()
            try:
                if (self._root / "index.json").read_bytes() == data:
                    return  # a cached rebuild names the same image: no rewrite (two fsyncs)
            except OSError:
                pass
            atomic_write(self._root / "index.json", data, self._root / "tmp", f"{self._owner.token}-index")

    # --- pins and leases -----------------------------------------------------------------------------------

    def pin(self, owner: str, *, blobs: Iterable[str] = (), layers: Iterable[str] = ()) -> None:
        """Keep blobs and layers (chain ids, with their ancestors) alive for owner (e.g. "cache") until unpin."""
        with self._tx():
            now = time.time()
            for kind, ds in (("blob", blobs), ("layer", layers)):
                for d in ds:
                    self._db.execute("INSERT OR IGNORE INTO pins(owner, kind, digest, added) VALUES (?,?,?,?)",
                                     (owner, kind, check_digest(d), now))

    def unpin(self, owner: str, *, blobs: Iterable[str] | None = None, layers: Iterable[str] | None = None) -> None:
        """Drop owner's pins (all of them when neither blobs nor layers is given)."""
        with self._tx():
            if blobs is None and layers is None:
                self._db.execute("DELETE FROM pins WHERE owner=?", (owner,))
                return
            for kind, ds in (("blob", blobs or ()), ("layer", layers or ())):
                for d in ds:
                    self._db.execute("DELETE FROM pins WHERE owner=? AND kind=? AND digest=?", (owner, kind, d))

    @contextlib.contextmanager
    def lease(self) -> Iterator[str]:
        """Pin every blob and layer this Store writes inside the block, so a concurrent gc keeps them.

        Yields the lease's owner name. A lease dies with its process even if the block never exits.
        """
        self._lease_seq += 1
        name = f"lease:{self._owner.token}:{self._lease_seq}"
        self._leases.append(name)
        try:
            yield name
        finally:
            self._leases.remove(name)
            self.unpin(name)

    # --- gc ------------------------------------------------------------------------------------------------

    def prune(self, *, untagged: bool = True, all_images: bool = False) -> PruneReport:
        """Remove images (nameless ones with untagged, every one with all_images), then gc()."""
        removed: list[str] = []
        names: list[str] = []
        for img in self.list_images():
            if all_images or (untagged and not img.names):
                names += self.remove_image(img)
                removed.append(img.manifest_digest)
        rep = self.gc()
        return PruneReport(images=tuple(removed), names=tuple(names), blobs=rep.blobs, layers=rep.layers,
                           freed_bytes=rep.freed_bytes)

    def gc(self) -> PruneReport:
        """Delete every blob, layer and unpacked dir that no image or live pin reaches. Waits for writers."""
        with self._lock.held(exclusive=True):
            db = self._db
            with self._tx():
                for (owner,) in db.execute("SELECT DISTINCT owner FROM pins WHERE owner LIKE 'lease:%'").fetchall():
                    token = owner.split(":")[1]
                    if token != self._owner.token and not owner_alive(self._root / "tmp", token):
                        db.execute("DELETE FROM pins WHERE owner=?", (owner,))
                live_blobs: set[str] = set()
                live_chains: set[str] = set()
                for d, top in db.execute("SELECT manifest_digest, top_chain_id FROM images"):
                    live_blobs.add(d)
                    if top:
                        live_chains.add(top)
                live_blobs.update(d for (d,) in db.execute("SELECT blob_digest FROM image_blobs"))
                for kind, d in db.execute("SELECT kind, digest FROM pins"):
                    (live_blobs if kind == "blob" else live_chains).add(d)
                parents = dict(db.execute("SELECT chain_id, parent FROM layers").fetchall())
                stack = list(live_chains)
                while stack:
                    p = parents.get(stack.pop())
                    if p is not None and p not in live_chains:
                        live_chains.add(p)
                        stack.append(p)
                for c, b in db.execute("SELECT chain_id, blob_digest FROM layer_blobs"):
                    if c in live_chains:
                        live_blobs.add(b)
                dead_layers = db.execute(
                    "SELECT chain_id, link_id, unpacked_size FROM layers"
                ).fetchall()
                dead_layers = [r for r in dead_layers if r[0] not in live_chains]
                dead_blobs = [r for r in db.execute("SELECT digest, size FROM blobs") if r[0] not in live_blobs]
                for c, _link, _s in dead_layers:
                    db.execute("DELETE FROM layers WHERE chain_id=?", (c,))
                    db.execute("DELETE FROM layer_blobs WHERE chain_id=?", (c,))
                for d, _s in dead_blobs:
                    db.execute("DELETE FROM blobs WHERE digest=?", (d,))
                known_layer_hex = {digest_hex(c) for c in parents if c in live_chains}
                known_links = {r[0] for r in db.execute("SELECT link_id FROM layers")}
            # Rows are gone (committed); now the content, which nothing can reach any more.
            freed = 0
            for c, link, usize in dead_layers:
                with contextlib.suppress(FileNotFoundError):
                    (self._root / "l" / link).unlink()
                freed += usize or 0
                self._remove_layer_dir(digest_hex(c))
            removed_blobs: list[str] = [d for d, _ in dead_blobs]
            blob_dir = self._root / "blobs" / "sha256"
            for name in os.listdir(blob_dir):
                if "sha256:" + name in live_blobs:
                    continue
                try:
                    freed += (blob_dir / name).stat().st_size
                    (blob_dir / name).unlink()
                except FileNotFoundError:
                    continue
                if "sha256:" + name not in removed_blobs:
                    removed_blobs.append("sha256:" + name)
            # Debris of crashed writers: layer dirs and links without rows.
            for name in os.listdir(self._root / "layers"):
                if name not in known_layer_hex:
                    self._remove_layer_dir(name)
            for name in os.listdir(self._root / "l"):
                if name not in known_links:
                    with contextlib.suppress(FileNotFoundError):
                        (self._root / "l" / name).unlink()
            fsync_dir(blob_dir)
            return PruneReport(blobs=tuple(removed_blobs), layers=tuple(c for c, _, _ in dead_layers),
                               freed_bytes=freed)

    def _remove_layer_dir(self, hexname: str) -> None:
        path = self._root / "layers" / hexname
        if not path.exists():
            return
        # Rename away first so a half-deleted tree is never visible as a layer.
        trash = self._tmp("trash")
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        remove_tree(trash)

    # --- verify --------------------------------------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Check the store: re-hash every blob, check every record points at existing content, every unpacked
        layer dir and its link exist, every image's layers are recorded, index.json matches the names."""
        problems: list[Problem] = []
        db = self._db
        blob_dir = self._root / "blobs" / "sha256"
        present: set[str] = set()
        for name in sorted(os.listdir(blob_dir)):
            path = blob_dir / name
            d = "sha256:" + name
            if not is_digest(d) or not path.is_file():
                problems.append(Problem("stray-file", str(path), "not a blob"))
                continue
            present.add(d)
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
            if "sha256:" + h.hexdigest() != d:
                problems.append(Problem("corrupt-blob", d, f"content hashes to sha256:{h.hexdigest()}"))
        for d, size in db.execute("SELECT digest, size FROM blobs"):
            if d not in present:
                problems.append(Problem("missing-blob", d, "recorded but its file is missing"))
            elif (blob_dir / digest_hex(d)).stat().st_size != size:
                problems.append(Problem("blob-size", d, f"recorded size {size} differs from the file"))
        for m, d in db.execute("SELECT manifest_digest, blob_digest FROM image_blobs"):
            if d not in present:
                problems.append(Problem("missing-blob", d, f"needed by image {m} but missing"))
        layers = {r[0]: r for r in db.execute(
            "SELECT chain_id, diff_id, parent, link_id, unpacked FROM layers")}
        for m, top in db.execute("SELECT manifest_digest, top_chain_id FROM images"):
            if m not in present:
                problems.append(Problem("missing-blob", m, "image manifest is missing"))
            cur = top
            while cur is not None:
                if cur not in layers:
                    problems.append(Problem("missing-layer", cur, f"image {m} needs this layer; no record"))
                    break
                cur = layers[cur][2]
        blob_chains = {c for (c, b) in db.execute("SELECT chain_id, blob_digest FROM layer_blobs") if b in present}
        for chain, _diff, parent, link, unpacked in layers.values():
            if parent is not None and parent not in layers:
                problems.append(Problem("missing-layer", parent, f"parent of layer {chain} has no record"))
            diff = self._layer_dir(chain) / "diff"
            if unpacked:
                if not diff.is_dir():
                    problems.append(Problem("missing-layer-dir", chain, f"{diff} is missing"))
                linkp = self._root / "l" / link
                if not linkp.is_symlink() or os.readlink(linkp) != f"../layers/{digest_hex(chain)}/diff":
                    problems.append(Problem("broken-link", chain, f"{linkp} does not point at the layer"))
            elif chain not in blob_chains:
                problems.append(Problem("missing-layer", chain, "not unpacked and none of its blobs is present"))
        for name, m in db.execute("SELECT name, manifest_digest FROM names"):
            if db.execute("SELECT 1 FROM images WHERE manifest_digest=?", (m,)).fetchone() is None:
                problems.append(Problem("dangling-name", name, f"points at unknown image {m}"))
        try:
            index = Index.from_json((self._root / "index.json").read_bytes())
            in_index = {(x.ref_name, x.digest) for x in index.manifests if x.ref_name}
            in_db = set(db.execute("SELECT name, manifest_digest FROM names").fetchall())
            if in_index != in_db:
                problems.append(Problem("stale-index", "index.json", "image names differ from the database"))
        except (OSError, PybuildError) as e:
            problems.append(Problem("stale-index", "index.json", f"unreadable: {e}"))
        return problems
