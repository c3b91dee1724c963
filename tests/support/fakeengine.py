"""An in-memory container engine implementing `orchestrator.container.types.Engine`, for
fast tests of the runner's orchestration (scheduling, cancellation, blocking, cleanup)
without Docker. It claims nothing about real builds: commands are answered by a script.

The default script plays a successful build: filling the wheel cache leaves one wheel,
`auditwheel repair` leaves one wheel named after the job, a dependency's `package` step leaves an artifact with one static library.
"""

from __future__ import annotations

import io
import itertools
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from orchestrator.container.types import (
    LABEL,
    LABEL_JOB,
    ContainerHandle,
    ContainerInfo,
    ContainerSpec,
    Engine,
    ExecResult,
    ImageInfo,
)
from orchestrator.deps.stage import WORK
from orchestrator.errors import EnvironmentProblem, OrchError
from orchestrator.options import BuildOptions
from orchestrator.pipeline.buildenv import FILL_PATH, WHEELS
from orchestrator.pipeline.images import LocalImages
from orchestrator.pipeline.repair import REPAIRED
from orchestrator.pipeline.run import run
from orchestrator.plan.jobs import Plan
from orchestrator.recipe.model import Recipe
from orchestrator.report.record import RunReport


@dataclass
class FakeContainer:
    handle: ContainerHandle
    spec: ContainerSpec
    files: dict[str, bytes] = field(default_factory=dict)  # path -> the engine's tar of it
    execs: list[list[str]] = field(default_factory=list)
    copied_in: list[str] = field(default_factory=list)
    tars: list[tuple[str, bytes]] = field(default_factory=list)  # (target, what was copied)
    removed: bool = False

    @property
    def job(self) -> str:
        return self.spec.labels.get(LABEL_JOB, "")


# A script answers one command in one container with an exit code (and may block), or
# with an exit code and the output the command printed.
Script = Callable[["FakeEngine", FakeContainer, Sequence[str]], "int | tuple[int, bytes]"]


def image(ref: str, architecture: str = "amd64", env: Mapping[str, str] | None = None) -> ImageInfo:
    return ImageInfo(ref, f"sha256:{abs(hash(ref)):x}", architecture, "", {}, dict(env or {}), ())


def wheel_bytes(job_id: str) -> tuple[str, bytes]:
    """A minimal wheel for a job id like cp39-manylinux_2_31_x86_64."""
    py, plat = job_id.split("-", 1)
    name = f"fakedemo-1.0-{py}-{py}-{plat}.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fakedemo/__init__.py", "")
        zf.writestr("fakedemo-1.0.dist-info/METADATA", "Name: fakedemo\nVersion: 1.0\n")
    return name, buf.getvalue()


