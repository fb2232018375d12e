"""End-to-end builds through the library (`pybuild.executor.engine.build`) that need more than a golden case:
RUN mounts and secrets, networking, what never reaches a layer, failures, ADD of URLs, many steps.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from buildtest_util import MARKER, ListSink, assert_clean, export_rootfs, image, layer_members, lib_build, write_case

from pybuild.errors import PybuildError
from pybuild.events import StepCached, StepError, StepLog
from pybuild.executor.engine import StepFailed
from pybuild.store.store import Store

NEVER_IN_LAYERS = ("etc/hosts", "etc/resolv.conf", "etc/hostname")


def _added_members(root: Path, ref: str) -> list[set[str]]:
    """Member names of the layers a build added on top of busybox:latest."""
    img = image(root, ref)
    base = image(root, "busybox:latest")
    return [{m.name for m in layer} for layer in layer_members(root, img)[len(base.manifest.layers):]]


def _logs(sink: ListSink) -> list[str]:
    return [e.line for e in sink.events if isinstance(e, StepLog)]


# --- what never reaches a layer ---------------------------------------------------------------------------------


def test_sandbox_files_never_in_any_layer(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, """\
FROM busybox:latest
RUN touch /tmp/made; cat /etc/hostname /etc/hosts /etc/resolv.conf; ls /proc/self /dev > /dev/null; \\
    echo "10.0.0.1 extra" >> /etc/hosts; echo search example >> /etc/resolv.conf; echo x > /dev/shm/x; true
RUN mkdir -p /etc/more && echo y > /etc/more/y
""")
    lib_build(busybox_store, ctx, tags=("never-in-layers:1",))
    img = image(busybox_store, "never-in-layers:1")
    every = layer_members(busybox_store, img)
    for layer in every:
        names = {m.name for m in layer}
        for n in NEVER_IN_LAYERS:
            assert n not in names and f"etc/.wh.{n.split('/')[1]}" not in names
        assert not [n for n in names if n.startswith(("proc/", "dev/", "sys/"))], names
    added = _added_members(busybox_store, "never-in-layers:1")
    assert "tmp/made" in added[0]
    # The sandbox's mountpoint stubs do not turn into directory entries of the layer either.
    assert not {"proc", "dev", "sys", "etc/hosts"} & added[0]


def test_background_processes_die_with_their_step(busybox_store: Path, tmp_path: Path, marker: str) -> None:
    # The marker is in the RUN's own environment, so a process the step leaves behind would be found by it.
    ctx = write_case(tmp_path, f"""\
FROM busybox:latest
ENV {MARKER}={marker}
RUN (sleep 600 &); (setsid sleep 600 &); echo started > /started
""")
    lib_build(busybox_store, ctx, tags=("background:1",))
    assert_clean(busybox_store, marker)


# --- RUN --mount ------------------------------------------------------------------------------------------------


def test_cache_mount_persists_between_builds_and_is_not_in_a_layer(busybox_store: Path, tmp_path: Path) -> None:
    dockerfile = """\
FROM busybox:latest
ARG ROUND
RUN --mount=type=cache,target=/var/cache/thing,id=buildtest-counter \\
    echo "round $ROUND" >> /var/cache/thing/log && cp /var/cache/thing/log /seen
"""
    ctx = write_case(tmp_path, dockerfile)
    lib_build(busybox_store, ctx, tags=("cache-mount:1",), build_args={"ROUND": "1"})
    lib_build(busybox_store, ctx, tags=("cache-mount:2",), build_args={"ROUND": "2"})
    rootfs = export_rootfs(busybox_store, "cache-mount:2", tmp_path / "rootfs")
    assert (rootfs / "seen").read_text().endswith("round 1\nround 2\n")
    assert not (rootfs / "var/cache/thing/log").exists()
    for layer in _added_members(busybox_store, "cache-mount:2"):
        assert not [n for n in layer if "thing" in n]


def test_bind_mounts_from_context_and_stage_and_rw_writes_discarded(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, """\
FROM busybox:latest AS tools
RUN mkdir /tools && echo "tool v1" > /tools/version

FROM busybox:latest
RUN --mount=type=bind,source=src,target=/src cat /src/input.txt > /from-context
RUN --mount=type=bind,from=tools,source=/tools,target=/t cat /t/version > /from-stage
RUN --mount=type=bind,source=src,target=/src,rw echo scribble > /src/input.txt && echo scribble > /src/new \\
    && cat /src/input.txt > /after-write
