"""The repair stage: auditwheel repair to the job's platform tag, inside the build image
(whose auditwheel knows that image's libraries)."""

from __future__ import annotations

from orchestrator.build import DIST
from orchestrator.container import Session
from orchestrator.plan import Job
from orchestrator.recipe.model import Recipe

REPAIRED = "/orch/repaired"


def repair_wheel(session: Session, job: Job, recipe: Recipe) -> None:
    if not recipe.repair.enabled:
        session.run("repair", f"mkdir -p {REPAIRED} && cp {DIST}/*.whl {REPAIRED}/")
        return
    excludes = " ".join(f"--exclude {e}" for e in recipe.repair.exclude)
    session.run(
        "repair",
        f"mkdir -p {REPAIRED} && for w in {DIST}/*.whl; do "
        f'auditwheel repair --plat {job.platform_tag} {excludes} -w {REPAIRED} "$w"; done',
    )
