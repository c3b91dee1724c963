"""Long steps that run in worker threads (debootstrap, a CPython compile container) block on
their child's output, so an interruption raised in the main thread does not reach them. Such
a step registers how to stop its child here while it runs; the run's interruption handler
calls `stop_all()`, the child ends, and the step's thread fails out promptly."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator

_lock = threading.Lock()
_live: dict[int, Callable[[], None]] = {}
_ids = itertools.count()


@contextlib.contextmanager
def stoppable(stop: Callable[[], None]) -> Iterator[None]:
    """While the block runs, `stop_all()` calls `stop` (it must be safe to call twice)."""
    key = next(_ids)
    with _lock:
        _live[key] = stop
    try:
        yield
    finally:
        with _lock:
            _live.pop(key, None)


def stop_all() -> int:
    """Stop every registered child; the number stopped. Errors are ignored: this runs while
    an interruption is already being handled."""
    with _lock:
        stops = list(_live.values())
    for stop in stops:
        with contextlib.suppress(Exception):
            stop()
    return len(stops)
