"""The images step, per group and per job rather than all before anything: a group's
dependencies need only its toolchain image, a job needs only its own image.

For a local image that is not built yet, the toolchain image is the local *base* (no
source-built interpreter) and each job runs in the image with its own Python only (base +
one interpreter, `images/local.py`): dependencies start as soon as the base is built, and
a job starts as soon as its interpreter is, while the others still compile. A present
image (any source) and a pulled one serve both roles, as before. Each step runs once per
image however many threads ask for it (`_Once`)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from orchestrator import archs, options
from orchestrator.container.factory import ContainerFactory
from orchestrator.container.types import ImageInfo
from orchestrator.deps.pythons import cache_remote
from orchestrator.emulation.accel import Accel, Fallback, plan_accel
from orchestrator.emulation.compile_aid import interpreter_accelerator
from orchestrator.errors import EnvironmentProblem
from orchestrator.images import pull
from orchestrator.plan import catalog
from orchestrator.plan.jobs import Job, Plan, job_prefix
from orchestrator.report.joblog import JobLog
from orchestrator.report.progress import ProgressView
from orchestrator.report.record import ImageResult

Report = Callable[[str], None]


@dataclass(frozen=True)
class Ready:
    """An image a step can run in, and how an emulated one is accelerated."""

    info: ImageInfo
    accel: Accel | Fallback | None = None

    @property
    def accelerated(self) -> Accel | None:
        return self.accel if isinstance(self.accel, Accel) else None

    def emulation_label(self, job: Job) -> str:
        if not job.emulated:
            return ""
        if isinstance(self.accel, Accel):
            return f"emulated, {self.accel.label}"
        return f"emulated ({self.accel.describe() if self.accel else 'plain'})"


class LocalImages(Protocol):
    """How local images are made (tests give a fake that takes its time)."""

    def base(self, job: Job, on_line: Report, on_phase: Report) -> ImageInfo: ...

    def for_python(
        self, job: Job, variant: str, on_line: Report, on_phase: Report
    ) -> ImageInfo: ...

    def base_ref(self, job: Job) -> str: ...

    def python_ref(self, job: Job, variant: str) -> str: ...

    def pythons(self, job: Job) -> tuple[str, ...]: ...


class BuiltLocalImages:
    """Local images built on this host (images/local.py)."""

    def __init__(self, emulation: str) -> None:
        self._aid = interpreter_accelerator(emulation)
        self._remote = cache_remote()

    def base(self, job: Job, on_line: Report, on_phase: Report) -> ImageInfo:
        from orchestrator.images.local import ensure_local_base

        return ensure_local_base(job.arch, "build", _suite(job), on_line, on_phase)

    def for_python(self, job: Job, variant: str, on_line: Report, on_phase: Report) -> ImageInfo:
        from orchestrator.images.local import ensure_local_image

        return ensure_local_image(
            job.arch,
            variant,
            _suite(job),
            (job.python,),
            on_line,
            on_phase=on_phase,
            accelerator=self._aid,
            remote=self._remote,
        )

    def base_ref(self, job: Job) -> str:
        from orchestrator.images.definition import plan_image

        return plan_image(job.arch, _suite(job), (job.python,)).base.ref("build")

    def python_ref(self, job: Job, variant: str) -> str:
        from orchestrator.images.local import python_image_ref

        return python_image_ref(job.arch, variant, _suite(job), job.python)

    def pythons(self, job: Job) -> tuple[str, ...]:
        from orchestrator.images.definition import plan_image

        return plan_image(job.arch, _suite(job), (job.python,)).pythons


def _suite(job: Job) -> str:
    return catalog.load().local[job.policy].suite


@dataclass(frozen=True)
class ImagesInputs:
    plan: Plan
    opts: options.BuildOptions
    view: ProgressView
    factory: ContainerFactory
    require_arch: Callable[[str], object]  # binfmt: can this host run the architecture?
    on_result: Callable[[ImageResult], None]


class Images:
    """Every image step of one run, each done once, on the thread that first needs it."""

    def __init__(self, inputs: ImagesInputs, local: LocalImages | None = None) -> None:
        self.inputs = inputs
        self.local = local or BuiltLocalImages(inputs.opts.emulation)
        self._once = _Once()
        self._split: dict[str, bool] = {}
        self._base_only: dict[str, bool] = {}  # base ref -> a job runs in the base itself
        self._lock = threading.Lock()

    def check(self) -> None:
        """What can fail at once fails before anything starts: the host cannot run an
        architecture, or a local image is missing and may not be built."""
        for arch in sorted({j.arch for j in self.inputs.plan.jobs}):
            self.inputs.require_arch(arch)
        for job in self.inputs.plan.jobs:
            self._split[job.image] = self._needs_split(job)

    def _needs_split(self, job: Job) -> bool:
        if job.image in self._split:
            return self._split[job.image]
        if self.inputs.factory.engine.inspect_image(job.image) is not None:
            return False
        if job.image_source == "local" and not self.inputs.opts.build_images:
            raise EnvironmentProblem(
                f"local image {job.image} is not built; "
                f"run `orch images build-local --arch {job.arch}`"
            )
        return job.image_source == "local"

    def split(self, job: Job) -> bool:
        """Built here in steps (base, then one image per Python)?"""
        return self._split.get(job.image, False)

    def group_image(self, job: Job) -> Ready:
        """Where the group's dependencies build: the job image, or the local base."""
        if not self.split(job):
            return self._whole(job)
        ref = self.local.base_ref(job)
        return self._once.get(ref, lambda: self._base(job, ref))

    def job_image(self, job: Job) -> tuple[Job, Ready]:
        """The job as it runs (its image refs) and its image, ready."""
        if not self.split(job):
            return job, self._whole(job)
        build_ref = self.local.python_ref(job, "build")
        ready = self._once.get(build_ref, lambda: self._python_image(job, build_ref))
        return self.as_run(job), ready

    def as_run(self, job: Job) -> Job:
        """A split job runs in its per-Python images; its group (dependencies) stays."""
        if not self.split(job):
            return job
        runtime = self.local.python_ref(job, "runtime")
        others = [v for v in job.verify_images if v != job.runtime_image]
        return dataclasses.replace(
            job,
            image=self.local.python_ref(job, "build"),
            runtime_image=runtime,
            verify_images=tuple(dict.fromkeys((runtime, *others))),
            image_pythons=self.local.pythons(job),
        )

    def runtime_image(self, job: Job) -> None:
        """The per-Python runtime image (verification), built while the job builds."""
        if self.split(job):
            ref = self.local.python_ref(job, "runtime")
            self._once.get(ref, lambda: self._runtime(job, ref))

    def waiting_for(self, job: Job, group_ready: bool) -> str:
        """What the job's image step is doing, in words for a waiting job."""
        view = self.inputs.view
        if not self.split(job):
            whole = view.stage_of(f"image:{job.image}") or "queued"
            return f"image {job.policy}_{job.arch} ({whole})"
        tag = job_prefix(job.python)  # cp313t, as the job's id names it
        stage = _short(view.stage_of(f"image:{self.local.python_ref(job, 'build')}"))
        if not group_ready:
            base = _short(view.stage_of(f"image:{self.local.base_ref(job)}"))
            if base and stage in (None, "checking"):
                return f"base image ({base})"
        return f"interpreter {tag} ({stage or 'queued'})"

    def _base_job_waits(self, job: Job) -> bool:
        """Does a job of this run use the base of `job`'s image as it is (Debian's
        interpreter), so that the base is the first wheel's critical path?"""
        base = self.local.base_ref(job)
        with self._lock:
            if base not in self._base_only:
                self._base_only[base] = any(
                    self.split(j)
                    and self.local.base_ref(j) == base
                    and self.local.python_ref(j, "build") == base
                    for j in self.inputs.plan.jobs
                )
            return self._base_only[base]

    # --- the steps ----------------------------------------------------------------------

    def _whole(self, job: Job) -> Ready:
        return self._once.get(job.image, lambda: self._ensure_whole(job))

    def _ensure_whole(self, job: Job) -> Ready:
        key, view = f"image:{job.image}", self.inputs.view
        view.add(key, "image", f"{job.policy}_{job.arch}", job.image_source)
        view.stage(key, "checking")
        t0 = time.monotonic()
        log = _image_log(self.inputs.opts, job.image)
        info = self.inputs.factory.engine.inspect_image(job.image)
        status = "present"
        if info is None:
            aid = interpreter_accelerator(self.inputs.opts.emulation)
            info, status = pull.ensure(
                job,
                build=self.inputs.opts.build_images,
                on_line=log,
                on_phase=lambda text: view.stage(key, text),
                accelerator=aid,
            )
        else:
            _check_arch(job, info)
        return self._done(key, job, info, status, t0, log)

    def _base(self, job: Job, ref: str) -> Ready:
        return self._step(ref, job, f"{job.policy}_{job.arch} base", self.local.base)

    def _python_image(self, job: Job, ref: str) -> Ready:
        label = f"{job.policy}_{job.arch} + {job_prefix(job.python)}"
        if ref != self.local.base_ref(job) and self._base_job_waits(job):
            # The CPython builder's apt-get beside the base's doubled the base's time on a
            # fresh machine (two toolchain installs on 2 cores and one disk); a job of the
            # base alone lands sooner when the builder and compiles follow it.
            self.group_image(job)

        def build(j: Job, on_line: Report, on_phase: Report) -> ImageInfo:
            return self.local.for_python(j, "build", on_line, on_phase)

        return self._step(ref, job, label, build)

    def _runtime(self, job: Job, ref: str) -> Ready:
        label = f"{job.policy}_{job.arch} + {job_prefix(job.python)} runtime"

        def build(j: Job, on_line: Report, on_phase: Report) -> ImageInfo:
            return self.local.for_python(j, "runtime", on_line, on_phase)

        return self._step(ref, job, label, build, accel=False)

    def _step(
        self,
        ref: str,
        job: Job,
        label: str,
        build: Callable[[Job, Report, Report], ImageInfo],
        accel: bool = True,
    ) -> Ready:
        key, view = f"image:{ref}", self.inputs.view
        view.add(key, "image", label, "local")
        view.stage(key, "checking")
        t0 = time.monotonic()
        log = _image_log(self.inputs.opts, ref)
        info = self.inputs.factory.engine.inspect_image(ref)
        status = "present" if info else "built"
        info = info or build(job, log, lambda text: view.stage(key, text))
        return self._done(key, job, info, status, t0, log, accel)

    def _done(
        self,
        key: str,
        job: Job,
        info: ImageInfo,
        status: str,
        t0: float,
        log: Report,
        accel: bool = True,
    ) -> Ready:
        self.inputs.on_result(
            ImageResult(
                info.ref, job.arch, info.id, job.image_source, status, time.monotonic() - t0
            )
        )
        plan: Accel | Fallback | None = None
        if job.emulated and accel:
            plan = plan_accel(job.arch, info, self.inputs.opts.emulation, log, self.inputs.factory)
            self.inputs.view.note(key, plan.describe())
        self.inputs.view.finish(key, "ok", status)
        return Ready(info, plan)


def _short(stage: str | None) -> str | None:
    """A heartbeat without its last output line: a waiting job's row stays readable."""
    return stage.split("; last output")[0] if stage else stage


class _Once:
    """Each key's function runs once; concurrent callers wait for that one result."""

    def __init__(self) -> None:
        self._futures: dict[str, Future[Ready]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, fn: Callable[[], Ready]) -> Ready:
        with self._lock:
            future = self._futures.get(key)
            mine = future is None
            if future is None:
                future = self._futures[key] = Future()
        if mine:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()


def _check_arch(job: Job, info: ImageInfo) -> None:
    want = archs.get(job.arch).oci.split("/")[0]
    if info.architecture and info.architecture != want:
        raise EnvironmentProblem(
            f"image {job.image} is {info.architecture}, but job {job.id} needs {want}"
        )


def _image_log(opts: options.BuildOptions, ref: str) -> Report:
    log = JobLog(opts.logs / f"image-{ref.replace('/', '_').replace(':', '_')}.log")
    return log.line
