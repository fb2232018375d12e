#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine (as root): install what pybuild needs, make the busybox base image
# offline from Debian's busybox-static package, build the example Dockerfile with `pybuild -t`, and run the image.
# Everything goes to the default local store ($PYBUILD_ROOT, else ~/.local/share/pybuild).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for p in busybox-static zstd ca-certificates; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || true
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install -q -e . >/dev/null
export PATH="$PWD/.venv/bin:$PATH"

set -x
./fixtures/base/busybox.sh
pybuild -t hello:1 examples/hello
pybuild images
pybuild run --rm hello:1
