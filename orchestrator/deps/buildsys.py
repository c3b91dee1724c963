"""Build scripts for static dependencies, one per build system.

:func:`build_script` turns a :class:`DependencySpec` into a bash script (run as
``bash -euo pipefail`` in the build container) that configures, builds and installs the
dependency into the shared prefix as a static, position-independent library whose
symbols are hidden where the build system allows. After the install it removes shared
libraries and libtool archives from the prefix, so nothing downstream can link one by
accident, and fails when a library named in ``exports.libs`` is missing.

:func:`flags_for_project` is the environment the project's own build gets to find the
prefix. ``docs/static-deps.md`` explains both, and the recipe format.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Iterable, Sequence

from orchestrator.errors import ConfigError
from orchestrator.recipe.model import BUILD_SYSTEMS, DependencySpec

BASE_CFLAGS = "-O2 -fPIC -fvisibility=hidden"
BASE_CXXFLAGS = f"{BASE_CFLAGS} -fvisibility-inlines-hidden"
# Keeps every symbol that came from a static archive out of the project's dynamic
# symbol table: the project exports its own entry points, not zlib's.
EXCLUDE_LIBS = "-Wl,--exclude-libs,ALL"

# Where dependency builds happen in their container, and the prefix they install into.
DEP_PREFIX = "/opt/orch/deps"
DEP_WORK = "/orch/dep"

_C_FLAGS = ("CFLAGS", "CXXFLAGS")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LIB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9_.+/-]*$")


def build_env(prefix: str) -> list[tuple[str, str]]:
    """The compiler and lookup environment every dependency build starts from."""
    return [
        ("CFLAGS", BASE_CFLAGS),
        ("CXXFLAGS", BASE_CXXFLAGS),
        ("CPPFLAGS", f"-I{prefix}/include"),
        ("LDFLAGS", f"-L{prefix}/lib"),
        ("PKG_CONFIG_PATH", f"{prefix}/lib/pkgconfig:{prefix}/share/pkgconfig"),
        ("CMAKE_PREFIX_PATH", prefix),
    ]


def configure_args(prefix: str) -> list[str]:
    return [f"--prefix={prefix}", "--enable-static", "--disable-shared", "--with-pic"]


def cmake_args(prefix: str) -> list[str]:
    return [
        "-DBUILD_SHARED_LIBS=OFF",
        "-DCMAKE_POSITION_INDEPENDENT_CODE=ON",
        "-DCMAKE_C_VISIBILITY_PRESET=hidden",
        "-DCMAKE_CXX_VISIBILITY_PRESET=hidden",
        "-DCMAKE_VISIBILITY_INLINES_HIDDEN=ON",
        f"-DCMAKE_INSTALL_PREFIX={prefix}",
        # Typed: an untyped relative PATH entry is made absolute against the build dir by
        # projects that re-declare it (libjpeg-turbo's GNUInstallDirs copy does).
        "-DCMAKE_INSTALL_LIBDIR:PATH=lib",
        "-DCMAKE_BUILD_TYPE=Release",
        # CMake 4 refuses projects that declare cmake_minimum_required < 3.5 (libjpeg-turbo,
        # brotli, zlib 1.3.1 ...) unless told which policy floor to assume.
        "-DCMAKE_POLICY_VERSION_MINIMUM=3.5",
    ]


def meson_args(prefix: str) -> list[str]:
    return [
        f"--prefix={prefix}",
        "--libdir=lib",
        "--buildtype=release",
        "--default-library=static",
        "-Db_staticpic=true",
        # Subprojects must come from the recipe's verified source, never from the network.
        "--wrap-mode=nodownload",
    ]


def build_script(
    dep: DependencySpec,
    *,
    src_dir: str,
    build_dir: str,
    prefix: str,
    jobs: int,
    extra_cflags: str = "",
) -> str:
    """A bash script that builds ``dep`` from ``src_dir`` and installs it into ``prefix``.
    ``extra_cflags``: added to CFLAGS and CXXFLAGS (the glibc pin's -include)."""
    if dep.build_system not in BUILD_SYSTEMS:
        raise ConfigError(
            f"{_label(dep)}: unknown build system {dep.build_system!r} "
            f"(one of: {', '.join(BUILD_SYSTEMS)})"
        )
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    for path in (src_dir, build_dir, prefix):
        if not path.startswith("/"):
            raise ValueError(f"build paths must be absolute, not {path!r}")
    if not _PLAIN_PATH.match(prefix):
        # It travels inside CFLAGS/LDFLAGS-style variables, which build systems split on
        # whitespace and paste into their own shell commands unquoted.
        raise ValueError(f"the prefix must be a plain path (letters, digits, ._+-/): {prefix!r}")
    if dep.build_system == "script" and not dep.script.strip():
        raise ConfigError(f"{_label(dep)}: build.system is script but build.script is empty")
    for key, _ in dep.env:
        if not _ENV_NAME.match(key):
            raise ConfigError(f"{_label(dep)}: build.env: {key!r} is not a valid variable name")
    for lib in dep.exports.libs:
        if not _LIB_NAME.match(lib):
            raise ConfigError(
                f"{_label(dep)}: exports.libs: {lib!r} is not a library link name (as in -l{lib})"
            )

    q = shlex.quote
    out: list[str] = [
        f"# orch: build {_one_line(dep.name)} {_one_line(dep.version)} ({dep.build_system})"
        + (f", defined at {_one_line(dep.origin)}" if dep.origin else ""),
        "set -euo pipefail",
        "",
        "# A static, position-independent library with hidden symbols.",
    ]
    out += [
        f"export {k}={q(f'{v} {extra_cflags}' if extra_cflags and k in _C_FLAGS else v)}"
        for k, v in build_env(prefix)
    ]
    if dep.env:
        out.append("# The recipe's own environment (build.env).")
        out += [f"export {k}={q(v)}" for k, v in dep.env]
        # A recipe's own CFLAGS replace the defaults above, not the pin: its key says pinned.
        out += [
            f'export {k}="${{{k}}} "{q(extra_cflags)}'
            for k, _ in dep.env
            if extra_cflags and k in _C_FLAGS
        ]
    out += ["", f"mkdir -p {q(prefix)}/lib {q(prefix)}/include {q(build_dir)}", ""]

    steps = {
        "autotools": _autotools,
        "cmake": _cmake,
        "meson": _meson,
        "make": _make,
        "script": _script,
    }[dep.build_system]
    out += steps(dep, src_dir, build_dir, prefix, jobs)
    out += ["", *_post_install(dep, prefix)]
    return "\n".join(out) + "\n"


def unpack_script(dep: DependencySpec, archive: str, work: str, prefix: str) -> str:
    """Unpack the verified source, apply the recipe's patches, and list the prefix as it
    was before the build (so packaging takes only what this dependency installed)."""
    q = shlex.quote
    patches = " ".join(
        f"patch -p1 -d {work}/src < {work}/patches/{q(p.name)} &&" for p in dep.source.patches
    )
    return (
        f"tar -xf {work}/{q(archive)} -C {work}/src "
        f"--strip-components={dep.source.strip_components} && "
        f"{patches} find {prefix} -mindepth 1 | sort > {work}/before"
    )


def package_script(work: str, prefix: str) -> str:
    """Tar the files the build added to the prefix into ``work/artifact.tar.gz``."""
    return (
        f"cd {prefix} && find {prefix} -mindepth 1 ! -type d | sort > {work}/after && "
        f"comm -13 {work}/before {work}/after | sed 's#^{prefix}/##' > {work}/files && "
        f"test -s {work}/files || {{ echo 'the build installed nothing into {prefix}'; exit 1; }}; "
        f"tar -czf {work}/artifact.tar.gz -T {work}/files"
    )


def rendered_steps(dep: DependencySpec) -> str:
    """Everything orch generates to build ``dep`` (unpack, build script with its flags and
    arguments, post-install checks, packaging), as the cache key hashes it. The job count
    is fixed: parallelism does not change what gets built."""
    work = DEP_WORK
    dep = dataclasses.replace(dep, origin="")  # where the recipe says it is only a comment
    build = build_script(
        dep, src_dir=f"{work}/src", build_dir=f"{work}/build", prefix=DEP_PREFIX, jobs=1
    )
    # The archive's name is where the source came from, not what it is: a placeholder.
    unpack = unpack_script(dep, "source-archive", work, DEP_PREFIX)
    return "\n".join([unpack, build, package_script(work, DEP_PREFIX)])


def flags_for_project(prefix: str, *, exclude_libs: bool = True) -> dict[str, str]:
    """The environment the project's build gets so it finds (only) the static prefix.

    ``exclude_libs`` adds ``-Wl,--exclude-libs,ALL`` to LDFLAGS: symbols pulled in from the
    prefix's archives become local to the extension module instead of being exported
    from it (where they would clash with another module's copy of the same library).
    Turn it off only for a project that must re-export a dependency's API.
    """
    include = f"-I{prefix}/include"
    ldflags = f"-L{prefix}/lib"
    if exclude_libs:
        ldflags = f"{ldflags} {EXCLUDE_LIBS}"
    return {
        "CPPFLAGS": include,
        # CMake and some setup.py builds ignore CPPFLAGS; they read CFLAGS/CXXFLAGS.
        "CFLAGS": include,
        "CXXFLAGS": include,
        "LDFLAGS": ldflags,
        "PKG_CONFIG_PATH": f"{prefix}/lib/pkgconfig:{prefix}/share/pkgconfig",
        "CMAKE_PREFIX_PATH": prefix,
    }


# --- one function per build system ------------------------------------------------------


def _autotools(dep: DependencySpec, src: str, build: str, prefix: str, jobs: int) -> list[str]:
    q = shlex.quote
    return [
        f"cd {q(build)}",
        _command([f"{src}/configure", *configure_args(prefix), *dep.options]),
        f"make -j{jobs}",
        "make install",
    ]


def _cmake(dep: DependencySpec, src: str, build: str, prefix: str, jobs: int) -> list[str]:
    return [
        _command(["cmake", "-S", src, "-B", build, *cmake_args(prefix), *dep.options]),
        _command(["cmake", "--build", build, "-j", str(jobs)]),
        _command(["cmake", "--install", build]),
    ]


def _meson(dep: DependencySpec, src: str, build: str, prefix: str, jobs: int) -> list[str]:
    return [
        _command(["meson", "setup", build, src, *meson_args(prefix), *dep.options]),
        _command(["meson", "compile", "-C", build, "-j", str(jobs)]),
        _command(["meson", "install", "-C", build]),
    ]


def _make(dep: DependencySpec, src: str, build: str, prefix: str, jobs: int) -> list[str]:
    # Options are make variables (NAME=value) given on the command line, so they override
    # the Makefile's own assignments; the flags above arrive through the environment.
    return [
        f"cd {shlex.quote(src)}",
        _command(["make", f"-j{jobs}", f"PREFIX={prefix}", *dep.options, "install"]),
    ]


def _script(dep: DependencySpec, src: str, build: str, prefix: str, jobs: int) -> list[str]:
    """The recipe's script in its own bash, in the source dir, with helper arrays defined.

    ORCH_CONFIGURE_ARGS / ORCH_CMAKE_ARGS / ORCH_MESON_ARGS carry the same static/PIC/hidden
    arguments the other build systems use, and ORCH_OPTIONS the recipe's build.options, so
    a script recipe (a CMake project in a subdirectory, say) can stay overridable.
    """
    q = shlex.quote
    prelude = [
        _array("ORCH_CONFIGURE_ARGS", configure_args(prefix)),
        _array("ORCH_CMAKE_ARGS", cmake_args(prefix)),
        _array("ORCH_MESON_ARGS", meson_args(prefix)),
        _array("ORCH_OPTIONS", dep.options),
        'cd "$SRC_DIR"',
    ]
    body = "\n".join(prelude) + "\n" + dep.script
    return [
        f"export PREFIX={q(prefix)} JOBS={jobs} SRC_DIR={q(src)} BUILD_DIR={q(build)}",
        f"cd {q(src)}",
        # Its own process: an `exit 0` in the recipe cannot skip the checks below.
        f"bash -euo pipefail -c {q(body)} {q('orch-' + dep.name)}",
    ]


def _post_install(dep: DependencySpec, prefix: str) -> list[str]:
    q = shlex.quote
    lib = f"{prefix}/lib"
    out = [
        "# Static only: a shared library left in the prefix would win at link time.",
        f"find {q(prefix)} \\( -name '*.so' -o -name '*.so.*' -o -name '*.la' \\) "
        "\\( -type f -o -type l \\) -print -delete",
    ]
    if not dep.exports.libs:
        return out
    out += [
        "",
        "# Every library the recipe exports must now exist as a static archive.",
        'orch_missing=""',
    ]
    for name in dep.exports.libs:
        archive = f"lib{name}.a"
        out.append(f'[ -f {q(f"{lib}/{archive}")} ] || orch_missing="$orch_missing {archive}"')
    message = (
        f"orch: dependency {_one_line(dep.name)} {_one_line(dep.version)}: the build finished "
        f"but these static libraries named in exports.libs are not in {lib}:"
    )
    out += [
        'if [ -n "$orch_missing" ]; then',
        f'  echo {q(message)}"$orch_missing" >&2',
        f"  echo {q(f'orch: {lib} holds:')} >&2",
        f"  ls -1 {q(lib)} >&2 || true",
        f"  if [ -d {q(prefix + '/lib64')} ]; then",
        "    echo "
        + q(
            f"orch: hint: the build installed into {prefix}/lib64; "
            "pass its libdir option (e.g. --libdir=lib or -DCMAKE_INSTALL_LIBDIR=lib)"
        )
        + " >&2",
        "  fi",
        "  exit 1",
        "fi",
    ]
    return out


# --- helpers -----------------------------------------------------------------------------


def _command(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def _array(name: str, values: Iterable[str]) -> str:
    return f"{name}=({' '.join(shlex.quote(v) for v in values)})"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _label(dep: DependencySpec) -> str:
    return f"{dep.origin}: {dep.name}" if dep.origin else f"dependency {dep.name}"
