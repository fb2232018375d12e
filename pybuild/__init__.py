"""pybuild: a daemonless Dockerfile build engine."""

__version__ = "0.1.0"
