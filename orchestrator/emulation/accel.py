"""Emulated builds at near-native speed: the target's cross compiler, run natively.

Under QEMU every compiler process is emulated (~20x slower). On an x86_64 host, orch
mounts an amd64 root holding Debian's cross compiler for the target (the same GCC release
and Debian patches as the image's own gcc; see `accel_root`) read-only into the emulated
build container and puts wrappers first on PATH: gcc, cc, g++, <triplet>-gcc, ar, ld, ...
then run natively (the kernel runs x86_64 ELF files directly), and on little-endian
targets so do the shell and arch-neutral text tools configure and libtool start by the
hundred; cmake, make and ninja do on every target where the image has the same Debian
version of them (big-endian targets only where the root holds a little-endian copy of
the image's locales: LOCPATH, docs/emulation.md).
Python, pip, build backends, uname, configure's test programs and the tests stay emulated. docs/emulation.md has the details and the figures.

Where no cross GCC matches the image's own, the second accelerator is a native clang
(`llvm_root`) compiling against the image's GCC installation. `plan_accel` tries the
exact cross GCC, then LLVM, then falls back to plain QEMU, and says why at each step;
`apply` puts the wrappers into a container's or a command's environment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator import archs
from orchestrator.container.engine import DockerEngine
from orchestrator.container.factory import ContainerFactory, RunIdentity
from orchestrator.container.hostenv import HostEnv
from orchestrator.container.types import ImageInfo, Mount, PathOverlay
from orchestrator.emulation import llvm_root
from orchestrator.emulation.cross_root import (
    BUILD_TOOLS,
    HOST_LIBDIR,
    LITTLE_ENDIAN,
    LOADER,
    PREFIX,
    SHELL,
    WRAPPER_SUBDIR,
    CrossRoot,
    cross_dir,
    ensure_root,
    load_definition,
    locale_facts,
    require_definition,
)
from orchestrator.emulation.cross_root import load_root as load_cross_root
from orchestrator.emulation.cross_root import root_path as cross_root_path
from orchestrator.errors import ConfigError, EnvironmentProblem, OrchError

__all__ = ["MODES", "Accel", "Fallback", "apply", "plan_accel"]

# auto: cross gcc, else LLVM, else plain; accelerated: the same, but never plain (an
# error instead); gcc-cross and llvm: that accelerator or an error; plain: QEMU only.
MODES = ("auto", "accelerated", "gcc-cross", "llvm", "plain")
MODE_ALIASES = {"off": "plain", "on": "accelerated"}
GCC_CROSS = "gcc-cross"
LLVM = "llvm"
WRAPPER_DIR = f"{PREFIX}/{WRAPPER_SUBDIR}"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROBE_VERSION = 5  # 5: the image's libc-bin version and compiled locales
# Big-endian targets: the native C library reads the root's little-endian locale data
# first; the image's own (emulated) one skips it (wrong byte order) and reads the image's.
LOCPATH = "LOCPATH"
LOCALE_NOTE = "little-endian locale data"
LOCALE_READERS = ("cmake", "make")  # packages whose programs call setlocale (ninja: none)
PYPA_REASON = (
    "not an orch local Debian image: pypa images compile with the devtoolset GCC of "
    "CentOS/AlmaLinux, and no cross build of that toolchain exists for an x86_64 host "
    "(see docs/emulation.md)"
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Accel:
    """Acceleration applies: the mounts and environment a build container needs."""

    arch: str
    triplet: str
    root: Path
    mounts: list[Mount]
    env: dict[str, str]  # PATH is a prefix: merge it with `apply`, never assign it
    image_path: str  # the image's own PATH, for environments that do not set one
    gcc_version: str
    package_version: str
    key: str
    native_tools: bool  # the shell and text tools run natively too
    compiler: str = GCC_CROSS  # or LLVM
    wrapper_dir: str = WRAPPER_DIR  # in the container, first on PATH
    clang_version: str = ""  # LLVM: the clang release; gcc_version is then the image's gcc
    gcc_prefix: str = "/usr"  # LLVM: the image's GCC installation (--gcc-toolchain)
    why: str = ""  # LLVM: why not the cross gcc
    native_shell: bool = False  # big-endian LLVM: the shell alone runs natively
    build_tools: tuple[str, ...] = ()  # cmake, make, ninja: native, the image's own release
    emulated_tools: str = ""  # why cmake and make stay emulated (big-endian), if they do

    @property
    def overlay(self) -> PathOverlay:
        """The wrappers first on PATH, the other variables as defaults."""
        defaults = {k: v for k, v in self.env.items() if k != "PATH"}
        return PathOverlay(self.wrapper_dir, defaults, self.image_path)

    def describe(self) -> str:
        tools = " and shell tools" if self.native_tools else ""
        tools = tools or (" and the shell" if self.native_shell else "")
        if self.build_tools:
            tools += f", {'/'.join(self.build_tools)} of the image's release"
            tools += f" ({LOCALE_NOTE})" if LOCPATH in self.env else ""
        if self.emulated_tools:
            tools += f"; {self.emulated_tools}"
        if self.compiler == LLVM:
            where = "" if self.gcc_prefix == "/usr" else f" in {self.gcc_prefix}"
            why = f" (no cross gcc: {self.why})" if self.why else ""
            return (
                f"accelerated: native clang {self.clang_version} for {self.triplet} with the "
                f"image's gcc {self.gcc_version}{where} headers and runtime{tools}{why}"
            )
        return f"accelerated: native {self.triplet}-gcc {self.gcc_version}{tools}"

    @property
    def label(self) -> str:
        """Short, for the progress view: which compiler the job's code comes from."""
        if self.compiler == LLVM:
            return f"accelerated (clang {self.clang_version})"
        return f"accelerated (cross gcc {self.gcc_version})"

    @property
    def cache_tag(self) -> str:
        """For cache keys of what it builds: same compiler release, different binary."""
        if self.compiler == LLVM:
            return f"llvm-{self.clang_version}-{self.key[:12]}"
        return f"cross-{self.package_version}-{self.key[:12]}"


