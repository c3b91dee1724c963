"""The audit's result types: one Finding per problem (or note), one AuditResult per wheel."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (INFO, WARNING, ERROR)  # in rising order

# The stable check identifiers, in the order reports show them.
CHECKS = (
    "tag",
    "symbol-versions",
    "exported-std",
    "exported-static-libs",
    "exported-own",
    "cxx11-abi",
    "needed",
    "rpath",
    "record",
    "abi3",
)


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Finding:
    check: str
    severity: str  # "error" | "warning" | "info"
    message: str
    items: tuple[str, ...] = ()
    file: str | None = None
    partial: bool = False  # a tool gave no answer: the check ran only in part

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "items": list(self.items),
            "file": self.file,
        }
        if self.partial:
            doc["partial"] = True
        return doc


@dataclass(frozen=True)
class AuditResult:
    wheel: str
    claimed_tags: tuple[str, ...]  # the platform tags the wheel's file name claims
    findings: tuple[Finding, ...]

    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def complete(self) -> bool:
        """Every check gave its answer (no tool failed, timed out or was missing)."""
        return not any(f.partial for f in self.findings)

    def by_check(self, check: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.check == check)

    def to_json(self) -> dict[str, Any]:
        return {
            "wheel": self.wheel,
            "claimed_tags": list(self.claimed_tags),
            "ok": self.ok(),
            "findings": [f.to_json() for f in self.findings],
        }


def make_finding(
    check: str,
    severity: str,
    message: str,
    items: Sequence[str] | None = None,
    file: str | None = None,
    partial: bool = False,
) -> Finding:
    return Finding(check, severity, message, tuple(items or ()), file, partial)


@dataclass(frozen=True)
class Downgrade:
    check: str
    severity: str
    reason: str


def parse_downgrades(entries: Sequence[tuple[str, str, str]]) -> dict[str, Downgrade]:
    """Validate (check, severity, reason) triples; unknown checks are a user error."""
    out: dict[str, Downgrade] = {}
    for check, severity, reason in entries:
        if check not in CHECKS:
            raise ValueError(f"unknown check {check!r} (known: {', '.join(CHECKS)})")
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r} (use one of {', '.join(SEVERITIES)})")
        if not reason.strip():
            raise ValueError(f"downgrade of {check!r} needs a reason")
        out[check] = Downgrade(check, severity, reason.strip())
    return out


def apply_downgrades(
    findings: Iterable[Finding], downgrades: dict[str, Downgrade]
) -> tuple[Finding, ...]:
    """Lower (never raise) the severity of a check's findings, keeping the reason visible."""
    out: list[Finding] = []
    for finding in findings:
        rule = downgrades.get(finding.check)
        if rule is None or severity_rank(rule.severity) >= severity_rank(finding.severity):
            out.append(finding)
            continue
        note = f" [downgraded from {finding.severity}: {rule.reason}]"
        out.append(replace(finding, severity=rule.severity, message=finding.message + note))
    return tuple(out)
