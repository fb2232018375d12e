"""End to end on a real Debian: the first Dockerfile of every Docker course builds and works.

    FROM debian
    RUN apt-get update
    RUN apt-get install -y nginx

The base is made by fixtures/base/debian.sh (debootstrap from this machine's apt mirror; its tarball is cached in
~/.cache/pybuild, so only the first run pays for debootstrap) and imported into a store of this module's own. The
RUN steps reach that mirror over the host network with the host's resolv.conf, as `docker build` would.
Needs root (debootstrap, overlayfs, namespaces) and the Debian mirror: CI has both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from pybuild.layer.compression import open_decompressed
from pybuild.store.store import Image, Store
from tests.conftest import REPO, run_cli

pytestmark = [pytest.mark.root, pytest.mark.slow]

SCRIPT = REPO / "fixtures" / "base" / "debian.sh"
DOCKERFILE = "FROM debian\nRUN apt-get update\nRUN apt-get install -y nginx\n"
IMAGE = "nginx-course:1"
# What the runtime provides per container or step; an image (or a layer) must never carry it.
RUNTIME_FILES = {"etc/hosts", "etc/hostname", "etc/resolv.conf"}
KERNEL_DIRS = ("proc", "dev", "sys")


def _script_env(root: Path | None = None, **extra: str) -> dict[str, str]:
    # The script runs `pybuild` from PATH: make it the one installed for this interpreter.
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    if root is not None:
        env["PYBUILD_ROOT"] = str(root)
    env.update(extra)
    return env


def _run_script(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class Entry:
    name: str  # normalized: no leading "./", no trailing "/"
    kind: bytes  # tarfile type
    size: int


def _norm(name: str) -> str:
    return str(PurePosixPath("/", name))[1:]


def layer_entries(store: Store, digest: str) -> list[Entry]:
    with store.open_blob(digest) as f, tarfile.open(fileobj=open_decompressed(f), mode="r|") as tar:
        return [Entry(_norm(m.name), m.type, m.size) for m in tar if _norm(m.name)]


@pytest.fixture(scope="module")
def debian_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding debian:bookworm and debian:latest, made by the real fixtures/base/debian.sh."""
    root = tmp_path_factory.mktemp("debian") / "store"
    p = _run_script(env=_script_env(root))
    assert p.returncode == 0, p.stderr
    return root


@pytest.fixture(scope="module")
def store(debian_store: Path) -> Iterator[Store]:
    with Store.open(debian_store) as s:
        yield s


@dataclass(frozen=True)
class Built:
    context: Path
    output: str
    image_id: str


