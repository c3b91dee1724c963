"""Accelerated emulated builds (orchestrator/emulation/accel.py): the target's cross compiler from an
amd64 root, run natively inside the emulated build container.

Unit tests need nothing. The others (docker, emulated) use the aarch64 build image and the
cross root (built once, about a minute, in $ORCH_CROSS_DIR or the orch cache). Where a test
must prove that the cross compiler did the work, the image's own compiler is made
unexecutable in that throw-away container first: a build that still succeeds cannot have
used it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shlex
import shutil
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from elftools.elf.elffile import ELFFile

from orchestrator import archs
from orchestrator.container import engine
from orchestrator.emulation import accel, cross_root, llvm_root
from orchestrator.emulation.accel import Accel, Fallback
from orchestrator.errors import ConfigError, EnvironmentProblem, OrchError
from orchestrator.images.local import ensure_local_image
from tests.support.depworld import write_recipe
from tests.support.run import EXAMPLES, orch, wheel_platforms, wheel_stem

ON_X86 = archs.host_arch() == "x86_64"
needs_x86 = pytest.mark.skipif(not ON_X86, reason="cross roots are amd64: x86_64 hosts only")
TRIPLET = "aarch64-linux-gnu"
WRAPPERS = accel.WRAPPER_DIR
MIRROR_ENV = "ORCH_TEST_LIBRARY_MIRROR"
# The image's own compiler, made unexecutable where a test proves the cross one was used.
NATIVE_COMPILER = (
    f"/usr/bin/{TRIPLET}-gcc-10 /usr/bin/{TRIPLET}-g++-10 /usr/bin/{TRIPLET}-cpp-10 "
    f"/usr/lib/gcc/{TRIPLET}/10/cc1 /usr/lib/gcc/{TRIPLET}/10/cc1plus"
)


# --- unit tests -------------------------------------------------------------------------


def test_definition_names_debian_cross_packages() -> None:
    defn = cross_root.load_definition("bullseye")
    assert defn is not None
    assert defn.compiler_package == "gcc-10" and defn.gcc_major == "10"
    expect = {
        "aarch64": "aarch64-linux-gnu",
        "ppc64le": "powerpc64le-linux-gnu",
        "s390x": "s390x-linux-gnu",
        "armv7l": "arm-linux-gnueabihf",
    }
    assert set(defn.archs) == set(expect)  # i686 runs natively on x86_64: nothing to do
    for arch, triplet in expect.items():
        pkgs = defn.packages_for(archs.get(arch))
        assert pkgs[:3] == [f"gcc-{triplet}", f"g++-{triplet}", f"binutils-{triplet}"]
        assert {"xz-utils", "bzip2"} <= set(pkgs)  # tools that run natively too
        assert defn.cross_compiler_package(archs.get(arch)) == f"gcc-10-{triplet}"
    assert cross_root.load_definition("no-such-suite") is None


def test_root_key_follows_definition_and_arch() -> None:
    defn = cross_root.load_definition("bullseye")
    assert defn is not None
    arm, ppc = archs.get("aarch64"), archs.get("ppc64le")
    key = cross_root.root_key(defn, arm)
    assert key == cross_root.root_key(defn, arm)
    assert key != cross_root.root_key(defn, ppc)
    edited = dataclasses.replace(defn, text=defn.text + "\n# edited\n")
    assert key != cross_root.root_key(edited, arm)


def test_cross_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(cross_root.ENV_CROSS_DIR, raising=False)
    assert cross_root.cross_dir() == tmp_path / "cache" / "cross"
    monkeypatch.setenv(cross_root.ENV_CROSS_DIR, str(tmp_path / "shared"))
    assert cross_root.cross_dir() == tmp_path / "shared"


def test_resolve_in_root_stays_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/lib64").mkdir(parents=True)
    (root / "usr/lib/x86_64-linux-gnu/ld-2.31.so").write_bytes(b"\x7fELF")
    (root / "lib").symlink_to("usr/lib")
    (root / "lib64").symlink_to("usr/lib64")
    # absolute, as Debian ships it: resolved on the host it would reach the host's /lib
    (root / "usr/lib64/ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-2.31.so")
    got = cross_root.resolve_in_root(root, "lib64/ld-linux-x86-64.so.2")
    assert got == root / "usr/lib/x86_64-linux-gnu/ld-2.31.so"
    (root / "loop").symlink_to("/loop")
    with pytest.raises(OrchError, match="too many symbolic links"):
        cross_root.resolve_in_root(root, "loop/x")


def test_wrappers(tmp_path: Path) -> None:
    defn = cross_root.load_definition("bullseye")
    assert defn is not None
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    for tool in ("ar", "ranlib", "ld", "gcc-ar"):
        (root / "usr/bin" / f"{TRIPLET}-{tool}").write_text("")
    cross_root._write_wrappers(root, defn, archs.get("aarch64"))
    bindir = root / cross_root.WRAPPER_SUBDIR
    gcc = (bindir / "gcc").read_text().splitlines()
    assert gcc[0] == "#!/opt/orch-cross/usr/bin/dash"  # the root's amd64 shell, not QEMU's
    assert gcc[1] == (
        f'exec /opt/orch-cross/usr/bin/{TRIPLET}-gcc-10 -idirafter /usr/include/{TRIPLET} "$@"'
    )
    assert f"{TRIPLET}-g++-10 " in (bindir / "c++").read_text()
    for name in ("cc", "cpp", "g++", f"{TRIPLET}-gcc", f"{TRIPLET}-g++", "gcc-10"):
        assert os.access(bindir / name, os.X_OK), name
    assert os.readlink(bindir / "ar") == f"/opt/orch-cross/usr/bin/{TRIPLET}-ar"
    assert os.readlink(bindir / f"{TRIPLET}-gcc-ar") == f"/opt/orch-cross/usr/bin/{TRIPLET}-gcc-ar"
    assert not (bindir / "ld.gold").exists()  # only tools the root has


def test_native_tools_only_for_little_endian_targets(tmp_path: Path) -> None:
    defn = cross_root.load_definition("bullseye")
    assert defn is not None
    for arch in ("aarch64", "s390x"):
        root = tmp_path / arch
        (root / "usr/bin").mkdir(parents=True)
        for program in ("dash", "sed", "mawk", "uname", "make", "bash"):
            (root / "usr/bin" / program).write_text("")
        cross_root._write_wrappers(root, defn, archs.get(arch))
        bindir = root / cross_root.WRAPPER_SUBDIR
        linked = {
            p.name for p in bindir.iterdir() if p.is_symlink() and "-linux-" not in os.readlink(p)
        }
        if arch == "aarch64":
            assert linked == {"dash", "sh", "sed", "mawk", "awk"}
            assert os.readlink(bindir / "sh") == "/opt/orch-cross/usr/bin/dash"
        else:  # big-endian: the native C library cannot read the image's locale files
            assert linked == set()
    # the host's CPU would show through these: they never run natively
    assert not {"uname", "arch", "bash", "make", "pkg-config", "perl", "od"} & set(
        cross_root.NATIVE_TOOLS
    )


def test_concurrent_callers_build_the_root_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock and the second look under it: a slow build is not repeated by a caller that
    waited for it (debootstrap itself is exercised by the engine tests below)."""
    monkeypatch.setenv(cross_root.ENV_CROSS_DIR, str(tmp_path))
    calls: list[str] = []

    def slow_build(defn: Any, arch: Any, path: Path, log: Any) -> cross_root.CrossRoot:
        calls.append(path.name)
        time.sleep(0.5)
        (path / "orch").mkdir(parents=True)
        manifest = {"arch": arch.name, "triplet": arch.triplet, "key": "k", "loader": "l",
                    "gcc_version": "10.2.1", "package_version": "10.2.1-6cross1",
                    "native_tools": True, "dash_version": "0.5.11"}  # fmt: skip
        (path / cross_root.MANIFEST).write_text(json.dumps(manifest))
        found = cross_root.load_root(path)
        assert found is not None
        return found

    monkeypatch.setattr(cross_root, "_build", slow_build)
    with ThreadPoolExecutor(2) as pool:
        roots = list(pool.map(lambda _: cross_root.ensure_root("aarch64"), range(2)))
    assert len(calls) == 1 and roots[0] == roots[1]
    assert roots[0].native_equivalent == "10.2.1-6"


