"""The OCI image model: descriptors, image configs, manifests, indexes and media types (references: reference.py).

Everything here is a frozen dataclass that parses from JSON (``from_json``) and serialises to canonical JSON
(``to_json``: sorted keys, no spaces, UTF-8), because the bytes of what we create are what gets hashed.
We only ever serialise objects we create: a config or manifest that came from elsewhere is kept as its
original bytes by the store, so its digest never changes. Fields we do not model are kept in ``extra`` so a
config derived from someone else's (FROM base) still carries them.

Docker schema2 media types are accepted on input wherever the OCI ones are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pybuild.errors import PybuildError

# --- media types -------------------------------------------------------------------------------------------

MT_OCI_LAYOUT_VERSION = "1.0.0"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MT_OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MT_OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"  # seen in the wild, never in the spec
MT_DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = frozenset({MT_OCI_MANIFEST, MT_DOCKER_MANIFEST})
INDEX_TYPES = frozenset({MT_OCI_INDEX, MT_DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({MT_OCI_CONFIG, MT_DOCKER_CONFIG})
LAYER_TYPES = frozenset(
    {
        MT_OCI_LAYER, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD, MT_OCI_LAYER_ND, MT_OCI_LAYER_ND_GZIP,
        MT_OCI_LAYER_ND_ZSTD, MT_DOCKER_LAYER_GZIP, MT_DOCKER_LAYER, MT_DOCKER_LAYER_FOREIGN,
    }
)

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"


# The PATH Docker gives a container whose image does not set one.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

def is_manifest_type(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def is_index_type(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_layer_type(media_type: str) -> bool:
    return media_type in LAYER_TYPES


# --- digests -----------------------------------------------------------------------------------------------

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_ANY_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


def canonical_json(obj: Any) -> bytes:
    """The bytes we hash: sorted keys, no whitespace, UTF-8 (not ASCII-escaped, like Go's encoder)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of data."""
    import hashlib  # here: importing it loads OpenSSL (~2.5 ms), which `pybuild check` never needs

    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(s: str) -> bool:
    """True for a well-formed sha256 digest (the only algorithm the store keeps)."""
    return bool(_DIGEST_RE.match(s))


def check_digest(s: str) -> str:
    """Return s if it is a sha256 digest; raise PybuildError otherwise."""
    if not is_digest(s):
        if _ANY_DIGEST_RE.match(s):
            raise PybuildError(f"unsupported digest algorithm: {s}", hint="only sha256 digests are supported")
        raise PybuildError(f"invalid digest: {s!r}", hint="a digest looks like sha256:<64 hex digits>")
    return s


def digest_hex(digest: str) -> str:
    """The hex part of a sha256 digest (validated)."""
    return check_digest(digest)[len("sha256:"):]


def chain_id(parent_chain_id: str | None, diff_id: str) -> str:
    """The OCI ChainID of a layer: its diff_id at the bottom, else sha256 of "<parent chain> <diff_id>"."""
    if parent_chain_id is None:
        return diff_id
    return sha256_digest(f"{parent_chain_id} {diff_id}".encode())


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """ChainIDs of every layer of a stack, bottom first."""
    out: list[str] = []
    parent: str | None = None
    for d in diff_ids:
        parent = chain_id(parent, d)
        out.append(parent)
    return out


# --- helpers for JSON parsing ------------------------------------------------------------------------------


def _load(data: bytes | str | Mapping[str, Any], what: str) -> dict[str, Any]:
    if isinstance(data, Mapping):
        return dict(data)
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise PybuildError(f"malformed {what} JSON: {e}") from None
    if not isinstance(obj, dict):
        raise PybuildError(f"malformed {what} JSON: expected an object")
    return obj


def _str(obj: Mapping[str, Any], key: str, what: str, default: str = "") -> str:
    v = obj.get(key, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise PybuildError(f"malformed {what}: {key} must be a string")
    return v


def _int(obj: Mapping[str, Any], key: str, what: str, default: int = 0) -> int:
    v = obj.get(key, default)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool):
        raise PybuildError(f"malformed {what}: {key} must be an integer")
    return v


def _strs(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...] | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, str):  # Docker accepts a bare string for Cmd/Entrypoint in old configs
        return (v,)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise PybuildError(f"malformed {what}: {key} must be a list of strings")
    return tuple(v)


