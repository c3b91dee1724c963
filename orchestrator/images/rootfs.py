"""Debootstrap root file systems, cached on disk as the tarballs the images start from.

No container registry is reachable, so every local image starts from a minbase root made
on the host (foreign architectures through the host's QEMU binfmt handlers): by mmdebstrap
when it is installed (apt's resolver and parallel downloads: 45 s against debootstrap's 70 s
here, same packages and versions), else by `debootstrap --variant=minbase`. Both make the
same root: only the suite's main component from debootstrap's default mirror, merged /usr
by debootstrap's own function. The tarball is cached under the orch cache dir, keyed by
what it depends on, and only ever appears complete (written to a temporary name, then
renamed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from filelock import FileLock

from orchestrator import archs, options
from orchestrator.archs import Arch
from orchestrator.errors import EnvironmentProblem, OrchError
from orchestrator.images import sources
from orchestrator.util import paths, stoppers

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
DEBOOTSTRAP_SCRIPT = sources.DEBOOTSTRAP_SCRIPT  # its default mirror is read from here
# debootstrap's shell functions: mmdebstrap merges /usr with its setup_merged_usr, as
# debootstrap does. (mmdebstrap's own merged-usr hook also installs a dummy usr-is-merged
# package, which debootstrap's roots do not have.)
DEBOOTSTRAP_FUNCTIONS = Path("/usr/share/debootstrap/functions")
# Left out of the tarball: the engine provides /dev, /proc and /sys, and apt's downloads
# and indexes are stale by the time the image is built.
TAR_EXCLUDES = (
    "./dev/*",
    "./proc/*",
    "./sys/*",
    "./tmp/*",
    "./var/cache/apt/archives/*.deb",
    "./var/cache/apt/*.bin",
    "./var/lib/apt/lists/*",
    "./debootstrap",
)

# The name images' build contexts give the tarball (their Dockerfiles ADD it). Not
# compressed: gzip took 8 s of a first run's critical path, unpacking it again in every
# image build, to save 75 MB of cache.
CONTEXT_NAME = "rootfs.tar"

Log = Callable[[str], None]


def cache_dir() -> Path:
    return paths.cache_dir()


def rootfs_dir() -> Path:
    return cache_dir() / "images" / "rootfs"


def tarball_path(suite: str, arch: Arch, key: str) -> Path:
    return rootfs_dir() / f"{suite}-{arch.debian}-{key[:16]}.tar"


def check_binfmt(arch: Arch) -> None:
    """A foreign architecture needs an enabled QEMU binfmt handler (with the F flag for chroots
    and containers, since the interpreter is not inside the root)."""
    if archs.runs_natively(arch.name):
        return
    handler = BINFMT_DIR / f"qemu-{arch.qemu}"
    try:
        text = handler.read_text()
    except OSError:
        raise EnvironmentProblem(
            f"{arch.name} is emulated on this {archs.host_arch()} host, but the binfmt handler "
            f"{handler} is missing.\n  Fix (as root): `bash scripts/setup-host.sh` "
            "(installs qemu-user-static and binfmt-support and enables the handlers)."
        ) from None
    if not text.startswith("enabled"):
        raise EnvironmentProblem(
            f"binfmt handler {handler} is disabled; run `update-binfmts --enable`"
        )
    flags = next((ln.split(":", 1)[1] for ln in text.splitlines() if ln.startswith("flags:")), "")
    if "F" not in flags:
        raise EnvironmentProblem(
            f"binfmt handler {handler} lacks the F (fix binary) flag, so it cannot run inside "
            "containers; reinstall qemu-user-static (its handlers set F)."
        )


def check_debootstrap() -> str:
    exe = shutil.which("debootstrap")
    if exe is None:
        raise EnvironmentProblem(
            "debootstrap is not installed; it makes the root file system of local images.\n"
            "  Fix (as root): `apt-get install debootstrap`, or `bash scripts/setup-host.sh`."
        )
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "debootstrap must run as root to build local images (run orch as root)"
        )
    return exe


UNSAFE_IO = "force-unsafe-io"
# Debian testing and unstable: their Release files are valid for a week, and a snapshot
# mirror serves them long expired. Their roots keep this apt option (mmdebstrap writes it
# into the root), so the images' own apt-get accepts them too; signatures are still checked.
ROLLING_SUITES = frozenset({"forky", "sid"})
NO_VALID_UNTIL = 'Acquire::Check-Valid-Until "false"'

MMDEBSTRAP_DPKG_CFG = "etc/dpkg/dpkg.cfg.d/99mmdebstrap"  # where mmdebstrap keeps --dpkgopt


def minbase_command(
    exe: str, suite: str, arch: Arch, root: Path, include: Sequence[str]
) -> list[str]:
    """A minbase root with `include` added (the native kits' roots): mmdebstrap when it can
    make debootstrap's root (a third of debootstrap's time, less disk traffic beside the
    first jobs), else debootstrap (`exe`)."""
    cmd = mmdebstrap_command(suite, arch, root)
    if cmd is None:
        return [
            exe,
            "--variant=minbase",
            f"--arch={arch.debian}",
            *_include(include),
            suite,
            str(root),
        ]
    return [cmd[0], *_include(include), *cmd[1:]]


def _include(packages: Sequence[str]) -> list[str]:
    return [f"--include={','.join(packages)}"] if packages else []


def mmdebstrap_command(suite: str, arch: Arch, root: Path) -> list[str] | None:
    """The mmdebstrap call that makes debootstrap's root, or None to use debootstrap: not
    installed, ORCH_ROOTFS_TOOL=debootstrap, or no way to make the same root."""
    exe = shutil.which("mmdebstrap")
    if exe is None or options.env().rootfs_tool == "debootstrap":
        return None
    mirror = _debootstrap_mirror()
    if mirror is None or not DEBOOTSTRAP_FUNCTIONS.is_file():
        return None
    if arch.debian != _host_debian_arch() and shutil.which("arch-test") is None:
        return None  # mmdebstrap refuses another architecture's root without it
    return [
        exe,
        "--variant=minbase",
        f"--architectures={arch.debian}",
        "--mode=root",
        "--format=directory",
        f"--setup-hook={_merge_usr(suite, arch)}",
        # dpkg without fsync (a failed root is discarded anyway): 27-43 s -> 14-29 s side by
        # side under load. mmdebstrap keeps --dpkgopt in the root; the hook removes it, so
        # the tree is the same as before, file for file.
        f"--dpkgopt={UNSAFE_IO}",
        f'--customize-hook=rm -f "$1/{MMDEBSTRAP_DPKG_CFG}"',
        *([f"--aptopt={NO_VALID_UNTIL}"] if suite in ROLLING_SUITES else []),
        suite,
        str(root),
        # One line, as debootstrap writes: no -updates or -security (mmdebstrap's default for
        # a stable suite), which would give newer versions than the images have always had.
        f"deb {mirror} {suite} main",
    ]


def _merge_usr(suite: str, arch: Arch) -> str:
    """The setup hook (run by sh with the root as $1): debootstrap's merge of /usr."""
    return (
        f'TARGET="$1" ARCH={arch.debian} CODENAME={suite} MERGED_USR=yes; '
        f". {DEBOOTSTRAP_FUNCTIONS}; "
        'doing_variant() { [ "$1" != buildd ]; }; setup_merged_usr'
    )


