#!/bin/sh
# Derived image step: interpreters unpacked into /opt/python by ADD get the pinned pip (and,
# in the build variant, the build tools) and are checked.
#   add-pythons.sh runtime|build TAG...
. /usr/local/lib/orch-image/common.sh

variant=$1
shift
for tag in "$@"; do
    py=/opt/python/$tag/bin/python
    if [ "$variant" = build ]; then
        # shellcheck disable=SC2086
        pip_install "$py" $PIP_BUILD
        # Headers must be where sysconfig says, or extension builds fail late and obscurely.
        "$py" -c 'import os, sysconfig, build
inc = sysconfig.get_paths()["include"]
assert os.path.exists(os.path.join(inc, "Python.h")), inc'
    else
        # shellcheck disable=SC2086
        pip_install "$py" $PIP_RUNTIME
    fi
    check_stdlib "$py"
done
drop_host_ca
