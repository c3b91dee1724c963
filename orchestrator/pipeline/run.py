"""Runs a plan as a graph, not a list of stages: per image/architecture group, its
toolchain image -> its dependencies; per job, its own image and its group's dependencies
-> the job (build -> repair -> audit -> verify -> land, see job.py); then the report (see
`Schedule`). Jobs run concurrently, each in its own fresh container; an interruption
(Ctrl-C, SIGTERM, SIGHUP) at any step stops and removes the run's containers, and the
report is written all the same."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from rich.console import Console

from orchestrator import options
from orchestrator.container.engine import DockerEngine
from orchestrator.container.factory import ContainerFactory, RunIdentity, remove_run_containers
from orchestrator.container.hostenv import host_env
from orchestrator.container.routing import EngineRouter, route_engines
from orchestrator.container.session import wait_removals
from orchestrator.container.types import Engine, ImageInfo
from orchestrator.deps import glibcpin
from orchestrator.deps.stage import DepGroup, DepsInputs, DepsScheduler, GroupDeps
from orchestrator.emulation import binfmt
from orchestrator.pipeline import prefill
from orchestrator.pipeline.build import project_tar
from orchestrator.pipeline.images import Images, ImagesInputs, LocalImages, Ready
from orchestrator.pipeline.job import JobInputs, JobOutcome, JobStage, run_job
from orchestrator.pipeline.remote import (
    NotOnItsEngine,
    on_its_engine,
    runtime_on_its_engine,
    unreachable_failed,
)
from orchestrator.plan.engines import engine_routes
from orchestrator.plan.jobs import Job, Plan
from orchestrator.recipe.model import Recipe
from orchestrator.report.progress import ProgressView
from orchestrator.report.record import JobResult, RunReport
from orchestrator.util import stoppers
from orchestrator.util.futures import wait_responsively

GRACE_SECONDS = 30.0  # interrupted: how long running jobs get to notice (their containers are gone)
# How long the run's end waits for a prefill still fetching (pip/uv time out before this).
PREFILL_JOIN_SECONDS = 600.0


def run(
    recipe: Recipe,
    plan: Plan,
    opts: options.BuildOptions,
    console: Console | None = None,
    engine: Engine | None = None,
    require_arch: Callable[[str], object] = binfmt.require,
    local_images: LocalImages | None = None,
    connect: Callable[[str, str], tuple[Engine, str]] | None = None,  # routed engines (tests)
) -> RunReport:
    factory = ContainerFactory(
        engine or DockerEngine(), RunIdentity.new(), host_env(opts.env), threading.Event()
    )
    report = _new_report(recipe, plan, opts, factory.run)
    view = ProgressView(console, live=opts.live)
    outcomes: dict[str, JobOutcome] = {}
    router = EngineRouter(factory)
    try:
        with view:
            router = route_engines(factory, engine_routes(opts.env), connect)
            plan = unreachable_failed(plan, router, view, outcomes.__setitem__)
            needs_binfmt = lambda arch: arch in router.routed or require_arch(arch)  # noqa: E731
            images = Images(
                ImagesInputs(plan, opts, view, factory, needs_binfmt, report.images.append),
                local_images,
            )
            images.check()
            inputs = JobInputs(recipe, opts, factory, view, project_tar(recipe), {}, {}, {})
            deps = DepsInputs(
                recipe, (), factory, view, opts.logs, opts.jobs, opts.env, report.deps.append
            )
            with DepsScheduler(deps) as scheduler:
                schedule = Schedule(inputs, images, scheduler, report, router)
                schedule.run(plan.jobs, outcomes.__setitem__)
    except KeyboardInterrupt:
        factory.cancel.set()
        view.print("interrupted: stopping containers...")
        stoppers.stop_all()  # image steps blocked in worker threads (debootstrap, compiles)
        raise
    finally:
        _record_jobs(report, outcomes, view, interrupted=factory.cancel.is_set())
        _clean_up(report, factory, opts, view, router)
    return report


def _toolchain_image_id(factory: ContainerFactory, info: ImageInfo) -> str:
    """What pins a dependency build's compiler: a local job image adds only interpreters to
    its base (label io.orch.base), so the base's id is the key and choosing other Pythons
    reuses the same built dependencies."""
    base = info.labels.get("io.orch.base")
    found = factory.engine.inspect_image(base) if base else None
    return found.id if found else info.id


# --- the schedule -------------------------------------------------------------------


class Schedule:
    """No stage barrier: each group's dependencies start when its toolchain image is ready,
    each job when its group's dependencies and its own image are, verification of one job
    runs while others build. Every image, group and job is a future; a job thread waits
    for its two futures (saying what for), then for a slot."""

    def __init__(
        self,
        inputs: JobInputs,
        images: Images,
        deps: DepsScheduler,
        report: RunReport,
        router: EngineRouter | None = None,
    ) -> None:
        self.inputs, self.images, self.deps, self.report = inputs, images, deps, report
        self.router = router or EngineRouter(inputs.factory)  # per-architecture engines
        self.groups: dict[str, Future[GroupDeps]] = {}
        self.job_images: dict[str, Future[tuple[Job, Ready]]] = {}
        self.prefills: list[Future[None]] = []
        self.errors: list[BaseException] = []

    def run(self, jobs: Sequence[Job], on_done: Callable[[str, JobOutcome], None]) -> None:
        """Every job, at most `jobs` at once: emulated ones first (they take longest) but
        never in every slot while native jobs wait (see `emulated_limit`)."""
        order = sorted(jobs, key=lambda j: (not j.emulated, j.id))
        n = max(1, self.inputs.opts.jobs)
        slots = _Slots(n, emulated_limit(order, n))
        for job in order:
            self.inputs.view.add(job.id, "job", job.id, "emulated" if job.emulated else "")
        # Threads that mostly wait (image builds run in the engine): one per step.
        steps = ThreadPoolExecutor(3 * len(order) + 4, thread_name_prefix="image")
        runners = ThreadPoolExecutor(len(order), thread_name_prefix="job")
        try:
            self._start_images(steps, order)
            futures = [runners.submit(self._one_job, j, slots, on_done) for j in order]
            self._wait(futures)
        finally:
            steps.shutdown(wait=False, cancel_futures=True)
            runners.shutdown(wait=False, cancel_futures=True)
            self._join_prefills()
        if self.errors:  # an image step failed: its jobs did not run; say why, once
            raise self.errors[0]

    def _start_images(self, steps: ThreadPoolExecutor, order: Sequence[Job]) -> None:
        """Group images (then their dependencies) first, then each job's own image."""
        for job in order:
            if job.group not in self.groups:
                self.groups[job.group] = steps.submit(self._group, job)
        for job in order:
            self.job_images[job.id] = steps.submit(self._job_image, job, steps)

    def _group(self, job: Job) -> GroupDeps:
        ready = on_its_engine(job, self.images.group_image(job), self.router, self.inputs.view)
        ctx = DepGroup(
            job.group,
            ready.info.ref,
            _toolchain_image_id(self.inputs.factory, ready.info),
            job.arch,
            ready.accelerated,
            factory=self.router.routed_factory(job.arch),
            glibc_ceiling=glibcpin.ceiling(job.policy, job.image_source),
        )
        return self.deps.start(ctx).result()

    def _job_image(self, job: Job, steps: ThreadPoolExecutor) -> tuple[Job, Ready]:
        as_run, ready = self.images.job_image(job)
        if job.arch in self.router.routed:  # its engine gets the images it runs in, first
            ready = on_its_engine(as_run, ready, self.router, self.inputs.view)
            if self.inputs.opts.verify:
                self.images.runtime_image(job)
                runtime_on_its_engine(as_run, self.router, self.inputs.view)
        elif self.inputs.opts.verify and as_run is not job:
            steps.submit(self.images.runtime_image, job)  # while the job builds
        if self._prefills(as_run):  # while the dependencies build
            self.prefills.append(steps.submit(self._prefill, as_run, ready))
        return as_run, ready

    def _prefills(self, job: Job) -> bool:
        inputs = self.inputs
        if not inputs.opts.env.wheel_prefill or job.arch in self.router.routed:
            return False
        return prefill.applies(inputs, job)

    def _prefill(self, job: Job, ready: Ready) -> None:
        outcome = prefill.prefill(self.inputs, job, ready.info.id, dict(ready.info.env))
        if outcome != "hit":
            self.inputs.view.print(f"{job.id}: build requirements fetched ahead: {outcome}")

    def _join_prefills(self) -> None:
        """A prefill outlives its job when the job fails first (its dependencies did): its
        container must exist before the run's clean-up lists containers, or it is left
        behind. Unstarted ones were cancelled with the pool."""
        timeout = GRACE_SECONDS if self.inputs.factory.cancel.is_set() else PREFILL_JOIN_SECONDS
        _, running = wait(self.prefills, timeout=timeout)
        if running:
            self.inputs.view.print(f"warning: {len(running)} prefill(s) still running at the end")

    def _wait(self, futures: Sequence[Future[None]]) -> None:
        try:
            wait_responsively(futures)
        except KeyboardInterrupt:
            factory = self.inputs.factory
            factory.cancel.set()
            for f in futures:
                f.cancel()
            with contextlib.suppress(Exception):  # the engine may be down; cleanup retries
                remove_run_containers(factory.engine, factory.run)
            wait(futures, timeout=GRACE_SECONDS)  # running jobs end fast without containers
            raise

    def _one_job(self, job: Job, slots: _Slots, on_done: Callable[[str, JobOutcome], None]) -> None:
        image_f, group_f = self.job_images[job.id], self.groups[job.group]
        if not self._ready(job, image_f, group_f):
            return  # cancelled: recorded as such
        try:
            as_run, ready = image_f.result()
        except Exception as exc:
            self._image_failed(job, exc, on_done)
            return
        try:
            deps = group_f.result()
        except Exception as exc:
            self._image_failed(job, exc, on_done)
            return
        self._set_image(job, ready)
        self.inputs.view.note(job.id, self.images_label(job, ready))
        waiting = lambda: self.inputs.view.waiting(job.id, "waiting: a slot")  # noqa: E731
        with slots.take(job.emulated, waiting) as release:
            if self.inputs.factory.cancel.is_set():
                return
            # a native job's audit and verification (engine-bound: container starts, short
            # execs) leave the slot to the next build; emulated checks are CPU-bound (QEMU)
            early = release if not job.emulated else (lambda: None)
            on_done(job.id, run_job(self._inputs_for(as_run, ready, deps), as_run, early))

    def images_label(self, job: Job, ready: Ready) -> str:
        return ready.emulation_label(job)

    def _ready(self, job: Job, image_f: Future[Any], group_f: Future[Any]) -> bool:
        """Wait for the job's image and its group's dependencies, saying which."""
        view, cancel = self.inputs.view, self.inputs.factory.cancel
        while not (image_f.done() and group_f.done()):
            if cancel.is_set():
                return False
            view.waiting(job.id, f"waiting: {self._waiting_for(job, image_f, group_f)}")
            pending = [f for f in (image_f, group_f) if not f.done()]  # a done one: no wait
            wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
        return not cancel.is_set()

    def _waiting_for(self, job: Job, image_f: Future[Any], group_f: Future[Any]) -> str:
        what = []
        pending = self.inputs.view.unfinished(f"dep:{job.group}:")
        if not image_f.done():
            what.append(self.images.waiting_for(job, group_ready=bool(pending)))
        if not group_f.done() and pending:
            what.append("deps " + ", ".join(t.label.split()[0] for t in pending))
        elif not group_f.done() and image_f.done():
            what.append(self.images.waiting_for(job, group_ready=False))
        return "; ".join(what)

    def _inputs_for(self, job: Job, ready: Ready, deps: GroupDeps) -> JobInputs:
        accel = {job.image: ready.accelerated} if ready.accelerated else {}
        return dataclasses.replace(
            self.inputs,
            factory=self.router.factory_for(job.arch),
            image_env={job.image: dict(ready.info.env)},
            accel=accel,
            deps={job.group: deps},
        )

    def _set_image(self, job: Job, ready: Ready) -> None:
        for result in self.report.jobs:
            if result.id == job.id:
                result.image, result.image_id = ready.info.ref, ready.info.id

    def _image_failed(
        self, job: Job, exc: Exception, on_done: Callable[[str, JobOutcome], None]
    ) -> None:
        if self.inputs.factory.cancel.is_set():
            return
        if isinstance(exc, NotOnItsEngine):  # its engine's fault: only its jobs fail
            self.inputs.view.finish(job.id, "failed", str(exc).splitlines()[0])
            on_done(job.id, JobOutcome("failed", JobStage.START, str(exc), cause=str(exc)))
            return
        error = f"image: {exc}"
        self.inputs.view.finish(job.id, "blocked", error.splitlines()[0])
        if not any(e is exc for e in self.errors):
            self.errors.append(exc)
        on_done(job.id, JobOutcome("blocked", JobStage.START, error, cause=error.splitlines()[0]))