def _host_debian_arch() -> str:
    host = archs.host_arch()
    return archs.get(host).debian if host in archs.ARCHS else host


def _debootstrap_mirror() -> str | None:
    """debootstrap's default mirror (DEF_MIRROR in its script), so both tools read one (and
    `orch plan` asks the same mirror whether it serves a source: sources.py)."""
    return sources.debootstrap_mirror(DEBOOTSTRAP_SCRIPT)


def ensure_rootfs(suite: str, arch: Arch, key: str, on_line: Log, refresh: bool = False) -> Path:
    """The cached minbase tarball for (suite, arch), made with debootstrap when missing."""
    path = tarball_path(suite, arch, key)
    if path.is_file() and not refresh:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file() and not refresh:  # another process made it while we waited
            return path
        exe = check_debootstrap()
        check_binfmt(arch)
        _make_tarball(exe, suite, arch, path, on_line)
    return path


def _make_tarball(exe: str, suite: str, arch: Arch, path: Path, on_line: Log) -> None:
    work = Path(tempfile.mkdtemp(prefix=".debootstrap-", dir=path.parent))
    root = work / "root"
    done = False
    try:
        start = time.monotonic()
        cmd = mmdebstrap_command(suite, arch, root)
        if cmd is None and suite in ROLLING_SUITES:
            raise EnvironmentProblem(
                f"a {suite} root needs mmdebstrap (this debootstrap has no {suite} script, "
                f"and the rolling suite's Release file may be past its Valid-Until): "
                f"`apt-get install mmdebstrap arch-test` (scripts/setup-host.sh does), and "
                f"leave ORCH_ROOTFS_TOOL unset"
            )
        cmd = cmd or [exe, "--variant=minbase", f"--arch={arch.debian}", suite, str(root)]
        tool = Path(cmd[0]).name
        on_line(f"[orch] {tool} --variant=minbase {arch.debian} {suite} (into {root})")
        _run(cmd, on_line)
        on_line(f"[orch] {tool} {suite}/{arch.debian}: {time.monotonic() - start:.1f} s")
        tmp = work / CONTEXT_NAME
        excludes = [f"--exclude={pattern}" for pattern in TAR_EXCLUDES]
        _run(["tar", "--numeric-owner", "-C", str(root), *excludes, "-cf", str(tmp), "."], on_line)
        os.replace(tmp, path)
        size_mb = path.stat().st_size / 1e6
        on_line(
            f"[orch] rootfs tarball {path} ({size_mb:.0f} MB): {time.monotonic() - start:.1f} s"
        )
        done = True
    finally:
        if done:
            _remove_later(work)
        else:
            _remove_tree(work)


