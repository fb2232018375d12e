"""pybuild: a daemonless Dockerfile build engine."""

from pybuild import _dccache

__version__ = "0.1.0"

_dccache.install()  # before any pybuild module defines a dataclass: their generated methods come from a cache
