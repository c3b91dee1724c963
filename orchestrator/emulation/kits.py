"""What the machine-wide native kits (ccache, auditwheel) share: each is built once per
machine under a file lock, or by one background thread per process while jobs go on
without it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

from orchestrator.emulation.cross_root import cross_dir
from orchestrator.errors import OrchError

K = TypeVar("K")

_background: dict[Path, threading.Thread] = {}
_background_lock = threading.Lock()


def ensure(path: Path, load: Callable[[Path], K | None], build: Callable[[Path], K]) -> K:
    """The kit at `path`, built now if this machine has none (one builder across
    processes; a waiter takes what the other one built)."""
    found = load(path)
    if found is not None:
        return found
    lock = cross_dir() / "locks" / f"{path.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        found = load(path)  # built by another process while we waited
        return found if found is not None else build(path)


def ready(path: Path, load: Callable[[Path], K | None], ensure_now: Callable[[], K]) -> K | None:
    """The kit if this machine has it; else None, and one background thread per process
    runs `ensure_now` for the jobs and runs that come after."""
    found = load(path)
    if found is not None:
        return found
    with _background_lock:
        if path not in _background:
            # not a daemon: a run that ends first waits for it rather than leave half a root
            thread = threading.Thread(
                target=_quietly, args=(ensure_now,), name=f"kit-{path.name}", daemon=False
            )
            _background[path] = thread
            thread.start()
    return None


def _quietly(ensure_now: Callable[[], object]) -> None:
    with contextlib.suppress(OrchError, OSError):
        ensure_now()
