"""Reading docker-archive and OCI-archive tars: which images they hold and whether their blobs are intact.

``open_archive`` detects the format (``manifest.json`` -> docker-archive; ``oci-layout`` + ``index.json``
-> OCI; both -> the OCI manifests are used, so their digests are kept, and names come from both). The
archive itself may be gzip/zstd/xz/bzip2-compressed, as ``docker load`` allows. Nothing here writes
anywhere but a private temporary file; the loader decides what goes into the store after ``check_layer``
has verified every layer against its digest and the config's diff ID.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from pybuild.export.common import (
    CONTAINERD_NAME,
    INDEX_TYPES,
    LAYER_TYPES,
    MANIFEST_TYPES,
    MEDIA_TYPE_FOR_COMPRESSION,
    MT_OCI_LAYER,
    REF_NAME,
    ArchiveError,
    ArchiveFormat,
    BlobRef,
    blob_path,
    config_diff_ids,
    load_json,
    parse_descriptor,
    parse_manifest,
    sha256_digest,
)
from pybuild.export.compression import detect_compression, open_decompressed
from pybuild.hashing import HashingReader, drain
from pybuild.model.reference import normalize_name

_MAX_JSON = 64 << 20  # manifests and configs are small; refuse to read a huge member into memory


@dataclass(frozen=True)
class ArchiveLayer:
    member: str  # path of the layer file inside the archive
    diff_id: str  # from the image config
    declared: BlobRef | None  # from the archive's OCI manifest; None for a docker-archive without one


@dataclass(frozen=True)
class ArchiveImage:
    names: tuple[str, ...]  # familiar form: busybox:latest, localhost:5000/x:1
    config: bytes
    manifest: bytes | None  # the archive's own manifest bytes, when it has one (kept, so its digest survives)
    layers: tuple[ArchiveLayer, ...]

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)


@dataclass(frozen=True)
class CheckedLayer:
    """A verified layer and the blob the store should hold for it."""

    layer: ArchiveLayer
    blob: BlobRef  # digest/size/media type of the blob to store
    compression: str  # of the file in the archive
    convert: bool  # True when the file must be decompressed before storing (xz/bzip2 are not OCI layer types)


def familiar_name(name: str) -> str:
    """``docker.io/library/busybox:latest`` -> ``busybox:latest``; ``docker.io/x/y`` -> ``x/y:latest``."""
    return normalize_name(name)


class Archive:
    """An open image archive. Use as a context manager; members are read from a seekable tar file."""

    def __init__(self, tar: tarfile.TarFile, label: str) -> None:
        self.tar = tar
        self.label = label
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            for info in tar:
                self.members[_norm(info.name)] = info
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ArchiveError(f"{label} is truncated or not a valid tar archive: {e}") from None
        if not _has_end_marker(tar):
            raise ArchiveError(f"{label} is truncated: the tar archive has no end-of-archive marker")
        if "manifest.json" in self.members:
            self.format = ArchiveFormat.DOCKER
        elif "index.json" in self.members:
            self.format = ArchiveFormat.OCI
        else:
            raise ArchiveError(
                f"{label} is not an image archive: it has neither manifest.json nor index.json",
                hint="`pybuild load` reads what `docker save`, `podman save` and `pybuild save` write; "
                "use `pybuild import` for a root filesystem tarball",
            )
        self.images = self._read_images()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tar.close()

    # -- members -------------------------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        return _norm(name) in self.members

    def open_member(self, name: str) -> IO[bytes]:
        info = self.members.get(_norm(name))
        if info is None:
            raise ArchiveError(f"{self.label} is missing {name}")
        try:
            f = self.tar.extractfile(info)
        except (tarfile.TarError, KeyError) as e:
            raise ArchiveError(f"{self.label}: cannot read {name}: {e}") from None
        if f is None:
            raise ArchiveError(f"{self.label}: {name} is not a regular file")
        return f

    def read_json_member(self, name: str) -> tuple[bytes, Any]:
        info = self.members.get(_norm(name))
        if info is not None and info.size > _MAX_JSON:
            raise ArchiveError(f"{self.label}: {name} is too large for a JSON document ({info.size} bytes)")
        with self.open_member(name) as f:
            try:
                data = f.read()
            except (OSError, tarfile.TarError) as e:
                raise ArchiveError(f"{self.label}: {name} is truncated: {e}") from None
        return data, load_json(data, f"{name} in {self.label}")

    def read_blob(self, ref: BlobRef, what: str) -> bytes:
        data, _ = self.read_json_member(blob_path(ref.digest))
        if sha256_digest(data) != ref.digest or len(data) != ref.size:
            raise ArchiveError(f"{self.label}: {what} does not match its digest {ref.digest}")
        return data

    # -- images --------------------------------------------------------------------------------------------

    def _read_images(self) -> tuple[ArchiveImage, ...]:
        docker_names: dict[str, list[str]] = {}
        docker_entries: list[dict[str, Any]] = []
        if self.format is ArchiveFormat.DOCKER:
            _, entries = self.read_json_member("manifest.json")
            if not isinstance(entries, list) or not entries:
                raise ArchiveError(f"{self.label}: manifest.json is not a non-empty list of images")
            for i, entry in enumerate(entries):
                if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
                    raise ArchiveError(f"{self.label}: manifest.json entry {i} has no Config")
                docker_entries.append(entry)
                tags = entry.get("RepoTags") or []
                if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                    raise ArchiveError(f"{self.label}: manifest.json entry {i} has a malformed RepoTags")
                docker_names.setdefault(_norm(entry["Config"]), []).extend(familiar_name(t) for t in tags)
        if self.has("index.json") and self.has("oci-layout"):
            return self._read_oci(docker_names)
        return tuple(self._read_docker_entry(e) for e in docker_entries)

    def _read_docker_entry(self, entry: dict[str, Any]) -> ArchiveImage:
        config_path = _norm(entry["Config"])
        config, _ = self.read_json_member(config_path)
        diff_ids = config_diff_ids(config, f"image config {config_path} in {self.label}")
        layer_paths = entry.get("Layers")
        if not isinstance(layer_paths, list) or not all(isinstance(p, str) for p in layer_paths):
            raise ArchiveError(f"{self.label}: manifest.json entry for {config_path} has no Layers list")
        if len(layer_paths) != len(diff_ids):
            raise ArchiveError(
                f"{self.label}: image {config_path} lists {len(layer_paths)} layers but its config has "
                f"{len(diff_ids)} diff IDs"
            )
        for p in layer_paths:
            if not self.has(p):
                raise ArchiveError(f"{self.label} is missing layer {p}")
        layers = tuple(ArchiveLayer(_norm(p), d, None) for p, d in zip(layer_paths, diff_ids, strict=True))
        names = tuple(familiar_name(t) for t in entry.get("RepoTags") or [])
        return ArchiveImage(_dedupe(names), config, None, layers)

    def _read_oci(self, docker_names: dict[str, list[str]]) -> tuple[ArchiveImage, ...]:
        _, layout = self.read_json_member("oci-layout")
        if not isinstance(layout, dict) or not isinstance(layout.get("imageLayoutVersion"), str):
            raise ArchiveError(f"{self.label}: oci-layout has no imageLayoutVersion")
        _, index = self.read_json_member("index.json")
        found: dict[str, tuple[bytes, list[str]]] = {}  # manifest digest -> (bytes, names), in index order
        for manifest, names in self._walk_index(index, "index.json", depth=0):
            digest = sha256_digest(manifest)
            found.setdefault(digest, (manifest, []))[1].extend(names)
        if not found:
            raise ArchiveError(f"{self.label}: index.json lists no image for this platform ({_host_platform()})")
        images: list[ArchiveImage] = []
        for digest, (manifest, names) in found.items():
            parsed = parse_manifest(manifest, f"manifest {digest} in {self.label}")
            config = self.read_blob(parsed.config, f"config of manifest {digest}")
            diff_ids = config_diff_ids(config, f"config {parsed.config.digest} in {self.label}")
            if len(diff_ids) != len(parsed.layers):
                raise ArchiveError(
                    f"{self.label}: manifest {digest} lists {len(parsed.layers)} layers but its config has "
                    f"{len(diff_ids)} diff IDs"
                )
            layers: list[ArchiveLayer] = []
            for ref, diff_id in zip(parsed.layers, diff_ids, strict=True):
                if ref.media_type not in LAYER_TYPES:
                    raise ArchiveError(f"{self.label}: layer {ref.digest} has unsupported media type {ref.media_type}")
                path = blob_path(ref.digest)
                if not self.has(path):
                    raise ArchiveError(f"{self.label} is missing layer blob {ref.digest}")
                layers.append(ArchiveLayer(path, diff_id, ref))
            all_names = [*names, *docker_names.get(blob_path(parsed.config.digest), [])]
            images.append(ArchiveImage(_dedupe(tuple(all_names)), config, manifest, tuple(layers)))
        return tuple(images)

    def _walk_index(self, index: Any, what: str, depth: int) -> Iterator[tuple[bytes, list[str]]]:
        if depth > 4:
            raise ArchiveError(f"{self.label}: image indexes nest too deeply")
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list):
            raise ArchiveError(f"{self.label}: {what} has no manifests list")
        host = _host_platform()
        for i, entry in enumerate(entries):
            ref = parse_descriptor(entry, f"{what} entry {i}")
            plat = entry.get("platform")
            if isinstance(plat, dict) and _platform_of(plat) != host:
                continue
            names = _names_from_annotations(entry.get("annotations"))
            if ref.media_type in INDEX_TYPES:
                _, child = self.read_json_member(blob_path(ref.digest))
                self.read_blob(ref, f"index {ref.digest}")
                for manifest, child_names in self._walk_index(child, f"index {ref.digest}", depth + 1):
                    yield manifest, names + child_names
            elif ref.media_type in MANIFEST_TYPES:
                yield self.read_blob(ref, f"manifest {ref.digest}"), names
            # other artifacts (attestations, signatures) are not images: skipped, as docker load does

    # -- layer verification --------------------------------------------------------------------------------

    def check_layer(self, layer: ArchiveLayer) -> CheckedLayer:
        """Stream one layer file, checking its digest (when declared) and its uncompressed digest (diff ID).

        Raises ArchiveError naming the layer on any mismatch, truncation or corrupt compression.
        """
        what = f"layer {layer.member} in {self.label}"
        with self.open_member(layer.member) as raw:
            hashing = HashingReader(raw)  # type: ignore[arg-type]
            plain, kind = open_decompressed(hashing, what)  # type: ignore[arg-type]
            diff = hashlib.sha256()
            try:
                while chunk := plain.read(1 << 20):
                    diff.update(chunk)
                drain(hashing)  # trailing bytes after the compressed stream still count for the digest
            except (OSError, tarfile.TarError) as e:
                raise ArchiveError(f"{what} is truncated: {e}") from None
        diff_id = "sha256:" + diff.hexdigest()
        declared = layer.declared
        if declared is not None and (hashing.digest != declared.digest or hashing.count != declared.size):
            raise ArchiveError(
                f"{what} does not match the digest in its manifest",
                hint=f"manifest says {declared.digest} ({declared.size} bytes), "
                f"content is {hashing.digest} ({hashing.count} bytes)",
            )
        if diff_id != layer.diff_id:
            raise ArchiveError(
                f"{what} does not match the diff ID in its image config",
                hint=f"config says {layer.diff_id}, uncompressed content is {diff_id}",
            )
        if layer.declared is not None:
            return CheckedLayer(layer, layer.declared, kind, convert=False)
        if kind in MEDIA_TYPE_FOR_COMPRESSION:
            blob = BlobRef(hashing.digest, hashing.count, MEDIA_TYPE_FOR_COMPRESSION[kind])
            return CheckedLayer(layer, blob, kind, convert=False)
        # xz and bzip2 have no OCI layer media type: the store keeps the plain tar (its digest is the diff ID)
        size = self.uncompressed_size(layer)
        return CheckedLayer(layer, BlobRef(diff_id, size, MT_OCI_LAYER), kind, convert=True)

    def uncompressed_size(self, layer: ArchiveLayer) -> int:
        with self.open_member(layer.member) as raw:
            plain, _ = open_decompressed(raw, layer.member)  # type: ignore[arg-type]
            return drain(plain)

    @contextmanager
    def open_for_store(self, checked: CheckedLayer) -> Iterator[BinaryIO]:
        """The bytes the store should hold for a checked layer (decompressed if it needed converting)."""
        with self.open_member(checked.layer.member) as raw:
            if checked.convert:
                plain, _ = open_decompressed(raw, checked.layer.member)  # type: ignore[arg-type]
                yield plain
            else:
                yield raw  # type: ignore[misc]


def _has_end_marker(tar: tarfile.TarFile) -> bool:
    # tarfile treats end-of-file at a header boundary as a clean end, so a tar cut between two members
    # would look complete; every tar writer ends the archive with zero blocks, so insist on one.
    f = tar.fileobj
    if f is None:
        return False
    f.seek(tar.offset)
    block = f.read(tarfile.BLOCKSIZE)
    return len(block) == tarfile.BLOCKSIZE and block.count(0) == tarfile.BLOCKSIZE


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _dedupe(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def _names_from_annotations(annotations: Any) -> list[str]:
    if not isinstance(annotations, dict):
        return []
    full = annotations.get(CONTAINERD_NAME)
    if isinstance(full, str) and full:
        return [familiar_name(full)]
    ref = annotations.get(REF_NAME)
    # A bare ref name ("latest", "v1") is only a tag with no repository: it cannot name an image here.
    if isinstance(ref, str) and ref and (":" in ref or "/" in ref):
        return [familiar_name(ref)]
    return []


def _host_platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
    return f"linux/{arch}"


def _platform_of(plat: dict[str, Any]) -> str:
    return f"{plat.get('os', '')}/{plat.get('architecture', '')}"


@contextmanager
def open_archive(path: Path | None, stdin: BinaryIO | None = None) -> Iterator[Archive]:
    """Open an archive file (or, with ``path=None``, ``stdin``), decompressing it first if compressed.

    Non-seekable and compressed input is spooled to a private temporary file, because both formats need
    random access (docker-archive puts ``manifest.json`` last).
    """
    label = str(path) if path is not None else "standard input"
    tar_file: BinaryIO
    if path is not None:
        try:
            tar_file = open(path, "rb")  # noqa: SIM115
        except OSError as e:
            raise ArchiveError(f"cannot open {path}: {e.strerror}") from None
        if detect_compression(tar_file.read(6)) != "none":
            with tar_file:
                tar_file.seek(0)
                tar_file = _spool(tar_file, label)
        else:
            tar_file.seek(0)
    else:
        assert stdin is not None
        tar_file = _spool(stdin, label)
    with tar_file:
        try:
            tar = tarfile.open(fileobj=tar_file, mode="r:")  # noqa: SIM115
        except (tarfile.TarError, OSError, EOFError):
            raise ArchiveError(f"{label} is not a tar archive", hint="expected what `docker save` writes") from None
        try:
            archive = Archive(tar, label)
        except BaseException:
            tar.close()
            raise
        with archive:
            yield archive


def _spool(source: BinaryIO, label: str) -> BinaryIO:
    plain, _ = open_decompressed(source, label)
    spool = tempfile.TemporaryFile(prefix="pybuild-load-")  # noqa: SIM115
    try:
        shutil.copyfileobj(plain, spool, 1 << 20)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool  # type: ignore[return-value]
