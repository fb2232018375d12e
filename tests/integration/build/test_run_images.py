"""CMD/ENTRYPOINT in built images (Docker's table, including ENTRYPOINT resetting an inherited CMD) and
`pybuild run` on them: commands, --entrypoint, exit codes, -e/--env-file, -v, -w, -u, VOLUME, cleanup.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from buildtest_util import image, lib_build, write_case

from pybuild.runtime.container import RunError, RunRequest, VolumeSpec, run
from pybuild.store.store import Store
from tests.conftest import run_cli
from tests.support import mounts_under

EP = {"none": "", "exec": 'ENTRYPOINT ["/bin/echo", "E"]', "shell": "ENTRYPOINT echo E"}
CMD = {"none": "", "exec": 'CMD ["/bin/echo", "C"]', "shell": "CMD echo C"}

# (entrypoint form, cmd form) -> (config Entrypoint, config Cmd, output of `run IMAGE`, output of `run IMAGE echo X`)
TABLE = {
    ("none", "none"): (None, ["sh"], "", "X\n"),  # busybox's inherited CMD ["sh"] reads an empty stdin
    ("none", "exec"): (None, ["/bin/echo", "C"], "C\n", "X\n"),
    ("none", "shell"): (None, ["/bin/sh", "-c", "echo C"], "C\n", "X\n"),
    ("exec", "none"): (["/bin/echo", "E"], None, "E\n", "E echo X\n"),
    ("exec", "exec"): (["/bin/echo", "E"], ["/bin/echo", "C"], "E /bin/echo C\n", "E echo X\n"),
    ("exec", "shell"): (["/bin/echo", "E"], ["/bin/sh", "-c", "echo C"], "E /bin/sh -c echo C\n", "E echo X\n"),
    ("shell", "none"): (["/bin/sh", "-c", "echo E"], None, "E\n", "E\n"),
    ("shell", "exec"): (["/bin/sh", "-c", "echo E"], ["/bin/echo", "C"], "E\n", "E\n"),
    ("shell", "shell"): (["/bin/sh", "-c", "echo E"], ["/bin/sh", "-c", "echo C"], "E\n", "E\n"),
}


@pytest.fixture(scope="module")
def table_images(busybox_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    tmp = tmp_path_factory.mktemp("cmd-table")
    names = {}
    for (ep, cmd) in TABLE:
        name = f"table-{ep}-{cmd}:1"
        ctx = write_case(tmp, f"FROM busybox:latest\n{EP[ep]}\n{CMD[cmd]}\n")
        lib_build(busybox_store, ctx, tags=(name,))
        names[(ep, cmd)] = name
    return names


def _run(root: Path, capfd: pytest.CaptureFixture[str], **kw: object) -> tuple[int, str]:
    capfd.readouterr()
    with Store.open(root) as store:
        code = run(store, RunRequest(**kw))  # type: ignore[arg-type]
    out = capfd.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("combo", list(TABLE), ids=[f"{e}-{c}" for e, c in TABLE])
def test_cmd_entrypoint_table(busybox_store: Path, table_images: dict[tuple[str, str], str],
                              combo: tuple[str, str], capfd: pytest.CaptureFixture[str]) -> None:
    name = table_images[combo]
    entry, cmd, plain_out, with_cmd_out = TABLE[combo]
    cfg = image(busybox_store, name).config.config
    assert (list(cfg.entrypoint) if cfg.entrypoint is not None else None) == entry
    assert (list(cfg.cmd) if cfg.cmd is not None else None) == cmd
    assert _run(busybox_store, capfd, image=name) == (0, plain_out)
    assert _run(busybox_store, capfd, image=name, command=("echo", "X")) == (0, with_cmd_out)
    # --entrypoint replaces ENTRYPOINT and drops the image's CMD.
    assert _run(busybox_store, capfd, image=name, entrypoint="/bin/echo") == (0, "\n")
    assert _run(busybox_store, capfd, image=name, entrypoint="/bin/echo", command=("Y",)) == (0, "Y\n")


def test_entrypoint_keeps_cmd_of_same_stage_but_resets_inherited(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, """\
FROM busybox:latest AS parent
CMD ["parent-cmd"]

FROM parent AS child
ENTRYPOINT ["/bin/echo"]

