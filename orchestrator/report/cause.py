"""The cause of a failure in one line: what a reader should see before any log.

A failed stage's output usually holds one line that explains it (`gcc: error: ...`,
`ERROR: Package 'x' requires a different Python`, `fatal error: zlib.h: No such file`, the
exception a traceback ends with). Reports lead with it; the log tail is for the details.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

STAGE_HEADER = "==> ["  # JobLog.stage(): the failing stage's output follows the last one
MAX_CHARS = 300
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CAUSE = re.compile(r"\berror:|\bERROR:|\bError:|\bfatal\b|^\[audit\] error\b", re.IGNORECASE)
# Lines that look like an error but are not the cause (pip prints this on success too).
_NOISE = ("ERROR: pip's dependency resolver does not currently take into account",)


def first_error_line(lines: Sequence[str]) -> str | None:
    """The first error-looking line of the last stage's output (a traceback counts as its
    exception line), or None when no line looks like one."""
    stage = _last_stage(list(lines))
    it = iter(stage)
    for raw in it:
        line = _clean(raw)
        if line.startswith("Traceback (most recent call last)"):
            return _exception_line(it) or line
        if _is_cause(line):
            return line[:MAX_CHARS]
    return None


def _last_stage(lines: list[str]) -> list[str]:
    starts = [i for i, line in enumerate(lines) if line.startswith(STAGE_HEADER)]
    return lines[starts[-1] + 1 :] if starts else lines


def _clean(line: str) -> str:
    return _ANSI.sub("", line).strip()


def _is_cause(line: str) -> bool:
    if not line or line.startswith("$ ") or line.startswith(_NOISE):
        return False
    return bool(_CAUSE.search(line))


def _exception_line(rest: Iterable[str]) -> str | None:
    """The line a traceback ends with: the first unindented line after its frames."""
    for raw in rest:
        if raw and not raw[0].isspace() and not raw.startswith("During handling"):
            return _clean(raw)[:MAX_CHARS] or None
    return None


def cause_or_error(lines: Sequence[str], error: str | None) -> str | None:
    """first_error_line, else the first line of the error message (the exception)."""
    found = first_error_line(lines)
    if found:
        return found
    first = (error or "").strip().splitlines()
    return first[0][:MAX_CHARS] if first else None
