"""The orch process killed with SIGKILL, then `orch clean` while another run is going; the
engine itself stopped in the middle of a run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import Record, assert_clean
from tests.faults.engine import FaultEngine
from tests.faults.measure import RunOutcome
from tests.faults.scenario import make_build, running
from tests.support.run import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def orch_clean(engine: FaultEngine) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "clean"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **engine.env},
    )


def test_kill9_then_clean_during_another_run(
    engine: FaultEngine, tmp_path: Path, record: Record
) -> None:
    fault = "kill -9, then orch clean during another run"
    killed = make_build(tmp_path / "killed", engine, lines=['before-build: ["sleep 300"]'])
    alive = make_build(tmp_path / "alive", engine, lines=['before-build: ["sleep 20"]'])
    killed.start()
    killed.wait_until(lambda: running(engine, "sleep 300"), "the killed run's build step")
    alive.start()
    alive.wait_until(lambda: running(engine, "sleep 20"), "the live run's build step")

    os.kill(killed.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    dead = killed.finish(timeout=30, count_orphans=False)
    clean = orch_clean(engine)
    survived = running(engine, "sleep 20")
    killed_gone = not running(engine, "sleep 300")

    live = alive.finish(timeout=300)
    record(fault, dead, report_expected=False)  # SIGKILL: nothing can write a report
    record(fault, live)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "Traceback" not in clean.stdout + clean.stderr
    assert killed_gone, "orch clean left the dead run's container"
    assert survived, f"orch clean removed a live run's container:\n{clean.stdout}"
    assert_clean(live)
    assert live.exit_code == 0, live.summary()


def test_engine_stopped_mid_run(engine: FaultEngine, tmp_path: Path, record: Record) -> None:
    build = make_build(tmp_path, engine, lines=['before-build: ["sleep 66"]'])
    build.start()
    build.wait_until(lambda: running(engine, "sleep 66"), "the job's build step")
    engine.stop()  # the engine goes down (SIGTERM to dockerd, as a service stop does)
    try:
        outcome = build.finish(timeout=180, count_orphans=False)
    finally:
        engine.start()
    # What a dead engine could not let orch remove, `orch clean` must (the run is over).
    clean = orch_clean(engine)
    outcome = RunOutcome(
        orphans=len(engine.containers()),
        partial_wheels=outcome.partial_wheels,
        poisoned=outcome.poisoned,
        report=outcome.report,
        tracebacks=outcome.tracebacks + clean.stderr.count("Traceback"),
        exit_code=outcome.exit_code,
        output=outcome.output + clean.stdout + clean.stderr,
    )
    record("engine stopped mid-run", outcome)
    assert_clean(outcome)
    # The job's failure or the environment problem (3), said in words, not a traceback.
    assert outcome.exit_code in (1, 3), outcome.summary()
    assert re.search(r"engine|docker", outcome.output, re.IGNORECASE), outcome.output[-2000:]
