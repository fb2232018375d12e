"""A disk cache for the code of the methods that ``dataclasses`` generates for pybuild's own classes.

A dataclass gets its ``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` (and, frozen, ``__setattr__`` and
``__delattr__``) by compiling generated source text with ``exec`` when its module is imported: ~70 µs per method,
~25 ms of `pybuild check` and more of a build, for ~100 model classes that never change between runs. The text
is all that goes into the compiled code, so, like a .pyc, the code can be kept: ``install`` gives the
``dataclasses`` module an ``exec`` that looks the text up in a marshal file in the cache directory (compiling and
remembering it on a miss) and runs the cached code with the same globals and locals. The functions built are
the same as without the cache; other packages' dataclasses go to the builtin ``exec`` untouched.

The file is named after the interpreter's bytecode magic number and optimisation level (marshalled code is
only valid there), loaded when pybuild's first dataclass is built, and rewritten at exit only when a text was
missing (new or changed classes).
"""

# No `from __future__ import annotations` here: exec() of a string inherits the calling frame's future flags,
# and the builtin exec below runs other packages' generated methods, whose annotations must stay unquoted.
import builtins
import marshal
import os
import sys
from types import CodeType
from typing import Any

_MAX_ENTRIES = 2000  # ~3 pybuild versions; stale texts of edited classes pile up: then keep what this run used

_real_exec = builtins.exec
_codes: dict[str, bytes] | None = None  # text -> marshalled code: unmarshalled on use, most of the load time
_used: set[str] = set()
_missed = False


def cache_file() -> str:
    from importlib.util import MAGIC_NUMBER

    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "pybuild", f"dataclasses-{MAGIC_NUMBER.hex()}-O{sys.flags.optimize}.marshal")


def _load() -> dict[str, bytes]:
    global _codes
    codes: dict[str, bytes] = {}
    try:
        with open(cache_file(), "rb") as f:
            data = marshal.loads(f.read())  # marshal.load(f) reads in small pieces: 6x slower
        if isinstance(data, dict):
            codes = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, bytes)}
    except (OSError, EOFError, ValueError, TypeError):
        pass
    _codes = codes
    return codes


def _save() -> None:
    codes = _codes or {}
    if len(codes) > _MAX_ENTRIES:
        codes = {k: v for k, v in codes.items() if k in _used}
    path = cache_file()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(marshal.dumps(codes))
        os.replace(tmp, path)
    except (OSError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _exec(source: Any, globals: dict[str, Any] | None = None, locals: Any = None, /, **kwargs: Any) -> None:
    # dataclasses calls exec(text, module_globals, namespace); its globals say whose class it is
    if kwargs or type(source) is not str or not globals or not str(globals.get("__name__", "")).startswith("pybuild"):
        return _real_exec(source, globals, locals, **kwargs)
    global _missed
    codes = _codes if _codes is not None else _load()
    code = None
    data = codes.get(source)
    if data is not None:
        try:
            code = marshal.loads(data)
        except (EOFError, ValueError, TypeError):
            pass
    if not isinstance(code, CodeType):
        # dont_inherit: compile as exec() called from dataclasses.py would, without this module's __future__ flags
        code = compile(source, "<string>", "exec", dont_inherit=True)
        codes[source] = marshal.dumps(code)
        if not _missed:
            _missed = True
            import atexit

            atexit.register(_save)
    _used.add(source)
    return _real_exec(code, globals, locals)


def install() -> None:
    """Route the ``exec`` calls of the ``dataclasses`` module through the cache (idempotent)."""
    import dataclasses

    setattr(dataclasses, "exec", _exec)  # noqa: B010  # a module global shadows the builtin for that module only
