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
import requests
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
from orchestrator.errors import EngineUnreachable, EnvironmentProblem, OrchError
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


def _client(url: str | None = None) -> docker.DockerClient:
    """A client per thread and engine (the SDK's HTTP session is not meant to be shared
    across threads). `url` None is the local engine (DOCKER_HOST or the default socket)."""
    clients: dict[str, docker.DockerClient] = getattr(_local, "clients", None) or {}
    _local.clients = clients
    cli = clients.get(url or "")
    if cli is None:
        try:
            cli = _connect(url)
            cli.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            if url:
                raise EngineUnreachable(f"cannot reach the Docker engine at {url} ({exc})") from exc
            raise EnvironmentProblem(
                f"cannot reach the Docker engine ({exc}).\n"
                "  Start it (as root: `bash scripts/setup-host.sh`), or set DOCKER_HOST."
            ) from exc
        clients[url or ""] = cli
    return cli


def _connect(url: str | None) -> docker.DockerClient:
    if not url:
        return docker.from_env(timeout=600)
    # ssh:// through the system's ssh client: its config, keys and agent, no paramiko
    return docker.DockerClient(base_url=url, timeout=600, use_ssh_client=url.startswith("ssh://"))


def forget_client(url: str | None) -> None:
    """Drop this thread's client of an engine (it went away: reconnect next time)."""
    clients: dict[str, docker.DockerClient] = getattr(_local, "clients", None) or {}
    clients.pop(url or "", None)


def ping(url: str | None = None) -> None:
    """Raise EnvironmentProblem now if the engine cannot be reached."""
    _client(url)


def engine_arch(url: str | None = None) -> str:
    """The engine's machine as `uname -m` names it (x86_64, aarch64, s390x...)."""
    return str(_client(url).info().get("Architecture", ""))


def transfer_image(ref: str, source: str | None, target: str | None) -> None:
    """`docker save | docker load` between two engines over their APIs, streamed."""
    try:
        chunks = _client(source).api.get_image(ref)  # the tar names ref: its tag survives
        _client(target).images.load(chunks)  # a generator: sent chunked, never held whole
    except docker.errors.ImageNotFound as exc:
        raise EnvironmentProblem(f"image {ref} is not on the local engine: {exc}") from exc
    except docker.errors.APIError as exc:
        raise EnvironmentProblem(f"copying image {ref} to {target} failed: {exc}") from exc


def engine_version() -> dict[str, Any]:
    info: dict[str, Any] = _client().version()
    return info


# --- images -------------------------------------------------------------------------


def inspect_image(ref: str, url: str | None = None) -> ImageInfo | None:
    try:
        img = _client(url).images.get(ref)
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
    cpu_shares: int | None = None,
    cache_from: Sequence[str] = (),
) -> ImageInfo:
    """`docker build` of a context directory, streaming the build output line by line.
    `cpu_shares` weighs its RUN containers against others (1024 is Docker's default);
    `cache_from` limits cached steps to those images' own layers."""
    api = _client().api
    limits = {"cpushares": cpu_shares} if cpu_shares else None
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
        container_limits=limits,
        cache_from=list(cache_from) or None,
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
    url: str | None = None,
    auto_remove: bool = False,
    cpu_shares: int | None = None,
) -> ContainerHandle:
    """A started, idle container (PID 1 sleeps); work is done through `exec_stream`.
    `cpu_shares` weighs it against other containers (None: Docker's default, 1024)."""
    all_labels = {LABEL: "1", **(labels or {})}
    binds = {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in mounts}
    try:
        container = _client(url).containers.create(
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
            auto_remove=auto_remove,
            cpu_shares=cpu_shares,
        )
    except docker.errors.ImageNotFound as exc:
        raise EnvironmentProblem(f"image {image} is not present: {exc.explanation}") from exc
    except docker.errors.APIError as exc:
        raise EnvironmentProblem(f"cannot start a container of {image}: {exc.explanation}") from exc
    handle = ContainerHandle(container.id, container.name)
    try:
        container.start()
    except docker.errors.APIError as exc:
        remove_container(handle, url)  # created but not started: nothing may be left behind
        raise EnvironmentProblem(f"cannot start a container of {image}: {exc.explanation}") from exc
    return handle


def _container(handle: ContainerHandle, url: str | None = None) -> Container:
    return _client(url).containers.get(handle.id)


def exec_stream(
    handle: ContainerHandle,
    cmd: Sequence[str],
    on_output: Callable[[bytes], None],
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
    user: str = "",
    url: str | None = None,
) -> ExecResult:
    """Run a command in a container, streaming stdout+stderr; returns its exit code.

    If the container dies under the command (killed, OOM), the exit code is that of the
    exec as the engine reports it (never 0), and a note is written to the output.
    """
    api = _client(url).api
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


def container_running(handle: ContainerHandle, url: str | None = None) -> bool:
    try:
        return bool(_container(handle, url).status == "running")
    except docker.errors.NotFound:
        return False


def put_tree(handle: ContainerHandle, source: Path, target_dir: str, arcname: str = ".") -> None:
    """Copy a host directory (or file) into the container at target_dir (which must exist)."""
    put_tar(handle, tree_tar(source, arcname), target_dir)


