"""A second Docker engine on this machine standing in for a remote build host
(tests/test_engines_e2e.py): a private dockerd (scripts/privatedockerd.py) with its own
socket, data root, exec root and bridge. The shared engine is never stopped or touched;
this one may be stopped mid-run. Its data root is kept between sessions (images copied
once)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from scripts.privatedockerd import PrivateDockerd, RunningDockerd, session

DOCKERD = PrivateDockerd.named(
    "orch-engines",
    "orcheng0",
    "172.29.66.0/24",
    Path("/var/lib/orch-engines-docker"),
    start_seconds=90,
)
URL = DOCKERD.host
docker = DOCKERD.docker
SecondEngine = RunningDockerd


def second_engine() -> contextlib.AbstractContextManager[SecondEngine]:
    return session(DOCKERD)