def _remove_later(work: Path) -> None:
    """Deleting a root's ~10,000 files took seconds that the images waiting for the tarball
    need not wait: a thread does it (not a daemon, so the process exits only after it)."""
    threading.Thread(target=_remove_tree, args=(work,), name="orch-rootfs-cleanup").start()


def _run(cmd: list[str], on_line: Log) -> None:
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own group: stopping it reaches dpkg/chroot children too
    )
    assert proc.stdout is not None
    tail: list[str] = []
    try:
        with stoppers.stoppable(lambda: _stop_group(proc)):
            for line in proc.stdout:
                on_line(line.rstrip("\n"))
                tail = [*tail[-19:], line.rstrip("\n")]
    except BaseException:  # interrupted: the child stops before its tree is removed
        _stop_group(proc)
        proc.wait()
        raise
    if proc.wait() != 0:
        raise OrchError(f"{cmd[0]} failed (exit {proc.returncode}):\n  " + "\n  ".join(tail))


def _stop_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)


def _remove_tree(path: Path) -> None:
    """rm -rf, after unmounting whatever a killed debootstrap left mounted inside (proc, sys):
    deleting through a live mount would reach the host's files."""
    prefix = str(path.resolve()) + "/"
    mounts = [m for m in _mount_points() if m.startswith(prefix)]
    for mount in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, stdin=subprocess.DEVNULL)
    if any(m.startswith(prefix) for m in _mount_points()):
        raise OrchError(f"could not unmount everything under {path}; remove it by hand")
    shutil.rmtree(path, ignore_errors=True)


def _mount_points() -> list[str]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    # Fields are octal-escaped (a space is \040).
    return [ln.split()[1].encode().decode("unicode_escape") for ln in lines if len(ln.split()) > 1]
