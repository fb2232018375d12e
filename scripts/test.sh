#!/usr/bin/env bash
# Run pybuild's whole test suite on a fresh Debian 12 machine: installs what it needs (apt and pip),
# lints, type-checks, then runs pytest. Run as root (the executor tests use overlayfs and namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(skopeo umoci docker-registry buildah podman debootstrap zstd xz-utils bzip2 busybox-static
              iproute2 ca-certificates)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || true
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e '.[dev]'

export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff";  ruff check pybuild tests bench
echo "== mypy";  mypy pybuild
echo "== pytest"; exec pytest -q -p no:cacheprovider "$@"
