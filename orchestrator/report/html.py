"""A self-contained HTML page of a run: one file, inline CSS and JS, nothing fetched.

Layout, top to bottom: the verdict and counts; the failures (failed jobs, failed dependency
builds, then blocked and cancelled jobs); the matrix, Python versions (rows) by policy and
architecture (columns), one coloured cell per job with its time and wheel size; a details
panel beside it; then dependency builds, images, exclusions and the merged shards.

Every job's details (audit findings, verification, log tail) are rendered into the page,
hidden; the script only shows the chosen one. Without the script the links still work
(`:target`). Stable hooks for tests and scripts: cells are ``td.cell`` with ``id=cell-<job>``
and ``data-job``/``data-status``/``data-python``/``data-policy``/``data-arch``; details are
``article.detail`` with ``id=detail-<job>``; the panel's ``data-job`` names the job shown.
A page address ending in ``#job=<id>`` opens that job; otherwise the first failure opens.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from orchestrator import __version__
from orchestrator.report import common
from orchestrator.report.common import Job, Report

MAX_ITEMS = 12  # of one audit finding's items; the rest is counted
STATUSES = ("ok", "failed", "blocked", "cancelled", "waiting")
Attrs = Mapping[str, object]


def to_html(report: Report) -> str:
    title = f"orch report: {report.get('name') or 'run'}"
    verdict = "ok" if _all_ok(report) else "failed"
    body = "\n".join(
        [
            _header(report),
            _failures(report),
            _main(report),
            _deps(report),
            _images(report),
            _excluded(report),
            _sources(report),
            _footer(report),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<style>\n{_asset('report.css')}</style>\n</head>\n"
        f'<body data-verdict="{verdict}">\n{body}\n'
        f"<script>\n{_asset('report.js')}</script>\n</body></html>\n"
    )


# --- the matrix -------------------------------------------------------------------------

SIDE_PANEL_MAX_COLUMNS = 6  # wider grids get the panel below them, not squeezed beside


def _main(report: Report) -> str:
    grid = Grid.build(report)
    stacked = len(grid.columns) > SIDE_PANEL_MAX_COLUMNS
    body = _matrix(grid) + _panel(common.jobs(report))
    return _el("div", body, {"class": "main stacked" if stacked else "main"})


@dataclass
class Grid:
    """Python versions by (policy, arch): each slot holds a job, an exclusion or nothing."""

    rows: list[str]
    columns: list[tuple[str, str]]
    jobs: dict[tuple[str, str, str], Job] = field(default_factory=dict)
    excluded: dict[tuple[str, str, str], Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(cls, report: Report) -> Grid:
        jobs = common.jobs(report)
        rows = sorted({str(j.get("python", "?")) for j in jobs}, key=common.version_key)
        firsts = {common.column_of(j): j for j in jobs}
        columns = sorted(firsts, key=lambda c: common.job_order(firsts[c])[1:])
        grid = cls(rows, columns)
        for job in jobs:
            policy, arch = common.column_of(job)
            grid.jobs[(str(job.get("python", "?")), policy, arch)] = job
        for ex in report.get("excluded") or []:
            slot = common.parse_job_id(str(ex.get("id", "")))
            if slot and slot[0] in rows and slot[1:] in columns and slot not in grid.jobs:
                grid.excluded[slot] = ex
        return grid

    def policies(self) -> list[tuple[str, int]]:
        """(policy, number of arch columns) in column order, for the header's first row."""
        out: list[tuple[str, int]] = []
        for policy, _arch in self.columns:
            if out and out[-1][0] == policy:
                out[-1] = (policy, out[-1][1] + 1)
            else:
                out.append((policy, 1))
        return out


