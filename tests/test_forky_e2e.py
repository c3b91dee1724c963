"""cp314 and cp315 wheels from the forky image family (Debian's own interpreters), against
the real engine: built, repaired, audited, verified in the runtime image (and, for 3.14,
the stock forky image), landed with the tags auditwheel proves."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from orchestrator import archs
from tests.support.run import orch

# The forky images are built on first use (~3 min native, much longer under QEMU): opt in,
# with the interpreter tests.
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        os.environ.get("ORCH_TEST_PYTHONS") != "1",
        reason="set ORCH_TEST_PYTHONS=1 (builds the forky images)",
    ),
]

PYTHONS = ("3.14", "3.15")
NEWEST_POLICY = (2, 39)  # the forky family's: auditwheel knows no newer one


def _recipe(project: Path, arch: str) -> Path:
    recipe = project / "orch.yaml"
    text = recipe.read_text()
    text = text.replace('python: ["3.9", "3.11"]', f"python: {json.dumps(list(PYTHONS))}")
    text = text.replace("platforms: [manylinux_2_31]", "platforms: [manylinux_2_39]")
    text = text.replace("archs: [x86_64]", f"archs: [{arch}]")
    recipe.write_text(text)
    return recipe


@pytest.mark.parametrize(
    "arch", ["x86_64", "i686", pytest.param("aarch64", marks=pytest.mark.emulated)]
)
def test_cp314_and_cp315_wheels_from_debians_interpreters(
    docker_engine: None, project_copy: Path, tmp_path: Path, arch: str
) -> None:
    # The stock image under QEMU (apt and python3's byte-compiling emulated) would double
    # the aarch64 test: the native ones check the stock path; an emulated one is used if
    # present.
    with_stock = archs.runs_natively(arch)
    if with_stock:
        stock = orch("images", "build-stock", "forky", "--arch", arch, timeout=3600)
        assert stock.returncode == 0, stock.stdout[-3000:] + stock.stderr[-3000:]
    recipe = _recipe(project_copy, arch)
    plan = orch("plan", "-f", str(recipe), "--json")
    assert plan.returncode == 0, plan.stderr
    ids = [j["id"] for j in json.loads(plan.stdout)["jobs"]]
    assert ids == [f"cp314-manylinux_2_39_{arch}", f"cp315-manylinux_2_39_{arch}"]

    out = tmp_path / "wheelhouse"
    proc = orch(
        "build", "-f", str(recipe), "-o", str(out), "--plain", "--emulation", "auto",
        timeout=7200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / ".orch" / "report.json").read_text())
    jobs = {j["id"]: j for j in report["jobs"]}
    assert sorted(jobs) == sorted(ids)
    for job_id, py in zip(ids, PYTHONS, strict=True):
        job = jobs[job_id]
        assert job["status"] == "ok", job
        images = [v["image"] for v in job["verify"] if v["status"] == "passed"]
        assert any("manylinux_2_39" in i and "-runtime:" in i for i in images), job["verify"]
        if py == "3.14" and with_stock:  # forky's python3 is 3.14: where users have it
            assert any(i.startswith("stock:forky") or "debian-forky" in i for i in images), images

    for py in PYTHONS:
        tag = "cp" + py.replace(".", "")
        (wheel,) = out.glob(f"*-{tag}-{tag}-*.whl")
        plats = wheel.name[: -len(".whl")].split("-")[-1].split(".")
        assert f"manylinux_2_39_{arch}" in plats, wheel.name
        # only what auditwheel proves: nothing newer than its newest policy, and libbz2
        # grafted (the example links it dynamically)
        versions = [
            tuple(int(x) for x in m.groups())
            for p in plats
            if (m := re.fullmatch(rf"manylinux_(\d+)_(\d+)_{arch}", p))
        ]
        assert versions and max(versions) <= NEWEST_POLICY, wheel.name
        audit = orch("audit", str(wheel))
        assert audit.returncode == 0, audit.stdout + audit.stderr


NEWSYM_C = r"""
#include <Python.h>
#include <termios.h>
/* cfgetispeed is versioned GLIBC_2.42 in glibc >= 2.42: newer than manylinux_2_39 */
static PyObject *speed(PyObject *self, PyObject *args) {
    struct termios t = {0};
    return PyLong_FromUnsignedLong((unsigned long)cfgetispeed(&t));
}
static PyMethodDef methods[] = {{"speed", speed, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_newsym", NULL, -1, methods};
PyMODINIT_FUNC PyInit__newsym(void) { return PyModule_Create(&mod); }
"""

NEWSYM_PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "newsym"
version = "1.0.0"

[tool.setuptools]
package-dir = {"" = "src"}
packages = ["newsym"]
ext-modules = [{name = "newsym._newsym", sources = ["src/newsym/_newsym.c"]}]
"""


def test_a_symbol_newer_than_the_newest_policy_fails_the_repair(
    docker_engine: None, tmp_path: Path
) -> None:
    """glibc 2.43 offers symbols no manylinux policy allows: such a wheel is not tagged
    (nor landed as linux_x86_64); the job fails in repair and its log names the version."""
    project = tmp_path / "newsym"
    (project / "src" / "newsym").mkdir(parents=True)
    (project / "src" / "newsym" / "__init__.py").write_text("")
    (project / "src" / "newsym" / "_newsym.c").write_text(NEWSYM_C)
    (project / "pyproject.toml").write_text(NEWSYM_PYPROJECT)
    recipe = project / "orch.yaml"
    recipe.write_text(
        "schema: 1\nproject: .\npython: ['3.14']\nplatforms: [manylinux_2_39]\n"
        "archs: [x86_64]\ntest:\n  imports: [newsym]\n"
    )
    out = tmp_path / "wheelhouse"
    proc = orch("build", "-f", str(recipe), "-o", str(out), "--plain", timeout=1800)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "too-recent versioned symbols" in proc.stdout + proc.stderr
    assert not list(out.glob("*.whl"))
    (job,) = json.loads((out / ".orch" / "report.json").read_text())["jobs"]
    assert job["status"] == "failed" and job["failed_stage"] == "repair", job
    log = (out / ".orch" / "logs" / "cp314-manylinux_2_39_x86_64.log").read_text()
    assert "GLIBC_2.42" in log  # auditwheel show, after the refused repair


TIME_T_PROBE = r"""
set -e
printf '#include <stdio.h>\n#include <time.h>\nint main(void) { printf("%%u\\n", (unsigned)sizeof(time_t)); return 0; }\n' > /tmp/t.c
for tag in cp314-cp314 cp315-cp315; do
    py=/opt/python/$tag/bin/python
    headers=$($py -c 'import sysconfig; print(sysconfig.get_config_var("SIZEOF_TIME_T"))')
    # what an extension's compile gets: the interpreter's CFLAGS and the compiler's default
    gcc $($py -c 'import sysconfig; print(sysconfig.get_config_var("CFLAGS"))') /tmp/t.c -o /tmp/t
    echo "$tag $headers $(/tmp/t)"
done
"""


def test_i686_keeps_the_32_bit_time_t_of_the_cpythons_users_run(docker_engine: None) -> None:
    """The reason i686 is in the forky family and armv7l is not: Debian's i386 kept a
    32-bit time_t (armhf moved to 64 bits in trixie), so an extension built here shares
    the time_t of every other i686 CPython (pypa's images, distributions)."""
    from orchestrator.images.local import ensure_local_image

    image = ensure_local_image("i686", "build", "forky", pythons=PYTHONS)
    proc = subprocess.run(
        ["docker", "run", "--rm", "--platform", "linux/386", image.ref, "linux32", "sh", "-c",
         TIME_T_PROBE],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert lines == [["cp314-cp314", "4", "4"], ["cp315-cp315", "4", "4"]], proc.stdout
