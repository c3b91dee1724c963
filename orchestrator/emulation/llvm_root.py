"""The LLVM toolchain root: one amd64 Debian root holding clang, lld and the LLVM binutils.

A native clang is a cross compiler for every target at once, so where no cross GCC
matches the image's own (bookworm's ppc64le and s390x, the pypa images), orch can still
compile natively: it mounts this root read-only into the emulated build container (like a
cross root, `cross_root`) and puts *wrappers* first on PATH that run clang for the
container's architecture against the image's own GCC installation
(``--target=<gcc -dumpmachine> --sysroot=/ --gcc-toolchain=<prefix>``): every header,
libstdc++, crt object and libgcc comes from the image, only the code generator is clang's.

The root is built once per machine (keyed by a hash of ``images/llvm/<suite>.yaml``).
The wrappers depend on the image's GCC (its prefix, triplet and configured defaults), so
they are written per image into ``orch/wrappers/<hash>/bin`` inside the root, on the host,
when a build first plans for that image.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock

from orchestrator import archs
from orchestrator.emulation import cross_root
from orchestrator.emulation.cross_root import HOST_LIBDIR, LITTLE_ENDIAN, LOADER, SHELL
from orchestrator.errors import ConfigError, EnvironmentProblem, OrchError
from orchestrator.images import definition, rootfs

FORMAT_VERSION = 1
WRAPPER_FORMAT = 3  # 3: the libstdc++ compat archive (CXX_COMPAT)
LLVM_SUBDIR = "llvm"
DEFINITION = "bookworm"  # images/llvm/<DEFINITION>.yaml
PREFIX = "/opt/orch-llvm"  # where the root appears inside containers
MANIFEST = "orch/manifest.json"
WRAPPERS_SUBDIR = "orch/wrappers"

# Drivers: name on PATH -> (clang program, extra arguments). `cpp` is the preprocessor
# alone, as GCC's cpp is (stdin/stdout when given no files, like gcc -E).
DRIVERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cc": ("clang", ()),
    "gcc": ("clang", ()),
    "c++": ("clang++", ()),
    "g++": ("clang++", ()),
    "cpp": ("clang", ("-E",)),
}
PREFIXED = ("gcc", "g++", "cpp", "cc", "c++")  # also as <triplet>-gcc (Python's sysconfig)
# GNU binutils name -> LLVM program (llvm-<v>/bin). `ld` is lld's ELF linker, except where
# lld cannot link the target (LLD_TARGETS): there the image's own ld stays.
BINUTILS = {
    "ar": "llvm-ar",
    "gcc-ar": "llvm-ar",
    "ranlib": "llvm-ranlib",
    "gcc-ranlib": "llvm-ranlib",
    "nm": "llvm-nm",
    "gcc-nm": "llvm-nm",
    "strip": "llvm-strip",
    "objcopy": "llvm-objcopy",
    "objdump": "llvm-objdump",
    "readelf": "llvm-readelf",
    "size": "llvm-size",
    "strings": "llvm-strings",
    "addr2line": "llvm-addr2line",
    "c++filt": "llvm-cxxfilt",
    "ld": "ld.lld",
    "ld.lld": "ld.lld",
}
# Flags GCC takes and clang 19 rejects ("unknown argument") although they change nothing
# clang would produce: LTO partitioning, debug-info tracking, GCC-only optimisation passes,
# what clang never does anyway (GNU_UNIQUE symbols, store data races), a Windows-only
# one. Dropped by the wrappers (shell patterns). Flags clang only warns about pass through;
# flags that would change the code (-march=native...) are not dropped.
GCC_ONLY_FLAGS = (
    "-flto-partition=*",
    "-fvar-tracking",
    "-fno-var-tracking",
    "-fvar-tracking-assignments",
    "-fno-var-tracking-assignments",
    "-fipa-pta",
    "-fconserve-stack",
    "-fno-gnu-unique",
    "-fno-allow-store-data-races",
    "-fno-keep-inline-dllexport",
)
# GCC's "Configured with" defaults that decide the ABI or instruction set -> clang flags.
CONFIGURED_FLAGS = {
    "--with-arch": "-march={}",
    "--with-arch-64": "-march={}",
    "--with-cpu": "-mcpu={}",
    "--with-cpu-64": "-mcpu={}",
    "--with-fpu": "-mfpu={}",
    "--with-float": "-mfloat-abi={}",
    "--with-mode": "-m{}",
    "--with-long-double-format": "-mabi={}longdouble",
}

Log = Callable[[str], None]


@dataclass(frozen=True)
class LlvmDefinition:
    suite: str
    host_arch: str
    llvm_version: str
    packages: tuple[str, ...]
    path: Path
    text: str

    def package_list(self) -> list[str]:
        return [p.format(v=self.llvm_version) for p in self.packages]


@dataclass(frozen=True)
class LlvmRoot:
    """A finished root, as its manifest describes it."""

    path: Path
    key: str
    llvm_version: str  # the major release: 19
    clang_version: str  # what clang --version says: 19.1.7
    package_version: str  # Debian version of clang-19
    loader: str  # the ELF interpreter's real file, relative to the root
    dash_version: str
    lld_targets: tuple[str, ...]  # architectures lld links (ld.lld --help's emulations)
    tool_versions: dict[str, str] = field(default_factory=dict)  # cross_root.BUILD_TOOLS

    @property
    def bindir(self) -> str:
        return f"usr/lib/llvm-{self.llvm_version}/bin"


@dataclass(frozen=True)
class GccInstall:
    """The image's GCC, as clang needs it: where it is and what it defaults to."""

    triplet: str  # gcc -dumpmachine: aarch64-linux-gnu, ppc64le-redhat-linux...
    prefix: str  # --gcc-toolchain: /usr, /opt/rh/gcc-toolset-14/root/usr
    version: str  # gcc -dumpfullversion: 10.2.1
    flags: tuple[str, ...]  # ABI/ISA defaults from "Configured with" as clang flags
    dumpversion: str = ""  # gcc -dumpversion: "10" (Debian), "14" (gcc-toolset)
    multiarch: str = ""  # gcc -print-multiarch: Debian's triplet, "" elsewhere
    link_flags: tuple[str, ...] = ()  # what GCC passes its linker by default, for clang
    # The image has g++ (C++ headers, libstdc++ to link): not the CPython builder, which
    # compiles C only. Without it no c++/g++ wrapper is written: a build must find no C++
    # compiler where the image has none (CPython's configure would record one as CXX).
    cxx: bool = True

    def describe(self) -> str:
        where = "" if self.prefix == "/usr" else f" in {self.prefix}"
        return f"gcc {self.version}{where}"