RUN --mount=type=bind,target=/ctx ls /ctx > /ctx-listing
""", {"src/input.txt": "from the context\n"})
    lib_build(busybox_store, ctx, tags=("bind-mounts:1",))
    rootfs = export_rootfs(busybox_store, "bind-mounts:1", tmp_path / "rootfs")
    assert (rootfs / "from-context").read_text() == "from the context\n"
    assert (rootfs / "from-stage").read_text() == "tool v1\n"
    assert (rootfs / "after-write").read_text() == "scribble\n"
    assert "Dockerfile" in (rootfs / "ctx-listing").read_text().split()
    # rw bind writes are thrown away: neither the context nor the image sees them.
    assert (ctx / "src/input.txt").read_text() == "from the context\n"
    assert not (ctx / "src/new").exists()
    assert not (rootfs / "src").exists() and not (rootfs / "t").exists() and not (rootfs / "ctx").exists()
    for layer in _added_members(busybox_store, "bind-mounts:1"):
        assert not [n for n in layer if n.split("/")[0] in ("src", "t", "ctx", "tools")]


def test_context_bind_mount_respects_dockerignore(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, """\
FROM busybox:latest
RUN --mount=type=bind,target=/ctx find /ctx | sort > /seen-ro && stat -c %a /ctx/sub > /sub-mode
RUN --mount=type=bind,target=/ctx,rw find /ctx | sort > /seen-rw
RUN --mount=type=bind,source=sub,target=/sub ls -a /sub > /seen-sub
""", {".dockerignore": "secret.env\n**/*.log\n", "secret.env": "TOKEN=1\n", "keep.txt": "k\n",
      "sub/deep/z.log": "z\n", "sub/keep": "k\n"})
    (ctx / "sub").chmod(0o750)
    lib_build(busybox_store, ctx, tags=("bind-ignore:1",))
    rootfs = export_rootfs(busybox_store, "bind-ignore:1", tmp_path / "rootfs")
    want = ["/ctx", "/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/keep.txt", "/ctx/sub", "/ctx/sub/deep",
            "/ctx/sub/keep"]
    assert (rootfs / "seen-ro").read_text().split() == want
    assert (rootfs / "seen-rw").read_text().split() == want
    assert (rootfs / "seen-sub").read_text().split() == [".", "..", "deep", "keep"]
    assert (rootfs / "sub-mode").read_text() == "750\n"  # directories holding hidden entries keep their mode


def test_tmpfs_mount(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, """\
FROM busybox:latest
RUN --mount=type=tmpfs,target=/scratch echo temp > /scratch/file && grep " /scratch tmpfs " /proc/mounts \\
    > /mount-line && cat /scratch/file > /copied
""")
    lib_build(busybox_store, ctx, tags=("tmpfs-mount:1",))
    rootfs = export_rootfs(busybox_store, "tmpfs-mount:1", tmp_path / "rootfs")
    assert (rootfs / "copied").read_text() == "temp\n"
    assert "tmpfs" in (rootfs / "mount-line").read_text()
    assert not (rootfs / "scratch").exists()


def test_secret_mount_never_stored(busybox_store: Path, tmp_path: Path) -> None:
    secret_value = "s3cr3t-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]
    secret = tmp_path / "token.txt"
    secret.write_text(secret_value)
    ctx = write_case(tmp_path, """\
FROM busybox:latest
RUN --mount=type=secret,id=token test "$(cat /run/secrets/token)" != "" && wc -c < /run/secrets/token > /secret-len
RUN --mount=type=secret,id=token,target=/etc/app/token cp /etc/app/token /dev/null && echo ok > /custom-target
RUN --mount=type=secret,id=token,env=TOKEN test -n "$TOKEN" && echo env-ok > /env-ok
RUN --mount=type=secret,id=absent echo "optional secret missing is fine" > /optional
""")
    sink = ListSink()
    lib_build(busybox_store, ctx, sink, tags=("secret:1",), secrets={"token": secret})
    img = image(busybox_store, "secret:1")
    rootfs = export_rootfs(busybox_store, img, tmp_path / "rootfs")
    assert (rootfs / "secret-len").read_text().strip() == str(len(secret_value))
    assert (rootfs / "env-ok").read_text() == "env-ok\n"
    assert not (rootfs / "run/secrets/token").exists() and not (rootfs / "etc/app/token").exists()
    needle = secret_value.encode()
    for layer in layer_members(busybox_store, img):
        for m in layer:
            assert needle not in m.data and "secrets/token" not in m.name and m.name != "etc/app/token"
    assert needle not in img.config_bytes
    assert secret_value not in json.dumps([h.created_by for h in img.config.history])
    assert secret_value not in "\n".join(_logs(sink))


def test_required_secret_missing_is_an_error(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, "FROM busybox:latest\nRUN --mount=type=secret,id=needed,required true\n")
    with pytest.raises(PybuildError, match="secret 'needed' is required"):
        lib_build(busybox_store, ctx)


def test_network_none_has_only_loopback(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, """\
FROM busybox:latest
RUN --network=none ls /sys/class/net > /ifaces-none
RUN ls /sys/class/net > /ifaces-default
""")
    lib_build(busybox_store, ctx, tags=("network:1",))
    rootfs = export_rootfs(busybox_store, "network:1", tmp_path / "rootfs")
    assert (rootfs / "ifaces-none").read_text().split() == ["lo"]
    assert (rootfs / "ifaces-default").read_text().split() != ["lo"]
    # --network=none for the whole build applies to every RUN.
    ctx2 = write_case(tmp_path, "FROM busybox:latest\nRUN ls /sys/class/net > /ifaces\n")
    lib_build(busybox_store, ctx2, tags=("network:2",), network="none")
    assert (export_rootfs(busybox_store, "network:2", tmp_path / "r2") / "ifaces").read_text().split() == ["lo"]


# --- failures ---------------------------------------------------------------------------------------------------


def test_failing_run_names_the_step_and_shows_the_last_20_lines(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, """\
FROM busybox:latest AS first
RUN echo fine > /fine