def _fake_accel() -> Accel:
    return Accel(
        arch="aarch64",
        triplet=TRIPLET,
        root=Path("/nowhere"),
        mounts=[],
        env={"PATH": WRAPPERS, "ORCH_X": "accel"},
        image_path="/usr/sbin:/usr/bin",
        gcc_version="10.2.1",
        package_version="10.2.1-6cross1",
        key="0" * 64,
        native_tools=True,
    )


def test_apply_puts_wrappers_first_once() -> None:
    a = _fake_accel()
    env = accel.apply(a, {"PATH": "/opt/python/cp39-cp39/bin:/usr/bin", "ORCH_X": "user"})
    assert env["PATH"] == f"{WRAPPERS}:/opt/python/cp39-cp39/bin:/usr/bin"
    assert env["ORCH_X"] == "user"  # a variable the caller sets wins
    assert accel.apply(a, env) == env
    assert accel.apply(a, {})["PATH"] == f"{WRAPPERS}:/usr/sbin:/usr/bin"  # the image's PATH
    base = {"PATH": "/usr/bin"}
    assert accel.apply(Fallback("x"), base) == base
    assert accel.apply(None, base) is not base


IMAGE_TOOLS = {"cmake": "3.18.4-2+deb11u1", "make": "4.3-4.1", "ninja-build": "1.10.1-1"}


def _tool_root(tmp_path: Path, name: str, programs: tuple[str, ...]) -> Path:
    root = tmp_path / name
    (root / "usr/bin").mkdir(parents=True)
    for program in programs:
        (root / "usr/bin" / program).write_bytes(b"")
    return root


def test_build_tools_only_of_the_images_own_release(tmp_path: Path) -> None:
    """cmake/make/ninja are mounted over the image's only from a root holding the same
    Debian version; make brings the image's $(MAKE_HOST) along."""
    root = _tool_root(tmp_path, "r", ("cmake", "make", "ninja"))
    versions = {**IMAGE_TOOLS, "cmake": "3.18.4-2"}  # the root's cmake is another revision
    host = "aarch64-unknown-linux-gnu"
    out = accel.with_build_tools(_fake_accel(), IMAGE_TOOLS, host, [(root, versions)])
    assert out.build_tools == ("make", "ninja")
    targets = {m.target: m.source for m in out.mounts}
    assert targets == {"/usr/bin/make": str(root / "usr/bin/make"), "/usr/bin/ninja": str(root / "usr/bin/ninja")}  # fmt: skip
    assert out.env["MAKE_HOST"] == host and out.env["PATH"] == WRAPPERS
    assert accel.apply(out, {})["MAKE_HOST"] == host
    assert "make/ninja of the image's release" in out.describe()
    # the second source supplies what the first lacks; an unknown MAKE_HOST keeps make emulated
    other = _tool_root(tmp_path, "o", ("cmake",))
    out = accel.with_build_tools(
        _fake_accel(), IMAGE_TOOLS, "", [(root, versions), (other, IMAGE_TOOLS)]
    )
    assert out.build_tools == ("cmake", "ninja") and "MAKE_HOST" not in out.env
    assert {m.source for m in out.mounts} == {str(other / "usr/bin/cmake"), str(root / "usr/bin/ninja")}  # fmt: skip
    # a program the mounted libraries cannot start is skipped
    out = accel.with_build_tools(
        _fake_accel(), IMAGE_TOOLS, host, [(root, IMAGE_TOOLS)], lambda p: p.name != "cmake"
    )
    assert out.build_tools == ("make", "ninja")


