"""Render audit results: a rich table per wheel, or one JSON document."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .model import CHECKS, ERROR, INFO, WARNING, AuditResult, Finding

MAX_ITEMS = 8  # items shown per finding in the table; JSON always has all of them
_STYLE = {ERROR: "bold red", WARNING: "yellow", INFO: "cyan", "pass": "green"}


def truncated(items: Sequence[str], limit: int = MAX_ITEMS) -> list[str]:
    if len(items) <= limit:
        return list(items)
    return [*items[:limit], f"… and {len(items) - limit} more ({len(items)} in all)"]


def render_table(result: AuditResult, console: Console) -> None:
    verdict = "OK" if result.ok() else "FAILED"
    style = "green" if result.ok() else "bold red"
    tags = ", ".join(result.claimed_tags) or "-"
    table = Table(
        title=f"{result.wheel}  [{tags}]",
        title_justify="left",
        show_lines=True,
        caption=Text(verdict, style=style),
        caption_justify="left",
    )
    table.add_column("check", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("details", overflow="fold")
    for check in CHECKS:
        findings = result.by_check(check)
        if not findings:
            table.add_row(check, Text("pass", style=_STYLE["pass"]), "")
        for finding in findings:
            table.add_row(
                check, Text(finding.severity, style=_STYLE[finding.severity]), _details(finding)
            )
    console.print(table)


def _details(finding: Finding) -> Text:
    text = Text()
    if finding.file:
        text.append(f"{finding.file}: ", style="bold")
    text.append(finding.message)
    for item in truncated(finding.items):
        text.append(f"\n  {item}")
    return text


def to_json_document(results: Sequence[AuditResult], errors: Sequence[tuple[str, str]]) -> str:
    doc = {
        "ok": all(r.ok() for r in results) and not errors,
        "results": [r.to_json() for r in results],
        "errors": [{"wheel": w, "error": e} for w, e in errors],
    }
    return json.dumps(doc, indent=2)
