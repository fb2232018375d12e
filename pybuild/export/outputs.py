"""`pybuild build --output`: where a built image goes besides the store.

type=image (the default: the store only), type=oci / type=docker (an OCI or docker-archive tarball at dest),
type=local (the image's root filesystem written to the directory dest). A bare `-o DIR` means type=local,
as with `docker build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pybuild.errors import PybuildError, UsageError
from pybuild.store.store import Image, Store

OUTPUT_TYPES = ("image", "oci", "docker", "local")


@dataclass(frozen=True)
class OutputSpec:
    type: str
    dest: Path | None = None


def parse_output(text: str) -> OutputSpec:
    """Parse `type=T,dest=PATH` (or a bare PATH, meaning type=local)."""
    if "=" not in text:
        return OutputSpec("local", Path(text))
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq:
            raise UsageError(f"invalid --output {text!r}: {part!r} is not KEY=VALUE")
        fields[key.strip()] = value.strip()
    kind = fields.pop("type", "local")
    if kind == "tar":
        raise UsageError("--output type=tar is not supported yet", hint="use type=local,dest=DIR or type=oci")
    if kind not in OUTPUT_TYPES:
        raise UsageError(f"invalid --output type {kind!r}: expected one of {', '.join(OUTPUT_TYPES)}")
    dest = fields.pop("dest", None)
    fields.pop("name", None)  # names come from -t
    if fields:
        raise UsageError(f"unsupported --output option(s): {', '.join(sorted(fields))}")
    if kind != "image" and not dest:
        raise UsageError(f"--output type={kind} needs dest=PATH")
    return OutputSpec(kind, Path(dest) if dest else None)


def write_output(store: Store, image: Image, spec: OutputSpec) -> None:
    if spec.type == "image":
        return
    assert spec.dest is not None
    if spec.type in ("oci", "docker"):
        from pybuild.export.common import ArchiveFormat
        from pybuild.image.transfer import save_images

        fmt = ArchiveFormat.OCI if spec.type == "oci" else ArchiveFormat.DOCKER
        refs = list(image.names) or [image.id]
        save_images(store, refs[:1], spec.dest, fmt)
        return
    from pybuild.sandbox.jobs import FsView, run_job

    dest = spec.dest.absolute()
    if dest.exists() and not dest.is_dir():
        raise PybuildError(f"--output dest {spec.dest} exists and is not a directory")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PybuildError(f"cannot create --output dest {spec.dest}: {e.strerror or e}") from None
    with store.new_scratch_dir("export") as scratch:
        view = FsView(scratch / "rootfs", lower_dirs=store.image_lower_dirs(image), chdir_for_mount=store.root)
        run_job([view], "pybuild.executor.fsjobs:export_tree", {"dest": str(dest)})