class _Slots:
    """At most n jobs building at once, at most `emulated` emulated ones among them, and
    at most n jobs in their checks after giving their build slot back early."""

    def __init__(self, n: int, emulated: int) -> None:
        self.all = threading.Semaphore(n)
        self.emulated = threading.Semaphore(emulated)
        self.checking = threading.Semaphore(n)

    @contextlib.contextmanager
    def take(self, emulated: bool, on_wait: Callable[[], None]) -> Iterator[Callable[[], None]]:
        """Yields `release`: trades the build slot for a checks slot (once; waiting for
        one while still holding the build slot); leaving gives back whatever is held."""
        held: list[threading.Semaphore] = []
        lock = threading.Lock()

        def give_back() -> None:
            while held:
                held.pop().release()

        def release() -> None:
            with lock:
                if held and self.checking not in held:
                    self.checking.acquire()
                    give_back()
                    held.append(self.checking)

        try:
            for sem in (self.emulated, self.all) if emulated else (self.all,):
                if not sem.acquire(blocking=False):
                    on_wait()
                    sem.acquire()
                held.append(sem)
            yield release
        finally:
            with lock:
                give_back()


def emulated_limit(jobs: Sequence[Job], n: int) -> int:
    """Emulated jobs at once: one slot stays for native jobs when there are any (~20x)."""
    has_native = any(not j.emulated for j in jobs)
    return max(1, n - 1) if has_native and n > 1 else n


