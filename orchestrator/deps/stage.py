"""The dependencies stage: every static dependency built once per (image, architecture)
in its own fresh container, cached as its own artifact by a content key, and assembled
into the prefix (/opt/orch/deps) that every job of the group receives.

Independent dependencies build in parallel; a dependency starts when its requirements
are ready. A failure blocks only the jobs (and dependencies) that need it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import archs
from orchestrator.container import engine
from orchestrator.container.session import Cancelled, Session
from orchestrator.deps import registry
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
from orchestrator.recipe.model import DependencySpec
from orchestrator.report.joblog import JobLog
from orchestrator.report.record import DepResult
from orchestrator.util import archive, paths

if TYPE_CHECKING:
    from orchestrator.pipeline.run import RunState

PREFIX = DEP_PREFIX
SOURCE_MIRROR_ENV = "ORCH_SOURCE_MIRROR"
WORK = DEP_WORK


class DepFailed(OrchError):
    pass


@dataclass(frozen=True)
class GroupContext:
    group: str
    image: str
    image_id: str
    arch: str


def build_dependencies(state: RunState) -> None:
    recipe = state.recipe
    specs = {d.name: d for d in recipe.dependencies}
    order = topological_order({d.name: d.requires for d in recipe.dependencies})
    cache = DepCache(paths.cache_dir())
    sources_lock = threading.Lock()
    groups = [
        GroupContext(g, jobs[0].image, state.image_ids[jobs[0].image], jobs[0].arch)
        for g, jobs in state.plan.groups()
    ]
    for ctx in groups:
        for name in order:
            d = specs[name]
            state.view.add(_task(ctx, name), "dep", f"{d.name} {d.version} ({ctx.arch})")
    with ThreadPoolExecutor(max_workers=max(1, state.opts.jobs), thread_name_prefix="dep") as pool:
        for ctx in groups:
            keys = _keys(ctx, order, specs, state)
            futures: dict[str, Future[Path]] = {}
            for name in order:
                reqs = [futures[r] for r in specs[name].requires]
                futures[name] = pool.submit(
                    _one, state, ctx, specs[name], keys, reqs, cache, sources_lock
                )
            _collect(state, ctx, order, specs, keys, futures)


def _task(ctx: GroupContext, name: str) -> str:
    return f"dep:{ctx.group}:{name}"


def _keys(
    ctx: GroupContext, order: Sequence[str], specs: dict[str, DependencySpec], state: RunState
) -> dict[str, str]:
    keys: dict[str, str] = {}
    for name in order:
        keys[name] = dependency_key(
            specs[name],
            dep_keys={r: keys[r] for r in specs[name].requires},
            image_id=ctx.image_id,
            arch=ctx.arch,
            toolchain=_toolchain(state, ctx),
            recipe_dir=state.recipe.path.parent,
        )
    return keys


def _accel(state: RunState, ctx: GroupContext) -> Accel | None:
    plan = state.accel.get(ctx.image)
    return plan if isinstance(plan, Accel) else None


def _toolchain(state: RunState, ctx: GroupContext) -> str:
    """The image pins the compiler; its id covers it, plus the cross root when accelerated."""
    accel = _accel(state, ctx)
    return f"{ctx.image_id}+{accel.cache_tag}" if accel else ctx.image_id


def _one(
    state: RunState,
    ctx: GroupContext,
    dep: DependencySpec,
    keys: dict[str, str],
    requirements: list[Future[Path]],
    cache: DepCache,
    sources_lock: threading.Lock,
) -> Path:
    """The verified artifact of one dependency: from the cache, or built now."""
    task = _task(ctx, dep.name)
    key = keys[dep.name]
    result = DepResult(dep.name, dep.version, ctx.group, ctx.arch, key, "blocked")
    state.report.deps.append(result)
    try:
        req_artifacts = [f.result() for f in requirements]
    except (DepFailed, Cancelled) as exc:
        state.view.finish(task, "blocked", f"blocked by {exc}")
        raise DepFailed(f"{dep.name} needs {exc}") from None
    t0 = time.monotonic()
    log = JobLog(state.opts.logs / "deps" / f"{ctx.arch}-{dep.name}-{key[:12]}.log")
    result.log = str(log.path)
    try:
        with cache.lock(key):
            hit = cache.lookup_or_miss(key, log.line)
            if hit is not None:
                result.status = "cached"
                state.view.note(task, "cache hit")
                state.view.finish(task, "cached", "cache hit")
                log.line(f"[orch] cache hit {key}")
                return hit
            pulled = registry.pull_or_miss(cache, key, state.recipe.name, log.line)
            if pulled is not None:
                result.status = "cached"
                state.view.note(task, "registry hit")
                state.view.finish(task, "cached", "registry hit")
                return pulled
            state.view.note(task, "cache miss")
            state.view.stage(task, "fetch")
            with sources_lock:
                src = fetch_source(
                    dep.source,
                    mirrors=[*state.recipe.mirrors, *env_mirrors()],
                    store=paths.source_store(),
                    log=log.line,
                    name=dep.name,
                )
            artifact = _build(state, ctx, dep, src, req_artifacts, log, task)
            seconds = time.monotonic() - t0
            stored = cache.store_or_keep(
                key,
                artifact,
                {
                    "name": dep.name,
                    "version": dep.version,
                    "arch": ctx.arch,
                    "image": ctx.image,
                    "build_seconds": round(seconds, 1),
                },
                log.line,
            )
            registry.push_or_warn(cache, key, state.recipe.name, log.line)
            result.status = "built"
            state.view.finish(task, "ok", f"built in {seconds:.0f}s")
            return stored
    except Cancelled:
        result.status = "cancelled"
        state.view.finish(task, "cancelled")
        raise
    except (OrchError, OSError) as exc:
        result.status = "failed"
        result.error = str(exc)
        state.view.finish(task, "failed", str(exc).splitlines()[0])
        tail = "\n    ".join(log.tail(20))
        state.view.print(
            f"dependency {dep.name} ({ctx.arch}) failed: {exc}\n  log: {log.path}\n    {tail}"
        )
        raise DepFailed(dep.name) from None
    finally:
        result.seconds = time.monotonic() - t0
        log.close()


def env_mirrors() -> list[dict[str, str]]:
    """Mirrors given at run time (ORCH_SOURCE_MIRROR: comma-separated directories or URL
    templates), for air-gapped machines, without editing recipes."""
    items = [i.strip() for i in os.environ.get(SOURCE_MIRROR_ENV, "").split(",") if i.strip()]
    return [{"template": i} if "://" in i else {"directory": i} for i in items]


def _build(
    state: RunState,
    ctx: GroupContext,
    dep: DependencySpec,
    source: Path,
    req_artifacts: list[Path],
    log: JobLog,
    task: str,
) -> Path:
    """Build in a fresh container; the artifact holds only the files this dependency
    installed (its requirements' files are present during the build, not in its tar)."""
    session = Session(
        ctx.image,
        platform=archs.get(ctx.arch).platform,
        labels=state.labels | {engine.LABEL_JOB: f"dep-{dep.name}"},
        host=state.host,
        log=log,
        cancel=state.cancel,
        accel=_accel(state, ctx),
        personality=archs.personality(ctx.arch),
        network_mode=None if dep.network else "none",  # hermetic unless the recipe opts in
    )
    with session:
        session.run(
            "deps", ["mkdir", "-p", f"{WORK}/src", f"{WORK}/build", f"{WORK}/patches", PREFIX]
        )
        session.put(source, WORK, arcname=source.name)
        for patch in dep.source.patches:
            session.put(patch, f"{WORK}/patches", arcname=patch.name)
        if req_artifacts:
            session.put_tar(prefix_tar(req_artifacts, arcroot=""), PREFIX)
        state.view.stage(task, "unpack")
        session.run("unpack", unpack_script(dep, source.name, WORK, PREFIX))
        state.view.stage(task, "build")
        script = build_script(
            dep,
            src_dir=f"{WORK}/src",
            build_dir=f"{WORK}/build",
            prefix=PREFIX,
            jobs=max(1, state.opts.jobs),
        )
        session.run("build", script, workdir=f"{WORK}/src")
        state.view.stage(task, "package")
        session.run("package", package_script(WORK, PREFIX))
        return copy_out_artifact(session, f"{WORK}/artifact.tar.gz", dep.name)


def prefix_tar(artifacts: Sequence[Path], arcroot: str = "deps") -> bytes:
    """Merge artifacts (tar.gz relative to the prefix) into one tar rooted at arcroot."""
    return archive.merge(artifacts, arcroot)


def _collect(
    state: RunState,
    ctx: GroupContext,
    order: Sequence[str],
    specs: dict[str, DependencySpec],
    keys: dict[str, str],
    futures: dict[str, Future[Path]],
) -> None:
    """The group's prefix tar and build flags, or None when a dependency failed."""
    artifacts: list[Path] = []
    failed: list[str] = []
    for name in order:
        try:
            artifacts.append(futures[name].result())
        except (DepFailed, Cancelled):
            failed.append(name)
    if failed:
        state.dep_tars[ctx.group] = None
        state.dep_failures[ctx.group] = failed
        return
    state.dep_tars[ctx.group] = prefix_tar(artifacts)
    state.dep_env[ctx.group] = flags_for_project(PREFIX)
