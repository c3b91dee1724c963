"""Checks on a (merged) report, and GitHub Actions annotations of its failures.

- ``expect_plan``: every job of an ``orch plan --json`` came back ok with a wheel whose
  file name carries the job's platform tag, and (with a wheelhouse) the file is there
  with the recorded sha256. This is what a sharded CI run checks after merging: no shard
  was lost, no wheel went missing on the way through artifacts.
- ``expect_wheels``: each glob matches at least one wheel.
- ``github_annotations``: ``::error``/``::warning`` workflow commands, one per failure,
  carrying the log tail, so failures show on the run's summary page.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.report import common
from orchestrator.report.common import Report
from orchestrator.util.hashing import sha256_file

ANNOTATION_TAIL = 15  # log lines per annotation; the summary page truncates long ones


def expect_plan(
    report: Report, plan: Mapping[str, Any], wheelhouse: Path | None = None
) -> list[str]:
    """Problems (empty: all good) of the report against the plan's jobs."""
    by_id = {str(j.get("id")): j for j in common.jobs(report)}
    problems = []
    for planned in plan.get("jobs") or []:
        job_id = str(planned.get("id"))
        job = by_id.get(job_id)
        if job is None:
            problems.append(f"{job_id}: planned but in no report (a shard lost?)")
            continue
        problems += _job_problems(job_id, job, str(planned.get("platform_tag") or ""), wheelhouse)
    return problems


def _job_problems(
    job_id: str, job: common.Job, platform_tag: str, wheelhouse: Path | None
) -> list[str]:
    status = common.status(job)
    if status != "ok":
        return [
            f"{job_id}: {status}"
            + (f" in {job['failed_stage']}" if job.get("failed_stage") else "")
        ]
    name = common.wheel_name(job)
    if not name:
        return [f"{job_id}: ok but no wheel recorded"]
    if platform_tag and platform_tag not in _platform_tags(name):
        return [f"{job_id}: wheel {name} does not carry the platform tag {platform_tag}"]
    return _wheel_file_problems(job_id, job, wheelhouse) if wheelhouse else []


def _platform_tags(filename: str) -> set[str]:
    """'x-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl' -> both tags."""
    stem = filename.removesuffix(".whl")
    return set(stem.rsplit("-", 1)[-1].split("."))


def _wheel_file_problems(job_id: str, job: common.Job, wheelhouse: Path) -> list[str]:
    wheel = job["wheel"]
    path = wheelhouse / str(wheel["filename"])
    if not path.is_file():
        return [f"{job_id}: {wheel['filename']} is not in {wheelhouse}"]
    expected = wheel.get("sha256")
    if expected and sha256_file(path) != expected:
        return [f"{job_id}: {path} does not match the sha256 the build recorded"]
    return []


def expect_wheels(
    report: Report, patterns: Sequence[str], wheelhouse: Path | None = None
) -> list[str]:
    """Problems: patterns no built wheel (or, with a wheelhouse, no file there) matches."""
    names = [
        n
        for n in (common.wheel_name(j) for j in common.jobs(report) if common.status(j) == "ok")
        if n
    ]
    if wheelhouse is not None:
        names = [n for n in names if (wheelhouse / n).is_file()]
    where = f" in {wheelhouse}" if wheelhouse is not None else ""
    return [
        f"no wheel{where} matches {pattern}"
        for pattern in patterns
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names)
    ]


# --- GitHub Actions workflow commands ----------------------------------------------------


def github_annotations(report: Report) -> list[str]:
    """Workflow command lines: an error per failed job and dependency build, a warning for
    blocked jobs and for audit warnings of jobs that passed."""
    lines = [
        _job_error(j)
        for j in common.problems_first(common.jobs(report))
        if common.status(j) == "failed"
    ]
    lines += [_dep_error(d) for d in common.deps(report) if d.get("status") == "failed"]
    blocked = [
        str(j.get("id"))
        for j in common.jobs(report)
        if common.status(j) in ("blocked", "cancelled")
    ]
    if blocked:
        lines.append(
            _command("warning", f"orch: {len(blocked)} job(s) not built", ", ".join(blocked))
        )
    for job in common.jobs(report):
        if common.status(job) == "ok":
            lines += _audit_warnings(job)
    return lines


def _job_error(job: common.Job) -> str:
    stage = job.get("failed_stage") or "?"
    cause, error = common.cause(job), common.clean_text(job.get("error") or "failed")
    body = [cause, error] if cause and cause != error.strip() else [error]
    tail = common.log_tail(job)[-ANNOTATION_TAIL:]
    if tail:
        body += ["", "log tail:", *tail]
    if job.get("log"):
        body.append(f"full log: {job['log']}")
    return _command("error", f"orch: {job.get('id')} failed in {stage}", "\n".join(body))


def _dep_error(dep: Mapping[str, Any]) -> str:
    title = f"orch: dependency {common.dep_label(dep)} failed"
    body = common.clean_text(dep.get("error") or "failed")
    return _command("error", title, body + (f"\nfull log: {dep['log']}" if dep.get("log") else ""))


def _audit_warnings(job: common.Job) -> Iterable[str]:
    for finding in common.audit_findings(job):
        if finding.get("severity") == "warning":
            title = f"orch audit: {job.get('id')} [{finding.get('check')}]"
            yield _command("warning", title, common.clean_text(finding.get("message") or ""))


def _command(kind: str, title: str, message: str) -> str:
    return f"::{kind} title={_escape_property(title)}::{_escape_data(message)}"


def _escape_data(text: str) -> str:
    # The runner's own escaping rules: % first, then line breaks.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
