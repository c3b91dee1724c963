"""The live progress view: one row per task (dependency builds and wheel jobs) with its
stage and elapsed time. On a terminal it is a rich Live table; elsewhere (CI logs) each
stage change is one plain line, so logs stay readable."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.util.redact import inert

STYLE = {
    "ok": "green",
    "cached": "cyan",
    "failed": "bold red",
    "blocked": "yellow",
    "cancelled": "yellow",
    "running": "blue",
    "waiting": "dim",
}


@dataclass
class Task:
    key: str
    kind: str  # "dep" | "job" | "image"
    label: str
    note: str = ""  # "emulated", "cache hit"...
    stage: str = "waiting"
    status: str = "waiting"
    started: float | None = None
    ended: float | None = None
    stage_times: dict[str, float] = field(default_factory=dict)
    _stage_started: float | None = None

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or time.monotonic()) - self.started


class ProgressView:
    def __init__(self, console: Console | None = None, live: bool | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._live_enabled = self.console.is_terminal if live is None else live
        self._live: Live | None = None
        self._t0 = time.monotonic()

    def __enter__(self) -> ProgressView:
        if self._live_enabled:
            self._live = Live(
                get_renderable=self.render, console=self.console, refresh_per_second=4
            )
            self._live.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(et, ev, tb)
            self._live = None

    def add(self, key: str, kind: str, label: str, note: str = "") -> None:
        with self._lock:
            self.tasks[key] = Task(key, kind, label, note)

    def stage(self, key: str, stage: str) -> None:
        now = time.monotonic()
        with self._lock:
            t = self.tasks[key]
            if t.started is None:
                t.started = now
            if t._stage_started is not None:
                t.stage_times[t.stage] = now - t._stage_started
            t.stage, t.status, t._stage_started = stage, "running", now
        self._plain(t, stage)

    def finish(self, key: str, status: str, detail: str = "") -> None:
        detail = inert(detail)  # shown in the live table too
        now = time.monotonic()
        with self._lock:
            t = self.tasks[key]
            if t._stage_started is not None:
                t.stage_times[t.stage] = now - t._stage_started
            t.status, t.ended, t._stage_started = status, now, None
            t.started = t.started or now
            t.stage = detail or status
        self._plain(t, f"{status}{': ' + detail if detail and detail != status else ''}")

    def waiting(self, key: str, text: str) -> None:
        """What a task that has not started waits for ("waiting: deps zlib, xz"); shown
        when it changes, without starting its clock."""
        with self._lock:
            t = self.tasks[key]
            if t.status != "waiting" or t.stage == text:
                return
            t.stage = text
        self._plain(t, text)

    def unfinished(self, prefix: str) -> list[Task]:
        """Tasks whose key starts with `prefix` that are waiting or running."""
        with self._lock:
            return [
                t
                for k, t in self.tasks.items()
                if k.startswith(prefix) and t.status in ("waiting", "running")
            ]

    def stage_of(self, key: str) -> str | None:
        with self._lock:
            t = self.tasks.get(key)
            return t.stage if t else None

    def note(self, key: str, note: str) -> None:
        with self._lock:
            self.tasks[key].note = note

    def stage_times(self, key: str) -> dict[str, float]:
        with self._lock:
            return dict(self.tasks[key].stage_times)

    def print(self, text: str) -> None:
        # Build output may carry credentials, escapes or workflow commands.
        self.console.print(inert(text), markup=False, highlight=False, soft_wrap=True)

    def _plain(self, t: Task, what: str) -> None:
        if self._live is None:
            stamp = time.monotonic() - self._t0
            note = f" ({t.note})" if t.note else ""
            self.console.print(
                inert(f"[{stamp:7.1f}s] {t.kind} {t.label}{note}: {what}"),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    def render(self) -> Table:
        table = Table(expand=False, show_edge=False, pad_edge=False, box=None)
        for col in ("", "task", "stage", "time", ""):
            table.add_column(col)
        with self._lock:
            tasks = list(self.tasks.values())
        for t in tasks:
            icon = {"dep": "lib", "job": "whl", "image": "img"}.get(t.kind, t.kind)
            table.add_row(
                Text(icon, style="dim"),
                t.label,
                Text(t.stage, style=STYLE.get(t.status, "")),
                f"{t.elapsed():6.1f}s" if t.started else "",
                Text(t.note, style="magenta" if "emulated" in t.note else "cyan"),
            )
        return table
