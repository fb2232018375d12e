"""`login`, `logout` and `search` as library calls (the CLI only parses flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pybuild.errors import PybuildError, UsageError
from pybuild.model.reference import DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, is_valid_domain
from pybuild.registry import credentials
from pybuild.registry.client import Registry
from pybuild.registry.config import load_registries_conf
from pybuild.registry.credentials import Credentials


def normalize_registry(server: str | None) -> str:
    """``https://r.example:5000/`` or ``r.example:5000`` -> ``r.example:5000``; none or index.docker.io -> docker.io."""
    s = (server or DEFAULT_DOMAIN).strip()
    for scheme in ("https://", "http://"):
        if s.startswith(scheme):
            s = s[len(scheme):]
    s = s.split("/", 1)[0]
    if s in (LEGACY_DEFAULT_DOMAIN, "registry-1.docker.io"):
        s = DEFAULT_DOMAIN
    if not is_valid_domain(s):
        raise UsageError(f"invalid registry {server!r}", hint="a registry is host[:port], e.g. localhost:5000")
    return s


def open_registry(host: str, creds: Credentials | None = None, *, tls_verify: bool | None = None) -> Registry:
    """A client for a registry host, insecure if registries.conf (or --tls-verify=false) says so."""
    api = "registry-1.docker.io" if host == DEFAULT_DOMAIN else host
    insecure = (tls_verify is False) or load_registries_conf().is_insecure(host)
    return Registry(api, credentials=creds, insecure=insecure)


@dataclass(frozen=True)
class LoginResult:
    registry: str
    config: Path


def login(server: str | None, username: str, password: str, *, tls_verify: bool | None = None) -> LoginResult:
    """Check the credentials against the registry, then save them as `docker login` does."""
    host = normalize_registry(server)
    if not username:
        raise UsageError("login needs a username (-u)")
    if not password:
        raise UsageError("login needs a password", hint="--password-stdin reads it from standard input")
    creds = Credentials(username, password)
    open_registry(host, creds, tls_verify=tls_verify).check_login()
    return LoginResult(host, credentials.store(host, creds))


def logout(server: str | None) -> tuple[str, bool]:
    """Forget a registry's credentials: (registry, whether there were any)."""
    host = normalize_registry(server)
    return host, credentials.erase(host)


def search(term: str, *, limit: int = 25, tls_verify: bool | None = None) -> list[str]:
    """Repositories of a registry's _catalog whose name contains the term; ``REGISTRY/TERM`` picks the registry."""
    first, sep, rest = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, needle = normalize_registry(first), rest
    else:
        host, needle = DEFAULT_DOMAIN, term
    if host == DEFAULT_DOMAIN:
        raise PybuildError("Docker Hub has no catalog pybuild can search",
                           hint="name the registry: pybuild search localhost:5000/TERM")
    reg = open_registry(host, tls_verify=tls_verify)
    out: list[str] = []
    for name in reg.catalog():
        if needle.lower() in name.lower():
            out.append(f"{host}/{name}")
            if len(out) >= limit:
                break
    return out
