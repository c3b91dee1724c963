"""The schedule without stage barriers, on the in-memory engine: a group's dependencies
start on its base image while interpreters still compile, a job starts when its own
interpreter is ready (not every interpreter of the plan), a failed dependency blocks only
what needs it, and -j is shared among the builds running at once. No Docker."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.container.types import ImageInfo
from orchestrator.deps.stage import build_jobs
from orchestrator.pipeline.images import BuiltLocalImages, Report
from orchestrator.plan.jobs import Job
from tests.support.fakeengine import FakeContainer, FakeEngine, build, image, succeed
from tests.test_runner import eventually, options, setup


class BaseHeld(threading.Event):
    """The base 'builds' until set; records what was asked while it was held."""

    def __init__(self, release_when: str = "") -> None:
        super().__init__()
        self.asked_while_held: list[str] = []
        self.release_when = release_when  # an image asked for that releases the base


class SlowLocalImages(BuiltLocalImages):
    """Local images 'built' into the fake engine: the base at once, each Python's image
    when the test lets it (`release`), as a compile would take its time."""

    def __init__(
        self, engine: FakeEngine, held: Sequence[str] = (), base_gate: BaseHeld | None = None
    ) -> None:
        super().__init__("plain")
        self.engine = engine
        self.gates = {tag: threading.Event() for tag in held}
        self.base_gate = base_gate
        self.built: list[str] = []

    def release(self, tag: str) -> None:
        self.gates[tag].set()

    def base(self, job: Job, on_line: Report, on_phase: Report) -> ImageInfo:
        if self.base_gate is not None:
            assert self.base_gate.wait(20), "base never released"
        return self._add(self.base_ref(job), "base")

    def for_python(self, job: Job, variant: str, on_line: Report, on_phase: Report) -> ImageInfo:
        if self.python_ref(job, variant) == self.base_ref(job):
            # Debian's interpreter: its image is the base, which takes the base's time
            # whichever step asks for it first (the job's image or its group's).
            return self.base(job, on_line, on_phase)
        tag = job.python_tag.split("-")[0]
        if self.base_gate is not None and not self.base_gate.is_set():
            self.base_gate.asked_while_held.append(f"{tag}-{variant}")
            if self.base_gate.release_when == f"{tag}-{variant}":
                self.base_gate.set()
        gate = self.gates.get(tag)
        if gate is not None:
            on_phase(f"{job.python_tag}: compile (x86_64)")
            assert gate.wait(20), f"{tag} never released"
        return self._add(self.python_ref(job, variant), f"{tag}-{variant}")

    def _add(self, ref: str, what: str) -> ImageInfo:
        info = image(ref)
        info = ImageInfo(ref, info.id, info.architecture, "", {"io.orch.base": ref}, {}, ())
        self.engine.images[ref] = info
        self.built.append(what)
        return info


def _landed(opts: Any) -> list[str]:
    return sorted(p.name.split("-")[2] for p in opts.output_dir.glob("*.whl"))


def test_a_job_lands_while_another_interpreter_of_its_image_compiles(
    tmp_path: Path, cache_dir: Path
) -> None:
    recipe, plan, mirror = setup(tmp_path, python=("3.9", "3.11"), deps=("zed",))
    engine = FakeEngine([])  # no image present: the run builds them in steps
    local = SlowLocalImages(engine, held=("cp311",))
    opts = options(tmp_path, mirror)
    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.update(out=build(recipe, plan, opts, engine, local_images=local))
    )
    thread.start()
    try:
        # cp39 is Debian's (in the base): its wheel lands while cp311 still compiles.
        assert eventually(lambda: _landed(opts) == ["cp39"], timeout=20)
        assert "cp311-build" not in local.built
        assert any(c.job == "dep-zed" for c in engine.created)  # deps ran on the base
        # The waiting job sleeps: its group is done, so it must not spin on that future.
        cpu0 = time.process_time()
        time.sleep(1.0)
        assert time.process_time() - cpu0 < 0.5
    finally:
        local.release("cp311")
        thread.join(30)
    report, output = result["out"]
    assert {j.id: j.status for j in report.jobs} == {
        "cp39-manylinux_2_31_x86_64": "ok",
        "cp311-manylinux_2_31_x86_64": "ok",
    }
    assert _landed(opts) == ["cp311", "cp39"]
    assert "waiting: interpreter cp311 (cp311-cp311: compile (x86_64))" in output
    cp311 = next(j for j in report.jobs if j.python == "3.11")
    assert cp311.image == local.python_ref(plan.jobs[1], "build")  # its own image
    dep_containers = [c for c in engine.created if c.job == "dep-zed"]
    assert [c.spec.image for c in dep_containers] == [local.base_ref(plan.jobs[0])]


def _run_with_base_held(
    tmp_path: Path, python: tuple[str, ...], seconds: float, release_when: str = ""
) -> SlowLocalImages:
    recipe, plan, mirror = setup(tmp_path, python=python)
    engine = FakeEngine([])
    gate = BaseHeld(release_when)
    local = SlowLocalImages(engine, base_gate=gate)
    timer = threading.Timer(seconds, gate.set)  # the base takes its time to 'build'
    timer.start()
    report, _output = build(recipe, plan, options(tmp_path, mirror), engine, local_images=local)
    timer.cancel()  # released already when the image asked for released it
    timer.join()
    assert {j.status for j in report.jobs} == {"ok"}
    return local


def test_a_compiled_interpreter_waits_for_the_base_a_debian_python_job_needs(
    tmp_path: Path, cache_dir: Path
) -> None:
    # cp39 runs in the base itself: the base is its critical path, so cp311's image (the
    # CPython builder, the compile) starts only once the base is built.
    local = _run_with_base_held(tmp_path, ("3.9", "3.11"), seconds=1.0)
    assert local.base_gate is not None
    # (cp39's own image is the base: whichever step asks first builds it, so it may be asked)
    assert [a for a in local.base_gate.asked_while_held if a.startswith("cp311")] == []
    assert local.built.index("base") < local.built.index("cp311-build")


def test_without_a_debian_python_job_the_interpreter_starts_beside_the_base(
    tmp_path: Path, cache_dir: Path
) -> None:
    # No job runs in the base alone: the compile is the longer path and starts at once.
    # The base is released as soon as cp311's image is asked for (else after 15 s).
    local = _run_with_base_held(tmp_path, ("3.11",), seconds=15.0, release_when="cp311-build")
    assert local.base_gate is not None and "cp311-build" in local.base_gate.asked_while_held


def test_a_waiting_job_names_the_dependencies_it_waits_for(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = setup(tmp_path, python=("3.9",), deps=("zlib", "xz"))
    release = threading.Event()

    def slow_deps(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> Any:
        if c.job.startswith("dep-") and "make" in " ".join(cmd):
            release.wait(10)
        return succeed(engine, c, cmd)

    engine = FakeEngine([image(j.image) for j in plan.jobs], slow_deps)
    timer = threading.Timer(1.0, release.set)
    timer.start()
    report, output = build(recipe, plan, options(tmp_path, mirror), engine)
    timer.join()
    assert [j.status for j in report.jobs] == ["ok"]
    assert "waiting: deps zlib, xz" in output


DAG = """\
  - name: {name}
    version: "1.0"
    source: {{url: "http://127.0.0.1:9/{name}.tar.gz", sha256: "{sha}"}}
    build: {{system: make}}
    requires: [{requires}]
