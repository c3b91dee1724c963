"""The dependencies stage: every static dependency built once per (image, architecture)
in its own fresh container, cached as its own artifact by a content key, and assembled
into the prefix (/opt/orch/deps) that every job of the group receives.

Independent dependencies build in parallel; a dependency starts when its requirements
are ready. A failure blocks only the jobs (and dependencies) that need it. The stage is
a function of its inputs (`DepsInputs`, one `DepGroup` per image/architecture) and
returns a `GroupDeps` per group.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import archs, options
from orchestrator.container.factory import ContainerFactory
from orchestrator.container.session import Cancelled, Session, wait_removals
from orchestrator.deps import glibcpin, registry
from orchestrator.deps.artifact import copy_out_artifact
from orchestrator.deps.buildsys import (
    DEP_PREFIX,
    DEP_WORK,
    build_script,
    flags_for_project,
    package_script,
    unpack_script,
)
from orchestrator.deps.cache import DepCache, dependency_key
from orchestrator.deps.fetch import fetch_source
from orchestrator.emulation.accel import Accel
from orchestrator.errors import OrchError
from orchestrator.recipe.graph import topological_order
from orchestrator.recipe.model import DependencySpec, Recipe
from orchestrator.report.cause import cause_or_error
from orchestrator.report.joblog import JobLog
from orchestrator.report.progress import ProgressView
from orchestrator.report.record import DepResult
from orchestrator.util import archive, paths
from orchestrator.util.futures import wait_responsively

PREFIX = DEP_PREFIX
SOURCE_MIRROR_ENV = options.SOURCE_MIRROR
WORK = DEP_WORK


class DepFailed(OrchError):
    pass


@dataclass(frozen=True)
class DepGroup:
    """One image/architecture whose jobs share their dependency builds."""

    group: str
    image: str
    image_id: str
    arch: str
    accel: Accel | None = None  # native cross compiler for an emulated image
    factory: ContainerFactory | None = None  # the routed engine's (None: the run's own)
    glibc_ceiling: str = ""  # the policy's glibc when the image's is newer (glibcpin)

    @property
    def toolchain(self) -> str:
        """The image pins the compiler; its id covers it, plus the cross root when
        accelerated, plus the glibc pin (it changes what the objects reference)."""
        tool = f"{self.image_id}+{self.accel.cache_tag}" if self.accel else self.image_id
        if not self.glibc_ceiling:
            return tool
        # the pin's script too: a changed list of functions must rebuild what it bound
        pin = hashlib.sha256(glibcpin.script(self.glibc_ceiling).encode()).hexdigest()[:12]
        return f"{tool}+glibc<={self.glibc_ceiling}:{pin}"


@dataclass(frozen=True)
class DepsInputs:
    recipe: Recipe
    groups: tuple[DepGroup, ...]
    factory: ContainerFactory
    view: ProgressView
    logs: Path
    jobs: int
    settings: options.EnvSettings = field(default_factory=options.EnvSettings)
    on_result: Callable[[DepResult], None] = lambda _r: None  # as each is known (reports)


@dataclass(frozen=True)
class GroupDeps:
    """What the jobs of a group get: the prefix tar and build flags, or the failures."""

    prefix_tar: bytes | None  # None: a dependency failed
    build_env: Mapping[str, str]
    failures: tuple[str, ...]
    results: tuple[DepResult, ...]
    artifacts: tuple[tuple[str, Path], ...] = ()  # (dependency, its artifact): audit facts
    blocked: tuple[str, ...] = ()  # not built because a requirement failed

    @property
    def ok(self) -> bool:
        return self.prefix_tar is not None

    def why_blocked(self) -> str:
        """What a job of the group says: the dependency that failed, then what it blocked."""
        text = f"dependency {', '.join(self.failures)} failed to build"
        return text + (f" (blocking {', '.join(self.blocked)})" if self.blocked else "")


@dataclass
class _Shared:
    """What the dependency threads of one stage share."""

    inputs: DepsInputs
    cache: DepCache
    jobs: int  # each build's -j (build_jobs)
    sources_lock: threading.Lock = field(default_factory=threading.Lock)

    results: list[DepResult] = field(default_factory=list)

    def record(self, result: DepResult) -> None:
        with self.sources_lock:
            self.results.append(result)
        self.inputs.on_result(result)

    def results_of(self, group: str) -> tuple[DepResult, ...]:
        with self.sources_lock:
            return tuple(r for r in self.results if r.group == group)


def build_dependencies(inputs: DepsInputs) -> dict[str, GroupDeps]:
    """Every group's dependencies; cancelling `inputs.factory.cancel` stops the queue."""
    with DepsScheduler(inputs) as scheduler:
        futures = {ctx.group: scheduler.start(ctx) for ctx in inputs.groups}
        wait_responsively(list(futures.values()))
        wait_removals()  # the build containers removed in the background
        return {group: f.result() for group, f in futures.items()}


