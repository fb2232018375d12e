"""Layer tarball → directory in overlayfs upper-dir form (placeholder until the applier lands)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from pybuild.layer.base import ApplyStats


def apply_layer(stream: BinaryIO, dest: Path) -> ApplyStats:
    raise NotImplementedError
