"""Making a job's image present: a local image is built when missing (`orch images
build-local`), a pypa image is used if present, else pulled (through a mirror when one is
configured). Never silently replaced by another policy's image."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator import archs, options
from orchestrator.container import engine
from orchestrator.errors import EnvironmentProblem
from orchestrator.images.interpreters import Accelerator
from orchestrator.plan import catalog
from orchestrator.plan.jobs import Job

MIRROR_ENV = options.IMAGE_MIRROR


def mirror_map() -> list[tuple[str, str]]:
    return list(options.env().image_mirrors)


def mirrored(ref: str) -> str | None:
    for src, dst in mirror_map():
        if ref.startswith(src + "/"):
            return dst + ref[len(src) :]
    return None


def ensure(
    job: Job,
    *,
    build: bool,
    on_line: Callable[[str], None],
    on_phase: Callable[[str], None] | None = None,
    accelerator: Accelerator | None = None,
) -> tuple[engine.ImageInfo, str]:
    """(image info, how it was obtained: present | built | pulled).

    A local image is built with its runtime twin; `on_phase` hears the phases (debootstrap,
    packages, each CPython compile) and heartbeats; `accelerator` speeds up compiling
    interpreters for emulated architectures.
    """
    info = engine.inspect_image(job.image)
    if info is not None:
        _check_arch(job, info)
        return info, "present"
    if job.image_source == "local":
        if not build:
            raise EnvironmentProblem(
                f"local image {job.image} is not built; run `orch images build-local --arch {job.arch}`"
            )
        ensure_local(job, "runtime", on_line, on_phase, accelerator)
        return ensure_local(job, "build", on_line, on_phase, accelerator), "built"
    return _pull(job), "pulled"


def ensure_local(
    job: Job,
    variant: str,
    on_line: Callable[[str], None],
    on_phase: Callable[[str], None] | None = None,
    accelerator: Accelerator | None = None,
) -> engine.ImageInfo:
    """The job's local image of `variant` (build or runtime), with the Pythons its plan chose."""
    from orchestrator.images.local import ensure_local_image

    suite = catalog.load().local[job.policy].suite
    pythons = job.image_pythons or None
    info = ensure_local_image(
        job.arch, variant, suite, pythons, on_line, on_phase=on_phase, accelerator=accelerator
    )
    want = job.image if variant == "build" else job.runtime_image
    if info.ref != want:
        raise EnvironmentProblem(
            f"job {job.id} expects image {want}, but its definition now names {info.ref}: "
            "the image definition changed since the plan was made; plan again"
        )
    return info


def _pull(job: Job) -> engine.ImageInfo:
    platform = archs.get(job.arch).platform
    candidates = [m for m in (mirrored(job.image),) if m] + [job.image]
    errors = []
    for ref in candidates:
        try:
            engine.pull_image(ref, platform=platform)
        except EnvironmentProblem as exc:
            errors.append(str(exc))
            continue
        if ref != job.image:
            engine.tag_image(ref, job.image)
        info = engine.inspect_image(job.image)
        assert info is not None
        _check_arch(job, info)
        return info
    raise EnvironmentProblem(
        f"image {job.image} for {job.policy}_{job.arch} is not present and cannot be pulled:\n  "
        + "\n  ".join(errors)
        + f"\n  Fix: make the registry reachable, set {MIRROR_ENV}=quay.io/pypa=<your-mirror>/pypa, "
        f"load the image (`docker load`), or build on a local image instead "
        f"(platforms: [manylinux_2_31], see `orch images build-local`)."
    )


def _check_arch(job: Job, info: engine.ImageInfo) -> None:
    want = archs.get(job.arch).oci.split("/")[0]
    if info.architecture and info.architecture != want:
        raise EnvironmentProblem(
            f"image {job.image} is {info.architecture}, but job {job.id} needs {want}"
        )
