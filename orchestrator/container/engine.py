"""The container engine layer: the only module that talks to Docker.

Everything else asks for containers, images and files through these functions, so the
rest of orch can be read (and unit-tested) without the Docker SDK in mind.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from orchestrator.container.types import (
    LABEL,
    LABEL_JOB,
    LABEL_RUN,
    ContainerHandle,
    ContainerInfo,
    ContainerSpec,
    ExecResult,
    ImageInfo,
    Mount,
)
from orchestrator.errors import EnvironmentProblem, OrchError
from orchestrator.util.archive import copy_bounded
from orchestrator.util.tarballs import tree_tar

__all__ = [
    "LABEL",
    "LABEL_JOB",
    "LABEL_RUN",
    "ContainerHandle",
    "DockerEngine",
    "ExecResult",
    "ImageInfo",
    "Mount",
]

_local = threading.local()


def _client() -> docker.DockerClient:
    """A client per thread (the SDK's HTTP session is not meant to be shared across threads)."""
    cli: docker.DockerClient | None = getattr(_local, "client", None)
    if cli is None:
        try:
            cli = docker.from_env(timeout=600)
            cli.ping()
        except docker.errors.DockerException as exc:
            raise EnvironmentProblem(
                f"cannot reach the Docker engine ({exc}).\n"
                "  Start it (as root: `bash scripts/setup-host.sh`), or set DOCKER_HOST."
            ) from exc
        _local.client = cli
    return cli


def ping() -> None:
    """Raise EnvironmentProblem now if the engine cannot be reached."""
    _client()


def engine_version() -> dict[str, Any]:
    info: dict[str, Any] = _client().version()
    return info


# --- images -------------------------------------------------------------------------


def inspect_image(ref: str) -> ImageInfo | None:
    try:
        img = _client().images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    attrs = img.attrs
    cfg = attrs.get("Config") or {}
    env = dict(item.split("=", 1) for item in (cfg.get("Env") or []) if "=" in item)
    return ImageInfo(
        ref=ref,
        id=str(attrs["Id"]),
        architecture=str(attrs.get("Architecture", "")),
        variant=str(attrs.get("Variant", "")),
        labels=dict(cfg.get("Labels") or {}),
        env=env,
        repo_digests=tuple(attrs.get("RepoDigests") or ()),
    )


def pull_image(ref: str, platform: str | None = None) -> ImageInfo:
    try:
        _client().images.pull(ref, platform=platform)
    except docker.errors.APIError as exc:
        raise EnvironmentProblem(f"cannot pull image {ref}: {exc.explanation or exc}") from exc
    info = inspect_image(ref)
    assert info is not None
    return info


def build_image(
    context_dir: Path,
    tag: str,
    platform: str,
    buildargs: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    target: str | None = None,
    on_line: Callable[[str], None] | None = None,
) -> ImageInfo:
    """`docker build` of a context directory, streaming the build output line by line."""
    api = _client().api
    stream = api.build(
        path=str(context_dir),
        tag=tag,
        platform=platform,
        buildargs=dict(buildargs or {}),
        labels=dict(labels or {}),
        target=target,
        rm=True,
        forcerm=True,
        decode=True,
        network_mode="host",
    )
    error = None
    for chunk in stream:
        if "stream" in chunk and on_line:
            for line in str(chunk["stream"]).splitlines():
                on_line(line)
        if "error" in chunk:
            error = str(chunk["error"]).strip()
    if error:
        raise OrchError(f"building image {tag} failed: {error}")
    info = inspect_image(tag)
    assert info is not None
    return info


def tag_image(ref: str, tag: str) -> None:
    try:
        _client().images.get(ref).tag(tag)
    except docker.errors.APIError as exc:
        raise EnvironmentProblem(f"cannot tag image {ref} as {tag}: {exc}") from exc


def remove_image(ref: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        _client().images.remove(ref, force=True)


def list_images(label: str) -> list[ImageInfo]:
    out = []
    for img in _client().images.list(filters={"label": label}):
        for tag in img.tags:
            info = inspect_image(tag)
            if info:
                out.append(info)
    return out


# --- containers ---------------------------------------------------------------------


def create_container(
    image: str,
    *,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    mounts: Sequence[Mount] = (),
    platform: str | None = None,
    network_mode: str | None = None,
    workdir: str = "/",
) -> ContainerHandle:
    """A started, idle container (PID 1 sleeps); work is done through `exec_stream`."""
    all_labels = {LABEL: "1", **(labels or {})}
    binds = {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in mounts}
    try:
        container = _client().containers.create(
            image,
            command=["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
            name=name,
            labels=all_labels,
            environment=dict(env or {}),
            volumes=binds,
            platform=platform,
            network_mode=network_mode,
            working_dir=workdir,
            detach=True,
            init=False,
        )
    except docker.errors.ImageNotFound as exc:
        raise EnvironmentProblem(f"image {image} is not present: {exc.explanation}") from exc
    except docker.errors.APIError as exc:
        raise EnvironmentProblem(f"cannot start a container of {image}: {exc.explanation}") from exc
    handle = ContainerHandle(container.id, container.name)
    try:
        container.start()
    except docker.errors.APIError as exc:
        remove_container(handle)  # created but not started: nothing may be left behind
        raise EnvironmentProblem(f"cannot start a container of {image}: {exc.explanation}") from exc
    return handle


def _container(handle: ContainerHandle) -> Container:
    return _client().containers.get(handle.id)


def exec_stream(
    handle: ContainerHandle,
    cmd: Sequence[str],
    on_output: Callable[[bytes], None],
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
    user: str = "",
) -> ExecResult:
    """Run a command in a container, streaming stdout+stderr; returns its exit code.

    If the container dies under the command (killed, OOM), the exit code is that of the
    exec as the engine reports it (never 0), and a note is written to the output.
    """
    api = _client().api
    start = time.monotonic()
    try:
        exec_id = api.exec_create(
            handle.id, list(cmd), environment=dict(env or {}), workdir=workdir, user=user
        )["Id"]
        for chunk in api.exec_start(exec_id, stream=True, demux=False):
            on_output(chunk)
        code = api.exec_inspect(exec_id).get("ExitCode")
    except docker.errors.APIError as exc:
        on_output(f"\n[orch] the container went away: {exc.explanation or exc}\n".encode())
        return ExecResult(exit_code=255, seconds=time.monotonic() - start)
    if code is None:  # the exec's process vanished with its container
        on_output(b"\n[orch] the container stopped while the command was running\n")
        code = 255
    return ExecResult(exit_code=int(code), seconds=time.monotonic() - start)


def container_running(handle: ContainerHandle) -> bool:
    try:
        return bool(_container(handle).status == "running")
    except docker.errors.NotFound:
        return False


def put_tree(handle: ContainerHandle, source: Path, target_dir: str, arcname: str = ".") -> None:
    """Copy a host directory (or file) into the container at target_dir (which must exist)."""
    put_tar(handle, tree_tar(source, arcname), target_dir)


def put_tar(handle: ContainerHandle, data: bytes | Iterator[bytes], target_dir: str) -> None:
    try:
        ok = _container(handle).put_archive(target_dir, data)
    except docker.errors.APIError as exc:
        raise OrchError(f"copying files into container {handle.short_id} failed: {exc}") from exc
    if not ok:
        raise OrchError(f"copying files into container {handle.short_id}:{target_dir} failed")


def get_tar(handle: ContainerHandle, path: str) -> bytes:
    """The engine's tar of `path` (its top entry is the basename of path)."""
    try:
        stream, _stat = _container(handle).get_archive(path)
    except docker.errors.NotFound as exc:
        raise OrchError(f"{path} does not exist in container {handle.short_id}") from exc
    return b"".join(stream)


def copy_out(handle: ContainerHandle, path: str, dest: Path, limit: int) -> None:
    """Stream the engine's tar of ``path`` to the file ``dest``, at most ``limit`` bytes
    (a clear error beyond); ``dest`` is removed when the copy fails."""
    try:
        stream, _stat = _container(handle).get_archive(path)
        with dest.open("wb") as out:
            copy_bounded(iter(stream), out, limit, f"{path} in container {handle.short_id}")
    except docker.errors.NotFound as exc:
        dest.unlink(missing_ok=True)
        raise OrchError(f"{path} does not exist in container {handle.short_id}") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def remove_container(handle: ContainerHandle) -> None:
    try:
        _client().api.remove_container(handle.id, force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise


def list_containers(labels: Mapping[str, str]) -> list[ContainerInfo]:
    """Every container (running or not) carrying all the given labels."""
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    return [
        ContainerInfo(ContainerHandle(c.id, c.name), dict(c.labels), c.status == "running")
        for c in _client().containers.list(all=True, filters=filters)
    ]


def remove_containers(labels: Mapping[str, str], keep: set[str] | None = None) -> int:
    """Remove every container carrying all the given labels, except those named in `keep`."""
    count = 0
    for info in list_containers(labels):
        if keep and info.handle.name in keep:
            continue
        remove_container(info.handle)
        count += 1
    return count


def image_platform_string(info: ImageInfo) -> str:
    return info.platform


class DockerEngine:
    """The real engine, as the pipeline's `Engine` protocol."""

    def create(self, spec: ContainerSpec) -> ContainerHandle:
        return create_container(
            spec.image,
            name=spec.name,
            labels=spec.labels,
            env=spec.env,
            mounts=spec.mounts,
            platform=spec.platform,
            network_mode=spec.network_mode,
            workdir=spec.workdir,
        )

    def exec(
        self,
        handle: ContainerHandle,
        cmd: Sequence[str],
        on_output: Callable[[bytes], None],
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        return exec_stream(handle, cmd, on_output, env=env, workdir=workdir)

    def running(self, handle: ContainerHandle) -> bool:
        return container_running(handle)

    def put_tar(self, handle: ContainerHandle, data: bytes, target_dir: str) -> None:
        put_tar(handle, data, target_dir)

    def get_tar(self, handle: ContainerHandle, path: str) -> bytes:
        return get_tar(handle, path)

    def copy_out(self, handle: ContainerHandle, path: str, dest: Path, limit: int) -> None:
        copy_out(handle, path, dest, limit)

    def remove(self, handle: ContainerHandle) -> None:
        remove_container(handle)

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        return list_containers(labels)

    def inspect_image(self, ref: str) -> ImageInfo | None:
        return inspect_image(ref)
