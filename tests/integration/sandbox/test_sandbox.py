"""The RUN sandbox on real namespaces and overlayfs, with a busybox rootfs built by fixtures/base/busybox.sh.

Every test also checks (autouse fixture) that no mount and no process of the run is left in the host.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pybuild.sandbox import BindMount, Process, SandboxError, SandboxSpec, TmpfsMount, run_in_sandbox
from tests.support import mounts_under, processes_with, wait_until

REPO = Path(__file__).resolve().parents[3]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root (CI runs as root)"),
]

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    subprocess.run([str(REPO / "fixtures/base/busybox.sh"), "--rootfs-only", str(root)], check=True)
    return root


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    """A marker in the environment of the helper, init and command, to find leftovers by."""
    value = uuid.uuid4().hex
    monkeypatch.setenv("PYBUILD_SANDBOX_TEST", value)
    return value


def _processes_with(token: str) -> list[int]:
    return processes_with("PYBUILD_SANDBOX_TEST", token)


@pytest.fixture(autouse=True)
def nothing_left_behind(tmp_path: Path, token: str) -> Iterator[None]:
    yield
    wait_until(lambda: not _processes_with(token), "the step's processes to die")
    assert mounts_under(tmp_path) == []


class Box:
    """One sandbox over the busybox rootfs (plus optional extra layers) with its own upper dir."""

    def __init__(self, tmp_path: Path, rootfs: Path, token: str) -> None:
        self.tmp = tmp_path
        self.rootfs = rootfs
        self.token = token
        self.upper = tmp_path / "upper"
        self.upper.mkdir()
        self.lower_dirs: list[str] = [str(rootfs)]
        self.chdir_for_mount: Path | None = None

    def spec(self, **kw: Any) -> SandboxSpec:
        args: dict[str, Any] = {
            "lower_dirs": self.lower_dirs, "upper_dir": self.upper, "work_dir": self.tmp / "work",
            "chdir_for_mount": self.chdir_for_mount,
        }
        args.update(kw)
        return SandboxSpec(**args)

    def run(self, script: str | list[str], spec: dict[str, Any] | None = None, **proc: Any) -> tuple[int, str]:
        argv = ["/bin/sh", "-c", script] if isinstance(script, str) else script
        env = [PATH, f"PYBUILD_SANDBOX_TEST={self.token}", *proc.pop("env", [])]
        out: list[bytes] = []
        code = run_in_sandbox(self.spec(**(spec or {})), Process(argv=argv, env=env, **proc), on_output=out.append)
        shutil.rmtree(self.tmp / "work")
        return code, b"".join(out).decode()

    def upper_entries(self) -> list[str]:
        return sorted(str(p.relative_to(self.upper)) for p in self.upper.rglob("*"))


@pytest.fixture
def box(tmp_path: Path, busybox_rootfs: Path, token: str) -> Box:
    return Box(tmp_path, busybox_rootfs, token)


# -- running a process ---------------------------------------------------------------------------------


def test_output_and_exit_codes(box: Box) -> None:
    assert box.run("echo hello; echo oops >&2") == (0, "hello\noops\n")
    assert box.run("exit 3")[0] == 3
    assert box.run("kill -9 $$")[0] == 128 + 9
    assert box.run(["/bin/echo", "exec", "form"]) == (0, "exec form\n")


def test_exec_failure_is_a_sandbox_error(box: Box) -> None:
    with pytest.raises(SandboxError, match=r'exec: "no-such-cmd": executable file not found in \$PATH'):
        box.run(["no-such-cmd"])
    with pytest.raises(SandboxError, match="No such file"):
        box.run(["/no/such/file"])
    assert box.upper_entries() == []


def test_env_is_exactly_as_given_and_cwd(box: Box) -> None:
    code, out = box.run(["/usr/bin/env"], env=["B=2", "A=with spaces=and equals"], cwd="/tmp")
    assert (code, out.splitlines()) == (0, [PATH, f"PYBUILD_SANDBOX_TEST={box.token}", "B=2",
                                            "A=with spaces=and equals"])
    assert box.run(["/bin/pwd"], cwd="/tmp") == (0, "/tmp\n")


def test_missing_cwd_is_created(box: Box) -> None:
    assert box.run("pwd", cwd="/srv/app") == (0, "/srv/app\n")
    assert (box.upper / "srv/app").is_dir()


def test_stdin_is_dev_null_by_default(box: Box) -> None:
    assert box.run("cat; echo done") == (0, "done\n")


def test_uid_gid_and_groups(box: Box) -> None:
    # supplementary groups are exactly additional_gids (the caller adds the primary gid, as Docker does)
    assert box.run("id") == (0, "uid=0(root) gid=0(root)\n")
    assert box.run("id", uid=1000, gid=1000, additional_gids=[1000, 50]) == (
        0, "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n")
    code, out = box.run("touch /root/x", uid=1000, gid=1000)
    assert code != 0 and "Permission denied" in out


def test_pid_namespace_with_init_as_pid1(box: Box) -> None:
    code, out = box.run("echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'")
    assert code == 0
    pid, init_cmdline, nprocs = out.splitlines()
    assert pid == "2"
    assert "pybuild.sandbox.helper" in init_cmdline
    assert int(nprocs) <= 4  # init, sh, ls, grep: nothing from the host


def test_orphans_are_reaped(box: Box) -> None:
    script = """
    (sleep 0.2 &)
    for i in $(seq 1200); do
      ps -o comm | grep -q '^sleep$' || { echo clean; exit 0; }
      sleep 0.05
    done
    ps -o pid,stat,comm; exit 1
    """
    # The orphaned sleep becomes a child of init; once it exits, init must reap it, or it would stay in
    # the process table as a zombie and the loop would fail.
    assert box.run(textwrap.dedent(script)) == (0, "clean\n")


def test_hostname_and_etc_files(box: Box) -> None:
    spec = {"hostname": "stephost", "hosts": "10.0.0.1 somewhere\n", "resolv_conf": "nameserver 10.0.0.53\n"}
    code, out = box.run("hostname; cat /etc/hostname /etc/hosts /etc/resolv.conf", spec)
    assert (code, out) == (0, "stephost\nstephost\n10.0.0.1 somewhere\nnameserver 10.0.0.53\n")
    code, out = box.run("echo x > /etc/hosts")
    assert code != 0 and "Read-only file system" in out
    assert box.upper_entries() == []


def test_default_hosts_name_the_hostname(box: Box) -> None:
    assert "127.0.0.1\tlocalhost buildkitsandbox" in box.run("cat /etc/hosts")[1]


def test_network_none_has_only_loopback_up(box: Box) -> None:
    code, out = box.run("ls /sys/class/net; cat /sys/class/net/lo/flags", {"network": "none"})
    assert (code, out.split()[0]) == (0, "lo") and len(out.split()) == 2
    assert int(out.split()[1], 16) & 1  # IFF_UP
    code, out = box.run("ping -c 1 -W 5 127.0.0.1 >/dev/null && echo reachable", {"network": "none"})
    assert (code, out) == (0, "reachable\n")


def test_network_host_sees_host_interfaces(box: Box) -> None:
    code, out = box.run("ls /sys/class/net")
    assert code == 0
    assert sorted(out.split()) == sorted(os.listdir("/sys/class/net"))


# -- hardening ------------------------------------------------------------------------------------------


def test_masked_paths_are_empty(box: Box) -> None:
    present = [p for p in ("/proc/keys", "/proc/timer_list", "/proc/kcore", "/proc/sched_debug") if os.path.exists(p)]
    dirs = [p for p in ("/proc/acpi", "/proc/scsi", "/sys/firmware") if os.path.isdir(p)]
    assert present and dirs  # this machine exposes some of them, so the test means something
    script = " ; ".join([f"echo {p} $(cat {p} | wc -c)" for p in present]
                        + [f"echo {d} $(ls -A {d} | wc -l)" for d in dirs])
    code, out = box.run(script)
    assert code == 0
    assert out.split("\n")[:-1] == [f"{p} 0" for p in present + dirs]


def test_readonly_proc_paths(box: Box) -> None:
    code, out = box.run("echo x > /proc/sys/kernel/hostname")
    assert code != 0 and "Read-only file system" in out
    code, out = box.run("grep -E ' /proc/(sys|bus|fs|irq) ' /proc/self/mountinfo | grep -c ' ro,'")
    assert code == 0 and int(out) == sum(os.path.exists(f"/proc/{p}") for p in ("sys", "bus", "fs", "irq"))
    code, out = box.run("touch /sys/x")
    assert code != 0 and "Read-only file system" in out


def test_capabilities_are_dockers_defaults(box: Box) -> None:
    code, out = box.run("grep -E '^(Cap|NoNewPrivs)' /proc/self/status")
    assert code == 0
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert fields == {"CapInh": "0000000000000000", "CapPrm": "00000000a80425fb", "CapEff": "00000000a80425fb",
                      "CapBnd": "00000000a80425fb", "CapAmb": "0000000000000000", "NoNewPrivs": "1"}
    code, out = box.run("grep -E '^(Cap|NoNewPrivs)' /proc/self/status", uid=1000, gid=1000)
    assert code == 0
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert fields["CapEff"] == fields["CapPrm"] == "0000000000000000"
    assert fields["CapBnd"] == "00000000a80425fb" and fields["NoNewPrivs"] == "1"


def test_dev_is_minimal(box: Box) -> None:
    code, out = box.run("ls -A /dev | sort; echo ---; head -c 4 /dev/zero | od -An -tx1; echo x > /dev/null; "
                        "test -c /dev/pts/ptmx && test -L /dev/ptmx && echo pts; "
                        "touch /dev/shm/f && stat -c %a /dev/shm")
    assert code == 0
    names, rest = out.split("---\n")
    assert names.split() == sorted(["core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
                                    "stderr", "stdin", "stdout", "tty", "urandom", "zero"])
    assert rest.split() == ["00", "00", "00", "00", "pts", "1777"]


def test_tty(box: Box) -> None:
    code, out = box.run("tty; test -t 1 && echo terminal", tty=True)
    assert (code, out.replace("\r\n", "\n")) == (0, "/dev/pts/0\nterminal\n")
    assert box.run("test -t 1 || echo pipe") == (0, "pipe\n")


# -- the filesystem ---------------------------------------------------------------------------------------


def _is_whiteout(p: Path) -> bool:
    st = os.lstat(p)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_writes_land_in_upper(box: Box) -> None:
    assert box.run("echo data > /tmp/new; mkdir -p /opt/d; chmod 600 /etc/group")[0] == 0
    assert (box.upper / "tmp/new").read_text() == "data\n"
    assert (box.upper / "opt/d").is_dir()
    assert stat.S_IMODE((box.upper / "etc/group").stat().st_mode) == 0o600
    # metacopy=off: the chmod copied the whole file up, not just its metadata
    assert (box.upper / "etc/group").read_bytes() == (box.rootfs / "etc/group").read_bytes()
    assert not (box.rootfs / "tmp/new").exists()


def test_deletes_and_renames_make_whiteouts_without_overlay_xattrs(box: Box) -> None:
    script = "rm /etc/passwd && mv /home/app /home/moved && rm -r /var && mkdir /var && touch /var/fresh"
    assert box.run(script)[0] == 0
    assert _is_whiteout(box.upper / "etc/passwd")
    assert _is_whiteout(box.upper / "home/app")  # redirect_dir=off: a whiteout plus a real copy
    assert (box.upper / "home/moved").is_dir()
    assert os.getxattr(box.upper / "var", "trusted.overlay.opaque") == b"y"
    for p in [box.upper, *box.upper.rglob("*")]:
        names = set(os.listxattr(p, follow_symlinks=False))
        assert not names & {"trusted.overlay.redirect", "trusted.overlay.metacopy", "trusted.overlay.uuid"}, p


def test_etc_files_and_mountpoints_are_not_left_in_upper(box: Box, tmp_path: Path) -> None:
    assert box.run("true")[0] == 0
    assert box.upper_entries() == []
    src = tmp_path / "src"
    src.mkdir()
    mounts = [BindMount(src, "/mnt/in/src"), TmpfsMount("/scratch/t")]
    assert box.run("echo a > /scratch/t/f; echo b > /etc/mine", {"mounts": mounts})[0] == 0
    assert box.upper_entries() == ["etc", "etc/mine"]


def test_stubs_in_a_bare_rootfs_are_removed(box: Box, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    (bare / "bin").mkdir(parents=True)
    shutil.copy2(box.rootfs / "bin/busybox", bare / "bin/busybox")
    os.symlink("busybox", bare / "bin/sh")
    box.lower_dirs = [str(bare)]
    code, out = box.run("/bin/busybox ls -A / /etc | /bin/busybox tr '\\n' ' '")
    assert code == 0 and "hosts" in out and "proc" in out
    assert box.upper_entries() == []


def test_stub_over_a_lower_whiteout_leaves_nothing(box: Box, tmp_path: Path) -> None:
    """A lower layer deleted /etc/hostname and /srv: our stubs go over those whiteouts and must go away
    again without leaving a file or whiteout of their own (the lower whiteout still hides the path)."""
    base = tmp_path / "base"
    (base / "etc").mkdir(parents=True)
    (base / "etc/hostname").write_text("from the base layer\n")
    (base / "srv/data").mkdir(parents=True)
    deleted = tmp_path / "deleted"
    (deleted / "etc").mkdir(parents=True)
    os.mknod(deleted / "etc/hostname", stat.S_IFCHR, 0)
    os.mknod(deleted / "srv", stat.S_IFCHR, 0)
    box.lower_dirs = [str(deleted), str(base), str(box.rootfs)]
    code, out = box.run("cat /etc/hostname; ls -A /srv", {"mounts": [TmpfsMount("/srv/t")]})
    assert (code, out) == (0, "buildkitsandbox\nt\n")
    assert box.upper_entries() == []
    # the upper dir is reused: the base layer's /srv must still be hidden
    assert box.run("test -e /srv || echo gone") == (0, "gone\n")


def test_hostile_symlinks_stay_inside_the_rootfs(box: Box, tmp_path: Path) -> None:
    host_etc, host_proc = tmp_path / "host-etc", tmp_path / "host-proc"
    host_etc.mkdir()
    host_proc.mkdir()
    evil = tmp_path / "evil"
    evil.mkdir()
    # absolute links as an image may carry them: they must resolve inside the rootfs, not on the host
    os.symlink(str(host_etc), evil / "etc")
    os.symlink(str(host_proc), evil / "proc")
    box.lower_dirs = [str(evil), str(box.rootfs)]
    code, out = box.run("cat /etc/hostname; test -e /proc/self/status && echo proc")
    assert (code, out) == (0, "buildkitsandbox\nproc\n")
    assert list(host_etc.iterdir()) == [] and list(host_proc.iterdir()) == []
    assert box.upper_entries() == []


def test_plain_rootfs_without_overlay(box: Box, tmp_path: Path) -> None:
    rootfs = tmp_path / "plain"
    shutil.copytree(box.rootfs, rootfs, symlinks=True)
    os.rmdir(rootfs / "proc")
    code, out = box.run("echo hi > /root/f; cat /etc/hostname", {"lower_dirs": [], "upper_dir": rootfs})
    assert (code, out) == (0, "buildkitsandbox\n")
    assert (rootfs / "root/f").read_text() == "hi\n"
    assert not (rootfs / "etc/hostname").exists() and not (rootfs / "proc").exists()


def test_deep_layer_stack_through_short_links(box: Box, tmp_path: Path) -> None:
    layers = tmp_path / ("layers-with-a-deliberately-long-directory-name-" + "x" * 40)
    links = tmp_path / "l"
    links.mkdir()
    names = []
    for i in range(150):
        d = layers / f"{i:03d}-{'y' * 60}"
        d.mkdir(parents=True)
        (d / f"layer-{i:03d}").write_text(str(i))
        (d / "top").write_text(str(i))
        os.symlink(d, links / f"{i:03d}")
        names.append(f"l/{i:03d}")
    box.chdir_for_mount = tmp_path
    # topmost first: layer 149 is on top; the busybox rootfs at the bottom
    box.lower_dirs = [*reversed(names), str(box.rootfs)]
    code, out = box.run("cat /top; echo; ls / | grep -c '^layer-'")
    assert (code, out) == (0, "149\n150\n")
    # the same stack by absolute path does not fit one page of mount options: a clear error
    box.lower_dirs = [str(layers / f"{i:03d}-{'y' * 60}") for i in reversed(range(150))] + [str(box.rootfs)]
    box.chdir_for_mount = None
    with pytest.raises(SandboxError, match="overlay mount options"):
        box.run("true")


def test_bind_mounts_ro_rw_and_tmpfs(box: Box, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "file").write_text("from host\n")
    single = tmp_path / "single.txt"
    single.write_text("one file\n")
    mounts = [BindMount(ro, "/ro"), BindMount(rw, "/rw", readonly=False), BindMount(single, "/etc/single.txt"),
              TmpfsMount("/tmp/scratch", size=1 << 20)]
    script = """
    cat /ro/file; touch /ro/x 2>&1 | grep -o 'Read-only file system'
    echo written > /rw/out
    cat /etc/single.txt
    echo t > /tmp/scratch/t && df -k /tmp/scratch | awk 'NR==2 {print $2}'
    """
    code, out = box.run(textwrap.dedent(script), {"mounts": mounts})
    assert (code, out) == (0, "from host\nRead-only file system\none file\n1024\n")
    assert (rw / "out").read_text() == "written\n"
    assert list(ro.iterdir()) == [ro / "file"]
    assert box.upper_entries() == []


def test_bad_bind_source_is_an_error(box: Box, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="does not exist"):
        box.run("true", {"mounts": [BindMount(tmp_path / "nope", "/x")]})
    assert box.upper_entries() == []


# -- stopping ---------------------------------------------------------------------------------------------

CALLER = """
import sys
from pathlib import Path
from pybuild.sandbox import Process, SandboxSpec, run_in_sandbox