class DepsScheduler:
    """Dependency builds of every group in one pool of `inputs.jobs` workers: a group is
    started when its image is ready (`start`), each dependency is queued only once its
    requirements are done (no worker sits waiting), and each build's compiler gets every
    core (`build_jobs`)."""

    def __init__(self, inputs: DepsInputs) -> None:
        recipe = inputs.recipe
        self.specs = {d.name: d for d in recipe.dependencies}
        self.order = topological_order({d.name: d.requires for d in recipe.dependencies})
        self.shared = _Shared(inputs, DepCache(paths.cache_dir()), jobs=build_jobs(inputs.jobs))
        self.pool = ThreadPoolExecutor(max_workers=max(1, inputs.jobs), thread_name_prefix="dep")

    def __enter__(self) -> DepsScheduler:
        return self

    def __exit__(self, *_exc: object) -> None:
        # Interrupted: queued builds never start, running ones see the cancel flag.
        self.pool.shutdown(wait=False, cancel_futures=True)

    def start(self, ctx: DepGroup) -> Future[GroupDeps]:
        """The group's prefix, once all its dependencies are built (or one failed)."""
        done: Future[GroupDeps] = Future()
        if not self.order:
            done.set_result(GroupDeps(b"", {}, (), ()))
            return done
        for name in self.order:
            d = self.specs[name]
            self.shared.inputs.view.add(
                _task(ctx, name), "dep", f"{d.name} {d.version} ({ctx.arch})"
            )
        futures = _submit(self.pool, self.shared, ctx, self.order, self.specs)
        _when_all(
            list(futures.values()),
            lambda: done.set_result(
                _collect(self.order, futures, self.shared.results_of(ctx.group))
            ),
        )
        return done


def build_jobs(total: int) -> int:
    """The -j of a dependency build: every core, whatever else runs. A -j is fixed when
    make starts and cannot grow, so a split share (-j1 each for two builds on 2 cores)
    leaves a core idle while the other build configures, links or has finished; at most
    `total` builds run at once (the pool), and the kernel shares the cores among their
    compilers instead."""
    return max(1, total)


def _when_all(futures: Sequence[Future[Any]], then: Callable[[], None]) -> None:
    """Call `then` (on the thread that finishes the last) when every future is done."""
    if not futures:
        then()
        return
    left = [len(futures)]
    lock = threading.Lock()

    def one_done(_f: Future[Any]) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            then()

    for f in futures:
        f.add_done_callback(one_done)


def _submit(
    pool: ThreadPoolExecutor,
    shared: _Shared,
    ctx: DepGroup,
    order: Sequence[str],
    specs: dict[str, DependencySpec],
) -> dict[str, Future[tuple[Path, DepResult]]]:
    """Each dependency queued when its requirements are done, in DAG order."""
    keys = _keys(ctx, order, specs, shared.inputs.recipe)
    futures: dict[str, Future[tuple[Path, DepResult]]] = {}
    for name in order:
        reqs = [futures[r] for r in specs[name].requires]
        futures[name] = _after(pool, reqs, _one, shared, ctx, specs[name], keys[name], reqs)
    return futures


def _after(
    pool: ThreadPoolExecutor,
    reqs: list[Future[tuple[Path, DepResult]]],
    fn: Callable[..., tuple[Path, DepResult]],
    *args: Any,
) -> Future[tuple[Path, DepResult]]:
    out: Future[tuple[Path, DepResult]] = Future()

    def submit() -> None:
        try:
            inner = pool.submit(fn, *args)
        except RuntimeError:  # the pool is shut down: interrupted
            out.set_exception(Cancelled("cancelled"))
            return
        inner.add_done_callback(lambda f: _copy(f, out))

    _when_all(reqs, submit)
    return out


def _copy(src: Future[tuple[Path, DepResult]], dst: Future[tuple[Path, DepResult]]) -> None:
    if src.cancelled():
        dst.set_exception(Cancelled("cancelled"))
    elif src.exception() is not None:
        dst.set_exception(src.exception())
    else:
        dst.set_result(src.result())


