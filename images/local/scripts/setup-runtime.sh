#!/bin/sh
# Runtime variant: the interpreters in the manylinux layout (/opt/python/<tag>/bin/python)
# with an up-to-date pip, the shared libraries they need, and no compiler.
. /usr/local/lib/orch-image/common.sh

# dpkg without fsync for this step (a third of the toolchain's install): a build that fails
# leaves no layer, so the syncs only cost time; the installed files are the same.
UNSAFE_IO=/etc/dpkg/dpkg.cfg.d/orch-unsafe-io
echo force-unsafe-io > "$UNSAFE_IO"

# Debian images ship this so that package installs never start services.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d

# shellcheck disable=SC2086
apt_install $RUNTIME_PACKAGES

# Debian's interpreter as a venv: its own site-packages, the system's stdlib and headers.
if [ -n "${DEBIAN_PYTHON:-}" ]; then
    tag=${DEBIAN_PYTHON%%=*}
    exe=${DEBIAN_PYTHON#*=}
    log "$tag: venv of $exe"
    "$exe" -m venv "/opt/python/$tag"
fi

for prefix in /opt/python/*; do
    [ -x "$prefix/bin/python" ] || continue
    # shellcheck disable=SC2086
    pip_install "$prefix/bin/python" $PIP_RUNTIME
    check_stdlib "$prefix/bin/python"
done
drop_host_ca

# i686 on an x86_64 kernel: uname must say i686 for configure scripts and compilers.
printf '#!/bin/sh\nexec %s "$@"\n' "${SETARCH:-}" > /usr/local/bin/orch-entrypoint
chmod 755 /usr/local/bin/orch-entrypoint
rm -f "$UNSAFE_IO"
