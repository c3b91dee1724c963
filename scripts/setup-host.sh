#!/bin/sh
# Prepare a Debian/Ubuntu host for orch, as root. Safe to run again: every step checks first.
#
#   - Docker engine, QEMU user-mode emulators with binfmt handlers, debootstrap and, when
#     the distribution has it, mmdebstrap (local images start from a minbase root made by
#     one of them, foreign architectures through QEMU);
#   - binfmt_misc mounted and the handlers enabled;
#   - dockerd started (through systemd when it runs, else detached) and waited for.
#
# dockerd, when started here, is detached from this script's stdin/stdout/stderr, so
# callers capturing our output (CI, `$(...)`) are not held open by it.
set -eu

PACKAGES="docker.io qemu-user-static binfmt-support debootstrap debian-archive-keyring"
# Faster roots (images/rootfs.py: apt's parallel downloads; arch-test lets it make foreign
# ones). Optional: without them debootstrap makes the same root, more slowly.
OPTIONAL_PACKAGES="mmdebstrap arch-test"
DOCKERD_LOG=/var/log/orch-dockerd.log
DOCKERD_TIMEOUT=${ORCH_DOCKERD_TIMEOUT:-60}
BINFMT=/proc/sys/fs/binfmt_misc

say() { printf 'setup-host: %s\n' "$*"; }
die() { printf 'setup-host: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts dockerd)"

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_packages() {
    missing=""
    for pkg in $PACKAGES; do
        # An engine that already answers (e.g. docker-ce on CI runners) is kept: docker.io
        # would conflict with it.
        if [ "$pkg" = docker.io ] && docker info >/dev/null 2>&1; then continue; fi
        installed "$pkg" || missing="$missing $pkg"
    done
    if [ -z "$missing" ]; then
        say "packages present: $PACKAGES"
        return 0
    fi
    say "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086  # the list is meant to split
    apt-get install -y -q --no-install-recommends $missing
}

enable_binfmt() {
    if ! mountpoint -q "$BINFMT" 2>/dev/null; then
        say "mounting binfmt_misc"
        mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount $BINFMT"
    fi
    # Already-enabled handlers make update-binfmts complain; the check below is what counts.
    update-binfmts --enable >/dev/null 2>&1 || true
    for handler in aarch64 arm ppc64le s390x; do
        if [ -e "$BINFMT/qemu-$handler" ]; then
            say "binfmt qemu-$handler: $(head -n1 "$BINFMT/qemu-$handler")"
        else
            say "warning: binfmt handler qemu-$handler missing (that architecture cannot be emulated)"
        fi
    done
}

docker_up() { docker info >/dev/null 2>&1; }

# Without procps: a dockerd that is starting but not answering yet must not get a twin.
dockerd_running() {
    for comm in /proc/[0-9]*/comm; do
        [ "$(cat "$comm" 2>/dev/null)" = dockerd ] && return 0
    done
    return 1
}

start_docker() {
    if docker_up; then
        say "dockerd is running"
        return 0
    fi
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        say "starting docker through systemd"
        systemctl start docker || true
    fi
    if ! docker_up && ! dockerd_running; then
        say "starting dockerd (log: $DOCKERD_LOG)"
        setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    waited=0
    until docker_up; do
        [ "$waited" -lt "$DOCKERD_TIMEOUT" ] \
            || die "dockerd did not answer within ${DOCKERD_TIMEOUT}s; see $DOCKERD_LOG"
        sleep 1
        waited=$((waited + 1))
    done
    say "dockerd is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

install_optional() {
    missing=""
    for pkg in $OPTIONAL_PACKAGES; do
        installed "$pkg" || missing="$missing $pkg"
    done
    [ -n "$missing" ] || return 0
    say "installing (optional):$missing"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
        || say "warning:$missing not installed; local image roots are made by debootstrap"
}

install_packages
install_optional
enable_binfmt
start_docker