def definitions_dir() -> Path:
    return definition.images_dir() / LLVM_SUBDIR


def load_definition(name: str = DEFINITION) -> LlvmDefinition:
    path = definitions_dir() / f"{name}.yaml"
    try:
        text = path.read_text()
        raw: dict[str, Any] = yaml.safe_load(text)
        defn = LlvmDefinition(
            suite=str(raw["suite"]),
            host_arch=str(raw["host_arch"]),
            llvm_version=str(raw["llvm_version"]),
            packages=tuple(str(p) for p in raw["packages"]),
            path=path,
            text=text,
        )
    except OSError as exc:
        raise ConfigError(f"cannot read the LLVM toolchain definition {path}: {exc}") from exc
    except (KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"malformed LLVM toolchain definition {path}: {exc!r} "
            "(needs suite, host_arch, llvm_version, packages)"
        ) from exc
    if not defn.llvm_version.isdigit():
        raise ConfigError(f"{path}: llvm_version must be a major release number, e.g. 19")
    return defn


def root_key(defn: LlvmDefinition) -> str:
    blob = {
        "format": FORMAT_VERSION,
        "definition": hashlib.sha256(defn.text.encode()).hexdigest(),
        "prefix": PREFIX,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def root_path(defn: LlvmDefinition) -> Path:
    """Next to the cross roots ($ORCH_CROSS_DIR): tests and benchmarks share it alike."""
    return cross_root.cross_dir() / f"llvm-{defn.llvm_version}-{root_key(defn)[:16]}"


def load_root(path: Path) -> LlvmRoot | None:
    try:
        data = json.loads((path / MANIFEST).read_text())
        return LlvmRoot(
            path=path,
            key=str(data["key"]),
            llvm_version=str(data["llvm_version"]),
            clang_version=str(data["clang_version"]),
            package_version=str(data["package_version"]),
            loader=str(data["loader"]),
            dash_version=str(data["dash_version"]),
            lld_targets=tuple(str(a) for a in data["lld_targets"]),
            tool_versions={str(k): str(v) for k, v in data.get("tool_versions", {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure_llvm_root(on_line: Log | None = None) -> LlvmRoot:
    """The LLVM root, debootstrapped now if it does not exist yet (once per machine)."""
    defn = load_definition()
    path = root_path(defn)
    found = load_root(path)
    if found is not None:
        return found
    with FileLock(str(_lock_path(path))):
        found = load_root(path)
        if found is not None:
            return found
        return _build(defn, path, on_line or _quiet)


def _lock_path(path: Path) -> Path:
    lock = cross_root.cross_dir() / "locks" / f"{path.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    return lock


def _quiet(_line: str) -> None:
    pass


def _build(defn: LlvmDefinition, path: Path, log: Log) -> LlvmRoot:
    if archs.host_arch() != "x86_64":
        raise EnvironmentProblem("the LLVM toolchain root is amd64: it needs an x86_64 host")
    exe = rootfs.check_debootstrap()
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=path.parent))
    root = work / "root"
    try:
        start = time.monotonic()
        pkgs = defn.package_list()
        log(
            f"[orch] debootstrap {defn.suite}/{defn.host_arch}, then apt-get install {' '.join(pkgs)}"
        )
        rootfs._run(
            [exe, "--variant=minbase", f"--arch={defn.host_arch}", defn.suite, str(root)], log
        )
        cross_root._chroot(root, ["apt-get", "update"], log)
        cross_root._chroot(
            root, ["apt-get", "install", "-y", "--no-install-recommends", *pkgs], log
        )
        cross_root._trim(root)
        localize_library_links(root / HOST_LIBDIR)
        manifest = {**_describe(defn, root, path), "seconds": round(time.monotonic() - start, 1)}
        (root / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if path.exists():  # an incomplete leftover (no manifest): replaced, never merged
            rootfs._remove_tree(path)
        os.rename(root, path)
        log(f"[orch] LLVM toolchain {path.name}: {time.monotonic() - start:.1f} s")
    finally:
        rootfs._remove_tree(work)
    found = load_root(path)
    assert found is not None
    return found


def localize_library_links(libdir: Path) -> None:
    """Only the root's library directory is mounted at /usr/lib/x86_64-linux-gnu; a link
    from there into the rest of the root (libclang-cpp.so.19 -> ../llvm-19/lib/...) would
    dangle in the container, so it becomes a hard link to its target."""
    root = libdir.parents[2]
    for link in sorted(libdir.iterdir()):
        if not link.is_symlink():
            continue
        target = cross_root.resolve_in_root(root, str(link.relative_to(root)))
        if target.parent != libdir and target.is_file():
            link.unlink()
            os.link(target, link)


def borrow_libraries(root: LlvmRoot, program: Path) -> bool:
    """Make `program`, an amd64 program of another Debian root (`<donor>/usr/bin/x`), start
    with this root's loader and library directory: each library it needs (recursively) that
    the directory lacks is linked in from the donor's. A name already present is never
    replaced, so nothing this root's own programs load changes. False when some library is
    in neither."""
    donor = program.parents[2]
    libdir = root.path / HOST_LIBDIR
    missing = _missing_libraries(program, libdir, donor)
    if missing is None:
        return False
    for name, source in missing.items():
        _link_into(source, libdir / name)
    return True


def _missing_libraries(program: Path, libdir: Path, donor: Path) -> dict[str, Path] | None:
    """soname -> the donor's file, for what libdir lacks; None if the donor lacks one too."""
    missing: dict[str, Path] = {}
    todo = [program]
    while todo:
        for name in cross_root.needed_libraries(todo.pop()):
            if name in missing or (libdir / name).exists():
                continue
            source = cross_root.resolve_in_root(donor, f"{HOST_LIBDIR}/{name}")
            if not source.is_file():
                return None
            missing[name] = source
            todo.append(source)
    return missing


def _link_into(source: Path, dest: Path) -> None:
    """dest appears complete or not at all (a hard link, else a copy, renamed into place)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    try:
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _describe(defn: LlvmDefinition, root: Path, final: Path) -> dict[str, Any]:
    """What the manifest records; also proves clang and lld run."""
    v = defn.llvm_version
    banner = cross_root._chroot_output(root, [f"clang-{v}", "--version"])
    query = ["dpkg-query", "-W", "-f=${Version}"]
    return {
        "key": root_key(defn),
        "llvm_version": v,
        "clang_version": parse_clang_version(banner),
        "package_version": cross_root._chroot_output(root, [*query, f"clang-{v}"]),
        "dash_version": cross_root._chroot_output(root, [*query, "dash"]),
        "loader": str(cross_root.resolve_in_root(root, LOADER).relative_to(root)),
        "lld_targets": lld_targets(_ask_lld(root, v)),
        "tool_versions": cross_root.tool_versions(root),
        "name": final.name,
    }


def parse_clang_version(banner: str) -> str:
    found = re.search(r"clang version (\d+\.\d+\.\d+)", banner)
    if not found:
        raise OrchError(f"unexpected clang --version output: {banner[:200]!r}")
    return found.group(1)


# lld's -m emulation names per architecture (ld.lld --help lists the supported ones).
LLD_EMULATIONS = {
    "x86_64": "elf_x86_64",
    "i686": "elf_i386",
    "aarch64": "aarch64linux",
    "ppc64le": "elf64lppc",
    "s390x": "elf64_s390",
    "armv7l": "armelf_linux_eabi",
}


def lld_targets(answers: dict[str, str]) -> list[str]:
    """The architectures this lld links: it says "unknown emulation" for the others
    (`ld.lld -m <emulation>` with no input; answers: emulation -> its first line)."""
    return [
        arch
        for arch, emulation in LLD_EMULATIONS.items()
        if emulation in answers and "unknown emulation" not in answers[emulation]
    ]


def _ask_lld(root: Path, version: str) -> dict[str, str]:
    answers = {}
    for emulation in LLD_EMULATIONS.values():
        proc = cross_root.chroot_run(root, [f"ld.lld-{version}", "-m", emulation])
        answers[emulation] = (proc.stderr or proc.stdout).strip()
    return answers


# --- the image's GCC ----------------------------------------------------------------


def gcc_install(answers: dict[str, str], image_env: dict[str, str]) -> GccInstall | None:
    """Where the image's GCC lives, from what `gcc` says of itself in the image.

    `gcc -print-libgcc-file-name` names <prefix>/lib/gcc/<triplet>/<ver>/libgcc.a; its
    prefix is what clang's --gcc-toolchain wants (/usr on Debian images,
    /opt/rh/gcc-toolset-N/root/usr on the pypa ones). Where gcc could not say, the pypa
    images' DEVTOOLSET_ROOTPATH (the toolset root; its compiler is under usr/) names it.
    `answers`: gcc's output for dumpmachine, libgcc, version (-dumpfullversion),
    dumpversion, multiarch, v (`gcc -v`) and gxx (g++'s version, "" without g++). None: no
    usable GCC (a runtime image).
    """
    triplet = answers.get("dumpmachine", "").strip()
    version = answers.get("version", "").strip()
    if not triplet or not version:
        return None
    prefix = _prefix_from_libgcc(answers.get("libgcc", "").strip(), triplet)
    if prefix is None:
        toolset = image_env.get("DEVTOOLSET_ROOTPATH", "").rstrip("/")
        prefix = f"{toolset}/usr" if toolset else None
    if prefix is None:
        return None
    return GccInstall(
        triplet=triplet,
        prefix=prefix,
        version=version,
        flags=configured_flags(answers.get("v", "")),
        link_flags=configured_link_flags(answers.get("v", "")),
        dumpversion=answers.get("dumpversion", "").strip() or version,
        multiarch=answers.get("multiarch", "").strip(),
        cxx=bool(answers.get("gxx", "").strip()),
    )


def _prefix_from_libgcc(libgcc: str, triplet: str) -> str | None:
    marker = f"/lib/gcc/{triplet}/"
    if not libgcc.startswith("/") or marker not in libgcc:
        return None
    prefix = libgcc.split(marker, 1)[0]
    return prefix or "/"


def configured_flags(gcc_v: str) -> tuple[str, ...]:
    """clang flags for the defaults GCC was configured with (`gcc -v`'s "Configured
    with:" line) that decide the instruction set or ABI: armhf's --with-arch=armv7-a
    --with-fpu=vfpv3-d16 --with-float=hard --with-mode=thumb, ppc64le's --with-cpu=power8,
    s390x's --with-arch=z196... Tuning (--with-tune) changes speed, not what runs where."""
    line = next((ln for ln in gcc_v.splitlines() if ln.startswith("Configured with:")), "")
    flags: list[str] = []
    for word in line.split():
        name, _, value = word.partition("=")
        template = CONFIGURED_FLAGS.get(name)
        if template and value:
            flag = template.format(value)
            if flag not in flags:
                flags.append(flag)
    return tuple(flags)


# Configure switches of GCC that change its links: Debian's aarch64 gcc links with lld's
# and ld's erratum workaround for Cortex-A53 by default; clang does not unless told.
CONFIGURED_LINK_FLAGS = {"--enable-fix-cortex-a53-843419": "-Wl,--fix-cortex-a53-843419"}


def configured_link_flags(gcc_v: str) -> tuple[str, ...]:
    line = next((ln for ln in gcc_v.splitlines() if ln.startswith("Configured with:")), "")
    return tuple(CONFIGURED_LINK_FLAGS[w] for w in line.split() if w in CONFIGURED_LINK_FLAGS)


# clang's name of each architecture (GCC's triplets vary by distribution: aarch64-linux-gnu,
# aarch64-redhat-linux, aarch64-alpine-linux-musl...; clang's arm must name armv7).
CLANG_ARCH = {
    "x86_64": "x86_64",
    "i686": "i686",
    "aarch64": "aarch64",
    "ppc64le": "powerpc64le",
    "s390x": "s390x",
    "armv7l": "armv7",
}


def clang_target(arch: str, gcc_triplet: str) -> str:
    """--target: the architecture from orch's name, the C library from GCC's triplet. The
    GCC installation is named separately (--gcc-triple), so the vendor part is free."""
    libc = "musl" if gcc_triplet.endswith(("-musl", "-musleabihf")) else "gnu"
    abi = "eabihf" if arch == "armv7l" else ""
    return f"{CLANG_ARCH[arch]}-unknown-linux-{libc}{abi}"


# --- wrappers -----------------------------------------------------------------------


def wrapper_key(root: LlvmRoot, arch: str, gcc: GccInstall, text_tools: bool = False) -> str:
    blob = {
        "format": WRAPPER_FORMAT,
        "root": root.key,
        "arch": arch,
        "gcc": [
            gcc.triplet,
            gcc.prefix,
            gcc.version,
            list(gcc.flags),
            gcc.dumpversion,
            gcc.multiarch,
            list(gcc.link_flags),
        ],
        "drivers": DRIVERS,
        "binutils": BINUTILS,
        "drop": GCC_ONLY_FLAGS,
    }
    if not gcc.cxx:  # only then: the keys of images with g++ stay as they were
        blob["cxx"] = False
    if text_tools and arch not in LITTLE_ENDIAN:  # big-endian with the image's locales
        blob["text_tools"] = True
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def ensure_wrappers(root: LlvmRoot, arch: str, gcc: GccInstall, text_tools: bool = False) -> str:
    """The wrapper directory for (arch, the image's GCC), relative to the root; written on
    the host, complete or not at all (temporary directory, renamed into place).
    text_tools: link the arch-neutral text tools on a big-endian target too (the caller
    has checked that the root holds the image's locales: accel._locale_env)."""
    rel = f"{WRAPPERS_SUBDIR}/{arch}-{wrapper_key(root, arch, gcc, text_tools)[:16]}"
    final = root.path / rel
    if (final / "bin").is_dir():
        return f"{rel}/bin"
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(_lock_path(root.path)) + f".{final.name}"):
        if not (final / "bin").is_dir():
            work = Path(tempfile.mkdtemp(prefix=".w-", dir=final.parent))
            try:
                write_wrappers(work / "bin", root, arch, gcc, f"{PREFIX}/{rel}", text_tools)
                os.rename(work, final)
            finally:
                if work.exists():
                    rootfs._remove_tree(work)
    return f"{rel}/bin"


LINK_CONFIG = "link.cfg"  # next to bin/: clang --config file of link-only flags


def driver_args(root: LlvmRoot, arch: str, gcc: GccInstall, home: str) -> list[str]:
    """What every compiler wrapper passes to clang before the caller's arguments."""
    args = [
        f"--target={clang_target(arch, gcc.triplet)}",
        "--sysroot=/",
        f"--gcc-toolchain={gcc.prefix}",
        f"--gcc-triple={gcc.triplet}",  # exactly the image's GCC, not a lookalike
        *gcc.flags,
    ]
    if link_args(root, arch, gcc, home):
        args.append(f"--config={home}/{LINK_CONFIG}")
    return args


def link_args(root: LlvmRoot, arch: str, gcc: GccInstall, home: str) -> list[str]:
    """Link-only flags, for the clang config file: on the command line clang would warn
    that they go unused whenever it only compiles (-c), which breaks -Werror builds and
    configure checks; flags from a config file it does not warn about. home: the
    container's path of the wrapper directory (bin/'s parent)."""
    lld = ["-fuse-ld=lld"] if arch in root.lld_targets else []
    compat = [f"-Wl,{home}/{CXX_COMPAT_ARCHIVE}"] if needs_cxx_compat(root, arch, gcc) else []
    return [*lld, *gcc.link_flags, *compat]


# --- the libstdc++ compat archive ----------------------------------------------------------
#
# GCC 11's libstdc++ headers guard std::allocator<T>::allocate(n) with
# `if (n > size_t(-1) / sizeof(T)) std::__throw_bad_array_new_length();`, a function new in
# GCC 11's libstdc++.so (GLIBCXX_3.4.29). For 1-byte T (std::vector<char>, std::string) the
# test is always false and GCC's front end folds the call away even at -O0; clang at -O0
# keeps it, so an unoptimised C++ extension (setuptools compiles C++ without CFLAGS' -O2)
# needs GLIBCXX_3.4.29 with clang and not with the image's g++: auditwheel then tags the
# wheel manylinux_2_34 instead of the image gcc's manylinux_2_31. The wrappers link a weak,
# hidden definition first, so clang's never-taken call binds inside the module and needs no
# newer libstdc++ than g++'s code. It throws what libstdc++'s own does. Red Hat's
# gcc-toolset links the same function statically (libstdc++_nonshared.a), so the pypa
# images need none of this: only images whose GCC is the system's (/usr).
CXX_COMPAT_ARCHIVE = "lib/liborch-cxx-compat.a"
CXX_COMPAT_MIN_GCC = 11  # the first libstdc++ with std::__throw_bad_array_new_length
CXX_COMPAT_SOURCE = """\
// orch: a weak, hidden std::__throw_bad_array_new_length for clang's -O0 code (llvm_root).
// No headers: the classes' layouts and vtables are libstdc++'s (CXXABI_1.3.8, GCC 4.9).
namespace std {
class exception {
  public:
    exception() noexcept {}
    virtual ~exception() noexcept;
    virtual const char *what() const noexcept;
};
class bad_alloc : public exception {
  public:
    bad_alloc() noexcept {}
    ~bad_alloc() noexcept override;
    const char *what() const noexcept override;
};
class bad_array_new_length : public bad_alloc {
  public:
    bad_array_new_length() noexcept {}
    ~bad_array_new_length() noexcept override;
    const char *what() const noexcept override;
};
[[noreturn]] __attribute__((weak, visibility("hidden"))) void __throw_bad_array_new_length() {
    throw bad_array_new_length();
}
}  // namespace std
"""


def needs_cxx_compat(root: LlvmRoot, arch: str, gcc: GccInstall) -> bool:
    """The compat archive applies to C++ images whose system GCC is 11 or newer, linked by
    lld (which takes an archive's member wherever the archive is on the command line; the
    image's GNU ld would need it after the objects)."""
    try:
        major = int(gcc.version.split(".")[0])
    except ValueError:
        return False
    return (
        gcc.cxx
        and gcc.prefix == "/usr"
        and major >= CXX_COMPAT_MIN_GCC
        and arch in root.lld_targets
    )


def compile_cxx_compat(root: LlvmRoot, arch: str, gcc: GccInstall, home: Path) -> None:
    """Build the compat archive into home (a directory inside the root, on the host) with
    the root's own clang and llvm-ar, run natively in a chroot of the root."""
    inside = "/" + str(home.relative_to(root.path))
    lib = home / Path(CXX_COMPAT_ARCHIVE).parent
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "cxx-compat.cpp").write_text(CXX_COMPAT_SOURCE)
    src = f"{inside}/lib/cxx-compat.cpp"
    obj = f"{inside}/lib/cxx-compat.o"
    clang = [f"/{root.bindir}/clang++", f"--target={clang_target(arch, gcc.triplet)}"]
    flags = ["-nostdinc", "-fPIC", "-O2", "-std=c++11", *gcc.flags, "-c", src, "-o", obj]
    archive = [f"/{root.bindir}/llvm-ar", "rcsD", f"{inside}/{CXX_COMPAT_ARCHIVE}", obj]
    for cmd in ([*clang, *flags], archive):
        proc = cross_root.chroot_run(root.path, cmd)
        if proc.returncode != 0:
            raise EnvironmentProblem(
                f"could not build the libstdc++ compat archive for {arch} in {root.path}: "
                f"{' '.join(cmd)} said {(proc.stderr or proc.stdout).strip()[:400]}; "
                f"remove {root.path} to rebuild the LLVM root, or build with --emulation=plain"
            )
    (lib / "cxx-compat.o").unlink()


def write_wrappers(
    bindir: Path, root: LlvmRoot, arch: str, gcc: GccInstall, home: str, text_tools: bool = False
) -> None:
    """Wrappers into bindir; home: the container's path of bindir's parent."""
    bindir.mkdir(parents=True)
    llvm_bin = f"{PREFIX}/{root.bindir}"
    base = " ".join(driver_args(root, arch, gcc, home))
    linking = link_args(root, arch, gcc, home)
    if linking:
        (bindir.parent / LINK_CONFIG).write_text("\n".join(linking) + "\n")
    if needs_cxx_compat(root, arch, gcc):
        compile_cxx_compat(root, arch, gcc, bindir.parent)
    names: dict[str, tuple[str, tuple[str, ...]]] = dict(DRIVERS)
    for name in PREFIXED:
        names[f"{gcc.triplet}-{name}"] = DRIVERS[name]
    major = gcc.version.split(".")[0]
    for name in ("gcc", "g++", "cpp"):  # gcc-10, aarch64-linux-gnu-gcc-10...
        names[f"{name}-{major}"] = DRIVERS[name]
        names[f"{gcc.triplet}-{name}-{major}"] = DRIVERS[name]
    if not gcc.cxx:
        names = {n: d for n, d in names.items() if d[0] != "clang++"}
    for name, (program, extra) in sorted(names.items()):
        _script(bindir / name, _driver_script(f"{llvm_bin}/{program}", base, extra, gcc))
    for tool, program in BINUTILS.items():
        if tool.startswith("ld") and arch not in root.lld_targets:
            continue  # the image's own GNU ld links (clang finds it on PATH)
        for name in (tool, f"{gcc.triplet}-{tool}"):
            (bindir / name).symlink_to(f"{llvm_bin}/{program}")
    if arch in LITTLE_ENDIAN or text_tools:
        cross_root._link_tools(root.path, bindir, PREFIX)


def _driver_script(clang: str, base: str, extra: tuple[str, ...], gcc: GccInstall) -> str:
    """A dash script (the root's dash: native, no emulated start-up). It answers the
    questions build systems ask GCC by name the way the image's gcc does where clang's
    answer differs (-dumpmachine and -print-multiarch: the image's triplet, not clang's
    normalized one; -dumpversion and -dumpfullversion: the GCC release whose headers and
    runtime are used; --version stays clang's, so CMake and meson know it), drops flags
    only GCC knows, and passes everything else to clang."""
    drop = " | ".join(GCC_ONLY_FLAGS)
    return f"""#!{PREFIX}/{SHELL}
case "$*" in
  -dumpmachine) echo {gcc.triplet}; exit 0 ;;
  -print-multiarch|--print-multiarch) echo {gcc.multiarch}; exit 0 ;;
  -dumpversion) echo {gcc.dumpversion}; exit 0 ;;
  -dumpfullversion|"-dumpfullversion -dumpversion") echo {gcc.version}; exit 0 ;;
esac
n=$#
while [ $n -gt 0 ]; do
  case "$1" in {drop}) ;; *) set -- "$@" "$1" ;; esac
  shift; n=$((n - 1))
done
exec {clang} {base} {" ".join(extra)} "$@"
"""


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)
