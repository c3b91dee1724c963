"""The whole pipeline per architecture: static dependencies, build, auditwheel repair to
manylinux_2_31_<arch>, verification in that architecture's runtime image (under QEMU where
the host cannot run it) and the audit. x86_64, i686 and aarch64 run on every test run;
ppc64le, s390x and armv7l run with ORCH_TEST_ALL_ARCHS=1 (each takes a while under QEMU)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from orchestrator.images.local import ensure_local_image
from tests.conftest import orch
from tests.support.depworld import write_recipe
from tests.support.run import wheel_platforms, wheel_stem

pytestmark = pytest.mark.docker

ALL = os.environ.get("ORCH_TEST_ALL_ARCHS") == "1"
OPT_IN = pytest.mark.skipif(not ALL, reason="set ORCH_TEST_ALL_ARCHS=1 (slow under QEMU)")
ELF_MACHINE = {"i686": 3, "aarch64": 183, "ppc64le": 21, "s390x": 22, "armv7l": 40, "x86_64": 62}


def elf_machine(data: bytes) -> int:
    little = data[5] == 1
    return int.from_bytes(data[18:20], "little" if little else "big")


@pytest.mark.parametrize(
    "arch",
    [
        "i686",
        pytest.param("aarch64", marks=pytest.mark.emulated),
        pytest.param("ppc64le", marks=[pytest.mark.emulated, OPT_IN]),
        pytest.param("s390x", marks=[pytest.mark.emulated, OPT_IN]),
        pytest.param("armv7l", marks=[pytest.mark.emulated, OPT_IN]),
    ],
)
def test_pipeline_per_arch(arch: str, world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Bullseye's mirror no longer serves ppc64el/s390x: those use bookworm (manylinux_2_36).
    suite, policy, py, tag = (
        ("bookworm", "manylinux_2_36", "3.11", "cp311")
        if arch in ("ppc64le", "s390x")
        else ("bullseye", "manylinux_2_31", "3.9", "cp39")
    )
    ensure_local_image(arch, "runtime", suite=suite)
    ensure_local_image(arch, "build", suite=suite)
    tmp, base, tarballs, _ = world
    recipe = write_recipe(tmp, base, tarballs, python=f'["{py}"]')
    recipe.write_text(recipe.read_text() + f"archs: [{arch}]\nplatforms: [{policy}]\n")
    out = tmp / "wh"
    proc = orch("build", "-f", str(recipe), "-o", str(out), "--plain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("*.whl")
    assert wheel_stem(wheel.name) == f"depuser-1.0-{tag}-{tag}"
    assert f"{policy}_{arch}" in wheel_platforms(wheel.name)
    with zipfile.ZipFile(wheel) as zf:
        so = next(n for n in zf.namelist() if n.endswith(".so"))
        assert elf_machine(zf.read(so)[:20]) == ELF_MACHINE[arch]
    report = json.loads((out / ".orch" / "report.json").read_text())
    job = report["jobs"][0]
    assert job["emulated"] is (arch not in ("x86_64", "i686"))
    assert (
        job["verify"][0]["status"] == "passed" and f"_{arch}-runtime:" in job["verify"][0]["image"]
    )
    assert not [f for f in job["audit"]["findings"] if f["severity"] == "error"]
    assert {d["status"] for d in report["deps"]} == {"built"}
    if arch == "aarch64":  # reuses the dependencies just built (same cache)
        _refused_by_x86_64_container(recipe, tmp / "refused")


def _refused_by_x86_64_container(recipe: Path, out: Path) -> None:
    """The aarch64 wheel, also to be verified in the x86_64 runtime image: refused there
    (incompatible, not a crash), accepted by its own runtime image, and nothing lands."""
    x86_runtime = ensure_local_image("x86_64", "runtime").ref
    text = recipe.read_text()
    recipe.write_text(text.replace("test:\n", f'test:\n  verify-images: ["{x86_runtime}"]\n'))
    proc = orch("build", "-f", str(recipe), "-o", str(out), "--plain")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((out / ".orch" / "report.json").read_text())
    assert {d["status"] for d in report["deps"]} == {"cached"}
    job = report["jobs"][0]
    by_image = {v["image"]: v for v in job["verify"]}
    assert by_image[x86_runtime]["status"] == "incompatible"
    assert "image is amd64, the wheel is aarch64" in by_image[x86_runtime]["detail"]
    # and the aarch64 runtime image, listed first, accepted it
    assert job["verify"][0]["status"] == "passed"
    assert not list(out.glob("*.whl"))