def _build(root: Path, context: Path, iidfile: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(["--root", str(root), "build", "-t", IMAGE, "--progress", "plain", "--iidfile", str(iidfile),
                    str(context)], timeout=900)


@pytest.fixture(scope="module")
def nginx_build(debian_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The course Dockerfile built once through the real CLI into the debian store."""
    work = tmp_path_factory.mktemp("nginx")
    context = work / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    p = _build(debian_store, context, work / "iid")
    assert p.returncode == 0, p.stdout + p.stderr
    return Built(context, p.stdout + p.stderr, (work / "iid").read_text().strip())


# --- the base image -----------------------------------------------------------------------------------------


def test_debian_base_is_image_like(store: Store) -> None:
    img = store.resolve("debian:bookworm")
    assert store.resolve("debian:latest").id == img.id
    assert img.config.config.cmd == ("bash",)
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in img.config.config.env
    assert len(img.manifest.layers) == 1
    entries = {e.name: e for e in layer_entries(store, img.manifest.layers[0].digest)}

    assert "usr/bin/bash" in entries and "usr/bin/apt-get" in entries
    assert entries["bin"].kind == tarfile.SYMTYPE  # merged /usr, like Docker's bookworm
    # Host details debootstrap copied in are gone; the runtime provides these files.
    assert not RUNTIME_FILES & entries.keys()
    assert "etc/machine-id" not in entries
    # /dev, /proc and /sys are empty mountpoints, not debootstrap's device nodes.
    for d in KERNEL_DIRS:
        assert entries[d].kind == tarfile.DIRTYPE
        assert not [n for n in entries if n.startswith(d + "/")], d
    # No package lists or downloaded packages: about 80 MB debootstrap leaves behind.
    assert not [n for n in entries if n.startswith("var/lib/apt/lists/")]
    assert not [n for n in entries if n.startswith("var/cache/apt/") and n.endswith((".deb", ".bin"))]
    # Docker's container-friendly apt/dpkg settings.
    assert "usr/sbin/policy-rc.d" in entries
    assert "etc/apt/apt.conf.d/docker-clean" in entries
    assert "etc/apt/sources.list" not in entries


def test_debian_sources_point_at_the_host_mirror(debian_store: Path) -> None:
    host = _run_script("--print-sources", env=_script_env())
    assert host.returncode == 0, host.stderr
    host_uris = {line.split()[1] for line in host.stdout.splitlines()}
    p = run_cli(["--root", str(debian_store), "run", "debian", "cat", "/etc/apt/sources.list.d/debian.sources"])
    assert p.returncode == 0, p.stderr
    image_uris = {line.split(":", 1)[1].strip().rstrip("/") for line in p.stdout.splitlines()
                  if line.startswith("URIs:")}
    assert image_uris == host_uris
    assert "Suites: bookworm" in p.stdout


def test_second_script_run_reuses_the_cached_tarball(debian_store: Path) -> None:
    p = _run_script("--tarball-only", env=_script_env())
    assert p.returncode == 0, p.stderr
    assert "debootstrap" not in p.stderr
    tarball = Path(p.stdout.strip())
    assert tarball.is_file() and tarball.name.endswith(".tar.zst")
    assert tarball.parent.name == "pybuild"


# --- finding the mirror in apt's sources (no root, no network) ---------------------------------------------


def _apt_config(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An APT_CONFIG that makes apt (and so the script) read its sources from tmp_path."""
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    conf = tmp_path / "apt.conf"
    conf.write_text(f'Dir::Etc::sourcelist "{tmp_path}/sources.list";\nDir::Etc::sourceparts "{parts}";\n')
    return parts, _script_env(APT_CONFIG=str(conf))


def test_sources_one_line_format(tmp_path: Path) -> None:
    parts, env = _apt_config(tmp_path)
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb http://other.example/debian bookworm contrib\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian/ bookworm main contrib\n"
        "deb http://sec.example/debian-security bookworm-security main # trailing comment\n"
    )
    # apt only reads *.list and *.sources: a disabled file must not win.
    (parts / "a.list.disabled").write_text("deb http://disabled.example/debian bookworm main\n")
    p = _run_script("--print-sources", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "bookworm http://mirror.example/debian /usr/share/keyrings/k.gpg",
        "bookworm-security http://sec.example/debian-security -",
    ]


def test_sources_deb822_format(tmp_path: Path) -> None:
    parts, env = _apt_config(tmp_path)
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n"
        "\n"
        "# the real one\n"
        "Types: deb deb-src\n"
        "URIs: http://one.example/debian/\n  http://two.example/debian\n"
        "Suites: bookworm\n bookworm-updates\n"
        "Components: contrib\n main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    p = _run_script("--print-sources", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "bookworm http://one.example/debian /usr/share/keyrings/debian-archive-keyring.gpg",
        "bookworm-updates http://one.example/debian /usr/share/keyrings/debian-archive-keyring.gpg",
    ]


def test_no_bookworm_entry_is_a_clear_error(tmp_path: Path) -> None:
    parts, env = _apt_config(tmp_path)
    (parts / "trixie.list").write_text("deb http://deb.debian.org/debian trixie main\n")
    p = _run_script("--print-sources", env=env)
    assert p.returncode == 1
    assert "no 'deb ... bookworm main' entry" in p.stderr
    assert "DEBIAN_MIRROR=" in p.stderr
    assert "Traceback" not in p.stderr
    assert p.stdout == ""


# --- the course Dockerfile ----------------------------------------------------------------------------------


def test_build_runs_both_steps(nginx_build: Built) -> None:
    out = nginx_build.output
    assert "[2/3] RUN apt-get update" in out
    assert "[3/3] RUN apt-get install -y nginx" in out
    assert "Setting up nginx" in out
    assert nginx_build.image_id.startswith("sha256:")


