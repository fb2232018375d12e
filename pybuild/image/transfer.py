"""``save`` and ``load``: stored images to and from docker-archive / OCI-archive tars.

Load checks the whole archive (every manifest, config and layer digest, every layer's diff ID) before it
writes anything to the store, then stores blobs under a lease and names images last, so a bad archive
leaves no names and nothing a later gc would not sweep. Save writes to a temporary file next to the
destination and renames it into place, so a failed save never leaves a half-written archive.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pybuild.errors import PybuildError
from pybuild.export.common import ArchiveFormat, ExportImage
from pybuild.export.reader import ArchiveImage, CheckedLayer, open_archive
from pybuild.export.writer import write_archive
from pybuild.model.oci import MT_OCI_CONFIG, MT_OCI_MANIFEST, Descriptor, Manifest
from pybuild.model.reference import parse_reference
from pybuild.store import Image, Store

# --- save --------------------------------------------------------------------------------------------------


def _explicit_tag(ref: str) -> bool:
    return "@" in ref or ref.rfind(":") > ref.rfind("/")


def images_to_export(store: Store, refs: Sequence[str]) -> list[ExportImage]:
    """Resolve refs to images and the names each is saved under, as ``docker save`` picks them.

    ``name:tag`` saves that name; a bare repository (``busybox``) saves every tag of it; an ID or digest
    saves the image without names.
    """
    order: list[str] = []
    images: dict[str, Image] = {}
    names: dict[str, list[str]] = {}

    def add(img: Image, name: str | None) -> None:
        if img.manifest_digest not in images:
            order.append(img.manifest_digest)
            images[img.manifest_digest] = img
            names[img.manifest_digest] = []
        if name is not None and name not in names[img.manifest_digest]:
            names[img.manifest_digest].append(name)

    for ref in refs:
        repo: str | None = None
        if not _explicit_tag(ref):
            with contextlib.suppress(PybuildError):
                repo = parse_reference(ref).familiar_name
        if repo is not None:
            matched = [(img, n) for img in store.list_images() for n in img.names
                       if parse_reference(n).familiar_name == repo]
            if matched:
                for img, n in sorted(matched, key=lambda m: m[1]):
                    add(img, n)
                continue
        img = store.resolve(ref)
        try:
            r = parse_reference(ref)
            name = r.familiar() if r.digest is None and r.familiar() in img.names else None
        except PybuildError:
            name = None
        add(img, name)
    return [ExportImage(tuple(names[d]), store.read_blob(d)) for d in order]


def save_images(
    store: Store, refs: Sequence[str], output: Path | None, fmt: ArchiveFormat = ArchiveFormat.DOCKER,
    stdout: BinaryIO | None = None,
) -> None:
    """Write the images refs name as one archive to output (a file path) or, with output None, to stdout."""
    if not refs:
        raise PybuildError("save needs at least one image", hint="pybuild save -o out.tar busybox:latest")
    exports = images_to_export(store, refs)
    if output is None:
        out = stdout if stdout is not None else sys.stdout.buffer
        if out.isatty():
            raise PybuildError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        write_archive(out, exports, store, fmt)
        out.flush()
        return
    output = Path(output)
    if output.is_dir():
        raise PybuildError(f"{output} is a directory", hint="give -o a file name")
    tmp = output.with_name(f".{output.name}.{os.getpid()}.pybuild-tmp")
    try:
        with open(tmp, "wb") as f:
            write_archive(f, exports, store, fmt)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, output)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise PybuildError(f"cannot write {output}: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


# --- load --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedImage:
    id: str
    manifest_digest: str
    names: tuple[str, ...]

    def lines(self) -> list[str]:
        """What ``docker load`` prints for it."""
        if self.names:
            return [f"Loaded image: {n}" for n in self.names]
        return [f"Loaded image ID: {self.id}"]


def load_images(store: Store, path: Path | None, stdin: BinaryIO | None = None) -> list[LoadedImage]:
    """Load every image of the archive at path (``None``: stdin) into the store; digests are kept.

    A docker-archive without an OCI index gets a new OCI manifest over its layers as stored (gzip and
    zstd kept; xz and bzip2 layers are stored uncompressed, since OCI has no media type for them).
    """
    loaded: list[LoadedImage] = []
    with open_archive(path, stdin) as archive:
        plan: list[tuple[ArchiveImage, list[CheckedLayer], tuple[str, ...]]] = []
        for img in archive.images:
            refs = [parse_reference(n) for n in img.names]  # validated before anything is written
            names = tuple(r.familiar() for r in refs if r.digest is None)
            plan.append((img, [archive.check_layer(layer) for layer in img.layers], names))
        with store.lease():
            for img, checked, names in plan:
                for c in checked:
                    with archive.open_for_store(c) as f:
                        store.put_blob(f, expected_digest=c.blob.digest, expected_size=c.blob.size,
                                       media_type=c.blob.media_type)
                manifest = img.manifest
                if manifest is None:
                    config = store.put_blob_bytes(img.config, MT_OCI_CONFIG)
                    manifest = Manifest(
                        config=Descriptor(MT_OCI_CONFIG, config.digest, config.size),
                        layers=tuple(Descriptor(c.blob.media_type, c.blob.digest, c.blob.size) for c in checked),
                        media_type=MT_OCI_MANIFEST,
                    ).to_json()
                    stored = store.put_manifest(manifest, MT_OCI_MANIFEST, names=names)
                else:
                    parsed = Manifest.from_json(manifest)
                    store.put_blob_bytes(img.config, parsed.config.media_type or MT_OCI_CONFIG)
                    stored = store.put_manifest(manifest, parsed.media_type, names=names)
                loaded.append(LoadedImage(stored.id, stored.manifest_digest, names))
    return loaded
