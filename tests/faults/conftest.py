"""Fixtures of the fault suite and the one table it prints at the end of the session:
per fault, the runs and what they left behind (all must be zero, every report written)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.engine import FaultEngine, private_engine
from tests.faults.measure import FaultRow, RunOutcome
from tests.support.sourceserver import ServerURL, serve_directory

_ROWS: dict[str, FaultRow] = {}


@pytest.fixture(scope="session")
def fault_engine(x86_images: tuple[str, str]) -> Iterator[FaultEngine]:
    with private_engine(x86_images) as fe:
        yield fe


@pytest.fixture()
def engine(fault_engine: FaultEngine) -> Iterator[FaultEngine]:
    """The private engine, empty of orch containers before and after each test."""
    fault_engine.remove_all()
    yield fault_engine
    fault_engine.remove_all()


@pytest.fixture()
def sources(tmp_path: Path) -> Iterator[tuple[Path, ServerURL]]:
    srv = tmp_path / "srv"
    srv.mkdir()
    with serve_directory(srv) as base:
        yield srv, base


Record = Callable[..., FaultRow]


@pytest.fixture()
def record() -> Record:
    """record(fault, outcome, report_expected=True): add one run to the table."""

    def add(fault: str, outcome: RunOutcome, *, report_expected: bool = True) -> FaultRow:
        row = _ROWS.setdefault(fault, FaultRow(fault))
        row.add(outcome, report_expected=report_expected)
        return row

    return add


def assert_clean(outcome: RunOutcome, *, report: bool = True) -> None:
    """Nothing lost or leaked: the checks every fault shares."""
    detail = f"{outcome.summary()}\n--- output ---\n{outcome.output[-4000:]}"
    assert outcome.tracebacks == 0, detail
    assert outcome.orphans == 0, detail
    assert not outcome.partial_wheels, detail
    assert not outcome.poisoned, detail
    if report:
        assert outcome.report is not None, detail


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ROWS:
        return
    head = (
        "fault",
        "runs",
        "orphan containers",
        "partial wheels",
        "poisoned cache",
        "reports",
        "tracebacks",
    )
    rows = [
        (r.fault, str(r.runs), str(r.orphans), str(r.partial_wheels), str(r.poisoned),
         f"{r.reports}/{r.reports_expected}", str(r.tracebacks))
        for r in _ROWS.values()
    ]  # fmt: skip
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    terminalreporter.section("fault suite")
    terminalreporter.write_line(line(head))
    terminalreporter.write_line(line(["-" * w for w in widths]))
    for r in rows:
        terminalreporter.write_line(line(r))
    total = [sum(int(r[i]) for r in rows) for i in (1, 2, 3, 4, 6)]
    written = sum(x.reports for x in _ROWS.values())
    expected = sum(x.reports_expected for x in _ROWS.values())
    terminalreporter.write_line(
        line(["total", str(total[0]), str(total[1]), str(total[2]), str(total[3]),
              f"{written}/{expected}", str(total[4])])
    )  # fmt: skip