def _locale_root(tmp_path: Path, libc: str, locales: tuple[str, ...]) -> Path:
    root = _tool_root(tmp_path, "lr", ("cmake", "make", "ninja"))
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        f"Package: libc6\nVersion: 0\n\nPackage: libc-bin\nStatus: install ok\nVersion: {libc}\n"
    )
    for name in locales:
        (root / "usr/lib/locale" / name).mkdir(parents=True)
    return root


def test_big_endian_build_tools_need_the_images_locales_in_the_root(tmp_path: Path) -> None:
    """s390x: cmake and make (they call setlocale) run natively only where the root holds
    the same libc-bin and compiled locales as the image: LOCPATH names the root's
    little-endian copy first; ninja reads no locale and needs nothing."""
    root = _locale_root(tmp_path, "2.36-9+deb12u14", ("C.utf8",))
    assert cross_root.locale_facts(root) == ("2.36-9+deb12u14", frozenset({"C.utf8"}))
    s390x = dataclasses.replace(_fake_accel(), arch="s390x", triplet="s390x-linux-gnu", root=root)
    same = [(root, IMAGE_TOOLS)]
    host = "s390x-ibm-linux-gnu"
    locale = ("2.36-9+deb12u14", frozenset({"C.utf8"}))
    out = accel.with_build_tools(s390x, IMAGE_TOOLS, host, same, locale=locale)
    assert out.build_tools == ("cmake", "make", "ninja")
    assert out.env["LOCPATH"] == "/opt/orch-cross/usr/lib/locale:/usr/lib/locale"
    assert out.env["MAKE_HOST"] == host
    assert out.describe().endswith("of the image's release (little-endian locale data)")
    check = accel._c_locale_check(out)
    assert "/opt/orch-cross/usr/bin/locale charmap" in check and "$(locale charmap" in check
    llvm = dataclasses.replace(s390x, compiler=accel.LLVM)
    got = accel.with_build_tools(llvm, IMAGE_TOOLS, host, same, locale=locale)
    assert got.env["LOCPATH"] == f"{llvm_root.PREFIX}/usr/lib/locale:/usr/lib/locale"
    # another libc-bin, another locale set (a locale-archive), or a probe that could not say:
    # only ninja runs natively, and nothing about the locale is set
    for other in (
        ("2.36-9+deb12u13", frozenset({"C.utf8"})),
        ("2.36-9+deb12u14", frozenset({"C.utf8", "locale-archive"})),
        ("", frozenset()),
    ):
        out = accel.with_build_tools(s390x, IMAGE_TOOLS, host, same, locale=other)
        assert out.build_tools == ("ninja",) and "LOCPATH" not in out.env, other
        assert "MAKE_HOST" not in out.env and accel._c_locale_check(out) == ""
        assert "cmake/make emulated: the image's locales" in out.describe()  # and why
    # little-endian targets read the image's locale files themselves: no LOCPATH, no check
    little = accel.with_build_tools(_fake_accel(), IMAGE_TOOLS, "aarch64-x", same)
    assert little.build_tools == ("cmake", "make", "ninja") and "LOCPATH" not in little.env
    assert accel._c_locale_check(little) == "" and "locale" not in little.describe()


def test_probe_answers_become_locale_facts() -> None:
    lines = ["libc=2.36-9+deb12u14", "locales=C.utf8 ", "tool.make=4.3-4.1"]
    assert accel._locale_fields(lines) == ("2.36-9+deb12u14", frozenset({"C.utf8"}))
    assert accel._locale_fields([]) == ("", frozenset())
    assert "libc-bin" in accel._TOOL_SCRIPT and "/usr/lib/locale" in accel._TOOL_SCRIPT


def test_build_tools_stay_emulated_when_absent(tmp_path: Path) -> None:
    root = _tool_root(tmp_path, "r", ("cmake", "make", "ninja"))
    plain = _fake_accel()
    assert accel.with_build_tools(plain, {}, "x", [(root, IMAGE_TOOLS)]) == plain
    assert "cmake" not in plain.describe()


def test_probe_answers_become_tool_versions() -> None:
    lines = ["tool.cmake=3.25.1-1", "tool.make=", "tool.ninja-build=1.11.1-2", "make_host=x"]
    assert accel._tool_fields(lines) == {"cmake": "3.25.1-1", "ninja-build": "1.11.1-2"}
    assert "MAKE_HOST := " in accel._TOOL_SCRIPT and "tool.ninja-build=" in accel._TOOL_SCRIPT


def test_needed_libraries_of_a_host_program() -> None:
    needed = cross_root.needed_libraries(Path(shutil.which("sh") or "/bin/sh"))
    assert "libc.so.6" in needed


def test_modes() -> None:
    assert accel.normalize_mode("off") == "plain"
    assert accel.normalize_mode("on") == "accelerated"
    with pytest.raises(ConfigError):
        accel.normalize_mode("fast")


def _image(labels: dict[str, str], architecture: str = "arm64") -> engine.ImageInfo:
    return engine.ImageInfo("img:1", "sha256:1", architecture, "", labels, {}, ())


