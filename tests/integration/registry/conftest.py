"""Fixtures of regtest_util: real registries on 127.0.0.1 (open, htpasswd, token, TLS) and a fault proxy."""

from regtest_util import basic_registry, fault_proxy, registry, tls_registry, token_registry

__all__ = ["basic_registry", "fault_proxy", "registry", "tls_registry", "token_registry"]
