"""Per-job (and per-dependency) log files: everything a container printed, with stage
headers, kept after the run; the tail is what a failure shows."""

from __future__ import annotations

import codecs
import contextlib
import threading
import time
from collections import deque
from pathlib import Path

from orchestrator.util.redact import redact

_MAX_PARTIAL = 1 << 16


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
        """Whole lines reach the file, redacted (a URL split across two chunks is still
        one line); a trailing partial line waits for its end or :meth:`close`."""
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            if len(self._partial) > _MAX_PARTIAL:  # progress bars without newlines
                lines.append(self._partial)
                self._partial = ""
            if lines:
                done = [redact(line) for line in lines]
                self._file.write("\n".join(done) + "\n")
                self._file.flush()
                self._tail.extend(done)

    def tail(self, n: int = 30) -> list[str]:
        with self._lock:
            lines = list(self._tail) + ([redact(self._partial)] if self._partial else [])
        return lines[-n:]

    @property
    def closed(self) -> bool:
        return self._file.closed

    def take(self, child: JobLog) -> None:
        """A side log (a check run beside others) into this one, once: closed, copied in
        whole, its file removed (a second call finds no file and adds nothing)."""
        child.close()
        with contextlib.suppress(OSError):
            self.write(child.path.read_text(encoding="utf-8", errors="replace"))
        child.path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                if self._partial:  # a last line without its newline: appended logs follow
                    self._file.write(redact(self._partial) + "\n")
                    self._partial = ""
                self._file.close()