@needs_x86
def test_plan_falls_back_with_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cross gcc's reasons (LLVM, tried next, has its own tests: test_llvm.py)."""
    monkeypatch.setattr(accel, "_PLANNERS", ((accel.GCC_CROSS, accel._plan),))
    local = {"io.orch.image": "local", "io.orch.suite": "bullseye"}
    pypa = accel.plan_accel("aarch64", _image({}))
    assert isinstance(pypa, Fallback) and "devtoolset" in pypa.reason
    with pytest.raises(EnvironmentProblem, match="devtoolset"):
        accel.plan_accel("aarch64", _image({}), "accelerated")
    assert accel.plan_accel("aarch64", _image(local), "plain") == Fallback("--emulation=plain")
    native = accel.plan_accel("x86_64", _image(local, "amd64"), "accelerated")
    assert isinstance(native, Fallback) and "natively" in native.reason
    other = accel.plan_accel("aarch64", _image({**local, "io.orch.suite": "sid"}))
    assert isinstance(other, Fallback) and "no cross toolchain" in other.reason
    wrong = accel.plan_accel("aarch64", _image(local, "ppc64le"))
    assert isinstance(wrong, Fallback) and "not arm64" in wrong.reason


# --- in the aarch64 build image ----------------------------------------------------------


@pytest.fixture(scope="module")
def shared_cross_dir() -> Iterator[Path]:
    """One cross root for every test, even those that start from an empty orch cache."""
    path = cross_root.cross_dir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cross_root.ENV_CROSS_DIR, str(path))
        yield path


@pytest.fixture(scope="module")
def arm_image() -> engine.ImageInfo:
    return ensure_local_image("aarch64", "build")


@pytest.fixture(scope="module")
def arm_accel(shared_cross_dir: Path, arm_image: engine.ImageInfo) -> Accel:
    plan = accel.plan_accel("aarch64", arm_image, "accelerated")
    assert isinstance(plan, Accel)
    return plan


class Box:
    """A container of the image, with the accel mounts when given."""

    def __init__(self, image: engine.ImageInfo, plan: Accel | None) -> None:
        base = {"PATH": f"/opt/python/cp39-cp39/bin:{image.env.get('PATH', accel.DEFAULT_PATH)}"}
        self.env = accel.apply(plan, base)
        self.c = engine.create_container(
            image.ref,
            env=self.env,
            mounts=plan.mounts if plan else [],
            platform=engine.image_platform_string(image),
            labels={engine.LABEL_JOB: "test-accel"},
        )

    def sh(self, script: str, ok: bool = True) -> str:
        chunks: list[bytes] = []
        res = engine.exec_stream(self.c, ["bash", "-euo", "pipefail", "-c", script], chunks.append)
        out = b"".join(chunks).decode(errors="replace")
        if ok:
            assert res.exit_code == 0, out[-4000:]
        return out

    def timed(self, script: str) -> float:
        """Seconds the command took, timed inside the container (no exec overhead)."""
        out = self.sh(f"date +%s.%N; ( {script} ) > /dev/null 2>&1; date +%s.%N").split()
        return float(out[-1]) - float(out[-2])

    def close(self) -> None:
        engine.remove_container(self.c)


@pytest.fixture()
def box(arm_image: engine.ImageInfo, arm_accel: Accel) -> Iterator[Box]:
    b = Box(arm_image, arm_accel)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture()
def cross_only(box: Box) -> Box:
    """The accelerated box with the image's own compiler unexecutable."""
    box.sh(f"chmod a-x {NATIVE_COMPILER}")
    return box


C_PROGRAM = r"""
#include <Python.h>
#include <bzlib.h>
#include <zlib.h>
#include <stdio.h>
static unsigned mix(const char *s) { unsigned h = 2166136261u; while (*s) h = (h ^ (unsigned char)*s++) * 16777619u; return h; }
int main(void) {
    printf("%s %s %u %d\n", BZ2_bzlibVersion(), zlibVersion(), mix("orch"), PY_MAJOR_VERSION);
    return 0;
}
"""
PY_FLAGS = "-I/usr/include/python3.9 -O2 -Wall"


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_x86_compiler_runs_natively_in_the_arm64_container(box: Box) -> None:
    out = box.sh(
        "/opt/orch-cross/usr/bin/uname -m; uname -m; command -v gcc; gcc -dumpmachine; "
        f'file -bL /opt/orch-cross/usr/bin/{TRIPLET}-gcc-10; file -bL "$(gcc -print-prog-name=cc1)"; '
        f"command -v {TRIPLET}-gcc cc c++ ar ld; file -bL /bin/sh; sh -c 'uname -m'"
    ).splitlines()
    assert out[0] == "x86_64"  # an amd64 program sees the real kernel: no QEMU in between
    assert out[1] == "aarch64"  # the container's own programs are emulated
    assert out[2] == f"{WRAPPERS}/gcc"
    assert out[3] == TRIPLET
    assert "x86-64" in out[4] and "x86-64" in out[5]
    assert all(line.startswith(f"{WRAPPERS}/") for line in out[6:11]), out
    assert "x86-64" in out[11]  # /bin/sh is the same dash release, built for amd64
    assert out[12] == "aarch64"  # and what it starts still sees the target


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_program_is_aarch64_runs_and_matches_the_images_gcc(box: Box) -> None:
    """Same source, same flags: the cross compiler's code is byte-identical to what the
    image's own (emulated) gcc makes, and about 20 times faster to get."""
    box.sh(f"mkdir -p /t && cat > /t/p.c <<'EOF'\n{C_PROGRAM}\nEOF")
    compile_cross = f"cd /t && gcc {PY_FLAGS} -c p.c -o cross.o"
    compile_image = f"cd /t && /usr/bin/{TRIPLET}-gcc-10 {PY_FLAGS} -c p.c -o image.o"
    box.sh(compile_cross + " && " + compile_image)
    box.sh(
        "cd /t && for o in cross image; do "
        f"{TRIPLET}-objcopy -O binary --only-section=.text $o.o $o.text; done && cmp cross.text image.text"
    )
    out = box.sh(
        "cd /t && gcc cross.o -o p -lbz2 -lz && ./p && file -b p && "
        "/opt/orch-cross/usr/bin/uname -m"
    ).splitlines()
    assert out[0].startswith("1.0.8") and out[0].endswith(" 3")
    assert "ARM aarch64" in out[1]
    cross = min(box.timed(compile_cross) for _ in range(3))
    image = min(box.timed(compile_image) for _ in range(2))
    print(f"compile p.c: accelerated {cross:.3f} s, emulated {image:.3f} s ({image / cross:.0f}x)")
    assert cross * 4 < image


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_pythons_configured_compilers_are_the_wrappers(box: Box) -> None:
    out = box.sh(
        "python -c 'import sysconfig as s; print(*(s.get_config_var(v).split()[0] "
        'for v in ("CC", "CXX", "LDSHARED", "AR")))\' | xargs -n1 sh -c \'command -v "$0"\''
    ).split()
    assert len(out) == 4 and all(p.startswith(f"{WRAPPERS}/{TRIPLET}-") for p in out), out