def _matrix(grid: Grid) -> str:
    if not grid.rows:
        empty = _el("p", "This report has no jobs.", {"class": "muted"})
        return _el("section", "<h2>Matrix</h2>" + empty, {"id": "matrix"})
    toggle = _el(
        "label", '<input type="checkbox" id="only-problems"> problems only', {"class": "toggle"}
    )
    corner = _el("th", "Python", {"rowspan": 2, "class": "corner"})
    head1 = "".join(_el("th", _e(p), {"colspan": n, "class": "policy"}) for p, n in grid.policies())
    head2 = "".join(_el("th", _e(a), {"class": "arch"}) for _p, a in grid.columns)
    rows = "".join(_matrix_row(grid, py) for py in grid.rows)
    table = f"<thead><tr>{corner}{head1}</tr><tr>{head2}</tr></thead><tbody>{rows}</tbody>"
    return _el(
        "section",
        _el("div", "<h2>Matrix</h2>" + toggle, {"class": "section-head"})
        + _el("div", _el("table", table, {"class": "grid"}), {"class": "grid-wrap"})
        + _legend(),
        {"id": "matrix"},
    )


def _matrix_row(grid: Grid, python: str) -> str:
    cells = []
    for policy, arch in grid.columns:
        slot = (python, policy, arch)
        if slot in grid.jobs:
            cells.append(_job_cell(grid.jobs[slot]))
        elif slot in grid.excluded:
            ex = grid.excluded[slot]
            attrs = {
                "class": "cell st-excluded",
                "data-job": ex.get("id"),
                "data-status": "excluded",
                "title": ex.get("reason"),
            }
            cells.append(_el("td", '<span class="st">excluded</span>', attrs))
        else:
            cells.append(_el("td", "", {"class": "cell st-none", "data-status": "none"}))
    return (
        "<tr>"
        + _el("th", _e(python), {"class": "python", "scope": "row"})
        + "".join(cells)
        + "</tr>"
    )


def _job_cell(job: Job) -> str:
    job_id, status = str(job.get("id")), common.status(job)
    policy, arch = common.column_of(job)
    size = common.wheel_size(job)
    badges = _audit_badges(job)
    if job.get("emulated"):
        badges += _el("span", "qemu", {"class": "badge qemu", "title": "emulated"})
    inner = _el("span", _e(status), {"class": "st"})
    if status != "ok" and job.get("failed_stage"):
        inner += _el("span", _e(job["failed_stage"]), {"class": "stage"})
    inner += _el("span", _e(common.human_seconds(job.get("seconds"))), {"class": "meta"})
    inner += _el("span", _e(common.human_size(size)), {"class": "meta"}) if size else ""
    inner += _el("span", badges, {"class": "badges"}) if badges else ""
    link = {"href": f"#detail-{job_id}", "data-select": job_id, "title": f"{job_id}: {status}"}
    attrs = {
        "class": f"cell st-{status}",
        "id": f"cell-{job_id}",
        "data-job": job_id,
        "data-status": status,
        "data-python": job.get("python", ""),
        "data-policy": policy,
        "data-arch": arch,
    }
    return _el("td", _el("a", inner, link), attrs)


def _audit_badges(job: Job) -> str:
    out = []
    for severity, label in (("error", "err"), ("warning", "warn")):
        n = sum(1 for f in common.audit_findings(job) if f.get("severity") == severity)
        if n:
            attrs = {"class": f"badge sev-{severity}", "title": f"{n} audit {severity}(s)"}
            out.append(_el("span", f"{n} {label}", attrs))
    return "".join(out)


def _legend() -> str:
    items = "".join(
        _el("span", f'<i class="swatch st-{s}"></i>{s}', {"class": "legend-item"})
        for s in ("ok", "failed", "blocked", "cancelled", "excluded")
    )
    hint = _el("span", "click a cell for its details", {"class": "muted"})
    return _el("p", items + hint, {"class": "legend"})


# --- header and failures ---------------------------------------------------------------