"""


def test_a_failed_dependency_blocks_only_its_dependents(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = _dag(tmp_path, {"base": "", "top": "base", "side": ""})

    def base_fails(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> Any:
        if c.job == "dep-base" and "make" in " ".join(cmd):
            return 2, b"cc -c base.c\nbase.c:3:10: fatal error: zlib.h: No such file\nmore\n"
        return succeed(engine, c, cmd)

    engine = FakeEngine([image(j.image) for j in plan.jobs], base_fails)
    report, output = build(recipe, plan, options(tmp_path, mirror), engine)
    got = {d.name: d.status for d in report.deps}
    assert got == {"base": "failed", "top": "blocked", "side": "built"}
    failed = next(d for d in report.deps if d.name == "base")
    assert failed.cause == "base.c:3:10: fatal error: zlib.h: No such file"
    job = report.jobs[0]
    assert job.status == "blocked"
    assert job.error == "dependency base failed to build (blocking top)"
    assert "dependency base (x86_64) failed: base.c:3:10: fatal error" in output
    assert not any(c.job == "dep-top" for c in engine.created)  # never started


def test_dependencies_run_in_dag_order_as_parallel_as_allowed(
    tmp_path: Path, cache_dir: Path
) -> None:
    """a, b, c independent, d needs a and b: with two workers, two run at once, and d
    starts only after both of its requirements ended."""
    recipe, plan, mirror = _dag(tmp_path, {"a": "", "b": "", "c": "", "d": "a, b"})
    events: list[tuple[str, str]] = []
    running: list[str] = []
    most = [0]
    lock = threading.Lock()

    def timed(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> Any:
        if c.job.startswith("dep-") and "make" in " ".join(cmd):
            name = c.job.removeprefix("dep-")
            with lock:
                events.append(("start", name))
                running.append(name)
                most[0] = max(most[0], len(running))
            time.sleep(0.2)
            with lock:
                running.remove(name)
                events.append(("end", name))
        return succeed(engine, c, cmd)

    engine = FakeEngine([image(j.image) for j in plan.jobs], timed)
    report, _ = build(recipe, plan, options(tmp_path, mirror, jobs=2), engine)
    assert [j.status for j in report.jobs] == ["ok"]
    assert most[0] == 2
    start_d = events.index(("start", "d"))
    assert events.index(("end", "a")) < start_d and events.index(("end", "b")) < start_d


def test_every_dependency_build_gets_every_core() -> None:
    """A -j cannot grow once make runs: a build started beside another must still use
    both cores when that one finishes (the pool bounds how many builds run)."""
    assert build_jobs(2) == 2  # the same for a build started alone or beside another
    assert build_jobs(0) == 1


def _dag(tmp_path: Path, deps: dict[str, str]) -> tuple[Any, Any, Path]:
    import hashlib

    _recipe, _plan, mirror = setup(tmp_path, python=("3.9",), deps=tuple(deps))
    text = (tmp_path / "project" / "orch.yaml").read_text()
    head = text.split("dependencies:\n")[0]
    body = ""
    for name, requires in deps.items():
        sha = hashlib.sha256(f"source of {name}".encode()).hexdigest()
        body += DAG.format(name=name, sha=sha, requires=requires)
    (tmp_path / "project" / "orch.yaml").write_text(head + "dependencies:\n" + body)
    from orchestrator.plan.jobs import make_plan
    from orchestrator.recipe import load_recipe

    recipe = load_recipe(tmp_path / "project" / "orch.yaml")
    return recipe, make_plan(recipe, host_arch="x86_64"), mirror
