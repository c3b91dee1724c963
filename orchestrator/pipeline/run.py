"""Runs a plan: images -> dependencies -> (build -> repair -> verify -> audit) per job ->
wheelhouse and report. Jobs run concurrently, each in its own fresh container."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from orchestrator import archs
from orchestrator.container import engine
from orchestrator.container.hostenv import HostEnv, host_env
from orchestrator.container.session import Cancelled, Session, StageFailed
from orchestrator.emulation import binfmt
from orchestrator.emulation.accel import Accel, Fallback, plan_accel
from orchestrator.errors import OrchError
from orchestrator.images import pull as images
from orchestrator.pipeline.build import build_wheel, copy_project, job_env, merge_env, project_tar
from orchestrator.pipeline.land import copy_out_wheels, land_once, set_aside
from orchestrator.pipeline.repair import REPAIRED, repair_wheel
from orchestrator.plan.jobs import Job, Plan
from orchestrator.recipe.model import Recipe
from orchestrator.report.cause import cause_or_error
from orchestrator.report.joblog import JobLog
from orchestrator.report.progress import ProgressView
from orchestrator.report.record import ImageResult, JobResult, RunReport
from orchestrator.util.redact import inert


class Blocked(OrchError):
    """A job cannot start: something it needs (a dependency) failed."""


@dataclass(frozen=True)
class RunOptions:
    output_dir: Path
    jobs: int = max(1, (os.cpu_count() or 2))
    keep_container: bool = False
    keep_failed: bool = False
    report_path: Path | None = None
    log_dir: Path | None = None
    build_images: bool = True
    verify: bool = True
    audit: bool = True
    shard: str | None = None
    live: bool | None = None
    emulation: str = "auto"  # auto | accelerated | plain (emulation/accel.py)

    @property
    def meta_dir(self) -> Path:
        return self.output_dir / ".orch"

    @property
    def logs(self) -> Path:
        return self.log_dir or self.meta_dir / "logs"

    @property
    def report_file(self) -> Path:
        return self.report_path or self.meta_dir / "report.json"


@dataclass
class RunState:
    """Everything the stages of one run share."""

    recipe: Recipe
    plan: Plan
    opts: RunOptions
    view: ProgressView
    report: RunReport
    host: HostEnv
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    cancel: threading.Event = field(default_factory=threading.Event)
    project: bytes = b""
    dep_tars: dict[str, bytes | None] = field(default_factory=dict)  # group -> prefix tar
    dep_env: dict[str, dict[str, str]] = field(default_factory=dict)  # group -> build env
    dep_failures: dict[str, list[str]] = field(default_factory=dict)  # group -> failed deps
    image_ids: dict[str, str] = field(default_factory=dict)
    image_env: dict[str, dict[str, str]] = field(default_factory=dict)
    accel: dict[str, Accel | Fallback] = field(default_factory=dict)  # emulated image -> plan

    @property
    def labels(self) -> dict[str, str]:
        return {engine.LABEL_RUN: self.run_id}


def run(recipe: Recipe, plan: Plan, opts: RunOptions, console: Console | None = None) -> RunReport:
    report = RunReport(recipe=str(recipe.path), name=recipe.name, shard=opts.shard)
    report.excluded = [{"id": e.id, "reason": e.reason} for e in plan.excluded]
    report.jobs = [_job_result(j) for j in plan.jobs]
    view = ProgressView(console, live=opts.live)
    state = RunState(recipe, plan, opts, view, report, host_env())
    report.run_id = state.run_id
    try:
        with view:
            _prepare_images(state)
            state.project = project_tar(recipe)
            _run_dependencies(state)
            _run_jobs(state)
    except KeyboardInterrupt:
        state.cancel.set()
        view.print("interrupted: stopping containers...")
        raise
    finally:
        kept = {j.kept_container for j in report.jobs if j.kept_container}
        removed = engine.remove_containers(state.labels, keep=kept) if _engine_used(state) else 0
        if removed:
            view.print(f"removed {removed} container(s)")
        report.finished = time.time()
        report.write(opts.report_file)
        shutil.rmtree(opts.meta_dir / "staging" / state.run_id, ignore_errors=True)
        with contextlib.suppress(OSError):
            (opts.meta_dir / "staging").rmdir()  # only when no other run is staging
    return report


def _engine_used(state: RunState) -> bool:
    return bool(state.image_ids)


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


# --- images -------------------------------------------------------------------------


def _prepare_images(state: RunState) -> None:
    """Every image the plan needs, present before any job starts; else one clear error."""
    needed: dict[str, Job] = {}
    for job in state.plan.jobs:
        needed.setdefault(job.image, job)
    for arch in sorted({j.arch for j in state.plan.jobs}):
        binfmt.require(arch)
    for ref, job in needed.items():
        key = f"image:{ref}"
        state.view.add(key, "image", f"{job.policy}_{job.arch}", job.image_source)
        state.view.stage(key, "checking")
        t0 = time.monotonic()
        info, status = images.ensure(
            job, build=state.opts.build_images, on_line=_image_logger(state, ref)
        )
        state.image_ids[ref] = info.id
        state.image_env[ref] = dict(info.env)
        state.report.images.append(
            ImageResult(ref, job.arch, info.id, job.image_source, status, time.monotonic() - t0)
        )
        if job.emulated:
            log = _image_logger(state, ref)
            state.accel[ref] = plan_accel(job.arch, info, state.opts.emulation, log)
            state.view.note(key, state.accel[ref].describe())
        state.view.finish(key, "ok", status)
    for result in state.report.jobs:
        result.image_id = state.image_ids.get(result.image)


def _image_logger(state: RunState, ref: str) -> Callable[[str], None]:
    log = JobLog(state.opts.logs / f"image-{ref.replace('/', '_').replace(':', '_')}.log")
    return log.line


# --- dependencies -------------------------------------------------------------------


def _run_dependencies(state: RunState) -> None:
    if not state.recipe.dependencies:
        return
    from orchestrator.deps.stage import build_dependencies

    build_dependencies(state)


# --- jobs ---------------------------------------------------------------------------


def _run_jobs(state: RunState) -> None:
    jobs = sorted(state.plan.jobs, key=lambda j: (not j.emulated, j.id))  # longest first
    n = max(1, state.opts.jobs)
    has_native = any(not j.emulated for j in jobs)
    # Emulated jobs may not take every slot while native ones wait (~20x slower).
    emulated_slots = threading.Semaphore(max(1, n - 1) if has_native and n > 1 else n)
    for job in jobs:
        state.view.add(job.id, "job", job.id, emulation_label(state, job))
    results = {r.id: r for r in state.report.jobs}
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="job") as pool:
        futures: list[Future[None]] = []
        for job in jobs:
            futures.append(pool.submit(_guarded, state, job, results[job.id], emulated_slots))
        try:
            while True:
                _done, pending = wait(futures, timeout=0.5)
                if not pending:
                    break
        except KeyboardInterrupt:
            state.cancel.set()
            for f in futures:
                f.cancel()
            engine.remove_containers(state.labels)
            raise


def accel_for(state: RunState, image: str) -> Accel | None:
    plan = state.accel.get(image)
    return plan if isinstance(plan, Accel) else None


def emulation_label(state: RunState, job: Job) -> str:
    if not job.emulated:
        return ""
    plan = state.accel.get(job.image)
    if isinstance(plan, Accel):
        return "emulated, accelerated"
    return f"emulated ({plan.describe() if plan else 'plain'})"


def _guarded(state: RunState, job: Job, result: JobResult, slots: threading.Semaphore) -> None:
    if job.emulated:
        with slots:
            _run_job(state, job, result)
    else:
        _run_job(state, job, result)


def _run_job(state: RunState, job: Job, result: JobResult) -> None:
    view, opts = state.view, state.opts
    log = JobLog(opts.logs / f"{job.id}.log")
    result.log = str(log.path)
    staging = opts.meta_dir / "staging" / state.run_id / job.id
    t0 = time.monotonic()
    stage = "start"
    try:
        if state.cancel.is_set():
            raise Cancelled("cancelled")
        dep_tar = state.dep_tars.get(job.group, b"")
        if dep_tar is None:
            failed = ", ".join(state.dep_failures.get(job.group, []))
            raise Blocked(f"dependency {failed} failed to build")
        env = job_env(
            job,
            state.image_env.get(job.image, {}),
            merge_env(state.dep_env.get(job.group, {}), state.recipe.environment),
        )
        session = Session(
            job.image,
            platform=archs.get(job.arch).platform,
            labels=state.labels | {engine.LABEL_JOB: job.id},
            host=state.host,
            log=log,
            cancel=state.cancel,
            keep_on_failure=opts.keep_container,
            accel=accel_for(state, job.image),
            personality=archs.personality(job.arch),
        )
        try:
            with session:
                stage = "copy in"
                view.stage(job.id, stage)
                log.stage(stage)
                copy_project(session, state.recipe, state.project)
                if dep_tar:
                    session.put_tar(dep_tar, "/opt/orch")
                stage = "build"
                view.stage(job.id, stage)
                log.stage(stage)
                build_wheel(session, job, state.recipe, env)
                stage = "repair"
                view.stage(job.id, stage)
                log.stage(stage)
                repair_wheel(session, job, state.recipe)
                stage = "copy out"
                view.stage(job.id, stage)
                wheels = copy_out_wheels(session, REPAIRED, staging)
        finally:
            if session.kept and session.container is not None:
                result.kept_container = session.container.name
        if len(wheels) != 1:
            raise StageFailed("repair", f"expected one repaired wheel, found {len(wheels)}")
        wheel = wheels[0]
        refused = _check(state, job, result, wheel, log, view)
        if refused:
            stage = "audit" if refused.startswith("audit") else "verify"
            aside = set_aside(wheel, opts.meta_dir / "failed") if opts.keep_failed else None
            raise StageFailed(stage, refused + (f"; wheel kept at {aside}" if aside else ""))
        result.wheel = land_once(wheel, opts.output_dir, run_id=state.run_id, job=job.id)
        result.status = "ok"
        view.finish(job.id, "ok", result.wheel.filename)
    except Cancelled:
        result.status = "cancelled"
        view.finish(job.id, "cancelled")
    except Blocked as exc:
        result.status = "blocked"
        result.failed_stage = "deps"
        result.error = str(exc)
        view.finish(job.id, "blocked", str(exc))
    except (StageFailed, OrchError) as exc:
        result.status = "failed"
        result.failed_stage = getattr(exc, "stage", stage)
        result.error = str(exc)
        result.log_tail = log.tail(25)
        view.finish(job.id, "failed", f"{result.failed_stage}: {exc}")
    except Exception as exc:  # an engine error or a bug: this job fails, the others go on
        result.status = "failed"
        result.failed_stage = stage
        result.error = f"{type(exc).__name__}: {exc}"
        result.log_tail = log.tail(25)
        view.finish(job.id, "failed", f"{stage}: {result.error}")
    finally:
        if result.status == "failed":
            result.cause = cause_or_error(log.tail(400), result.error)
        result.seconds = time.monotonic() - t0
        result.stages = view.stage_times(job.id)
        log.close()
        shutil.rmtree(staging, ignore_errors=True)


def _check(
    state: RunState, job: Job, result: JobResult, wheel: Path, log: JobLog, view: ProgressView
) -> str | None:
    """Audit, then clean-container verification; results go into the job's report.
    Returns why the wheel is refused, or None."""
    if state.opts.audit:
        view.stage(job.id, "audit")
        log.stage("audit")
        from orchestrator.pipeline.verify import audit_job_wheel

        audit = audit_job_wheel(wheel, state.recipe, log)
        result.audit = audit.to_json()
        errors = sorted({f.check for f in audit.findings if f.severity == "error"})
        if errors:
            return f"audit failed: {', '.join(errors)}"
    if state.opts.verify:
        view.stage(job.id, "verify")
        log.stage("verify")
        from orchestrator.pipeline.verify import verify_wheel

        outcomes = verify_wheel(state, job, wheel, log)
        result.verify = [o.to_json() for o in outcomes]
        for o in outcomes:
            if o.status == "incompatible":
                return (
                    f"configuration error: verify image {o.image} cannot run this wheel: {o.detail}"
                )
            if not o.ok:
                return f"verification failed in {o.image}: {o.detail}"
    return None


# --- summary ------------------------------------------------------------------------


def summary_table(report: RunReport) -> Table:
    table = Table(title=f"orch: {report.name}", show_lines=False)
    for col in ("job", "status", "time", "wheel (or cause)", "size"):
        table.add_column(
            col,
            justify="right" if col in ("time", "size") else "left",
            overflow="fold",
            no_wrap=col in ("time", "size", "status"),
        )
    order = {"failed": 0, "cancelled": 1, "blocked": 2, "ok": 3}
    for j in sorted(report.jobs, key=lambda j: (order.get(j.status, 9), j.id)):
        style = {"ok": "green", "failed": "bold red"}.get(j.status, "yellow")
        table.add_row(
            j.id,
            f"[{style}]{j.status}[/]" + (f" ({j.failed_stage})" if j.failed_stage else ""),
            f"{j.seconds:.1f}s",
            j.wheel.filename if j.wheel else (j.cause or "-"),
            f"{j.wheel.size / 1024:.0f} KiB" if j.wheel else "-",
        )
    return table


def print_failures(report: RunReport, console: Console) -> None:
    for j in report.jobs:
        if j.status != "failed":
            continue
        console.rule(f"[bold red]{j.id} failed in {j.failed_stage}")
        if j.cause and j.cause != j.error:
            console.print(f"cause: {inert(j.cause)}", markup=False, soft_wrap=True, style="bold")
        console.print(inert(j.error or ""), markup=False, soft_wrap=True)
        if j.log_tail:
            tail = inert("\n".join(j.log_tail))
            console.print(tail, markup=False, highlight=False, soft_wrap=True)
        console.print(f"full log: {j.log}", markup=False, soft_wrap=True)
        if j.kept_container:
            console.print(
                f"container kept: docker exec -it {j.kept_container} bash   "
                f"(remove it with: orch clean)",
                markup=False,
            )
