"""SIGTERM (a CI timeout) stops `orch build` like Ctrl-C, on the real engine: during the
dependency stage and during the job stage of the multi-dependency example, the run's
containers are gone, report.json says which jobs were interrupted, the exit code is 143;
and `orch clean` leaves a run that is still going alone."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, containers_with_label, orch
from tests.support.run import start_orch
from tests.test_multideps_e2e import debian_mirror  # noqa: F401 - a fixture

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def start(project: Path, out: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return start_orch("build", "-f", str(project), "-o", str(out), "--plain", env=env)


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"orch ended early ({proc.returncode}):\n{proc.communicate()[0]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the build never reached the expected stage")
        time.sleep(0.5)


def running_in(label: str, command: str) -> bool:
    for cid in containers_with_label(label):
        top = subprocess.run(["docker", "top", cid], capture_output=True, text=True).stdout
        if command in top:
            return True
    return False


def terminate(proc: subprocess.Popen[str]) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    return proc.returncode, output, time.monotonic() - t0


def report_of(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / ".orch" / "report.json").read_text())
    return data


def test_sigterm_in_dependency_and_job_stages(
    x86_images: tuple[str, str],
    debian_mirror: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    project = tmp_path / "multi-deps"
    shutil.copytree(EXAMPLES / "multi-deps", project)
    env = {"ORCH_CACHE_DIR": str(tmp_path / "cache"), "ORCH_SOURCE_MIRROR": str(debian_mirror)}

    # 1. During the dependency stage: a dependency container is compiling.
    out = tmp_path / "deps-stage"
    proc = start(project, out, env)
    pid = f"io.orch.pid={proc.pid}"
    wait_for(lambda: running_in(pid, "make") or running_in(pid, "cmake"), proc, 600)
    code, output, seconds = terminate(proc)
    print(f"SIGTERM in the dependency stage: exit {code} after {seconds:.1f}s")
    assert code == 143, output
    assert "Traceback" not in output
    report = report_of(out)
    assert not containers_with_label(f"io.orch.run={report['run_id']}")
    assert {j["status"] for j in report["jobs"]} == {"cancelled"}  # none had started
    assert not list(out.glob("*.whl"))
    assert not list((out / ".orch").glob("staging/*"))

    # The dependencies, completed (a normal run).
    done = orch("build", "-f", str(project), "-o", str(tmp_path / "full"), "--plain", env=env)
    assert done.returncode == 0, done.stdout + done.stderr

    # 2. During the job stage: every job is in its build step (before-build sleeps).
    recipe = project / "orch.yaml"
    recipe.write_text(recipe.read_text() + 'before-build: ["sleep 300"]\n')
    out = tmp_path / "job-stage"
    proc = start(project, out, env)
    job = "io.orch.job=cp39-manylinux_2_31_x86_64"
    wait_for(lambda: running_in(job, "sleep 300"), proc, 300)

    # `orch clean` meanwhile: the run is alive, its containers stay.
    before = containers_with_label(f"io.orch.pid={proc.pid}")
    clean = orch("clean")
    assert clean.returncode == 0, clean.stderr
    assert before and set(before) <= set(containers_with_label(f"io.orch.pid={proc.pid}"))

    code, output, seconds = terminate(proc)
    print(f"SIGTERM in the job stage: exit {code} after {seconds:.1f}s")
    assert code == 143, output
    report = report_of(out)
    assert not containers_with_label(f"io.orch.run={report['run_id']}")
    statuses = {j["id"]: j["status"] for j in report["jobs"]}
    assert statuses["cp39-manylinux_2_31_x86_64"] == "interrupted"
    assert set(statuses.values()) <= {"interrupted", "cancelled"}
    assert not list(out.glob("*.whl"))
