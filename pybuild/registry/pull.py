"""`pybuild pull`: a remote image into the store, every digest and size verified, present blobs not fetched.

Interim path until issue 11's ``ingest`` lands: layers stream straight from the registry into ``Store.put_blob``
(one pass: the reader verifies while it streams, the store verifies again before the blob becomes visible), one
at a time, because today's Store is not shared between threads. A lease keeps the new blobs from gc until the
manifest that references them is recorded, so an interrupted pull leaves nothing half-stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, cast

from pybuild.model.oci import Platform
from pybuild.registry.config import load_registries_conf
from pybuild.registry.remote import RemoteImage, fetch_image
from pybuild.registry.transport import RegistryError
from pybuild.store import Image, Store


@dataclass(frozen=True)
class PullResult:
    image: Image
    remote: RemoteImage
    name: str | None  # the name tagged (None for a pull by digest)
    downloaded: int  # layers fetched (the others were already stored)


def pull_image(store: Store, text: str, platform: Platform | None = None, *, tls_verify: bool | None = None,
               progress: Callable[[str, str], None] | None = None) -> PullResult:
    """Pull text (a reference; short names try registries.conf's unqualified-search-registries in order)."""
    from pybuild.planner.platform import host_platform

    conf = load_registries_conf()
    want = platform or host_platform()
    remote: RemoteImage | None = None
    first_error: RegistryError | None = None
    for ref in conf.candidates(text):
        try:
            remote = fetch_image(ref, want, conf=conf, tls_verify=tls_verify)
            break
        except RegistryError as e:
            first_error = first_error or e
    if remote is None:
        assert first_error is not None
        raise first_error
    ref = remote.reference
    downloaded = 0
    with store.lease():
        for d in remote.layers:
            short = d.digest.removeprefix("sha256:")[:12]
            if store.has_blob(d.digest):
                if progress:
                    progress(short, "Already exists")
                continue
            with remote.open_layer(d) as r:
                store.put_blob(cast(IO[bytes], r), expected_digest=d.digest, expected_size=d.size,
                               media_type=d.media_type)
            downloaded += 1
            if progress:
                progress(short, "Pull complete")
        store.put_blob_bytes(remote.config_bytes, remote.manifest.config.media_type)
        name = ref.familiar() if ref.digest is None else None
        image = store.put_manifest(remote.manifest_bytes, remote.manifest_media_type,
                                   names=[name] if name else [])
    return PullResult(image, remote, name, downloaded)
