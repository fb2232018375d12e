"""`pybuild push`: a stored image to a registry. Blobs the repository has are skipped (HEAD), the others upload in
parallel (monolithic or chunked by size) straight from the store's files; the manifest goes last, as its original
bytes with its media type, so the pushed digest is the stored one.

Layers go as stored unless ``compression`` asks for gzip or zstd: then each layer in another compression is
recompressed into a temporary file outside the store (deterministically: the same layer gives the same blob) and a
new manifest over the converted layers is pushed; the config, and so the image ID, does not change.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from pybuild.errors import PybuildError
from pybuild.model.oci import (
    MT_DOCKER_CONFIG,
    MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_MANIFEST,
    MT_OCI_CONFIG,
    MT_OCI_LAYER_GZIP,
    MT_OCI_LAYER_ZSTD,
    MT_OCI_MANIFEST,
    Descriptor,
    Manifest,
)
from pybuild.model.reference import parse_reference
from pybuild.registry.client import Registry
from pybuild.registry.config import load_registries_conf
from pybuild.store import Store

PARALLEL_UPLOADS = 4
COMPRESSIONS = ("gzip", "zstd")


def layer_compression(media_type: str) -> str:
    if media_type.endswith("gzip"):
        return "gzip"
    if media_type.endswith("zstd"):
        return "zstd"
    return "none"


def _convert(store: Store, d: Descriptor, target: str, tmp_dir: Path) -> tuple[Descriptor, Path]:
    """Recompress a stored layer to target in a temp file; its descriptor and path."""
    from pybuild.layer.compression import open_decompressed

    fd, name = tempfile.mkstemp(prefix="pybuild-push-", dir=tmp_dir)
    path = Path(name)
    h = hashlib.sha256()

    class _Hashing:
        """A write-only file that hashes and counts what goes to fd."""

        n = 0

        def write(self, b: bytes) -> int:
            h.update(b)
            self.n += len(b)
            return os.write(fd, b)

        def flush(self) -> None:
            pass

    out = _Hashing()
    try:
        with store.open_blob(d.digest) as src:
            tar = open_decompressed(src)
            if target == "gzip":
                with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:  # type: ignore[arg-type]
                    while chunk := tar.read(1 << 20):
                        gz.write(chunk)
            else:
                import zstandard

                cctx = zstandard.ZstdCompressor(level=3)
                with cctx.stream_writer(out, closefd=False) as zw:  # type: ignore[arg-type]
                    while chunk := tar.read(1 << 20):
                        zw.write(chunk)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    mt = MT_OCI_LAYER_GZIP if target == "gzip" else MT_OCI_LAYER_ZSTD
    return Descriptor(mt, "sha256:" + h.hexdigest(), out.n), path


@dataclass(frozen=True)
class PushResult:
    reference: str  # the full destination name
    digest: str
    size: int
    uploaded: int  # blobs uploaded (the others were already there)


def push_image(store: Store, image_ref: str, dest: str | None = None, *, tls_verify: bool | None = None,
               compression: str | None = None, progress: Callable[[str, str], None] | None = None) -> PushResult:
    """Push the stored image image_ref to dest (default: its own name), layers converted to compression if given."""
    if compression is not None and compression not in COMPRESSIONS:
        raise PybuildError(f"unsupported --compression {compression!r}", hint="use gzip or zstd")
    image = store.resolve(image_ref)
    ref = parse_reference(dest or image_ref)
    conf = load_registries_conf()
    ep = conf.push_endpoint(ref)
    reg = Registry(ep.api_host, insecure=ep.insecure or conf.is_insecure(ep.host) or tls_verify is False)
    repo = ep.path
    converted = _converted(store, image.manifest, image.manifest_digest, compression)
    with converted as (manifest_bytes, media_type, blobs, files):
        def one(d: Descriptor) -> bool:
            short = d.digest.removeprefix("sha256:")[:12]
            if reg.has_blob(repo, d.digest, what=f"push {ref.familiar()}") is not None:
                if progress:
                    progress(short, "Layer already exists")
                return False
            path = files.get(d.digest)

            def opener() -> BinaryIO:
                return path.open("rb") if path else store.open_blob(d.digest)

            reg.upload_blob(repo, d.digest, d.size, opener)
            if progress:
                progress(short, "Pushed")
            return True

        with ThreadPoolExecutor(max_workers=PARALLEL_UPLOADS) as pool:
            uploaded = sum(pool.map(one, blobs))
        target = ref.digest or ref.tag or "latest"
        digest = reg.put_manifest(repo, target, manifest_bytes, media_type)
    return PushResult(ref.full(), digest, len(manifest_bytes), uploaded)


@contextlib.contextmanager
def _converted(store: Store, manifest: Manifest, manifest_digest: str, compression: str | None
               ) -> Iterator[tuple[bytes, str, list[Descriptor], dict[str, Path]]]:
    """(manifest bytes, media type, blobs to push, converted blob files); the stored manifest when nothing
    needs converting."""
    todo = [d for d in manifest.layers if compression and layer_compression(d.media_type) != compression]
    if not todo:
        data = store.read_blob(manifest_digest)  # the original bytes, never a re-encoding
        yield data, manifest.media_type, [*manifest.layers, manifest.config], {}
        return
    assert compression is not None
    with tempfile.TemporaryDirectory(prefix="pybuild-push-") as tmp:
        files: dict[str, Path] = {}
        converted: dict[str, Descriptor] = {}
        with ThreadPoolExecutor(max_workers=PARALLEL_UPLOADS) as pool:
            for old, (new, path) in zip(todo, pool.map(lambda d: _convert(store, d, compression, Path(tmp)), todo),
                                        strict=True):
                converted[old.digest] = new
                files[new.digest] = path
        docker = manifest.media_type == MT_DOCKER_MANIFEST and compression == "gzip"
        layers = []
        for d in manifest.layers:
            n = converted.get(d.digest, d)
            if docker and n.media_type == MT_OCI_LAYER_GZIP:
                n = replace(n, media_type=MT_DOCKER_LAYER_GZIP)
            layers.append(Descriptor(n.media_type, n.digest, n.size, annotations=d.annotations))
        mt = MT_DOCKER_MANIFEST if docker else MT_OCI_MANIFEST
        cfg = manifest.config
        if not docker and cfg.media_type == MT_DOCKER_CONFIG:
            cfg = replace(cfg, media_type=MT_OCI_CONFIG)
        new_manifest = Manifest(config=cfg, layers=tuple(layers), media_type=mt, annotations=manifest.annotations)
        yield new_manifest.to_json(), mt, [*layers, cfg], files

