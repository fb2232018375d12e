"""Registry credentials: Docker's config.json (auths, credsStore, credHelpers) and containers' auth.json.

Lookup order for a registry host: ``REGISTRY_AUTH_FILE`` (when set), then Docker's config
(``$DOCKER_CONFIG/config.json``, default ``~/.docker/config.json``: ``credHelpers[host]``, then ``credsStore``,
then ``auths``), then ``$XDG_RUNTIME_DIR/containers/auth.json``. Docker Hub is stored under
``https://index.docker.io/v1/`` as Docker does. A helper is ``docker-credential-NAME`` speaking Docker's
protocol (``get``/``store``/``erase`` with JSON on stdin/stdout).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pybuild.errors import PybuildError
from pybuild.model.reference import DEFAULT_DOMAIN, DOCKER_HUB_HOST, LEGACY_DEFAULT_DOMAIN

DOCKER_HUB_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth refresh token from `docker login` to registries that give one

    def __bool__(self) -> bool:
        return bool(self.username or self.password or self.identity_token)


def server_key(host: str) -> str:
    """The key config.json stores a registry's credentials under."""
    if host in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, DOCKER_HUB_HOST):
        return DOCKER_HUB_KEY
    return host


def _normalize_key(key: str) -> str:
    """config.json keys may be URLs (https://host/v1/) or host/namespace: compare them as host[/path]."""
    k = key
    for scheme in ("https://", "http://"):
        if k.startswith(scheme):
            k = k[len(scheme):]
            break
    k = k.rstrip("/")
    if k.endswith("/v1") or k.endswith("/v2"):
        k = k[:-3]
    host, sep, rest = k.partition("/")
    if host in (LEGACY_DEFAULT_DOMAIN, DOCKER_HUB_HOST):
        host = DEFAULT_DOMAIN
    return host + sep + rest


def docker_config_path() -> Path:
    d = os.environ.get("DOCKER_CONFIG")
    return (Path(d) if d else Path.home() / ".docker") / "config.json"


def _auth_json_paths() -> list[Path]:
    paths: list[Path] = []
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        paths.append(Path(env))
    return paths


def _default_auth_json() -> Path | None:
    run = os.environ.get("XDG_RUNTIME_DIR")
    return Path(run) / "containers" / "auth.json" if run else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PybuildError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise PybuildError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise PybuildError(f"{path} is not a JSON object")
    return data


def _from_auths(auths: Any, name: str, path: Path) -> Credentials | None:
    """The best entry of an `auths` map for a repository name (host/path): longest key that is a prefix of it."""
    if not isinstance(auths, dict):
        return None
    best: tuple[int, dict[str, Any]] | None = None
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        k = _normalize_key(key)
        if (name == k or name.startswith(k + "/")) and (best is None or len(k) > best[0]):
            best = (len(k), entry)
    if best is None:
        return None
    entry = best[1]
    user, password = str(entry.get("username", "")), str(entry.get("password", ""))
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise PybuildError(f"{path}: the auth entry for {name.split('/')[0]} is not base64 user:password") from None
    token = str(entry.get("identitytoken", ""))
    creds = Credentials(user, password, token)
    return creds if creds else None