@dataclass(frozen=True)
class Fallback:
    """Plain emulation, and why (shown to the user)."""

    reason: str

    def describe(self) -> str:
        return f"plain: {self.reason}"


@dataclass(frozen=True)
class ImageFacts:
    """What a probe of the image found (cached per image id and root)."""

    compiler_version: str  # "" when the compiler package is not installed
    existing: list[str]  # mount targets already present in the image
    shell: str  # where /bin/sh leads
    dash_version: str
    tool_versions: dict[str, str] = dataclasses.field(default_factory=dict)  # BUILD_TOOLS
    make_host: str = ""  # the image's make's $(MAKE_HOST)
    libc_version: str = ""  # the image's libc-bin (its compiled locales)
    locales: list[str] = dataclasses.field(default_factory=list)  # /usr/lib/locale entries


def normalize_mode(mode: str) -> str:
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ConfigError(f"unknown emulation mode {mode!r} (use {', '.join(MODES)})")
    return mode


def plan_accel(
    arch: str,
    image: ImageInfo,
    mode: str = "auto",
    on_line: Log | None = None,
    factory: ContainerFactory | None = None,
) -> Accel | Fallback:
    """Accel when compiling for `arch` in `image` can run natively, else Fallback.

    mode "plain" (alias "off") never accelerates; "auto" accelerates where it applies;
    "accelerated" raises EnvironmentProblem where it does not (an architecture that runs
    natively is never an error: there is nothing to accelerate); "gcc-cross" and "llvm"
    try only that accelerator, or raise. The first call for an architecture may build the
    cross root or the LLVM root (minutes) and probes the image once.
    """
    mode = normalize_mode(mode)
    if mode == "plain":
        return Fallback("--emulation=plain")
    if archs.runs_natively(arch):
        return Fallback(f"{arch} runs natively on this host")
    factory = factory or _probe_factory()
    tried: list[tuple[str, str]] = []  # (compiler, why not)
    for compiler, planner in _PLANNERS:
        if mode not in ("auto", "accelerated", compiler):
            continue
        try:
            return planner(arch, image, on_line, factory, "; ".join(why for _, why in tried))
        except _NotApplicable as exc:
            tried.append((compiler, str(exc)))
    if mode in (GCC_CROSS, LLVM):
        reason = tried[0][1]
    else:
        reason = "; ".join(f"no {_NAMES[compiler]}: {why}" for compiler, why in tried)
    if mode != "auto":
        raise EnvironmentProblem(
            f"cannot accelerate {arch} builds in {image.ref} (--emulation={mode}): {reason}"
        )
    return Fallback(reason)