def dependency_keys(
    recipe: Recipe, toolchain_id: str, arch: str, glibc_ceiling: str = ""
) -> dict[str, str]:
    """Every dependency's cache key for a native group whose toolchain image has this id
    (what `orch plan --deps` looks up)."""
    specs = {d.name: d for d in recipe.dependencies}
    order = topological_order({d.name: d.requires for d in recipe.dependencies})
    ctx = DepGroup("", "", toolchain_id, arch, glibc_ceiling=glibc_ceiling)
    return _keys(ctx, order, specs, recipe)


def _task(ctx: DepGroup, name: str) -> str:
    return f"dep:{ctx.group}:{name}"


def _keys(
    ctx: DepGroup, order: Sequence[str], specs: dict[str, DependencySpec], recipe: Recipe
) -> dict[str, str]:
    keys: dict[str, str] = {}
    for name in order:
        keys[name] = dependency_key(
            specs[name],
            dep_keys={r: keys[r] for r in specs[name].requires},
            image_id=ctx.image_id,
            arch=ctx.arch,
            toolchain=ctx.toolchain,
            recipe_dir=recipe.path.parent,
        )
    return keys


def _one(
    shared: _Shared,
    ctx: DepGroup,
    dep: DependencySpec,
    key: str,
    requirements: list[Future[tuple[Path, DepResult]]],
) -> tuple[Path, DepResult]:
    """The verified artifact of one dependency: from the cache, or built now."""
    inputs, view, task = shared.inputs, shared.inputs.view, _task(ctx, dep.name)
    result = DepResult(dep.name, dep.version, ctx.group, ctx.arch, key, "blocked")
    shared.record(result)
    try:
        req_artifacts = [f.result()[0] for f in requirements]
    except (DepFailed, Cancelled) as exc:
        view.finish(task, "blocked", f"blocked by {exc}")
        raise DepFailed(f"{dep.name} needs {exc}") from None
    t0 = time.monotonic()
    log = JobLog(inputs.logs / "deps" / f"{ctx.arch}-{dep.name}-{key[:12]}.log")
    result.log = str(log.path)
    try:
        if inputs.factory.cancel.is_set():
            raise Cancelled("cancelled")
        with shared.cache.lock(key):
            artifact = _cached(shared, key, task, log, result)
            if artifact is None:
                artifact = _build_and_store(shared, ctx, dep, key, req_artifacts, log, task)
                result.status = "built"
            return artifact, result
    except Cancelled:
        result.status = "cancelled"
        view.finish(task, "cancelled")
        raise
    except (OrchError, OSError) as exc:
        result.status = "failed"
        result.error = str(exc)
        result.cause = cause_or_error(log.tail(400), str(exc))
        view.finish(task, "failed", result.cause or str(exc).splitlines()[0])
        tail = "\n    ".join(log.tail(20))
        view.print(
            f"dependency {dep.name} ({ctx.arch}) failed: {result.cause}\n  {exc}\n"
            f"  log: {log.path}\n    {tail}"
        )
        raise DepFailed(dep.name) from None
    finally:
        result.seconds = time.monotonic() - t0
        log.close()


def _cached(shared: _Shared, key: str, task: str, log: JobLog, result: DepResult) -> Path | None:
    view = shared.inputs.view
    hit = shared.cache.lookup_or_miss(key, log.line)
    if hit is not None:
        log.line(f"[orch] cache hit {key}")
        where = "cache hit"
    else:
        hit = registry.pull_or_miss(shared.cache, key, shared.inputs.recipe.name, log.line)
        where = "registry hit"
    if hit is None:
        view.note(task, "cache miss")
        return None
    result.status = "cached"
    view.note(task, where)
    view.finish(task, "cached", where)
    return hit


def _build_and_store(
    shared: _Shared,
    ctx: DepGroup,
    dep: DependencySpec,
    key: str,
    req_artifacts: list[Path],
    log: JobLog,
    task: str,
) -> Path:
    inputs, t0 = shared.inputs, time.monotonic()
    inputs.view.stage(task, "fetch")
    with shared.sources_lock:
        src = fetch_source(
            dep.source,
            mirrors=[*inputs.recipe.mirrors, *env_mirrors(inputs.settings)],
            store=paths.source_store(),
            log=log.line,
            name=dep.name,
        )
    artifact = _build(inputs, ctx, dep, src, req_artifacts, log, task, shared.jobs)
    seconds = time.monotonic() - t0
    meta = {
        "name": dep.name,
        "version": dep.version,
        "arch": ctx.arch,
        "image": ctx.image,
        "build_seconds": round(seconds, 1),
    }
    stored = shared.cache.store_or_keep(key, artifact, meta, log.line)
    registry.push_or_warn(shared.cache, key, inputs.recipe.name, log.line)
    inputs.view.finish(task, "ok", f"built in {seconds:.0f}s")
    return stored


