"""The compile cache on the real engine: a small C++ extension (three translation units)
built for two Pythons at once (concurrent jobs sharing one ccache directory), rebuilt
unchanged in a new run (every translation unit a hit, the extension module byte for
byte the same), then with one source file changed (that file alone misses)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from orchestrator.emulation.ccache_kit import ensure_kit
from tests.conftest import orch

pytestmark = pytest.mark.docker

UNITS = ("core", "extra", "util")
SETUP = """
from setuptools import Extension, setup
setup(ext_modules=[Extension("ccdemo._ccdemo",
    sources=["src/ccdemo/_ccdemo.cpp", "src/ccdemo/core.cpp", "src/ccdemo/extra.cpp",
             "src/ccdemo/util.cpp"],
    language="c++")])
"""
PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"
[project]
name = "ccdemo"
version = "1.0"
[tool.setuptools]
package-dir = {"" = "src"}
packages = ["ccdemo"]
"""
RECIPE = """schema: 1
name: ccdemo
project: .
python: ["3.9", "3.11"]
platforms: [manylinux_2_31]
archs: [x86_64]
test:
  stock-images: false
  command: python -c "import ccdemo._ccdemo as m; assert m.total() == 6, m.total()"
"""
MODULE = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
int core(); int extra(); int util();
static PyObject *total(PyObject *, PyObject *) { return PyLong_FromLong(core() + extra() + util()); }
static PyMethodDef methods[] = {{"total", total, METH_NOARGS, ""}, {nullptr, nullptr, 0, nullptr}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_ccdemo", nullptr, -1, methods};
PyMODINIT_FUNC PyInit__ccdemo(void) { return PyModule_Create(&mod); }
"""


def _unit(name: str, value: int) -> str:
    return f"#include <vector>\nint {name}() {{ std::vector<int> v{{{value}}}; return v[0]; }}\n"


def _project(root: Path) -> Path:
    pkg = root / "src" / "ccdemo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_ccdemo.cpp").write_text(MODULE)
    for value, name in enumerate(UNITS, start=1):
        (pkg / f"{name}.cpp").write_text(_unit(name, value))
    (root / "setup.py").write_text(SETUP)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "orch.yaml").write_text(RECIPE)
    return root


def _build(project: Path, out: Path) -> list[dict[str, Any]]:
    proc = orch("build", "-f", str(project / "orch.yaml"), "-o", str(out), "--plain", "--recheck")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs: list[dict[str, Any]] = json.loads((out / ".orch" / "report.json").read_text())["jobs"]
    assert len(jobs) == 2 and {j["status"] for j in jobs} == {"ok"}
    assert "compile cache:" in proc.stdout
    return jobs


def _extensions(out: Path) -> dict[str, bytes]:
    found = {}
    for wheel in out.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith("ccdemo/_ccdemo") and name.endswith(".so"):
                    found[wheel.name] = zf.read(name)
    return found


def test_rebuild_hits_every_unit_and_a_changed_file_misses_alone(
    x86_images: tuple[str, str], cache_dir: Path, tmp_path: Path
) -> None:
    ensure_kit()  # a toolchain, like the cross roots (in the shared ORCH_CROSS_DIR)
    project = _project(tmp_path / "ccdemo")
    units = 1 + len(UNITS)

    cold = _build(project, tmp_path / "cold")
    for job in cold:  # two Pythons at once in one cache directory: all compiled, none mixed
        assert job["compile_cache"]["misses"] == units, job["compile_cache"]
        assert job["compile_cache"]["hits"] == 0
    assert len(list((cache_dir / "ccache").glob("*-x86_64-image-gcc"))) == 1

    warm = _build(project, tmp_path / "warm")
    for job in warm:
        assert job["compile_cache"]["hits"] == units, job["compile_cache"]
        assert job["compile_cache"]["misses"] == 0
    cold_so, warm_so = _extensions(tmp_path / "cold"), _extensions(tmp_path / "warm")
    assert len(cold_so) == 2 and cold_so == warm_so  # the same objects, linked the same

    # a change of the code (a comment alone would be a hit: ccache's preprocessed mode)
    edited = _unit("extra", 2).replace("return v[0];", "return v[0] * 1;")
    (project / "src" / "ccdemo" / "extra.cpp").write_text(edited)
    touched = _build(project, tmp_path / "touched")
    for job in touched:
        counts = job["compile_cache"]
        assert (counts["hits"], counts["misses"]) == (units - 1, 1), counts
