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

Speed: the walk (main thread) fills 2 MiB buffers straight from files with readv; worker threads compress each
buffer as a zstd frame of its own and, in order, hash the tar (diff ID) and the compressed bytes (digest) and write
them out (see _Pipeline). hashlib, zlib and zstandard release the GIL, so all of it overlaps; memory is a fixed
pool of buffers.
"""

from __future__ import annotations

import collections
import hashlib
import os
import queue
import stat
import sys
import threading
import zlib
from pathlib import Path
from typing import Any, BinaryIO, cast

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
    MAX_OCTAL_11,
    REGTYPE,
    SYMTYPE,
    FileHeaders,
    encode_entry,
    padding,
)
from pybuild.model.overlayfs import OPAQUE_XATTRS, OVERLAY_XATTR_PREFIXES, WHITEOUT_XATTRS

BUF_SIZE = 2 << 20  # also the tar bytes in each zstd frame: changing it changes every zstd layer's digest
N_BUFFERS = 8
MAX_WORKERS = 4
DEFER_MIN = 256 << 10  # files this big are read by the thread that compresses them (see _OpenFile)
ZSTD_LEVEL = 3
GZIP_LEVEL = 6

_ZEROS = bytes(BLOCK)
_FAST_LIMIT = BUF_SIZE - BLOCK  # a fast-path file must leave room for at least the end-of-archive padding
# os.stat_result's ten tuple items: mode, ino, dev, nlink, uid, gid, size and whole-second atime/mtime/ctime
_StatInts = tuple[int, int, int, int, int, int, int, int, int, int]
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
    diff_hash = None if compression is Compression.NONE else hashlib.sha256()
    pipeline: _Pipeline | None = None
    tar: _TarStream | None = None
    try:
        pipeline = _Pipeline(sink, diff_hash, compression)
        tar = _TarStream(pipeline, src)
        walker = _Walker(tar, src, source_date_epoch)
        walker.walk(root_fd, b"")
        tar.write(END_OF_ARCHIVE)
        tar.flush()
    except BaseException:
        if tar is not None:
            tar.discard()
        if pipeline is not None:
            pipeline.abort()
        raise
    finally:
        os.close(root_fd)
    pipeline.close()  # re-raises a worker's error (e.g. ENOSPC writing `out`)
    digest = "sha256:" + sink.hash.hexdigest()
    diff_id = digest if diff_hash is None else "sha256:" + diff_hash.hexdigest()
    return LayerInfo(
        digest=digest, diff_id=diff_id, size=sink.size, media_type=compression.media_type, file_bytes=walker.file_bytes
    )


class _HashingSink:
    """Where the layer's bytes go: hashed, counted, written to the caller's stream."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> None:
        if len(data):
            self.hash.update(data)
            self.out.write(data)
            self.size += len(data)


class _Frame:
    """One buffer of the tar on its way out."""

    __slots__ = ("buf", "fills", "index", "size")

    def __init__(self, index: int, buf: bytearray, size: int, fills: list[_Fill]) -> None:
        self.index = index
        self.buf = buf
        self.size = size
        self.fills = fills


