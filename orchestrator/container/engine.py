"""The container engine layer: the only module that talks to Docker.

Everything else asks for containers, images and files through these functions, so the
rest of orch can be read (and unit-tested) without the Docker SDK in mind.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from orchestrator.errors import EnvironmentProblem, OrchError
from orchestrator.util.archive import copy_bounded

LABEL = "io.orch.managed"  # every container orch creates carries it; `orch clean` removes them
LABEL_RUN = "io.orch.run"
LABEL_JOB = "io.orch.job"

_local = threading.local()


def client() -> docker.DockerClient:
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


def engine_version() -> dict[str, Any]:
    info: dict[str, Any] = client().version()
    return info


# --- images -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    ref: str
    id: str
    architecture: str  # OCI name: amd64, arm64, 386, ppc64le, s390x, arm
    variant: str
    labels: Mapping[str, str]
    env: Mapping[str, str]
    repo_digests: tuple[str, ...]


def inspect_image(ref: str) -> ImageInfo | None:
    try:
        img = client().images.get(ref)
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
        client().images.pull(ref, platform=platform)
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
    api = client().api
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


def remove_image(ref: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client().images.remove(ref, force=True)


def list_images(label: str) -> list[ImageInfo]:
    out = []
    for img in client().images.list(filters={"label": label}):
        for tag in img.tags:
            info = inspect_image(tag)
            if info:
                out.append(info)
    return out


# --- containers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    seconds: float


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
) -> Container:
    """A started, idle container (PID 1 sleeps); work is done through `exec_stream`."""
    all_labels = {LABEL: "1", **(labels or {})}
    binds = {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in mounts}
    try:
        container = client().containers.create(
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
        container.start()
    except docker.errors.ImageNotFound as exc:
        raise EnvironmentProblem(f"image {image} is not present: {exc.explanation}") from exc
    except docker.errors.APIError as exc:
        raise EnvironmentProblem(f"cannot start a container of {image}: {exc.explanation}") from exc
    return container


def exec_stream(
    container: Container,
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
    api = client().api
    start = time.monotonic()
    try:
        exec_id = api.exec_create(
            container.id, list(cmd), environment=dict(env or {}), workdir=workdir, user=user
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


def container_running(container: Container) -> bool:
    try:
        container.reload()
    except docker.errors.NotFound:
        return False
    return bool(container.status == "running")


def put_tree(container: Container, source: Path, target_dir: str, arcname: str = ".") -> None:
    """Copy a host directory (or file) into the container at target_dir (which must exist)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(source), arcname=arcname)
    put_tar(container, buf.getvalue(), target_dir)


def put_tar(container: Container, data: bytes | Iterator[bytes], target_dir: str) -> None:
    ok = container.put_archive(target_dir, data)
    if not ok:
        raise OrchError(f"copying files into container {container.short_id}:{target_dir} failed")


def get_tar(container: Container, path: str) -> bytes:
    """The engine's tar of `path` (its top entry is the basename of path)."""
    try:
        stream, _stat = container.get_archive(path)
    except docker.errors.NotFound as exc:
        raise OrchError(f"{path} does not exist in container {container.short_id}") from exc
    return b"".join(stream)


def copy_out(container: Container, path: str, dest: Path, limit: int) -> None:
    """Stream the engine's tar of ``path`` to the file ``dest``, at most ``limit`` bytes
    (a clear error beyond); ``dest`` is removed when the copy fails."""
    try:
        stream, _stat = container.get_archive(path)
        with dest.open("wb") as out:
            copy_bounded(iter(stream), out, limit, f"{path} in container {container.short_id}")
    except docker.errors.NotFound as exc:
        dest.unlink(missing_ok=True)
        raise OrchError(f"{path} does not exist in container {container.short_id}") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def remove_container(container: Container) -> None:
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise


def remove_containers(labels: Mapping[str, str], keep: set[str] | None = None) -> int:
    """Remove every container (running or not) carrying all the given labels, except
    those named in `keep`."""
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    count = 0
    for c in client().containers.list(all=True, filters=filters):
        if keep and c.name in keep:
            continue
        remove_container(c)
        count += 1
    return count


def list_containers(labels: Mapping[str, str]) -> list[Container]:
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    return list(client().containers.list(all=True, filters=filters))


def kill_container(container_id: str) -> None:
    with contextlib.suppress(docker.errors.APIError):
        client().containers.get(container_id).kill()


def image_platform_string(info: ImageInfo) -> str:
    return f"linux/{info.architecture}" + (f"/{info.variant}" if info.variant else "")


def dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