lower, upper, work, token, script, tty = sys.argv[1:7]
def show(b):
    sys.stdout.buffer.write(b)
    sys.stdout.flush()
try:
    code = run_in_sandbox(
        SandboxSpec(lower_dirs=[lower], upper_dir=Path(upper), work_dir=Path(work)),
        Process(argv=["/bin/sh", "-c", script], env=["PATH=/bin:/usr/bin", "PYBUILD_SANDBOX_TEST=" + token],
                stdin=True, tty=tty == "tty"),
        on_output=show,
    )
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print("exit", code, flush=True)
"""


def _caller(
    box: Box, script: str, stdin: int | None = subprocess.DEVNULL, tty: bool = False
) -> subprocess.Popen[bytes]:
    """A separate process calling run_in_sandbox, so that it can be signalled like a user's pybuild."""
    return subprocess.Popen(
        [sys.executable, "-c", CALLER, str(box.rootfs), str(box.upper), str(box.tmp / "work"), box.token, script,
         "tty" if tty else "pipes"],
        stdout=subprocess.PIPE, stdin=stdin,
    )


def _wait_for_line(p: subprocess.Popen[bytes], expected: bytes) -> None:
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line == expected, line


def test_sigterm_to_the_caller_kills_the_step(box: Box) -> None:
    p = _caller(box, "echo started; exec sleep 1000")
    _wait_for_line(p, b"started\n")
    assert _processes_with(box.token)
    # while the step runs, its mounts live only in its own mount namespace
    assert mounts_under(box.tmp) == [] and mounts_under(box.rootfs) == []
    p.send_signal(signal.SIGTERM)
    assert p.wait() == -signal.SIGTERM
    wait_until(lambda: not _processes_with(box.token), "the sleep to die")
    assert p.stdout is not None
    p.stdout.close()


