"""Running the real `orch` CLI and looking at the engine, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def orch(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def start_orch(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the real CLI and return at once (for tests that act while it runs); its
    stdout and stderr come merged on stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def containers_with_label(label: str, *more: str) -> list[str]:
    """Containers carrying every label given (e.g. a job's and its orch process's)."""
    filters = [arg for lab in (label, *more) for arg in ("--filter", f"label={lab}")]
    out = subprocess.run(
        ["docker", "ps", "-aq", *filters],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def wheel_platforms(name: str) -> set[str]:
    """'x-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux_2_31_x86_64.whl' -> both tags."""
    return set(name.removesuffix(".whl").rsplit("-", 1)[1].split("."))


def wheel_stem(name: str) -> str:
    """The file name without its platform tags: 'x-1.0-cp311-cp311'."""
    return name.removesuffix(".whl").rsplit("-", 1)[0]
