"""The runner's orchestration on the in-memory engine (tests/support/fakeengine.py): what
runs where and when, what is cancelled, blocked, kept, landed and reported. No Docker;
the Docker tests (test_*_e2e.py) check that the real engine does the same."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator import archs
from orchestrator.container import types
from orchestrator.container.factory import RunIdentity, dead_runs_containers, run_is_alive
from orchestrator.options import BuildOptions, EnvSettings
from orchestrator.pipeline.run import run
from orchestrator.plan.jobs import Plan, make_plan
from orchestrator.recipe import load_recipe
from tests.support.fakeengine import (
    FakeContainer,
    FakeEngine,
    build,
    builds_wheel,
    image,
    succeed,
)


@pytest.fixture(autouse=True)
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in these tests whatever SIGINT handler the shell or an
    earlier in-process test left behind (two interrupt tests failed only in full-suite runs,
    never alone)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


DEP = """\
  - name: {name}
    version: "1.0"
    source: {{url: "http://127.0.0.1:9/{name}.tar.gz", sha256: "{sha}"}}
    build: {{system: make}}
"""


def setup(
    tmp_path: Path,
    arch_list: Sequence[str] = ("x86_64",),
    python: Sequence[str] = ("3.9", "3.11"),
    deps: Sequence[str] = (),
) -> tuple[Any, Plan, Path]:
    """A recipe (with dependencies served from a mirror directory) and its plan."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "setup.py").write_text("")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    dep_text = ""
    for name in deps:
        data = f"source of {name}".encode()
        sha = hashlib.sha256(data).hexdigest()
        (mirror / sha).write_bytes(data)
        dep_text += DEP.format(name=name, sha=sha)
    (project / "orch.yaml").write_text(
        "schema: 1\nname: fakedemo\nproject: .\n"
        f"python: {json.dumps(list(python))}\nplatforms: [manylinux_2_31]\n"
        f"archs: {json.dumps(list(arch_list))}\n" + (f"dependencies:\n{dep_text}" if deps else "")
    )
    recipe = load_recipe(project / "orch.yaml")
    return recipe, make_plan(recipe, host_arch="x86_64"), mirror


def engine_for(plan: Plan, script: Any = succeed) -> FakeEngine:
    refs = {(j.image, archs.get(j.arch).oci.split("/")[0]) for j in plan.jobs}
    return FakeEngine([image(ref, oci) for ref, oci in refs], script)


def options(tmp_path: Path, mirror: Path, **kw: Any) -> BuildOptions:
    # the prefill container (pipeline/prefill.py) races the jobs: tests that count
    # containers turn it off; test_prefill.py covers it. No host-side fetch for emulated
    # jobs either: it needs the index (test_natfetch.py, test_natfetch_e2e.py cover it)
    settings = EnvSettings(source_mirrors=(str(mirror),), wheel_prefill=False, native_fetch=False)
    base: dict[str, Any] = dict(
        output_dir=tmp_path / "wheelhouse",
        jobs=2,
        verify=False,
        audit=False,
        live=False,
        emulation="plain",
        env=settings,
        recheck=True,  # these tests share caches: their checks run (test_checks_reuse.py)
    )
    return BuildOptions(**{**base, **kw})