def put_tar(
    handle: ContainerHandle,
    data: bytes | Iterator[bytes],
    target_dir: str,
    url: str | None = None,
) -> None:
    try:
        ok = _container(handle, url).put_archive(target_dir, data)
    except docker.errors.APIError as exc:
        raise OrchError(f"copying files into container {handle.short_id} failed: {exc}") from exc
    if not ok:
        raise OrchError(f"copying files into container {handle.short_id}:{target_dir} failed")


def get_tar(handle: ContainerHandle, path: str, url: str | None = None) -> bytes:
    """The engine's tar of `path` (its top entry is the basename of path)."""
    try:
        stream, _stat = _container(handle, url).get_archive(path)
    except docker.errors.NotFound as exc:
        raise OrchError(f"{path} does not exist in container {handle.short_id}") from exc
    return b"".join(stream)


def copy_out(
    handle: ContainerHandle, path: str, dest: Path, limit: int, url: str | None = None
) -> None:
    """Stream the engine's tar of ``path`` to the file ``dest``, at most ``limit`` bytes
    (a clear error beyond); ``dest`` is removed when the copy fails."""
    try:
        stream, _stat = _container(handle, url).get_archive(path)
        with dest.open("wb") as out:
            copy_bounded(iter(stream), out, limit, f"{path} in container {handle.short_id}")
    except docker.errors.NotFound as exc:
        dest.unlink(missing_ok=True)
        raise OrchError(f"{path} does not exist in container {handle.short_id}") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def remove_container(handle: ContainerHandle, url: str | None = None) -> None:
    try:
        _client(url).api.remove_container(handle.id, force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise


def list_containers(labels: Mapping[str, str], url: str | None = None) -> list[ContainerInfo]:
    """Every container (running or not) carrying all the given labels."""
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    return [
        ContainerInfo(ContainerHandle(c.id, c.name), dict(c.labels), c.status == "running")
        for c in _client(url).containers.list(all=True, filters=filters)
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
    """A real engine, as the pipeline's `Engine` protocol: the local one (`url` None), or
    one reached at `url` (unix://, tcp://, ssh://). A remote engine that cannot be reached
    raises EngineUnreachable with `fix` appended (how to start it, or route around it)."""

    def __init__(self, url: str | None = None, fix: str = "") -> None:
        self.url = url
        self.fix = fix

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except EngineUnreachable as exc:
            raise EngineUnreachable(self._explain(str(exc))) from exc
        except requests.exceptions.RequestException as exc:  # it went away mid-run
            forget_client(self.url)
            where = self.url or "the local engine"
            raise EngineUnreachable(
                self._explain(f"lost the Docker engine {where} ({exc})")
            ) from exc

    def _explain(self, message: str) -> str:
        return f"{message}\n  {self.fix}" if self.fix and self.fix not in message else message

    def create(self, spec: ContainerSpec) -> ContainerHandle:
        with self._reaching():
            return create_container(
                spec.image,
                name=spec.name,
                labels=spec.labels,
                env=spec.env,
                mounts=spec.mounts,
                platform=spec.platform,
                network_mode=spec.network_mode,
                workdir=spec.workdir,
                url=self.url,
                auto_remove=spec.auto_remove,
            )

    def exec(
        self,
        handle: ContainerHandle,
        cmd: Sequence[str],
        on_output: Callable[[bytes], None],
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        with self._reaching():
            return exec_stream(handle, cmd, on_output, env=env, workdir=workdir, url=self.url)

    def running(self, handle: ContainerHandle) -> bool:
        with self._reaching():
            return container_running(handle, self.url)

    def put_tar(self, handle: ContainerHandle, data: bytes, target_dir: str) -> None:
        with self._reaching():
            put_tar(handle, data, target_dir, self.url)

    def get_tar(self, handle: ContainerHandle, path: str) -> bytes:
        with self._reaching():
            return get_tar(handle, path, self.url)

    def copy_out(self, handle: ContainerHandle, path: str, dest: Path, limit: int) -> None:
        with self._reaching():
            copy_out(handle, path, dest, limit, self.url)

    def remove(self, handle: ContainerHandle) -> None:
        with self._reaching():
            remove_container(handle, self.url)

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        with self._reaching():
            return list_containers(labels, self.url)

    def inspect_image(self, ref: str) -> ImageInfo | None:
        with self._reaching():
            return inspect_image(ref, self.url)

    def arch(self) -> str:
        """The engine's machine (`docker info`): it decides native or emulated."""
        with self._reaching():
            return engine_arch(self.url)

    def receive_image(self, ref: str, source: DockerEngine) -> None:
        """Copy an image here from another engine, unless it has it with the same id."""
        have = self.inspect_image(ref)
        want = source.inspect_image(ref)
        if want is None:
            raise EnvironmentProblem(f"image {ref} is not on {source.url or 'the local engine'}")
        if have is not None and have.id == want.id:
            return
        with self._reaching():
            transfer_image(ref, source.url, self.url)
