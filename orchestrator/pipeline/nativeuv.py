"""The x86_64 `uv` binary for emulated containers: resolving and installing run natively.

Under QEMU, every pip or uv process is emulated. uv's musllinux x86_64 wheel holds a
statically linked binary, so the kernel runs it directly inside an arm64 (or ppc64le...)
container, with no loader or library of the host's architecture present, as it runs the
cross compiler. It only reads the interpreter it installs for (one emulated query for the
platform and tags) and writes files. It is fetched once per uv release from the package
index by the host's own pip, extracted under `<orch cache>/native/uv-<version>/uv` and
mounted read-only at NATIVE in job and verification containers.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import filelock

from orchestrator import archs
from orchestrator.container.types import Mount
from orchestrator.pipeline.wheelcache import _extract_script
from orchestrator.util.paths import cache_dir

NATIVE = "/orch/native"  # the mount point in containers
PLATFORM = "musllinux_1_1_x86_64"  # static: runs in any container on an x86_64 kernel
_VERSION = re.compile(r"^uv-(\d+(?:\.\d+)*)-")
_FAILED: set[str] = set()
# For a build set without uv (the container's pip found no wheel for its platform, or an
# old `build`): the installer is a tool, any recent release installs the same wheels.
FALLBACK_VERSION = "0.9.7"

Log = Callable[[str], None]


def native_dir() -> Path:
    return cache_dir() / "native"


def applies(arch: str) -> bool:
    """Build environments: only emulated containers on an x86_64 host gain anything (a
    native container runs the set's own uv natively already)."""
    return available() and not archs.runs_natively(arch)


def available() -> bool:
    """The x86_64 binary runs in any container of an x86_64 host (verification's installs
    use it on every architecture)."""
    return archs.host_arch() == "x86_64"


def mount() -> Mount:
    native_dir().mkdir(parents=True, exist_ok=True)
    return Mount(str(native_dir()), NATIVE, read_only=True)


def version_of(wheel_name: str) -> str | None:
    match = _VERSION.match(wheel_name)
    return match.group(1) if match else None


def native_uv(version: str, log: Log) -> str | None:
    """The container path of the x86_64 uv `version`, fetched now if missing; None if it
    cannot be had (no index: the emulated uv then does the work, as before)."""
    target = native_dir() / f"uv-{version}" / "uv"
    if not target.is_file() and version in _FAILED:
        return None
    if not target.is_file():
        native_dir().mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(native_dir() / f"uv-{version}.lock")):
            if not target.is_file() and not _fetch(version, target, log):
                _FAILED.add(version)  # asked once per process: no index, no waiting per job
                return None
    return f"{NATIVE}/uv-{version}/uv"


def newest(log: Log) -> str | None:
    """The newest native uv already fetched (verification follows the build's)."""
    found = sorted(
        (p for p in native_dir().glob("uv-*/uv") if p.is_file()),
        key=lambda p: tuple(int(x) for x in p.parent.name[3:].split(".") if x.isdigit()),
    )
    return f"{NATIVE}/{found[-1].parent.name}/uv" if found else None


def _fetch(version: str, target: Path, log: Log) -> bool:
    with tempfile.TemporaryDirectory(dir=native_dir()) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--timeout", "15", "--retries", "1"]  # no index: fall back soon
        proc = subprocess.run(
            [*cmd, "--platform", PLATFORM, "--dest", tmp, f"uv=={version}"],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        wheels = list(Path(tmp).glob("uv-*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
            log(f"[uv] warning: no native x86_64 uv {version} ({last}); emulated uv instead")
            return False
        part = Path(tmp) / "uv"
        if not _extract_script(wheels[0], "uv", part):
            log(f"[uv] warning: {wheels[0].name} has no uv binary; emulated uv instead")
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        part.replace(target)  # atomic: a reader never sees half a binary
    log(f"[uv] native x86_64 uv {version} at {target}")
    return True
