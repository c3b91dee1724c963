"""Waiting for worker threads without going deaf to signals."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, wait
from typing import Any


def wait_responsively(futures: Sequence[Future[Any]], step: float = 0.5) -> None:
    """Wait in short steps: a process-directed signal may be delivered to a worker
    thread, and the main thread runs its handler (Ctrl-C, SIGTERM) only when it wakes."""
    while wait(futures, timeout=step).not_done:
        pass
