"""The build requirements fetched ahead (pipeline/prefill.py), on the in-memory engine: a
cold job's set is filled in a container of its own while the dependencies build, so the
job starts on a hit; a warm run starts no such container; a prefill that fails leaves
the job to fill the set itself, and nothing half-stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from orchestrator.container.session import wait_removals
from orchestrator.pipeline.buildenv import FILL_PATH
from tests.support.fakeengine import FakeContainer, FakeEngine, build, image, succeed
from tests.test_runner import engine_for, options, setup

JOB = "cp39-manylinux_2_31_x86_64"


def _slow_deps(fail_prefill: bool = False) -> Any:
    """Dependency builds that take a while (the prefill runs meanwhile); optionally a
    prefill whose fill fails (the index unreachable, say)."""

    def script(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> Any:
        text = " ".join(cmd)
        if c.job.startswith("dep-") and "make" in text:
            time.sleep(0.6)
        if fail_prefill and f"{FILL_PATH} prefetch" in text:
            return 1
        return succeed(engine, c, cmd)

    return script


def _opts(tmp_path: Path, mirror: Path, **kw: Any) -> Any:
    opts = options(tmp_path, mirror, **kw)
    return replace(opts, env=replace(opts.env, wheel_prefill=True))


def _ran(engine: FakeEngine, job: str, what: str) -> bool:
    return any(what in " ".join(cmd) for c in engine.created if c.job == job for cmd in c.execs)


def test_a_cold_job_starts_on_a_hit_filled_while_the_dependencies_built(
    tmp_path: Path, cache_dir: Path
) -> None:
    recipe, plan, mirror = setup(tmp_path, python=("3.9",), deps=("zlib",))
    engine = engine_for(plan, _slow_deps())
    opts = _opts(tmp_path, mirror)
    report, _ = build(recipe, plan, opts, engine)
    [job] = report.jobs
    assert job.status == "ok"
    assert job.wheel_cache == {"build": "hit"}  # the job itself fetched nothing
    assert _ran(engine, f"prefill-{JOB}", f"{FILL_PATH} prefetch")
    assert not _ran(engine, JOB, f"{FILL_PATH} fill")
    [pre] = [c for c in engine.created if c.job == f"prefill-{JOB}"]
    assert pre.spec.network_mode is None and pre.removed  # the index reachable; cleaned up
    assert list((cache_dir / "wheels").glob("*-x86_64/sets/*.json"))
    assert (opts.logs / f"{JOB}-prefill.log").is_file()

    again = engine_for(plan, _slow_deps())
    report, _ = build(recipe, plan, _opts(tmp_path, mirror), again)
    assert [j.status for j in report.jobs] == ["ok"]
    assert not any(c.job.startswith("prefill-") for c in again.created)  # warm: no container


def test_a_failed_prefill_leaves_the_fill_to_the_job(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = setup(tmp_path, python=("3.9",), deps=("zlib",))
    engine = engine_for(plan, _slow_deps(fail_prefill=True))
    opts = _opts(tmp_path, mirror)
    report, _ = build(recipe, plan, opts, engine)
    [job] = report.jobs
    assert (job.status, job.wheel_cache) == ("ok", {"build": "miss"})
    assert _ran(engine, JOB, f"{FILL_PATH} fill")
    assert "[prefill] failed" in (opts.logs / f"{JOB}-prefill.log").read_text()
    assert len(list((cache_dir / "wheels").glob("*-x86_64/sets/*.json"))) == 1  # the job's


def test_an_unexpected_prefill_error_is_logged_and_the_job_fills(
    tmp_path: Path, cache_dir: Path, monkeypatch: Any
) -> None:
    # its future is never read: an error of any kind must reach the log, not vanish
    from orchestrator.pipeline import prefill

    def broken(*_args: Any) -> None:
        raise ValueError("a broken tar")

    monkeypatch.setattr(prefill, "_fill", broken)
    recipe, plan, mirror = setup(tmp_path, python=("3.9",), deps=("zlib",))
    engine = engine_for(plan, _slow_deps())
    opts = _opts(tmp_path, mirror)
    report, _ = build(recipe, plan, opts, engine)
    assert [j.status for j in report.jobs] == ["ok"]
    assert "[prefill] failed (ValueError)" in (opts.logs / f"{JOB}-prefill.log").read_text()


def test_a_prefill_outliving_its_failed_job_is_joined_before_the_clean_up(
    tmp_path: Path, cache_dir: Path, monkeypatch: Any
) -> None:
    # the dependency fails at once while the prefill is slow to start its container: the
    # run's clean-up must not list containers before the prefill has made and removed it
    from orchestrator.pipeline import prefill

    real_fill = prefill._fill

    def late_fill(*args: Any) -> None:
        time.sleep(1.0)
        real_fill(*args)

    def deps_fail(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> Any:
        if c.job.startswith("dep-") and "make" in " ".join(cmd):
            return 2
        return succeed(engine, c, cmd)

    monkeypatch.setattr(prefill, "_fill", late_fill)
    recipe, plan, mirror = setup(tmp_path, python=("3.9",), deps=("zlib",))
    engine = engine_for(plan, deps_fail)
    report, _ = build(recipe, plan, _opts(tmp_path, mirror), engine)
    live_at_the_end = set(engine.live)
    wait_removals()
    assert [j.status for j in report.jobs] == ["blocked"]  # by its failed dependency
    assert any(c.job == f"prefill-{JOB}" for c in engine.created)
    assert not live_at_the_end and not engine.live  # nothing of the run left behind


def test_no_prefill_offline_or_with_before_build(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = setup(tmp_path, python=("3.9",), deps=("zlib",))
    engine = engine_for(plan, _slow_deps())
    build(recipe, plan, _opts(tmp_path, mirror, offline=True), engine)
    assert not any(c.job.startswith("prefill-") for c in engine.created)

    with_before = replace(recipe, before_build=("true",))
    engine = engine_for(plan, _slow_deps())
    report, _ = build(with_before, plan, _opts(tmp_path, mirror), engine)
    assert [j.status for j in report.jobs] == ["ok"]
    assert not any(c.job.startswith("prefill-") for c in engine.created)


# --- containers removed in the background (container/session.py, remove_later) ---------


def _session(engine: FakeEngine, remove_later: bool) -> Any:
    from orchestrator.container.factory import ContainerFactory, RunIdentity
    from orchestrator.container.hostenv import HostEnv

    factory = ContainerFactory(engine, RunIdentity.new(), HostEnv(None, {}), threading.Event())
    return factory.session(
        "img", platform="linux/amd64", job="j", log=_Log(), remove_later=remove_later
    )


class _Log:
    def line(self, text: str) -> None:
        pass

    def write_bytes(self, data: bytes) -> None:
        pass


def test_a_successful_session_is_removed_in_the_background_and_joined() -> None:
    gate = threading.Event()

    class SlowRemove(FakeEngine):
        def remove(self, handle: Any) -> None:
            gate.wait(5)
            super().remove(handle)

    engine = SlowRemove([image("img")])
    with _session(engine, remove_later=True):
        pass
    [c] = engine.created
    assert not c.removed  # the caller went on; the engine is still removing it
    gate.set()
    wait_removals()
    assert c.removed and not engine.live


def test_a_failed_session_is_removed_before_the_error_goes_on() -> None:
    engine = FakeEngine([image("img")])
    try:
        with _session(engine, remove_later=True):
            raise RuntimeError("step failed")
    except RuntimeError:
        pass
    [c] = engine.created
    assert c.removed  # synchronously: nothing of a failed step outlives it
