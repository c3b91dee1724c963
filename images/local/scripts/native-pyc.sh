#!/bin/sh
# PYTHON_FOR_BUILD of a CPython compiled for an emulated architecture (orch passes it to
# make through MAKEFLAGS, so build-cpython.sh is the same for every architecture).
# Bytecode does not depend on the architecture, so byte-compiling the standard library
# (most of `make install` under QEMU) runs on ORCH_NATIVE_PYTHON: the host's interpreter
# compiled from the same source tarball, with the same flags. Everything else runs on the
# interpreter just built, exactly as configure's own PYTHON_FOR_BUILD ('./python -E').
#   ORCH_NATIVE_PYTHON   the native interpreter (run by the mounted amd64 loader)
#   TAG                  the interpreter's /opt/python/<tag>, for pip's site-packages
#   ORCH_PREFIX          instead of /opt/python/$TAG (tests)
set -e
for arg in "$@"; do
    case "$arg" in
        */compileall.py)
            # make ignores compileall's exit status: an interpreter that cannot start must
            # not leave the library without .pyc files, so it falls back to emulation.
            if "$ORCH_NATIVE_PYTHON" -c pass; then exec "$ORCH_NATIVE_PYTHON" "$@"; fi
            echo "native-pyc: $ORCH_NATIVE_PYTHON does not run; byte-compiling emulated" >&2
            exec ./python -E "$@"
            ;;
    esac
done
case " $* " in
    *" -m ensurepip "*)
        # pip would byte-compile itself under emulation: install it without, then compile
        # it natively (level 0 only, as pip does).
        PIP_NO_COMPILE=1 ./python -E "$@"
        for site in "${ORCH_PREFIX:-/opt/python/$TAG}"/lib/python3*/site-packages; do
            [ -d "$site" ] || continue
            "$ORCH_NATIVE_PYTHON" -E -m compileall -q -f -x badsyntax "$site"
        done
        exit 0
        ;;
esac
exec ./python -E "$@"