def apply(accel: Accel | Fallback | None, base_env: Mapping[str, str]) -> dict[str, str]:
    """base_env with the wrappers first on PATH (base_env's PATH, else the image's).

    Idempotent, so it can be applied to a container's environment and again to a command's.
    Other variables of the Accel are set unless base_env already sets them.
    """
    if not isinstance(accel, Accel):
        return dict(base_env)
    return accel.overlay.apply(base_env)


class _NotApplicable(Exception):
    pass


def _plan(
    arch: str, image: ImageInfo, on_line: Log | None, factory: ContainerFactory, _why: str = ""
) -> Accel:
    if archs.host_arch() != "x86_64":
        raise _NotApplicable(
            f"the cross toolchains run on x86_64 hosts (this is {archs.host_arch()})"
        )
    if image.labels.get("io.orch.image") != "local":
        raise _NotApplicable(f"{image.ref} is {PYPA_REASON}")
    suite = image.labels.get("io.orch.suite", "")
    defn = load_definition(suite)
    if defn is None or arch not in defn.archs:
        raise _NotApplicable(f"no cross toolchain defined for {arch} on {suite or 'this suite'}")
    want = archs.get(arch).oci.split("/")[0]
    if image.architecture != want:
        raise _NotApplicable(f"{image.ref} is {image.architecture}, not {want}")
    try:
        root = ensure_root(arch, suite, on_line)
    except OrchError as exc:
        raise _NotApplicable(f"the cross toolchain could not be built: {exc}") from None
    facts = _facts(factory, image, root, defn.compiler_package)
    _check(facts, root, defn.compiler_package)
    accel = _accel_for(root, image.env.get("PATH") or DEFAULT_PATH, _same_shell(facts, root))
    accel = with_build_tools(
        accel,
        facts.tool_versions,
        facts.make_host,
        [(root.path, root.tool_versions)],
        locale=(facts.libc_version, frozenset(facts.locales)),
    )
    problem = _smoke(factory, image, accel)
    if problem:
        raise _NotApplicable(f"the cross compiler does not work in the image: {problem}")
    return accel


def _accel_for(root: CrossRoot, image_path: str, over_sh: bool) -> Accel:
    mounts = [
        Mount(str(root.path), PREFIX),
        Mount(str(root.path / root.loader), f"/{LOADER}"),
        Mount(str(root.path / HOST_LIBDIR), f"/{HOST_LIBDIR}"),
        Mount(str(root.path / "usr" / root.triplet), f"/usr/{root.triplet}"),
    ]
    env = {"PATH": WRAPPER_DIR}
    if root.native_tools:
        env["CONFIG_SHELL"] = f"{PREFIX}/{SHELL}"  # configure, libtool and their Makefiles
    if root.native_tools and over_sh:  # /bin/sh for everything else (CMake's Makefiles...)
        mounts.append(Mount(str(root.path / SHELL), f"/{SHELL}"))
    return Accel(
        arch=root.arch,
        triplet=root.triplet,
        root=root.path,
        mounts=mounts,
        env=env,
        image_path=image_path,
        gcc_version=root.gcc_version,
        package_version=root.package_version,
        key=root.key,
        native_tools=root.native_tools,
    )


