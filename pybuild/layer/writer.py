"""Directory (an overlay upper dir, or any tree) → OCI layer tarball, compressed and digested in one pass.

What goes in the tar, and why:
- entries in path order, each directory's names sorted bytewise and a directory's contents right after it
  (Go filepath.Walk order), the root itself left out (Docker/containerd do the same);
- ustar headers with PAX records only when needed (long names/links, big sizes/ids, xattrs), empty uname/gname,
  no atime/ctime, whole-second mtimes (clamped to SOURCE_DATE_EPOCH when given): the same tree gives the same bytes;
- overlay whiteouts (char device 0:0, or a file with the `overlay.whiteout` xattr) → `.wh.<name>`; opaque
  directories (`overlay.opaque` = "y") → a `.wh..wh..opq` entry right after the directory, as Docker writes it;
  overlay's own xattrs never reach the tar, other xattrs (security.capability, ...) go to `SCHILY.xattr.*`;
- hard links: the first path of an inode (in walk order) carries the data, later ones are LNKTYPE to it;
- sockets are skipped (they cannot be archived), fifos and devices kept.

Speed: the walk (main thread) fills 1 MiB buffers straight from files with readv; one thread hashes the tar
(diff ID) while another compresses it, hashes the compressed bytes (digest) and writes them out. hashlib, zlib
and zstandard release the GIL, so the three overlap; memory is a fixed pool of buffers.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import sys
import threading
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from pybuild.layer.base import OPAQUE_MARKER, WHITEOUT_PREFIX, Compression, LayerError, LayerInfo
from pybuild.layer.tarfmt import (
    BLKTYPE,
    BLOCK,
    CHRTYPE,
    DIRTYPE,
    END_OF_ARCHIVE,
    FIFOTYPE,
    LNKTYPE,
    MAX_OCTAL_7,
    REGTYPE,
    SYMTYPE,
    FileHeaders,
    encode_entry,
    padding,
)

BUF_SIZE = 1 << 20
_Stage = Callable[[memoryview], object]  # one consumer of the tar stream
N_BUFFERS = 8
ZSTD_LEVEL = 3
ZSTD_WORKERS = 2
GZIP_LEVEL = 6

_OPAQUE_KEYS = ("trusted.overlay.opaque", "user.overlay.opaque")
_WHITEOUT_KEYS = ("trusted.overlay.whiteout", "user.overlay.whiteout")
_OVERLAY_PREFIXES = ("trusted.overlay.", "user.overlay.")
_ZEROS = bytes(BLOCK)
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # os.fsencode's
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def write_layer(
    src: Path, out: BinaryIO, compression: Compression = Compression.ZSTD, *, source_date_epoch: int | None = None
) -> LayerInfo:
    """Write `src`'s tree as a layer tarball to `out` and return its digests, size and media type."""
    compression = Compression(compression)
    try:
        root_fd = os.open(src, _DIR_FLAGS)
    except OSError as e:
        raise LayerError(f"cannot read layer source {src}: {e.strerror}") from None
    sink = _HashingSink(out)
    diff_hash = hashlib.sha256()
    stages: list[_Stage] = []
    finish: Callable[[], None]
    if compression is Compression.NONE:
        stages.append(sink.write)
        finish = _nothing
    else:
        stages.append(diff_hash.update)
        compress, finish = _compressor(compression, sink)
        stages.append(compress)
    pipeline = _Pipeline(stages)
    try:
        tar = _TarStream(pipeline)
        _Walker(tar, src, source_date_epoch).walk(root_fd, b"")
        tar.write(END_OF_ARCHIVE)
        tar.flush()
    except BaseException:
        pipeline.abort()
        raise
    finally:
        os.close(root_fd)
    pipeline.close()  # re-raises a stage's error (e.g. ENOSPC writing `out`)
    finish()
    digest = "sha256:" + sink.hash.hexdigest()
    diff_id = digest if compression is Compression.NONE else "sha256:" + diff_hash.hexdigest()
    return LayerInfo(digest=digest, diff_id=diff_id, size=sink.size, media_type=compression.media_type)


def _nothing() -> None:
    pass


