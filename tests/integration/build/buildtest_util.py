"""Helpers for the end-to-end build tests: library builds, exported root filesystems, layer tar members,
and leftover checks (processes found by an environment marker, mounts under the store).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybuild.events import Event
from pybuild.executor.engine import BuildRequest, BuildResult, build
from pybuild.store.store import Image, Store
from tests import support

REPO = Path(__file__).resolve().parents[3]
CASES = REPO / "fixtures" / "dockerfiles"
MARKER = "PYBUILD_BUILD_TEST"  # set in every build's environment; leftover processes are found by it

@dataclass
class ListSink:
    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)


def processes_with(token: str) -> list[int]:
    return support.processes_with(MARKER, token)


def assert_clean(root: Path, token: str) -> None:
    """No process of ours left, no mount under the store, and the store verifies."""
    support.assert_clean(root, MARKER, token)


# --- building ---------------------------------------------------------------------------------------------------


def lib_build(root: Path, context: Path | None, sink: ListSink | None = None, **kw: Any) -> BuildResult:
    """Build through the library (what `pybuild build` calls) into the store at root."""
    with Store.open(root) as store:
        return build(store, BuildRequest(context=context, **kw), sink or ListSink())


def write_case(tmp: Path, dockerfile: str, files: Mapping[str, str | bytes] | None = None) -> Path:
    """A context directory with this Dockerfile and files."""
    ctx = tmp / f"ctx-{uuid.uuid4().hex[:8]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, data in (files or {}).items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    return ctx


def image(root: Path, ref: str) -> Image:
    with Store.open(root) as store:
        return store.resolve(ref)


def export_rootfs(root: Path, img: Image | str, dest: Path) -> Path:
    """The image's root filesystem, written by `--output type=local` (pybuild.export.outputs)."""
    from pybuild.export.outputs import OutputSpec, write_output

    with Store.open(root) as store:
        resolved = store.resolve(img) if isinstance(img, str) else img
        write_output(store, resolved, OutputSpec("local", dest))
    return dest


@dataclass(frozen=True)
class Member:
    name: str  # normalised: no leading ./ or /, no trailing /
    type: bytes
    mode: int
    uid: int
    gid: int
    linkname: str
    data: bytes


def layer_members(root: Path, img: Image) -> list[list[Member]]:
    """The tar members of each of the image's layers (bottom first), read from the stored blobs."""
    from pybuild.layer.compression import open_decompressed

    out: list[list[Member]] = []
    with Store.open(root) as store:
        for desc in img.manifest.layers:
            with store.open_blob(desc.digest) as blob:
                raw = open_decompressed(blob).read()
            members = []
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
                for m in tar.getmembers():
                    data = b""
                    if m.isreg():
                        f = tar.extractfile(m)
                        data = f.read() if f is not None else b""
                    name = m.name.removeprefix("./").strip("/")
                    members.append(Member(name, m.type, m.mode, m.uid, m.gid, m.linkname, data))
            out.append(members)
    return out


def base_image(root: Path) -> Image:
    return image(root, "busybox:latest")


def check_file(rootfs: Path, path: str, want: dict[str, Any]) -> None:
    p = rootfs / path.lstrip("/")
    assert os.path.lexists(p), f"{path} is missing from the image"
    st = os.lstat(p)
    kind = want.get("type", "file")
    expected_fmt = {"file": stat.S_ISREG, "dir": stat.S_ISDIR, "symlink": stat.S_ISLNK}[kind]
    assert expected_fmt(st.st_mode), f"{path}: expected a {kind}, mode is {oct(st.st_mode)}"
    if "content" in want:
        assert p.read_text() == want["content"], path
    if "mode" in want:
        assert oct(stat.S_IMODE(st.st_mode)) == oct(int(want["mode"], 8)), path
    if "uid" in want:
        assert st.st_uid == want["uid"], f"{path}: uid"
    if "gid" in want:
        assert st.st_gid == want["gid"], f"{path}: gid"
    if "link" in want:
        assert os.readlink(p) == want["link"], path


def check_rootfs(rootfs: Path, spec: Mapping[str, Any]) -> None:
    """A root filesystem against an expected.json's "files" and "absent"."""
    for path, want in spec.get("files", {}).items():
        check_file(rootfs, path, want)
    for path in spec.get("absent", []):
        assert not os.path.lexists(rootfs / path.lstrip("/")), f"{path} should not be in the image"