def env_mirrors(settings: options.EnvSettings | None = None) -> list[dict[str, str]]:
    """Mirrors given at run time (ORCH_SOURCE_MIRROR: comma-separated directories or URL
    templates), for air-gapped machines, without editing recipes."""
    items = (settings or options.env()).source_mirrors
    return [{"template": i} if "://" in i else {"directory": i} for i in items]


def _build(
    inputs: DepsInputs,
    ctx: DepGroup,
    dep: DependencySpec,
    source: Path,
    req_artifacts: list[Path],
    log: JobLog,
    task: str,
    jobs: int,
) -> Path:
    """Build in a fresh container; the artifact holds only the files this dependency
    installed (its requirements' files are present during the build, not in its tar)."""
    session = (ctx.factory or inputs.factory).session(
        ctx.image,
        platform=archs.get(ctx.arch).platform,
        job=f"dep-{dep.name}",
        log=log,
        mounts=tuple(ctx.accel.mounts) if ctx.accel else (),
        overlay=ctx.accel.overlay if ctx.accel else None,
        personality=archs.personality(ctx.arch),
        describe=ctx.accel.describe() if ctx.accel else "",
        network_mode=None if dep.network else "none",  # hermetic unless the recipe opts in
        remove_later=True,  # the next step need not wait for the engine
    )
    with session:
        _copy_in(session, dep, source, req_artifacts)
        inputs.view.stage(task, "unpack")
        session.run("unpack", unpack_script(dep, source.name, WORK, PREFIX))
        inputs.view.stage(task, f"build -j{jobs}")
        log.line(f"[orch] -j{jobs}: the builds running now share the {inputs.jobs} job(s)")
        if ctx.glibc_ceiling:
            session.run("glibc pin", glibcpin.script(ctx.glibc_ceiling))
        script = build_script(
            dep,
            src_dir=f"{WORK}/src",
            build_dir=f"{WORK}/build",
            prefix=PREFIX,
            jobs=jobs,
            extra_cflags=glibcpin.FLAG if ctx.glibc_ceiling else "",
        )
        session.run("build", script, workdir=f"{WORK}/src")
        inputs.view.stage(task, "package")
        session.run("package", package_script(WORK, PREFIX))
        return copy_out_artifact(session, f"{WORK}/artifact.tar.gz", dep.name)


def _copy_in(session: Session, dep: DependencySpec, source: Path, reqs: list[Path]) -> None:
    session.run("deps", ["mkdir", "-p", f"{WORK}/src", f"{WORK}/build", f"{WORK}/patches", PREFIX])
    session.put(source, WORK, arcname=source.name)
    for patch in dep.source.patches:
        session.put(patch, f"{WORK}/patches", arcname=patch.name)
    if reqs:
        session.put_tar(prefix_tar(reqs, arcroot=""), PREFIX)


def prefix_tar(artifacts: Sequence[Path], arcroot: str = "deps") -> bytes:
    """Merge artifacts (tar.gz relative to the prefix) into one tar rooted at arcroot."""
    return archive.merge(artifacts, arcroot)


def _collect(
    order: Sequence[str],
    futures: dict[str, Future[tuple[Path, DepResult]]],
    results: tuple[DepResult, ...],
) -> GroupDeps:
    """The group's prefix tar and build flags, or its failures."""
    artifacts: list[Path] = []
    failed: list[str] = []
    for name in order:
        try:
            artifacts.append(futures[name].result()[0])
        except (DepFailed, Cancelled):
            failed.append(name)
    if failed:
        # The ones that failed themselves first: a job names them, not what they blocked.
        own = {r.name for r in results if r.status in ("failed", "cancelled")}
        first = tuple(n for n in failed if n in own) or tuple(failed)
        blocked = tuple(n for n in failed if n not in first)
        return GroupDeps(None, {}, first, results, blocked=blocked)
    named = tuple(zip(order, artifacts, strict=True))
    return GroupDeps(prefix_tar(artifacts), flags_for_project(PREFIX), (), results, named)
