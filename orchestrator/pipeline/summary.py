"""What `orch build` prints at the end: a table of jobs and each failure's log tail."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from orchestrator.report.record import RunReport
from orchestrator.util.redact import inert


def summary_table(report: RunReport) -> Table:
    table = Table(title=f"orch: {report.name}", show_lines=False)
    for col in ("job", "status", "time", "wheel (or cause)", "size"):
        table.add_column(
            col,
            justify="right" if col in ("time", "size") else "left",
            overflow="fold",
            no_wrap=col in ("time", "size", "status"),
        )
    order = {"failed": 0, "interrupted": 1, "cancelled": 1, "blocked": 2, "ok": 3}
    for j in sorted(report.jobs, key=lambda j: (order.get(j.status, 9), j.id)):
        style = {"ok": "green", "failed": "bold red"}.get(j.status, "yellow")
        reused = j.checks.get("status") == "reused"
        table.add_row(
            j.id,
            f"[{style}]{j.status}[/]"
            + (f" ({j.failed_stage})" if j.failed_stage else "")
            + (" (checks reused)" if reused else ""),
            f"{j.seconds:.1f}s",
            j.wheel.filename if j.wheel else (j.cause or "-"),
            f"{j.wheel.size / 1024:.0f} KiB" if j.wheel else "-",
        )
    return table


def compile_cache_line(report: RunReport) -> str | None:
    """One line over all jobs: the compile cache's hits and misses (None: not used)."""
    counts = [j.compile_cache for j in report.jobs if j.compile_cache]
    if not counts:
        return None
    hits = sum(c.get("hits", 0) for c in counts)
    misses = sum(c.get("misses", 0) for c in counts)
    return f"compile cache: {hits} hit(s), {misses} miss(es) in {len(counts)} job(s)"


def print_failures(report: RunReport, console: Console) -> None:
    for j in report.jobs:
        if j.status != "failed":
            continue
        console.rule(f"[bold red]{j.id} failed in {j.failed_stage}")
        if j.cause and j.cause != j.error:
            console.print(f"cause: {inert(j.cause)}", markup=False, soft_wrap=True, style="bold")
        console.print(inert(j.error or ""), markup=False, soft_wrap=True)
        if j.log_tail:
            tail = inert("\n".join(j.log_tail))
            console.print(tail, markup=False, highlight=False, soft_wrap=True)
        console.print(f"full log: {j.log}", markup=False, soft_wrap=True)
        if j.kept_container:
            console.print(
                f"container kept: docker exec -it {j.kept_container} bash   "
                f"(remove it with: orch clean)",
                markup=False,
            )
