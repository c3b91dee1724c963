"""The repair stage: auditwheel repair to the job's platform tag, inside the build image
(whose auditwheel knows that image's libraries)."""

from __future__ import annotations

import shlex

from orchestrator.container.session import Session
from orchestrator.pipeline.build import DIST
from orchestrator.plan.jobs import Job
from orchestrator.recipe.model import Recipe

REPAIRED = "/orch/repaired"


def repair_wheel(session: Session, job: Job, recipe: Recipe) -> None:
    if not recipe.repair.enabled:
        session.run("repair", f"mkdir -p {REPAIRED} && cp {DIST}/*.whl {REPAIRED}/")
        return
    flags = [f"--exclude {shlex.quote(e)}" for e in recipe.repair.exclude]
    if recipe.repair.only_plat:
        # Opt-in: exactly the job's tag. By default auditwheel also adds the most compatible
        # policy it proves (manylinux_2_17...), so older systems' pip installs the wheel.
        flags.append("--only-plat")
    session.run(
        "repair",
        f"mkdir -p {REPAIRED} && for w in {DIST}/*.whl; do "
        f'auditwheel repair --plat {job.platform_tag} {" ".join(flags)} -w {REPAIRED} "$w"; done',
    )