def test_nginx_runs(debian_store: Path, nginx_build: Built) -> None:
    p = run_cli(["--root", str(debian_store), "run", "--rm", IMAGE, "nginx", "-v"])
    assert p.returncode == 0, p.stderr
    assert "nginx version: nginx/" in p.stderr
    p = run_cli(["--root", str(debian_store), "run", "--rm", IMAGE, "nginx", "-t"])
    assert p.returncode == 0, p.stderr
    assert "test is successful" in p.stderr


def test_nginx_serves_its_welcome_page(debian_store: Path, nginx_build: Built) -> None:
    # --network none: a loopback of the container's own, so port 80 of the host is never touched.
    script = ('nginx && exec 3<>/dev/tcp/127.0.0.1/80 && printf "GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n" >&3 '
              "&& cat <&3")
    p = run_cli(["--root", str(debian_store), "run", "--rm", "--network", "none", IMAGE, "bash", "-c", script])
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("HTTP/1.1 200 OK")
    assert "Welcome to nginx!" in p.stdout


def test_layers_hold_only_what_each_run_changed(store: Store, nginx_build: Built) -> None:
    img: Image = store.resolve(IMAGE)
    assert img.id == nginx_build.image_id
    base = store.resolve("debian:bookworm")
    assert len(img.manifest.layers) == 3
    assert img.manifest.layers[0].digest == base.manifest.layers[0].digest
    assert [h.empty_layer for h in img.config.history[-2:]] == [False, False]

    present: set[str] = {e.name for e in layer_entries(store, base.manifest.layers[0].digest)}
    run_layers: list[list[Entry]] = []
    for desc in img.manifest.layers[1:]:
        entries = layer_entries(store, desc.digest)
        run_layers.append(entries)
        dirs = {e.name for e in entries if e.kind == tarfile.DIRTYPE}
        for e in entries:
            path = PurePosixPath(e.name)
            assert path.parts[0] not in KERNEL_DIRS, f"{e.name}: the sandbox's mounts leaked into a layer"
            plain = str(path.parent / path.name.removeprefix(".wh.")) if path.name.startswith(".wh.") else e.name
            assert plain not in RUNTIME_FILES, f"{e.name}: the sandbox's per-step file leaked into a layer"
            if path.name == ".wh..wh..opq":
                # An opaque marker says "this directory was made here" (dpkg renames new directories into
                # place); it must not hide anything that was below.
                assert str(path.parent) in dirs, e.name
                assert str(path.parent) not in present, f"{e.name} hides the directory's lower content"
            elif path.name.startswith(".wh."):
                # A whiteout must be a real deletion: of something a lower layer has.
                assert plain in present, f"{e.name}: whiteout of a path no lower layer has"
        for e in entries:
            path = PurePosixPath(e.name)
            if path.name.startswith(".wh."):
                if path.name != ".wh..wh..opq":
                    gone = str(path.parent / path.name[4:])
                    present = {n for n in present if n != gone and not n.startswith(gone + "/")}
            else:
                present.add(e.name)

    update, install = run_layers
    # RUN apt-get update: the package lists (and the directories above them; apt's temp files touch /tmp).
    files = [e.name for e in update if e.kind != tarfile.DIRTYPE]
    assert any(n.endswith("_InRelease") for n in files)
    assert any("_Packages" in n for n in files)
    assert all(n.startswith("var/lib/apt/lists/") for n in files), files
    # RUN apt-get install -y nginx: the package, its state, no downloaded .debs (the image's docker-clean).
    names = {e.name for e in install}
    assert {"usr/sbin/nginx", "var/lib/dpkg/status", "etc/nginx/nginx.conf"} <= names
    assert not [n for n in names if n.endswith(".deb")]
    assert not [n for n in names if n.startswith("var/lib/apt/lists/") and "_Packages" in n]


def test_second_build_is_fully_cached(debian_store: Path, nginx_build: Built, tmp_path: Path) -> None:
    p = _build(debian_store, nginx_build.context, tmp_path / "iid")
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert "Setting up nginx" not in out
    assert out.count(" CACHED") >= 2
    assert (tmp_path / "iid").read_text().strip() == nginx_build.image_id