class _Pipeline:
    """Takes the tar in BUF_SIZE buffers and turns each into output, on worker threads (and on the walking thread
    while it waits for a free buffer).

    A buffer is first *prepared*, in any order and in parallel: with zstd, compressed into a frame of its own. Then,
    strictly in tar order, it takes its *turn*: the tar bytes go into the diff ID hash and the output into the
    digest and `out` (gzip compresses here: deflate is one stream). The thread that prepared a buffer also takes
    its turn, so both hashes read bytes still in that CPU's cache; on two CPUs this beats a thread per stage.

    zstd frames: a zstd stream may be any number of frames (RFC 8878, 3); independent frames are what lets the
    workers compress in parallel while the bytes depend on the tar alone (BUF_SIZE of tar each), whatever the
    number of CPUs or the threads' timing. 2 MiB frames at level 3 come within about 1.5% of one frame's size
    (4 MiB: 0.5%, but the buffers no longer stay in cache), and one-call compression of a buffer copies nothing
    in or out, where zstd's streaming API copies every byte twice. Frames keep their checksum (5% of the time):
    apply_layer on its own, or `zstd -d`, then still notices a damaged blob.
    """

    def __init__(self, sink: _HashingSink, diff_hash: Any, compression: Compression) -> None:
        self._sink = sink
        self._diff_hash = diff_hash
        self._compression = compression
        self._zobj = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if compression is Compression.GZIP else None
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._allocated = 0
        self._submitted = 0
        self._jobs: collections.deque[_Frame] = collections.deque()
        self._jobs_cv = threading.Condition()
        # the next frame index to be hashed into the diff ID, and to be written out: two lanes, so that one thread
        # can hash frame k's output while another hashes frame k+1's tar bytes
        self._diff_turn, self._out_turn = [0], [0]
        self._turn_cv = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self._local = threading.local()
        # one CPU is the walking thread's; it also helps out when it has nothing to do (compressible data)
        workers = max(1, min(len(os.sched_getaffinity(0)) - 1, MAX_WORKERS))
        self._threads = [threading.Thread(target=self._work, name="layer-writer", daemon=True) for _ in range(workers)]
        for t in self._threads:
            t.start()

    # the walking thread's side

    def get_buffer(self) -> bytearray:
        while True:
            try:
                return self._free.get_nowait()
            except queue.Empty:
                pass
            if self._allocated < N_BUFFERS:  # most layers are small: allocate only what the stream needs
                self._allocated += 1
                return bytearray(BUF_SIZE)
            if self._error is not None:
                self._raise()
            if not self._help():
                try:
                    return self._free.get(timeout=0.5)
                except queue.Empty:
                    pass

    def submit(self, buf: bytearray, n: int, fills: list[_Fill]) -> None:
        if self._error is not None:
            for _, _, file, _ in fills:
                file.release()
            self._raise()
        frame = _Frame(self._submitted, buf, n, fills)
        self._submitted += 1
        with self._jobs_cv:
            self._jobs.append(frame)
            self._jobs_cv.notify()

    def _help(self) -> bool:
        """Process a queued buffer here rather than sit idle (when compressing is the slow part)."""
        with self._jobs_cv:
            if not self._jobs:
                return False
            frame = self._jobs.popleft()
        self._process(frame)
        return True

    def close(self) -> None:
        self._join()
        if self._error is not None:
            self._raise()
        if self._zobj is not None:
            try:
                self._sink.write(self._zobj.flush())
            except OSError as e:
                self._fail(e)
                self._raise()

    def abort(self) -> None:
        self._fail(LayerError("layer write aborted"))
        self._join()

    def _join(self) -> None:
        """Let the workers finish what is queued (after an error: only hand buffers back) and wait for them."""
        with self._jobs_cv:
            self._closing = True
            self._jobs_cv.notify_all()
        for t in self._threads:
            t.join()

    def _raise(self) -> None:
        error = self._error
        assert error is not None
        if isinstance(error, OSError):
            raise LayerError(f"cannot write layer: {error.strerror or error}") from None
        raise error

    # the workers' side

    def _fail(self, e: BaseException) -> None:
        if self._error is None:
            self._error = e
        with self._turn_cv:
            self._turn_cv.notify_all()  # turn waiters give up

    def _work(self) -> None:
        while True:
            with self._jobs_cv:
                while not self._jobs and not self._closing:
                    self._jobs_cv.wait()
                if not self._jobs:
                    return
                frame = self._jobs.popleft()
            self._process(frame)

    def _process(self, frame: _Frame) -> None:
        try:
            with memoryview(frame.buf) as mv, mv[: frame.size] as data:
                for i, (pos, n, file, offset) in enumerate(frame.fills):
                    try:
                        if self._error is None:
                            file.read_into(data[pos : pos + n], offset)
                    except BaseException:
                        for _, _, rest, _ in frame.fills[i + 1 :]:
                            rest.release()
                        raise
                    finally:
                        file.release()
                out = self._prepare(data) if self._error is None else b""
                if self._diff_hash is not None:
                    self._wait_turn(self._diff_turn, frame.index)
                    try:
                        if self._error is None:
                            self._diff_hash.update(data)
                    finally:
                        self._next_turn(self._diff_turn)
                self._wait_turn(self._out_turn, frame.index)
                if self._error is None:
                    self._sink.write(out if self._zobj is None else self._zobj.compress(data))
        except BaseException as e:
            self._fail(e)
        finally:
            self._next_turn(self._out_turn)
            self._free.put(frame.buf)

    def _wait_turn(self, turn: list[int], index: int) -> None:
        with self._turn_cv:
            while turn[0] != index and self._error is None:
                self._turn_cv.wait()

    def _next_turn(self, turn: list[int]) -> None:
        with self._turn_cv:
            turn[0] += 1
            self._turn_cv.notify_all()

    def _prepare(self, data: memoryview) -> bytes | memoryview:
        if self._compression is not Compression.ZSTD:
            return data
        cctx = getattr(self._local, "cctx", None)
        if cctx is None:  # one per thread: a compression context is not thread-safe
            import zstandard

            cctx = self._local.cctx = zstandard.ZstdCompressor(
                level=ZSTD_LEVEL, write_checksum=True, write_content_size=True
            )
        return cast(bytes, cctx.compress(data))