def tar_of(files: Mapping[str, bytes], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def builds_wheel(cmd: Sequence[str]) -> bool:
    """The job's wheel build: `python -m build --wheel`, or the wheel-cache fill, which
    builds the wheel while it fetches the requirements (pipeline/buildenv.py)."""
    return "--wheel" in cmd or FILL_PATH in cmd


def succeed(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
    text = " ".join(cmd)
    if "auditwheel repair" in text or f"{REPAIRED}/" in text:
        name, data = wheel_bytes(c.job)
        c.files[REPAIRED] = tar_of({f"repaired/{name}": data})
    if FILL_PATH in text:  # the build requirements fetched into the wheel cache
        c.files[WHEELS] = tar_of({"wheels/setuptools-1-py3-none-any.whl": b"fake wheel"})
    if "artifact.tar.gz -T" in text:
        artifact = tar_of({"lib/libfake.a": b"!<arch>\n"}, gz=True)
        c.files[f"{WORK}/artifact.tar.gz"] = tar_of({"artifact.tar.gz": artifact})
    return 0


class FakeEngine:
    def __init__(self, images: Iterable[ImageInfo], script: Script = succeed) -> None:
        self.images = {i.ref: i for i in images}
        self.script = script
        self.created: list[FakeContainer] = []
        self.live: dict[str, FakeContainer] = {}
        self.down = False  # the engine stopped answering
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    # --- the Engine protocol -----------------------------------------------------------

    def create(self, spec: ContainerSpec) -> ContainerHandle:
        self._check_up()
        if spec.image not in self.images:
            raise EnvironmentProblem(f"image {spec.image} is not present")
        n = next(self._ids)
        c = FakeContainer(ContainerHandle(f"{n:064x}", f"fake-{n}"), spec)
        c.spec = ContainerSpec(**{**spec.__dict__, "labels": {LABEL: "1", **spec.labels}})
        with self.lock:
            self.created.append(c)
            self.live[c.handle.id] = c
        return c.handle

    def exec(
        self,
        handle: ContainerHandle,
        cmd: Sequence[str],
        on_output: Callable[[bytes], None],
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        c = self.live.get(handle.id)
        if c is None:
            on_output(b"[fake] the container went away\n")
            return ExecResult(255, 0.0)
        c.execs.append(list(cmd))
        code = self.script(self, c, cmd)
        if isinstance(code, tuple):
            code, printed = code
            on_output(printed)
        if c.removed:
            return ExecResult(255, 0.0)
        return ExecResult(code, 0.0)

    def running(self, handle: ContainerHandle) -> bool:
        return handle.id in self.live

    def put_tar(self, handle: ContainerHandle, data: bytes, target_dir: str) -> None:
        self._get(handle).copied_in.append(target_dir)
        self._get(handle).tars.append((target_dir, data))

    def get_tar(self, handle: ContainerHandle, path: str) -> bytes:
        c = self._get(handle)
        if path not in c.files:
            raise OrchError(f"{path} does not exist in container {handle.short_id}")
        return c.files[path]

    def copy_out(self, handle: ContainerHandle, path: str, dest: Path, limit: int) -> None:
        data = self.get_tar(handle, path)
        if len(data) > limit:
            raise OrchError(f"{path} in container {handle.short_id} is over {limit} bytes")
        dest.write_bytes(data)

    def remove(self, handle: ContainerHandle) -> None:
        self._check_up()
        with self.lock:
            c = self.live.pop(handle.id, None)
        if c is not None:
            c.removed = True

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        self._check_up()
        with self.lock:
            found = list(self.live.values())
        return [
            ContainerInfo(c.handle, dict(c.spec.labels), True)
            for c in found
            if all(c.spec.labels.get(k) == v for k, v in labels.items())
        ]

    def inspect_image(self, ref: str) -> ImageInfo | None:
        self._check_up()
        return self.images.get(ref)

    # --- for tests ------------------------------------------------------------------------

    def wait_until_removed(self, c: FakeContainer, timeout: float = 30.0) -> None:
        """Block like a long command does, until the container is removed under it."""
        deadline = time.monotonic() + timeout
        while not c.removed and time.monotonic() < deadline:
            time.sleep(0.01)

    def _get(self, handle: ContainerHandle) -> FakeContainer:
        c = self.live.get(handle.id)
        if c is None:
            raise OrchError(f"no such container: {handle.short_id}")
        return c

    def _check_up(self) -> None:
        if self.down:
            raise EnvironmentProblem("cannot reach the Docker engine (fake: stopped)")


def build(
    recipe: Recipe,
    plan: Plan,
    opts: BuildOptions,
    engine: FakeEngine,
    require_arch: Callable[[str], object] = lambda _arch: None,  # no binfmt check
    local_images: LocalImages | None = None,
    connect: Callable[[str, str], tuple[Engine, str]] | None = None,
) -> tuple[RunReport, str]:
    """orch's runner on `engine`: its report and console output (wide: no wrapped lines)."""
    out = io.StringIO()
    console = Console(file=out, width=200)
    report = run(recipe, plan, opts, console, engine, require_arch, local_images, connect)
    return report, out.getvalue()
