"""The repair stage: auditwheel repair to the job's platform tag, inside the build image
(whose auditwheel knows that image's libraries). In an emulated container of a local
image, the native auditwheel kit (emulation/repair_kit.py) runs it: the same release, on
the container's own file system, at native speed."""

from __future__ import annotations

import shlex

from orchestrator import archs
from orchestrator.container.session import Session
from orchestrator.emulation.repair_kit import BIN_DIR, RepairKit
from orchestrator.pipeline.build import DIST
from orchestrator.plan.jobs import Job
from orchestrator.recipe.model import Recipe

REPAIRED = "/orch/repaired"


def repair_wheel(session: Session, job: Job, recipe: Recipe, kit: RepairKit | None = None) -> None:
    if not recipe.repair.enabled:
        session.run("repair", f"mkdir -p {REPAIRED} && cp {DIST}/*.whl {REPAIRED}/")
        return
    flags = [f"--exclude {shlex.quote(e)}" for e in recipe.repair.exclude]
    if recipe.repair.only_plat:
        # Opt-in: exactly the job's tag. By default auditwheel also adds the most compatible
        # policy it proves (manylinux_2_17...), so older systems' pip installs the wheel.
        flags.append("--only-plat")
    aw = auditwheel(job.arch, kit)
    # auditwheel's refusal ("too-recent versioned symbols") names no symbol: its `show`
    # after a failed repair lists the versions the wheel needs, so the log says which.
    session.run(
        "repair",
        f"mkdir -p {REPAIRED} && for w in {DIST}/*.whl; do "
        f"{aw} repair --plat {job.platform_tag} {' '.join(flags)} "
        f'-w {REPAIRED} "$w" || {{ rc=$?; {aw} show "$w" || true; exit $rc; }}; done',
    )


def auditwheel(arch: str, kit: RepairKit | None) -> str:
    """The shell words that start auditwheel: the image's, or the kit's natively (its
    patchelf first on PATH; the container's environment otherwise as it is)."""
    if kit is None:
        return "auditwheel"
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(kit.env().items())]
    return " ".join([*env, f'PATH="{BIN_DIR}:$PATH"', shlex.join(kit.command(arch, []))])


def applies(job: Job) -> bool:
    """The kit repairs for local images (it holds the release they pin) in emulated
    containers; any other image keeps its own auditwheel."""
    return job.image_source == "local" and not archs.runs_natively(job.arch)
