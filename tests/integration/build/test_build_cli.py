"""`pybuild build` as a real process: names, --iidfile, --output, flags, failures, signals, and the result read
back by real tools (skopeo, umoci).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from buildtest_util import CASES, MARKER, assert_clean, image, write_case

from pybuild.store.store import Store
from tests.conftest import run_cli
from tests.support import mounts_under, wait_until


def cli(root: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return run_cli(["--root", str(root), *args], **kw)  # type: ignore[arg-type]


def _no_traceback(p: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout


@pytest.fixture(scope="module")
def cli_image(busybox_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """build-env-arg and build-metadata flags through the CLI, with two names, an iidfile and all three outputs."""
    out = tmp_path_factory.mktemp("cli-outputs")
    case = CASES / "build-copy-from"
    p = cli(busybox_store, "build", "-t", "cli-built:1", "-t", "registry.example/team/cli-built:v2",
            "--iidfile", str(out / "iid"), "--label", "org.example.cli=yes", "--progress", "plain",
            "--output", f"type=oci,dest={out / 'image-oci.tar'}",
            "--output", f"type=docker,dest={out / 'image-docker.tar'}",
            "--output", f"type=local,dest={out / 'rootfs'}", str(case))
    assert p.returncode == 0, p.stderr
    return {"proc": p, "out": out}


def test_names_iidfile_and_progress(busybox_store: Path, cli_image: dict[str, object]) -> None:
    p = cli_image["proc"]
    out = cli_image["out"]
    assert isinstance(p, subprocess.CompletedProcess) and isinstance(out, Path)
    img = image(busybox_store, "cli-built:1")
    assert (out / "iid").read_text() == img.id
    assert image(busybox_store, "registry.example/team/cli-built:v2").id == img.id
    assert img.config.config.labels["org.example.cli"] == "yes"
    assert "[final 2/5] COPY --from=builder /out/ /from-name/" in p.stderr + p.stdout
    assert "writing image sha256:" in p.stderr + p.stdout


def test_outputs_local_oci_docker(busybox_store: Path, cli_image: dict[str, object], tmp_path: Path) -> None:
    out = cli_image["out"]
    assert isinstance(out, Path)
    rootfs = out / "rootfs"
    assert (rootfs / "from-name/artifact").read_text() == "built\n"
    assert os.readlink(rootfs / "from-name/alias") == "artifact"
    assert (rootfs / "from-name/artifact").stat().st_uid == 1000
    img = image(busybox_store, "cli-built:1")
    with tarfile.open(out / "image-oci.tar") as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        names = tar.getnames()
    assert "oci-layout" in names
    assert any(m["digest"] == img.manifest_digest for m in index["manifests"])
    with tarfile.open(out / "image-docker.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] and len(manifest[0]["Layers"]) == len(img.manifest.layers)
    assert manifest[0]["Config"].split("/")[-1].removesuffix(".json") in img.id


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo missing (scripts/test.sh installs it)")
def test_skopeo_reads_the_store(busybox_store: Path, cli_image: dict[str, object]) -> None:
    img = image(busybox_store, "cli-built:1")
    p = subprocess.run(["skopeo", "inspect", f"oci:{busybox_store}:cli-built:1"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["Digest"] == img.manifest_digest
    assert len(info["Layers"]) == len(img.manifest.layers)
    assert info["Labels"]["org.example.cli"] == "yes"
    raw = subprocess.run(["skopeo", "inspect", "--config", f"oci:{busybox_store}:cli-built:1"],
                         capture_output=True, text=True, check=True)
    assert [h.get("created_by") for h in json.loads(raw.stdout)["history"]] == \
        [h.created_by or None for h in img.config.history]


@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci missing (scripts/test.sh installs it)")
def test_umoci_unpacks_the_image(busybox_store: Path, tmp_path: Path) -> None:
    # Debian 12's umoci (0.4.7) predates zstd layers: build this one with gzip.
    built = cli(busybox_store, "build", "-q", "--compression", "gzip", "-t", "cli-gzip:1",
                str(CASES / "build-copy-from"))
    assert built.returncode == 0, built.stderr
    bundle = tmp_path / "bundle"
    p = subprocess.run(["umoci", "unpack", "--image", f"{busybox_store}:cli-gzip:1", str(bundle)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (bundle / "rootfs/from-name/artifact").read_text() == "built\n"
    assert (bundle / "rootfs/from-image/passwd").is_file()
    assert os.readlink(bundle / "rootfs/from-name/alias") == "artifact"
    assert not (bundle / "rootfs/bin").exists()


def test_case_through_cli_with_build_args_and_secret(busybox_store: Path, tmp_path: Path) -> None:
    secret = tmp_path / "s.txt"
    secret.write_text("cli-secret")
    ctx = write_case(tmp_path, """\
FROM busybox:latest
ARG WHO=nobody
RUN --mount=type=secret,id=s test "$(cat /run/secrets/s)" = cli-secret && echo "hi $WHO" > /greeting
CMD ["cat", "/greeting"]
""")
    p = cli(busybox_store, "build", "-q", "-t", "cli-args:1", "--build-arg", "WHO=there", "--secret",
            f"id=s,src={secret}", str(ctx))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == image(busybox_store, "cli-args:1").id
    run = cli(busybox_store, "run", "--rm", "cli-args:1")
    assert (run.returncode, run.stdout) == (0, "hi there\n")
    verify = cli(busybox_store, "store", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_failing_run_through_cli(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, """\
FROM busybox:latest
RUN echo ok
RUN for i in $(seq 1 25); do echo "noise $i"; done; echo "the real problem" >&2; exit 42
""")
    p = cli(busybox_store, "build", "-t", "cli-failed:1", "--progress", "plain", str(ctx))
    assert p.returncode == 1
    _no_traceback(p)
    err = p.stderr
    assert err.count("error: ") == 1
    assert "[3/3] RUN for i in $(seq 1 25)" in err and "exit code: 42" in err
    assert "the real problem" in err and "noise 6\n" in err and "  > noise 5\n" not in err
    assert f"{ctx}/Dockerfile:3" in err
    with Store.open(busybox_store) as store:
        assert store.find("cli-failed:1") is None


def test_other_platform_through_cli(busybox_store: Path, tmp_path: Path) -> None:
    ctx = write_case(tmp_path, "FROM busybox:latest\n")
    p = cli(busybox_store, "build", "--platform", "linux/s390x", str(ctx))
    assert p.returncode == 1
    _no_traceback(p)
    assert "cannot build for linux/s390x" in p.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_run_leaves_nothing(busybox_store: Path, tmp_path: Path, marker: str, sig: signal.Signals) -> None:
    ctx = write_case(tmp_path, f"""\
FROM busybox:latest
ENV {MARKER}={marker}
RUN echo {marker} > /first
RUN (sleep 300 &); echo step-is-running; sleep 300; echo never > /never
""")
    env = {**os.environ, MARKER: marker}
    proc = subprocess.Popen([sys.executable, "-m", "pybuild", "--root", str(busybox_store), "build", "-t",
                             "interrupted:1", "--progress", "plain", str(ctx)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "step-is-running" in line:
            break
    else:
        proc.wait()
        raise AssertionError("the build ended before its RUN started: " + "".join(seen))
    proc.send_signal(sig)
    rest = proc.stdout.read()
    code = proc.wait(timeout=120)
    output = "".join(seen) + rest
    assert code != 0
    assert "Traceback" not in output
    wait_until(lambda: not mounts_under(busybox_store), "the build's mounts to go")
    assert_clean(busybox_store, marker)
    with Store.open(busybox_store) as store:
        assert store.find("interrupted:1") is None
