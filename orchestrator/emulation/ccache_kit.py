"""A native (x86_64) ccache that runs in any job container, emulated or not.

Debian's ccache and the shared libraries it links (with their own glibc and ELF loader)
are copied out of a minbase amd64 root into a small kit. The wrappers in the kit run it
through that loader (`ld-linux-x86-64.so.2 --library-path <kit>/lib <kit>/bin/ccache`),
so nothing of the container is needed to start it: not its libc, not a /lib64 loader (an
arm64 image has none), not a shell of the right architecture for ccache itself. In an
emulated container the kernel runs it directly, as it runs the cross compiler, so a cache
hit costs native time. The compiler it calls is whatever the job's PATH had (the image's
gcc, the cross gcc's or clang's wrappers): ccache finds it through CCACHE_PATH.

The kit lives next to the toolchain roots (`$ORCH_CROSS_DIR`, by default
`<orch cache>/cross/ccache-<suite>-<hash>`), built once per machine under a file lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator import archs
from orchestrator.emulation import kits
from orchestrator.emulation.cross_root import _chroot_output, cross_dir, resolve_in_root
from orchestrator.errors import EnvironmentProblem, OrchError
from orchestrator.images import rootfs

FORMAT_VERSION = 1
SUITE = "bullseye"  # ccache 4.2: libc, libzstd and libhiredis only
PACKAGES = ("ccache",)
PREFIX = "/opt/orch-ccache"  # where the kit appears inside containers
MANIFEST = "manifest.json"
LOADER_NAME = "ld-linux-x86-64.so.2"
# Compiler names that get a ccache wrapper (plus <triplet>-gcc/-g++ of the job's arch):
# what setuptools (sysconfig's CC), CMake, autotools and meson call by name.
COMPILERS = ("cc", "gcc", "c++", "g++")
TRIPLET_COMPILERS = ("gcc", "g++")

Log = Callable[[str], None]


@dataclass(frozen=True)
class CcacheKit:
    path: Path
    version: str  # ccache's own: 4.2
    key: str

    def bin_dir(self, arch: str) -> str:
        """The container directory of the wrappers for a job of `arch`."""
        return f"{PREFIX}/wrappers/{arch}"


def kit_key() -> str:
    blob = {
        "format": FORMAT_VERSION,
        "suite": SUITE,
        "packages": PACKAGES,
        "prefix": PREFIX,
        "compilers": COMPILERS,
        "triplets": sorted(a.triplet for a in archs.ARCHS.values()),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def kit_path() -> Path:
    return cross_dir() / f"ccache-{SUITE}-{kit_key()[:16]}"


def load_kit(path: Path) -> CcacheKit | None:
    """The kit at path if complete (its manifest is written last, before the rename)."""
    try:
        data = json.loads((path / MANIFEST).read_text())
        return CcacheKit(path, str(data["version"]), str(data["key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ready_kit(log: Log) -> CcacheKit | None:
    """The kit if this machine has it; else None, and one background thread per process
    builds it (a minbase root: mmdebstrap or debootstrap, under a minute) for the jobs and runs that come after."""
    found = kits.ready(kit_path(), load_kit, ensure_kit)
    if found is None:
        log(f"[ccache] the ccache kit is being built ({kit_path()}); this job compiles without it")
    return found


def ensure_kit(on_line: Log | None = None) -> CcacheKit:
    """The kit, built now (a minbase root: mmdebstrap or debootstrap, under a minute) if this machine has none."""
    log = on_line or (lambda _line: None)
    return kits.ensure(kit_path(), load_kit, lambda path: _build(path, log))


def _build(path: Path, log: Log) -> CcacheKit:
    if archs.host_arch() != "x86_64":
        raise EnvironmentProblem("the ccache kit is amd64: it needs an x86_64 host")
    exe = rootfs.check_debootstrap()
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=path.parent))
    root, kit = work / "root", work / "kit"
    try:
        start = time.monotonic()
        log(f"[ccache] root {SUITE}/amd64 with {', '.join(PACKAGES)} (once per machine)")
        rootfs._run(rootfs.minbase_command(exe, SUITE, archs.get("x86_64"), root, PACKAGES), log)
        version = _copy_kit(root, kit)
        _write_wrappers(kit)
        _check(kit)
        manifest = {"version": version, "key": kit_key(), "built": time.time()}
        (kit / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if path.exists():  # an incomplete leftover (no manifest)
            shutil.rmtree(path)
        os.rename(kit, path)
        log(f"[ccache] kit {path.name} (ccache {version}): {time.monotonic() - start:.1f} s")
    finally:
        rootfs._remove_tree(work)
    found = load_kit(path)
    assert found is not None
    return found


def _copy_kit(root: Path, kit: Path) -> str:
    """ccache, the libraries `ldd` names and the loader, as regular files."""
    (kit / "bin").mkdir(parents=True)
    (kit / "lib").mkdir()
    shutil.copy2(resolve_in_root(root, "usr/bin/ccache"), kit / "bin" / "ccache")
    for lib in needed_libraries(_chroot_output(root, ["ldd", "/usr/bin/ccache"])):
        shutil.copy2(resolve_in_root(root, lib), kit / "lib" / Path(lib).name)
    banner = _chroot_output(root, ["ccache", "--version"]).splitlines()[0]
    return banner.rsplit(" ", 1)[-1]


def needed_libraries(ldd: str) -> list[str]:
    """The absolute paths of ldd's output (libraries and the loader; not the vDSO)."""
    out = []
    for line in ldd.splitlines():
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            out.append(match.group(1))
    return out


def wrapper_script(name: str) -> str:
    """Runs the kit's ccache through the kit's loader; `name` is looked up by ccache in
    CCACHE_PATH (the job's PATH without this directory), so it never finds itself."""
    return (
        "#!/bin/sh\n"
        f'exec {PREFIX}/lib/{LOADER_NAME} --library-path {PREFIX}/lib {PREFIX}/bin/ccache {name} "$@"\n'
    )


def _write_wrappers(kit: Path) -> None:
    for arch in archs.ARCHS.values():
        bindir = kit / "wrappers" / arch.name
        bindir.mkdir(parents=True)
        names = [*COMPILERS, *(f"{arch.triplet}-{c}" for c in TRIPLET_COMPILERS)]
        for name in names:
            script = bindir / name
            script.write_text(wrapper_script(name))
            script.chmod(0o755)


def _check(kit: Path) -> None:
    """The kit runs on its own (the host's libraries are not used)."""
    cmd = [str(kit / "lib" / LOADER_NAME), "--library-path", str(kit / "lib")]
    proc = subprocess.run(
        [*cmd, str(kit / "bin" / "ccache"), "--version"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise OrchError(f"the ccache kit does not run: {proc.stderr.strip()}")