def _header(report: Report) -> str:
    counts = common.status_counts(report)
    pills = "".join(
        _el("span", f"{counts[s]} {s}", {"class": f"pill st-{s}", "data-count": s})
        for s in STATUSES
        if counts.get(s)
    )
    took = common.duration(report)
    facts = [
        ("recipe", report.get("recipe")),
        ("started", common.timestamp(report.get("started"))),
        ("took", common.human_seconds(took) if took is not None else None),
        ("host", (report.get("host") or {}).get("node")),
        ("shard", report.get("shard")),
        ("merged from", f"{len(report['shards'])} reports" if report.get("shards") else None),
    ]
    meta = "".join(f"<span><b>{_e(k)}</b> {_e(v)}</span>" for k, v in facts if v)
    deps = common.deps_line(report)
    body = (
        _el("h1", f"orch · {_e(report.get('name') or 'run')}")
        + _el("p", _e(common.headline(report)), {"class": "verdict"})
        + _el("p", pills, {"class": "pills"})
        + _el("p", meta, {"class": "meta"})
        + (_el("p", _e(deps), {"class": "meta"}) if deps else "")
    )
    return _el("header", body, {"class": "top"})


def _failures(report: Report) -> str:
    problems = [j for j in common.problems_first(common.jobs(report)) if common.is_problem(j)]
    failed_jobs = [j for j in problems if common.status(j) == "failed"]
    failed_deps = [d for d in common.deps(report) if d.get("status") == "failed"]
    if not problems and not failed_deps:
        return ""
    items = [_failure_item(j) for j in failed_jobs]
    items += [_dep_failure_item(d) for d in failed_deps]
    items += [_failure_item(j) for j in problems if common.status(j) != "failed"]
    n_failed = len(failed_jobs) + len(failed_deps)
    not_built = len(problems) - len(failed_jobs)
    counts = f"{n_failed} failed" + (f", {not_built} not built" if not_built else "")
    heading = _el("h2", f"Failures {_el('span', f'({counts})', {'class': 'muted'})}")
    return _el(
        "section", heading + _el("ol", "".join(items)), {"id": "failures", "class": "failures"}
    )


def _failure_item(job: Job) -> str:
    job_id, status = str(job.get("id")), common.status(job)
    link = _el("a", _el("code", _e(job_id)), {"href": f"#detail-{job_id}", "data-select": job_id})
    where = f" in <b>{_e(job['failed_stage'])}</b>" if job.get("failed_stage") else ""
    body = f"{link} {_pill(status)}{where}"
    cause = common.cause(job)
    if cause:
        body += _el("div", _e(cause), {"class": "cause", "title": "the cause: first error line"})
    if job.get("error") and _first_line(job["error"]) != cause:
        body += _el("div", _e(_first_line(job["error"])), {"class": "error"})
    first = next((f for f in common.audit_findings(job) if f.get("severity") == "error"), None)
    if first:
        text = f"audit [{_e(first.get('check'))}] {_e(first.get('message'))}"
        body += _el("div", text, {"class": "finding sev-error"})
    attrs = {"class": f"problem st-{status}", "data-job": job_id, "data-status": status}
    return _el("li", body, attrs)


def _dep_failure_item(dep: Mapping[str, Any]) -> str:
    error = _el("span", _e(_first_line(dep.get("error") or "failed")), {"class": "error"})
    body = f"dependency {_el('code', _e(common.dep_label(dep)))} {_pill('failed')}: {error}"
    if dep.get("log"):
        body += " " + _el("span", f"log: {_e(dep['log'])}", {"class": "muted"})
    attrs = {"class": "problem st-failed", "data-dep": dep.get("name"), "data-status": "failed"}
    return _el("li", body, attrs)


# --- the details panel -----------------------------------------------------------------


def _panel(jobs: Sequence[Job]) -> str:
    hint = "Click a cell to see the job's audit findings, verification and log tail."
    body = _el("p", _e(hint), {"class": "placeholder"}) + "".join(_detail(j) for j in jobs)
    return _el(
        "aside", body, {"id": "panel", "class": "panel", "data-job": "", "aria-live": "polite"}
    )


