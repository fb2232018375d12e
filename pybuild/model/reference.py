"""Image references: Docker's grammar (distribution/reference), its normalisation and its error messages.

``busybox`` is ``docker.io/library/busybox:latest``; the first path component is a registry only if it holds a
``.`` or ``:``, is ``localhost``, or has an upper-case letter (names never do, so Docker takes it for a host);
``index.docker.io`` is ``docker.io``. A reference may carry a tag, a digest, or both (``name:tag@sha256:…``).

The grammar, written as regular expressions below (the one copy in pybuild)::

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [domain "/"] path-component ["/" path-component]*
    domain    := (domain-name | "[" ipv6 "]") [":" port]
    tag       := [\\w][\\w.-]{0,127}
    digest    := algorithm ":" hex{32,}

Messages are Docker's (``invalid reference format``, ``invalid reference format: repository name (library/Foo)
must be lowercase``…) so a user searching for one finds Docker's answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pybuild.errors import PybuildError
from pybuild.model.oci import check_digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
# Docker Hub's API is not served at docker.io itself.
DOCKER_HUB_HOST = "registry-1.docker.io"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"

# ASCII: Go's \w is [0-9A-Za-z_], Python's str \w would take any Unicode letter.
_REFERENCE_RE = re.compile(
    rf"^((?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$", re.ASCII
)
_NAME_RE = re.compile(rf"^(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})$", re.ASCII)
_TAG_RE = re.compile(rf"^{_TAG}$", re.ASCII)
_DOMAIN_RE = re.compile(rf"^{_DOMAIN_AND_PORT}$", re.ASCII)
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
_GO_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")

INVALID_FORMAT = "invalid reference format"


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised image reference: docker.io/library/busybox:latest.

    ``str(ref)`` and :meth:`familiar` give the short display form pybuild uses for image names
    (``busybox:latest``, ``myapp:1``, ``localhost:5000/x/y:tag``, ``name@sha256:...``).
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Full repository name: docker.io/library/busybox."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Repository name without the docker.io/ and library/ prefixes: busybox, x/y, localhost:5000/x/y."""
        if self.domain == DEFAULT_DOMAIN:
            p = self.path
            rest = p[len(OFFICIAL_REPO_PREFIX):]
            if p.startswith(OFFICIAL_REPO_PREFIX) and "/" not in rest:
                return rest
            return p
        return self.name

    def _suffix(self) -> str:
        s = f":{self.tag}" if self.tag is not None else ""
        return s + (f"@{self.digest}" if self.digest is not None else "")

    def familiar(self) -> str:
        """Display form with tag and/or digest: busybox:latest, myapp@sha256:..."""
        return self.familiar_name + self._suffix()

    def full(self) -> str:
        """Fully qualified form: docker.io/library/busybox:latest."""
        return self.name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise PybuildError(
                f"invalid tag {tag!r}", hint="a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -"
            )
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=check_digest(digest))

    @property
    def registry_host(self) -> str:
        """Where to connect for this reference (Docker Hub's API host for docker.io)."""
        return DOCKER_HUB_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def manifest_ref(self) -> str:
        """What to ask the registry's /manifests/ endpoint for: the digest if there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        return self.familiar()


def split_docker_domain(name: str) -> tuple[str, str]:
    """(domain, remainder) of a familiar name, as Docker splits it; the remainder keeps any tag/digest."""
    first, sep, rest = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == LEGACY_DEFAULT_DOMAIN:
        domain, remainder = DEFAULT_DOMAIN, rest
    elif first == "localhost" or "." in first or ":" in first or first.lower() != first:
        # an upper-case first component cannot be a repository name, so Docker takes it for a host
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _check_reference_digest(digest: str) -> str:
    """go-digest's checks, then pybuild's: the store keeps sha256 only."""
    if not _GO_DIGEST_RE.match(digest):
        raise PybuildError("invalid checksum digest format")
    algorithm, _, encoded = digest.partition(":")
    if algorithm == "sha256":
        if len(encoded) != 64 or not re.fullmatch(r"[a-f0-9]+", encoded):
            raise PybuildError("invalid checksum digest length")
        return digest
    raise PybuildError(f"unsupported digest algorithm: {digest}", hint="only sha256 digests are supported")


def parse_reference(s: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise an image reference like Docker's ParseNormalizedNamed (+ TagNameOnly).

    ``busybox`` → docker.io/library/busybox:latest (``latest`` is added when neither a tag nor a digest is
    given and default_tag is true).
    """
    if not s:
        raise PybuildError(f"{INVALID_FORMAT}: repository name must have at least one component")
    if _IDENTIFIER_RE.match(s):
        raise PybuildError(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = split_docker_domain(s)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise PybuildError(f"{INVALID_FORMAT}: repository name ({remote}) must be lowercase")
    full = f"{domain}/{remainder}"
    m = _REFERENCE_RE.match(full)
    if m is None:
        low = full.lower()
        if low != full and _REFERENCE_RE.match(low):
            raise PybuildError(f"{INVALID_FORMAT}: repository name must be lowercase")
        raise PybuildError(INVALID_FORMAT)
    name_match = _NAME_RE.match(m.group(1))
    assert name_match is not None  # the reference expression contains the name expression
    path = name_match.group(2)
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise PybuildError(f"{INVALID_FORMAT}: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} "
                           "characters")
    tag = m.group(2)
    digest = m.group(3)
    if digest is not None:
        _check_reference_digest(digest)
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain=name_match.group(1) or domain, path=path, tag=tag, digest=digest)


def is_valid_domain(s: str) -> bool:
    """Whether s is a registry host[:port] as references allow it (for `pybuild login HOST`)."""
    return bool(_DOMAIN_RE.match(s))


def normalize_name(s: str) -> str:
    """The display name an image is stored under: ``busybox`` → ``busybox:latest``."""
    return parse_reference(s).familiar()
