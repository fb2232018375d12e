"""registries.conf (containers' TOML format): where a reference is pulled from, mirrors, insecure and blocked hosts.

Read from ``PYBUILD_REGISTRIES_CONF`` if set, else ``~/.config/containers/registries.conf`` if it exists, else
``/etc/containers/registries.conf``. Understood keys (everything else is ignored, as a newer file may have more)::

    unqualified-search-registries = ["docker.io"]
    [[registry]]
    prefix = "docker.io"            # matched against host/path on component boundaries; "*.example.com" works
    location = "127.0.0.1:5000"     # replaces the prefix (default: the prefix itself)
    insecure = true                 # plain HTTP allowed, TLS not verified
    blocked = false                 # refuse to pull from it
    [[registry.mirror]]             # tried in order before location, for pulls only
    location = "mirror.example/hub"
    insecure = true
    pull-from-mirror = "all"        # or "digest-only" / "tag-only" (mirror-by-digest-only = true is "digest-only")
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybuild.errors import PybuildError
from pybuild.model.reference import DEFAULT_DOMAIN, DOCKER_HUB_HOST, Reference, parse_reference


@dataclass(frozen=True)
class Endpoint:
    """One place to fetch a repository from: host[:port] and the repository path there."""

    host: str
    path: str
    insecure: bool = False
    mirror: bool = False

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_HOST if self.host == DEFAULT_DOMAIN else self.host


@dataclass(frozen=True)
class Mirror:
    location: str
    insecure: bool = False
    pull_from_mirror: str = "all"


@dataclass(frozen=True)
class RegistryEntry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[Mirror, ...] = ()


@dataclass(frozen=True)
class RegistriesConf:
    registries: tuple[RegistryEntry, ...] = ()
    unqualified_search: tuple[str, ...] = ()
    insecure_hosts: frozenset[str] = field(default_factory=frozenset)
    source: str | None = None

    def entry_for(self, name: str) -> RegistryEntry | None:
        """The [[registry]] whose prefix matches the repository name (host/path) best: the longest one."""
        best: RegistryEntry | None = None
        best_len = -1
        for e in self.registries:
            if _prefix_matches(e.prefix, name) and len(e.prefix) > best_len:
                best, best_len = e, len(e.prefix)
        return best

    def pull_endpoints(self, ref: Reference) -> list[Endpoint]:
        """Mirrors in order, then the primary location; raise if the registry is blocked."""
        name = ref.name
        e = self.entry_for(name)
        if e is None:
            return [Endpoint(ref.domain, ref.path, insecure=ref.domain in self.insecure_hosts)]
        if e.blocked:
            raise PybuildError(f"registry {ref.domain} is blocked in {self.source or 'registries.conf'}: "
                               f"refusing to pull {ref.familiar()}")
        out: list[Endpoint] = []
        for m in e.mirrors:
            if m.pull_from_mirror == "digest-only" and ref.digest is None:
                continue
            if m.pull_from_mirror == "tag-only" and ref.digest is not None:
                continue
            out.append(_rewrite(e.prefix, m.location, name, m.insecure, mirror=True))
        out.append(_rewrite(e.prefix, e.location, name, e.insecure, mirror=False))
        return out

    def push_endpoint(self, ref: Reference) -> Endpoint:
        """Pushes go to the primary location only (never to a mirror)."""
        e = self.entry_for(ref.name)
        if e is None:
            return Endpoint(ref.domain, ref.path, insecure=ref.domain in self.insecure_hosts)
        if e.blocked:
            raise PybuildError(f"registry {ref.domain} is blocked in {self.source or 'registries.conf'}: "
                               f"refusing to push {ref.familiar()}")
        return _rewrite(e.prefix, e.location, ref.name, e.insecure, mirror=False)

    def candidates(self, text: str) -> list[Reference]:
        """The references a name may mean: itself if it names a registry; else one per
        unqualified-search-registries entry in order (docker.io only when there are none, as Docker does)."""
        ref = parse_reference(text)
        first, sep, _ = text.partition("/")
        qualified = sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first)
        if qualified or not self.unqualified_search:
            return [ref]
        out: list[Reference] = []
        for host in self.unqualified_search:
            out.append(ref if host == DEFAULT_DOMAIN else parse_reference(f"{host}/{text}"))
        return out

    def is_insecure(self, host: str) -> bool:
        """Whether host is marked insecure (any [[registry]] or mirror whose location is that host)."""
        if host in self.insecure_hosts:
            return True
        for e in self.registries:
            if e.insecure and _host_of(e.location) == host:
                return True
            if any(m.insecure and _host_of(m.location) == host for m in e.mirrors):
                return True
        return False


def _host_of(location: str) -> str:
    return location.split("/", 1)[0]


def _prefix_matches(prefix: str, name: str) -> bool:
    if prefix.startswith("*."):
        host = name.split("/", 1)[0]
        return host.endswith(prefix[1:])
    return name == prefix or name.startswith(prefix.rstrip("/") + "/")


def _rewrite(prefix: str, location: str, name: str, insecure: bool, *, mirror: bool) -> Endpoint:
    if prefix.startswith("*."):
        rest = name.split("/", 1)[1]
        new = f"{location}/{rest}" if location else name
    else:
        new = location.rstrip("/") + name[len(prefix.rstrip("/")):]
    host, _, path = new.partition("/")
    return Endpoint(host, path, insecure=insecure, mirror=mirror)


def _b(d: dict[str, Any], key: str, where: str) -> bool:
    v = d.get(key, False)
    if not isinstance(v, bool):
        raise PybuildError(f"{where}: {key} must be true or false")
    return v


def _s(d: dict[str, Any], key: str, where: str, default: str = "") -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise PybuildError(f"{where}: {key} must be a string")
    return v


def parse_registries_conf(text: str, source: str = "registries.conf") -> RegistriesConf:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PybuildError(f"{source}: invalid TOML: {e}") from None
    entries: list[RegistryEntry] = []
    raw = data.get("registry", [])
    if not isinstance(raw, list):
        raise PybuildError(f"{source}: [[registry]] must be an array of tables")
    for i, r in enumerate(raw):
        where = f"{source}: [[registry]] #{i + 1}"
        if not isinstance(r, dict):
            raise PybuildError(f"{where} must be a table")
        location = _s(r, "location", where)
        prefix = _s(r, "prefix", where) or location
        if not prefix:
            raise PybuildError(f"{where} needs a prefix or a location")
        mirrors: list[Mirror] = []
        for j, m in enumerate(r.get("mirror", []) or []):
            mw = f"{where} mirror #{j + 1}"
            if not isinstance(m, dict) or not _s(m, "location", mw):
                raise PybuildError(f"{mw} needs a location")
            pfm = _s(m, "pull-from-mirror", mw, "all")
            if pfm not in ("all", "digest-only", "tag-only"):
                raise PybuildError(f"{mw}: pull-from-mirror must be all, digest-only or tag-only")
            if _b(r, "mirror-by-digest-only", where):
                pfm = "digest-only"
            mirrors.append(Mirror(_s(m, "location", mw), _b(m, "insecure", mw), pfm))
        entries.append(RegistryEntry(prefix=prefix, location=location or prefix, insecure=_b(r, "insecure", where),
                                     blocked=_b(r, "blocked", where), mirrors=tuple(mirrors)))
    search = data.get("unqualified-search-registries", [])
    if not isinstance(search, list) or not all(isinstance(s, str) for s in search):
        raise PybuildError(f"{source}: unqualified-search-registries must be a list of strings")
    return RegistriesConf(registries=tuple(entries), unqualified_search=tuple(search), source=source)


def registries_conf_path() -> Path | None:
    env = os.environ.get("PYBUILD_REGISTRIES_CONF")
    if env:
        return Path(env)
    user = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "containers" / "registries.conf"
    if user.is_file():
        return user
    system = Path("/etc/containers/registries.conf")
    return system if system.is_file() else None


def load_registries_conf(extra_insecure: frozenset[str] = frozenset()) -> RegistriesConf:
    """The registries.conf in effect (an empty one when there is none)."""
    path = registries_conf_path()
    conf = RegistriesConf()
    if path is not None:
        try:
            text = path.read_text()
        except OSError as e:
            raise PybuildError(f"cannot read {path}: {e.strerror}") from None
        conf = parse_registries_conf(text, str(path))
    if extra_insecure:
        conf = RegistriesConf(conf.registries, conf.unqualified_search, conf.insecure_hosts | extra_insecure,
                              conf.source)
    return conf
