"""The local content store (OCI layout + SQLite): the only code that writes under the store root."""

from pybuild.store.store import Image, Layer, Problem, PruneReport, Store

__all__ = ["Image", "Layer", "Problem", "PruneReport", "Store"]
