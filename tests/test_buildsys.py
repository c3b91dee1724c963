"""Dependency build scripts: the flags each build system gets, quoting, the recipe's env,
the post-install cleanup and checks, and real builds of tiny generated projects on the
host (static archive installed, position-independent, symbols hidden)."""

from __future__ import annotations

import platform
import shlex
import shutil
import subprocess
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.deps.buildsys import (
    BASE_CFLAGS,
    BASE_CXXFLAGS,
    EXCLUDE_LIBS,
    build_script,
    flags_for_project,
)
from orchestrator.errors import ConfigError
from orchestrator.recipe.model import DependencySpec, Exports, SourceSpec

SRC, BUILD, PREFIX = "/w/src", "/w/build", "/opt/orch/deps"


def spec(system: str = "autotools", **kw: object) -> DependencySpec:
    base = DependencySpec(
        name="tiny",
        version="1.0",
        source=SourceSpec(
            urls=("https://example.invalid/tiny-1.0.tar.gz",),
            sha256="0" * 64,
            filename="tiny-1.0.tar.gz",
        ),
        build_system=system,
        exports=Exports(libs=("tiny",)),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def script_for(
    dep: DependencySpec, *, src: str = SRC, build: str = BUILD, prefix: str = PREFIX, jobs: int = 4
) -> str:
    return build_script(dep, src_dir=src, build_dir=build, prefix=prefix, jobs=jobs)


def commands(script: str, program: str) -> list[list[str]]:
    """The script's command lines that start with ``program``, as argv lists."""
    out = []
    for line in script.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        try:
            argv = shlex.split(line)
        except ValueError:  # a line inside a multi-line quoted argument
            continue
        if argv and argv[0] == program:
            out.append(argv)
    return out


# --- generated text -----------------------------------------------------------------------


def test_environment_is_static_pic_hidden() -> None:
    s = script_for(spec())
    assert f"export CFLAGS={shlex.quote(BASE_CFLAGS)}" in s
    assert BASE_CFLAGS == "-O2 -fPIC -fvisibility=hidden"
    assert BASE_CXXFLAGS == "-O2 -fPIC -fvisibility=hidden -fvisibility-inlines-hidden"
    assert f"export CXXFLAGS={shlex.quote(BASE_CXXFLAGS)}" in s
    assert f"export CPPFLAGS=-I{PREFIX}/include" in s
    assert f"export LDFLAGS=-L{PREFIX}/lib" in s
    assert f"export PKG_CONFIG_PATH={PREFIX}/lib/pkgconfig:{PREFIX}/share/pkgconfig" in s
    assert f"export CMAKE_PREFIX_PATH={PREFIX}" in s
    assert s.startswith("# orch: build tiny 1.0 (autotools)")
    assert "set -euo pipefail" in s


def test_autotools_flags_then_options() -> None:
    s = script_for(spec("autotools", options=("--without-python", "--enable-shared")))
    [configure] = [a for a in (shlex.split(x) for x in s.splitlines() if "configure" in x) if a]
    assert configure[0] == f"{SRC}/configure"
    assert configure[1:] == [
        f"--prefix={PREFIX}",
        "--enable-static",
        "--disable-shared",
        "--with-pic",
        "--without-python",
        "--enable-shared",
    ]
    assert f"cd {BUILD}" in s  # out of tree
    assert commands(s, "make") == [["make", "-j4"], ["make", "install"]]


def test_cmake_flags_then_options() -> None:
    s = script_for(spec("cmake", options=("-DZLIB_BUILD_EXAMPLES=OFF",)), jobs=3)
    configure, build, install = commands(s, "cmake")
    assert configure[:5] == ["cmake", "-S", SRC, "-B", BUILD]
    for flag in (
        "-DBUILD_SHARED_LIBS=OFF",
        "-DCMAKE_POSITION_INDEPENDENT_CODE=ON",
        "-DCMAKE_C_VISIBILITY_PRESET=hidden",
        "-DCMAKE_CXX_VISIBILITY_PRESET=hidden",
        "-DCMAKE_VISIBILITY_INLINES_HIDDEN=ON",
        f"-DCMAKE_INSTALL_PREFIX={PREFIX}",
        "-DCMAKE_INSTALL_LIBDIR:PATH=lib",
        "-DCMAKE_BUILD_TYPE=Release",
    ):
        assert flag in configure
    assert configure[-1] == "-DZLIB_BUILD_EXAMPLES=OFF"  # last, so the recipe can override
    assert build == ["cmake", "--build", BUILD, "-j", "3"]
    assert install == ["cmake", "--install", BUILD]


def test_meson_flags_then_options() -> None:
    s = script_for(spec("meson", options=("-Dtests=false",)), jobs=2)
    setup, compile_, install = commands(s, "meson")
    assert setup[:4] == ["meson", "setup", BUILD, SRC]
    for flag in (
        f"--prefix={PREFIX}",
        "--libdir=lib",
        "--default-library=static",
        "-Db_staticpic=true",
        "--wrap-mode=nodownload",
    ):
        assert flag in setup
    assert setup[-1] == "-Dtests=false"
    assert compile_ == ["meson", "compile", "-C", BUILD, "-j", "2"]
    assert install == ["meson", "install", "-C", BUILD]


def test_make_prefix_options_install() -> None:
    s = script_for(spec("make", options=("CC=gcc", "BUILD_SHARED=no")), jobs=8)
    assert commands(s, "make") == [
        ["make", "-j8", f"PREFIX={PREFIX}", "CC=gcc", "BUILD_SHARED=no", "install"]
    ]
    assert f"cd {SRC}" in s


def test_script_exports_paths_and_runs_recipe_script() -> None:
    s = script_for(spec("script", script="./build-it --fast\n", options=("a b",)), jobs=5)
    assert f"export PREFIX={PREFIX} JOBS=5 SRC_DIR={SRC} BUILD_DIR={BUILD}" in s
    lexer = shlex.shlex(s[s.index("bash -euo pipefail -c ") :], posix=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    run = []
    for token in lexer:
        run.append(token)
        if token == "orch-tiny":
            break
    assert run[:4] == ["bash", "-euo", "pipefail", "-c"] and run[5] == "orch-tiny"
    body = run[4]
    assert body.rstrip().endswith("./build-it --fast")
    assert "ORCH_OPTIONS=('a b')" in body
    assert "ORCH_CMAKE_ARGS=(-DBUILD_SHARED_LIBS=OFF" in body
    assert f"ORCH_CONFIGURE_ARGS=(--prefix={PREFIX} --enable-static" in body


def test_recipe_env_after_base_and_quoted() -> None:
    s = script_for(spec(env=(("CFLAGS", "-O3 -fPIC"), ("WEIRD", "it's $HOME `x`"))))
    lines = s.splitlines()
    base = lines.index(f"export CFLAGS={shlex.quote(BASE_CFLAGS)}")
    mine = lines.index("export CFLAGS='-O3 -fPIC'")
    assert mine > base
    assert f"export WEIRD={shlex.quote('it' + chr(39) + 's $HOME `x`')}" in lines


def test_paths_and_options_are_quoted() -> None:
    s = script_for(
        spec("cmake", options=("-DX=a b; rm -rf /",)), src="/w/it's src", build="/w/$HOME"
    )
    [configure, *_] = commands(s, "cmake")
    assert "-DX=a b; rm -rf /" in configure  # one argument, not a second command
    assert configure[2:5] == ["/w/it's src", "-B", "/w/$HOME"]


def test_post_install_removes_shared_and_checks_libs() -> None:
    s = script_for(spec(exports=Exports(libs=("ssl", "crypto"))))
    assert "-name '*.so' -o -name '*.so.*' -o -name '*.la'" in s
    assert "-delete" in s
    assert f"[ -f {PREFIX}/lib/libssl.a ]" in s
    assert f"[ -f {PREFIX}/lib/libcrypto.a ]" in s
    assert "exports.libs" in s


def test_no_exports_no_check() -> None:
    s = script_for(spec(exports=Exports()))
    assert "orch_missing" not in s
    assert "-delete" in s


@pytest.mark.parametrize(
    ("dep", "kw", "error", "match"),
    [
        (spec("scons"), {}, ConfigError, "unknown build system 'scons'"),
        (spec("script", script="  \n"), {}, ConfigError, "build.script is empty"),
        (spec(env=(("BAD-NAME", "x"),)), {}, ConfigError, "not a valid variable name"),
        (spec(exports=Exports(libs=("../evil",))), {}, ConfigError, "not a library link name"),
        (spec(), {"jobs": 0}, ValueError, "jobs"),
        (spec(), {"prefix": "relative/prefix"}, ValueError, "absolute"),
        (spec(), {"prefix": "/opt/my deps"}, ValueError, "plain path"),
        (spec(), {"prefix": "/opt/it's"}, ValueError, "plain path"),
    ],
)
def test_rejects(
    dep: DependencySpec, kw: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        script_for(dep, **kw)  # type: ignore[arg-type]


def test_flags_for_project() -> None:
    env = flags_for_project("/opt/orch/deps")
    assert env == {
        "CPPFLAGS": "-I/opt/orch/deps/include",
        "CFLAGS": "-I/opt/orch/deps/include",
        "CXXFLAGS": "-I/opt/orch/deps/include",
        "LDFLAGS": "-L/opt/orch/deps/lib -Wl,--exclude-libs,ALL",
        "PKG_CONFIG_PATH": "/opt/orch/deps/lib/pkgconfig:/opt/orch/deps/share/pkgconfig",
        "CMAKE_PREFIX_PATH": "/opt/orch/deps",
    }
    assert flags_for_project("/p", exclude_libs=False)["LDFLAGS"] == "-L/p/lib"


# --- real builds on the host --------------------------------------------------------------

needs_toolchain = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("cc", "make", "ar", "readelf", "nm")),
    reason="needs a C toolchain",
)

TINY_C = """\
#include "tiny.h"
int tiny_counter;  /* global data: taking its address needs a relocation */
static int bump(void) { return ++tiny_counter; }
int tiny_internal(void) { return bump(); }
int *tiny_address(void) { return &tiny_counter; }
__attribute__((visibility("default"))) int tiny_public(void) { return tiny_internal(); }
"""
TINY_H = "int tiny_internal(void);\nint *tiny_address(void);\nint tiny_public(void);\n"

MAKEFILE = """\
CC ?= cc
AR ?= ar
MARK ?= none
all: libtiny.a
tiny.o: $(SRCDIR)tiny.c
\t$(CC) $(CPPFLAGS) $(CFLAGS) -I$(SRCDIR). -c $(SRCDIR)tiny.c -o tiny.o
libtiny.a: tiny.o
\t$(AR) rcs libtiny.a tiny.o
install: libtiny.a
\tmkdir -p $(PREFIX)/lib $(PREFIX)/include
\tcp libtiny.a $(PREFIX)/lib/
\tcp $(SRCDIR)tiny.h $(PREFIX)/include/
\techo '$(MARK)' > $(PREFIX)/mark
\t# shared leftovers orch must remove
\t$(CC) -shared -o $(PREFIX)/lib/libtiny.so.1 tiny.o
\tln -sf libtiny.so.1 $(PREFIX)/lib/libtiny.so
\ttouch $(PREFIX)/lib/libtiny.la
"""

# A stand-in for an autoconf configure: records its arguments, writes a VPATH Makefile.
CONFIGURE = """\
#!/bin/sh
srcdir=$(cd "$(dirname "$0")" && pwd)
prefix=
for a in "$@"; do case $a in --prefix=*) prefix=${a#--prefix=};; esac; done
printf '%s\\n' "$@" > configure.args
{ printf 'PREFIX = %s\\nSRCDIR = %s/\\n' "$prefix" "$srcdir"; cat "$srcdir/Makefile.in"; } > Makefile
"""

CMAKELISTS = """\
cmake_minimum_required(VERSION 3.13)
project(tiny C)
include(GNUInstallDirs)
# Drop the environment's -fPIC/-fvisibility: PIC and hiding must come from orch's -D flags.
set(CMAKE_C_FLAGS "-O2")
add_library(tiny tiny.c)
install(TARGETS tiny ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES tiny.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
"""

MESON_BUILD = """\
project('tiny', 'c')
library('tiny', 'tiny.c', install: true)
install_headers('tiny.h')
"""


def tiny_project(root: Path, *files: tuple[str, str]) -> Path:
    src = root / "src"
    src.mkdir(parents=True)
    (src / "tiny.c").write_text(TINY_C)
    (src / "tiny.h").write_text(TINY_H)
    for name, text in files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    return src


def run(
    dep: DependencySpec,
    src: Path,
    root: Path,
    prefix: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    build = root / "build dir"
    prefix = prefix or root / "prefix"
    script = build_script(dep, src_dir=str(src), build_dir=str(build), prefix=str(prefix), jobs=2)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=src, capture_output=True, text=True
    )


def symbols(obj: Path) -> dict[str, str]:
    """Defined global symbols of an object or archive -> visibility (DEFAULT/HIDDEN/...)."""
    out = subprocess.run(["readelf", "-sW", str(obj)], capture_output=True, text=True, check=True)
    found = {}
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) >= 8 and f[4] == "GLOBAL" and f[6] != "UND":
            found[f[7]] = f[5]
    return found


