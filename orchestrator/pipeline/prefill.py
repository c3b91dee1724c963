"""The wheel-cache fill ahead of the job: a cold job's build requirements (the backend,
uv) are fetched from the index and its build environment made while its group's
dependencies build, in a container of its own, so the job itself starts on a hit (the
warm path: the environment restored, the backend's hook called directly).

It needs no dependency: only the job's image, its Python and the project's build-system
table. It holds the set's fill lock, so a job that gets there first fills the set itself
and the prefill then finds it; a prefill that fails only leaves its log and the job fills
the set as before (nothing is stored unless the fill succeeded)."""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator import archs
from orchestrator.container.session import Cancelled
from orchestrator.container.types import Mount
from orchestrator.deps.buildsys import DEP_PREFIX, flags_for_project
from orchestrator.errors import OrchError
from orchestrator.pipeline import nativeuv
from orchestrator.pipeline.build import (
    DIST,
    SRC,
    copy_project,
    job_env,
    keep_env,
    merge_env,
    python_bin,
)
from orchestrator.pipeline.buildenv import TOOLS, NativeFetch, build_key, fill_set
from orchestrator.pipeline.job import JobInputs
from orchestrator.pipeline.wheelcache import WheelCache
from orchestrator.plan.jobs import Job
from orchestrator.report.joblog import JobLog


def applies(inputs: JobInputs, job: Job) -> bool:
    """Jobs with the network and no before-build (whose commands may change what the
    backend asks for), on this host's engine. Emulated ones too: their fill is emulated
    pip and Python (seconds to tens of seconds under QEMU) that the cross-compiled
    dependency builds leave room for."""
    return not inputs.opts.offline and not inputs.recipe.before_build and not inputs.factory.remote


def prefill(inputs: JobInputs, job: Job, image_id: str, image_env: dict[str, str]) -> str:
    """Fill the job's build-requirement set if it is missing; what happened, for the log."""
    cache = WheelCache.for_image(image_id, job.arch)
    key = build_key(inputs.recipe, job)
    if cache.lookup(key) is not None and cache.env_tar(key).is_file():
        return "hit"  # a warm run: no container
    log = JobLog(log_path(inputs, job))
    try:
        with cache.filling(key, inputs.factory.cancel):
            if cache.lookup(key) is not None:  # a job or another run filled it meanwhile
                return "filled meanwhile"
            _fill(inputs, job, cache, key, image_env, log)
            return "filled"
    except Cancelled:
        return "cancelled"
    except (OrchError, OSError) as exc:  # the job fills the set itself, as without this
        log.line(f"[prefill] failed, the job fills the set itself: {exc}")
        return "failed"
    except Exception as exc:  # its future is never read: say it here, then the same way
        log.line(f"[prefill] failed ({type(exc).__name__}), the job fills the set itself: {exc}")
        return "failed"
    finally:
        log.close()


def _fill(
    inputs: JobInputs,
    job: Job,
    cache: WheelCache,
    key: str,
    image_env: dict[str, str],
    log: JobLog,
) -> None:
    cache.tools.mkdir(parents=True, exist_ok=True)
    # emulated: the host fetches and the x86_64 uv installs; the hook alone is emulated
    native = nativeuv.applies(job.arch)
    fetch = NativeFetch.of(inputs.recipe, job) if native and inputs.opts.env.native_fetch else None
    started = time.monotonic()
    session = inputs.factory.session(
        job.image,
        platform=archs.get(job.arch).platform,
        job=f"prefill-{job.id}",
        log=log,
        personality=archs.personality(job.arch),
        mounts=(
            Mount(str(cache.tools), TOOLS, read_only=True),
            *((nativeuv.mount(),) if native else ()),
        ),
        remove_later=True,  # the next step need not wait for the engine
    )
    deps_env = flags_for_project(DEP_PREFIX) if inputs.recipe.dependencies else {}
    env = job_env(job, image_env, merge_env(deps_env, inputs.recipe.environment))
    with session:
        copy_project(session, inputs.recipe, inputs.project)
        source = fill_set(
            session,
            cache,
            key,
            python=python_bin(job),
            src=SRC,
            outdir=DIST,
            env=env,
            mode="prefetch",
            native=fetch,
        )
        log.line(source.line("build requirements (prefill)", cache))
        if cache.lookup(key) is not None:  # stored: its environment with it
            keep_env(session, cache, key)
    log.line(f"[prefill] total {time.monotonic() - started:.1f} s")  # benchmarks/emulation.py


def log_path(inputs: JobInputs, job: Job) -> Path:
    return inputs.opts.logs / f"{job.id}-prefill.log"