SETUP_PY = """\
from setuptools import Extension, setup
setup(name="accdemo", version="1.0", ext_modules=[
    Extension("accdemo", ["accdemo.c"], libraries=["bz2"]),
    Extension("accpp", ["accpp.cpp"], language="c++"),
])
"""
EXT_C = r"""
#include <Python.h>
#include <bzlib.h>
static PyObject *v(PyObject *s, PyObject *a) { return PyUnicode_FromString(BZ2_bzlibVersion()); }
static PyMethodDef m[] = {{"bz", v, METH_NOARGS, ""}, {0}};
static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "accdemo", 0, -1, m};
PyMODINIT_FUNC PyInit_accdemo(void) { return PyModule_Create(&d); }
"""
EXT_CPP = r"""
#include <Python.h>
#include <string>
#include <map>
static PyObject *v(PyObject *, PyObject *) {
    std::map<std::string, int> m{{"a", 1}, {"b", 2}};
    return PyLong_FromLong(m["a"] + m["b"]);
}
static PyMethodDef m[] = {{"three", v, METH_NOARGS, ""}, {nullptr}};
static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "accpp", nullptr, -1, m};
PyMODINIT_FUNC PyInit_accpp(void) { return PyModule_Create(&d); }
"""


def _write(box: Box, files: dict[str, str]) -> None:
    for path, text in files.items():
        box.sh(
            f"mkdir -p {shlex.quote(str(Path(path).parent))} && cat > {path} <<'EOF'\n{text}\nEOF"
        )


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_setuptools_extension_builds_with_the_cross_compiler_only(cross_only: Box) -> None:
    box = cross_only
    assert "Permission denied" in box.sh(f"/usr/bin/{TRIPLET}-gcc-10 --version 2>&1", ok=False)
    _write(box, {"/p/setup.py": SETUP_PY, "/p/accdemo.c": EXT_C, "/p/accpp.cpp": EXT_CPP})
    box.sh("cd /p && python -m build --wheel --no-isolation --outdir /p/dist . > /p/build.log 2>&1")
    out = box.sh(
        "cd /tmp && python -m pip install -q /p/dist/*.whl && "
        "python -c 'import accdemo, accpp; print(accdemo.bz(), accpp.three())' && "
        "file -b $(python -c 'import accdemo; print(accdemo.__file__)')"
    ).splitlines()
    assert out[-2] == "1.0.8, 13-Jul-2019 3"
    assert "ARM aarch64" in out[-1]


