"""The engine layer's vocabulary, free of the Docker SDK: what a container is asked to be
(`ContainerSpec`), the handle the rest of orch holds, and the `Engine` protocol that the
real engine (`engine.DockerEngine`) and the tests' in-memory engine both implement."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LABEL = "io.orch.managed"  # every container orch creates carries it; `orch clean` finds them
LABEL_RUN = "io.orch.run"
LABEL_JOB = "io.orch.job"
LABEL_PID = "io.orch.pid"  # the owning orch process...
LABEL_PID_START = "io.orch.pid-start"  # ...its start time (pids are reused)...
LABEL_HOST = "io.orch.host"  # ...and host: `orch clean` leaves live runs alone


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    seconds: float


@dataclass(frozen=True)
class ImageInfo:
    ref: str
    id: str
    architecture: str  # OCI name: amd64, arm64, 386, ppc64le, s390x, arm
    variant: str
    labels: Mapping[str, str]
    env: Mapping[str, str]
    repo_digests: tuple[str, ...]

    @property
    def platform(self) -> str:
        return f"linux/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


@dataclass(frozen=True)
class ContainerHandle:
    """A container as orch knows it (the SDK's object stays inside the engine)."""

    id: str
    name: str

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class ContainerInfo:
    handle: ContainerHandle
    labels: Mapping[str, str]
    running: bool


@dataclass(frozen=True)
class PathOverlay:
    """Directories put first on PATH and defaults for other variables, applied to a
    container's environment and again to each command's (idempotent)."""

    prefix: str
    defaults: Mapping[str, str] = field(default_factory=dict)
    fallback_path: str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    def apply(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        for key, value in self.defaults.items():
            env.setdefault(key, value)
        path = env.get("PATH") or self.fallback_path
        first = self.prefix.split(":")  # one directory or several (ccache's, then the compiler's)
        dirs = [d for d in path.split(":") if d and d not in first]
        env["PATH"] = ":".join([*first, *dirs])
        return env


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    platform: str | None = None
    network_mode: str | None = None
    name: str | None = None
    workdir: str = "/"
    auto_remove: bool = False  # removed by the engine when it stops (remote engines)


OnOutput = Callable[[bytes], None]


class Engine(Protocol):
    """Everything the pipeline asks of a container engine."""

    def create(self, spec: ContainerSpec) -> ContainerHandle: ...

    def exec(
        self,
        handle: ContainerHandle,
        cmd: Sequence[str],
        on_output: OnOutput,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult: ...

    def running(self, handle: ContainerHandle) -> bool: ...

    def put_tar(self, handle: ContainerHandle, data: bytes, target_dir: str) -> None: ...

    def get_tar(self, handle: ContainerHandle, path: str) -> bytes: ...

    def copy_out(self, handle: ContainerHandle, path: str, dest: Path, limit: int) -> None:
        """The engine's tar of `path` streamed to the file `dest`, at most `limit` bytes."""

    def remove(self, handle: ContainerHandle) -> None: ...

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]: ...

    def inspect_image(self, ref: str) -> ImageInfo | None: ...