ToolSource = tuple[Path, Mapping[str, str]]  # a root, and its BUILD_TOOLS package versions


def with_build_tools(
    accel: Accel,
    image_tools: Mapping[str, str],
    make_host: str,
    sources: Sequence[ToolSource],
    runs: Callable[[Path], bool] = lambda _program: True,
    locale: tuple[str, frozenset[str]] = ("", frozenset()),
) -> Accel:
    """accel with cmake, make and ninja mounted over the image's, each from the first
    source root holding the same Debian version as the image (and whose programs `runs`
    can start with the mounted loader and libraries). On big-endian targets the native
    C library refuses the image's locale files (wrong byte order), so cmake and make, which
    call setlocale, run natively only where `locale` (the image's libc-bin version and
    /usr/lib/locale entries) matches the root's: LOCPATH then gives the native C library
    the root's little-endian copy of the same locales (`_locale_env`)."""
    locale_env = _locale_env(accel.arch, accel.root, _container_prefix(accel), *locale)
    if locale_env is None:
        accel = dataclasses.replace(
            accel,
            emulated_tools=(
                f"{'/'.join(LOCALE_READERS)} emulated: the image's locales (libc-bin "
                f"{locale[0] or 'unknown'}) are not the toolchain root's, and the native C "
                f"library cannot read big-endian ones"
            ),
        )
    mounts: list[Mount] = []
    names: list[str] = []
    for package, programs in BUILD_TOOLS.items():
        want = image_tools.get(package, "")
        if not want or (package == "make" and not make_host):
            continue  # not in the image, or its $(MAKE_HOST) is unknown
        if locale_env is None and package in LOCALE_READERS:
            continue  # big-endian without the same locales in the root
        for root, versions in sources:
            paths = [root / "usr/bin" / program for program in programs]
            if versions.get(package) == want and all(p.is_file() and runs(p) for p in paths):
                mounts += [Mount(str(p), f"/usr/bin/{p.name}") for p in paths]
                names += programs
                break
    if not names:
        return accel
    env = dict(accel.env)
    if "make" in names:  # the native make would say x86_64-pc-linux-gnu
        env["MAKE_HOST"] = make_host
    if locale_env and {"cmake", "make"} & set(names):
        env.update(locale_env)
    return dataclasses.replace(
        accel, mounts=[*accel.mounts, *mounts], env=env, build_tools=tuple(names)
    )


def _locale_env(
    arch: str, root: Path, prefix: str, image_libc: str, image_locales: frozenset[str]
) -> dict[str, str] | None:
    """{} on little-endian targets (the native C library reads the image's locale files);
    on big-endian ones LOCPATH=<root's locales>:/usr/lib/locale when the root has the
    same libc-bin version and the same compiled locales as the image, else None.

    glibc tries each LOCPATH directory in turn and skips a file of the other byte order:
    native programs load the root's copy, emulated ones skip it and load the image's, so
    every locale name resolves to the same data, or fails, in both. (LOCPATH also turns
    off locale-archive, which an image with the same entries as the root does not have.)
    Without it the native cmake and make would run in the C locale: `cmake -E tar` could
    not archive non-ASCII file names and make's `?` would match a byte, not a character."""
    if arch in LITTLE_ENDIAN:
        return {}
    root_libc, root_locales = locale_facts(root)
    if not image_libc or image_libc != root_libc or image_locales != root_locales:
        return None
    return {LOCPATH: f"{prefix}/usr/lib/locale:/usr/lib/locale"}


def _container_prefix(accel: Accel) -> str:
    """Where the accelerator's root (its loader, C library and locales) is mounted."""
    return llvm_root.PREFIX if accel.compiler == LLVM else PREFIX


def _same_shell(facts: ImageFacts, root: CrossRoot) -> bool:
    """The image's /bin/sh is the same dash release as the root's: swapping the binary
    changes nothing but the speed (dash, unlike bash, compiles in nothing of the CPU)."""
    return facts.shell == f"/{SHELL}" and facts.dash_version == root.dash_version != ""


