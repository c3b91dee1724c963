"""Cross toolchain roots: an amd64 Debian root holding the cross compiler for one target.

Built once on the host with debootstrap (keyed by a hash of its definition,
``images/cross/<suite>.yaml``), kept under ``<cache>/cross/`` and mounted read-only into
emulated build containers by `orchestrator.emulation.accel`. A root only ever appears complete: it
is built in a temporary directory and renamed into place, under a file lock so that two
processes asking at once build it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from filelock import FileLock

from orchestrator import archs, options
from orchestrator.archs import Arch
from orchestrator.errors import ConfigError, EnvironmentProblem, OrchError
from orchestrator.images import definition, rootfs
from orchestrator.util import paths

FORMAT_VERSION = 1
CROSS_SUBDIR = "cross"
ENV_CROSS_DIR = options.CROSS_DIR
PREFIX = "/opt/orch-cross"  # where the root appears inside containers
WRAPPER_SUBDIR = "orch/bin"  # inside the root: the directory put first on PATH
MANIFEST = "orch/manifest.json"
LOADER = "lib64/ld-linux-x86-64.so.2"  # the amd64 ELF interpreter, a fixed absolute path
HOST_LIBDIR = "usr/lib/x86_64-linux-gnu"
INSTALL_METHODS = ("include", "apt")

# Compiler drivers get a script (run by the root's own dash, natively) that adds the
# image's multiarch include directory, which Debian's native gcc searches and the cross
# gcc does not; the other tools are symlinks. Value: the cross program's name after
# "<triplet>-".
DRIVERS = {
    "gcc": "gcc-{major}",
    "cc": "gcc-{major}",
    "cpp": "cpp-{major}",
    "g++": "g++-{major}",
    "c++": "g++-{major}",
}
PREFIXED_DRIVERS = ("gcc", "g++", "cpp")  # also as <triplet>-gcc, ... (Python's sysconfig)
BINUTILS = (
    "ar",
    "as",
    "ld",
    "ld.bfd",
    "ld.gold",
    "nm",
    "objcopy",
    "objdump",
    "ranlib",
    "readelf",
    "size",
    "strings",
    "strip",
    "addr2line",
    "c++filt",
    "gcc-ar",
    "gcc-nm",
    "gcc-ranlib",
)

# Arch-neutral programs that also run natively on little-endian targets (symlinks in the
# wrapper directory, and the shell through autoconf's CONFIG_SHELL and over /bin/sh): a
# configure script or libtool starts hundreds of them. Name on PATH -> program in the root.
# Left emulated on purpose: uname and arch (config.guess and CMake must see the target),
# bash ($HOSTTYPE/$MACHTYPE are compiled in), perl and python (their build configuration),
# pkg-config and ldd (arch-specific search paths), getconf, nproc, od (byte order); make
# and cmake only under BUILD_TOOLS' rule (below). Big-endian targets get none here: the
# native C library cannot read their locale files, so sort or grep could behave
# differently (LLVM links them where the root holds the image's locales: accel.LOCPATH).
_SAME_NAME = """
    dash sed grep mawk find xargs diff cmp tar gzip xz bzip2 cat cp mv rm ln mkdir rmdir chmod
    touch ls sort uniq tr cut head tail wc tee basename dirname expr comm mktemp realpath
    readlink install sleep
