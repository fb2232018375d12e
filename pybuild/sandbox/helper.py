"""The sandbox helper process: `python -m pybuild.sandbox.helper CFG_FD STATUS_FD PARENT_PID`.

Three processes take part in a run:
  helper   (this module's main) stays in the host's mount namespace. It unshares a pid namespace,
           forks `init`, waits for it, then removes the mountpoint stubs init created from the upper
           dir and writes one JSON status line ({"exit_code": n} or {"error": ...}) to STATUS_FD.
  init     pid 1 of the new pid namespace. It unshares mount/uts/ipc(/net) namespaces, builds the root
           filesystem, pivot_roots into it, forks the command and reaps zombies until the command
           exits; it forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the command.
  command  drops capabilities, sets no_new_privs, switches user, chdirs and execs argv.
Death propagates downwards: the helper has PR_SET_PDEATHSIG=SIGKILL towards the caller, init towards
the helper, and when init (pid 1) dies the kernel kills everything else in its pid namespace. The
mount namespace dies with its last process, so no mount ever outlives the run.

Paths inside the rootfs come from an image and may be hostile symlinks: every lookup under the new
root goes through openat2(RESOLVE_IN_ROOT) and mounts target /proc/self/fd/N, never a joined string.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import stat
import struct
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pybuild.model.overlayfs import OPAQUE_XATTR
from pybuild.sandbox import _linux as L
from pybuild.sandbox.overlay import OverlayError, mount_layers

# Docker's masked and read-only paths (moby oci/defaults.go).
_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
              ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_IN_ROOT = L.RESOLVE_IN_ROOT | L.RESOLVE_NO_MAGICLINKS
_BENEATH_NOFOLLOW = L.RESOLVE_BENEATH | L.RESOLVE_NO_SYMLINKS | L.RESOLVE_NO_MAGICLINKS | L.RESOLVE_NO_XDEV


class SetupError(Exception):
    """A failure to report to the caller as a SandboxError (message + optional hint)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def _send(fd: int, msg: dict[str, Any]) -> None:
    # One write per message, small enough (< PIPE_BUF) to be atomic with several writers.
    data = (json.dumps(msg) + "\n").encode()
    with contextlib.suppress(OSError):
        os.write(fd, data)


