"""Phases of image steps as they happen, with a heartbeat for the silent ones.

Building a local image takes minutes (debootstrap, packages, compiling CPython); its
output goes to a log file, so without this a user sees nothing between "checking" and
"built" and cannot tell progress from a hang. Each phase reports when it starts and ends
with its elapsed time; build scripts report sub-phases with `[orch-image] phase ...`
lines; a phase that reports nothing for HEARTBEAT_SECONDS says what it is waiting for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HEARTBEAT_SECONDS = 30.0
PHASE_MARKER = "[orch-image] phase "

Report = Callable[[str], None]


def _quiet(_text: str) -> None:
    pass


class _Phase:
    """One running phase: what it last said, and when it last reported."""

    def __init__(self, name: str, waiting_for: str, report: Report, log: Report) -> None:
        self.name = name
        self.waiting_for = waiting_for
        self.started = time.monotonic()
        self.last_report = self.started
        self.last_line = ""
        self._report = report
        self._log = log
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            self.last_report = time.monotonic()
        self._report(text)

    def line(self, text: str) -> None:
        """A log line of the phase: to the log, and a sub-phase when it is a marker."""
        self._log(text)
        stripped = text.strip()
        if stripped.startswith(PHASE_MARKER):
            step = stripped[len(PHASE_MARKER) :]
            with self._lock:
                self.waiting_for = step  # the heartbeat names the step under way
            self.say(f"{self.name}: {step} ({self.elapsed():.0f} s)")
        elif stripped:
            with self._lock:
                self.last_line = stripped

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def heartbeat_due(self, every: float) -> bool:
        with self._lock:
            return time.monotonic() - self.last_report >= every

    def heartbeat(self) -> str:
        with self._lock:
            last, waiting_for = self.last_line, self.waiting_for
        tail = f"; last output: {last[:100]}" if last else ""
        return (
            f"{self.name}: still running after {self.elapsed():.0f} s, "
            f"waiting for {waiting_for}{tail}"
        )


class Phases:
    """Reports phases to `on_phase` (the progress view, or plain lines) and their output to
    `on_line` (the log). Thread-safe: interpreters compile in parallel, each in a phase."""

    def __init__(
        self,
        on_phase: Report | None = None,
        on_line: Report | None = None,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.on_phase = on_phase or _quiet
        self.on_line = on_line or _quiet
        self.heartbeat = heartbeat

    @contextmanager
    def phase(self, name: str, waiting_for: str) -> Iterator[Report]:
        """Yields the phase's line logger; reports start, end (or failure) and heartbeats."""
        current = _Phase(name, waiting_for, self._emit, self.on_line)
        current.say(name)
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(current, stop), daemon=True)
        watcher.start()
        try:
            yield current.line
        except BaseException:
            current.say(f"{name}: failed after {current.elapsed():.1f} s")
            raise
        finally:
            stop.set()
            watcher.join()
        current.say(f"{name}: done in {current.elapsed():.1f} s")

    def _emit(self, text: str) -> None:
        self.on_line(f"[orch] {text}")
        self.on_phase(text)

    def _watch(self, current: _Phase, stop: threading.Event) -> None:
        tick = min(5.0, self.heartbeat / 2)
        while not stop.wait(tick):
            if current.heartbeat_due(self.heartbeat):
                current.say(current.heartbeat())