def _detail(job: Job) -> str:
    job_id, status = str(job.get("id")), common.status(job)
    head = _el("h3", _e(job_id)) + _pill(status)
    if job.get("failed_stage"):
        head += " " + _el("span", f"in {_e(job['failed_stage'])}", {"class": "muted"})
    error = _el("pre", _e(job["error"]), {"class": "error-text"}) if job.get("error") else ""
    cause = common.cause(job) if status != "ok" else ""
    if cause and cause != _first_line(job.get("error")):
        error = _el("pre", _e(cause), {"class": "error-text cause"}) + error
    # What explains a failure first: the error, the log's end, the audit, verification.
    body = (
        _el("header", head)
        + error
        + _log(job)
        + _audit(job)
        + _verify(job)
        + "<h4>Job</h4>"
        + _facts(job)
        + _stages(job.get("stages") or {})
    )
    attrs = {
        "class": f"detail st-{status}",
        "id": f"detail-{job_id}",
        "data-job": job_id,
        "data-status": status,
    }
    return _el("article", body, attrs)


def _facts(job: Job) -> str:
    wheel = job.get("wheel") if isinstance(job.get("wheel"), Mapping) else None
    kept = job.get("kept_container")
    rows: list[tuple[str, object]] = [
        ("Python", job.get("python")),
        ("platform tag", job.get("platform_tag")),
        ("image", job.get("image")),
        ("image id", _short(job.get("image_id"))),
        ("emulated", "yes (QEMU)" if job.get("emulated") else None),
        ("time", common.human_seconds(job.get("seconds"))),
        ("wheel", wheel.get("filename") if wheel else None),
        ("size", common.human_size(wheel.get("size")) if wheel else None),
        ("sha256", wheel.get("sha256") if wheel else None),
        ("compile cache", _compile_cache(job.get("compile_cache"))),
        ("checks", _checks(job.get("checks"))),
        ("log", job.get("log")),
        ("container kept", f"docker exec -it {kept} bash" if kept else None),
        ("shard", job.get("shard")),
    ]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows if v not in (None, ""))
    return _el("dl", items, {"class": "facts"})


def _checks(checks: object) -> str | None:
    """Whether the audit and verification ran, or were reused from an identical wheel's."""
    if not isinstance(checks, Mapping) or checks.get("status") != "reused":
        return None
    return f"reused: the identical wheel passed them on {checks.get('written')}"


def _compile_cache(counts: object) -> str | None:
    """ccache's hits and misses of the job's build (none: no compile cache)."""
    if not isinstance(counts, Mapping) or not counts:
        return None
    hits, misses = counts.get("hits", 0), counts.get("misses", 0)
    return f"{hits} hit(s), {misses} miss(es), {counts.get('uncacheable', 0)} not cacheable"


def _stages(stages: Mapping[str, Any]) -> str:
    times = [(str(k), common.number(v) or 0.0) for k, v in stages.items()]
    total = sum(t for _k, t in times)
    if not times or total <= 0:
        return ""
    segs = keys = ""
    for i, (name, secs) in enumerate(times):
        label = f"{name} {common.human_seconds(secs)}"
        style = f"width:{100 * secs / total:.2f}%"
        segs += _el("span", "", {"class": f"seg seg-{i % 6}", "style": style, "title": label})
        swatch = f'<i class="swatch seg-{i % 6}"></i>'
        keys += _el("span", swatch + _e(label), {"class": "legend-item"})
    bar = _el("div", segs, {"class": "stagebar"})
    return "<h4>Stages</h4>" + bar + _el("p", keys, {"class": "legend"})


