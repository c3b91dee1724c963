"""SIGTERM (a CI timeout) and SIGINT (Ctrl-C) at each stage: images, dependencies, jobs,
verification. Each run must stop promptly with 143/130, leave no container, no wheel, no
cache temp, and write a report saying what was interrupted."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults.conftest import Record, assert_clean
from tests.faults.engine import FaultEngine
from tests.faults.scenario import Build, Dep, make_build, running
from tests.faults.servers import bad_registry
from tests.support.sourceserver import ServerURL

pytestmark = [pytest.mark.docker, pytest.mark.slow]

STOP_SECONDS = 30  # containers get a short grace period, then they are killed
SIGNALS = {"SIGTERM": (signal.SIGTERM, 143), "SIGINT": (signal.SIGINT, 130)}


def _interrupt(build: Build, signame: str, record: Record, stage: str) -> None:
    sig, code = SIGNALS[signame]
    t0 = time.monotonic()
    build.signal(sig)
    outcome = build.finish(timeout=90)
    seconds = time.monotonic() - t0
    record(f"{signame} during {stage}", outcome)
    assert_clean(outcome)
    assert outcome.exit_code == code, outcome.summary()
    # Stopping means stopping: not finishing the queued or running work first.
    assert seconds < STOP_SECONDS, f"{signame} took {seconds:.0f}s to stop orch"
    assert outcome.report is not None
    statuses = {j["id"]: j["status"] for j in outcome.report["jobs"]}
    assert "ok" not in statuses.values(), statuses


@pytest.mark.parametrize("signame", sorted(SIGNALS))
def test_signal_during_images(
    signame: str, engine: FaultEngine, tmp_path: Path, record: Record
) -> None:
    # A pypa image pulled through a mirror that accepts and never answers: the run sits
    # in the image stage for as long as we like.
    with bad_registry("stall") as mirror:
        port = mirror.server_address[1]
        build = make_build(tmp_path, engine, lines=["platforms: [manylinux2014]"])
        build.env["ORCH_IMAGE_MIRROR"] = f"quay.io/pypa=127.0.0.1:{port}/pypa"
        build.start()
        build.wait_until(lambda: mirror.requests > 0, "the image pull")
        _interrupt(build, signame, record, "images")


@pytest.mark.parametrize("signame", sorted(SIGNALS))
def test_signal_during_dependencies(
    signame: str,
    engine: FaultEngine,
    tmp_path: Path,
    sources: tuple[Path, ServerURL],
    record: Record,
) -> None:
    srv, base = sources
    build = make_build(tmp_path, engine, base, srv, [Dep("slowdep", sleep=60), Dep("quickdep")])
    build.start()
    build.wait_until(lambda: running(engine, "sleep 60"), "a dependency build")
    _interrupt(build, signame, record, "dependencies")


@pytest.mark.parametrize("signame", sorted(SIGNALS))
def test_signal_during_jobs(
    signame: str, engine: FaultEngine, tmp_path: Path, record: Record
) -> None:
    build = make_build(tmp_path, engine, lines=['before-build: ["sleep 61"]'])
    build.start()
    build.wait_until(lambda: running(engine, "sleep 61"), "the job's build step")
    _interrupt(build, signame, record, "jobs")


@pytest.mark.parametrize("signame", sorted(SIGNALS))
def test_signal_during_verification(
    signame: str, engine: FaultEngine, tmp_path: Path, record: Record
) -> None:
    build = make_build(tmp_path, engine, lines=["test: {command: sleep 62}"])
    build.start()
    build.wait_until(lambda: running(engine, "sleep 62", "runtime"), "verification", 300)
    _interrupt(build, signame, record, "verification")