FROM first AS second
RUN for i in $(seq 1 30); do echo "output line $i"; done; exit 3
RUN echo never
""")
    sink = ListSink()
    with pytest.raises(StepFailed) as info:
        lib_build(busybox_store, ctx, sink, tags=("must-not-exist:1",))
    err = info.value
    text = err.render()
    assert "[second 2/3] RUN for i in" in text
    assert "exit code: 3" in text and err.code == 3
    assert f"{ctx}/Dockerfile:5" in text
    assert err.tail == [f"output line {i}" for i in range(11, 31)]
    assert "output line 10\n" not in text and "output line 30" in text
    assert any(isinstance(e, StepError) for e in sink.events)
    with Store.open(busybox_store) as store:
        assert store.find("must-not-exist:1") is None


def test_unknown_user_error_points_at_the_instruction(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, "FROM busybox:latest\nUSER ghost\nWORKDIR /w\n")
    with pytest.raises(PybuildError) as info:
        lib_build(busybox_store, ctx)
    assert "unable to find user ghost" in info.value.render()
    assert info.value.location is not None and info.value.location.line == 3


def test_other_platform_is_a_clear_error(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, "FROM busybox:latest\nRUN true\n")
    with pytest.raises(PybuildError, match=r"cannot build for linux/(arm64|amd64)"):
        lib_build(busybox_store, ctx, platform="linux/arm64" if _host_arch() == "amd64" else "linux/amd64")


def _host_arch() -> str:
    from pybuild.planner.platform import host_platform

    return host_platform().architecture


# --- ADD from a URL ---------------------------------------------------------------------------------------------


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a directory."""
    served = tmp_path / "served"
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(served), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = socketserver.TCPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def test_add_url_with_checksum(busybox_store: Path, tmp_path: Path, http_root: tuple[str, Path],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    url, served = http_root
    data = b"downloaded payload\n"
    (served / "payload.txt").write_bytes(data)
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    ctx = write_case(tmp_path, f"""\
FROM busybox:latest
ARG BASE
ADD --checksum={good} ${{BASE}}/payload.txt /downloads/
ADD ${{BASE}}/payload.txt /renamed.txt
""")
    lib_build(busybox_store, ctx, tags=("add-url:1",), build_args={"BASE": url})
    rootfs = export_rootfs(busybox_store, "add-url:1", tmp_path / "rootfs")
    assert (rootfs / "downloads/payload.txt").read_bytes() == data
    assert (rootfs / "downloads/payload.txt").stat().st_mode & 0o777 == 0o600
    assert (rootfs / "renamed.txt").read_bytes() == data

    bad = "sha256:" + "0" * 64
    ctx_bad = write_case(tmp_path, f"FROM busybox:latest\nADD --checksum={bad} {url}/payload.txt /x\n")
    with pytest.raises(PybuildError) as info:
        lib_build(busybox_store, ctx_bad)
    assert "checksum" in info.value.render().lower()
    assert info.value.location is not None and info.value.location.line == 2


# --- many steps -------------------------------------------------------------------------------------------------


def test_150_run_steps(busybox_store: Path, tmp_path: Path) -> None:
    """150 layers stacked: the overlay mount options must stay within the kernel's one-page limit."""
    lines = ["FROM busybox:latest"] + [f"RUN echo {i} > /step-{i}" for i in range(150)]
    lines.append("RUN cat /step-0 /step-149 > /ends && ls / | grep -c '^step-' > /count")
    ctx = write_case(tmp_path, "\n".join(lines) + "\n")
    sink = ListSink()
    result = lib_build(busybox_store, ctx, sink, tags=("many-steps:1",))
    base = image(busybox_store, "busybox:latest")
    assert len(result.image.manifest.layers) == len(base.manifest.layers) + 151
    rootfs = export_rootfs(busybox_store, result.image, tmp_path / "rootfs")
    assert (rootfs / "ends").read_text() == "0\n149\n"
    assert (rootfs / "count").read_text() == "150\n"
    # Building it again is all cache hits.
    sink2 = ListSink()
    again = lib_build(busybox_store, ctx, sink2, tags=("many-steps:1",))
    assert again.image.id == result.image.id
    assert sum(isinstance(e, StepCached) for e in sink2.events) == 151