def absolute_relocations(obj: Path) -> list[str]:
    """R_X86_64_32[S] relocations against loaded sections: code that is not PIC."""
    out = subprocess.run(["readelf", "-rW", str(obj)], capture_output=True, text=True, check=True)
    found, section = [], ""
    for line in out.stdout.splitlines():
        if line.startswith("Relocation section"):
            section = line.split("'")[1]
        elif not section.startswith(".rela.debug") and (
            "R_X86_64_32 " in line or "R_X86_64_32S" in line
        ):
            found.append(line)
    return found


def check_static_pic_hidden(prefix: Path, root: Path) -> None:
    archive = prefix / "lib" / "libtiny.a"
    assert archive.is_file()
    assert not [p for p in prefix.rglob("*") if p.name.endswith((".so", ".la")) or ".so." in p.name]
    vis = symbols(archive)
    assert vis["tiny_internal"] == "HIDDEN"
    assert vis["tiny_address"] == "HIDDEN"
    assert vis["tiny_public"] == "DEFAULT"  # an explicit attribute still wins in the archive...
    if platform.machine() == "x86_64":
        assert absolute_relocations(archive) == []
    # ...and the project's link, with orch's flags, keeps it out of the extension's exports.
    ext_c = root / "ext.c"
    ext_c.write_text(
        '#include "tiny.h"\n__attribute__((visibility("default"))) '
        "int PyInit_ext(void) { return tiny_public(); }\n"
    )
    # What flags_for_project gives (as argv: the prefix may contain spaces here).
    ext = root / "ext.so"
    subprocess.run(
        [
            "cc",
            "-shared",
            "-fPIC",
            f"-I{prefix}/include",
            "-o",
            str(ext),
            str(ext_c),
            f"-L{prefix}/lib",
            EXCLUDE_LIBS,
            "-ltiny",
        ],
        check=True,
    )
    dynamic = subprocess.run(
        ["nm", "-D", "--defined-only", str(ext)], capture_output=True, text=True, check=True
    ).stdout
    names = {line.split()[-1] for line in dynamic.splitlines() if line.strip()}
    assert "PyInit_ext" in names
    assert not {n for n in names if n.startswith("tiny_")}, names