def _check(facts: ImageFacts, root: CrossRoot, package: str) -> None:
    if facts.existing:
        raise _NotApplicable(f"the image already has {', '.join(facts.existing)}")
    if not facts.compiler_version:
        raise _NotApplicable(f"the image has no {package} (it is not a build image)")
    if facts.compiler_version != root.native_equivalent:
        raise _NotApplicable(
            f"the image's {package} is {facts.compiler_version}, the cross compiler is "
            f"{root.package_version}: a different compiler could change the wheel"
        )


# --- LLVM: a native clang against the image's own GCC installation ------------------


def _plan_llvm(
    arch: str, image: ImageInfo, on_line: Log | None, factory: ContainerFactory, why: str
) -> Accel:
    if archs.host_arch() != "x86_64":
        raise _NotApplicable(f"the LLVM root runs on x86_64 hosts (this is {archs.host_arch()})")
    want = archs.get(arch).oci.split("/")[0]
    if image.architecture != want:
        raise _NotApplicable(f"{image.ref} is {image.architecture}, not {want}")
    try:
        root = llvm_root.ensure_llvm_root(on_line)
    except OrchError as exc:
        raise _NotApplicable(f"the LLVM toolchain could not be built: {exc}") from None
    lines = _llvm_facts(factory, image, root)
    existing = [ln[7:] for ln in lines if ln.startswith("exists=")]
    if existing:
        raise _NotApplicable(f"the image already has {', '.join(existing)}")
    answers = {k: _field(lines, k).replace("\\n", "\n") for k in _GCC_QUESTIONS}
    gcc = llvm_root.gcc_install(answers, dict(image.env))
    if gcc is None:
        raise _NotApplicable("the image has no gcc to take headers and runtime from")
    locale = _locale_fields(lines)
    locale_env = _locale_env(arch, root.path, llvm_root.PREFIX, *locale)
    wrappers = llvm_root.ensure_wrappers(root, arch, gcc, bool(locale_env))
    shell = _native_shell(root, arch, image, _field(lines, "shell"), _field(lines, "dash"))
    accel = _llvm_accel(
        root, arch, gcc, wrappers, image.env.get("PATH") or DEFAULT_PATH, shell, locale_env
    )
    accel = dataclasses.replace(accel, why=why)
    sources: list[ToolSource] = [(root.path, root.tool_versions)]
    cross = _suite_cross_root(arch, image)
    if cross is not None:  # bullseye images: the LLVM root has bookworm's releases
        sources.append((cross.path, cross.tool_versions))
    accel = with_build_tools(
        accel,
        _tool_fields(lines),
        _field(lines, "make_host"),
        sources,
        _runs_with(root),
        locale,
    )
    problem = _smoke(factory, image, accel, cxx=gcc.cxx)  # C++ only where the image has g++
    if problem:
        raise _NotApplicable(f"clang does not work in the image: {problem}")
    return accel


def _llvm_accel(
    root: llvm_root.LlvmRoot,
    arch: str,
    gcc: llvm_root.GccInstall,
    wrappers: str,
    image_path: str,
    shell: Path | None,
    locale_env: Mapping[str, str] | None = None,
) -> Accel:
    """locale_env: LOCPATH on a big-endian target whose locales the root holds
    (`_locale_env`); the text tools then run natively there too."""
    prefix = llvm_root.PREFIX
    native_tools = arch in LITTLE_ENDIAN or bool(locale_env)
    mounts = [
        Mount(str(root.path), prefix),
        Mount(str(root.path / root.loader), f"/{LOADER}"),
        Mount(str(root.path / HOST_LIBDIR), f"/{HOST_LIBDIR}"),
    ]
    # The shell runs natively on every target, big-endian ones too: dash calls neither
    # setlocale nor strcoll (no locale file is read) and compiles in nothing of the CPU;
    # the text tools (sort, grep...) read locales, so they do so only on little-endian ones.
    env = {
        "PATH": f"{prefix}/{wrappers}",
        "CONFIG_SHELL": _config_shell(root, shell),
        **(locale_env or {}),
    }
    if shell is not None:  # /bin/sh for everything else (CMake's Makefiles, make's recipes)
        mounts.append(Mount(str(shell), f"/{SHELL}"))
    return Accel(
        arch=arch,
        triplet=gcc.triplet,
        root=root.path,
        mounts=mounts,
        env=env,
        image_path=image_path,
        gcc_version=gcc.version,
        package_version=root.package_version,
        key=llvm_root.wrapper_key(root, arch, gcc, bool(locale_env)),
        native_tools=native_tools,
        native_shell=True,
        compiler=LLVM,
        wrapper_dir=f"{prefix}/{wrappers}",
        clang_version=root.clang_version,
        gcc_prefix=gcc.prefix,
    )


