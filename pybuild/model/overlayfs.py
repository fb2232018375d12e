"""Overlayfs's own xattr names, in one place for the layer code (reads and writes them) and the sandbox.

The kernel uses the `trusted.` form when mounted by root and the `user.` form under `userxattr` (rootless), so
readers accept both; pybuild runs as root and writes the `trusted.` form.
"""

from __future__ import annotations

OPAQUE_XATTR = "trusted.overlay.opaque"
WHITEOUT_XATTR = "trusted.overlay.whiteout"
OPAQUE_XATTRS = (OPAQUE_XATTR, "user.overlay.opaque")
WHITEOUT_XATTRS = (WHITEOUT_XATTR, "user.overlay.whiteout")
# Everything overlayfs keeps for itself (redirects, metacopy, origin...): never part of a layer or a copy.
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