@needs_toolchain
@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 relocation names")
def test_pic_check_sees_non_pic_code(tmp_path: Path) -> None:
    """The control: without -fPIC the relocation check does fire."""
    src = tiny_project(tmp_path)
    subprocess.run(
        ["cc", "-O2", "-fno-pic", "-c", str(src / "tiny.c"), "-o", str(tmp_path / "t.o")],
        check=True,
    )
    assert absolute_relocations(tmp_path / "t.o")


@needs_toolchain
def test_make_build(tmp_path: Path) -> None:
    src = tiny_project(tmp_path, ("Makefile", MAKEFILE))
    result = run(spec("make", options=("MARK=from-options",)), src, tmp_path)
    assert result.returncode == 0, result.stderr
    prefix = tmp_path / "prefix"
    assert (prefix / "mark").read_text().strip() == "from-options"
    assert "libtiny.so.1" in result.stdout  # find -print: what was removed
    check_static_pic_hidden(prefix, tmp_path)


@needs_toolchain
def test_autotools_build_out_of_tree(tmp_path: Path) -> None:
    src = tiny_project(tmp_path, ("Makefile.in", MAKEFILE), ("configure", CONFIGURE))
    (src / "configure").chmod(0o755)
    result = run(spec("autotools", options=("--disable-docs",)), src, tmp_path)
    assert result.returncode == 0, result.stderr
    prefix = tmp_path / "prefix"
    args = (tmp_path / "build dir" / "configure.args").read_text().split("\n")
    assert args[:5] == [
        f"--prefix={prefix}",
        "--enable-static",
        "--disable-shared",
        "--with-pic",
        "--disable-docs",
    ]
    assert not (src / "tiny.o").exists()  # built in build_dir
    check_static_pic_hidden(prefix, tmp_path)


