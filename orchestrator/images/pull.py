"""Making a job's image present: a local image is built when missing (`orch images
build-local`), a pypa image is used if present, else pulled (through a mirror when one is
configured). Never silently replaced by another policy's image."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator import archs, options
from orchestrator.container import engine
from orchestrator.errors import EnvironmentProblem
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
    job: Job, *, build: bool, on_line: Callable[[str], None]
) -> tuple[engine.ImageInfo, str]:
    """(image info, how it was obtained: present | built | pulled)."""
    info = engine.inspect_image(job.image)
    if info is not None:
        _check_arch(job, info)
        return info, "present"
    if job.image_source == "local":
        if not build:
            raise EnvironmentProblem(
                f"local image {job.image} is not built; run `orch images build-local --arch {job.arch}`"
            )
        from orchestrator.images.local import ensure_local_image

        ensure_local_image(job.arch, "runtime", on_line=on_line)
        info = ensure_local_image(job.arch, "build", on_line=on_line)
        return info, "built"
    return _pull(job), "pulled"


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
