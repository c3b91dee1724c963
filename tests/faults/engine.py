"""A private Docker engine for the fault suite.

The shared engine must never be stopped, and `orch clean` or an orphan count on it would
see other people's containers. So the suite runs orch against its own dockerd (own
socket, data root, exec root and bridge: scripts/privatedockerd.py), which it may kill
mid-run. Its data root is kept between sessions so the local images are loaded once; the
bridge and its NAT rules are removed when the session ends.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

from scripts.privatedockerd import PrivateDockerd, RunningDockerd, session

DOCKERD = PrivateDockerd.named("orch-fault-docker", "orchflt0", "172.29.77.0/24")
HOST = DOCKERD.host
docker = DOCKERD.docker
FaultEngine = RunningDockerd


def _load_images(refs: tuple[str, ...]) -> None:
    """Copy the local images from the shared engine, unless already here with the same id."""
    missing = []
    for ref in refs:
        shared = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True
        ).stdout.strip()
        here = docker("image", "inspect", "-f", "{{.Id}}", ref, check=False).strip()
        if shared != here:
            missing.append(ref)
    if not missing:
        return
    save = subprocess.Popen(["docker", "save", *missing], stdout=subprocess.PIPE)
    assert save.stdout is not None
    load = subprocess.Popen(
        ["docker", "-H", HOST, "load", "-q"], stdin=save.stdout, stderr=subprocess.PIPE
    )
    save.stdout.close()  # only `load` reads it: `save` sees a closed pipe if `load` dies
    _, err = load.communicate(timeout=900)
    save.wait(timeout=60)
    if load.returncode != 0 or save.returncode != 0:
        raise RuntimeError(f"loading images into the private engine: {err.decode()}")


@contextlib.contextmanager
def private_engine(images: tuple[str, ...]) -> Iterator[FaultEngine]:
    with session(DOCKERD) as fe:
        _load_images(images)
        yield fe
