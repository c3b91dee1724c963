#!/bin/sh
# One CPython from the upstream tarball of a Debian source package, in a container of the
# builder image (Dockerfile.cpython), which orch copies this script into.
#   build-cpython.sh resolve   print "orch-source <file> <sha256> <version>" of $PACKAGE in $SUITE
#   build-cpython.sh build     compile into /opt/python/$TAG, pack /tmp/orch-out/python.tar.gz
# Static libpython (no --enable-shared) and no PGO, as in the manylinux images.
# Inputs (environment): TAG, SUITE, PACKAGE, VERSION, SOURCE_FILE, SOURCE_SHA256, FREE_THREADED=1 for
# --disable-gil (the cp313t ABI).
. /usr/local/lib/orch-image/common.sh

# Testing/unstable Release files may be past their Valid-Until on a machine whose mirror is a
# snapshot; their signatures are still checked, and the tarball against the signed index.
APT_SRC="-o Acquire::Check-Valid-Until=false"
phase() { log "phase $*"; }

sources() {
    # The deb-src line reuses the mirror this root was bootstrapped from.
    mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
    [ -n "$mirror" ] || { log "no mirror in /etc/apt/sources.list"; exit 1; }
    echo "deb-src $mirror $SUITE main" > /etc/apt/sources.list.d/orch-src.list
    # shellcheck disable=SC2086
    apt-get $APT_SRC update -qq
}

resolve() {
    sources
    # shellcheck disable=SC2086
    line=$(apt-get $APT_SRC source --print-uris "$PACKAGE" | grep -E "_[^ ]*\.orig\.tar\.[a-z0-9]+' " | head -n1)
    [ -n "$line" ] || { log "no orig tarball for $PACKAGE in $SUITE"; exit 1; }
    file=$(echo "$line" | awk '{print $2}')
    sha=$(echo "$line" | awk '{print $4}' | sed 's/^SHA256://')
    version=$(apt-cache showsrc "$PACKAGE" | awk '/^Version:/ {print $2}' | sort -V | tail -n1)
    echo "orch-source $file $sha $version"
}

build() {
    prefix=/opt/python/$TAG
    src=/tmp/cpython-$TAG
    mkdir -p "$src" /tmp/orch-out
    cd "$src" || exit 1
    phase "download $PACKAGE=$VERSION ($SUITE)"
    # shellcheck disable=SC2086
    apt-get $APT_SRC source --download-only "$PACKAGE=$VERSION"
    tarball=$src/$SOURCE_FILE
    echo "$SOURCE_SHA256  $tarball" | sha256sum -c -
    mkdir -p "$src/tree"
    tar -xf "$tarball" -C "$src/tree" --strip-components=1
    cd "$src/tree" || exit 1
    gil=""
    [ "${FREE_THREADED:-0}" = 1 ] && gil="--disable-gil"
    phase "configure $gil"
    # shellcheck disable=SC2086
    ./configure --prefix="$prefix" --with-ensurepip=install --enable-ipv6 $gil \
        >"$src/configure.log" 2>&1 || { tail -n 50 "$src/configure.log"; exit 1; }
    phase "make -j$(nproc)"
    make -j"$(nproc)" >"$src/make.log" 2>&1 || { tail -n 80 "$src/make.log"; exit 1; }
    # Extension modules that failed to build are reported here; add-pythons.sh imports them.
    grep -A3 -E "Failed to build these modules|necessary bits to build these optional" \
        "$src/make.log" || true
    phase "make install"
    make install >"$src/install.log" 2>&1 || { tail -n 50 "$src/install.log"; exit 1; }
    trim "$prefix"
    link_names "$prefix"
    "$prefix/bin/python" -c 'import sys, sysconfig
ft = sysconfig.get_config_var("Py_GIL_DISABLED") or 0
assert ft == int(sys.argv[1]), ("free-threaded", ft)
print(sys.version)' "${FREE_THREADED:-0}"
    phase "pack"
    tar -C /opt/python -czf /tmp/orch-out/python.tar.gz "$TAG"
    cd / && rm -rf "$src"
}

# Smaller, as the manylinux images do: no test suite, no debug info.
trim() {
    rm -rf "$1"/lib/python3.*/test "$1"/lib/python3.*/*/test "$1"/lib/python3.*/*/tests
    find "$1" -name '*.so' -exec strip --strip-unneeded {} +
    find "$1"/bin -type f -name 'python3*' ! -name '*-config' -exec strip --strip-unneeded {} +
    find "$1" -name 'libpython*.a' -exec strip --strip-debug {} +
}

# bin/python, python3, pip and pip3 whatever the build named its executables (python3.13t).
link_names() {
    for exe in "$1"/bin/python3.*; do
        case "$exe" in *-config) continue ;; esac
        [ -e "$1/bin/python3" ] || ln -s "${exe##*/}" "$1/bin/python3"
    done
    for exe in "$1"/bin/pip3.*; do
        [ -e "$1/bin/pip3" ] || ln -s "${exe##*/}" "$1/bin/pip3"
    done
    ln -sf python3 "$1/bin/python"
    ln -sf pip3 "$1/bin/pip"
}

case "${1:-}" in
    resolve) resolve ;;
    build) build ;;
    *) log "usage: build-cpython.sh resolve|build"; exit 2 ;;
esac
