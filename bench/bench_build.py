#!/usr/bin/env python3
"""Build speed against `buildah bud --layers --isolation chroot` on the same Dockerfiles, in the same run (not a
test).

Workloads are /work/shared/bench/dockerfiles/* (see the README there): many-steps and copy-context are measured
cold (base present, nothing cached), fully cached, and after a one-step change (a new line at the end of the last
RUN; one context file changed); small-files and big-file cold only. Every figure is the median wall time of
--repeat runs of the command as a user types it: `python -m pybuild build ...` (the real interpreter, not a pyenv
shim) and `buildah ...`. Both tools start from busybox:latest as fixtures/base/busybox.sh makes it: imported into a
fresh pybuild store, and copied from that store into buildah's own temporary storage with skopeo.

Targets (exit 1 if one is missed): many-steps fully cached ≤ 0.3 s and ≤ half of buildah's; copy-context fully
cached ≤ 0.5 s.

    python bench/bench_build.py [--repeat N] [--cold-repeat N] [--only WORKLOAD ...] [--workdir DIR] [--no-buildah]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = Path(os.environ.get("PYBUILD_SHARED", REPO.parent / "shared")) / "bench" / "dockerfiles"
ALL = ("many-steps", "copy-context", "small-files", "big-file")
FULL = ("many-steps", "copy-context")  # measured cached and after a change too

MANY_STEPS_CACHED_MAX = 0.3
MANY_STEPS_VS_BUILDAH = 0.5
COPY_CONTEXT_CACHED_MAX = 0.5


@dataclass
class Row:
    workload: str
    scenario: str
    ours: list[float] = field(default_factory=list)
    theirs: list[float] = field(default_factory=list)

    @staticmethod
    def med(xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None


def run(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Run a command to completion; its wall time. A failure ends the benchmark with its output."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"bench_build: {' '.join(argv)} failed ({p.returncode}):\n{p.stdout.decode(errors='replace')}")
    return elapsed


class Pybuild:
    def __init__(self, work: Path) -> None:
        self.template = work / "pybuild-template"
        self.root = work / "pybuild-store"
        # Bytecode is written (an installed wheel ships it compiled); the first run of each tool warms it.
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), self.env.get("PATH", "")])
        env = {**self.env, "PYBUILD_ROOT": str(self.template)}
        subprocess.run([str(REPO / "fixtures/base/busybox.sh")], env=env, check=True, stdout=subprocess.DEVNULL)

    def fresh(self) -> None:
        """A store holding only the base: the next build is cold."""
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.copytree(self.template, self.root, symlinks=True)

    def build(self, ctx: Path, tag: str) -> float:
        return run([sys.executable, "-m", "pybuild", "--root", str(self.root), "build", "-q", "-t", tag, str(ctx)],
                   self.env)


class Buildah:
    def __init__(self, work: Path, store: Path) -> None:
        self.base = work / "buildah"
        self.store = store
        self.root, self.runroot = self.base / "root", self.base / "runroot"

    def _argv(self) -> list[str]:
        return ["buildah", "--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "overlay"]

    def fresh(self) -> None:
        self.clean()
        dest = f"containers-storage:[overlay@{self.root}+{self.runroot}]docker.io/library/busybox:latest"
        subprocess.run(["skopeo", "copy", "-q", f"oci:{self.store}:busybox:latest", dest], check=True)

    def build(self, ctx: Path, tag: str) -> float:
        return run([*self._argv(), "bud", "--layers", "--isolation", "chroot", "--pull=never", "-q", "-t", tag,
                    str(ctx)])

    def clean(self) -> None:
        if self.root.exists():
            subprocess.run([*self._argv(), "rmi", "--all", "--force"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            subprocess.run(["umount", "-R", str(self.root)], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.base, ignore_errors=True)


def prepare(workload: str, work: Path) -> Path:
    """A writable copy of the workload's context (copy-context: made by its make-context.sh)."""
    src = WORKLOADS / workload
    ctx = work / "ctx" / workload
    if ctx.exists():
        return ctx
    if (src / "make-context.sh").exists():
        subprocess.run(["sh", str(src / "make-context.sh"), str(ctx)], check=True)
    else:
        shutil.copytree(src, ctx)
        for p in [ctx, *ctx.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    return ctx


def one_change(workload: str, ctx: Path, n: int) -> None:
    """Change the last step: a new command at the end of the last RUN, or one context file's content."""
    if workload == "many-steps":
        df = ctx / "Dockerfile"
        lines = df.read_text().splitlines()
        last = max(i for i, line in enumerate(lines) if line.startswith("RUN "))
        lines[last] = lines[last].split(" && echo change-", 1)[0] + f" && echo change-{n}"
        df.write_text("\n".join(lines) + "\n")
    else:
        target = ctx / "src" / "pkg150" / "mod050.bin"
        data = bytearray(target.read_bytes())
        data[:8] = n.to_bytes(8, "little")
        target.write_bytes(bytes(data))


def measure(tool: Pybuild | Buildah, workload: str, ctx: Path, rows: dict[str, Row], record: Callable[[Row],
            list[float]], cold_repeat: int, repeat: int) -> None:
    tag = f"bench-{workload}"
    for _ in range(cold_repeat):
        tool.fresh()
        record(rows["cold"]).append(tool.build(ctx, tag))
    if workload not in FULL:
        return
    for _ in range(repeat):
        record(rows["cached"]).append(tool.build(ctx, tag))
    for n in range(repeat):
        one_change(workload, ctx, n + 1 + int(time.time()))
        record(rows["one change"]).append(tool.build(ctx, tag))


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs of each cached / one-change figure (median)")
    ap.add_argument("--cold-repeat", type=int, default=3, help="runs of each cold figure (median)")
    ap.add_argument("--only", nargs="*", choices=ALL, default=list(ALL))
    ap.add_argument("--workdir", type=Path, default=None, help="where stores and contexts go (default: a temp dir)")
    ap.add_argument("--no-buildah", action="store_true", help="measure pybuild only")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_build: run as root (builds need overlayfs and namespaces)")

    work = Path(tempfile.mkdtemp(prefix="pybuild-bench-build-", dir=args.workdir))
    table: list[Row] = []
    buildah: Buildah | None = None
    try:
        ours = Pybuild(work)
        if not args.no_buildah:
            buildah = Buildah(work, ours.template)
        for workload in args.only:
            ctx = prepare(workload, work)
            rows = {s: Row(workload, s) for s in ("cold", "cached", "one change")}
            measure(ours, workload, ctx, rows, lambda r: r.ours, args.cold_repeat, args.repeat)
            if buildah is not None:
                measure(buildah, workload, ctx, rows, lambda r: r.theirs, args.cold_repeat, args.repeat)
            table.extend(r for r in rows.values() if r.ours or r.theirs)
            shutil.rmtree(ctx, ignore_errors=True)
    finally:
        if buildah is not None:
            buildah.clean()
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'workload':<14} {'scenario':<11} {'pybuild s':>10} {'buildah s':>10} {'ratio':>6}   runs")
    for r in table:
        a, b = Row.med(r.ours), Row.med(r.theirs)
        ratio = f"{a / b:.2f}" if a is not None and b else "-"
        runs = " ".join(f"{x:.2f}" for x in r.ours)
        print(f"{r.workload:<14} {r.scenario:<11} {fmt(a):>10} {fmt(b):>10} {ratio:>6}   {runs}")

    failures = []
    by = {(r.workload, r.scenario): r for r in table}
    many = by.get(("many-steps", "cached"))
    if many is not None:
        a, b = Row.med(many.ours), Row.med(many.theirs)
        if a is not None and a > MANY_STEPS_CACHED_MAX:
            failures.append(f"many-steps cached {a:.3f} s > {MANY_STEPS_CACHED_MAX} s")
        if a is not None and b is not None and a > MANY_STEPS_VS_BUILDAH * b:
            failures.append(f"many-steps cached {a:.3f} s > {MANY_STEPS_VS_BUILDAH} x buildah's {b:.3f} s")
    copy = by.get(("copy-context", "cached"))
    if copy is not None:
        a = Row.med(copy.ours)
        if a is not None and a > COPY_CONTEXT_CACHED_MAX:
            failures.append(f"copy-context cached {a:.3f} s > {COPY_CONTEXT_CACHED_MAX} s")
    for f in failures:
        print(f"MISSED: {f}")
    if not failures:
        print("all targets met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
