"""Opt-in: build every recipe of orch's library (recipes/*.yaml) from real tarballs.

Upstream hosts are not reachable from tests, so the tarballs come from a local mirror
directory named by ``ORCH_TEST_LIBRARY_MIRROR`` (files named by sha256 or by filename,
as orch's own ``mirrors: [{directory: ...}]``). Without it the tests skip; a recipe
whose tarball (or a requirement's) is missing from the mirror skips too.

All recipes whose tarballs are in the mirror are built by one real `orch build` (each
dependency in its own container of the local manylinux_2_31 x86_64 image, in DAG order);
each cached artifact must then hold static, position-independent archives for its
exports, no shared library, and nothing exported once linked with --exclude-libs.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from orchestrator.deps.buildsys import EXCLUDE_LIBS
from orchestrator.recipe.load import load_dependency_file
from orchestrator.recipe.model import DependencySpec
from tests.support.run import orch
from tests.support.standins import needing_stand_ins, source_in_mirror, use_entry, with_stand_ins

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
MIRROR_ENV = "ORCH_TEST_LIBRARY_MIRROR"

pytestmark = [pytest.mark.optin, pytest.mark.slow, pytest.mark.docker]

# Defined by the linker in every shared object, not by the archive under test.
LINKER_SYMBOLS = frozenset({"_init", "_fini", "_edata", "_end", "__bss_start"})


# --- the library -------------------------------------------------------------------------


def library() -> dict[str, DependencySpec]:
    return {spec.name: spec for spec in map(load_dependency_file, sorted(RECIPES.glob("*.yaml")))}


def with_requirements(name: str, specs: dict[str, DependencySpec]) -> list[DependencySpec]:
    """``name`` and everything it requires, requirements first."""
    order: list[DependencySpec] = []

    def visit(n: str, path: tuple[str, ...]) -> None:
        assert n not in path, f"dependency cycle: {' -> '.join((*path, n))}"
        if any(s.name == n for s in order):
            return
        for r in specs[n].requires:
            visit(r, (*path, n))
        order.append(specs[n])

    visit(name, ())
    return order


# --- the builder: orch itself, in the local manylinux_2_31 x86_64 image -------------------


PROJECT_SETUP = """\
from setuptools import Extension, setup
setup(name="libprobe", version="1.0", ext_modules=[Extension("libprobe", ["libprobe.c"])])
"""
PROJECT_C = """\
#include <Python.h>
static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "libprobe", 0, -1, 0};
PyMODINIT_FUNC PyInit_libprobe(void) { return PyModule_Create(&d); }
"""


def build_library_with_orch(
    names: list[str], mirror: Path, work: Path
) -> tuple[dict[str, Any], Path]:
    """One `orch build` whose recipe uses every named library recipe: each dependency is
    fetched from the mirror and built in its own container; returns (report, cache dir)."""
    project = work / "probe"
    project.mkdir(parents=True)
    (project / "setup.py").write_text(PROJECT_SETUP)
    (project / "libprobe.c").write_text(PROJECT_C)
    recipe = work / "orch.yaml"
    specs = library()
    uses = "".join(use_entry(n) for n in names)
    stand_in = needing_stand_ins(mirror, (specs[n] for n in names))
    recipe.write_text(
        "schema: 1\nproject: probe\npython: ['3.9']\ndependencies:\n"
        + with_stand_ins(uses, stand_in)
    )
    cache = work / "cache"
    proc = orch(
        *("build", "-f", str(recipe), "-o", str(work / "wh"), "--plain", "--no-verify"),
        env={"ORCH_CACHE_DIR": str(cache), "ORCH_SOURCE_MIRROR": str(mirror)},
        timeout=5400,
    )
    report = json.loads((work / "wh" / ".orch" / "report.json").read_text())
    report["_output"] = proc.stdout + proc.stderr
    return report, cache


def extract_artifact(cache: Path, key: str, prefix: Path) -> None:
    artifact = next(cache.glob(f"deps/*/{key}/artifact.tar.gz"))
    prefix.mkdir(parents=True, exist_ok=True)
    with tarfile.open(artifact) as tar:
        tar.extractall(prefix, filter="data")


# --- tests ---------------------------------------------------------------------------------


def test_library_is_a_dag_of_known_names() -> None:
    specs = library()
    assert len(specs) >= 14
    for name in specs:
        for dep in with_requirements(name, specs):
            assert dep.name in specs


@pytest.fixture(scope="module")
def mirror() -> Path:
    value = os.environ.get(MIRROR_ENV)
    if not value:
        pytest.skip(f"set {MIRROR_ENV}=/path/to/mirror to build the recipe library")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{MIRROR_ENV}={value} is not a directory")
    return path


@pytest.fixture(scope="module")
def library_build(
    mirror: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], Path]:
    specs = library()
    buildable = [
        n
        for n in sorted(specs)
        if all(source_in_mirror(mirror, d) for d in with_requirements(n, specs))
    ]
    if not buildable:
        pytest.fail(f"no recipe's tarball is in {mirror}")
    return build_library_with_orch(buildable, mirror, tmp_path_factory.mktemp("library"))


@pytest.mark.parametrize("name", sorted(library()))
def test_recipe_builds_static_pic(
    name: str, mirror: Path, library_build: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    specs = library()
    chain = with_requirements(name, specs)
    missing = [
        f"{d.name} ({d.source.filename})" for d in chain if source_in_mirror(mirror, d) is None
    ]
    if missing:
        pytest.skip(f"not in the mirror: {', '.join(missing)}")
    report, cache = library_build
    deps = {d["name"]: d for d in report["deps"]}
    assert deps[name]["status"] == "built", report["_output"][-4000:]
    prefix = tmp_path / "prefix"
    for dep in chain:  # the dependency's own artifact plus its requirements' (for pkg-config)
        extract_artifact(cache, deps[dep.name]["key"], prefix)
    check_installed(specs[name], prefix, tmp_path)
    if name in CONFIG_PACKAGES:
        check_cmake_config(CONFIG_PACKAGES[name], prefix)


# The CMake config packages the C++ recipes install: what find_package(NAME CONFIG) reads
# in an Arrow-style consumer (the other recipes' `cmake` exports are CMake find modules).
CONFIG_PACKAGES = {
    "abseil-cpp": "absl",
    "re2": "re2",
    "protobuf": "protobuf",
    "utf8proc": "utf8proc",
    "thrift": "Thrift",
    "gflags": "gflags",
    "c-ares": "c-ares",
    "rapidjson": "RapidJSON",
    "xsimd": "xsimd",
    "snappy": "Snappy",
}


def check_cmake_config(package: str, prefix: Path) -> None:
    names = {f"{package}Config.cmake", f"{package.lower()}-config.cmake"}
    found = [p for p in prefix.rglob("*.cmake") if p.name in names]
    assert found, f"no {' or '.join(sorted(names))} under {prefix}"


def check_installed(dep: DependencySpec, prefix: Path, tmp_path: Path) -> None:
    lib = prefix / "lib"
    shared = [p for p in prefix.rglob("*") if p.name.endswith(".so") or ".so." in p.name]
    assert not shared, f"shared libraries left in the prefix: {shared}"
    for name in dep.exports.libs:
        archive = lib / f"lib{name}.a"
        assert archive.is_file(), f"{archive} missing"
        check_links_into_extension(archive, tmp_path)
    env = {**os.environ, "PKG_CONFIG_PATH": f"{lib}/pkgconfig:{prefix}/share/pkgconfig"}
    for pc in dep.exports.pkg_config:
        result = subprocess.run(
            ["pkg-config", "--static", "--libs", "--cflags", pc],
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"pkg-config {pc}: {result.stderr}"
        # a library gives its -l; a header-only one (no libs exported) its include directory
        wanted = "-l" if dep.exports.libs else "-I"
        assert str(prefix) in result.stdout or wanted in result.stdout, result.stdout


def check_links_into_extension(archive: Path, tmp_path: Path) -> None:
    """Every member links into a shared object (so it is PIC), and exports nothing from it."""
    out = tmp_path / f"{archive.stem}-ext.so"
    stub = tmp_path / "ext.c"
    stub.write_text('__attribute__((visibility("default"))) int PyInit_ext(void) { return 0; }\n')
    cc = shutil.which("cc") or "gcc"
    link = subprocess.run(
        [
            cc,
            "-shared",
            "-fPIC",
            "-o",
            str(out),
            str(stub),
            EXCLUDE_LIBS,
            "-Wl,--whole-archive",
            str(archive),
            "-Wl,--no-whole-archive",
        ],
        capture_output=True,
        text=True,
    )
    assert link.returncode == 0, (
        f"{archive.name} does not link into a shared object:\n{link.stderr[-3000:]}"
    )
    listing = subprocess.run(
        ["nm", "-D", "--defined-only", str(out)], capture_output=True, text=True, check=True
    ).stdout
    exported = {line.split()[-1] for line in listing.splitlines() if line.strip()}
    assert "PyInit_ext" in exported
    leaked = sorted(exported - {"PyInit_ext", *LINKER_SYMBOLS})
    assert not leaked, f"{archive.name}: symbols exported despite {EXCLUDE_LIBS}: {leaked[:20]}"
    if platform.machine() == "x86_64":
        absolute = absolute_relocations(archive)
        assert not absolute, f"{archive.name}: non-PIC relocations: {absolute[:5]}"


def absolute_relocations(obj: Path) -> list[str]:
    """R_X86_64_32[S] relocations against loaded sections (debug info may keep them)."""
    relocs = subprocess.run(
        ["readelf", "-rW", str(obj)], capture_output=True, text=True, check=True
    )
    found: list[str] = []
    section = ""
    for line in relocs.stdout.splitlines():
        if line.startswith("Relocation section"):
            section = line.split("'")[1]
        elif not section.startswith(".rela.debug") and (
            "R_X86_64_32 " in line or "R_X86_64_32S" in line
        ):
            found.append(f"{section}: {line.strip()}")
    return found