def _config_shell(root: llvm_root.LlvmRoot, shell: Path | None) -> str:
    """The shell configure re-executes itself with (and writes into its Makefiles and
    libtool): the native dash of the image's own release where one is mounted over its
    /bin/sh, so that on bullseye images configure runs under bullseye's dash as with the
    cross gcc (the suite's cross root's dash, at /usr/bin/dash); else the LLVM root's own,
    still native (on a bookworm image the same release; where no dash of the image's
    release is at hand, a POSIX shell configure would accept from its own search)."""
    if shell is not None and not shell.is_relative_to(root.path):
        return f"/{SHELL}"
    return f"{llvm_root.PREFIX}/{SHELL}"


def _native_shell(
    root: llvm_root.LlvmRoot, arch: str, image: ImageInfo, shell: str, dash: str
) -> Path | None:
    """An amd64 dash of the image's own dash release, to mount over its /bin/sh: the LLVM
    root's (bookworm's) when the image has that release, else the suite's cross root's when
    one is built (bullseye images: without it every make recipe starts an emulated shell).
    A dash of another release is never swapped in (their behaviour differs)."""
    if shell != f"/{SHELL}" or not dash:
        return None
    if dash == root.dash_version:
        return root.path / SHELL
    cross = _suite_cross_root(arch, image)
    if cross is None or not cross.native_tools or cross.dash_version != dash:
        return None
    return cross.path / SHELL


def _suite_cross_root(arch: str, image: ImageInfo) -> CrossRoot | None:
    """The image suite's cross root for arch, if one is built (never builds one)."""
    try:
        defn, arch_info = require_definition(arch, image.labels.get("io.orch.suite", ""))
    except ConfigError:
        return None
    return load_cross_root(cross_root_path(defn, arch_info))


def _runs_with(root: llvm_root.LlvmRoot) -> Callable[[Path], bool]:
    """Whether a program of another root (the bullseye cross root's cmake) can start with
    the LLVM root's loader and library directory, the one mounted: every library it needs
    is there, or is added there from its own root (`llvm_root.borrow_libraries`: bullseye's
    cmake needs libjsoncpp.so.24, which bookworm does not have; glibc, libstdc++, libcurl...
    keep their old symbol versions)."""

    def runs(program: Path) -> bool:
        if program.is_relative_to(root.path):
            return True
        try:
            return llvm_root.borrow_libraries(root, program)
        except (OSError, ValueError):
            return False

    return runs


