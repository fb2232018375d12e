"""Naming and removing images: ``tag``, ``rmi`` (with Docker's conflict rules) and ``prune``.

Removal only drops records; the blobs and layers an image no longer needs go at the store's next gc,
which ``rmi`` runs once at the end so ``Deleted:`` means the space is back.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybuild.errors import PybuildError
from pybuild.model.oci import digest_hex
from pybuild.model.reference import normalize_name, parse_reference
from pybuild.store import Image, PruneReport, Store


def tag_image(store: Store, source: str, target: str) -> str:
    """Point the name target at the image source names (any reference ``resolve`` accepts)."""
    target_norm = normalize_name(target)
    if parse_reference(target).digest is not None:
        raise PybuildError(f"refusing to create a tag with a digest reference: {target}")
    img = store.resolve(source)
    return store.tag(img, target_norm)


@dataclass(frozen=True)
class RemoveResult:
    untagged: tuple[str, ...]
    deleted: str | None  # image ID, when the image itself went

    def lines(self) -> list[str]:
        out = [f"Untagged: {n}" for n in self.untagged]
        if self.deleted:
            out.append(f"Deleted: {self.deleted}")
        return out


def _is_name_ref(store: Store, ref: str, img: Image) -> str | None:
    """The normalised name when ref names img (rather than being an ID or digest)."""
    try:
        r = parse_reference(ref)
    except PybuildError:
        return None
    if r.digest is not None:
        return None
    name = r.familiar()
    return name if name in img.names else None


def children(store: Store, img: Image) -> list[Image]:
    """Images built on top of img: their layer stack extends img's (same chain ids, then more)."""
    if not img.chain_ids:
        return []
    n = len(img.chain_ids)
    return [
        other for other in store.list_images()
        if other.manifest_digest != img.manifest_digest and len(other.chain_ids) > n
        and other.chain_ids[:n] == img.chain_ids
    ]


def remove_image(store: Store, ref: str, *, force: bool = False) -> RemoveResult:
    """``rmi ref``: untag a name, and delete the image once no name is left.

    Refuses (unless force) to delete an image by ID while several repositories name it ("image is
    referenced in multiple repositories") and to delete an image that child images extend. Untagging a
    name while other names keep the image is always allowed. The caller runs ``store.gc()`` afterwards.
    """
    img = store.resolve(ref)
    short = digest_hex(img.id)[:12]
    name = _is_name_ref(store, ref, img)
    if name is not None and len(img.names) > 1:
        store.untag(name)
        return RemoveResult((name,), None)
    if name is None and not force:
        repos = {parse_reference(n).familiar_name for n in img.names}
        if len(repos) > 1:
            raise PybuildError(
                f"conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories",
                hint="remove it by name, or use -f to remove every name",
            )
    if not force:
        kids = children(store, img)
        if kids:
            raise PybuildError(
                f"conflict: unable to delete {name or short} (must be forced) - image has dependent child images",
                hint=f"{len(kids)} image(s) are built on it, e.g. {kids[0].names[0] if kids[0].names else kids[0].id}"
                "; -f removes it anyway (their layers stay)",
            )
    untagged = store.remove_image(img)
    return RemoveResult(tuple(untagged), img.id)


def prune(store: Store, *, all_images: bool = False) -> PruneReport:
    """Remove nameless images (every image with all_images), then everything nothing references."""
    return store.prune(untagged=True, all_images=all_images)
