"""Runs a plan, as a straight list of steps: images -> dependencies -> jobs (each: build ->
repair -> audit -> verify -> land, see job.py) -> report. Jobs run concurrently, each in
its own fresh container; an interruption (Ctrl-C, SIGTERM, SIGHUP) at any step stops
and removes the run's containers, and the report is written all the same."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from rich.console import Console

from orchestrator import options
from orchestrator.container.engine import DockerEngine
from orchestrator.container.factory import ContainerFactory, RunIdentity, remove_run_containers
from orchestrator.container.hostenv import host_env
from orchestrator.container.types import Engine, ImageInfo
from orchestrator.deps.stage import DepGroup, DepsInputs, build_dependencies
from orchestrator.emulation import binfmt
from orchestrator.pipeline.build import project_tar
from orchestrator.pipeline.images import ImagesInputs, ImagesOutcome, prepare_images
from orchestrator.pipeline.job import JobInputs, JobOutcome, run_job
from orchestrator.plan.jobs import Job, Plan
from orchestrator.recipe.model import Recipe
from orchestrator.report.progress import ProgressView
from orchestrator.report.record import JobResult, RunReport
from orchestrator.util.futures import wait_responsively

GRACE_SECONDS = 30.0  # interrupted: how long running jobs get to notice (their containers are gone)


def run(
    recipe: Recipe,
    plan: Plan,
    opts: options.BuildOptions,
    console: Console | None = None,
    engine: Engine | None = None,
    require_arch: Callable[[str], object] = binfmt.require,
) -> RunReport:
    factory = ContainerFactory(
        engine or DockerEngine(), RunIdentity.new(), host_env(opts.env), threading.Event()
    )
    report = _new_report(recipe, plan, opts, factory.run)
    view = ProgressView(console, live=opts.live)
    outcomes: dict[str, JobOutcome] = {}
    try:
        with view:
            images = prepare_images(
                ImagesInputs(plan, opts, view, factory, require_arch, report.images.append)
            )
            _set_image_ids(report, images)
            deps = build_dependencies(
                _deps_inputs(recipe, plan, opts, view, factory, images, report)
            )
            inputs = JobInputs(
                recipe,
                opts,
                factory,
                view,
                project_tar(recipe),
                _image_env(images),
                images.accelerated(),
                deps,
            )
            run_jobs(inputs, plan.jobs, images, outcomes.__setitem__)
    except KeyboardInterrupt:
        factory.cancel.set()
        view.print("interrupted: stopping containers...")
        raise
    finally:
        _record_jobs(report, outcomes, view, interrupted=factory.cancel.is_set())
        _clean_up(report, factory, opts, view)
    return report


def _image_env(images: ImagesOutcome) -> dict[str, dict[str, str]]:
    return {ref: dict(info.env) for ref, info in images.info.items()}


def _toolchain_image_id(factory: ContainerFactory, info: ImageInfo) -> str:
    """What pins a dependency build's compiler: a local job image adds only interpreters to
    its base (label io.orch.base), so the base's id is the key and choosing other Pythons
    reuses the same built dependencies."""
    base = info.labels.get("io.orch.base")
    found = factory.engine.inspect_image(base) if base else None
    return found.id if found else info.id


def _deps_inputs(
    recipe: Recipe,
    plan: Plan,
    opts: options.BuildOptions,
    view: ProgressView,
    factory: ContainerFactory,
    images: ImagesOutcome,
    report: RunReport,
) -> DepsInputs:
    accel = images.accelerated()
    groups = tuple(
        DepGroup(
            g,
            jobs[0].image,
            _toolchain_image_id(factory, images.info[jobs[0].image]),
            jobs[0].arch,
            accel.get(jobs[0].image),
        )
        for g, jobs in plan.groups()
    )
    return DepsInputs(
        recipe, groups, factory, view, opts.logs, opts.jobs, opts.env, report.deps.append
    )


# --- jobs ---------------------------------------------------------------------------


def run_jobs(
    inputs: JobInputs,
    jobs: Sequence[Job],
    images: ImagesOutcome,
    on_done: Callable[[str, JobOutcome], None],
) -> None:
    """Every job, at most `jobs` at once: emulated ones first (they take longest) but in
    their own, smaller pool, so that they never take every slot while native jobs wait."""
    order = sorted(jobs, key=lambda j: (not j.emulated, j.id))
    n = max(1, inputs.opts.jobs)
    slots = threading.Semaphore(n)
    for job in order:
        inputs.view.add(job.id, "job", job.id, images.emulation_label(job))
    pools = {
        True: ThreadPoolExecutor(emulated_limit(order, n), thread_name_prefix="emulated-job"),
        False: ThreadPoolExecutor(n, thread_name_prefix="job"),
    }
    futures = [pools[j.emulated].submit(_one_job, inputs, j, slots, on_done) for j in order]
    try:
        wait_responsively(futures)
    except KeyboardInterrupt:
        inputs.factory.cancel.set()
        for f in futures:
            f.cancel()
        with contextlib.suppress(Exception):  # the engine may be down; cleanup retries
            remove_run_containers(inputs.factory.engine, inputs.factory.run)
        wait(futures, timeout=GRACE_SECONDS)  # running jobs end fast without containers
        raise
    finally:
        for pool in pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


def emulated_limit(jobs: Sequence[Job], n: int) -> int:
    """Emulated jobs at once: one slot stays for native jobs when there are any (~20x)."""
    has_native = any(not j.emulated for j in jobs)
    return max(1, n - 1) if has_native and n > 1 else n


def _one_job(
    inputs: JobInputs,
    job: Job,
    slots: threading.Semaphore,
    on_done: Callable[[str, JobOutcome], None],
) -> None:
    with slots:
        on_done(job.id, run_job(inputs, job))


# --- the report ---------------------------------------------------------------------


def _new_report(
    recipe: Recipe, plan: Plan, opts: options.BuildOptions, run: RunIdentity
) -> RunReport:
    report = RunReport(recipe=str(recipe.path), name=recipe.name, shard=opts.shard)
    report.run_id = run.run_id
    report.excluded = [{"id": e.id, "reason": e.reason} for e in plan.excluded]
    report.jobs = [_job_result(j) for j in plan.jobs]
    return report


def _job_result(job: Job) -> JobResult:
    return JobResult(
        id=job.id,
        python=job.python,
        platform_tag=job.platform_tag,
        arch=job.arch,
        policy=job.policy,
        image=job.image,
        emulated=job.emulated,
    )


def _set_image_ids(report: RunReport, images: ImagesOutcome) -> None:
    for result in report.jobs:
        info = images.info.get(result.image)
        result.image_id = info.id if info else None


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


def _clean_up(
    report: RunReport, factory: ContainerFactory, opts: options.BuildOptions, view: ProgressView
) -> None:
    """Containers removed (unless kept), the report written, staging removed. An engine
    that is down here is a warning: the report is written and the original error stays."""
    kept = {j.kept_container for j in report.jobs if j.kept_container}
    if report.images:  # the engine was reached
        try:
            removed = remove_run_containers(factory.engine, factory.run, keep=kept)
        except Exception as exc:
            view.print(f"warning: could not remove the run's containers: {exc}")
        else:
            if removed:
                view.print(f"removed {removed} container(s)")
    report.finished = time.time()
    report.write(opts.report_file)
    shutil.rmtree(opts.meta_dir / "staging" / factory.run.run_id, ignore_errors=True)
    with contextlib.suppress(OSError):
        (opts.meta_dir / "staging").rmdir()  # only when no other run is staging