def _error_msg(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, SetupError):
        return {"error": str(exc), "hint": exc.hint}
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return {"error": f"sandbox setup failed: {exc.strerror}{where}"}
    return {"error": f"sandbox setup failed: {type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------------------------------------------
# helper


def main(argv: list[str]) -> int:
    cfg_fd, status_fd, parent = int(argv[0]), int(argv[1]), int(argv[2])
    L.prctl(L.PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # the caller died before the line above took effect
        return 1
    try:
        with os.fdopen(cfg_fd, "rb") as f:
            cfg = json.loads(f.read())
        code = _supervise(cfg, status_fd)
    except BaseException as exc:  # everything must reach the caller as a status line
        _send(status_fd, _error_msg(exc))
        return 1
    _send(status_fd, {"exit_code": code} if isinstance(code, int) else code)
    return 0


def _supervise(cfg: dict[str, Any], status_fd: int) -> int | dict[str, Any]:
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    alive_r, alive_w = os.pipe2(os.O_CLOEXEC)
    L.unshare(L.CLONE_NEWPID)
    init_pid = os.fork()
    if init_pid == 0:
        os.close(report_r)
        os.close(alive_w)
        os.close(status_fd)
        code = 1
        try:
            code = _init(cfg, report_w, alive_r)
        except BaseException as exc:
            _send(report_w, _error_msg(exc))
        os._exit(code)
    os.close(report_w)
    os.close(alive_r)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init_pid, signum)

    def abort(_signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init_pid, signal.SIGKILL)

    for sig in _FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    signal.signal(signal.SIGUSR1, abort)

    # init and the command hold the write end until they are gone, so EOF means the step is over.
    chunks = []
    while chunk := os.read(report_r, 65536):
        chunks.append(chunk)
    _, status = os.waitpid(init_pid, 0)
    os.close(alive_w)
    stubs: list[dict[str, Any]] = []
    error: dict[str, Any] | None = None
    for line in b"".join(chunks).splitlines():
        msg = json.loads(line)
        if "stubs" in msg:
            stubs.extend(msg["stubs"])
        elif "error" in msg and error is None:
            error = msg
    _remove_stubs(Path(cfg["upper_dir"]), stubs)
    if error is not None:
        return error
    return _exit_code(status)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _remove_stubs(upper: Path, stubs: list[dict[str, Any]]) -> None:
    """Undo the mountpoints init created, working on the upper dir directly (never through overlay).

    A stub is removed only if it still looks like what we made (an empty file or empty directory), or
    is a whiteout: the path was absent from the merged lower layers when we created it, so a whiteout
    there has nothing to hide (a lower layer's own whiteout, if any, keeps doing that job).
    Copied-up parents we caused are removed when empty, not opaque, and unchanged in mode/owner.
    The step may have replaced directories with symlinks, so nothing here follows one.
    """
    try:
        upper_fd = os.open(upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for stub in reversed(stubs):
            parent, _, name = stub["path"].rpartition("/")
            try:
                pfd = L.openat2(upper_fd, parent or ".", os.O_PATH | os.O_DIRECTORY, _BENEATH_NOFOLLOW)
            except OSError:
                continue
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
                if whiteout or (stub["kind"] == "file" and stat.S_ISREG(st.st_mode) and st.st_size == 0):
                    os.unlink(name, dir_fd=pfd)
                elif stat.S_ISDIR(st.st_mode) and (
                    stub["kind"] == "dir" or (stub["kind"] == "copyup" and _pristine_copyup(pfd, name, st, stub))
                ):
                    os.rmdir(name, dir_fd=pfd)  # fails, as it should, if the step put something inside
            except OSError:
                pass  # gone already, not empty, or changed by the step: keep it
            finally:
                os.close(pfd)
    finally:
        os.close(upper_fd)


def _pristine_copyup(pfd: int, name: str, st: os.stat_result, stub: dict[str, Any]) -> bool:
    if (st.st_mode, st.st_uid, st.st_gid) != (stub["mode"], stub["uid"], stub["gid"]):
        return False
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        if os.listdir(fd):
            return False
        try:
            return os.getxattr(fd, OPAQUE_XATTR) != b"y"
        except OSError:
            return True
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------
# init (pid 1)


def _init(cfg: dict[str, Any], report_fd: int, alive_fd: int) -> int:
    L.prctl(L.PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if select.select([alive_fd], [], [], 0)[0]:  # EOF: the helper died before the line above
        return 1
    os.close(alive_fd)
    flags = L.CLONE_NEWNS | L.CLONE_NEWUTS | L.CLONE_NEWIPC
    if cfg["network"] == "none":
        flags |= L.CLONE_NEWNET
    L.unshare(flags)
    # Nothing we mount may propagate back to the host (or from it).
    L.mount(None, "/", None, L.MS_REC | L.MS_PRIVATE)
    socket.sethostname(cfg["hostname"])
    if cfg["network"] == "none":
        L.loopback_up()

    rootfs = _RootfsBuilder(cfg)
    try:
        rootfs.build()
    finally:
        # Even after a failure, the helper must learn what to remove from the upper dir.
        _send(report_fd, {"stubs": rootfs.stubs})

    os.chdir(rootfs.root)
    # pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only the new root
    # and needs no put_old directory (which would otherwise end up in the layer).
    L.pivot_root(".", ".")
    L.umount2(".", L.MNT_DETACH)
    os.chdir("/")
    return _run_command(cfg, report_fd)


class _RootfsBuilder:
    """Mounts the step's root filesystem at <work_dir>/rootfs, recording every path it creates."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.work = Path(cfg["work_dir"])
        self.root = str(self.work / "rootfs")
        self.overlay = bool(cfg["lower_dirs"])
        self.stubs: list[dict[str, Any]] = []
        self.root_fd = -1

    def build(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        self._mount_root()
        self.root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._mount_proc()
        self._mount_dev()
        self._mount_sys()
        self._mount_etc_files()
        for m in self.cfg["mounts"]:
            self._mount_user(m)
        for path in _MASKED_PATHS:
            self._mask(path)
        for path in _READONLY_PATHS:
            self._readonly(path)

    # -- the root -----------------------------------------------------------------------------------

    def _mount_root(self) -> None:
        upper = self.cfg["upper_dir"]
        if not self.overlay:
            L.mount(upper, self.root, None, L.MS_BIND | L.MS_REC)
            return
        ovl_work = self.work / "overlay-work"
        ovl_work.mkdir(exist_ok=True)
        try:
            mount_layers(str(self.root), self.cfg["lower_dirs"], upper=upper, work=str(ovl_work),
                         chdir=self.cfg["chdir_for_mount"])
        except OverlayError as exc:
            raise SetupError(exc.message, hint=exc.hint) from exc

    # -- path handling ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _target(self, path: str, kind: str | None, record: bool = True) -> Iterator[str]:
        """Yield a mountable name (/proc/self/fd/N) for PATH inside the root, creating it if missing."""
        fd = self._resolve(path, kind, record)
        try:
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)

    def _resolve(self, path: str, kind: str | None, record: bool = True, depth: int = 0) -> int:
        """Open PATH inside the root (O_PATH); create it (kind 'dir' or 'file') and its parents if missing.

        Like runc's securejoin: a dangling symlink on the way is followed inside the root and its
        target created there, never on the host.
        """
        rel = path.strip("/") or "."
        try:
            return L.openat2(self.root_fd, rel, os.O_PATH, _IN_ROOT)
        except FileNotFoundError:
            if kind is None:
                raise
        if depth > 40:
            raise SetupError(f"too many levels of symbolic links in {path!r} inside the image")
        parent, _, name = rel.rpartition("/")
        pfd = self._resolve(parent or ".", "dir", record, depth + 1)
        try:
            real_parent = self._relpath(pfd)
            try:
                st: os.stat_result | None = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode):
                target = os.readlink(name, dir_fd=pfd)
                joined = target if target.startswith("/") else f"{real_parent}/{target}"
                return self._resolve(joined, kind, record, depth + 1)
            if record:
                self._record_copyup(real_parent)
            if kind == "dir":
                os.mkdir(name, 0o755, dir_fd=pfd)
            else:
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=pfd))
            if record:
                self.stubs.append({"path": f"{real_parent}/{name}".lstrip("/"), "kind": kind})
            return L.openat2(pfd, name, os.O_PATH | os.O_NOFOLLOW, L.RESOLVE_BENEATH | L.RESOLVE_NO_SYMLINKS)
        finally:
            os.close(pfd)

    def _relpath(self, fd: int) -> str:
        real = os.readlink(f"/proc/self/fd/{fd}")
        if real == self.root:
            return ""
        if not real.startswith(self.root + "/"):
            raise SetupError(f"sandbox path {real!r} escaped the root filesystem")
        return real[len(self.root) :]

    def _record_copyup(self, real_parent: str) -> None:
        """Remember lower-only ancestors that creating a stub below them will copy up into the upper dir.

        Called before the stub is created, while the overlay still shows these directories' lower
        metadata; cleanup removes them again if the step left them empty and unchanged.
        """
        if not self.overlay:
            return
        upper_fd = os.open(self.cfg["upper_dir"], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            parts = [p for p in real_parent.split("/") if p]
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                try:
                    os.close(L.openat2(upper_fd, sub, os.O_PATH, _BENEATH_NOFOLLOW))
                    continue
                except FileNotFoundError:
                    pass
                st = os.stat(sub, dir_fd=self.root_fd, follow_symlinks=False)
                self.stubs.append({"path": sub, "kind": "copyup", "mode": st.st_mode, "uid": st.st_uid,
                                   "gid": st.st_gid})
        finally:
            os.close(upper_fd)

    # -- kernel filesystems -------------------------------------------------------------------------

    def _mount_proc(self) -> None:
        with self._target("/proc", "dir") as t:
            L.mount("proc", t, "proc", L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC)

    def _mount_dev(self) -> None:
        with self._target("/dev", "dir") as t:
            L.mount("tmpfs", t, "tmpfs", L.MS_NOSUID | L.MS_STRICTATIME, "mode=755,size=65536k")
        dev = self._resolve("/dev", None)
        try:
            for name, major, minor in _DEVICES:
                os.mknod(name, 0o666 | stat.S_IFCHR, os.makedev(major, minor), dir_fd=dev)
                os.chmod(name, 0o666, dir_fd=dev)  # mknod's mode is filtered by the umask
            for name, target in _DEV_LINKS:
                os.symlink(target, name, dir_fd=dev)
            for name in ("pts", "shm", "mqueue"):
                os.mkdir(name, 0o755, dir_fd=dev)
        finally:
            os.close(dev)
        with self._target("/dev/pts", None) as t:
            L.mount("devpts", t, "devpts", L.MS_NOSUID | L.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
        with self._target("/dev/shm", None) as t:
            L.mount("shm", t, "tmpfs", L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC, "mode=1777,size=65536k")
        with self._target("/dev/mqueue", None) as t:
            L.mount("mqueue", t, "mqueue", L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC)

    def _mount_sys(self) -> None:
        flags = L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC | L.MS_RDONLY
        with self._target("/sys", "dir") as t:
            try:
                L.mount("sysfs", t, "sysfs", flags)
            except PermissionError:
                # sysfs may only be mounted by the owner of the net namespace; fall back to the host's.
                L.mount("/sys", t, None, L.MS_BIND | L.MS_REC)
                L.mount(None, t, None, flags | L.MS_BIND | L.MS_REMOUNT)

    def _mount_etc_files(self) -> None:
        files = {"hosts": self.cfg["hosts"], "resolv.conf": self.cfg["resolv_conf"],
                 "hostname": self.cfg["hostname"] + "\n"}
        src_dir = self.work / "etc"
        src_dir.mkdir(exist_ok=True)
        for name, content in files.items():
            src = src_dir / name
            src.write_text(content)
            src.chmod(0o644)
            with self._target(f"/etc/{name}", "file") as t:
                if not stat.S_ISREG(os.stat(t).st_mode):
                    raise SetupError(f"/etc/{name} in the image is not a regular file")
                L.mount(str(src), t, None, L.MS_BIND)
            self._remount(f"/etc/{name}", L.MS_RDONLY | L.MS_NOSUID | L.MS_NODEV)

    def _mount_user(self, m: dict[str, Any]) -> None:
        if m["type"] == "tmpfs":
            data = "mode=1777" + (f",size={m['size']}" if m.get("size") else "")
            with self._target(m["target"], "dir") as t:
                L.mount("tmpfs", t, "tmpfs", L.MS_NOSUID | L.MS_NODEV, data)
            return
        source = m["source"] if m["type"] == "bind" else self._mount_view(m)
        try:
            is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as exc:
            raise SetupError(f"bind mount source {source} does not exist") from exc
        with self._target(m["target"], "dir" if is_dir else "file") as t:
            L.mount(source, t, None, L.MS_BIND | L.MS_REC)
        if m["readonly"]:
            self._remount(m["target"], L.MS_RDONLY)

    def _mount_view(self, m: dict[str, Any]) -> str:
        """Mount an image view (for OverlayMount) under the work dir; return the host path of its `source`."""
        self._views = getattr(self, "_views", 0) + 1
        base = self.work / f"view-{self._views}"
        mnt = base / "merged"
        mnt.mkdir(parents=True)
        upper = work = None
        if not m["readonly"]:  # rw: writes land in a throw-away upper dir, never in the layers
            upper, work = base / "upper", base / "work"
            upper.mkdir()
            work.mkdir()
        try:
            mount_layers(str(mnt), m["lower_dirs"], upper=str(upper) if upper else None,
                         work=str(work) if work else None, chdir=self.cfg["chdir_for_mount"])
        except OverlayError as exc:
            raise SetupError(exc.message, hint=exc.hint) from exc
        # The source path is resolved inside the view, so a symlink in the image cannot point outside it.
        root_fd = os.open(str(mnt), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = L.openat2(root_fd, m["source"].lstrip("/") or ".", os.O_PATH | os.O_CLOEXEC,
                           L.RESOLVE_IN_ROOT | L.RESOLVE_NO_MAGICLINKS)
        finally:
            os.close(root_fd)
        return f"/proc/self/fd/{fd}"

    def _mask(self, path: str) -> None:
        try:
            fd = self._resolve(path, None)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            t = f"/proc/self/fd/{fd}"
            if stat.S_ISDIR(os.stat(t).st_mode):
                L.mount("tmpfs", t, "tmpfs", L.MS_RDONLY)
            else:
                L.mount("/dev/null", t, None, L.MS_BIND)
        finally:
            os.close(fd)

    def _readonly(self, path: str) -> None:
        try:
            fd = self._resolve(path, None)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            t = f"/proc/self/fd/{fd}"
            L.mount(t, t, None, L.MS_BIND | L.MS_REC)
        finally:
            os.close(fd)
        self._remount(path, L.MS_RDONLY | L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC)

    def _remount(self, path: str, flags: int) -> None:
        """Change the flags of the bind mount at PATH (only the top mount; hence a fresh lookup)."""
        with self._target(path, None) as t:
            L.mount(None, t, None, L.MS_BIND | L.MS_REMOUNT | flags)


# ---------------------------------------------------------------------------------------------------
# the command and pid 1's loop


def _run_command(cfg: dict[str, Any], report_fd: int) -> int:
    master = -1
    if cfg["tty"]:
        master, slave = os.openpty()
        with contextlib.suppress(OSError):
            fcntl.ioctl(slave, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, struct.pack("4H", 0, 0, 0, 0)))
    pid = os.fork()
    if pid == 0:
        try:
            if cfg["tty"]:
                os.close(master)
                os.setsid()
                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                for fd in (0, 1, 2):
                    os.dup2(slave, fd)
                if slave > 2:
                    os.close(slave)
            else:
                os.setsid()
            _exec(cfg)
        except BaseException as exc:
            _send(report_fd, _error_msg(exc))
        os._exit(127)
    if cfg["tty"]:
        os.close(slave)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in _FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    os.close(report_fd)
    if master >= 0:
        return _relay_tty(master, pid, cfg["stdin"])
    return _reap_until(pid)


def _reap_until(pid: int) -> int:
    """As pid 1: reap every child (orphans are re-parented to us) until the command exits."""
    while True:
        child, status = os.waitpid(-1, 0)
        if child == pid:
            return _exit_code(status)


def _relay_tty(master: int, pid: int, stdin: bool) -> int:
    """Copy between the pty and our stdin/stdout until the command exits, reaping as we go."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sources = [master, wake_r] + ([0] if stdin else [])
    code: int | None = None
    while True:
        while code is None:
            try:
                child, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if child == 0:
                break
            if child == pid:
                code = _exit_code(status)
        ready = select.select(sources, [], [], 0 if code is not None else None)[0]
        if code is not None and master not in ready:
            return code  # the command is gone and its output drained
        for fd in ready:
            if fd == wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: every slave fd is closed
                data = b""
            if fd == master:
                if not data:
                    sources.remove(master)
                    if code is None:
                        return _reap_until(pid)
                    return code
                _write_all(1, data)
            elif not data:
                sources.remove(0)
                _write_all(master, b"\x04")  # end of input: the terminal's EOF character (VEOF)
            else:
                _write_all(master, data)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _exec(cfg: dict[str, Any]) -> None:
    """In the command process: become the step's user with Docker's privileges, then exec."""
    for sig in range(1, signal.NSIG):
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE/SIGXFSZ; exec keeps "ignored"
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if not cfg["stdin"] and not cfg["tty"]:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    os.umask(0o022)
    cwd = cfg["cwd"]
    if not os.path.isdir(cwd):
        os.makedirs(cwd, 0o755, exist_ok=True)  # as runc does, before dropping privileges

    keep = set(cfg["capabilities"])
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last_cap + 1):
        if cap not in keep:
            L.prctl(L.PR_CAPBSET_DROP, cap)
    L.prctl(L.PR_SET_NO_NEW_PRIVS, 1)
    os.setgroups(cfg["additional_gids"])
    os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
    os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    mask = sum(1 << c for c in keep if c <= last_cap)
    # Root keeps the default set; anyone else has none (setuid already cleared them).
    L.capset(mask if cfg["uid"] == 0 else 0, mask if cfg["uid"] == 0 else 0, 0)
    L.prctl(L.PR_CAP_AMBIENT, L.PR_CAP_AMBIENT_CLEAR_ALL)
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise SetupError(f"cannot change to working directory {cwd!r}: {exc.strerror}") from exc

    env = dict(e.split("=", 1) for e in cfg["env"])
    argv = cfg["argv"]
    path = _lookup(argv[0], env.get("PATH", _DEFAULT_PATH))
    try:
        os.execve(path, argv, env)
    except OSError as exc:
        raise SetupError(f'exec: "{argv[0]}": {exc.strerror}') from exc


def _lookup(name: str, search: str) -> str:
    if "/" in name:
        return name
    for d in search.split(":"):
        candidate = os.path.join(d or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise SetupError(f'exec: "{name}": executable file not found in $PATH')


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
