"""Docker's reference grammar and normalisation (distribution/reference's own cases), with Docker's messages."""

from __future__ import annotations

import pytest

from pybuild.errors import PybuildError
from pybuild.model.reference import is_valid_domain, normalize_name, parse_reference, split_docker_domain

D = "sha256:" + "86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

VALID = [
    "docker/docker", "library/debian", "debian", "docker.io/docker/docker", "docker.io/library/debian",
    "docker.io/debian", "index.docker.io/docker/docker", "index.docker.io/library/debian", "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker", "127.0.0.1:5000/library/debian", "127.0.0.1:5000/debian", "192.168.0.1",
    "192.168.0.1:80", "192.168.0.1:8/debian", "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker", "[fc00:1:2:3:4:5:6:7]:5000/library/debian", f"docker.io/{HEX64}",
    "Docker/docker", "DOCKER/docker", "docker-rules/docker", "docker---rules/docker", "doc/docker", "d/docker",
    "jess/t", "dock__er/docker", "a.b_c__d-e---f", "busybox:1.36.1-musl_x", f"busybox:latest@{D}",
]

INVALID = [
    "https://github.com/docker/docker", "docker/Docker", "-docker", "-docker/docker", "-docker.io/docker/docker",
    "docker///docker", "docker.io/docker/Docker", "docker.io/docker///docker", "[fc00::1]", "[fc00::1]:5000",
    "fc00::1:5000/debian", "[fe80::1%eth0]:5000/debian", "[2001:db8:3:4::192.0.2.33]:5000/debian", HEX64,
    "docker-/docker", "-docker-/docker", "____/____", "_docker/_docker", "dock..er/docker", "dock_.er/docker",
    "dock-.er/docker", "docker/", "a" * 256 + "/docker", "", "a:b:c", "busybox:", "busybox:-x", "busybox:.x",
    "b:" + "t" * 129, "b@sha256:abc", "b@", "b c", "bü", "busybox:tä",
]


@pytest.mark.parametrize("ref", VALID)
def test_valid(ref: str) -> None:
    parse_reference(ref)


@pytest.mark.parametrize("ref", INVALID)
def test_invalid(ref: str) -> None:
    with pytest.raises(PybuildError):
        parse_reference(ref)


@pytest.mark.parametrize(
    ("ref", "domain", "path", "familiar", "full"),
    [
        ("fooo/bar", "docker.io", "fooo/bar", "fooo/bar", "docker.io/fooo/bar"),
        ("index.docker.io/fooo/bar", "docker.io", "fooo/bar", "fooo/bar", "docker.io/fooo/bar"),
        ("library/ubuntu", "docker.io", "library/ubuntu", "ubuntu", "docker.io/library/ubuntu"),
        ("ubuntu", "docker.io", "library/ubuntu", "ubuntu", "docker.io/library/ubuntu"),
        ("docker.io/foo", "docker.io", "library/foo", "foo", "docker.io/library/foo"),
        ("other/library", "docker.io", "other/library", "other/library", "docker.io/other/library"),
        ("library/foo/bar", "docker.io", "library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar"),
        ("127.0.0.1:8000/privatebase", "127.0.0.1:8000", "privatebase", "127.0.0.1:8000/privatebase",
         "127.0.0.1:8000/privatebase"),
        ("example.com:8000/private/moonbase", "example.com:8000", "private/moonbase",
         "example.com:8000/private/moonbase", "example.com:8000/private/moonbase"),
        ("test_com/foo", "docker.io", "test_com/foo", "test_com/foo", "docker.io/test_com/foo"),
        ("test-com:8080/foo", "test-com:8080", "foo", "test-com:8080/foo", "test-com:8080/foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", "xn--n3h.com:18080/foo", "xn--n3h.com:18080/foo"),
        ("localhost/x", "localhost", "x", "localhost/x", "localhost/x"),
        ("localhost", "docker.io", "library/localhost", "localhost", "docker.io/library/localhost"),
        ("Foo/bar", "Foo", "bar", "Foo/bar", "Foo/bar"),
        ("[fc00::1]:5000/docker", "[fc00::1]:5000", "docker", "[fc00::1]:5000/docker", "[fc00::1]:5000/docker"),
    ],
)
def test_normalisation(ref: str, domain: str, path: str, familiar: str, full: str) -> None:
    r = parse_reference(ref, default_tag=False)
    assert (r.domain, r.path, r.familiar_name, r.name) == (domain, path, familiar, full)
    assert r.tag is None and r.digest is None


def test_tag_and_digest() -> None:
    r = parse_reference(f"busybox:latest@{D}")
    assert r.full() == f"docker.io/library/busybox:latest@{D}"
    assert r.familiar() == f"busybox:latest@{D}"
    assert r.manifest_ref == D
    d = parse_reference(f"quay.io/a/b@{D}")
    assert (d.tag, d.digest) == (None, D)
    assert parse_reference("busybox").full() == "docker.io/library/busybox:latest"
    assert parse_reference("busybox").manifest_ref == "latest"
    assert parse_reference("localhost:5000").familiar() == "localhost:5000"  # a tag, as in Docker
    assert parse_reference("busybox").registry_host == "registry-1.docker.io"
    assert parse_reference("127.0.0.1:5000/x").registry_host == "127.0.0.1:5000"
    assert normalize_name("docker.io/library/busybox") == "busybox:latest"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
        ("docker/Docker:1", "invalid reference format: repository name (docker/Docker) must be lowercase"),
        ("a:b:c", "invalid reference format"),
        ("busybox:", "invalid reference format"),
        ("-x", "invalid reference format"),
        ("", "invalid reference format: repository name must have at least one component"),
        (HEX64, f"invalid repository name ({HEX64}), cannot specify 64-byte hexadecimal strings"),
        ("b@sha256:" + "a" * 63, "invalid checksum digest length"),
        ("b@md5:" + "a" * 32, "unsupported digest algorithm: md5:" + "a" * 32),
        ("a" * 256, "invalid reference format: repository name must not be more than 255 characters"),
    ],
)
def test_messages(ref: str, message: str) -> None:
    with pytest.raises(PybuildError) as e:
        parse_reference(ref)
    assert e.value.message == message


def test_split_and_domain() -> None:
    assert split_docker_domain("busybox:1") == ("docker.io", "library/busybox:1")
    assert split_docker_domain("index.docker.io/x") == ("docker.io", "library/x")
    assert is_valid_domain("localhost:5000") and is_valid_domain("[::1]:5000") and is_valid_domain("Foo.com")
    assert not is_valid_domain("a_b.com") and not is_valid_domain("x/y")
