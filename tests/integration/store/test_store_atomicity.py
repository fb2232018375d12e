"""Crash safety and concurrency with real processes: SIGKILL mid-write leaves a store that verifies,
with no partial object visible; two processes writing and tagging at once both succeed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from storetest_util import spawn_python

from pybuild.model.oci import ANNOTATION_REF_NAME, Index
from pybuild.store import Store

HERE = Path(__file__).resolve().parent


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    """Poll until cond holds (the deadline only stops a hung test; nothing here asserts timing)."""
    deadline = time.monotonic() + 120
    while not cond():
        if proc.poll() is not None:
            _out, err = proc.communicate()
            raise AssertionError(f"child exited early ({proc.returncode}): {err.decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child never reached the kill point")
        time.sleep(0.01)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _tmp_entries(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "tmp").iterdir())


def test_sigkill_mid_put_blob(store_root: Path) -> None:
    with Store.open(store_root) as store:
        store.put_blob_bytes(b"already here")
    code = (
        "import sys; from pathlib import Path; from pybuild.store import Store\n"
        "s = Store.open(Path(sys.argv[1])); s.put_blob(sys.stdin.buffer)\n"
    )
    proc = spawn_python(code, str(store_root), stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(os.urandom(8 << 20))
    proc.stdin.flush()

    def partial() -> bool:
        return any(p.stat().st_size >= (8 << 20) for p in (store_root / "tmp").glob("*-blob-*"))

    _wait_for(partial, proc)
    _kill(proc)
    assert len(list((store_root / "blobs" / "sha256").iterdir())) == 1  # the partial blob is not visible
    with Store.open(store_root) as store:
        assert store.verify() == []
        # the dead writer's temp file and owner lock were swept on open; only ours remains
        assert [n for n in _tmp_entries(store_root) if not n.endswith(".owner")] == []
        assert len(_tmp_entries(store_root)) == 1


_COMMIT_CHILD = """
import os, sys, time
from pathlib import Path
import pybuild.layer
from pybuild.store import Store
from pybuild.store import store as storemod

root, where = Path(sys.argv[1]), sys.argv[2]

def hang():
    print("at-kill-point", flush=True)
    time.sleep(600)

if where == "write":
    real = pybuild.layer.write_layer
    class Out:
        def __init__(self, inner): self.inner, self.n = inner, 0
        def write(self, b):
            self.n += len(b)
            if self.n > (1 << 20):
                self.inner.flush(); hang()
            return self.inner.write(b)
        def flush(self): self.inner.flush()
        def tell(self): return self.n
    pybuild.layer.write_layer = lambda src, out, *a, **k: real(src, Out(out), *a, **k)
elif where == "move":
    storemod.Store._finish_unpack = lambda self, *a: hang()
elif where == "link":
    storemod.Store._make_link = lambda self, *a: hang()

s = Store.open(root)
with s.new_scratch_dir() as scratch:
    upper = scratch / "upper"
    upper.mkdir()
    for i in range(40):
        (upper / f"f{i}").write_bytes(os.urandom(64 << 10))
    (upper / "sub").mkdir()
    (upper / "sub" / "hello").write_text("hello")
    s.commit_layer_dir(upper, None)
print("done", flush=True)
"""


def _commit_killed_at(store_root: Path, where: str) -> None:
    with Store.open(store_root):
        pass
    proc = spawn_python(_COMMIT_CHILD, str(store_root), where)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != b"at-kill-point\n":
        proc.wait()
        raise AssertionError(f"child did not reach {where}: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    _kill(proc)


def test_sigkill_mid_commit_layer_write(store_root: Path) -> None:
    _commit_killed_at(store_root, "write")
    assert list((store_root / "blobs" / "sha256").iterdir()) == []
    assert list((store_root / "layers").iterdir()) == []
    with Store.open(store_root) as store:
        assert store.verify() == []
        assert len(_tmp_entries(store_root)) == 1  # scratch dir and partial blob swept


def test_sigkill_after_blob_before_move(store_root: Path) -> None:
    _commit_killed_at(store_root, "move")
    with Store.open(store_root) as store:
        assert store.verify() == []
        assert len(_tmp_entries(store_root)) == 1
        assert list((store_root / "layers").iterdir()) == [] or all(
            not (p / "diff").exists() for p in (store_root / "layers").iterdir()
        )
        # the layer is recorded with its blob, so it can still be unpacked from the blob
        (chain,) = [r[0] for r in store._db.execute("SELECT chain_id FROM layers")]
        lay = store.ensure_unpacked(chain)
        assert lay.path is not None and (lay.path / "sub" / "hello").read_text() == "hello"
        assert store.verify() == []


def test_sigkill_after_move_before_record(store_root: Path) -> None:
    _commit_killed_at(store_root, "link")
    with Store.open(store_root) as store:
        assert store.verify() == []
        (chain,) = [r[0] for r in store._db.execute("SELECT chain_id FROM layers")]
        assert not store.layer(chain).unpacked
        # the complete dir that made it into layers/ is adopted, not unpacked again
        lay = store.ensure_unpacked(chain)
        assert lay.path is not None and (lay.path / "sub" / "hello").read_text() == "hello"
        assert store.lower_dirs(chain) == [f"l/{lay.link_id}"]
        assert store.verify() == []


_WRITER_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from storetest_util import add_tar_layers, image_config
from pybuild.store import Store

root, who = Path(sys.argv[1]), sys.argv[2]
with Store.open(root) as s:
    for i in range(12):
        with s.lease():
            layers = add_tar_layers(s, [{"shared": b"base"}, {f"{who}-{i}": who.encode() * i}])
            img = s.put_image(image_config(layers), layers, names=[f"{who}:{i}"])
            s.tag(img, "shared:latest")
        if who == "b":
            s.gc()
print("ok", flush=True)
"""


def test_two_processes_put_and_tag_concurrently(store_root: Path) -> None:
    with Store.open(store_root):
        pass
    procs = [spawn_python(_WRITER_CHILD, str(store_root), who, str(HERE)) for who in ("a", "b")]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        assert out == b"ok\n"
    with Store.open(store_root) as store:
        assert store.verify() == []
        names = {n for img in store.list_images() for n in img.names}
        assert names == {f"{w}:{i}" for w in "ab" for i in range(12)} | {"shared:latest"}
        index = Index.from_json((store_root / "index.json").read_bytes())
        assert len([m for m in index.manifests if m.annotations.get(ANNOTATION_REF_NAME)]) == len(names)
        assert store.gc().layers == ()
        assert len(store.list_images()) == 24


_OPENER_CHILD = """
import sys
from pathlib import Path
from pybuild.store import Store
for i in range(25):
    with Store.open(Path(sys.argv[1])) as s:
        s.put_blob_bytes(f"{sys.argv[2]}-{i}".encode())
print("ok", flush=True)
"""


def test_concurrent_opens_do_not_sweep_each_other(store_root: Path) -> None:
    procs = [spawn_python(_OPENER_CHILD, str(store_root), str(n)) for n in range(4)]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    with Store.open(store_root) as store:
        assert len(list((store_root / "blobs" / "sha256").iterdir())) == 100
        assert store.verify() == []
        assert len(_tmp_entries(store_root)) == 1
