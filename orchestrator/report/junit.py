"""JUnit XML, for CI systems that show test results (GitLab, Jenkins, test-reporter actions).

- One <testsuite> per platform tag (policy and architecture), one <testcase> per job,
  with the job's time.
- A failed job is a <failure>: its error, then its log tail, then the log's path.
- A blocked or cancelled job is <skipped>: it never ran. Blocked jobs were stopped by a
  failed dependency build, which is itself a <failure> in the "dependencies" suite, so
  the run still counts as failed and the cause is what shows.
- Dependency builds form one more suite; a cache hit passes with "cached" in its output.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.report import common
from orchestrator.report.common import Report


def to_junit(report: Report) -> str:
    name = str(report.get("name") or "orch")
    root = ET.Element("testsuites", name=f"orch: {name}")
    stamp = common.timestamp(report.get("started"), "%Y-%m-%dT%H:%M:%S")
    host = str((report.get("host") or {}).get("node", ""))
    for platform, jobs in _by_platform(common.jobs(report)):
        suite = _suite(root, platform, stamp, host)
        for job in jobs:
            _job_case(suite, job, f"orch.{name}.{platform}")
        _totals(suite)
    if common.deps(report):
        suite = _suite(root, "dependencies", stamp, host)
        for dep in common.deps(report):
            _dep_case(suite, dep, f"orch.{name}.dependencies")
        _totals(suite)
    _totals(root)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _by_platform(jobs: Iterable[common.Job]) -> list[tuple[str, list[common.Job]]]:
    groups: dict[str, list[common.Job]] = {}
    for job in jobs:
        policy, arch = common.column_of(job)
        groups.setdefault(f"{policy}_{arch}", []).append(job)
    return sorted(
        (k, sorted(v, key=lambda j: common.version_key(str(j.get("python", "")))))
        for k, v in groups.items()
    )


def _suite(root: ET.Element, name: str, stamp: str, host: str) -> ET.Element:
    suite = ET.SubElement(root, "testsuite", name=name)
    if stamp:
        suite.set("timestamp", stamp)
    if host:
        suite.set("hostname", host)
    return suite


def _job_case(suite: ET.Element, job: common.Job, classname: str) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        name=str(job.get("id")),
        classname=classname,
        time=_secs(job.get("seconds")),
    )
    status = common.status(job)
    error = common.clean_text(job.get("error") or status)
    if status == "failed":
        stage = str(job.get("failed_stage") or "unknown stage")
        cause = common.cause(job) or error
        failure = ET.SubElement(case, "failure", message=f"{stage}: {cause}", type=stage)
        failure.text = _failure_text(job, error if cause == error else f"{cause}\n{error}")
    elif status != "ok":
        ET.SubElement(case, "skipped", message=f"{status}: {error}")
    out = _job_output(job)
    if out:
        ET.SubElement(case, "system-out").text = out


def _failure_text(job: common.Job, error: str) -> str:
    parts = [error]
    tail = common.log_tail(job)
    if tail:
        parts.append("log tail:\n" + "\n".join(tail))
    if job.get("log"):
        parts.append(f"full log: {job['log']}")
    return "\n\n".join(parts)


def _job_output(job: common.Job) -> str:
    lines = []
    if common.wheel_name(job):
        lines.append(
            f"wheel: {common.wheel_name(job)} ({common.human_size(common.wheel_size(job))})"
        )
    lines.append(f"image: {job.get('image', '')}" + (" (emulated)" if job.get("emulated") else ""))
    stages = job.get("stages") or {}
    if stages:
        lines.append(
            "stages: " + ", ".join(f"{k} {common.human_seconds(v)}" for k, v in stages.items())
        )
    for finding in common.audit_findings(job):
        lines.append(
            f"audit {finding.get('severity')}: [{finding.get('check')}] {finding.get('message')}"
        )
    return common.clean_text("\n".join(lines))


def _dep_case(suite: ET.Element, dep: Mapping[str, Any], classname: str) -> None:
    name = common.dep_label(dep)
    case = ET.SubElement(
        suite, "testcase", name=name, classname=classname, time=_secs(dep.get("seconds"))
    )
    status = str(dep.get("status"))
    error = common.clean_text(dep.get("error") or status)
    if status == "failed":
        failure = ET.SubElement(case, "failure", message=error, type="dependency")
        failure.text = error + (f"\n\nfull log: {dep['log']}" if dep.get("log") else "")
    elif status not in common.DEP_OK:
        ET.SubElement(case, "skipped", message=f"{status}: {error}")
    else:
        ET.SubElement(
            case, "system-out"
        ).text = f"{status} (key {dep.get('key')}, group {dep.get('group')})"


def _totals(element: ET.Element) -> None:
    """tests/failures/errors/skipped/time attributes from the cases below."""
    cases = list(element.iter("testcase"))
    element.set("tests", str(len(cases)))
    element.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    element.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
    element.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    element.set("time", f"{sum(float(c.get('time', 0)) for c in cases):.3f}")


def _secs(value: object) -> str:
    return f"{common.number(value) or 0.0:.3f}"