def _audit(job: Job) -> str:
    audit = job.get("audit")
    if not isinstance(audit, Mapping):
        return "<h4>Audit</h4>" + _el("p", "not audited", {"class": "muted"})
    # The wheel's name: the path it was audited at was a staging file, gone after the run.
    wheel = str(audit.get("wheel") or "").replace("\\", "/").rsplit("/", 1)[-1]
    head = _el("h4", "Audit " + _el("span", _e(wheel), {"class": "muted"}))
    tags = ", ".join(str(t) for t in audit.get("claimed_tags") or [])
    head += _el("p", f"claims {_e(tags)}", {"class": "muted"}) if tags else ""
    findings = sorted(common.audit_findings(job), key=lambda f: _severity_rank(f.get("severity")))
    if not findings:
        return head + _el("p", "no findings", {"class": "ok-text"})
    rows = []
    for f in findings:
        where = _el("div", _e(f["file"]), {"class": "muted"}) if f.get("file") else ""
        rows.append(
            _row(
                [
                    _el("span", _e(f.get("severity")), {"class": "sev"}),
                    _el("code", _e(f.get("check"))),
                    _e(f.get("message")) + _items(f.get("items") or []) + where,
                ],
                {"class": f"sev-{f.get('severity')}"},
            )
        )
    return head + _table(("severity", "check", "finding"), rows, "findings")


def _items(items: Sequence[Any]) -> str:
    if not items:
        return ""
    shown = "".join(_el("li", _el("code", _e(i))) for i in items[:MAX_ITEMS])
    if len(items) > MAX_ITEMS:
        shown += _el("li", f"and {len(items) - MAX_ITEMS} more", {"class": "muted"})
    return _el("ul", shown, {"class": "items"})


def _verify(job: Job) -> str:
    results = job.get("verify") or []
    if not results:
        return "<h4>Verification</h4>" + _el("p", "not verified", {"class": "muted"})
    rows = [
        _row(
            [
                _el("code", _e(v.get("image"))),
                _el("span", _e(v.get("status")), {"class": "sev"}),
                _e(v.get("detail")),
                _e(common.human_seconds(v.get("seconds"))),
            ],
            {"class": f"vf-{v.get('status')}"},
        )
        for v in results
    ]
    return "<h4>Verification</h4>" + _table(("image", "result", "detail", "time"), rows, "verify")


def _log(job: Job) -> str:
    tail = common.log_tail(job)
    if not tail:
        return ""
    head = _el("h4", "Log tail " + _el("span", f"last {len(tail)} lines", {"class": "muted"}))
    return head + _el("pre", _e("\n".join(tail)), {"class": "log"})


# --- the tables below ------------------------------------------------------------------


def _deps(report: Report) -> str:
    deps = sorted(
        common.deps(report),
        key=lambda d: (d.get("status") != "failed", str(d.get("arch")), str(d.get("name"))),
    )
    if not deps:
        return ""
    rows = [
        _row(
            [
                _e(d.get("name")),
                _e(d.get("version")),
                _e(d.get("arch")),
                _el("span", _e(d.get("status")), {"class": f"pill dep-{d.get('status')}"}),
                _e(common.human_seconds(d.get("seconds"))),
                _el("code", _e(_short(d.get("key")))),
            ],
            {"data-dep": d.get("name"), "data-status": d.get("status")},
        )
        for d in deps
    ]
    failed = any(d.get("status") == "failed" for d in deps)
    title = f"Dependency builds ({common.deps_line(report)})"
    columns = ("name", "version", "arch", "status", "time", "cache key")
    return _folded("deps", title, failed, _table(columns, rows, "list"))


def _images(report: Report) -> str:
    images = report.get("images") or []
    if not images:
        return ""
    rows = [
        _row(
            [
                _el("code", _e(i.get("ref"))),
                _e(i.get("arch")),
                _e(i.get("source")),
                _e(i.get("status")),
                _e(common.human_seconds(i.get("seconds"))),
                _el("code", _e(_short(i.get("id")))),
            ]
        )
        for i in images
    ]
    columns = ("image", "arch", "source", "status", "time", "id")
    return _folded("images", f"Images ({len(images)})", False, _table(columns, rows, "list"))


