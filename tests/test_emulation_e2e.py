"""Emulation as a checked part of the environment: `orch doctor` per architecture, and a
job for an architecture the host cannot run fails before it starts, with the fix."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import containers_with_label, orch

pytestmark = [pytest.mark.docker, pytest.mark.emulated]

HANDLER = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


@pytest.fixture()
def aarch64_handler_removed() -> Iterator[None]:
    if not HANDLER.exists():
        pytest.fail("the aarch64 binfmt handler is not registered (run scripts/setup-host.sh)")
    HANDLER.write_text("-1")  # unregisters the handler
    try:
        yield
    finally:
        subprocess.run(
            ["update-binfmts", "--enable", "qemu-aarch64"], check=True, capture_output=True
        )
        assert HANDLER.exists() and "F" in HANDLER.read_text(), (
            "failed to restore the aarch64 handler"
        )


def test_doctor_reports_every_arch() -> None:
    proc = orch("doctor", "--json")
    data = json.loads(proc.stdout)
    modes = {a["arch"]: a["mode"] for a in data["archs"]}
    assert modes["x86_64"] == "native" and modes["i686"] == "native"
    for arch in ("aarch64", "ppc64le", "s390x", "armv7l"):
        assert modes[arch] == "emulated", data


def test_missing_handler_diagnosed_and_job_refused(
    aarch64_handler_removed: None, project_copy: Path, tmp_path: Path
) -> None:
    doctor = orch("doctor", "--json")
    data = json.loads(doctor.stdout)
    aarch64 = next(a for a in data["archs"] if a["arch"] == "aarch64")
    assert aarch64["mode"] == "missing" and "setup-emulation" in aarch64["detail"]
    recipe = project_copy / "orch.yaml"
    recipe.write_text(
        recipe.read_text()
        .replace("archs: [x86_64]", "archs: [aarch64]")
        .replace('python: ["3.9", "3.11"]', 'python: ["3.9"]')
    )
    before = set(containers_with_label("io.orch.managed=1"))
    proc = orch("build", "-f", str(recipe), "-o", str(tmp_path / "wh"), "--plain")
    assert proc.returncode == 3, proc.stderr
    assert "cannot run aarch64 containers" in proc.stderr and "orch setup-emulation" in proc.stderr
    assert set(containers_with_label("io.orch.managed=1")) == before
    assert not list((tmp_path / "wh").glob("*.whl"))
