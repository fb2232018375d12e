"""How a RUN step becomes a process: its argv (shell form, exec form, heredoc scripts), the view of the build
context its bind mounts get, and the error a failing command turns into.

Pure functions over the typed instruction and plain paths; the engine calls them and hands the result to the
sandbox.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from pybuild.context.context import BuildContext
from pybuild.errors import PybuildError
from pybuild.model import instructions as ins
from pybuild.sandbox import BindMount


class StepFailed(PybuildError):
    """A RUN command exited non-zero: the step, the command, its exit code and the end of its output."""

    def __init__(self, step: str, argv: Sequence[str], code: int, tail: list[str]) -> None:
        cmd = " ".join(argv)
        super().__init__(f"{step}: process \"{cmd}\" did not complete successfully: exit code: {code}")
        self.tail = tail
        self.code = code

    def render(self) -> str:
        text = super().render()
        if not self.tail:
            return text
        lines = "\n".join(f"  > {t}" for t in self.tail)
        return f"{text}\nlast {len(self.tail)} lines of output:\n{lines}"


def run_argv(inst: ins.Run, shell: tuple[str, ...], scratch: Path) -> tuple[list[str], list[BindMount]]:
    """The argv of a RUN step, as Docker builds it, plus mounts for heredoc scripts."""
    if not inst.prepend_shell:
        return list(inst.cmd), []
    text = " ".join(inst.cmd)
    if inst.files:
        first = inst.files[0]
        body = heredoc_body(first)
        if len(inst.files) == 1 and text.strip().startswith("<<") and text.strip().lstrip("<-").strip("'\"") == \
                first.name:
            # `RUN <<EOF` alone: the body is the script. A shebang makes it an executable run directly.
            if body.startswith("#!"):
                script = scratch / "heredoc-script"
                script.write_text(body)
                script.chmod(0o755)
                return ["/dev/pipes/" + first.name], [BindMount(script, "/dev/pipes/" + first.name)]
            return [*shell, body], []
        # Otherwise the shell sees the command line followed by the heredoc bodies, as if typed.
        parts = [text]
        for f in inst.files:
            parts.append(heredoc_body(f) + f.name)
        return [*shell, "\n".join(parts)], []
    return [*shell, text], []


def context_mask(context: BuildContext, mask: Path) -> bool:
    """Fill `mask` with an overlay layer that, stacked above the context, hides what .dockerignore ignores.

    Ignored entries become whiteouts; the directories holding them are mirrored with the context's own mode, owner
    and times (the top layer's attributes are the merged directory's). False (and no mask) when nothing is hidden.
    """
    if not context.ignore:
        return False
    visible = {e.rel for e in context.walk()}
    root = context.root
    mirrored: list[tuple[Path, os.stat_result]] = []

    def mirror(rel_dir: str) -> Path:
        target = mask / rel_dir if rel_dir else mask
        if not target.exists():
            if rel_dir:
                mirror(os.path.dirname(rel_dir))
            st = os.lstat(root / rel_dir if rel_dir else root)
            target.mkdir(mode=0o700)
            os.chown(target, st.st_uid, st.st_gid)
            os.chmod(target, stat.S_IMODE(st.st_mode))
            mirrored.append((target, st))
        return target

    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in [*dirnames, *filenames]:
            if (f"{rel_dir}/{name}" if rel_dir else name) not in visible:
                os.mknod(mirror(rel_dir) / name, stat.S_IFCHR, os.makedev(0, 0))  # an overlay whiteout
        dirnames[:] = [d for d in dirnames if (f"{rel_dir}/{d}" if rel_dir else d) in visible]
    for target, st in reversed(mirrored):  # deepest first: a child's whiteouts changed its parent's mtime
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    return bool(mirrored)


def heredoc_body(f: ins.InlineFile) -> str:
    if not f.chomp:
        return f.data
    return "".join(line.lstrip("\t") for line in f.data.splitlines(keepends=True))
