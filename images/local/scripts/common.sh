# Shared helpers for the image build steps (sourced, POSIX sh).
set -eu

ORCH_IMAGE_DIR=/usr/local/lib/orch-image
HOST_CA="$ORCH_IMAGE_DIR/host-ca.crt"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[orch-image] %s\n' "$*"; }

# apt-get install without recommends; lists and archives are dropped so that no layer keeps them.
apt_install() {
    [ "$#" -gt 0 ] || return 0
    log "apt-get install $*"
    apt-get update -qq
    apt-get install -y -q --no-install-recommends "$@"
    apt_clean
}

apt_clean() {
    apt-get clean
    rm -rf /var/lib/apt/lists/*
}

# Run a pip command trusting the host's CA bundle (only for this command: the bundle is a
# build input, not part of the image's trust store).
with_host_ca() {
    if [ -s "$HOST_CA" ]; then
        PIP_CERT="$HOST_CA" SSL_CERT_FILE="$HOST_CA" "$@"
    else
        "$@"
    fi
}

pip_install() {
    python="$1"
    shift
    [ "$#" -gt 0 ] || return 0
    log "$python -m pip install $*"
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
        with_host_ca "$python" -m pip install --no-input --upgrade "$@"
}

drop_host_ca() { rm -f "$HOST_CA"; }

# Fails the build if a library an extension module of interpreter $1 needs is missing.
check_stdlib() {
    "$1" - <<'PY'
import importlib, sys
mods = ["ssl", "ctypes", "sqlite3", "lzma", "bz2", "zlib", "hashlib", "uuid", "decimal",
        "readline", "curses", "dbm", "json", "pyexpat", "venv", "ensurepip"]
for name in mods:
    importlib.import_module(name)
from pip._vendor.packaging.tags import sys_tags
print(sys.executable, sys.version.split()[0], "best tag:", next(iter(sys_tags())))
PY
}
