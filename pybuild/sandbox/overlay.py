"""Mounting a stack of image layers: the one place that builds overlayfs mount options.

Used by the RUN helper (the step's root, `RUN --mount` views of other stages) and the filesystem-job helper
(COPY/ADD destinations and sources). Always called inside a private mount namespace of a helper process.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from pybuild.sandbox import _linux as L

# Why these overlay options: the upper dir becomes a layer tarball, so it must hold plain files and
# whiteouts only. redirect_dir=off makes a renamed lower directory a full copy plus a whiteout instead
# of a trusted.overlay.redirect xattr; metacopy=off makes chmod/chown copy data up instead of leaving a
# metadata-only inode; index=off avoids the hard-link index in workdir that ties the upper dir to these
# exact lower dirs; uuid=off stops the kernel stamping trusted.overlay.uuid on the upper root.
# (trusted.overlay.origin/impure may still appear and are meaningless outside overlay; the layer
# writer skips trusted.overlay.* other than opaque.)
OVERLAY_OPTIONS = ("redirect_dir=off", "index=off", "metacopy=off", "uuid=off")
OVERLAY_OPTIONAL = ("uuid=off",)  # newer than the others; dropped if the kernel rejects it
MAX_OPTIONS = 4095  # mount(2) takes one page of options, NUL included


class OverlayError(Exception):
    """The layers could not be mounted; message and hint are for the user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def mount_layers(target: str, lower_dirs: Sequence[str], *, upper: str | None = None, work: str | None = None,
                 chdir: str | None = None) -> None:
    """Mount `lower_dirs` (topmost first) at `target`; writable into `upper` (with `work`) when given.

    Relative lower dirs are resolved against `chdir` (short link names keep a deep stack within one page).
    Without an upper dir the view is read-only: a single layer is bind-mounted (overlayfs wants two lowers
    then) and no layer at all is an empty tmpfs (FROM scratch). An upper dir with no lowers is bound as is.
    """
    if upper is None and len(lower_dirs) <= 1:
        if lower_dirs:
            source = lower_dirs[0] if os.path.isabs(lower_dirs[0]) else os.path.join(chdir or "/", lower_dirs[0])
            L.mount(source, target, None, L.MS_BIND | L.MS_REC)
            L.mount(None, target, None, L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY)
        else:
            L.mount("tmpfs", target, "tmpfs", L.MS_RDONLY, "mode=755")
        return
    if upper is not None and not lower_dirs:
        L.mount(upper, target, None, L.MS_BIND | L.MS_REC)
        return
    lower = ":".join(d.replace("\\", "\\\\").replace(":", "\\:") for d in lower_dirs)
    base = f"lowerdir={lower}"
    options: list[str] = []
    if upper is not None:
        if work is None:
            raise ValueError("an overlay with an upper dir needs a work dir")
        base += f",upperdir={upper},workdir={work}"
        options = list(OVERLAY_OPTIONS)
    cwd = os.getcwd()
    os.chdir(chdir or "/")
    try:
        while True:
            data = ",".join([base, *options])
            if len(data.encode()) > MAX_OPTIONS:
                raise OverlayError(f"overlay mount options are {len(data.encode())} bytes; the kernel takes at "
                                   f"most {MAX_OPTIONS}", hint="pass lower dirs as short paths relative to chdir")
            try:
                L.mount("overlay", target, "overlay", 0 if upper is not None else L.MS_RDONLY, data)
                return
            except OSError as exc:
                optional = [o for o in options if o in OVERLAY_OPTIONAL]
                if exc.errno != errno.EINVAL or not optional:
                    raise OverlayError(f"cannot mount the image layers: {exc.strerror}",
                                       hint=f"options were {data!r}; the kernel log (dmesg) says more") from exc
                options.remove(optional[0])
    finally:
        os.chdir(cwd)
