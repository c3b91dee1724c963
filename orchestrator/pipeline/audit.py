"""The audit stage: `orch audit`'s checks on the repaired wheel (what auditwheel does not
check), with the recipe's allowances; findings go to the job's log."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from orchestrator.audit.model import AuditResult
from orchestrator.recipe.model import Recipe
from orchestrator.report.joblog import JobLog


def audit_job_wheel(
    wheel: Path, recipe: Recipe, log: JobLog, artifacts: Mapping[str, Path] | None = None
) -> AuditResult:
    """`artifacts`: the dependencies the job linked (name -> prefix artifact); their
    archives' symbol tables decide which exports are theirs."""
    # the ELF readers and auditwheel load with the first audit (a run whose checks are
    # all reused never needs them)
    from orchestrator.audit import audit_wheel
    from orchestrator.audit.archives import linked_libraries

    result = audit_wheel(
        wheel,
        allow_exports=recipe.audit.allow_exports,
        downgrade=recipe.audit.downgrade,
        bundled_static=[d.name for d in recipe.dependencies],
        linked=linked_libraries(artifacts or {}),
    )
    for f in result.findings:
        items = ", ".join(f.items[:8]) + (
            f" (+{len(f.items) - 8} more)" if len(f.items) > 8 else ""
        )
        log.line(f"[audit] {f.severity:7} {f.check}: {f.message}{': ' + items if items else ''}")
    return result


def audit_errors(result: AuditResult) -> list[str]:
    """The error-level checks that failed (the wheel is refused if any)."""
    return sorted({f.check for f in result.findings if f.severity == "error"})