"""
NATIVE_TOOLS = {**{name: name for name in _SAME_NAME.split()}, "sh": "dash", "awk": "mawk"}
LITTLE_ENDIAN = ("aarch64", "ppc64le", "armv7l")
SHELL = "usr/bin/dash"  # the root's dash: CONFIG_SHELL, and mounted over the image's

# Build tools mounted over the image's own binaries (every target; big-endian ones only
# with the image's locales in the root, read through LOCPATH: accel.with_build_tools) where the probe
# finds the very same Debian version of the package in the image, as for dash: CMake's
# configure (thousands of script commands), the `cmake -E` helpers its Makefiles start and
# make itself then run natively. Debian package -> its programs in usr/bin. Checked: cmake
# takes the processor from the `uname` program it finds on PATH (the image's, emulated,
# so still the target), the library architecture and search paths from the compiler, and
# try_run runs target programs (emulated); make's only compiled-in host fact, $(MAKE_HOST),
# is set to the image's make's value (a default variable: the environment overrides it).
BUILD_TOOLS = {"cmake": ("cmake",), "make": ("make",), "ninja-build": ("ninja",)}

Log = Callable[[str], None]


@dataclass(frozen=True)
class CrossDefinition:
    suite: str
    host_arch: str
    compiler_package: str  # gcc-10: the image's compiler package
    archs: tuple[str, ...]
    packages: tuple[str, ...]  # templates with {triplet}
    install: str
    path: Path
    text: str

    @property
    def gcc_major(self) -> str:
        return self.compiler_package.rsplit("-", 1)[-1]

    def packages_for(self, arch: Arch) -> list[str]:
        return [p.format(triplet=arch.triplet) for p in self.packages]

    def cross_compiler_package(self, arch: Arch) -> str:
        return f"{self.compiler_package}-{arch.triplet}"


@dataclass(frozen=True)
class CrossRoot:
    """A finished root, as its manifest describes it."""

    path: Path
    arch: str
    triplet: str
    key: str
    gcc_version: str  # what `<triplet>-gcc -dumpfullversion` printed: 10.2.1
    package_version: str  # Debian version of gcc-10-<triplet>: 10.2.1-6cross1
    loader: str  # the ELF interpreter's real file, relative to the root
    native_tools: bool  # shell and text tools run natively too (NATIVE_TOOLS)
    dash_version: str  # Debian version of the root's dash
    tool_versions: dict[str, str] = field(default_factory=dict)  # BUILD_TOOLS package -> version

    @property
    def native_equivalent(self) -> str:
        """The native package version this cross compiler was built from: 10.2.1-6."""
        return re.sub(r"cross\d+$", "", self.package_version)


def definitions_dir() -> Path:
    return definition.images_dir() / CROSS_SUBDIR


def load_definition(suite: str) -> CrossDefinition | None:
    """The suite's cross definition, or None when the suite has none."""
    path = definitions_dir() / f"{suite}.yaml"
    if not path.is_file():
        return None
    text = path.read_text()
    try:
        raw: dict[str, Any] = yaml.safe_load(text)
        defn = CrossDefinition(
            suite=str(raw["suite"]),
            host_arch=str(raw["host_arch"]),
            compiler_package=str(raw["compiler_package"]),
            archs=tuple(str(a) for a in raw["archs"]),
            packages=tuple(str(p) for p in raw["packages"]),
            install=str(raw.get("install", "apt")),
            path=path,
            text=text,
        )
    except (KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
        raise ConfigError(f"malformed cross toolchain definition {path}: {exc!r}") from exc
    if defn.install not in INSTALL_METHODS:
        raise ConfigError(f"{path}: install must be one of {', '.join(INSTALL_METHODS)}")
    unknown = [a for a in defn.archs if a not in archs.ARCHS]
    if unknown:
        raise ConfigError(f"{path}: unknown architectures {', '.join(unknown)}")
    return defn


def root_key(defn: CrossDefinition, arch: Arch) -> str:
    blob = {
        "format": FORMAT_VERSION,
        "definition": hashlib.sha256(defn.text.encode()).hexdigest(),
        "triplet": arch.triplet,
        "prefix": PREFIX,
        "drivers": DRIVERS,
        "prefixed": PREFIXED_DRIVERS,
        "binutils": BINUTILS,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def cross_dir() -> Path:
    """``$ORCH_CROSS_DIR``, else <cache>/cross: tests and benchmarks that start from an
    empty cache can still share one root (it is a toolchain, like an image, not a cache)."""
    override = options.env().cross_dir
    return override if override is not None else paths.cache_dir() / CROSS_SUBDIR


def root_path(defn: CrossDefinition, arch: Arch) -> Path:
    return cross_dir() / f"{defn.suite}-{arch.debian}-{root_key(defn, arch)[:16]}"


def load_root(path: Path) -> CrossRoot | None:
    """The root at path if it is complete (its manifest is written last, before the rename)."""
    try:
        data = json.loads((path / MANIFEST).read_text())
        return CrossRoot(
            path=path,
            arch=str(data["arch"]),
            triplet=str(data["triplet"]),
            key=str(data["key"]),
            gcc_version=str(data["gcc_version"]),
            package_version=str(data["package_version"]),
            loader=str(data["loader"]),
            native_tools=bool(data.get("native_tools", False)),
            dash_version=str(data.get("dash_version", "")),
            tool_versions={str(k): str(v) for k, v in data.get("tool_versions", {}).items()},
        )
    except (OSError, ValueError, KeyError):
        return None


def require_definition(arch: str, suite: str) -> tuple[CrossDefinition, Arch]:
    defn = load_definition(suite)
    if defn is None:
        raise ConfigError(f"no cross toolchain definition for suite {suite!r}")
    if arch not in defn.archs:
        raise ConfigError(f"no cross toolchain for {arch} in {defn.path.name}")
    return defn, archs.get(arch)


def ensure_root(arch: str, suite: str = "bullseye", on_line: Log | None = None) -> CrossRoot:
    """The cross root for arch, debootstrapped now if it does not exist yet."""
    defn, the_arch = require_definition(arch, suite)
    path = root_path(defn, the_arch)
    found = load_root(path)
    if found is not None:
        return found
    log = on_line or _quiet
    lock = cross_dir() / "locks" / f"{path.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        found = load_root(path)  # built by another process while we waited
        if found is not None:
            return found
        return _build(defn, the_arch, path, log)


def _quiet(_line: str) -> None:
    pass


def _build(defn: CrossDefinition, arch: Arch, path: Path, log: Log) -> CrossRoot:
    if archs.host_arch() != "x86_64":
        raise EnvironmentProblem("cross toolchain roots are amd64: they need an x86_64 host")
    exe = rootfs.check_debootstrap()
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=path.parent))
    root = work / "root"
    try:
        start = time.monotonic()
        _install(exe, defn, arch, root, log)
        _trim(root)
        built = _describe(defn, arch, root, path)
        _write_wrappers(root, defn, arch)
        manifest = {**built, "built": time.time(), "seconds": round(time.monotonic() - start, 1)}
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if path.exists():  # an incomplete leftover (no manifest): replaced, never merged
            rootfs._remove_tree(path)
        os.rename(root, path)
        log(f"[orch] cross toolchain {path.name}: {time.monotonic() - start:.1f} s")
    finally:
        rootfs._remove_tree(work)
    found = load_root(path)
    assert found is not None
    return found


