"""cp314 and cp315 wheels from the forky image family (Debian's own interpreters), against
the real engine: built, repaired, audited, verified in the runtime image (and, for 3.14,
the stock forky image), landed with the tags auditwheel proves."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("arch", ["x86_64", pytest.param("aarch64", marks=pytest.mark.emulated)])
def test_cp314_and_cp315_wheels_from_debians_interpreters(
    docker_engine: None, project_copy: Path, tmp_path: Path, arch: str
) -> None:
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
        if py == "3.14":  # forky's python3 is 3.14: also verified where users have it
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
