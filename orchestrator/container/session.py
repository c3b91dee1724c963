"""A job's container session: one fresh container per job, commands streamed to the job's
log, files in and out by tar, and guaranteed removal. Built on the engine layer."""

from __future__ import annotations

import shlex
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from docker.models.containers import Container

from orchestrator.container import engine
from orchestrator.container.hostenv import HostEnv
from orchestrator.emulation.accel import Accel, apply
from orchestrator.errors import OrchError
from orchestrator.report.joblog import JobLog


class StageFailed(OrchError):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class Cancelled(OrchError):
    pass


class Session:
    """`with Session(...) as s: s.run(stage, cmd)` — the container is gone afterwards
    unless `keep` was asked for and the job failed."""

    def __init__(
        self,
        image: str,
        *,
        platform: str,
        labels: Mapping[str, str],
        host: HostEnv,
        log: JobLog,
        cancel: threading.Event,
        keep_on_failure: bool = False,
        network_mode: str | None = None,
        accel: Accel | None = None,
        personality: tuple[str, ...] = (),
    ) -> None:
        self.image = image
        self.platform = platform
        self.labels = labels
        self.host = host
        self.log = log
        self.cancel = cancel
        self.keep_on_failure = keep_on_failure
        self.network_mode = network_mode
        self.personality = personality
        self.accel = (
            accel  # native cross compiler mounts for an emulated build (emulation/accel.py)
        )
        self.container: Container | None = None
        self.kept = False

    def __enter__(self) -> Session:
        self.container = engine.create_container(
            self.image,
            labels=self.labels,
            env=apply(self.accel, self.host.env) if self.accel else self.host.env,
            mounts=[*self.host.mounts, *(self.accel.mounts if self.accel else [])],
            platform=self.platform,
            network_mode=self.network_mode,
        )
        self.log.line(
            f"[orch] container {self.container.short_id} of {self.image} ({self.platform})"
            + (f", {self.accel.describe()}" if self.accel else "")
        )
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.container is None:
            return
        if et is not None and self.keep_on_failure and not self.cancel.is_set():
            self.kept = True
            self.log.line(f"[orch] kept container {self.container.name} for debugging")
            return
        engine.remove_container(self.container)

    @property
    def c(self) -> Container:
        assert self.container is not None, "session not started"
        return self.container

    def run(
        self,
        stage: str,
        cmd: Sequence[str] | str,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> None:
        """Run a command (a list, or a bash script string); raise StageFailed on non-zero."""
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        argv = ["bash", "-euo", "pipefail", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        argv = [*self.personality, *argv]
        if self.accel is not None and env is not None:
            env = apply(self.accel, env)  # a command's own PATH keeps the wrappers first
        self.log.line(f"$ {cmd if isinstance(cmd, str) else shlex.join(argv)}")
        result = engine.exec_stream(self.c, argv, self.log.write_bytes, env=env, workdir=workdir)
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        if result.exit_code != 0:
            gone = "" if engine.container_running(self.c) else " (the container was stopped)"
            raise StageFailed(stage, f"{stage} failed with exit code {result.exit_code}{gone}")

    def put(self, source: Path, target_dir: str, arcname: str = ".") -> None:
        engine.put_tree(self.c, source, target_dir, arcname)

    def put_tar(self, data: bytes, target_dir: str) -> None:
        engine.put_tar(self.c, data, target_dir)

    def get(self, path: str) -> bytes:
        return engine.get_tar(self.c, path)
