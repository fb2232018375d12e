#!/usr/bin/env python3
"""Layer commit/apply speed against tar + zstd on the same data, in the same run (not a test).

Workloads (as in /work/shared/bench): one 1 GiB file of random bytes, and 20,000 files of 64-600 bytes in 200
directories. For each: commit (write_layer, zstd) vs `tar -cf - -C DIR . | zstd -T0 -3 >/dev/null`, and apply
(apply_layer of that blob) vs `zstd -d < BLOB | tar -x -C DEST`. Ours runs in a child process which times the
call itself (interpreter start-up excluded) and reports its peak RSS (getrusage). Each side runs --repeat times,
interleaved, best time kept. Targets: ours ≤ 1.3× the reference, peak RSS < 200 MB. Exits 1 if one is missed.

The data lives in --workdir (default: /dev/shm when it has room, so that disk writeback noise on the VM does not
decide the apply figures; pass a disk path to measure there).

    python bench/bench_layers.py [--workdir DIR] [--repeat N] [--only big|small]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATIO_TARGET = 1.3
RSS_TARGET_MB = 200
BIG_SIZE = 1 << 30


def make_big(root: Path) -> None:
    root.mkdir(parents=True)
    with open(root / "big.bin", "wb") as f:
        for _ in range(BIG_SIZE >> 20):
            f.write(os.urandom(1 << 20))


def make_small(root: Path) -> None:
    for i in range(200):
        d = root / "data" / f"d{i}"
        d.mkdir(parents=True)
        for j in range(100):
            (d / f"f{j}").write_bytes(os.urandom(64 + (i * 100 + j) % 537))


def child(op: str, a: str, b: str) -> None:
    """Run one of our operations and print {"seconds", "rss_mb"} as JSON (used via --child)."""
    from pybuild.layer import apply_layer, write_layer

    start = time.perf_counter()
    if op == "commit":
        with open(b, "wb") as out:
            write_layer(Path(a), out)
    else:
        with open(a, "rb") as blob:
            apply_layer(blob, Path(b))
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss_mb}))


def ours(op: str, a: Path | str, b: Path | str) -> tuple[float, float]:
    p = subprocess.run(
        [sys.executable, __file__, "--child", op, str(a), str(b)], capture_output=True, text=True, check=False
    )
    if p.returncode:
        sys.exit(f"our {op} failed:\n{p.stderr}")
    result = json.loads(p.stdout)
    return float(result["seconds"]), float(result["rss_mb"])


def reference(cmd: str) -> float:
    start = time.perf_counter()
    subprocess.run(["sh", "-c", f"set -e; {cmd}"], check=True)
    return time.perf_counter() - start


def drop(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def bench(name: str, src: Path, work: Path, repeat: int) -> list[tuple[str, float, float, float]]:
    blob = work / f"{name}.tar.zst"
    rows: list[tuple[str, float, float, float]] = []

    best_ours, best_ref, rss = float("inf"), float("inf"), 0.0
    for _ in range(repeat):
        t, r = ours("commit", src, "/dev/null")  # like the reference: the blob is not kept
        best_ours, rss = min(best_ours, t), max(rss, r)
        best_ref = min(best_ref, reference(f"tar -cf - -C {src} . | zstd -T0 -3 -q >/dev/null"))
    rows.append((f"commit {name}", best_ours, best_ref, rss))
    ours("commit", src, blob)  # the blob both sides apply

    best_ours, best_ref, rss = float("inf"), float("inf"), 0.0
    dest, ref_dest = work / "apply-ours", work / "apply-ref"
    for _ in range(repeat):
        drop(dest)
        drop(ref_dest)
        ref_dest.mkdir()
        t, r = ours("apply", blob, dest)
        best_ours, rss = min(best_ours, t), max(rss, r)
        best_ref = min(best_ref, reference(f"zstd -d -q < {blob} | tar -x -C {ref_dest}"))
    drop(dest)
    drop(ref_dest)
    rows.append((f"apply {name}", best_ours, best_ref, rss))
    return rows


def default_workdir(need: int) -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > need:
        return shm
    return Path(tempfile.gettempdir())


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["big", "small"])
    args = parser.parse_args()
    for tool in ("tar", "zstd"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed for the reference measurements")

    base = args.workdir or default_workdir(4 * BIG_SIZE)
    work = Path(tempfile.mkdtemp(prefix="pybuild-bench-layers-", dir=base))
    rows: list[tuple[str, float, float, float]] = []
    try:
        for name, make in (("big", make_big), ("small", make_small)):
            if args.only and args.only != name:
                continue
            src = work / f"src-{name}"
            print(f"making the {name} workload in {src} ...", file=sys.stderr)
            make(src)
            rows += bench(name, src, work, args.repeat)
            drop(src)
    finally:
        drop(work)

    print(f"{'case':<14} {'ours s':>8} {'ref s':>8} {'ratio':>6} {'rss MB':>7}  target met?")
    ok = True
    for case, t_ours, t_ref, rss in rows:
        ratio = t_ours / t_ref
        met = ratio <= RATIO_TARGET and rss < RSS_TARGET_MB
        ok &= met
        print(f"{case:<14} {t_ours:>8.3f} {t_ref:>8.3f} {ratio:>6.2f} {rss:>7.1f}  {'yes' if met else 'NO'}")
    print(f"(targets: ratio ≤ {RATIO_TARGET}, peak RSS < {RSS_TARGET_MB} MB; workdir {base})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
