#!/bin/sh
# Compile each interpreter of $SOURCE_PYTHONS ("cp311-cp311=bookworm:python3.11 ...") into
# /opt/python/<tag> from the upstream tarball of that suite's Debian source package.
# Static libpython (no --enable-shared) and no PGO, as in the manylinux images.
. /usr/local/lib/orch-image/common.sh

mkdir -p /opt/python
[ -n "${SOURCE_PYTHONS:-}" ] || { log "no source-built interpreters"; exit 0; }

# The deb-src line reuses the mirror this root was bootstrapped from.
mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
[ -n "$mirror" ] || { log "no mirror in /etc/apt/sources.list"; exit 1; }

# shellcheck disable=SC2086  # word splitting of the package list is intended
apt_install $SOURCE_PYTHON_BUILD_PACKAGES

for item in $SOURCE_PYTHONS; do
    tag=${item%%=*}
    spec=${item#*=}
    suite=${spec%%:*}
    package=${spec#*:}
    prefix=/opt/python/$tag
    src=/tmp/cpython-$tag
    log "CPython $tag from $suite's $package source into $prefix"

    echo "deb-src $mirror $suite main" > /etc/apt/sources.list.d/orch-src.list
    apt-get update -qq
    mkdir -p "$src" && cd "$src"
    apt-get source --download-only "$package"
    rm -f /etc/apt/sources.list.d/orch-src.list
    apt_clean
    tarball=$(ls "$src"/"$package"_*.orig.tar.*)
    mkdir -p "$src/tree"
    tar -xf "$tarball" -C "$src/tree" --strip-components=1
    cd "$src/tree"
    ./configure --prefix="$prefix" --with-ensurepip=install --enable-ipv6 \
        >"$src/configure.log" 2>&1 \
        || { tail -n 50 "$src/configure.log"; exit 1; }
    make -j"$(nproc)" >"$src/make.log" 2>&1 || { tail -n 80 "$src/make.log"; exit 1; }
    # Extension modules that failed to build are reported here; the runtime stage imports them.
    grep -A3 -E "Failed to build these modules|necessary bits to build these optional" \
        "$src/make.log" || true
    make install >"$src/install.log" 2>&1 || { tail -n 50 "$src/install.log"; exit 1; }

    # Smaller, as the manylinux images do: no test suite, no debug info.
    rm -rf "$prefix"/lib/python3.*/test "$prefix"/lib/python3.*/*/test "$prefix"/lib/python3.*/*/tests
    find "$prefix" -name '*.so' -exec strip --strip-unneeded {} +
    find "$prefix"/bin -type f -name 'python3*' ! -name '*-config' -exec strip --strip-unneeded {} +
    find "$prefix" -name 'libpython*.a' -exec strip --strip-debug {} +
    ln -sf python3 "$prefix/bin/python"
    ln -sf pip3 "$prefix/bin/pip"
    "$prefix/bin/python" -c 'import sys; print(sys.version)'
    cd / && rm -rf "$src"
done