class _TarStream:
    """The uncompressed tar as it is produced: small pieces are packed into the current pool buffer, small files
    are read straight into it, and the data of bigger ones is left as *fills* for the thread that processes the
    buffer to read (see _OpenFile)."""

    def __init__(self, pipeline: _Pipeline, src: Path) -> None:
        self._pipeline = pipeline
        self._src = src  # for messages
        self.buf = pipeline.get_buffer()
        self.mv = memoryview(self.buf)
        self.pos = 0
        self.fills: list[_Fill] = []

    def _next_buffer(self) -> None:
        self.mv.release()
        fills, self.fills = self.fills, []
        self._pipeline.submit(self.buf, self.pos, fills)
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
        if size >= DEFER_MIN:
            self._defer_file(fd, size, path)
        else:
            left = size
            while left:
                if self.pos == BUF_SIZE:
                    self._next_buffer()
                room = min(BUF_SIZE - self.pos, left)
                n = os.preadv(fd, [self.mv[self.pos : self.pos + room]], size - left)
                if n == 0:
                    raise _shrank(self._src / os.fsdecode(path), size)
                self.pos += n
                left -= n
        pad = padding(size)
        if pad:
            self.write(_ZEROS[:pad])

    def _defer_file(self, fd: int, size: int, path: bytes) -> None:
        file = _OpenFile(fd, self._src / os.fsdecode(path), size)
        try:
            offset = 0
            while offset < size:
                if self.pos == BUF_SIZE:
                    self._next_buffer()
                room = min(BUF_SIZE - self.pos, size - offset)
                file.hold()
                self.fills.append((self.pos, room, file, offset))
                self.pos += room
                offset += room
        finally:
            file.release()  # the walk's own hold

    def flush(self) -> None:
        self.mv.release()
        if self.pos:
            fills, self.fills = self.fills, []
            self._pipeline.submit(self.buf, self.pos, fills)
        self.buf = bytearray()
        self.mv = memoryview(self.buf)
        self.pos = 0

    def discard(self) -> None:
        """After a failure: let go of the files left to read in the unsubmitted buffer."""
        for _, _, file, _ in self.fills:
            file.release()
        self.fills = []


def _shrank(path: Path, size: int) -> LayerError:
    return LayerError(f"{path} shrank while being archived (expected {size} bytes)")


class _OpenFile:
    """A file whose data the pipeline's threads read into the buffers themselves, so that a big file is read on
    the CPU that then compresses and hashes it, rather than all on the walking thread. Its own duplicate of the
    descriptor (the walk closes its fd right away) is closed when the last piece has been read."""

    __slots__ = ("fd", "holds", "lock", "path", "size")

    def __init__(self, fd: int, path: Path, size: int) -> None:
        self.fd = os.dup(fd)
        self.path = path
        self.size = size
        self.holds = 1
        self.lock = threading.Lock()

    def hold(self) -> None:
        with self.lock:
            self.holds += 1

    def release(self) -> None:
        with self.lock:
            self.holds -= 1
            last = not self.holds
        if last:
            os.close(self.fd)

    def read_into(self, view: memoryview, offset: int) -> None:
        while view:
            try:
                n = os.preadv(self.fd, [view], offset)
            except OSError as e:  # as the walk words it: this is reading the tree, not writing the layer
                raise LayerError(f"cannot archive {self.path}: {e.strerror or e}") from None
            if n == 0:
                raise _shrank(self.path, self.size)
            view = view[n:]
            offset += n


_Fill = tuple[int, int, _OpenFile, int]  # (position in the buffer, length, file, offset in the file)


