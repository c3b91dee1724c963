"""Per-job (and per-dependency) log files: everything a container printed, with stage
headers, kept after the run; the tail is what a failure shows."""

from __future__ import annotations

import codecs
import threading
import time
from collections import deque
from pathlib import Path


class JobLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("w", encoding="utf-8", errors="replace")
        self._tail: deque[str] = deque(maxlen=400)
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def stage(self, name: str) -> None:
        self.line(f"==> [{time.monotonic() - self._start:7.1f}s] {name}")

    def line(self, text: str) -> None:
        self.write(text.rstrip("\n") + "\n")

    def write_bytes(self, data: bytes) -> None:
        self.write(self._decoder.decode(data))

    def write(self, text: str) -> None:
        with self._lock:
            self._file.write(text)
            self._file.flush()
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            self._tail.extend(lines)

    def tail(self, n: int = 30) -> list[str]:
        with self._lock:
            lines = list(self._tail) + ([self._partial] if self._partial else [])
        return lines[-n:]

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()
