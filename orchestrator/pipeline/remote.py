"""The run's side of per-architecture engines (container/routing.py): which jobs run where,
natively or not, the images they run in copied to their engine, and the jobs of an engine
that cannot be reached failed up front with the fix, while every other job goes on."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from orchestrator.container.engine import DockerEngine
from orchestrator.container.routing import EngineRouter
from orchestrator.emulation.accel import Fallback
from orchestrator.errors import OrchError
from orchestrator.images.pull import ensure_local
from orchestrator.pipeline.images import Ready
from orchestrator.pipeline.job import JobOutcome, JobStage
from orchestrator.plan.jobs import Job, Plan
from orchestrator.report.progress import ProgressView

REMOTE_PLAIN = (
    "a routed engine that is not of this architecture emulates with its own QEMU "
    "(the toolchain roots are this host's)"
)


class NotOnItsEngine(OrchError):
    """A job's image could not be copied to the engine its architecture is routed to."""


def unreachable_failed(
    plan: Plan,
    router: EngineRouter,
    view: ProgressView,
    on_done: Callable[[str, JobOutcome], None],
) -> Plan:
    """The jobs that can run (emulated as their engine's machine says); those whose
    engine cannot be reached fail now, with the fix."""
    live: list[Job] = []
    for job in plan.jobs:
        error = router.error_for(job.arch)
        if not error:
            live.append(dataclasses.replace(job, emulated=router.emulated(job.arch, job.emulated)))
            continue
        view.add(job.id, "job", job.id, f"engine {job.engine}")
        view.finish(job.id, "failed", error.splitlines()[0])
        view.print(f"{job.id}: {error}")
        on_done(job.id, JobOutcome("failed", JobStage.START, error, cause=error))
    return dataclasses.replace(plan, jobs=tuple(live))


def on_its_engine(job: Job, ready: Ready, router: EngineRouter, view: ProgressView) -> Ready:
    """The image, on the engine of the job's architecture (copied there if it lacks it).
    Acceleration mounts this host's toolchain roots: a routed engine emulates plainly."""
    if job.arch not in router.routed:
        return ready
    _ship(job, ready.info.ref, router, view)
    return Ready(ready.info, Fallback(REMOTE_PLAIN) if job.emulated else None)


def runtime_on_its_engine(job: Job, router: EngineRouter, view: ProgressView) -> None:
    """The job's runtime image (verification), built here if needed, on its engine."""
    ref = job.runtime_image or job.image
    try:
        if router.local.engine.inspect_image(ref) is None and job.image_source == "local":
            ensure_local(job, "runtime", view.print)
    except OrchError as exc:
        raise NotOnItsEngine(f"runtime image {ref} could not be built: {exc}") from exc
    _ship(job, ref, router, view)


def _ship(job: Job, ref: str, router: EngineRouter, view: ProgressView) -> None:
    """`docker save | docker load` over the two engines' APIs, skipped when the engine
    has the same image id (the tests' in-memory engines share one image store)."""
    target, source = router.factory_for(job.arch).engine, router.local.engine
    if not isinstance(target, DockerEngine) or not isinstance(source, DockerEngine):
        return
    try:
        target.receive_image(ref, source)
    except OrchError as exc:
        raise NotOnItsEngine(f"image {ref} could not be copied to {job.engine}: {exc}") from exc
