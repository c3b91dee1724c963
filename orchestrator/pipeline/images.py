"""The images step: every image the plan needs present (and, for emulated ones, the
acceleration decided) before any job starts; else one clear error."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator import archs, options
from orchestrator.container.factory import ContainerFactory
from orchestrator.container.types import ImageInfo
from orchestrator.emulation.accel import Accel, Fallback, plan_accel
from orchestrator.emulation.compile_aid import interpreter_accelerator
from orchestrator.errors import EnvironmentProblem
from orchestrator.images import pull
from orchestrator.plan.jobs import Job, Plan
from orchestrator.report.joblog import JobLog
from orchestrator.report.progress import ProgressView
from orchestrator.report.record import ImageResult


@dataclass(frozen=True)
class ImagesOutcome:
    info: Mapping[str, ImageInfo]  # image ref -> what the engine has
    accel: Mapping[str, Accel | Fallback]  # emulated image ref -> how it is emulated

    def accelerated(self) -> dict[str, Accel]:
        return {ref: a for ref, a in self.accel.items() if isinstance(a, Accel)}

    def emulation_label(self, job: Job) -> str:
        if not job.emulated:
            return ""
        plan = self.accel.get(job.image)
        if isinstance(plan, Accel):
            return f"emulated, {plan.label}"
        return f"emulated ({plan.describe() if plan else 'plain'})"


@dataclass(frozen=True)
class ImagesInputs:
    plan: Plan
    opts: options.BuildOptions
    view: ProgressView
    factory: ContainerFactory
    require_arch: Callable[[str], object]  # binfmt: can this host run the architecture?
    on_result: Callable[[ImageResult], None]


def prepare_images(inputs: ImagesInputs) -> ImagesOutcome:
    needed: dict[str, Job] = {}
    for job in inputs.plan.jobs:
        needed.setdefault(job.image, job)
    for arch in sorted({j.arch for j in inputs.plan.jobs}):
        inputs.require_arch(arch)
    infos: dict[str, ImageInfo] = {}
    accel: dict[str, Accel | Fallback] = {}
    for ref, job in needed.items():
        infos[ref] = _one(inputs, job, accel)
    return ImagesOutcome(infos, accel)


def _one(inputs: ImagesInputs, job: Job, accel: dict[str, Accel | Fallback]) -> ImageInfo:
    key, view = f"image:{job.image}", inputs.view
    view.add(key, "image", f"{job.policy}_{job.arch}", job.image_source)
    view.stage(key, "checking")
    t0 = time.monotonic()
    log = _image_log(inputs.opts, job.image)
    info, status = _ensure(inputs, job, log, lambda text: view.stage(key, text))
    inputs.on_result(
        ImageResult(job.image, job.arch, info.id, job.image_source, status, time.monotonic() - t0)
    )
    if job.emulated:
        accel[job.image] = plan_accel(job.arch, info, inputs.opts.emulation, log, inputs.factory)
        view.note(key, accel[job.image].describe())
    view.finish(key, "ok", status)
    return info


def _ensure(
    inputs: ImagesInputs,
    job: Job,
    log: Callable[[str], None],
    phase: Callable[[str], None],
) -> tuple[ImageInfo, str]:
    """Present, pulled, or built (a local image reports its phases to the view)."""
    info = inputs.factory.engine.inspect_image(job.image)
    if info is None:
        aid = interpreter_accelerator(inputs.opts.emulation)
        build = inputs.opts.build_images
        return pull.ensure(job, build=build, on_line=log, on_phase=phase, accelerator=aid)
    want = archs.get(job.arch).oci.split("/")[0]
    if info.architecture and info.architecture != want:
        raise EnvironmentProblem(
            f"image {job.image} is {info.architecture}, but job {job.id} needs {want}"
        )
    return info, "present"


def _image_log(opts: options.BuildOptions, ref: str) -> Callable[[str], None]:
    log = JobLog(opts.logs / f"image-{ref.replace('/', '_').replace(':', '_')}.log")
    return log.line