CMAKE_FILES = {
    "/cm/CMakeLists.txt": (
        "cmake_minimum_required(VERSION 3.13)\nproject(acc C CXX)\n"
        "add_library(sq STATIC sq.c cube.c)\nadd_executable(app app.cpp)\n"
        "target_link_libraries(app sq)\nfind_package(BZip2 REQUIRED)\n"
        "find_package(PkgConfig REQUIRED)\npkg_check_modules(Z REQUIRED zlib)\n"
        "try_run(RUNS BUILT ${CMAKE_BINARY_DIR}/tr ${CMAKE_SOURCE_DIR}/machine.c"
        " RUN_OUTPUT_VARIABLE MACHINE)\n"
        'file(WRITE ${CMAKE_BINARY_DIR}/facts "host=${CMAKE_HOST_SYSTEM_PROCESSOR}\\n'
        "system=${CMAKE_SYSTEM_PROCESSOR}\\nlibarch=${CMAKE_LIBRARY_ARCHITECTURE}\\n"
        "bz2=${BZIP2_LIBRARIES}\\nz=${Z_LINK_LIBRARIES}\\ntry_run=${RUNS} ${MACHINE}\\n"
        'pointer=${CMAKE_SIZEOF_VOID_P}\\n")\n'
    ),
    "/cm/sq.c": "int sq(int x) { return x * x; }\n",
    "/cm/cube.c": "int cube(int x) { return x * x * x; }\n",
    "/cm/machine.c": (
        "#include <stdio.h>\n#include <sys/utsname.h>\n"
        'int main(void) { struct utsname u; uname(&u); printf("%s", u.machine); return 0; }\n'
    ),
    "/cm/app.cpp": (
        '#include <iostream>\nextern "C" int sq(int);\n'
        'int main() { std::cout << "sq " << sq(7) << std::endl; }\n'
    ),
    "/cm/host.mk": "all:\n\t@echo make_host=$(MAKE_HOST)\n",
}
# What the two CMake runs must agree on: every fact CMake determined, the cache, what the
# generated Makefiles built (deterministic archives: same members, same bytes) and make's
# idea of its host.
CMAKE_RESULTS = (
    "cat /cm/b/facts; ar t /cm/b/libsq.a; cd /cm/b && sha256sum libsq.a app CMakeCache.txt "
    "CMakeFiles/*/CMakeSystem.cmake CMakeFiles/*/CMakeCCompiler.cmake "
    "CMakeFiles/*/CMakeCXXCompiler.cmake; make -s -f /cm/host.mk"
)


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_cmake_project(cross_only: Box, arm_image: engine.ImageInfo, arm_accel: Accel) -> None:
    """CMake and make of the image's release run natively and determine and build exactly
    what the image's own (emulated) cmake and make do: processor (from the image's uname),
    library architecture, find_package and pkg-config results, try_run (the target program
    runs emulated), the cache, byte-identical archives, and $(MAKE_HOST)."""
    assert set(arm_accel.build_tools) == {"cmake", "make", "ninja"}
    emulated = Box(arm_image, _without_build_tools(arm_accel))
    try:
        emulated.sh(f"chmod a-x {NATIVE_COMPILER}")
        results, kinds = {}, {}
        for name, box in (("native", cross_only), ("emulated", emulated)):
            _write(box, CMAKE_FILES)
            took = box.timed(
                "cmake -S /cm -B /cm/b -DCMAKE_BUILD_TYPE=Release && cmake --build /cm/b"
            )
            results[name] = box.sh(CMAKE_RESULTS)
            kinds[name] = box.sh("file -bL /usr/bin/cmake /usr/bin/make | cut -d, -f2")
            print(f"{name} cmake + make: {took:.1f} s")
    finally:
        emulated.close()
    assert kinds["native"].split() == ["x86-64", "x86-64"]
    assert kinds["emulated"].split() == ["ARM", "aarch64", "ARM", "aarch64"]
    assert results["native"] == results["emulated"]
    facts = results["native"]
    for want in ("host=aarch64", "system=aarch64", f"libarch={TRIPLET}", "try_run=0 aarch64"):
        assert want in facts.splitlines(), facts
    assert f"bz2=/usr/lib/{TRIPLET}/libbz2.so" in facts and "make_host=aarch64-" in facts
    assert "sq.c.o" in facts and "cube.c.o" in facts
    cache = cross_only.sh("grep -E '^CMAKE_(C_COMPILER|CXX_COMPILER|AR):' /cm/b/CMakeCache.txt")
    assert f"CMAKE_C_COMPILER:FILEPATH={WRAPPERS}/cc" in cache or f"={WRAPPERS}/gcc" in cache
    assert "CMAKE_AR:FILEPATH=/opt/orch-cross/" in cache
    out = cross_only.sh("/cm/b/app && file -b /cm/b/app").splitlines()
    assert out[0] == "sq 49" and "ARM aarch64" in out[1]


SNAPPY = "90f74bc1fbf78a6c56b3c4a082a05103b3a56bb17bca1a27e052ea11723292dc"  # 1.2.2, recipes/
SNAPPY_BUILD = (
    "mkdir -p /sn/src && tar -xzf /sn/in/snappy.tar.gz -C /sn/src --strip-components=1 && "
    "cmake -S /sn/src -B /sn/b -DCMAKE_BUILD_TYPE=Release -DCMAKE_POSITION_INDEPENDENT_CODE=ON "
    "-DSNAPPY_BUILD_TESTS=OFF -DSNAPPY_BUILD_BENCHMARKS=OFF -DCMAKE_INSTALL_PREFIX=/sn/p && "
    "cmake --build /sn/b -j2 && cmake --install /sn/b"
)
SNAPPY_RESULTS = (
    "ar t /sn/p/lib/libsnappy.a; cd /sn/b && grep -h PROCESSOR CMakeFiles/*/CMakeSystem.cmake; "
    "sha256sum CMakeCache.txt CMakeFiles/*/CMakeSystem.cmake config.h snappy-stubs-public.h; "
    "cd /sn/p && find . -type f | sort | xargs sha256sum"
)


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_cmake_dependency_native_equals_emulated(
    cross_only: Box, arm_image: engine.ImageInfo, arm_accel: Accel, tmp_path: Path
) -> None:
    """snappy (multi-deps' CMake dependency; source from $ORCH_TEST_LIBRARY_MIRROR) built
    and installed by the native and by the image's emulated cmake and make, compiling with
    the cross gcc both times: every installed file byte-identical (the archive, its
    members, the CMake config package), the same configure results and processor."""
    tarball = Path(os.environ.get(MIRROR_ENV, "/nonexistent")) / SNAPPY
    if not tarball.is_file():
        pytest.skip(f"{MIRROR_ENV} lacks snappy's source ({SNAPPY})")
    (tmp_path / "in").mkdir()
    shutil.copy(tarball, tmp_path / "in" / "snappy.tar.gz")
    emulated = Box(arm_image, _without_build_tools(arm_accel))
    try:
        emulated.sh(f"chmod a-x {NATIVE_COMPILER}")
        results = {}
        for name, box in (("native", cross_only), ("emulated", emulated)):
            box.sh("mkdir -p /sn")
            engine.put_tree(box.c, tmp_path / "in", "/sn", "in")
            took = box.timed(SNAPPY_BUILD)
            results[name] = box.sh(SNAPPY_RESULTS)
            print(f"snappy with {name} cmake and make: {took:.1f} s")
    finally:
        emulated.close()
    assert results["native"] == results["emulated"]
    assert "snappy.cc.o" in results["native"]
    assert 'CMAKE_HOST_SYSTEM_PROCESSOR "aarch64"' in results["native"]
    assert "lib/cmake/Snappy/SnappyTargets.cmake" in results["native"]