def test_ctrl_c_in_the_caller_kills_the_step_and_cleans_up(box: Box) -> None:
    p = _caller(box, "trap '' INT TERM; echo started; sleep 1000")
    _wait_for_line(p, b"started\n")
    p.send_signal(signal.SIGINT)
    assert p.wait() == 130
    _wait_for_line(p, b"interrupted\n")
    assert not _processes_with(box.token)
    assert box.upper_entries() == []  # the helper still removed its stubs
    assert p.stdout is not None
    p.stdout.close()


def test_sigterm_to_the_helper_is_forwarded_to_the_command(box: Box) -> None:
    p = _caller(box, "trap 'echo got TERM; exit 7' TERM; echo started; while :; do sleep 0.1; done")
    _wait_for_line(p, b"started\n")
    helpers = [pid for pid in _processes_with(box.token)
               if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(p.pid)]
    assert len(helpers) == 1
    os.kill(helpers[0], signal.SIGTERM)
    assert p.wait() == 0
    assert p.stdout is not None
    assert p.stdout.read() == b"got TERM\nexit 7\n"
    p.stdout.close()


def test_stdin_is_passed_through(box: Box) -> None:
    p = _caller(box, "read line; echo got $line", stdin=subprocess.PIPE)
    out, _ = p.communicate(b"hello\n")
    assert (p.returncode, out) == (0, b"got hello\nexit 0\n")


def test_tty_with_stdin(box: Box) -> None:
    p = _caller(box, "cat; echo done", stdin=subprocess.PIPE, tty=True)
    out, _ = p.communicate(b"hello\n")
    # the terminal echoes the input, cat repeats it, and end of input arrives as the EOF character
    assert (p.returncode, out) == (0, b"hello\r\nhello\r\ndone\r\nexit 0\n")