class _HashingSink:
    """Where compressed bytes go: hashed, counted, written to the caller's stream."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        n = len(data)
        if n:
            self.hash.update(data)
            self.out.write(data)
            self.size += n
        return n


def _compressor(compression: Compression, sink: _HashingSink) -> tuple[_Stage, Callable[[], None]]:
    if compression is Compression.ZSTD:
        import zstandard

        # A fixed worker count, not one per CPU, so that the bytes cannot depend on the machine (multi-threaded
        # output is the same for any count >= 1, single-threaded mode differs; we always use the former).
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=ZSTD_WORKERS, write_checksum=True)
        writer = cctx.stream_writer(cast(IO[bytes], sink), closefd=False, write_size=BUF_SIZE)

        def finish_zstd() -> None:
            # When the tar ends exactly on a zstd job boundary, whether the last job is already queued when the
            # frame is ended depends on the workers' timing: queued, the frame ends with an extra empty block;
            # not, the last data block ends it. Flushing first always queues it, so the bytes never vary.
            writer.flush(zstandard.FLUSH_BLOCK)
            writer.flush(zstandard.FLUSH_FRAME)

        return writer.write, finish_zstd
    # wbits=31: gzip framing with a zero mtime and no file name in its header, so output is deterministic
    zobj = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)

    def compress_gzip(data: memoryview) -> None:
        sink.write(zobj.compress(data))

    def finish_gzip() -> None:
        sink.write(zobj.flush())

    return compress_gzip, finish_gzip


class _Pipeline:
    """Feeds each filled buffer to every stage, each stage in its own thread, in order; buffers come from a fixed
    pool and go back once all stages are done with them."""

    def __init__(self, stages: Sequence[_Stage]) -> None:
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(N_BUFFERS):
            self._free.put(bytearray(BUF_SIZE))
        self._lock = threading.Lock()
        self._pending: dict[int, int] = {}
        self._queues: list[queue.Queue[tuple[bytearray, int] | None]] = []
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._aborted = False
        for fn in stages:
            q: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
            t = threading.Thread(target=self._run, args=(fn, q), name="layer-writer", daemon=True)
            self._queues.append(q)
            self._threads.append(t)
            t.start()

    def get_buffer(self) -> bytearray:
        while True:
            try:
                return self._free.get(timeout=0.5)
            except queue.Empty:
                if self._error is not None:
                    self._raise()

    def submit(self, buf: bytearray, n: int) -> None:
        if self._error is not None:
            self._raise()
        with self._lock:
            self._pending[id(buf)] = len(self._queues)
        for q in self._queues:
            q.put((buf, n))

    def _release(self, buf: bytearray) -> None:
        with self._lock:
            left = self._pending[id(buf)] - 1
            if left:
                self._pending[id(buf)] = left
                return
            del self._pending[id(buf)]
        self._free.put(buf)

    def _run(self, fn: _Stage, q: queue.Queue[tuple[bytearray, int] | None]) -> None:
        while True:
            item = q.get()
            if item is None:
                return
            buf, n = item
            if self._error is None and not self._aborted:
                try:
                    with memoryview(buf) as mv:
                        fn(mv[:n])
                except BaseException as e:
                    self._error = e
            self._release(buf)

    def _raise(self) -> None:
        error = self._error
        assert error is not None
        if isinstance(error, OSError):
            raise LayerError(f"cannot write layer: {error.strerror or error}") from None
        raise error

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()
        if self._error is not None:
            self._raise()

    def abort(self) -> None:
        self._aborted = True
        self.close_quietly()

    def close_quietly(self) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()


class _TarStream:
    """The uncompressed tar as it is produced: small pieces are packed into the current pool buffer, file data is
    read straight into it."""

    def __init__(self, pipeline: _Pipeline) -> None:
        self._pipeline = pipeline
        self.buf = pipeline.get_buffer()
        self.mv = memoryview(self.buf)
        self.pos = 0

    def _next_buffer(self) -> None:
        self.mv.release()
        self._pipeline.submit(self.buf, self.pos)
        self.buf = self._pipeline.get_buffer()
        self.mv = memoryview(self.buf)
        self.pos = 0

    def write(self, data: bytes) -> None:
        n = len(data)
        pos = self.pos
        if pos + n <= BUF_SIZE:
            self.mv[pos : pos + n] = data
            self.pos = pos + n
            return
        view = memoryview(data)
        while view:
            room = BUF_SIZE - self.pos
            if not room:
                self._next_buffer()
                continue
            chunk = view[:room]
            self.mv[self.pos : self.pos + len(chunk)] = chunk
            self.pos += len(chunk)
            view = view[len(chunk) :]

    def copy_file(self, fd: int, size: int, path: bytes, start: bool = False) -> None:
        """Copy exactly `size` bytes of `fd` (plus the block padding) into the stream."""
        if start:  # the walk already wrote the header in place and maybe some data: restart the data
            self.pos += BLOCK
            os.lseek(fd, 0, os.SEEK_SET)
        left = size
        while left:
            if self.pos == BUF_SIZE:
                self._next_buffer()
            room = min(BUF_SIZE - self.pos, left)
            n = os.readv(fd, [self.mv[self.pos : self.pos + room]])
            if n == 0:
                raise LayerError(f"{os.fsdecode(path)} shrank while being archived (expected {size} bytes)")
            self.pos += n
            left -= n
        pad = padding(size)
        if pad:
            self.write(_ZEROS[:pad])

    def flush(self) -> None:
        self.mv.release()
        if self.pos:
            self._pipeline.submit(self.buf, self.pos)
        self.buf = bytearray()
        self.mv = memoryview(self.buf)
        self.pos = 0


class _Walker:
    def __init__(self, tar: _TarStream, src: Path, source_date_epoch: int | None) -> None:
        self.tar = tar
        self.src = src
        self.sde = source_date_epoch
        self.links: dict[tuple[int, int], bytes] = {}
        self.headers = FileHeaders()

    def _mtime(self, st: os.stat_result) -> int:
        mtime = st.st_mtime_ns // 1_000_000_000
        if self.sde is not None and mtime > self.sde:
            return self.sde
        return mtime

    def _fail(self, path: bytes, e: OSError) -> LayerError:
        return LayerError(f"cannot archive {self.src / os.fsdecode(path)}: {e.strerror or e}")

    def walk(self, dfd: int, prefix: bytes) -> None:
        try:
            with os.scandir(dfd) as it:
                entries = sorted([(e.name.encode(_FS_ENCODING, _FS_ERRORS), e) for e in it])
        except OSError as e:
            raise self._fail(prefix, e) from None
        # The loop below is what a commit of many small files pays per file, hence the inlined common case (a
        # plain file: no xattrs, one link, fields that fit ustar, room in the current buffer) and local names.
        tar = self.tar
        put_header = self.headers.put
        sde = self.sde
        open_, fstat, listxattr, readv, close = os.open, os.fstat, os.listxattr, os.readv, os.close
        for bname, entry in entries:
            path = prefix + bname
            try:
                if not entry.is_file(follow_symlinks=False):
                    if entry.is_dir(follow_symlinks=False):
                        self._dir(dfd, entry.name, path)
                    else:
                        self._other(dfd, entry, path, prefix, bname)
                    continue
                fd = open_(bname, _FILE_FLAGS, dir_fd=dfd)
                try:
                    st = fstat(fd)
                    mode, nlink, uid, gid, size = st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size
                    mtime = st.st_mtime_ns // 1_000_000_000
                    if sde is not None and mtime > sde:
                        mtime = sde
                    pos = tar.pos
                    end = pos + BLOCK + size
                    if (
                        end <= BUF_SIZE - BLOCK and nlink == 1 and len(path) <= 100 and uid <= MAX_OCTAL_7
                        and gid <= MAX_OCTAL_7 and mtime >= 0 and mode & 0o170000 == stat.S_IFREG
                        and not listxattr(fd)
                    ):
                        buf = tar.buf
                        put_header(buf, pos, path, mode & 0o7777, uid, gid, size, mtime)
                        if size and readv(fd, [tar.mv[pos + BLOCK : end]]) != size:
                            # short read: the general path reads in a loop and reports a shrunk file
                            tar.copy_file(fd, size, path, start=True)
                            continue
                        pad = -size % BLOCK
                        buf[end : end + pad] = _ZEROS[:pad]
                        tar.pos = end + pad
                    else:
                        self._file_slow(fd, st, mtime, path)
                finally:
                    close(fd)
            except LayerError:
                raise
            except OSError as e:
                raise self._fail(path, e) from None

    def _xattrs(self, target: int | str) -> tuple[list[tuple[bytes, bytes]], dict[str, bytes]]:
        """(xattrs for the tar, overlay's own xattrs) of an fd or a /proc/self/fd path."""
        names = os.listxattr(target, follow_symlinks=False) if isinstance(target, str) else os.listxattr(target)
        if not names:
            return [], {}
        keep: list[tuple[bytes, bytes]] = []
        overlay: dict[str, bytes] = {}
        for name in sorted(names):
            try:
                value = (os.getxattr(target, name, follow_symlinks=False) if isinstance(target, str)
                         else os.getxattr(target, name))
            except OSError:  # removed meanwhile, or not readable: nothing to archive
                continue
            if name.startswith(_OVERLAY_PREFIXES):
                overlay[name] = value
            else:
                keep.append((os.fsencode(name), value))
        return keep, overlay

    def _dir(self, dfd: int, name: str, path: bytes) -> None:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        try:
            st = os.fstat(fd)
            xattrs, overlay = self._xattrs(fd)
            mtime = self._mtime(st)
            mode = st.st_mode & 0o7777
            self.tar.write(encode_entry(path + b"/", mode, st.st_uid, st.st_gid, 0, mtime, DIRTYPE, xattrs=xattrs))
            if any(overlay.get(k) == b"y" for k in _OPAQUE_KEYS):
                marker = path + b"/" + OPAQUE_MARKER.encode()
                self.tar.write(encode_entry(marker, mode & 0o777, st.st_uid, st.st_gid, 0, mtime, REGTYPE))
            self.walk(fd, path + b"/")
        finally:
            os.close(fd)

    def _hardlink(self, st: os.stat_result, path: bytes) -> bytes | None:
        """The earlier path of this inode, if there is one; else remember this one."""
        if st.st_nlink < 2:
            return None
        key = (st.st_dev, st.st_ino)
        first = self.links.get(key)
        if first is None:
            self.links[key] = path
        return first

    def _file(self, dfd: int, name: str, path: bytes) -> None:
        """A regular file found without d_type (some filesystems): the general path."""
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        try:
            st = os.fstat(fd)
            self._file_slow(fd, st, self._mtime(st), path)
        finally:
            os.close(fd)

    def _file_slow(self, fd: int, st: os.stat_result, mtime: int, path: bytes) -> None:
        if not stat.S_ISREG(st.st_mode):  # replaced since the scan
            raise LayerError(f"{self.src / os.fsdecode(path)} changed while being archived")
        xattrs, overlay = self._xattrs(fd)
        if any(k in overlay for k in _WHITEOUT_KEYS):
            self._whiteout(path, st, mtime)
            return
        first = self._hardlink(st, path)
        mode = st.st_mode & 0o7777
        if first is not None:
            self.tar.write(encode_entry(path, mode, st.st_uid, st.st_gid, 0, mtime, LNKTYPE, first))
            return
        size = st.st_size
        self.tar.write(encode_entry(path, mode, st.st_uid, st.st_gid, size, mtime, REGTYPE, xattrs=xattrs))
        self.tar.copy_file(fd, size, path)

    def _whiteout(self, path: bytes, st: os.stat_result, mtime: int) -> None:
        slash = path.rfind(b"/") + 1
        name = path[:slash] + WHITEOUT_PREFIX.encode() + path[slash:]
        # as Docker writes them: an empty regular file, mode 0600, the owner of the whiteout
        self.tar.write(encode_entry(name, 0o600, st.st_uid, st.st_gid, 0, mtime, REGTYPE))

    def _other(self, dfd: int, entry: os.DirEntry[str], path: bytes, prefix: bytes, bname: bytes) -> None:
        st = entry.stat(follow_symlinks=False)
        fmt = stat.S_IFMT(st.st_mode)
        mtime = self._mtime(st)
        if fmt == stat.S_IFSOCK:
            return
        if fmt == stat.S_IFCHR and st.st_rdev == 0:
            self._whiteout(path, st, mtime)
            return
        proc_path = f"/proc/self/fd/{dfd}/{entry.name}"
        xattrs, _ = self._xattrs(proc_path)
        mode = st.st_mode & 0o7777
        first = self._hardlink(st, path)
        if first is not None:
            self.tar.write(encode_entry(path, mode, st.st_uid, st.st_gid, 0, mtime, LNKTYPE, first))
            return
        if fmt == stat.S_IFLNK:
            target = os.readlink(entry.name, dir_fd=dfd)
            self.tar.write(
                encode_entry(path, mode, st.st_uid, st.st_gid, 0, mtime, SYMTYPE, os.fsencode(target), xattrs=xattrs)
            )
        elif fmt == stat.S_IFIFO:
            self.tar.write(encode_entry(path, mode, st.st_uid, st.st_gid, 0, mtime, FIFOTYPE, xattrs=xattrs))
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            typeflag = CHRTYPE if fmt == stat.S_IFCHR else BLKTYPE
            self.tar.write(
                encode_entry(
                    path, mode, st.st_uid, st.st_gid, 0, mtime, typeflag,
                    devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev), xattrs=xattrs,
                )
            )
        elif fmt == stat.S_IFDIR:  # became a directory since the scan
            raise LayerError(f"{self.src / os.fsdecode(path)} changed while being archived")
        elif fmt == stat.S_IFREG:  # d_type unknown on this filesystem: take the regular-file path
            self._file(dfd, entry.name, path)