def _without_build_tools(plan: Accel) -> Accel:
    native = {f"/usr/bin/{p}" for programs in cross_root.BUILD_TOOLS.values() for p in programs}
    env = {k: v for k, v in plan.env.items() if k != "MAKE_HOST"}
    mounts = [m for m in plan.mounts if m.target not in native]
    return dataclasses.replace(plan, mounts=mounts, env=env, build_tools=())


AUTOTOOLS_FILES = {
    "/at/configure.ac": (
        "AC_INIT([acc], [1.0])\nAM_INIT_AUTOMAKE([foreign])\nAC_PROG_CC\nAC_PROG_RANLIB\n"
        "AC_CONFIG_HEADERS([config.h])\nAC_C_BIGENDIAN\nAC_CHECK_SIZEOF([long])\n"
        "AC_CHECK_HEADERS([sys/auxv.h cpuid.h immintrin.h arm_neon.h])\n"
        "AC_CHECK_FUNCS([getauxval clock_gettime])\nAC_CHECK_LIB([bz2], [BZ2_bzlibVersion])\n"
        "AC_RUN_IFELSE([AC_LANG_PROGRAM([], [return 0;])], [], [AC_MSG_ERROR([cannot run])])\n"
        "AC_CONFIG_FILES([Makefile])\nAC_OUTPUT\n"
    ),
    "/at/Makefile.am": "noinst_LIBRARIES = libsq.a\nlibsq_a_SOURCES = sq.c\nbin_PROGRAMS = hi\nhi_LDADD = libsq.a\n",
    "/at/sq.c": "int sq(int x) { return x * x; }\n",
    "/at/hi.c": (
        '#include "config.h"\n#include <stdio.h>\n#include <bzlib.h>\nint sq(int);\n'
        'int main(void) { printf("hi %d %s\\n", sq(6), BZ2_bzlibVersion()); return 0; }\n'
    ),
}


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_autotools_project(cross_only: Box, arm_image: engine.ImageInfo) -> None:
    """configure's test programs are compiled natively and run emulated (not a cross
    build); with the shell and text tools native too, configure finds exactly what it
    finds under plain emulation, and the objects are the same."""
    build = "cd /at && autoreconf -fi > log 2>&1 && ./configure > configure.out && make >> log 2>&1"
    compare = (
        "cd /at && cat config.h && for o in hi.o sq.o; do "
        "objcopy -O binary --only-section='.text*' $o /tmp/t && md5sum < /tmp/t; done"
    )
    plain = Box(arm_image, None)
    try:
        _write(plain, AUTOTOOLS_FILES)
        plain.sh(build)
        expected = plain.sh(compare)
    finally:
        plain.close()
    box = cross_only
    _write(box, AUTOTOOLS_FILES)
    box.sh(build)
    configure = box.sh("cat /at/configure.out")
    assert "checking whether we are cross compiling... no" in configure
    assert "checking for BZ2_bzlibVersion in -lbz2... yes" in configure
    status = box.sh("cat /at/config.status")
    assert "SHELL=${CONFIG_SHELL-/opt/orch-cross/usr/bin/dash}" in status  # native shell
    assert "#define SIZEOF_LONG 8" in expected and "/* #  undef WORDS_BIGENDIAN */" in expected
    assert "d41d8cd98f00b204e9800998ecf8427e" not in expected  # no empty code section
    assert box.sh(compare) == expected
    out = box.sh("/at/hi && file -b /at/hi").splitlines()
    assert out[0].startswith("hi 36 1.0.8") and "ARM aarch64" in out[1]


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_meson_project(cross_only: Box) -> None:
    box = cross_only
    _write(
        box,
        {
            "/ms/meson.build": "project('acc', 'c')\nexecutable('hi', 'hi.c')\n",
            "/ms/hi.c": '#include <stdio.h>\nint main(void) { puts("meson ok"); return 0; }\n',
        },
    )
    box.sh("cd /ms && meson setup b > log 2>&1 && ninja -C b >> log 2>&1")
    out = box.sh("/ms/b/hi && file -b /ms/b/hi").splitlines()
    assert out[0] == "meson ok" and "ARM aarch64" in out[1]


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_probe_refuses_what_it_cannot_accelerate(shared_cross_dir: Path) -> None:
    """The runtime image has no gcc-10: plain emulation, with the reason; forced, an error."""
    runtime = ensure_local_image("aarch64", "runtime")
    plan = accel.plan_accel("aarch64", runtime)
    assert isinstance(plan, Fallback) and "has no gcc-10" in plan.reason
    with pytest.raises(EnvironmentProblem, match="has no gcc-10"):
        accel.plan_accel("aarch64", runtime, "accelerated")


# --- whole builds: accelerated against plain ----------------------------------------------


def _so_text(wheel: Path) -> dict[str, bytes]:
    """The .text of each extension module of the wheel (not of the grafted libraries)."""
    texts = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.endswith(".so") and ".libs/" not in name:
                text = ELFFile(io.BytesIO(zf.read(name))).get_section_by_name(".text")
                assert text is not None, name
                texts[name] = text.data()
    assert texts, wheel
    return texts


