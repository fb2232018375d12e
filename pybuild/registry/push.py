"""`pybuild push`: a stored image to a registry. Blobs the repository has are skipped (HEAD), the others upload in
parallel (monolithic or chunked by size) straight from the store's files; the manifest goes last, as its original
bytes with its media type, so the pushed digest is the stored one.

Layers go as stored (``--compression`` conversion is not done yet).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pybuild.model.oci import Descriptor
from pybuild.model.reference import parse_reference
from pybuild.registry.client import Registry
from pybuild.registry.config import load_registries_conf
from pybuild.store import Store

PARALLEL_UPLOADS = 4


@dataclass(frozen=True)
class PushResult:
    reference: str  # the full destination name
    digest: str
    size: int
    uploaded: int  # blobs uploaded (the others were already there)


def push_image(store: Store, image_ref: str, dest: str | None = None, *, tls_verify: bool | None = None,
               progress: Callable[[str, str], None] | None = None) -> PushResult:
    """Push the stored image image_ref to dest (default: its own name)."""
    image = store.resolve(image_ref)
    ref = parse_reference(dest or image_ref)
    conf = load_registries_conf()
    ep = conf.push_endpoint(ref)
    reg = Registry(ep.api_host, insecure=ep.insecure or conf.is_insecure(ep.host) or tls_verify is False)
    repo = ep.path
    manifest_bytes = store.read_blob(image.manifest_digest)
    blobs: list[Descriptor] = [*image.manifest.layers, image.manifest.config]

    def one(d: Descriptor) -> bool:
        short = d.digest.removeprefix("sha256:")[:12]
        if reg.has_blob(repo, d.digest, what=f"push {ref.familiar()}") is not None:
            if progress:
                progress(short, "Layer already exists")
            return False
        reg.upload_blob(repo, d.digest, d.size, lambda: store.open_blob(d.digest))
        if progress:
            progress(short, "Pushed")
        return True

    with ThreadPoolExecutor(max_workers=PARALLEL_UPLOADS) as pool:
        uploaded = sum(pool.map(one, blobs))
    target = ref.digest or ref.tag or "latest"
    digest = reg.put_manifest(repo, target, manifest_bytes, image.descriptor.media_type)
    return PushResult(ref.full(), digest, len(manifest_bytes), uploaded)