def _excluded(report: Report) -> str:
    excluded = report.get("excluded") or []
    if not excluded:
        return ""
    rows = [_row([_el("code", _e(x.get("id"))), _e(x.get("reason"))]) for x in excluded]
    title = f"Excluded combinations ({len(excluded)})"
    return _folded("excluded", title, False, _table(("job", "reason"), rows, "list"))


def _sources(report: Report) -> str:
    sources = report.get("merged_from") or []
    if not sources:
        return ""
    rows = [
        _row(
            [
                _el("code", _e(s.get("run_id"))),
                _e(s.get("shard") or "-"),
                _e(s.get("node")),
                _e(common.timestamp(s.get("started"))),
                _e(s.get("jobs")),
            ]
        )
        for s in sources
    ]
    dups = report.get("duplicates") or []
    notes = "".join(_el("li", _duplicate_note(d)) for d in dups)
    body = (_el("ul", notes, {"class": "duplicates"}) if notes else "") + _table(
        ("run", "shard", "host", "started", "jobs"), rows, "list"
    )
    return _folded("shards", f"Merged reports ({len(sources)})", bool(dups), body)


def _duplicate_note(dup: Mapping[str, Any]) -> str:
    kept, dropped = dup.get("kept") or {}, dup.get("dropped") or {}
    return (
        f"{_el('code', _e(dup.get('id')))}: kept {_e(kept.get('status'))} from "
        f"{_e(kept.get('run_id'))}, dropped {_e(dropped.get('status'))} from "
        f"{_e(dropped.get('run_id'))} ({_e(dup.get('reason'))})"
    )


def _footer(report: Report) -> str:
    return _el(
        "footer",
        f"generated by orch {_e(__version__)} · report schema {_e(report.get('schema', '?'))}"
        f" · built by orch {_e(report.get('orch_version', '?'))}",
    )


# --- small helpers ---------------------------------------------------------------------


def _el(tag: str, body: str = "", attrs: Attrs | None = None) -> str:
    """<tag attrs>body</tag>; attribute values are escaped here, the body is HTML already."""
    rendered = "".join(f' {k}="{_e(v)}"' for k, v in (attrs or {}).items() if v is not None)
    return f"<{tag}{rendered}>{body}</{tag}>"


def _row(cells: Iterable[str], attrs: Attrs | None = None) -> str:
    return _el("tr", "".join(_el("td", c) for c in cells), attrs)


def _table(columns: Iterable[str], rows: Iterable[str], cls: str) -> str:
    head = "".join(_el("th", _e(c)) for c in columns)
    return _el(
        "table", f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>", {"class": cls}
    )


def _folded(anchor: str, title: str, open_: bool, body: str) -> str:
    details = _el(
        "details", _el("summary", _el("h2", _e(title))) + body, {"open": "" if open_ else None}
    )
    return _el("section", details, {"id": anchor})


def _pill(status: str) -> str:
    return _el("span", _e(status), {"class": f"pill st-{status}"})


def _asset(name: str) -> str:
    return resources.files("orchestrator.report").joinpath(name).read_text(encoding="utf-8")


def _e(value: object) -> str:
    return html.escape(common.clean_text("" if value is None else value), quote=True)


def _first_line(text: object) -> str:
    lines = common.clean_text(text).strip().splitlines()
    return lines[0] if lines else ""


def _short(value: object) -> str | None:
    text = str(value) if value else ""
    text = text.split(":", 1)[1] if text.startswith("sha256:") else text
    return text[:16] if text else None


def _severity_rank(severity: object) -> int:
    return {"error": 0, "warning": 1, "info": 2}.get(str(severity), 3)


def _all_ok(report: Report) -> bool:
    no_failed_deps = all(d.get("status") != "failed" for d in common.deps(report))
    return no_failed_deps and not any(common.is_problem(j) for j in common.jobs(report))