@needs_toolchain
@pytest.mark.parametrize(
    ("system", "build_file", "text", "tools"),
    [
        ("cmake", "CMakeLists.txt", CMAKELISTS, ("cmake",)),
        ("meson", "meson.build", MESON_BUILD, ("meson", "ninja")),
    ],
)
def test_cmake_and_meson_builds(
    system: str, build_file: str, text: str, tools: tuple[str, ...], tmp_path: Path
) -> None:
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)}")
    src = tiny_project(tmp_path, (build_file, text))
    result = run(spec(system), src, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    check_static_pic_hidden(tmp_path / "prefix", tmp_path)


@needs_toolchain
@pytest.mark.skipif(not shutil.which("cmake"), reason="needs cmake")
def test_script_build_with_helper_arrays_and_awkward_paths(tmp_path: Path) -> None:
    root = tmp_path / "it's"  # quotes and spaces in the source and build dirs
    sub = CMAKELISTS.replace("tiny tiny.c", "tiny ../tiny.c").replace(
        "FILES tiny.h", "FILES ../tiny.h"
    )
    src = tiny_project(root / "the source", ("sub/CMakeLists.txt", sub))
    script = textwrap.dedent("""\
        test "$PWD" = "$SRC_DIR"
        printf '%s\\n' "$JOBS" "$WEIRD" ${ORCH_OPTIONS[@]+"${ORCH_OPTIONS[@]}"} > "$PREFIX/../seen"
        cmake -S "$SRC_DIR/sub" -B "$BUILD_DIR" "${ORCH_CMAKE_ARGS[@]}"
        cmake --build "$BUILD_DIR" -j "$JOBS"
        cmake --install "$BUILD_DIR"
        exit 0
        """)
    dep = spec(
        "script",
        script=script,
        options=("two words", "$NOT_EXPANDED"),
        env=(("WEIRD", 'it\'s "odd" $HOME'),),
    )
    result = run(dep, src, root, prefix=tmp_path / "prefix")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "seen").read_text().splitlines() == [
        "2",
        'it\'s "odd" $HOME',
        "two words",
        "$NOT_EXPANDED",
    ]
    check_static_pic_hidden(tmp_path / "prefix", tmp_path)


@needs_toolchain
def test_missing_export_fails_even_after_exit_0(tmp_path: Path) -> None:
    src = tiny_project(tmp_path, ("Makefile", MAKEFILE))
    dep = spec(
        "script",
        script='make PREFIX="$PREFIX" SRCDIR= install\nexit 0\n',
        exports=Exports(libs=("tiny", "nothere")),
    )
    result = run(dep, src, tmp_path)
    assert result.returncode == 1
    assert "libnothere.a" in result.stderr and "exports.libs" in result.stderr
    assert "libtiny.a" in result.stderr  # the listing of what is there
    assert not (tmp_path / "prefix" / "lib" / "libtiny.so").exists()  # cleanup ran first