LLVM_PROBE_VERSION = 3  # 2: asks whether the image has g++; 3: libc-bin and locales
# What the image's gcc is asked (one line each; gcc -v's lines joined by a literal \n).
_GCC_QUESTIONS = {
    "dumpmachine": "gcc -dumpmachine",
    "libgcc": "gcc -print-libgcc-file-name",
    "version": "gcc -dumpfullversion -dumpversion",
    "dumpversion": "gcc -dumpversion",
    "multiarch": "gcc -print-multiarch",
    "v": "gcc -v 2>&1 | grep '^Configured with' | tr -d '\\n'",
    "gxx": "g++ -dumpfullversion -dumpversion",
}
# The image's build tools (BUILD_TOOLS) and what its make says $(MAKE_HOST) is.
_TOOL_SCRIPT = (
    "; ".join(
        f"echo tool.{p}=$(dpkg-query -W -f='${{Version}}' {p} 2>/dev/null)" for p in BUILD_TOOLS
    )
    + "; echo make_host=$(make -p -f /dev/null 2>/dev/null | sed -n 's/^MAKE_HOST := //p')"
    + "; echo libc=$(dpkg-query -W -f='${Version}' libc-bin 2>/dev/null)"
    + "; echo locales=$(ls -A /usr/lib/locale 2>/dev/null | tr '\\n' ' ')"
)


def _tool_fields(lines: list[str]) -> dict[str, str]:
    return {p: v for p in BUILD_TOOLS if (v := _field(lines, f"tool.{p}"))}


def _locale_fields(lines: list[str]) -> tuple[str, frozenset[str]]:
    """The image's libc-bin version and /usr/lib/locale entries, from the probe."""
    return _field(lines, "libc"), frozenset(_field(lines, "locales").split())


def _llvm_facts(factory: ContainerFactory, image: ImageInfo, root: llvm_root.LlvmRoot) -> list[str]:
    """The image's gcc, shell and mount targets, as `key=value` lines (cached)."""
    path = _probe_path(f"llvm{LLVM_PROBE_VERSION}:{image.id}:{root.key}")
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    targets = [llvm_root.PREFIX, f"/{LOADER}", f"/{HOST_LIBDIR}", "/lib/x86_64-linux-gnu"]
    questions = "; ".join(f"echo {k}=$({q} 2>/dev/null)" for k, q in _GCC_QUESTIONS.items())
    script = (
        f"{questions}; {_TOOL_SCRIPT}; "
        "echo dash=$(dpkg-query -W -f='${Version}' dash 2>/dev/null); "
        "echo shell=$(readlink -f /bin/sh); "
        f"for p in {' '.join(targets)}; do "
        'if [ -e "$p" ] || [ -L "$p" ]; then echo "exists=$p"; fi; done'
    )
    lines = _run_in(factory, image, [], {}, script)
    _store(path, lines)
    return lines


_NAMES = {GCC_CROSS: "cross gcc", LLVM: "LLVM"}


# --- the image probe ----------------------------------------------------------------


def _targets(root: CrossRoot) -> list[str]:
    # /lib/x86_64-linux-gnu is not mounted (the loader also searches /usr/lib/...), but an
    # amd64 library directory there would be searched first.
    return [
        PREFIX,
        f"/{LOADER}",
        f"/{HOST_LIBDIR}",
        "/lib/x86_64-linux-gnu",
        f"/usr/{root.triplet}",
    ]


