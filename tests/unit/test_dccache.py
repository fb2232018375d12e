"""The dataclass method cache (pybuild._dccache): same classes as without it, a file kept across processes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from pybuild import _dccache
from tests.conftest import REPO

SOURCE = '''
from dataclasses import dataclass, field

@dataclass(frozen=True)
class Point:
    """A point."""
    x: int
    y: "int" = 0
    tags: tuple[str, ...] = field(default_factory=tuple)

@dataclass(frozen=True, kw_only=True)
class Named(Point):
    name: str
'''


def define(module_name: str) -> types.ModuleType:
    module = types.ModuleType(module_name)
    sys.modules[module_name] = module  # dataclasses reads the module's globals from sys.modules
    try:
        exec(compile(SOURCE, f"<{module_name}>", "exec", dont_inherit=True), module.__dict__)
    finally:
        del sys.modules[module_name]
    return module


def test_cached_classes_behave_like_plain_ones() -> None:
    cached = define("pybuild._probe_cached")  # a pybuild module: through the cache
    plain = define("elsewhere_probe")  # anyone else's: the builtin exec
    assert _dccache._codes is not None
    assert any("tags" in text for text in _dccache._used)  # the texts name fields, not classes
    for m in (cached, plain):
        p = m.Point(1, tags=("a",))
        assert repr(p) == "Point(x=1, y=0, tags=('a',))"
        assert p == m.Point(1, 0, ("a",)) and hash(p) == hash(m.Point(1, 0, ("a",))) and p != m.Point(2)
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.x = 3  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            del p.y  # type: ignore[misc]
        assert dataclasses.replace(p, y=5).y == 5
        n = m.Named(1, name="n")
        assert n.name == "n" and dataclasses.asdict(n) == {"x": 1, "y": 0, "tags": (), "name": "n"}
        with pytest.raises(TypeError):
            m.Named(1, "n")
    # the generated __init__ is compiled as dataclasses itself would (no inherited `annotations` future flag)
    for name in ("Point", "Named"):
        assert getattr(cached, name).__init__.__annotations__ == getattr(plain, name).__init__.__annotations__
        assert getattr(cached, name).__init__.__code__.co_flags == getattr(plain, name).__init__.__code__.co_flags
        assert getattr(cached, name).__doc__ == getattr(plain, name).__doc__


def _run(cache: Path) -> subprocess.CompletedProcess[str]:
    code = "import pybuild.model.instructions as m; print(m.KeyValue('a', 'b'))"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "XDG_CACHE_HOME": str(cache)}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cache_file_is_written_once_and_survives_corruption(tmp_path: Path) -> None:
    p = _run(tmp_path)
    assert p.returncode == 0 and p.stdout == "KeyValue(key='a', value='b', legacy=False)\n", p.stderr
    (path,) = (tmp_path / "pybuild").glob("dataclasses-*.marshal")
    before = path.stat().st_mtime_ns
    p = _run(tmp_path)
    assert p.returncode == 0 and p.stdout == "KeyValue(key='a', value='b', legacy=False)\n", p.stderr
    assert path.stat().st_mtime_ns == before  # every text found: nothing written
    path.write_bytes(b"\x00garbage")
    p = _run(tmp_path)
    assert p.returncode == 0 and p.stdout == "KeyValue(key='a', value='b', legacy=False)\n", p.stderr
    assert path.stat().st_size > 1000  # rewritten whole


def test_unwritable_cache_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    p = _run(tmp_path / "file")  # the cache directory would be under a regular file
    assert p.returncode == 0 and p.stderr == "", p.stderr
