"""audit_wheel: run every check on one wheel."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from .archives import LinkedLibrary
from .checks import CHECK_FUNCS
from .context import Context
from .model import CHECKS, AuditResult, Finding, apply_downgrades, parse_downgrades
from .symbols import resolve_bundled
from .wheel import extract_elfs, open_wheel


def audit_wheel(
    path: Path,
    *,
    allow_exports: Sequence[str] = (),
    downgrade: Sequence[tuple[str, str, str]] = (),
    bundled_static: Sequence[str] = (),
    linked: Sequence[LinkedLibrary] = (),
) -> AuditResult:
    """Audit one wheel. Raises WheelError when the file is missing or not a wheel, and
    ValueError for an invalid downgrade entry."""
    rules = parse_downgrades(downgrade)
    wheel = open_wheel(Path(path))
    by_fact = {lib.name for lib in linked}  # their archives tell; no name guessing
    declared, notes = resolve_bundled([n for n in bundled_static if n not in by_fact])
    with tempfile.TemporaryDirectory(prefix="orch-audit-") as tmp:
        elfs, errors = extract_elfs(wheel, Path(tmp))
        ctx = Context(
            wheel, elfs, errors, tuple(allow_exports), declared, notes, linked=tuple(linked)
        )
        findings: list[Finding] = []
        for name in CHECKS:
            findings += CHECK_FUNCS[name](ctx)
    return AuditResult(
        wheel=str(path),
        claimed_tags=wheel.platform_tags,
        findings=apply_downgrades(findings, rules),
    )
