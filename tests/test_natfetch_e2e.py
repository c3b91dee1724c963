"""Opt-in (ORCH_TEST_NATFETCH=1, x86_64 hosts; about a minute of aarch64 work): an
emulated job's build-requirement set is filled natively — the static requirements, the
target's uv wheel and the backend's dynamic requirements fetched by the host's pip with
aarch64 tags, the environment made and installed by the x86_64 uv — with no emulated pip
in the logs; the wheel builds from that set and a second run is a warm hit."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import orch

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        os.environ.get("ORCH_TEST_NATFETCH") != "1" or platform.machine() != "x86_64",
        reason="set ORCH_TEST_NATFETCH=1 (x86_64 hosts): an aarch64 build under QEMU",
    ),
]

RECIPE = """schema: 1
name: natfilldemo
project: .
python: ["3.9"]
platforms: [manylinux_2_31]
archs: [aarch64]
"""
# setup_requires: what setuptools' get_requires_for_build_wheel answers (dynamic)
SETUP = """from setuptools import Extension, setup
setup(name="natfilldemo", version="1.0", packages=[],
      ext_modules=[Extension("natfilldemo", ["natfilldemo.c"])],
      setup_requires=["packaging"])
"""
SOURCE = """#include <Python.h>
static struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "natfilldemo", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_natfilldemo(void) { return PyModule_Create(&m); }
"""


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "orch.yaml").write_text(RECIPE)
    (root / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=61"]\n')
    (root / "setup.py").write_text(SETUP)
    (root / "natfilldemo.c").write_text(SOURCE)
    return root


def _build(project: Path, out: Path) -> dict[str, Any]:
    proc = orch("build", "-f", str(project / "orch.yaml"), "-o", str(out), "--no-verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [job] = json.loads((out / ".orch" / "report.json").read_text())["jobs"]
    assert job["status"] == "ok"
    return dict(job)


def _logs(job: dict[str, Any]) -> str:
    log = Path(job["log"])
    prefill = log.with_name(log.name.replace(".log", "-prefill.log"))
    return log.read_text() + (prefill.read_text() if prefill.is_file() else "")


def test_an_emulated_set_is_filled_natively_and_hit_warm(cache_dir: Path, tmp_path: Path) -> None:
    project = _project(tmp_path / "natfilldemo")
    cold = _build(project, tmp_path / "cold")
    logs = _logs(cold)
    assert "wheel(s) fetched natively for manylinux_2_31_aarch64 cp39" in logs
    assert "[natfetch] Saved" in logs and "packaging-" in logs  # the dynamic one too
    assert "Saved /orch/wheels" not in logs  # what the emulated pip wheel prints
    emulated_pip = [
        line for line in logs.splitlines() if line.startswith("$ ") and " -m pip " in line
    ]
    assert emulated_pip == []
    assert "/orch/native/uv-" in logs and "pip install packaging" in logs
    [wheels] = (cache_dir / "wheels").glob("*-aarch64")
    names = sorted(p.name.split("-")[0] for p in wheels.glob("*.whl"))
    assert names == ["packaging", "setuptools", "uv"]
    notes = [json.loads(p.read_text()) for p in wheels.rglob("*.json") if "build" in p.read_text()]
    assert any(n.get("dynamic") == ["packaging"] for n in notes), notes

    warm = _build(project, tmp_path / "warm")
    assert warm["wheel_cache"] == {"build": "hit"}
    assert "fetched natively" not in _logs(warm)
    cold_names = sorted(p.name for p in (tmp_path / "cold").glob("*.whl"))
    assert cold_names == sorted(p.name for p in (tmp_path / "warm").glob("*.whl")) != []