def statuses(report_file: Path) -> dict[str, tuple[str, str | None]]:
    data = json.loads(report_file.read_text())
    return {j["id"]: (j["status"], j["failed_stage"]) for j in data["jobs"]}


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_jobs_land_wheels_from_fresh_labelled_containers(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = setup(tmp_path)
    engine = engine_for(plan)
    opts = options(tmp_path, mirror)
    report, _ = build(recipe, plan, opts, engine)
    assert [j.status for j in report.jobs] == ["ok", "ok"]
    landed = sorted(p.name for p in opts.output_dir.glob("*.whl"))
    assert landed == sorted(j.wheel.filename for j in report.jobs if j.wheel)
    assert len(landed) == 2 and not engine.live  # every container removed
    assert {c.job for c in engine.created} == {j.id for j in plan.jobs}  # one fresh each
    labels = engine.created[0].spec.labels
    assert labels[types.LABEL_RUN] == report.run_id
    assert labels[types.LABEL_PID] == str(os.getpid())
    assert labels[types.LABEL_HOST] == socket.gethostname()
    assert statuses(opts.report_file) == {j.id: ("ok", None) for j in plan.jobs}
    assert not (opts.meta_dir / "staging").exists()


def test_failed_stage_is_the_step_that_failed(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = setup(tmp_path)

    def fail_build_of_cp39(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
        if c.job.startswith("cp39") and builds_wheel(cmd):
            return 2
        return succeed(engine, c, cmd)

    opts = options(tmp_path, mirror)
    report, _ = build(recipe, plan, opts, engine_for(plan, fail_build_of_cp39))
    by_id = {j.id: j for j in report.jobs}
    failed = by_id["cp39-manylinux_2_31_x86_64"]
    assert (failed.status, failed.failed_stage) == ("failed", "build")
    assert "exit code 2" in (failed.error or "")
    assert by_id["cp311-manylinux_2_31_x86_64"].status == "ok"
    assert [p.name for p in opts.output_dir.glob("*.whl")] == [
        by_id["cp311-manylinux_2_31_x86_64"].wheel.filename  # type: ignore[union-attr]
    ]


def test_dependency_failure_blocks_only_its_group(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = setup(tmp_path, arch_list=("x86_64", "i686"), deps=("zed",))

    def dep_fails_on_i686(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
        if c.job == "dep-zed" and c.spec.platform == "linux/386" and "make" in " ".join(cmd):
            return 2
        return succeed(engine, c, cmd)

    engine = engine_for(plan, dep_fails_on_i686)
    opts = options(tmp_path, mirror)
    report, output = build(recipe, plan, opts, engine)
    got = {j.id: (j.status, j.failed_stage) for j in report.jobs}
    assert got == {
        "cp39-manylinux_2_31_x86_64": ("ok", None),
        "cp311-manylinux_2_31_x86_64": ("ok", None),
        "cp39-manylinux_2_31_i686": ("blocked", "deps"),
        "cp311-manylinux_2_31_i686": ("blocked", "deps"),
    }
    assert sorted((d.arch, d.status) for d in report.deps) == [
        ("i686", "failed"),
        ("x86_64", "built"),
    ]
    assert "dependency zed (i686) failed" in output
    # The x86_64 jobs got the prefix: it was copied into their containers.
    x86_jobs = [c for c in engine.created if c.job.endswith("x86_64")]
    assert x86_jobs and all(_copied(c, "opt/orch/") for c in x86_jobs)
    assert not any(c.job.endswith("i686") for c in engine.created)  # blocked: never started


def _copied(c: FakeContainer, prefix: str) -> list[str]:
    """The members under `prefix` of what was copied into the container at "/"."""
    names: list[str] = []
    for target, data in c.tars:
        if target == "/":
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                names += [n for n in tar.getnames() if n.startswith(prefix)]
    return names


def test_kept_container_survives_the_cleanup(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = setup(tmp_path, python=("3.9",))

    def fail_repair(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
        return 1 if "auditwheel repair" in " ".join(cmd) else succeed(engine, c, cmd)

    engine = engine_for(plan, fail_repair)
    report, _ = build(recipe, plan, options(tmp_path, mirror, keep_container=True), engine)
    job = report.jobs[0]
    assert (job.status, job.failed_stage) == ("failed", "repair")
    assert job.kept_container is not None
    assert [c.handle.name for c in engine.live.values()] == [job.kept_container]


def test_emulated_jobs_never_take_every_slot(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = setup(tmp_path, arch_list=("x86_64", "aarch64"), python=("3.9",))
    emulated = next(j for j in plan.jobs if j.emulated)
    copies = tuple(replace(emulated, id=f"{emulated.id}-{i}") for i in range(3))
    plan = Plan(plan.recipe, (*copies, *(j for j in plan.jobs if not j.emulated)))
    running: list[bool] = []  # emulated?, of each build running now
    most = {"emulated": 0, "all": 0}
    started: list[str] = []
    lock = threading.Lock()

    def slow(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
        if builds_wheel(cmd):
            is_emulated = c.spec.platform == "linux/arm64"
            with lock:
                started.append("emulated" if is_emulated else "native")
                running.append(is_emulated)
                most["emulated"] = max(most["emulated"], sum(running))
                most["all"] = max(most["all"], len(running))
            time.sleep(0.3)
            with lock:
                running.remove(is_emulated)
        return succeed(engine, c, cmd)

    # A warm wheel cache first: the copies share one requirement set, and on a cold cache
    # they would wait for the one filling it (pipeline/wheelcache.py), not for a slot.
    build(recipe, plan, options(tmp_path, mirror, jobs=3), engine_for(plan))
    report, _ = build(recipe, plan, options(tmp_path, mirror, jobs=3), engine_for(plan, slow))
    assert [j.status for j in report.jobs] == ["ok"] * 4
    assert most == {"emulated": 2, "all": 3}  # one of three slots stays for native jobs
    assert started.index("native") < 3  # it did not wait for every emulated job


def test_interrupt_marks_running_jobs_interrupted_and_queued_cancelled(
    tmp_path: Path, cache_dir: Path
) -> None:
    recipe, plan, mirror = setup(tmp_path, python=("3.9", "3.11"))

    def interrupted_build(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
        if builds_wheel(cmd):
            signal.raise_signal(signal.SIGINT)  # Ctrl-C while this job builds
            engine.wait_until_removed(c)
            return 143
        return succeed(engine, c, cmd)

    engine = engine_for(plan, interrupted_build)
    opts = options(tmp_path, mirror, jobs=1)
    with pytest.raises(KeyboardInterrupt):
        build(recipe, plan, opts, engine)
    assert eventually(lambda: not engine.live)
    assert sorted(statuses(opts.report_file).values()) == [
        ("cancelled", None),
        ("interrupted", None),
    ]
    assert not list(opts.output_dir.glob("*.whl"))
    assert not (opts.meta_dir / "staging").exists()


def test_interrupt_during_dependencies_stops_the_queue(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = setup(tmp_path, deps=("one", "two", "three", "four"))

    def interrupted_dep(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
        if c.job.startswith("dep-") and "make" in " ".join(cmd):
            signal.raise_signal(signal.SIGINT)
            engine.wait_until_removed(c)
            return 143
        return succeed(engine, c, cmd)

    engine = engine_for(plan, interrupted_dep)
    opts = options(tmp_path, mirror, jobs=1)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        build(recipe, plan, opts, engine)
    assert time.monotonic() - t0 < 10
    assert eventually(lambda: not engine.live)
    assert len(engine.created) == 1  # the queued dependencies never started
    assert set(statuses(opts.report_file).values()) == {("cancelled", None)}


def test_engine_down_at_cleanup_keeps_the_error_and_writes_the_report(
    tmp_path: Path, cache_dir: Path
) -> None:
    recipe, plan, mirror = setup(tmp_path, python=("3.9",))

    def engine_dies(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
        if builds_wheel(cmd):
            engine.down = True
            signal.raise_signal(signal.SIGTERM)
            return 255
        return succeed(engine, c, cmd)

    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        engine = engine_for(plan, engine_dies)
        opts = options(tmp_path, mirror)
        out = io.StringIO()
        with pytest.raises(KeyboardInterrupt) as caught:
            run(recipe, plan, opts, Console(file=out), engine=engine, require_arch=print)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert getattr(caught.value, "signum", None) == signal.SIGTERM  # not masked
    assert "could not remove the run's containers" in out.getvalue()
    assert opts.report_file.is_file()


def _raise_interrupted(signum: int, _frame: object) -> None:
    from orchestrator.errors import Interrupted

    raise Interrupted(signum)


def test_clean_takes_only_containers_of_dead_runs() -> None:
    me = RunIdentity.new()
    dead = RunIdentity("deadrun", 2**22 + 7, "1", me.host)  # above the default pid_max
    elsewhere = RunIdentity("remote", 1, "1", me.host + "-other")
    reused = RunIdentity("reused", me.pid, "1", me.host)  # same pid, another process
    engine = FakeEngine([image("img")])
    for run_id in (me, dead, elsewhere, reused):
        engine.create(types.ContainerSpec("img", labels=run_id.labels))
    engine.create(types.ContainerSpec("img", labels={types.LABEL: "1"}))  # older orch
    assert run_is_alive(me.labels) and not run_is_alive(dead.labels)
    gone = {c.labels.get(types.LABEL_RUN) for c in dead_runs_containers(engine)}
    assert gone == {"deadrun", "reused", None}
    assert len(dead_runs_containers(engine, everything=True)) == 5


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
)
def test_stop_signals_interrupt_with_their_exit_code(sig: signal.Signals, code: int) -> None:
    from orchestrator import cli
    from orchestrator.errors import Interrupted

    before = signal.getsignal(sig)
    with pytest.raises(Interrupted) as caught, cli._stop_signals_interrupt():
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the handler interrupts this
    assert caught.value.exit_code == code
    assert signal.getsignal(sig) is before  # restored after the command


def test_dependencies_are_keyed_by_the_base_image_not_the_pythons_added_to_it() -> None:
    """A local job image = its base + the selected interpreters: choosing other Pythons must
    reuse the dependencies built with the same base (the compiler lives there)."""
    from orchestrator.container.factory import ContainerFactory
    from orchestrator.container.hostenv import host_env
    from orchestrator.pipeline.run import _toolchain_image_id

    base = image("orch-local/base:1")
    with_39 = replace(image("orch-local/job:39"), labels={"io.orch.base": base.ref})
    with_313 = replace(image("orch-local/job:313"), labels={"io.orch.base": base.ref})
    pulled = image("quay.example/pypa/manylinux2014_x86_64:latest")
    engine = FakeEngine([base, with_39, with_313, pulled])
    factory = ContainerFactory(
        engine, RunIdentity.new(), host_env(EnvSettings()), threading.Event()
    )
    assert _toolchain_image_id(factory, with_39) == _toolchain_image_id(factory, with_313)
    assert _toolchain_image_id(factory, with_39) == base.id != with_39.id
    assert _toolchain_image_id(factory, pulled) == pulled.id  # no base: the image itself


def test_a_native_job_leaves_its_slot_once_its_wheel_is_out(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slot, two native jobs: the second builds while the first is still after its
    build (here: landing, slowed), yet no two builds ever run at once."""
    import orchestrator.pipeline.job as job_module

    recipe, plan, mirror = setup(tmp_path)
    events: list[tuple[str, str]] = []
    building = [0, 0]  # now, most
    lock = threading.Lock()
    real_land = job_module.land_once

    second_built = threading.Event()

    def slow_land(wheel: Path, *args: Any, **kw: Any) -> Any:
        with lock:
            events.append(("land start", kw["job"]))
        second_built.wait(10)  # a landing that waits for the next build, if it can start
        with lock:
            events.append(("land end", kw["job"]))
        return real_land(wheel, *args, **kw)

    def counting(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
        if builds_wheel(cmd):
            with lock:
                events.append(("build", c.job))
                if sum(e[0] == "build" for e in events) == 2:
                    second_built.set()
                building[0] += 1
                building[1] = max(building)
            time.sleep(0.1)
            with lock:
                building[0] -= 1
        return succeed(engine, c, cmd)

    monkeypatch.setattr(job_module, "land_once", slow_land)
    second_built.set()  # the warm-up run's landings do not wait
    build(recipe, plan, options(tmp_path, mirror, jobs=1), engine_for(plan))  # warm set
    events.clear()
    second_built.clear()
    report, _ = build(recipe, plan, options(tmp_path, mirror, jobs=1), engine_for(plan, counting))
    assert [j.status for j in report.jobs] == ["ok", "ok"]
    assert building[1] == 1  # the slot still bounds the builds
    first, second = (e[1] for e in events if e[0] == "build")
    assert events.index(("build", second)) < events.index(("land end", first))


def _slow_checks(
    monkeypatch: pytest.MonkeyPatch, audit_fails: bool
) -> dict[str, tuple[float, float]]:
    """Audit and verification replaced by 0.4 s each, recording when each ran."""
    import orchestrator.pipeline.job as job_module
    from orchestrator.audit.model import AuditResult
    from orchestrator.pipeline.verify import VerifyOutcome

    spans: dict[str, tuple[float, float]] = {}

    def audit(wheel: Path, recipe: Any, log: Any, linked: Any = None) -> AuditResult:
        t0 = time.monotonic()
        log.line("[audit] checked")
        time.sleep(0.4)
        spans["audit"] = (t0, time.monotonic())
        return AuditResult(wheel.name, (), ())

    def verify(factory: Any, recipe: Any, job: Any, wheel: Path, log: Any, **_: Any) -> Any:
        t0 = time.monotonic()
        log.line("[verify] checked")
        time.sleep(0.4)
        spans["verify"] = (t0, time.monotonic())
        return [VerifyOutcome("img", "passed", "ok", 0.4)]

    monkeypatch.setattr(job_module, "audit_job_wheel", audit)
    monkeypatch.setattr(job_module, "audit_errors", lambda r: ["exports"] if audit_fails else [])
    monkeypatch.setattr(job_module, "verify_wheel", verify)
    return spans


@pytest.mark.parametrize("audit_fails", [False, True])
def test_the_audit_runs_while_the_verification_containers_do(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, audit_fails: bool
) -> None:
    recipe, plan, mirror = setup(tmp_path, python=("3.9",))
    spans = _slow_checks(monkeypatch, audit_fails)
    opts = options(tmp_path, mirror, audit=True, verify=True)
    report, _ = build(recipe, plan, opts, engine_for(plan))
    (a0, a1), (v0, v1) = spans["audit"], spans["verify"]
    assert a0 < v1 and v0 < a1  # side by side
    job = report.jobs[0]
    expected = ("failed", "audit") if audit_fails else ("ok", None)
    assert (job.status, job.failed_stage) == expected
    lines = Path(job.log or "").read_text().splitlines()
    # the log keeps its order: the audit's lines, then the verification's
    assert lines.index("[audit] checked") < lines.index("[verify] checked")
    assert not list(opts.logs.glob("*.tmp"))


def test_an_audit_that_raises_still_leaves_the_checks_lines_in_the_job_log(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestrator.pipeline.job as job_module
    from orchestrator.errors import OrchError

    recipe, plan, mirror = setup(tmp_path, python=("3.9",))
    _slow_checks(monkeypatch, audit_fails=False)

    def broken(*_args: Any, **_kw: Any) -> Any:
        raise OrchError("auditwheel show: unreadable wheel")

    monkeypatch.setattr(job_module, "audit_job_wheel", broken)
    opts = options(tmp_path, mirror, audit=True, verify=True)
    report, _ = build(recipe, plan, opts, engine_for(plan))
    job = report.jobs[0]
    assert (job.status, job.failed_stage) == ("failed", "audit")
    assert "[verify] checked" in Path(job.log or "").read_text()  # not lost with the error
    assert not list(opts.logs.glob("*.tmp"))


def test_jobs_in_their_checks_are_bounded_too() -> None:
    # a job giving its build slot back early takes a checks slot: with n = 1, a second
    # job builds meanwhile, but its checks wait until the first job's are over
    from orchestrator.pipeline.run import _Slots

    slots = _Slots(1, 1)
    order: list[str] = []
    second_built = threading.Event()

    def second() -> None:
        with slots.take(False, lambda: order.append("B waits for a build slot")) as release:
            order.append("B builds")
            second_built.set()
            release()
            order.append("B checks")

    with slots.take(False, lambda: None) as release:
        release()  # A: the wheel is out; its checks run
        t = threading.Thread(target=second)
        t.start()
        assert second_built.wait(5)
        time.sleep(0.2)
        order.append("A checks done")
    t.join(5)
    assert order == ["B builds", "A checks done", "B checks"]
