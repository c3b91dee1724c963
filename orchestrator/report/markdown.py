"""Markdown: the job summary a CI run shows ($GITHUB_STEP_SUMMARY, a PR comment).

A verdict line, one table row per job (problems first), the dependency cache line, then
each failure's error and log tail folded into <details>.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from orchestrator.report import common
from orchestrator.report.common import Report

FOLD_OK_ABOVE = 20  # ok rows, beyond which they fold under the problems
ICONS = {"ok": "✅", "failed": "❌", "blocked": "⛔", "cancelled": "⚪", "waiting": "⏳"}


def to_markdown(report: Report) -> str:
    lines = [
        f"### orch: {_cell(report.get('name') or 'report')}",
        "",
        f"**{common.headline(report)}**",
    ]
    lines += _context(report)
    lines += _tables(common.problems_first(common.jobs(report)))
    extra = [common.deps_line(report), _excluded_line(report), _duplicates_line(report)]
    lines += ["", *[f"{text}  " for text in extra if text]]
    for job in common.problems_first(common.jobs(report)):
        if common.status(job) == "failed":
            lines += _job_details(job)
    for dep in common.deps(report):
        if dep.get("status") == "failed":
            lines += _dep_details(dep)
    return "\n".join(lines).rstrip() + "\n"


def _context(report: Report) -> list[str]:
    parts = []
    if report.get("shard"):
        parts.append(f"shard {report['shard']}")
    if report.get("shards"):
        parts.append(f"merged from {len(report['shards'])} reports")
    took = common.duration(report)
    if took is not None:
        parts.append(f"took {common.human_seconds(took)}")
    if report.get("started"):
        parts.append(f"started {common.timestamp(report['started'])}")
    return ["", " · ".join(parts)] if parts else []


def _tables(jobs: list[common.Job]) -> list[str]:
    """One table; in a large run the ok rows fold away below the problems."""
    head = [
        "",
        "| job | status | time | wheel or cause | size |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    problems = [j for j in jobs if common.is_problem(j)]
    ok = [j for j in jobs if not common.is_problem(j)]
    if len(ok) <= FOLD_OK_ABOVE or not problems:
        return head + [_row(j) for j in jobs]
    folded = ["", f"<details><summary>{len(ok)} ok jobs</summary>", *head, *map(_row, ok)]
    return head + [_row(j) for j in problems] + folded + ["", "</details>"]


def _row(job: common.Job) -> str:
    status = common.status(job)
    label = f"{ICONS.get(status, '')} {status}".strip()
    if job.get("failed_stage") and status != "ok":
        label += f" ({job['failed_stage']})"
    checks = job.get("checks")
    if isinstance(checks, dict) and checks.get("status") == "reused":
        label += " (checks reused)"  # an identical wheel passed them before
    wheel = common.wheel_name(job)
    cause = common.cause(job) if status != "ok" else ""
    cells = [
        f"`{_cell(job.get('id'))}`",
        _cell(label),
        common.human_seconds(job.get("seconds")),
        f"`{_cell(wheel)}`" if wheel else (_cell(cause) or "-"),
        common.human_size(common.wheel_size(job)),
    ]
    return "| " + " | ".join(cells) + " |"


def _excluded_line(report: Report) -> str:
    excluded = report.get("excluded") or []
    return f"excluded combinations: {len(excluded)}" if excluded else ""


def _duplicates_line(report: Report) -> str:
    dups = report.get("duplicates") or []
    if not dups:
        return ""
    ids = ", ".join(f"`{d.get('id')}`" for d in dups)
    return f"jobs reported more than once (one result kept each): {ids}"


def _job_details(job: common.Job) -> list[str]:
    summary = f"<b>{_html(job.get('id'))}</b> failed in {_html(job.get('failed_stage') or '?')}"
    cause, error = common.cause(job), _first_line(job.get("error"))
    body = [f"**cause:** `{_cell(cause)}`", ""] if cause and cause != error else []
    body.append(_html(error))
    errors = [f for f in common.audit_findings(job) if f.get("severity") == "error"]
    body += [f"- audit [{_cell(f.get('check'))}] {_cell(f.get('message'))}" for f in errors]
    tail = common.log_tail(job)
    if tail:
        body += ["", _fenced("\n".join(tail))]
    if job.get("log"):
        body.append(f"full log: `{job['log']}`")
    return ["", f"<details><summary>{summary}</summary>", "", *body, "", "</details>"]


def _dep_details(dep: Mapping[str, Any]) -> list[str]:
    summary = f"dependency <b>{_html(common.dep_label(dep))}</b> failed"
    body = [_fenced(common.clean_text(dep.get("error") or "failed"))]
    if dep.get("log"):
        body.append(f"full log: `{dep['log']}`")
    return ["", f"<details><summary>{summary}</summary>", "", *body, "", "</details>"]


def _fenced(text: str) -> str:
    """A code block whose fence is longer than any backtick run inside it."""
    fence = "`" * max(3, _longest_backticks(text) + 1)
    return f"{fence}text\n{text}\n{fence}"


def _longest_backticks(text: str) -> int:
    best = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        best = max(best, run)
    return best


def _first_line(text: object) -> str:
    lines = common.clean_text(text or "").strip().splitlines()
    return lines[0] if lines else ""


def _cell(text: object) -> str:
    """Text safe inside a table cell: no pipes or newlines breaking the row."""
    return common.clean_text(text).replace("|", "\\|").replace("\n", " ")


def _html(text: object) -> str:
    return html.escape(common.clean_text(text), quote=False)
