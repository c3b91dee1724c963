"""A routed architecture on a second, real Docker engine (tests/support/secondengine.py,
its own socket and data root, standing in for a remote build host): i686 jobs and their
dependency builds run there (natively: its machine is x86_64), their images are copied
there over the two engines' APIs and their wheels come back; x86_64 stays on the shared
engine. Stopping that engine before or during the run fails only the i686 jobs, with the
fix, and leaves nothing behind: no wheel, no staging, no container on either engine.

Opt-in (it starts a dockerd and copies two images into it): ORCH_TEST_ENGINES=1."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.images.local import ensure_local_image
from tests.conftest import containers_with_label
from tests.support import secondengine
from tests.support.depworld import write_recipe
from tests.support.run import start_orch

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        os.environ.get("ORCH_TEST_ENGINES") != "1",
        reason="set ORCH_TEST_ENGINES=1 (starts a second dockerd on this machine)",
    ),
]
I686 = "cp39-manylinux_2_31_i686"
X86 = "cp39-manylinux_2_31_x86_64"


@pytest.fixture(scope="module")
def engine2() -> Iterator[secondengine.SecondEngine]:
    for arch in ("x86_64", "i686"):
        ensure_local_image(arch, "build")
        ensure_local_image(arch, "runtime")
    with secondengine.second_engine() as eng:
        yield eng


def _recipe(world: Any) -> Path:
    tmp, base, tarballs, _ = world
    recipe = write_recipe(tmp, base, tarballs, python='["3.9"]')
    recipe.write_text(recipe.read_text() + "archs: [x86_64, i686]\nplatforms: [manylinux_2_31]\n")
    return recipe


def _orch(recipe: Path, out: Path) -> subprocess.Popen[str]:
    env = {"ORCH_ENGINE_I686": secondengine.URL}
    return start_orch("build", "-f", str(recipe), "-o", str(out), "--plain", env=env)


def _jobs(out: Path) -> dict[str, dict[str, Any]]:
    report = json.loads((out / ".orch" / "report.json").read_text())
    return {j["id"]: j for j in report["jobs"]}


def _nothing_left(out: Path, run_id: str, eng: secondengine.SecondEngine) -> None:
    assert not list(out.glob(f"*{I686.split('-')[1]}*i686*.whl"))
    assert not (out / ".orch" / "staging").exists()
    assert containers_with_label(f"io.orch.run={run_id}") == []
    assert eng.containers(f"io.orch.run={run_id}") == []


def test_routed_jobs_run_on_their_engine_and_land(world, engine2, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "wh"
    proc = _orch(_recipe(world), out)
    stdout, _ = proc.communicate(timeout=3600)
    assert proc.returncode == 0, stdout
    jobs = _jobs(out)
    assert {i: j["status"] for i, j in jobs.items()} == {I686: "ok", X86: "ok"}
    assert jobs[I686]["emulated"] is False and jobs[I686]["verify"][0]["status"] == "passed"
    assert len(list(out.glob("*manylinux_2_31_i686*.whl"))) == 1
    log = Path(jobs[I686]["log"]).read_text()
    assert f"on engine {secondengine.URL}" in log  # the job's container was there...
    assert f"on engine {secondengine.URL}" not in Path(jobs[X86]["log"]).read_text()
    image = jobs[I686]["image"]
    assert secondengine.docker("image", "inspect", "-f", "{{.Id}}", image).strip()  # ...copied
    report = json.loads((out / ".orch" / "report.json").read_text())
    assert {d["arch"] for d in report["deps"] if d["status"] == "built"} == {"x86_64", "i686"}
    assert engine2.containers(f"io.orch.run={report['run_id']}") == []


def test_stopped_engine_fails_only_its_jobs_with_the_fix(world, engine2, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine2.stop()
    try:
        out = tmp_path / "wh"
        proc = _orch(_recipe(world), out)
        stdout, _ = proc.communicate(timeout=3600)
    finally:
        engine2.start()
    assert proc.returncode == 1, stdout
    jobs = _jobs(out)
    assert jobs[X86]["status"] == "ok"
    assert jobs[I686]["status"] == "failed" and jobs[I686]["failed_stage"] == "start"
    for needle in (secondengine.URL, "ORCH_ENGINE_I686", "fix:"):
        assert needle in jobs[I686]["error"]
    assert "ORCH_ENGINE_I686" in stdout
    run_id = json.loads((out / ".orch" / "report.json").read_text())["run_id"]
    _nothing_left(out, run_id, engine2)


def test_engine_stopped_mid_run_fails_only_its_jobs(world, engine2, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "wh"
    proc = _orch(_recipe(world), out)
    try:
        deadline = time.monotonic() + 1800
        while not engine2.containers("io.orch.job"):  # an i686 dependency or job started there
            assert proc.poll() is None and time.monotonic() < deadline, "nothing ran there"
            time.sleep(0.5)
        engine2.stop()
        stdout, _ = proc.communicate(timeout=3600)
    finally:
        if engine2.proc is None:
            engine2.start()
    assert proc.returncode == 1, stdout
    jobs = _jobs(out)
    assert jobs[X86]["status"] == "ok"
    assert jobs[I686]["status"] in ("failed", "blocked"), jobs[I686]
    assert "ORCH_ENGINE_I686" in jobs[I686]["error"] and "fix:" in jobs[I686]["error"]
    run_id = json.loads((out / ".orch" / "report.json").read_text())["run_id"]
    # Restarted, the engine removes the containers it was running (started with
    # auto-remove), so nothing of the run is left there either.
    deadline = time.monotonic() + 60
    while engine2.containers(f"io.orch.run={run_id}") and time.monotonic() < deadline:
        time.sleep(1)
    _nothing_left(out, run_id, engine2)
    assert "fix:" in stdout and "ORCH_ENGINE_I686" in stdout