FROM busybox:latest AS same
CMD ["kept"]
ENTRYPOINT ["/bin/echo"]
""")
    lib_build(busybox_store, ctx, tags=("ep-child:1",), target="child")
    lib_build(busybox_store, ctx, tags=("ep-same:1",), target="same")
    assert image(busybox_store, "ep-child:1").config.config.cmd is None
    assert image(busybox_store, "ep-same:1").config.config.cmd == ("kept",)


@pytest.fixture(scope="module")
def run_image(busybox_store: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    ctx = write_case(tmp_path_factory.mktemp("run-image"), """\
FROM busybox:latest
ENV FROM_IMAGE=image OVERRIDE=image
WORKDIR /work
RUN echo in-image > /work/file && mkdir /vol && echo seeded > /vol/seed && chown -R app:app /vol
VOLUME /vol
USER app
CMD ["sh", "-c", "id -un; pwd"]
""")
    lib_build(busybox_store, ctx, tags=("run-me:1",))
    return "run-me:1"


def test_run_exit_codes_and_missing_image(busybox_store: Path, run_image: str,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    assert _run(busybox_store, capfd, image=run_image, command=("sh", "-c", "exit 5")) == (5, "")
    with pytest.raises(RunError) as info:
        _run(busybox_store, capfd, image="no-such-image:1")
    assert info.value.exit_code == 125
    p = run_cli(["--root", str(busybox_store), "run", "--rm", run_image, "sh", "-c", "echo out; exit 7"])
    assert (p.returncode, p.stdout) == (7, "out\n")
    p = run_cli(["--root", str(busybox_store), "run", "no-such-image:1"])
    assert p.returncode == 125 and "no-such-image" in p.stderr and "Traceback" not in p.stderr


def test_run_defaults_env_user_workdir(busybox_store: Path, run_image: str, tmp_path: Path,
                                       capfd: pytest.CaptureFixture[str]) -> None:
    assert _run(busybox_store, capfd, image=run_image) == (0, "app\n/work\n")
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=file\nOVERRIDE=file\n")
    p = run_cli(["--root", str(busybox_store), "run", "-e", "OVERRIDE=flag", "-e", "EXTRA=x", "--env-file",
                 str(env_file), "-w", "/tmp", "-u", "1000:50", run_image, "sh", "-c",
                 'echo "$FROM_IMAGE $FROM_FILE $OVERRIDE $EXTRA"; pwd; id -u; id -g; cat /work/file'])
    assert p.returncode == 0, p.stderr
    assert p.stdout == "image file flag x\n/tmp\n1000\n50\nin-image\n"
    code, out = _run(busybox_store, capfd, image=run_image, user="root", command=("id", "-u"))
    assert (code, out) == (0, "0\n")


def test_run_volumes(busybox_store: Path, run_image: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in.txt").write_text("from host\n")
    os.chown(host, 1000, 1000)
    missing = tmp_path / "created" / "by-run"
    ro = tmp_path / "ro"
    ro.mkdir()
    code, out = _run(busybox_store, capfd, image=run_image, volumes=(
        VolumeSpec(host, "/mnt/host"), VolumeSpec(missing, "/mnt/new"), VolumeSpec(ro, "/mnt/ro", readonly=True)),
        command=("sh", "-c", "cat /mnt/host/in.txt; echo back > /mnt/host/out.txt; "
                             "touch /mnt/ro/x 2>/dev/null && echo ro-writable || echo ro-refused; "
                             "cat /vol/seed; echo anon > /vol/f && cat /vol/f; ls -d /mnt/new"))
    # Like Docker, the anonymous volume starts with the image's content at that path (owner included).
    assert (code, out) == (0, "from host\nro-refused\nseeded\nanon\n/mnt/new\n")
    assert (host / "out.txt").read_text() == "back\n"
    assert missing.is_dir()
    assert not (ro / "x").exists()
    # The anonymous VOLUME dir and the container's writes are gone afterwards.
    code, out = _run(busybox_store, capfd, image=run_image, command=("sh", "-c", "ls /vol; ls /work"))
    assert (code, out) == (0, "seed\nfile\n")
    assert mounts_under(tmp_path) == [] and mounts_under(busybox_store) == []
    # -v through the CLI, :ro included.
    p = run_cli(["--root", str(busybox_store), "run", "-v", f"{host}:/h:ro", run_image, "sh", "-c",
                 "cat /h/out.txt; echo x > /h/y 2>/dev/null || echo refused"])
    assert (p.returncode, p.stdout) == (0, "back\nrefused\n")