def _install(exe: str, defn: CrossDefinition, arch: Arch, root: Path, log: Log) -> None:
    pkgs = defn.packages_for(arch)
    base = [exe, "--variant=minbase", f"--arch={defn.host_arch}"]
    if defn.install == "include":
        log(f"[orch] debootstrap {defn.suite}/{defn.host_arch} with {', '.join(pkgs)}")
        rootfs._run([*base, f"--include={','.join(pkgs)}", defn.suite, str(root)], log)
        return
    log(f"[orch] debootstrap {defn.suite}/{defn.host_arch}, then apt-get install {' '.join(pkgs)}")
    rootfs._run([*base, defn.suite, str(root)], log)
    # apt inside the root uses the mirror debootstrap wrote into its sources.list.
    _chroot(root, ["apt-get", "update"], log)
    _chroot(root, ["apt-get", "install", "-y", "--no-install-recommends", *pkgs], log)


def _chroot(root: Path, cmd: list[str], log: Log) -> None:
    env = {**options.env().process, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    proc = subprocess.run(
        ["chroot", str(root), *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        check=False,
    )
    for line in proc.stdout.splitlines():
        log(line)
    if proc.returncode != 0:
        tail = "\n  ".join(proc.stdout.splitlines()[-20:])
        raise OrchError(
            f"{' '.join(cmd)} in the cross root failed (exit {proc.returncode}):\n  {tail}"
        )


def chroot_run(root: Path, cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """`cmd` run in a toolchain root (its programs, its libraries), output captured."""
    return subprocess.run(
        ["chroot", str(root), *cmd],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
    )


def _chroot_output(root: Path, cmd: list[str]) -> str:
    proc = chroot_run(root, cmd)
    if proc.returncode != 0:
        raise OrchError(f"{' '.join(cmd)} in the cross root failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _trim(root: Path) -> None:
    """Downloaded packages and indexes are not needed once installed (~200 MB)."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*"):
        for item in root.glob(pattern):
            if item.is_file():
                item.unlink()


def _describe(defn: CrossDefinition, arch: Arch, root: Path, final: Path) -> dict[str, Any]:
    """What the manifest records; also proves the compiler runs."""
    gcc = f"{arch.triplet}-gcc-{defn.gcc_major}"
    version = _chroot_output(root, [gcc, "-dumpfullversion"])
    pkg = defn.cross_compiler_package(arch)
    package_version = _chroot_output(root, ["dpkg-query", "-W", "-f=${Version}", pkg])
    loader = resolve_in_root(root, LOADER)
    dash = _chroot_output(root, ["dpkg-query", "-W", "-f=${Version}", "dash"])
    return {
        "native_tools": arch.name in LITTLE_ENDIAN,
        "dash_version": dash,
        "tool_versions": tool_versions(root),
        "arch": arch.name,
        "triplet": arch.triplet,
        "key": root_key(defn, arch),
        "gcc_version": version,
        "package_version": package_version,
        "loader": str(loader.relative_to(root)),
        "name": final.name,
    }


def locale_facts(root: Path) -> tuple[str, frozenset[str]]:
    """The root's libc-bin version and the compiled locales it ships in usr/lib/locale
    (read from the host side: dpkg's status file, no chroot)."""
    version = ""
    try:
        status = (root / "var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        status = ""
    for stanza in status.split("\n\n"):
        if "Package: libc-bin\n" in f"{stanza}\n":
            version = next((ln[9:] for ln in stanza.splitlines() if ln.startswith("Version: ")), "")
    try:
        names = frozenset(p.name for p in (root / "usr/lib/locale").iterdir())
    except OSError:
        names = frozenset()
    return version, names


def tool_versions(root: Path) -> dict[str, str]:
    """Debian versions of the BUILD_TOOLS packages installed in the root (for the manifest)."""
    found = {}
    for package in BUILD_TOOLS:
        try:
            found[package] = _chroot_output(root, ["dpkg-query", "-W", "-f=${Version}", package])
        except OrchError:  # not in this root's definition
            continue
    return found


def needed_libraries(program: Path) -> list[str]:
    """The DT_NEEDED sonames of an ELF program: whether another root's loader and library
    directory can run it."""
    with program.open("rb") as handle:
        dynamic = ELFFile(handle).get_section_by_name(".dynamic")
        if not isinstance(dynamic, DynamicSection):
            return []
        tags = [tag for tag in dynamic.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
        return [str(tag.needed) for tag in tags]  # type: ignore[attr-defined]


def resolve_in_root(root: Path, rel: str) -> Path:
    """Follow symlinks as they would resolve with `root` as /: a host-side resolve would
    follow the absolute links into the host's own /lib (another glibc)."""
    parts = [p for p in rel.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in (".", ".."):
            if part == ".." and resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if not candidate.is_symlink():
            resolved.append(part)
            continue
        hops += 1
        if hops > 40:
            raise OrchError(f"too many symbolic links resolving {rel} in {root}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p] + parts
    return root.joinpath(*resolved)


def _write_wrappers(root: Path, defn: CrossDefinition, arch: Arch) -> None:
    bindir = root / WRAPPER_SUBDIR
    bindir.mkdir(parents=True)
    t, major = arch.triplet, defn.gcc_major
    shell = f"{PREFIX}/usr/bin/dash"  # the root's own amd64 shell: no emulated start-up
    drivers = dict(DRIVERS)
    drivers.update({f"{name}-{major}": f"{name}-{major}" for name in PREFIXED_DRIVERS})
    for name in PREFIXED_DRIVERS:
        drivers[f"{t}-{name}"] = f"{name}-{major}"
        drivers[f"{t}-{name}-{major}"] = f"{name}-{major}"
    for name, real in drivers.items():
        target = f"{PREFIX}/usr/bin/{t}-{real.format(major=major)}"
        script = bindir / name
        script.write_text(f'#!{shell}\nexec {target} -idirafter /usr/include/{t} "$@"\n')
        script.chmod(0o755)
    for tool in BINUTILS:
        if (root / "usr/bin" / f"{t}-{tool}").exists():
            for name in (tool, f"{t}-{tool}"):
                (bindir / name).symlink_to(f"{PREFIX}/usr/bin/{t}-{tool}")
    if arch.name in LITTLE_ENDIAN:
        _link_tools(root, bindir)


def _link_tools(root: Path, bindir: Path, prefix: str = PREFIX) -> None:
    for name, program in NATIVE_TOOLS.items():
        for where in ("usr/bin", "bin"):  # merged /usr or not
            if (root / where / program).is_file():
                (bindir / name).symlink_to(f"{prefix}/{where}/{program}")
                break
