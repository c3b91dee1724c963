#!/usr/bin/env bash
# The main job end to end on a fresh Debian/Ubuntu machine as root: set up the host, build
# the local manylinux_2_31 image, then build, repair, verify and audit the example's wheels
# into ./wheelhouse. Extra arguments go to `orch build`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-host.sh
bash scripts/setup-venv.sh
exec .venv/bin/orch build -f examples/hello-bz2 -o wheelhouse "$@"
