"""Helpers the renderers share: reading report dicts, ordering jobs, formatting numbers.

Renderers take the report as the JSON dict `RunReport.to_json()` writes (or `merge`
returns), not the dataclasses: reports come from files written by other runs and other
orch versions, so every field is read with a default.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator import archs
from orchestrator.report.cause import cause_or_error
from orchestrator.util.redact import redact

Report = Mapping[str, Any]
Job = Mapping[str, Any]

# Problems first, in the order a reader should look at them.
STATUS_ORDER = {"failed": 0, "blocked": 1, "cancelled": 2, "waiting": 3, "ok": 4}
PROBLEM_STATUSES = ("failed", "blocked", "cancelled", "waiting")
DEP_OK = ("built", "cached")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Characters XML 1.0 forbids (and lone surrogates): a stray byte in a log must not
# make the JUnit file unparsable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def jobs(report: Report) -> list[Job]:
    return list(report.get("jobs") or [])


def deps(report: Report) -> list[Mapping[str, Any]]:
    return list(report.get("deps") or [])


def status(job: Job) -> str:
    return str(job.get("status") or "waiting")


def is_problem(job: Job) -> bool:
    return status(job) != "ok"


def problems_first(items: Iterable[Job]) -> list[Job]:
    """Failures first, then blocked, cancelled, ok; by Python, policy, arch within each."""
    return sorted(items, key=lambda j: (STATUS_ORDER.get(status(j), 3), *job_order(j)))


def job_order(job: Job) -> tuple[tuple[int, ...], list[Any], int]:
    """Python versions numerically (3.9 < 3.10), policies naturally, archs in catalog order."""
    policy, arch = column_of(job)
    natural = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", policy)]
    order = list(archs.ARCHS)
    return (
        version_key(str(job.get("python", ""))),
        natural,
        order.index(arch) if arch in order else 99,
    )


def status_counts(report: Report) -> Counter[str]:
    return Counter(status(j) for j in jobs(report))


def dep_counts(report: Report) -> Counter[str]:
    return Counter(str(d.get("status")) for d in deps(report))


def version_key(version: str) -> tuple[int, ...]:
    """'3.9' < '3.10' (numeric), unknown spellings last."""
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (999,)


def column_of(job: Job) -> tuple[str, str]:
    """The grid column of a job: (policy, arch)."""
    return str(job.get("policy") or "?"), str(job.get("arch") or "?")


def parse_job_id(job_id: str) -> tuple[str, str, str] | None:
    """'cp311-manylinux_2_31_x86_64' -> ('3.11', 'manylinux_2_31', 'x86_64'), else None.

    Excluded combinations have only an id; this places them in the grid.
    """
    m = re.fullmatch(r"cp(\d)(\d+)-(.+)", job_id)
    if not m:
        return None
    platform_tag = m.group(3)
    for arch in archs.ARCHS:
        if platform_tag.endswith("_" + arch):
            return f"{m.group(1)}.{m.group(2)}", platform_tag[: -len(arch) - 1], arch
    return None


def clean_text(text: object) -> str:
    """Log text fit for XML/HTML/Markdown: credentials redacted, colour codes and control
    characters removed."""
    return _NOT_XML.sub("", _ANSI.sub("", redact(str(text))))


def log_tail(job: Job) -> list[str]:
    return [clean_text(line) for line in (job.get("log_tail") or [])]


def cause(job: Job) -> str:
    """The one line that explains a problem: recorded by the run, else found in the log
    tail (reports of older runs), else the error's first line."""
    if job.get("cause"):
        return clean_text(job["cause"])
    found = cause_or_error(log_tail(job), clean_text(job.get("error") or ""))
    return found or ""


def dep_label(dep: Mapping[str, Any]) -> str:
    """'zstd 1.5.7 (ppc64le, manylinux_2_28:2026.01)': the same library is built once per
    image and architecture, so the image tells two of its builds apart."""
    image = str(dep.get("group") or "").split("|", 1)[0].rsplit("/", 1)[-1]
    where = ", ".join(str(p) for p in (dep.get("arch"), image) if p)
    return f"{dep.get('name')} {dep.get('version')} ({where})"


def number(value: object) -> float | None:
    """A JSON number as float; None for anything else (bool included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def human_size(size: object) -> str:
    value = number(size)
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{value:.0f} {unit}" if unit == "B" or value >= 100 else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} MiB"  # pragma: no cover - the loop always returns


def human_seconds(seconds: object) -> str:
    s = number(seconds)
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    minutes, secs = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def timestamp(epoch: object, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """A UTC time as text, or '' for a missing time."""
    value = number(epoch)
    return "" if value is None else time.strftime(fmt, time.gmtime(value))


def duration(report: Report) -> float | None:
    started, finished = number(report.get("started")), number(report.get("finished"))
    if started is None or finished is None:
        return None
    return max(0.0, finished - started)


def wheel_name(job: Job) -> str | None:
    wheel = job.get("wheel")
    return str(wheel["filename"]) if isinstance(wheel, Mapping) and wheel.get("filename") else None


def wheel_size(job: Job) -> object:
    wheel = job.get("wheel")
    return wheel.get("size") if isinstance(wheel, Mapping) else None


def audit_findings(job: Job) -> list[Mapping[str, Any]]:
    audit = job.get("audit")
    return list(audit.get("findings") or []) if isinstance(audit, Mapping) else []


def headline(report: Report) -> str:
    """'3 of 4 jobs ok, 1 failed' (the one-line verdict every format leads with)."""
    counts = status_counts(report)
    total = sum(counts.values())
    parts = [f"{counts.get('ok', 0)} of {total} jobs ok"]
    parts += [f"{counts[s]} {s}" for s in PROBLEM_STATUSES if counts.get(s)]
    failed_deps = dep_counts(report).get("failed", 0)
    if failed_deps:
        parts.append(f"{failed_deps} dependency build{'s' if failed_deps != 1 else ''} failed")
    return ", ".join(parts)


def deps_line(report: Report) -> str:
    """'dependencies: 5 built, 10 cached (67% cache hits), 1 failed', or '' without any."""
    counts = dep_counts(report)
    if not counts:
        return ""
    built, cached = counts.get("built", 0), counts.get("cached", 0)
    text = f"dependencies: {built} built, {cached} cached"
    if built + cached:
        text += f" ({100 * cached / (built + cached):.0f}% cache hits)"
    for other in ("failed", "blocked"):
        if counts.get(other):
            text += f", {counts[other]} {other}"
    return text
