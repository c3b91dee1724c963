"""The one way to a container: every job, dependency build, verification and acceleration
probe gets its session here, with the run's labels (run id, owning process and host), the
host's CA/proxy environment, the run's cancellation and its network mode.

`orch clean` reads the same labels back (`run_is_alive`) to leave live runs alone.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.container.hostenv import HostEnv
from orchestrator.container.session import LogSink, Session
from orchestrator.container.types import (
    LABEL,
    LABEL_HOST,
    LABEL_JOB,
    LABEL_PID,
    LABEL_PID_START,
    LABEL_RUN,
    ContainerInfo,
    ContainerSpec,
    Engine,
    Mount,
    PathOverlay,
)


def process_start(pid: int) -> str:
    """The kernel's start time of a process ("" if it is gone): with the pid, it names
    one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


@dataclass(frozen=True)
class RunIdentity:
    run_id: str
    pid: int
    pid_start: str
    host: str

    @classmethod
    def new(cls) -> RunIdentity:
        pid = os.getpid()
        return cls(uuid.uuid4().hex[:12], pid, process_start(pid), socket.gethostname())

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL: "1",
            LABEL_RUN: self.run_id,
            LABEL_PID: str(self.pid),
            LABEL_PID_START: self.pid_start,
            LABEL_HOST: self.host,
        }


def run_is_alive(labels: Mapping[str, str], host: str | None = None) -> bool:
    """Whether the orch process that created a container still runs. Containers of
    another host count as alive (their process cannot be checked from here); those
    without an owner label (older orch) as dead."""
    if LABEL_PID not in labels:
        return False
    if labels.get(LABEL_HOST) != (host or socket.gethostname()):
        return True
    try:
        pid = int(labels[LABEL_PID])
    except ValueError:
        return False
    start = process_start(pid)
    return bool(start) and start == labels.get(LABEL_PID_START, start)


def dead_runs_containers(engine: Engine, everything: bool = False) -> list[ContainerInfo]:
    """orch's containers whose run is over (all of them with `everything`)."""
    found = engine.containers({LABEL: "1"})
    return [c for c in found if everything or not run_is_alive(c.labels)]


def remove_run_containers(engine: Engine, run: RunIdentity, keep: Collection[str] = ()) -> int:
    """Remove the run's containers except those named in keep (kept for debugging)."""
    count = 0
    for info in engine.containers({LABEL_RUN: run.run_id}):
        if info.handle.name in keep:
            continue
        engine.remove(info.handle)
        count += 1
    return count


@dataclass(frozen=True)
class ContainerFactory:
    engine: Engine
    run: RunIdentity
    host: HostEnv = field(default_factory=HostEnv)
    cancel: threading.Event = field(default_factory=threading.Event)
    network_mode: str | None = None
    # A remote engine cannot see this host's files: every mount becomes a copy into the
    # container, and a container that stops with its engine is removed by it.
    remote: bool = False
    engine_name: str = ""  # a routed engine, as the user named it (logs)

    @property
    def where(self) -> str:
        return f"on engine {self.engine_name}" if self.engine_name else ""

    def session(
        self,
        image: str,
        *,
        platform: str,
        job: str,
        log: LogSink,
        keep_on_failure: bool = False,
        mounts: tuple[Mount, ...] = (),
        overlay: PathOverlay | None = None,
        env: Mapping[str, str] | None = None,
        personality: tuple[str, ...] = (),
        describe: str = "",
        network_mode: str | None = None,
        remove_later: bool = False,
    ) -> Session:
        base = {**self.host.env, **(env or {})}
        every = (*self.host.mounts, *mounts)
        spec = ContainerSpec(
            image=image,
            labels={**self.run.labels, LABEL_JOB: job},
            env=overlay.apply(base) if overlay else base,
            mounts=() if self.remote else every,
            platform=platform,
            network_mode=network_mode or self.network_mode,
            auto_remove=self.remote,
        )
        return Session(
            self.engine,
            spec,
            log=log,
            cancel=self.cancel,
            keep_on_failure=keep_on_failure,
            overlay=overlay,
            personality=personality,
            describe=", ".join(filter(None, (describe, self.where))),
            copies=every if self.remote else (),
            remove_later=remove_later,
        )
