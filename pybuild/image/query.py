"""Read-only views of stored images, shaped like Docker's: ``images`` rows, ``image inspect`` JSON, ``history``.

Sizes are the bytes of an image's blobs as stored (compressed layers + config); Docker shows uncompressed
sizes, which pybuild only knows for layers already unpacked.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pybuild.errors import PybuildError
from pybuild.image.display import ellipsis, go_time, human_size, parse_time, rfc3339, since
from pybuild.model.oci import digest_hex
from pybuild.model.reference import parse_reference
from pybuild.store import Image, Store

NONE = "<none>"
MISSING = "<missing>"


@dataclass(frozen=True)
class ImageRow:
    """One line of ``pybuild images``: an image under one of its names (or ``<none>``)."""

    repository: str
    tag: str
    id: str  # full config digest
    digest: str  # manifest digest
    created: str | None  # RFC 3339 from the config
    size: int

    @property
    def short_id(self) -> str:
        return digest_hex(self.id)[:12]

    def cells(self, now: float | None = None) -> list[str]:
        return [self.repository, self.tag, self.short_id, since(self.created, now), human_size(self.size)]

    def to_json(self, now: float | None = None) -> dict[str, str]:
        """The object ``docker images --format json`` prints for a row."""
        return {
            "Containers": "N/A", "CreatedAt": go_time(self.created), "CreatedSince": since(self.created, now),
            "Digest": self.digest, "ID": self.short_id, "Repository": self.repository, "SharedSize": "N/A",
            "Size": human_size(self.size), "Tag": self.tag, "UniqueSize": "N/A",
            "VirtualSize": human_size(self.size),
        }


def split_name(name: str) -> tuple[str, str]:
    """``localhost:5000/x:1`` -> (``localhost:5000/x``, ``1``)."""
    ref = parse_reference(name)
    return ref.familiar_name, ref.tag or NONE


def _created_key(img: Image) -> float:
    dt = parse_time(img.config.created)
    return dt.timestamp() if dt else 0.0


def image_rows(store: Store, pattern: str | None = None) -> list[ImageRow]:
    """Rows for ``pybuild images [REPOSITORY[:TAG]]``, newest image first.

    pattern matches the repository (and the tag when given) with shell wildcards, like Docker's
    reference filter: ``busybox``, ``busybox:1.*``, ``localhost:5000/*``.
    """
    repo_pat, tag_pat = _split_pattern(pattern) if pattern else (None, None)
    rows: list[ImageRow] = []
    for img in sorted(store.list_images(), key=lambda i: (-_created_key(i), i.id)):
        names = [split_name(n) for n in img.names] or [(NONE, NONE)]
        for repo, tag in sorted(names):
            if repo_pat is not None:
                if repo == NONE or not fnmatch.fnmatchcase(repo, repo_pat):
                    continue
                if tag_pat is not None and not fnmatch.fnmatchcase(tag, tag_pat):
                    continue
            rows.append(ImageRow(repo, tag, img.id, img.manifest_digest, img.config.created, img.size))
    return rows


def _split_pattern(pattern: str) -> tuple[str, str | None]:
    slash = pattern.rfind("/")
    colon = pattern.rfind(":")
    repo, tag = (pattern[:colon], pattern[colon + 1 :]) if colon > slash else (pattern, None)
    # Normalise docker.io/library/x to x, but keep wildcards out of the reference parser.
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix) :]
            break
    return repo, tag


# --- inspect -----------------------------------------------------------------------------------------------


def inspect_image(store: Store, img: Image) -> dict[str, Any]:
    """The object ``docker image inspect`` prints for an image (one element of its JSON array)."""
    raw_config = json.loads(img.config_bytes)
    repos: dict[str, None] = {}
    for name in img.names:
        repos.setdefault(parse_reference(name).familiar_name, None)
    lowers: list[str] = []
    try:
        for layer in store.image_layers(img):
            if layer.path is not None:
                lowers.append(str(layer.path))
    except PybuildError:
        lowers = []
    out: dict[str, Any] = {
        "Id": img.id,
        "RepoTags": list(img.names),
        "RepoDigests": [f"{repo}@{img.manifest_digest}" for repo in repos],
        "Parent": "",
        "Comment": raw_config.get("comment", "") if isinstance(raw_config.get("comment"), str) else "",
        "Created": img.config.created or "0001-01-01T00:00:00Z",
        "DockerVersion": raw_config.get("docker_version", "") or "",
        "Author": img.config.author,
        "Config": raw_config.get("config") if isinstance(raw_config.get("config"), dict) else {},
        "Architecture": img.config.architecture,
        "Os": img.config.os,
        "Size": img.size,
        "GraphDriver": {
            "Name": "overlay",
            "Data": {"LowerDir": ":".join(reversed(lowers))} if lowers else None,
        },
        "RootFS": {"Type": img.config.rootfs.type, "Layers": list(img.config.diff_ids)},
        "Metadata": {"LastTagTime": datetime.fromtimestamp(img.added, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                     if img.names else "0001-01-01T00:00:00Z"},
        "Descriptor": {"mediaType": img.descriptor.media_type, "digest": img.manifest_digest,
                       "size": img.descriptor.size},
    }
    if img.config.variant:
        out["Variant"] = img.config.variant
    return out


# --- history -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    id: str  # image ID for the top row, <missing> for the rest (as Docker shows BuildKit-made images)
    created: str | None
    created_by: str
    size: int
    comment: str

    def cells(self, *, no_trunc: bool = False, now: float | None = None) -> list[str]:
        image_id = self.id if no_trunc or self.id == MISSING else digest_hex(self.id)[:12]
        created_by = self.created_by.replace("\t", " ")
        if not no_trunc:
            created_by = ellipsis(created_by, 45)
        return [image_id, since(self.created, now), created_by, human_size(self.size), self.comment]

    def to_json(self, *, no_trunc: bool = False, now: float | None = None) -> dict[str, str]:
        image_id, created_since, created_by, size, comment = self.cells(no_trunc=no_trunc, now=now)
        return {"Comment": comment, "CreatedAt": rfc3339(self.created), "CreatedBy": created_by,
                "CreatedSince": created_since, "ID": image_id, "Size": size}


def history_rows(img: Image) -> list[HistoryRow]:
    """``docker history`` rows, newest first: one per config history entry, sized by the layer it made."""
    layer_sizes = [d.size for d in img.manifest.layers]
    rows: list[HistoryRow] = []
    next_layer = 0
    for h in img.config.history:
        size = 0
        if not h.empty_layer and next_layer < len(layer_sizes):
            size = layer_sizes[next_layer]
            next_layer += 1
        rows.append(HistoryRow(MISSING, h.created, h.created_by, size, h.comment))
    # Layers the history does not account for (configs written without history) still get a row each.
    for size in layer_sizes[next_layer:]:
        rows.append(HistoryRow(MISSING, img.config.created, "", size, ""))
    rows.reverse()
    if rows:
        rows[0] = HistoryRow(img.id, rows[0].created, rows[0].created_by, rows[0].size, rows[0].comment)
    return rows


def history_table(rows: Sequence[HistoryRow], *, no_trunc: bool = False, now: float | None = None) -> list[list[str]]:
    return [r.cells(no_trunc=no_trunc, now=now) for r in rows]
