"""Platform strings (containerd's platforms package behaviour): the host platform, parsing and formatting.

The planner needs these for the predefined TARGET*/BUILD* args and ``FROM --platform``.
"""

from __future__ import annotations

import platform as _platform
import re

from pybuild.errors import PybuildError
from pybuild.model.oci import Platform

_KNOWN_OS = {
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl",
    "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
}
_ARCH_ALIASES = {
    "x86_64": ("amd64", ""), "x86-64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""), "arm64": ("arm64", ""), "armhf": ("arm", "v7"), "armel": ("arm", "v6"),
    "i386": ("386", ""), "i686": ("386", ""), "386": ("386", ""), "arm": ("arm", "v7"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}
_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]+$")


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("8", "v8", "v8.0") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
        return "arm", variant
    if arch in ("i386", "i686"):
        return "386", variant
    return arch, variant


def host_platform() -> Platform:
    """The platform this machine runs containers for (always linux: pybuild builds Linux images)."""
    arch, variant = _ARCH_ALIASES.get(_platform.machine().lower(), (_platform.machine().lower() or "amd64", ""))
    return Platform(architecture=arch, os="linux", variant=variant)


def parse_platform(text: str) -> Platform:
    """``linux/amd64``, ``linux/arm/v7``, ``linux``, ``arm64`` -> Platform (containerd's platforms.Parse)."""
    spec = text.strip()
    os_version = ""
    if "(" in spec and spec.endswith(")"):  # windows(10.0.17763)/amd64
        head, _, tail = spec.partition("(")
        os_version = tail[:-1]
        spec = head
    parts = spec.split("/")
    if not spec or any(not _COMPONENT.match(p) for p in parts) or len(parts) > 3:
        raise PybuildError(f'"{text}": unknown operating system or architecture: invalid argument')
    host = host_platform()
    if len(parts) == 1:
        word = parts[0].lower()
        if word in _KNOWN_OS:
            arch, variant = (host.architecture, host.variant) if word == host.os else ("amd64", "")
            return Platform(architecture=arch, os=word, variant=variant, os_version=os_version)
        arch, variant = _normalize_arch(word, "")
        return Platform(architecture=arch, os=host.os, variant=variant)
    os_name = parts[0].lower()
    if os_name == "macos":
        os_name = "darwin"
    arch, variant = _normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
    return Platform(architecture=arch, os=os_name, variant=variant, os_version=os_version)


def format_platform(p: Platform) -> str:
    """``os/arch[/variant]`` (containerd's platforms.Format)."""
    return str(p)


def format_platform_all(p: Platform) -> str:
    """Like format_platform plus the OS version: ``windows(10.0.17763)/amd64`` (platforms.FormatAll)."""
    if not p.os_version:
        return str(p)
    s = f"{p.os}({p.os_version})/{p.architecture}"
    return f"{s}/{p.variant}" if p.variant else s