def _helper(name: str, action: str, data: str) -> str:
    exe = f"docker-credential-{name}"
    try:
        p = subprocess.run([exe, action], input=data, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise PybuildError(f"credential helper {exe} not found in PATH", hint="install it or remove it from "
                           f"{docker_config_path()}") from None
    except subprocess.TimeoutExpired:
        raise PybuildError(f"credential helper {exe} {action} did not answer in 60 s") from None
    if p.returncode != 0:
        msg = (p.stdout.strip() or p.stderr.strip() or f"exit status {p.returncode}")
        raise _HelperError(f"credential helper {exe} {action} failed: {msg}")
    return p.stdout


class _HelperError(PybuildError):
    pass


def _helper_get(name: str, host: str) -> Credentials | None:
    try:
        out = _helper(name, "get", server_key(host))
    except _HelperError as e:
        if "credentials not found" in e.message.lower():
            return None
        raise
    try:
        d = json.loads(out)
    except json.JSONDecodeError:
        raise PybuildError(f"credential helper docker-credential-{name} printed no JSON") from None
    user, secret = str(d.get("Username", "")), str(d.get("Secret", ""))
    if user == "<token>":
        return Credentials(identity_token=secret)
    creds = Credentials(user, secret)
    return creds if creds else None


def lookup(host: str, repository: str = "") -> Credentials:
    """Credentials for host (and repository path there, for namespaced auth.json entries); empty if none."""
    host_key = _normalize_key(host)
    name = f"{host_key}/{repository}" if repository else host_key
    for path in _auth_json_paths():
        data = _read_json(path)
        if data is not None and (c := _from_auths(data.get("auths"), name, path)):
            return c
    cfg_path = docker_config_path()
    cfg = _read_json(cfg_path)
    if cfg is not None:
        helpers = cfg.get("credHelpers")
        if isinstance(helpers, dict):
            for key, helper in helpers.items():
                if _normalize_key(key) == host_key and isinstance(helper, str):
                    return _helper_get(helper, host) or Credentials()
        store = cfg.get("credsStore")
        if isinstance(store, str) and store:
            c = _helper_get(store, host)
            if c:
                return c
        if c2 := _from_auths(cfg.get("auths"), name, cfg_path):
            return c2
    default = _default_auth_json()
    if default is not None:
        data = _read_json(default)
        if data is not None and (c3 := _from_auths(data.get("auths"), name, default)):
            return c3
    return Credentials()


def _write_config(path: Path, data: dict[str, Any]) -> None:
    """Replace config.json atomically, mode 0600 (it holds passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise PybuildError(f"cannot write {path}: {e.strerror}") from None


def store(host: str, creds: Credentials) -> Path:
    """Save credentials as `docker login` does: the host's helper, the credsStore, or auths in config.json."""
    path = docker_config_path()
    cfg = _read_json(path) or {}
    key = server_key(host)
    helper = _helper_for(cfg, host)
    if helper:
        user, secret = (("<token>", creds.identity_token) if creds.identity_token
                        else (creds.username, creds.password))
        _helper(helper, "store", json.dumps({"ServerURL": key, "Username": user, "Secret": secret}))
        auths = cfg.setdefault("auths", {})
        if isinstance(auths, dict):
            auths[key] = {}  # Docker records that the helper holds this registry's credentials
    else:
        entry: dict[str, str] = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
        if creds.identity_token:
            entry = {"identitytoken": creds.identity_token}
        auths = cfg.get("auths")
        if not isinstance(auths, dict):
            auths = cfg["auths"] = {}
        auths[key] = entry
    _write_config(path, cfg)
    return path


def _helper_for(cfg: dict[str, Any], host: str) -> str | None:
    helpers = cfg.get("credHelpers")
    if isinstance(helpers, dict):
        for k, v in helpers.items():
            if _normalize_key(k) == _normalize_key(host) and isinstance(v, str):
                return v
    s = cfg.get("credsStore")
    return s if isinstance(s, str) and s else None


def erase(host: str) -> bool:
    """Forget a registry's credentials (`logout`): False when there were none."""
    path = docker_config_path()
    cfg = _read_json(path)
    if cfg is None:
        return False
    found = False
    helper = _helper_for(cfg, host)
    if helper:
        try:
            _helper(helper, "erase", server_key(host))
            found = True
        except _HelperError:
            pass
    auths = cfg.get("auths")
    if isinstance(auths, dict):
        for k in list(auths):
            if _normalize_key(k) == _normalize_key(host):
                del auths[k]
                found = True
    if found:
        _write_config(path, cfg)
    return found
