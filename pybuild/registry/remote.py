"""A remote image: a reference resolved through registries.conf to a manifest, its config, and lazily streamed layers.

This is the registry's side of the image model (issue 11 brings the protocols; until then RemoteImage is a plain
dataclass with the same parts: manifest bytes, config bytes, layer descriptors and a way to open each layer).
An index is resolved to one platform's manifest: the host's by default, BuildKit attestation entries
(``unknown/unknown``) skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pybuild.errors import PybuildError
from pybuild.model.oci import Descriptor, Index, Manifest, Platform, is_index_type, sha256_digest
from pybuild.model.reference import Reference
from pybuild.registry.client import BlobReader, FetchedManifest, Registry
from pybuild.registry.config import Endpoint, RegistriesConf, load_registries_conf
from pybuild.registry.transport import RegistryError

MAX_CONFIG = 8 * 1024 * 1024


def _norm(p: Platform) -> tuple[str, str, str]:
    from pybuild.planner.platform import parse_platform  # containerd's normalisation (arm64/v8 == arm64, ...)

    n = parse_platform(str(p)) if p.os and p.architecture else p
    return n.os, n.architecture, n.variant


def select_manifest(index: Index, want: Platform, what: str) -> Descriptor:
    """The index entry for a platform: exact os/arch/variant, else os/arch when the wanted variant is unset."""
    entries = [d for d in index.manifests if d.platform is not None
               and (d.platform.os, d.platform.architecture) != ("unknown", "unknown")]
    w = _norm(want)
    for d in entries:
        assert d.platform is not None
        if _norm(d.platform) == w:
            return d
    if not w[2]:
        for d in entries:
            assert d.platform is not None
            if _norm(d.platform)[:2] == w[:2]:
                return d
    have = ", ".join(sorted({str(d.platform) for d in entries if d.platform})) or "none"
    raise PybuildError(f"{what}: no image for platform {want} (the index has: {have})",
                       hint="choose one with --platform")


@dataclass
class RemoteImage:
    """One platform's image at a registry: the manifest and config as their original bytes."""

    reference: Reference
    endpoint: Endpoint
    registry: Registry
    manifest_bytes: bytes
    manifest_media_type: str
    manifest_digest: str
    config_bytes: bytes
    manifest: Manifest
    index_digest: str | None = None  # the digest the tag pointed at, when it was an index
    layers: tuple[Descriptor, ...] = field(default=())

    @property
    def repo_digest(self) -> str:
        """``name@sha256:...`` as Docker's RepoDigests shows it: the digest the tag resolved to."""
        return f"{self.reference.familiar_name}@{self.index_digest or self.manifest_digest}"

    def open_layer(self, d: Descriptor) -> BlobReader:
        return self.registry.open_blob(self.endpoint.path, d.digest, d.size,
                                       what=f"pull {self.reference.familiar()}: layer {d.digest[:19]}")


def _registry(ep: Endpoint, conf: RegistriesConf, cache: dict[str, Registry], tls_verify: bool | None) -> Registry:
    host = ep.api_host
    if host not in cache:
        cache[host] = Registry(host, insecure=ep.insecure or conf.is_insecure(ep.host) or tls_verify is False)
    return cache[host]


def fetch_image(ref: Reference, platform: Platform, *, conf: RegistriesConf | None = None,
                tls_verify: bool | None = None, registries: dict[str, Registry] | None = None) -> RemoteImage:
    """Resolve ref (mirrors in order, then the primary) to one platform's manifest and config."""
    conf = conf if conf is not None else load_registries_conf()
    cache = registries if registries is not None else {}
    what = f"pull {ref.familiar()}"
    errors: list[str] = []
    last: RegistryError | None = None
    for ep in conf.pull_endpoints(ref):
        reg = _registry(ep, conf, cache, tls_verify)
        try:
            return _fetch_from(ref, ep, reg, platform, what)
        except RegistryError as e:
            last = e
            if not ep.mirror:
                break
            errors.append(f"mirror {ep.host}: {e.message}")
    assert last is not None
    if errors:
        raise RegistryError(f"{last.message} (after {'; '.join(errors)})", last.status, hint=last.hint)
    raise last


def _fetch_from(ref: Reference, ep: Endpoint, reg: Registry, platform: Platform, what: str) -> RemoteImage:
    tag_or_digest = ref.manifest_ref
    fm: FetchedManifest = reg.get_manifest(ep.path, tag_or_digest, what=what)
    index_digest: str | None = None
    if is_index_type(fm.media_type):
        index_digest = fm.digest
        d = select_manifest(Index.from_json(fm.data, fm.media_type), platform, what)
        fm = reg.get_manifest(ep.path, d.digest, what=what)
        if is_index_type(fm.media_type):
            raise RegistryError(f"{what}: an index entry points at another index")
    manifest = Manifest.from_json(fm.data, fm.media_type)
    with reg.open_blob(ep.path, manifest.config.digest, manifest.config.size, what=f"{what}: config") as r:
        if manifest.config.size > MAX_CONFIG:
            raise RegistryError(f"{what}: image config is {manifest.config.size} bytes, over the 8 MiB limit")
        config = b"".join(r)
    try:
        json.loads(config)
    except ValueError:
        raise RegistryError(f"{what}: the image config is not JSON") from None
    assert sha256_digest(config) == manifest.config.digest  # BlobReader verified it
    return RemoteImage(reference=ref, endpoint=ep, registry=reg, manifest_bytes=fm.data,
                       manifest_media_type=fm.media_type, manifest_digest=fm.digest, config_bytes=config,
                       manifest=manifest, index_digest=index_digest, layers=manifest.layers)