# --- the report ---------------------------------------------------------------------


def _new_report(
    recipe: Recipe, plan: Plan, opts: options.BuildOptions, run: RunIdentity
) -> RunReport:
    report = RunReport(recipe=str(recipe.path), name=recipe.name, shard=opts.shard)
    report.run_id = run.run_id
    report.excluded = [{"id": e.id, "reason": e.reason} for e in plan.excluded]
    report.jobs = [planned_result(j) for j in plan.jobs]
    return report


def planned_result(job: Job) -> JobResult:
    """A planned job's entry in the report, before it runs."""
    return JobResult(
        id=job.id,
        python=job.python,
        platform_tag=job.platform_tag,
        arch=job.arch,
        policy=job.policy,
        image=job.image,
        emulated=job.emulated,
    )


def _record_jobs(
    report: RunReport, outcomes: dict[str, JobOutcome], view: ProgressView, interrupted: bool
) -> None:
    for result in report.jobs:
        outcome = outcomes.get(result.id)
        if outcome is None:
            if interrupted:  # never reported back: stopped before or while it ran
                started = view.tasks.get(result.id) is not None and view.tasks[result.id].started
                result.status = "interrupted" if started else "cancelled"
            continue
        result.status = outcome.status
        result.failed_stage = outcome.failed_stage.value if outcome.failed_stage else None
        result.error = outcome.error
        result.wheel = outcome.wheel
        result.audit = dict(outcome.audit) if outcome.audit is not None else None
        result.verify = [dict(v) for v in outcome.verify]
        result.kept_container = outcome.kept_container
        result.seconds = outcome.seconds
        result.stages = dict(outcome.stages)
        result.log = outcome.log
        result.log_tail = list(outcome.log_tail)
        result.cause = outcome.cause
        result.wheel_cache = dict(outcome.wheel_cache)
        result.compile_cache = dict(outcome.compile_cache)
        result.checks = dict(outcome.checks)


def _clean_up(
    report: RunReport,
    factory: ContainerFactory,
    opts: options.BuildOptions,
    view: ProgressView,
    router: EngineRouter,
) -> None:
    """Containers removed (unless kept), the report written, staging removed. An engine
    that is down here is a warning: the report is written and the original error stays."""
    kept = {j.kept_container for j in report.jobs if j.kept_container}
    wait_removals()  # those removed in the background first: then nothing races the listing
    if report.images:  # the engine was reached
        try:
            removed = remove_run_containers(factory.engine, factory.run, keep=kept)
        except Exception as exc:
            view.print(f"warning: could not remove the run's containers: {exc}")
        else:
            removed += router.clean_up(kept, view.print)
            if removed:
                view.print(f"removed {removed} container(s)")
    report.finished = time.time()
    report.write(opts.report_file)
    shutil.rmtree(opts.meta_dir / "staging" / factory.run.run_id, ignore_errors=True)
    with contextlib.suppress(OSError):
        (opts.meta_dir / "staging").rmdir()  # only when no other run is staging