def _build_both(recipe: Path, tmp: Path, *extra: str) -> dict[str, Path]:
    out = {}
    for mode in ("accelerated", "plain"):
        dest = tmp / f"wh-{mode}"
        proc = orch(
            "build", "-f", str(recipe), "-o", str(dest), "--plain", f"--emulation={mode}", *extra
        )
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        out[mode] = dest
    return out


def _check_report(dest: Path, mode: str) -> list[str]:
    report = json.loads((dest / ".orch" / "report.json").read_text())
    names = []
    for job in report["jobs"]:
        assert job["status"] == "ok" and job["emulated"] is True
        assert job["verify"] and all(v["status"] == "passed" for v in job["verify"])
        assert not [f for f in job["audit"]["findings"] if f["severity"] == "error"]
        log = Path(job["log"]).read_text()
        assert ("accelerated: native" in log) is (mode == "accelerated")
        names.append(job["wheel"]["filename"])
    return sorted(names)


DEPUSER_EXT = '{name = "depuser", sources = ["depuser.c"], libraries = ["orchb", "orcha", "orchc"]}'
DEPUSER_TEST = 'python -c "import depuser; assert depuser.total() == 142, depuser.total()"'


def _bz2_and_deps_project(tmp: Path, world_recipe: Path, world_project: Path) -> Path:
    """hello-bz2 (the image's shared libbz2, grafted by repair) plus a second extension on
    the world's static make dependencies: one build per mode covers both ways of linking."""
    proj = tmp / "hb"
    shutil.copytree(EXAMPLES / "hello-bz2", proj)
    shutil.copy(world_project / "depuser.c", proj / "depuser.c")
    pyproject = proj / "pyproject.toml"
    bz2_ext = 'libraries = ["bz2"]},\n'
    assert bz2_ext in pyproject.read_text()
    pyproject.write_text(pyproject.read_text().replace(bz2_ext, f"{bz2_ext}  {DEPUSER_EXT},\n"))
    recipe = yaml.safe_load((proj / "orch.yaml").read_text())
    recipe.update(archs=["aarch64"], python=["3.9"])
    recipe["dependencies"] = yaml.safe_load(world_recipe.read_text())["dependencies"]
    recipe["test"]["command"] += f" && {DEPUSER_TEST}"
    (proj / "orch.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return proj / "orch.yaml"


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_orch_build_accelerated_equals_plain(  # type: ignore[no-untyped-def]
    shared_cross_dir: Path, world, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hello-bz2 with an extension on static (make) dependencies, for aarch64 both ways:
    same wheel name and tags, both audited and verified (tests run in the emulated runtime
    image), separate dependency cache keys, and the same machine code."""
    monkeypatch.setenv(cross_root.ENV_CROSS_DIR, str(shared_cross_dir))
    tmp, base, tarballs, world_project = world
    recipe = _bz2_and_deps_project(tmp, write_recipe(tmp, base, tarballs), world_project)
    out = _build_both(recipe, tmp)
    names = {mode: _check_report(dest, mode) for mode, dest in out.items()}
    assert names["accelerated"] == names["plain"]
    (name,) = names["plain"]
    assert wheel_stem(name) == "orch_example_bzdemo-1.0.0-cp39-cp39"
    assert "manylinux_2_31_aarch64" in wheel_platforms(name)
    for mode, dest in out.items():
        report = json.loads((dest / ".orch" / "report.json").read_text())
        # separate cache keys: the plain run rebuilt what the accelerated one had built
        assert {d["status"] for d in report["deps"]} == {"built"}, mode
        assert {d["name"] for d in report["deps"]} == {"orcha", "orchb", "orchc"}, mode
    wheels = {mode: next(dest.glob("*.whl")) for mode, dest in out.items()}
    audit = orch("audit", str(wheels["accelerated"]))
    assert audit.returncode == 0, audit.stdout + audit.stderr
    texts = {mode: _so_text(wheel) for mode, wheel in wheels.items()}
    assert {Path(n).name.split(".")[0] for n in texts["plain"]} == {"_bzdemo", "depuser"}
    assert texts["accelerated"] == texts["plain"]


def _missing_sources(mirror: Path, project: Path) -> list[str]:
    """The dependencies of the project whose source is not in the mirror directory."""
    recipes = Path(__file__).resolve().parents[1] / "recipes"
    uses = [d["use"] for d in yaml.safe_load((project / "orch.yaml").read_text())["dependencies"]]
    missing = []
    for name in uses:
        src = yaml.safe_load((recipes / f"{name}.yaml").read_text())["source"]
        if not ((mirror / src["sha256"]).is_file() or (mirror / src["filename"]).is_file()):
            missing.append(name)
    return missing


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_multi_deps_accelerated_equals_plain(
    shared_cross_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    mirror = Path(os.environ.get(MIRROR_ENV, "/nonexistent"))
    missing = _missing_sources(mirror, EXAMPLES / "multi-deps") if mirror.is_dir() else ["all"]
    if missing:
        pytest.skip(f"{MIRROR_ENV} lacks the sources of {', '.join(missing)}")
    proj = tmp_path / "md"
    shutil.copytree(EXAMPLES / "multi-deps", proj)
    recipe = proj / "orch.yaml"
    text = recipe.read_text().replace("archs: [x86_64]", "archs: [aarch64]")
    recipe.write_text(text + f"mirrors:\n  - directory: {mirror}\n")
    out = _build_both(recipe, tmp_path, "--only", "cp39-*")
    names = {mode: _check_report(dest, mode) for mode, dest in out.items()}
    assert names["accelerated"] == names["plain"]
    wheels = {mode: next(dest.glob("*.whl")) for mode, dest in out.items()}
    assert _so_text(wheels["accelerated"]) == _so_text(wheels["plain"])