def _str_map(obj: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    v = obj.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise PybuildError(f"malformed {what}: {key} must be a map of strings")
    return dict(v)


def _set_keys(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    """Docker writes sets (ExposedPorts, Volumes) as {"key": {}}."""
    v = obj.get(key)
    if v is None:
        return ()
    if not isinstance(v, dict):
        raise PybuildError(f"malformed {what}: {key} must be an object")
    return tuple(sorted(v))


def _extra(obj: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    k = set(known)
    return {key: v for key, v in obj.items() if key not in k}


# --- descriptors -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    """An OS/architecture pair (with variant) images are built for."""

    architecture: str
    os: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Platform:
        w = "platform"
        return cls(
            architecture=_str(d, "architecture", w), os=_str(d, "os", w), variant=_str(d, "variant", w),
            os_version=_str(d, "os.version", w), os_features=_strs(d, "os.features", w) or (),
        )

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return f"{s}/{self.variant}" if self.variant else s


@dataclass(frozen=True)
class Descriptor:
    """A typed pointer to content: media type, digest and size (plus optional annotations and platform)."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # urls, artifactType, data...: kept verbatim

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {**self.extra, "mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform is not None:
            d["platform"] = self.platform.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Descriptor:
        w = "descriptor"
        digest = _str(d, "digest", w)
        check_digest(digest)
        size = _int(d, "size", w, -1)
        if size < 0:
            raise PybuildError("malformed descriptor: size missing or negative")
        plat = d.get("platform")
        return cls(
            media_type=_str(d, "mediaType", w), digest=digest, size=size,
            annotations=_str_map(d, "annotations", w),
            platform=Platform.from_dict(plat) if isinstance(plat, dict) else None,
            extra=_extra(d, ("mediaType", "digest", "size", "annotations", "platform")),
        )

    def with_annotations(self, **annotations: str) -> Descriptor:
        return replace(self, annotations={**self.annotations, **annotations})

    @property
    def ref_name(self) -> str | None:
        """The ``org.opencontainers.image.ref.name`` annotation, if any."""
        return self.annotations.get(ANNOTATION_REF_NAME)


# --- image config ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Healthcheck:
    """HEALTHCHECK settings; durations in nanoseconds as Docker stores them (0 = inherit default)."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"Test": list(self.test)}
        for key, v in (
            ("Interval", self.interval), ("Timeout", self.timeout), ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval), ("Retries", self.retries),
        ):
            if v:
                d[key] = v
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Healthcheck:
        w = "healthcheck"
        return cls(
            test=_strs(d, "Test", w) or (), interval=_int(d, "Interval", w), timeout=_int(d, "Timeout", w),
            start_period=_int(d, "StartPeriod", w), start_interval=_int(d, "StartInterval", w),
            retries=_int(d, "Retries", w),
        )


_CC_KNOWN = (
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal",
    "Healthcheck", "OnBuild", "Shell", "ArgsEscaped",
)


@dataclass(frozen=True)
class ContainerConfig:
    """The ``config`` section of an image config: how a container of the image runs.

    ``None`` for cmd/entrypoint/shell means unset (inherit), an empty tuple means explicitly empty.
    exposed_ports and volumes are sorted keys (``"80/tcp"``, ``"/data"``).
    """

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] | None = None
    args_escaped: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # Hostname, Tty, ... from Docker-made configs

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.extra)
        if self.user:
            d["User"] = self.user
        if self.exposed_ports:
            d["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            d["Env"] = list(self.env)
        if self.entrypoint is not None:
            d["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            d["Cmd"] = list(self.cmd)
        if self.volumes:
            d["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            d["WorkingDir"] = self.working_dir
        if self.labels:
            d["Labels"] = dict(self.labels)
        if self.stop_signal:
            d["StopSignal"] = self.stop_signal
        if self.healthcheck is not None:
            d["Healthcheck"] = self.healthcheck.to_dict()
        if self.on_build:
            d["OnBuild"] = list(self.on_build)
        if self.shell is not None:
            d["Shell"] = list(self.shell)
        if self.args_escaped is not None:
            d["ArgsEscaped"] = self.args_escaped
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContainerConfig:
        w = "image config"
        hc = d.get("Healthcheck")
        ae = d.get("ArgsEscaped")
        return cls(
            user=_str(d, "User", w), exposed_ports=_set_keys(d, "ExposedPorts", w), env=_strs(d, "Env", w) or (),
            entrypoint=_strs(d, "Entrypoint", w), cmd=_strs(d, "Cmd", w), volumes=_set_keys(d, "Volumes", w),
            working_dir=_str(d, "WorkingDir", w), labels=_str_map(d, "Labels", w),
            stop_signal=_str(d, "StopSignal", w),
            healthcheck=Healthcheck.from_dict(hc) if isinstance(hc, dict) else None,
            on_build=_strs(d, "OnBuild", w) or (), shell=_strs(d, "Shell", w),
            args_escaped=ae if isinstance(ae, bool) else None, extra=_extra(d, _CC_KNOWN),
        )

    def env_dict(self) -> dict[str, str]:
        """Env as a mapping (later entries win, entries without '=' map to '')."""
        out: dict[str, str] = {}
        for e in self.env:
            k, _, v = e.partition("=")
            out[k] = v
        return out


@dataclass(frozen=True)
class History:
    """One entry of an image's history: the instruction that made a layer (or an empty one)."""

    created: str | None = None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.extra)
        if self.created is not None:
            d["created"] = self.created
        if self.created_by:
            d["created_by"] = self.created_by
        if self.author:
            d["author"] = self.author
        if self.comment:
            d["comment"] = self.comment
        if self.empty_layer:
            d["empty_layer"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> History:
        w = "history entry"
        created = d.get("created")
        return cls(
            created=created if isinstance(created, str) else None, created_by=_str(d, "created_by", w),
            author=_str(d, "author", w), comment=_str(d, "comment", w), empty_layer=bool(d.get("empty_layer")),
            extra=_extra(d, ("created", "created_by", "author", "comment", "empty_layer")),
        )


@dataclass(frozen=True)
class RootFS:
    """The image's layers, as the diff IDs of their uncompressed tars."""

    diff_ids: tuple[str, ...] = ()
    type: str = "layers"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "diff_ids": list(self.diff_ids)}


_IC_KNOWN = ("architecture", "os", "variant", "os.version", "created", "author", "config", "rootfs", "history")


@dataclass(frozen=True)
class ImageConfig:
    """An image configuration (OCI image-spec config.md / Docker's container.image.v1)."""

    architecture: str = "amd64"
    os: str = "linux"
    variant: str = ""
    os_version: str = ""
    created: str | None = None  # RFC 3339, e.g. 2024-01-02T03:04:05Z
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    rootfs: RootFS = field(default_factory=RootFS)
    history: tuple[History, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # container, docker_version, os.features...

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.extra)
        d["architecture"] = self.architecture
        d["os"] = self.os
        if self.variant:
            d["variant"] = self.variant
        if self.os_version:
            d["os.version"] = self.os_version
        if self.created is not None:
            d["created"] = self.created
        if self.author:
            d["author"] = self.author
        d["config"] = self.config.to_dict()
        d["rootfs"] = self.rootfs.to_dict()
        if self.history:
            d["history"] = [h.to_dict() for h in self.history]
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> ImageConfig:
        d = _load(data, "image config")
        w = "image config"
        cc = d.get("config")
        rootfs = d.get("rootfs") or {}
        if not isinstance(rootfs, dict):
            raise PybuildError("malformed image config: rootfs must be an object")
        diff_ids = _strs(rootfs, "diff_ids", w) or ()
        for x in diff_ids:
            check_digest(x)
        hist = d.get("history") or []
        if not isinstance(hist, list) or not all(isinstance(h, dict) for h in hist):
            raise PybuildError("malformed image config: history must be a list of objects")
        created = d.get("created")
        return cls(
            architecture=_str(d, "architecture", w), os=_str(d, "os", w), variant=_str(d, "variant", w),
            os_version=_str(d, "os.version", w), created=created if isinstance(created, str) else None,
            author=_str(d, "author", w), config=ContainerConfig.from_dict(cc) if isinstance(cc, dict) else
            ContainerConfig(), rootfs=RootFS(diff_ids=diff_ids, type=_str(rootfs, "type", w, "layers")),
            history=tuple(History.from_dict(h) for h in hist), extra=_extra(d, _IC_KNOWN),
        )

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return self.rootfs.diff_ids

    @property
    def platform(self) -> Platform:
        return Platform(architecture=self.architecture, os=self.os, variant=self.variant, os_version=self.os_version)


# --- manifests and indexes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker schema2): a config descriptor plus layer descriptors, bottom first."""

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    media_type: str = MT_OCI_MANIFEST
    annotations: Mapping[str, str] = field(default_factory=dict)
    schema_version: int = 2
    extra: Mapping[str, Any] = field(default_factory=dict)  # subject, artifactType...

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            **self.extra, "schemaVersion": self.schema_version, "mediaType": self.media_type,
            "config": self.config.to_dict(), "layers": [x.to_dict() for x in self.layers],
        }
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any], media_type: str | None = None) -> Manifest:
        """Parse a manifest; media_type (e.g. from the descriptor) is used when the JSON has none."""
        d = _load(data, "manifest")
        w = "manifest"
        mt = _str(d, "mediaType", w) or media_type or MT_OCI_MANIFEST
        if mt not in MANIFEST_TYPES:
            raise PybuildError(f"not an image manifest: media type {mt}")
        if _int(d, "schemaVersion", w) != 2:
            raise PybuildError("unsupported manifest: schemaVersion must be 2")
        cfg = d.get("config")
        layers = d.get("layers") or []
        if not isinstance(cfg, dict) or not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
            raise PybuildError("malformed manifest: config must be an object and layers a list of objects")
        return cls(
            config=Descriptor.from_dict(cfg), layers=tuple(Descriptor.from_dict(x) for x in layers),
            media_type=mt, annotations=_str_map(d, "annotations", w), schema_version=2,
            extra=_extra(d, ("schemaVersion", "mediaType", "config", "layers", "annotations")),
        )


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker): descriptors of manifests, e.g. one per platform."""

    manifests: tuple[Descriptor, ...] = ()
    media_type: str = MT_OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=dict)
    schema_version: int = 2
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            **self.extra, "schemaVersion": self.schema_version, "mediaType": self.media_type,
            "manifests": [m.to_dict() for m in self.manifests],
        }
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any], media_type: str | None = None) -> Index:
        d = _load(data, "index")
        w = "index"
        mt = _str(d, "mediaType", w) or media_type or MT_OCI_INDEX
        if mt not in INDEX_TYPES:
            raise PybuildError(f"not an image index: media type {mt}")
        ms = d.get("manifests") or []
        if not isinstance(ms, list) or not all(isinstance(x, dict) for x in ms):
            raise PybuildError("malformed index: manifests must be a list of objects")
        return cls(
            manifests=tuple(Descriptor.from_dict(x) for x in ms), media_type=mt,
            annotations=_str_map(d, "annotations", w), schema_version=_int(d, "schemaVersion", w, 2),
            extra=_extra(d, ("schemaVersion", "mediaType", "manifests", "annotations")),
        )


def sniff_media_type(data: bytes) -> str:
    """The media type a manifest or index declares, or guesses from its shape (for ``mediaType``-less JSON)."""
    d = _load(data, "manifest")
    mt = d.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if "manifests" in d:
        return MT_OCI_INDEX
    if "config" in d and "layers" in d:
        return MT_OCI_MANIFEST
    raise PybuildError("unrecognised manifest JSON: no mediaType, config or manifests")


def descriptor_for(data: bytes, media_type: str, **annotations: str) -> Descriptor:
    """A descriptor for bytes we hold in memory."""
    return Descriptor(media_type=media_type, digest=sha256_digest(data), size=len(data), annotations=annotations)

