"""Repair keeps every tag auditwheel proves (as cibuildwheel's default does): a wheel built on
the glibc 2.31 image whose newest glibc symbol is clock_gettime@GLIBC_2.17 lands as
manylinux_2_17 (plus manylinux2014 and the job's own tag), so pip on CentOS 7 / Ubuntu 18.04
installs it; `repair: {only-plat: true}` gives exactly the job's tag. The plan's expected
names (`orch report --expect-plan`) match what landed in both cases."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.conftest import orch

pytestmark = pytest.mark.docker

C_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>

/* clock_gettime moved into libc in glibc 2.17: the newest symbol version this needs. */
static PyObject *monotonic_ns(PyObject *self, PyObject *args) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
}

static PyMethodDef methods[] = {
    {"monotonic_ns", monotonic_ns, METH_NOARGS, "CLOCK_MONOTONIC in ns"},
    {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "clockdemo", NULL, -1, methods};
PyMODINIT_FUNC PyInit_clockdemo(void) { return PyModule_Create(&module); }
"""


def _project(tmp_path: Path, repair: str) -> Path:
    proj = tmp_path / "clockdemo"
    proj.mkdir()
    (proj / "clockdemo.c").write_text(C_SOURCE)
    (proj / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "clockdemo"\nversion = "1.0"\n'
        "[tool.setuptools]\npy-modules = []\n"
        'ext-modules = [{name = "clockdemo", sources = ["clockdemo.c"]}]\n'
    )
    (proj / "orch.yaml").write_text(
        "schema: 1\nproject: .\npython: ['3.11']\nplatforms: [manylinux_2_31]\narchs: [x86_64]\n"
        + repair
        + "test:\n  imports: [clockdemo]\n"
        '  command: python -c "import clockdemo; assert clockdemo.monotonic_ns() > 0"\n'
    )
    return proj


def _build_and_check_plan(proj: Path, out: Path) -> str:
    plan = out.parent / f"{out.name}-plan.json"
    proc = orch("plan", "-f", str(proj), "--json")
    assert proc.returncode == 0, proc.stderr
    plan.write_text(proc.stdout)
    proc = orch("build", "-f", str(proj), "-o", str(out), "--plain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("*.whl")
    check = orch(
        "report",
        str(out / ".orch" / "report.json"),
        "--expect-plan",
        str(plan),
        "--wheelhouse",
        str(out),
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/WHEEL"))
        tags = sorted(
            ln.split(": ", 1)[1]
            for ln in zf.read(meta).decode().splitlines()
            if ln.startswith("Tag:")
        )
    assert all(t.startswith("cp311-cp311-") for t in tags)
    assert sorted(f"cp311-cp311-{p}" for p in wheel.name[:-4].rsplit("-", 1)[1].split(".")) == tags
    return wheel.name


def test_default_repair_keeps_the_manylinux_2_17_tag_auditwheel_proves(
    x86_images: tuple[str, str], tmp_path: Path
) -> None:
    name = _build_and_check_plan(_project(tmp_path, ""), tmp_path / "wide")
    platforms = set(name[:-4].rsplit("-", 1)[1].split("."))
    assert platforms == {
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux_2_31_x86_64",
    }, name
    report = json.loads((tmp_path / "wide" / ".orch" / "report.json").read_text())
    (job,) = report["jobs"]
    assert job["verify"][0]["status"] == "passed"


def test_only_plat_gives_exactly_the_jobs_tag(x86_images: tuple[str, str], tmp_path: Path) -> None:
    name = _build_and_check_plan(
        _project(tmp_path, "repair: {only-plat: true}\n"), tmp_path / "exact"
    )
    assert name == "clockdemo-1.0-cp311-cp311-manylinux_2_31_x86_64.whl"