def _facts(
    factory: ContainerFactory, image: ImageInfo, root: CrossRoot, package: str
) -> ImageFacts:
    """The image as it is: compiler and shell versions, paths the mounts would cover."""
    path = _probe_path(f"{image.id}:{root.key}")
    try:
        return ImageFacts(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    checks = " ".join(_targets(root))
    query = "dpkg-query -W -f='${Version}'"
    script = (
        f"echo version=$({query} {package} 2>/dev/null); echo dash=$({query} dash 2>/dev/null); "
        f"{_TOOL_SCRIPT}; "
        "echo shell=$(readlink -f /bin/sh); "
        f'for p in {checks}; do if [ -e "$p" ] || [ -L "$p" ]; then echo "exists=$p"; fi; done'
    )
    lines = _run_in(factory, image, [], {}, script)
    facts = ImageFacts(
        compiler_version=_field(lines, "version"),
        existing=[ln[7:] for ln in lines if ln.startswith("exists=")],
        shell=_field(lines, "shell"),
        dash_version=_field(lines, "dash"),
        tool_versions=_tool_fields(lines),
        make_host=_field(lines, "make_host"),
        libc_version=_locale_fields(lines)[0],
        locales=sorted(_locale_fields(lines)[1]),
    )
    _store(path, asdict(facts))
    return facts


def _smoke(factory: ContainerFactory, image: ImageInfo, accel: Accel, cxx: bool = False) -> str:
    """With the mounts, a program compiled natively must run (emulated), the shell's
    programs must still see the target, and the native build tools must start: "" when
    all is well (remembered), else why not.
    cxx: a C++ program too (libstdc++ and libgcc_s of the image, linked by clang)."""
    mounts = sorted((m.source, m.target) for m in accel.mounts)
    path = _probe_path(f"smoke:{image.id}:{accel.key}:{mounts}:{cxx}")
    if path.is_file():
        return ""
    script = (
        "printf 'int main(void){return 0;}\\n' > /tmp/orch-accel.c && "
        "gcc -o /tmp/orch-accel /tmp/orch-accel.c && /tmp/orch-accel && "
        f'test "$(uname -m)" = {accel.arch} && '
        + "".join(f"{tool} --version > /dev/null && " for tool in accel.build_tools)
        + _c_locale_check(accel)
        + "echo smoke=ok"
    )
    if cxx:
        script += (
            ' && printf \'#include <string>\\nint main(){std::string s("ok");'
            "return s.size() != 2;}\\n' > /tmp/orch-accel.cc && "
            "g++ -O2 -o /tmp/orch-accel-cc /tmp/orch-accel.cc && /tmp/orch-accel-cc "
            "&& echo smoke=ok"
        )
    try:
        out = _run_in(factory, image, accel.mounts, apply(accel, image.env), script)
    except OrchError as exc:  # e.g. the engine refused a mount
        return str(exc).splitlines()[0]
    if out.count("smoke=ok") != (2 if cxx else 1):  # not remembered: it may have been transient
        return " | ".join(out[-3:]) or "no output"
    _store(path, {"ok": True})
    return ""


def _c_locale_check(accel: Accel) -> str:
    """Native cmake/make on a big-endian target: the native C library must load the same
    locale as the image's (same charmap, neither complains). Shell words, or ""."""
    if LOCPATH not in accel.env:
        return ""
    native = f"{_container_prefix(accel)}/usr/bin/locale"
    return (
        f'[ "$({native} charmap 2>&1)" = "$(locale charmap 2>&1)" ] && '
        f'[ -z "$({native} 2>&1 > /dev/null)" ] && [ -z "$(locale 2>&1 > /dev/null)" ] && '
    )


def _field(lines: list[str], name: str) -> str:
    return next((ln[len(name) + 1 :] for ln in lines if ln.startswith(f"{name}=")), "")


def _probe_path(what: str) -> Path:
    digest = hashlib.sha256(f"{PROBE_VERSION}:{what}".encode()).hexdigest()
    return cross_dir() / "probes" / f"{digest[:24]}.json"


def _store(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    tmp.replace(path)


def _run_in(
    factory: ContainerFactory,
    image: ImageInfo,
    mounts: list[Mount],
    env: Mapping[str, str],
    script: str,
) -> list[str]:
    session = factory.session(
        image.ref,
        platform=image.platform,
        job="accel-probe",
        log=_NoLog(),
        mounts=tuple(mounts),
        env=env,
    )
    with session:
        return session.output(["sh", "-c", script], env=env)


class _NoLog:
    """Probe output is parsed, not logged."""

    def line(self, text: str) -> None:
        pass

    def write_bytes(self, data: bytes) -> None:
        pass


def _probe_factory() -> ContainerFactory:
    """For a probe outside a run (`orch doctor`, tests): the real engine, own labels."""
    return ContainerFactory(DockerEngine(), RunIdentity.new(), HostEnv())


_PLANNERS: tuple[
    tuple[str, Callable[[str, ImageInfo, Log | None, ContainerFactory, str], Accel]], ...
] = (
    (GCC_CROSS, _plan),
    (LLVM, _plan_llvm),
)
