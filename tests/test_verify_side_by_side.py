"""Verification in several images: native checks run side by side (each mostly waits for
the engine), emulated ones one after the other; the job's log reads in image order either
way. verify_in_image itself is replaced (the Docker tests run it for real)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import orchestrator.pipeline.verify as verify
from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe
from orchestrator.report.joblog import JobLog


def _job_and_recipe(tmp_path: Path, arch: str) -> tuple[Any, Any]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "setup.py").write_text("")
    (project / "orch.yaml").write_text(
        "schema: 1\nname: sbs\nproject: .\npython: ['3.9']\nplatforms: [manylinux_2_31]\n"
        f"archs: [{arch}]\n"
        "test: {imports: [sbs], verify-images: [img-b, img-c], stock-images: false}\n"
    )
    recipe = load_recipe(project / "orch.yaml")
    return make_plan(recipe, host_arch="x86_64").jobs[0], recipe


def _slow_check(most: list[int], lock: threading.Lock) -> Any:
    running = [0]

    def check(
        factory: Any, recipe: Any, job: Any, wheel: Path, ref: str, log: JobLog, **_kw: Any
    ) -> verify.VerifyOutcome:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        log.line(f"checking in {ref}")
        time.sleep(0.3)
        log.line(f"done in {ref}")
        with lock:
            running[0] -= 1
        return verify.VerifyOutcome(ref, "passed", "ok", 0.3)

    return check


@pytest.mark.parametrize(("arch", "together"), [("x86_64", 3), ("aarch64", 1)])
def test_native_checks_run_side_by_side_and_log_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch: str, together: int
) -> None:
    job, recipe = _job_and_recipe(tmp_path, arch)
    most, lock = [0], threading.Lock()
    monkeypatch.setattr(verify, "verify_in_image", _slow_check(most, lock))
    log = JobLog(tmp_path / "logs" / "job.log")
    outcomes = verify.verify_wheel(None, recipe, job, tmp_path / "x.whl", log)  # type: ignore[arg-type]
    log.close()
    refs = [job.runtime_image or job.image, "img-b", "img-c"]
    assert [o.image for o in outcomes] == refs
    assert most[0] == together
    lines = (tmp_path / "logs" / "job.log").read_text().splitlines()
    assert lines == [f"{w} in {r}" for r in refs for w in ("checking", "done")]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["job.log"]  # no leftovers


def test_a_failing_check_still_leaves_every_log_in_the_job_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, recipe = _job_and_recipe(tmp_path, "x86_64")

    def check(
        factory: Any, recipe: Any, job: Any, wheel: Path, ref: str, log: JobLog, **_: Any
    ) -> Any:
        log.line(f"in {ref}")
        if ref == "img-b":
            raise verify.EnvironmentProblem(f"verification image {ref} is not present")
        return verify.VerifyOutcome(ref, "passed", "ok", 0.0)

    monkeypatch.setattr(verify, "verify_in_image", check)
    log = JobLog(tmp_path / "logs" / "job.log")
    with pytest.raises(verify.EnvironmentProblem, match="img-b"):
        verify.verify_wheel(None, recipe, job, tmp_path / "x.whl", log)  # type: ignore[arg-type]
    log.close()
    text = (tmp_path / "logs" / "job.log").read_text()
    assert "in img-b" in text and "in img-c" in text
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["job.log"]