class _Walker:
    def __init__(self, tar: _TarStream, src: Path, source_date_epoch: int | None) -> None:
        self.tar = tar
        self.src = src
        self.sde = source_date_epoch
        self.links: dict[tuple[int, int], bytes] = {}
        self.headers = FileHeaders()
        self.file_bytes = 0  # regular files' data archived

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
        # plain file: no xattrs, one link, fields that fit ustar, room in the current buffer), the buffer state
        # in locals (written back before anything else touches the stream) and the stat tuple unpacked at once.
        tar = self.tar
        put_header = self.headers.put
        sde = self.sde
        open_, fstat, listxattr, readv, close = os.open, os.fstat, os.listxattr, os.readv, os.close
        buf, mv, pos = tar.buf, tar.mv, tar.pos
        file_bytes = 0
        for bname, entry in entries:
            path = prefix + bname
            try:
                if not entry.is_file(follow_symlinks=False):
                    tar.pos = pos
                    if entry.is_dir(follow_symlinks=False):
                        self._dir(dfd, entry.name, path)
                    else:
                        self._other(dfd, entry, path, prefix, bname)
                    buf, mv, pos = tar.buf, tar.mv, tar.pos
                    continue
                fd = open_(bname, _FILE_FLAGS, dir_fd=dfd)
                try:
                    # index 8: the mtime's whole seconds (tv_sec, so floored like st_mtime_ns // 10**9)
                    st = fstat(fd)
                    mode, _, _, nlink, uid, gid, size, _, mtime, _ = cast(_StatInts, st)
                    if sde is not None and mtime > sde:
                        mtime = sde
                    end = pos + BLOCK + size
                    if (
                        end <= _FAST_LIMIT
                        and nlink == 1
                        and len(path) <= 100
                        and uid | gid <= MAX_OCTAL_7
                        and 0 <= mtime <= MAX_OCTAL_11
                        and mode & 0o170000 == stat.S_IFREG
                        and not listxattr(fd)
                    ):
                        put_header(buf, pos, path, mode & 0o7777, uid, gid, size, mtime)
                        if size and readv(fd, [mv[pos + BLOCK : end]]) != size:
                            # short read: the general path reads in a loop and reports a shrunk file
                            tar.pos = pos
                            tar.copy_file(fd, size, path, start=True)
                            buf, mv, pos = tar.buf, tar.mv, tar.pos
                            file_bytes += size
                            continue
                        pad = -size % BLOCK
                        buf[end : end + pad] = _ZEROS[:pad]
                        pos = end + pad
                        file_bytes += size
                    else:
                        tar.pos = pos
                        self._file_slow(fd, st, self._mtime(st), path)
                        buf, mv, pos = tar.buf, tar.mv, tar.pos
                finally:
                    close(fd)
            except LayerError:
                raise
            except OSError as e:
                raise self._fail(path, e) from None
        tar.pos = pos
        self.file_bytes += file_bytes

    def _xattrs(self, target: int | str) -> tuple[list[tuple[bytes, bytes]], dict[str, bytes]]:
        """(xattrs for the tar, overlay's own xattrs) of an fd or a /proc/self/fd path."""
        names = os.listxattr(target, follow_symlinks=False) if isinstance(target, str) else os.listxattr(target)
        if not names:
            return [], {}
        keep: list[tuple[bytes, bytes]] = []
        overlay: dict[str, bytes] = {}
        for name in sorted(names):
            try:
                value = (
                    os.getxattr(target, name, follow_symlinks=False)
                    if isinstance(target, str)
                    else os.getxattr(target, name)
                )
            except OSError:  # removed meanwhile, or not readable: nothing to archive
                continue
            if name.startswith(OVERLAY_XATTR_PREFIXES):
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
            if any(overlay.get(k) == b"y" for k in OPAQUE_XATTRS):
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
        if any(k in overlay for k in WHITEOUT_XATTRS):
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
        self.file_bytes += size

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
                    path,
                    mode,
                    st.st_uid,
                    st.st_gid,
                    0,
                    mtime,
                    typeflag,
                    devmajor=os.major(st.st_rdev),
                    devminor=os.minor(st.st_rdev),
                    xattrs=xattrs,
                )
            )
        elif fmt == stat.S_IFDIR:  # became a directory since the scan
            raise LayerError(f"{self.src / os.fsdecode(path)} changed while being archived")
        elif fmt == stat.S_IFREG:  # d_type unknown on this filesystem: take the regular-file path
            self._file(dfd, entry.name, path)
