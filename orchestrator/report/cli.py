"""`orch report`: merge run reports and render them (JUnit, Markdown, HTML, annotations).

    orch report REPORT.json... [--merge-out M.json] [--junit J.xml] [--markdown R.md]
                [--html R.html] [--github-annotations] [--expect-plan PLAN.json]
                [--expect-wheels PATTERN...] [--wheelhouse DIR] [--strict]

A REPORT may be a run's output directory (its .orch/report.json is read). Several reports
are merged first. With no output option the Markdown goes to stdout; '-' as a path means
stdout too. Exit status: 0, or 1 when an --expect-* check fails (or, with --strict, when a
job or dependency build did not succeed), 2 for unreadable reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.errors import EXIT_BUILD_FAILED, EXIT_OK, ConfigError
from orchestrator.report.record import REPORT_SCHEMA, write_json_atomic

DESCRIPTION = (
    "Merge run reports (one per shard) and render them: JUnit XML for CI test views, "
    "Markdown for job summaries, a self-contained HTML page, GitHub annotations; "
    "optionally check that every planned wheel came back."
)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.add_argument(
        "reports",
        nargs="+",
        type=Path,
        metavar="REPORT",
        help="report.json files, or output directories holding .orch/report.json",
    )
    out = p.add_argument_group("outputs (default: Markdown on stdout; '-' writes to stdout)")
    out.add_argument("--merge-out", type=Path, metavar="PATH", help="write the merged report JSON")
    out.add_argument("--junit", type=Path, metavar="PATH", help="write JUnit XML")
    out.add_argument("--markdown", type=Path, metavar="PATH", help="write the Markdown summary")
    out.add_argument("--html", type=Path, metavar="PATH", help="write the self-contained HTML page")
    out.add_argument(
        "--github-annotations",
        action="store_true",
        help="print ::error/::warning workflow commands for failures (stdout)",
    )
    chk = p.add_argument_group("checks (exit 1 when one fails)")
    chk.add_argument(
        "--expect-plan",
        type=Path,
        metavar="PLAN.json",
        help="every job of this `orch plan --json` must have come back ok with its wheel",
    )
    chk.add_argument(
        "--expect-wheels",
        nargs="+",
        action="extend",
        default=[],
        metavar="PATTERN",
        help="wheel file name globs that must each match a built wheel",
    )
    chk.add_argument(
        "--wheelhouse",
        type=Path,
        metavar="DIR",
        help="with --expect-*: the wheels must also be in DIR (sha256 checked)",
    )
    chk.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when any job or dependency build did not succeed",
    )


def run(args: argparse.Namespace) -> int:
    # the renderers load here, not with the parser: `orch build` builds it too
    from orchestrator.report import checks, html, junit, markdown
    from orchestrator.report.merge import merge

    _check_outputs(args)
    reports = [read_report(p) for p in args.reports]
    report = reports[0] if len(reports) == 1 and not args.merge_out else merge(reports)
    if args.merge_out:
        _write_json(args.merge_out, report)
    renderers: list[tuple[Path | None, Callable[[Any], str]]] = [
        (args.junit, junit.to_junit),
        (args.markdown, markdown.to_markdown),
        (args.html, html.to_html),
    ]
    for path, render in renderers:
        if path is not None:
            _write_text(path, render(report))
    if args.github_annotations:
        for line in checks.github_annotations(report):
            print(line)
    if not (args.merge_out or any(p for p, _r in renderers) or args.github_annotations):
        sys.stdout.write(markdown.to_markdown(report))
    return _check(report, args)


def read_report(path: Path) -> dict[str, Any]:
    """A report file (or output directory), checked to be a report orch can read."""
    file = _report_file(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read report {file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{file} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise ConfigError(f"{file} is not an orch run report (no jobs list)")
    schema = data.get("schema")
    if not isinstance(schema, int) or schema > REPORT_SCHEMA:
        raise ConfigError(
            f"{file}: report schema {schema!r}; this orch reads schema {REPORT_SCHEMA} and older"
        )
    return data


def _report_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    for candidate in (path / ".orch" / "report.json", path / "report.json"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{path} is a directory without .orch/report.json or report.json")


def _check(report: dict[str, Any], args: argparse.Namespace) -> int:
    from orchestrator.report import checks

    problems: list[str] = []
    if args.expect_plan:
        problems += checks.expect_plan(report, _read_plan(args.expect_plan), args.wheelhouse)
    if args.expect_wheels:
        problems += checks.expect_wheels(report, args.expect_wheels, args.wheelhouse)
    for problem in problems:
        print(f"orch report: expected: {problem}", file=sys.stderr)
    if args.strict and not _succeeded(report):
        print(
            "orch report: --strict: not every job and dependency build succeeded", file=sys.stderr
        )
        return EXIT_BUILD_FAILED
    return EXIT_BUILD_FAILED if problems else EXIT_OK


def _succeeded(report: dict[str, Any]) -> bool:
    jobs_ok = all(j.get("status") == "ok" for j in report.get("jobs") or [])
    return jobs_ok and all(d.get("status") in ("built", "cached") for d in report.get("deps") or [])


def _read_plan(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--expect-plan {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise ConfigError(f"--expect-plan {path}: not the output of `orch plan --json`")
    return data


OUTPUT_FLAGS = ("merge_out", "junit", "markdown", "html")


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output goes into a directory that exists: a typo must not create directories
    (at the filesystem root, say), and nothing is written unless every path is good."""
    for name in OUTPUT_FLAGS:
        path: Path | None = getattr(args, name)
        if path is None or str(path) == "-":
            continue
        flag = "--" + name.replace("_", "-")
        parent = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise ConfigError(f"{flag} {path}: is a directory; name a file, e.g. {path / 'report'}")
        if not parent.is_dir():
            raise ConfigError(
                f"{flag} {path}: the directory {parent} does not exist; create it first "
                f"(mkdir -p {parent}) or write elsewhere"
            )


def _write_text(path: Path, text: str) -> None:
    if str(path) == "-":
        sys.stdout.write(text)
        return
    path.write_text(text, encoding="utf-8")
    print(f"orch report: wrote {path}", file=sys.stderr)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    if str(path) == "-":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    write_json_atomic(path, data)
    print(f"orch report: wrote {path}", file=sys.stderr)
