"""registries.conf: prefixes, mirrors in order then the primary, insecure, blocked, search registries."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuild.errors import PybuildError
from pybuild.model.reference import parse_reference
from pybuild.registry.config import Endpoint, load_registries_conf, parse_registries_conf

CONF = """
unqualified-search-registries = ["docker.io", "quay.io"]

[[registry]]
prefix = "docker.io"
location = "127.0.0.1:5000"
insecure = true

[[registry.mirror]]
location = "mirror.local:5001/hub"
insecure = true

[[registry.mirror]]
location = "digests.local"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "docker.io/library/special"
location = "special.local/x"

[[registry]]
location = "blocked.example"
blocked = true

[[registry]]
prefix = "*.corp.example"
location = "proxy.corp"
"""


def test_mirrors_then_primary() -> None:
    c = parse_registries_conf(CONF)
    assert c.unqualified_search == ("docker.io", "quay.io")
    eps = c.pull_endpoints(parse_reference("busybox:latest"))
    assert eps == [
        Endpoint("mirror.local:5001", "hub/library/busybox", insecure=True, mirror=True),
        Endpoint("127.0.0.1:5000", "library/busybox", insecure=True, mirror=False),
    ]
    by_digest = c.pull_endpoints(parse_reference("busybox@sha256:" + "a" * 64))
    assert [e.host for e in by_digest] == ["mirror.local:5001", "digests.local", "127.0.0.1:5000"]
    assert c.push_endpoint(parse_reference("busybox")) == Endpoint("127.0.0.1:5000", "library/busybox", True)
    assert c.is_insecure("127.0.0.1:5000") and c.is_insecure("mirror.local:5001") and not c.is_insecure("x")


def test_longest_prefix_and_wildcard() -> None:
    c = parse_registries_conf(CONF)
    assert c.pull_endpoints(parse_reference("special"))[-1] == Endpoint("special.local", "x")
    assert c.pull_endpoints(parse_reference("specialist"))[-1].host == "127.0.0.1:5000"  # component boundary
    assert c.pull_endpoints(parse_reference("a.corp.example/team/app")) == [Endpoint("proxy.corp", "team/app")]
    assert c.pull_endpoints(parse_reference("quay.io/a/b")) == [Endpoint("quay.io", "a/b")]


def test_blocked() -> None:
    c = parse_registries_conf(CONF, "/etc/containers/registries.conf")
    with pytest.raises(PybuildError, match=r"registry blocked\.example is blocked in /etc/containers/registries\.conf"):
        c.pull_endpoints(parse_reference("blocked.example/app"))


@pytest.mark.parametrize(("text", "msg"), [
    ("[[registry]\n", "invalid TOML"),
    ("[[registry]]\ninsecure = 'yes'\nlocation = 'x'\n", "insecure must be true or false"),
    ("[[registry]]\ninsecure = true\n", "needs a prefix or a location"),
    ("unqualified-search-registries = 'docker.io'\n", "must be a list of strings"),
])
def test_errors(text: str, msg: str) -> None:
    with pytest.raises(PybuildError, match=msg):
        parse_registries_conf(text)


def test_env_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "r.conf"
    f.write_text(CONF)
    monkeypatch.setenv("PYBUILD_REGISTRIES_CONF", str(f))
    c = load_registries_conf()
    assert c.source == str(f) and len(c.registries) == 4
    monkeypatch.setenv("PYBUILD_REGISTRIES_CONF", str(tmp_path / "missing"))
    with pytest.raises(PybuildError, match="cannot read"):
        load_registries_conf()


def test_short_name_candidates() -> None:
    c = parse_registries_conf(CONF)
    assert [r.full() for r in c.candidates("busybox")] == ["docker.io/library/busybox:latest",
                                                           "quay.io/busybox:latest"]
    assert [r.full() for r in c.candidates("quay.io/a/b:1")] == ["quay.io/a/b:1"]
    assert [r.full() for r in parse_registries_conf("").candidates("busybox")] == ["docker.io/library/busybox:latest"]
