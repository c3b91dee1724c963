"""One job, as its list of steps: copy in, build, repair, copy out (in one fresh
container), then audit, verify (in clean containers) and land. `stage(name)` does the
bookkeeping of each step (progress view, log, the failed stage); the result is a typed
`JobOutcome`."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from orchestrator import archs, options
from orchestrator.container.factory import ContainerFactory
from orchestrator.container.session import Cancelled, Session, StageFailed
from orchestrator.container.types import Mount
from orchestrator.deps import glibcpin
from orchestrator.deps.stage import GroupDeps
from orchestrator.emulation.accel import Accel
from orchestrator.emulation.ccache_kit import ready_kit
from orchestrator.emulation.repair_kit import PREFIX as REPAIR_PREFIX
from orchestrator.emulation.repair_kit import RepairKit
from orchestrator.emulation.repair_kit import ready_kit as ready_repair_kit
from orchestrator.errors import OrchError
from orchestrator.pipeline import checks, nativeuv, repair
from orchestrator.pipeline.audit import audit_errors, audit_job_wheel
from orchestrator.pipeline.build import build_wheel, copy_project, job_env, merge_env
from orchestrator.pipeline.buildenv import BUILD_ENV_DIR, TOOLS, build_key
from orchestrator.pipeline.compilecache import CompileCache, compile_cache_for, read_stats
from orchestrator.pipeline.land import copy_out_wheels, land_once, set_aside
from orchestrator.pipeline.repair import REPAIRED, repair_wheel
from orchestrator.pipeline.verify import (
    VerifyOutcome,
    installed_sets,
    present_ids,
    verify_refs,
    verify_wheel,
)
from orchestrator.pipeline.wheelcache import WheelCache
from orchestrator.plan.jobs import Job
from orchestrator.recipe.model import Recipe
from orchestrator.report.cause import cause_or_error
from orchestrator.report.joblog import JobLog
from orchestrator.report.progress import ProgressView
from orchestrator.report.record import WheelInfo


class JobStage(str, Enum):
    """Where a job can fail (the report's `failed_stage`)."""

    START = "start"
    DEPS = "deps"
    COPY_IN = "copy in"
    PREPARE = "prepare"
    BEFORE_BUILD = "before-build"
    BUILD = "build"
    REPAIR = "repair"
    COPY_OUT = "copy out"
    AUDIT = "audit"
    VERIFY = "verify"
    LAND = "land"


JobStatus = Literal["ok", "failed", "blocked", "cancelled", "interrupted"]


@dataclass(frozen=True)
class JobOutcome:
    status: JobStatus
    failed_stage: JobStage | None = None
    error: str | None = None
    wheel: WheelInfo | None = None
    audit: Mapping[str, Any] | None = None
    verify: tuple[Mapping[str, Any], ...] = ()
    kept_container: str | None = None
    seconds: float = 0.0
    stages: Mapping[str, float] = field(default_factory=dict)
    log: str | None = None
    log_tail: tuple[str, ...] = ()
    cause: str | None = None  # the first error line of the failing step, else the error
    wheel_cache: Mapping[str, str] = field(default_factory=dict)  # build/verify -> hit | miss
    compile_cache: Mapping[str, int] = field(default_factory=dict)  # hits/misses/uncacheable
    checks: Mapping[str, str] = field(default_factory=dict)  # status: run | reused, key, ...


@dataclass(frozen=True)
class JobInputs:
    """What every job of a run gets."""

    recipe: Recipe
    opts: options.BuildOptions
    factory: ContainerFactory
    view: ProgressView
    project: bytes  # the project as a tar (build.project_tar)
    image_env: Mapping[str, Mapping[str, str]]  # image -> its environment
    accel: Mapping[str, Accel]  # emulated image -> native cross compiler
    deps: Mapping[str, GroupDeps]  # group -> its dependency prefix

    @property
    def staging(self) -> Path:
        return self.opts.meta_dir / "staging" / self.factory.run.run_id


class Blocked(OrchError):
    """A job cannot start: something it needs (a dependency) failed."""


class Refused(OrchError):
    """The wheel was built but a check refused it."""

    def __init__(self, stage: JobStage, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass
class _Found:
    """What the steps learn on the way (kept for the outcome, whatever happens)."""

    stage: JobStage = JobStage.START
    started: bool = False
    audit: Mapping[str, Any] | None = None
    verify: tuple[Mapping[str, Any], ...] = ()
    kept_container: str | None = None
    wheel_cache: Mapping[str, str] = field(default_factory=dict)  # build/verify -> hit/miss
    compile_cache: Mapping[str, int] = field(default_factory=dict)
    checks: Mapping[str, str] = field(default_factory=dict)


class _JobRun:
    def __init__(
        self, inputs: JobInputs, job: Job, log: JobLog, after_build: Callable[[], None]
    ) -> None:
        self.inputs, self.job, self.log = inputs, job, log
        self.after_build = after_build
        self.found = _Found()
        self.ccache: CompileCache | None = None
        self.audit_errors: list[str] = []
        self.rkit: RepairKit | None = None  # chosen with the container: it is a mount
        self.digest: str | None = None  # the repaired wheel's content (checks.wheel_digest)
        self.refs: list[str] | None = None  # the verification images, chosen once
        self.env_mount: Mount | None = None  # the kept build environment, read-only

    @contextlib.contextmanager
    def stage(self, name: JobStage) -> Iterator[None]:
        """One step: shown in the view, marked in the log, named if it fails."""
        if self.inputs.factory.cancel.is_set():
            raise Cancelled("cancelled")
        self.found.stage, self.found.started = name, True
        self.inputs.view.stage(self.job.id, name.value)
        self.log.stage(name.value)
        yield

    def steps(self) -> WheelInfo:
        deps = self.dependencies()
        with self.container() as session:
            with self.stage(JobStage.COPY_IN):
                self.copy_in(session, deps)
            with self.stage(JobStage.BUILD):
                self.build(session, deps)
            with self.stage(JobStage.REPAIR):
                repair_wheel(session, self.job, self.inputs.recipe, self.rkit)
            with self.stage(JobStage.COPY_OUT):
                wheel = self.copy_out(session)
        self.after_build()  # the build container is done: its slot may go to another job
        if not self.reuse_checks(wheel):
            self.checks(wheel)
            self.record_checks(wheel)
        with self.stage(JobStage.LAND):
            run_id = self.inputs.factory.run.run_id
            return land_once(wheel, self.inputs.opts.output_dir, run_id=run_id, job=self.job.id)

    def dependencies(self) -> GroupDeps:
        deps = self.inputs.deps.get(self.job.group) or GroupDeps(b"", {}, (), ())
        if not deps.ok:
            why = next((r.error for r in deps.results if r.status == "failed" and r.error), "")
            # an engine that went away says so, with its fix, in the job's own error too
            detail = f": {why}" if why and "fix:" in why else ""
            raise Blocked(deps.why_blocked() + detail)
        return deps

    def build(self, session: Session, deps: GroupDeps) -> None:
        cache = self.wheel_cache()
        source = build_wheel(
            session,
            self.job,
            self.inputs.recipe,
            self.build_env(deps),
            cache,
            offline=self.inputs.opts.offline,
            native=self.native_uv,
            env_mounted=self.env_mount is not None,
            native_fetch=self.native_uv and self.inputs.opts.env.native_fetch,
        )
        self.found.wheel_cache = {**self.found.wheel_cache, "build": source.status}
        if self.ccache is not None:
            stats = read_stats(session)
            session.log.line(stats.line())
            self.found.compile_cache = stats.to_json()

    def wheel_cache(self) -> WheelCache:
        return WheelCache.for_image(self.image_id, self.job.arch)

    @functools.cached_property
    def image_id(self) -> str:
        """The job image's id, asked once (the wheel and compile caches are keyed by it)."""
        info = self.inputs.factory.engine.inspect_image(self.job.image)
        return info.id if info else self.job.image

    def tools_mount(self) -> Mount:
        """The wheel cache's extracted tools (uv), read-only: filled on a miss, visible at
        once through the mount."""
        tools = self.wheel_cache().tools
        tools.mkdir(parents=True, exist_ok=True)
        return Mount(str(tools), TOOLS, read_only=True)

    def kept_env_mount(self) -> Mount | None:
        """The set's kept build environment, mounted read-only where the build expects it,
        when the set is a hit: nothing to copy in, nothing for the engine to delete. Not
        with before-build commands (they ran before the environment existed), nor on a
        routed engine (another machine)."""
        if self.inputs.recipe.before_build or self.inputs.factory.remote:
            return None
        cache, key = self.wheel_cache(), build_key(self.inputs.recipe, self.job)
        if cache.lookup(key) is None:
            return None  # a miss fills the environment in the container
        tree = cache.env_tree(key, PurePosixPath(BUILD_ENV_DIR).name)
        return Mount(str(tree), BUILD_ENV_DIR, read_only=True) if tree else None

    def build_env(self, deps: GroupDeps) -> dict[str, str]:
        image_env = self.inputs.image_env.get(self.job.image, {})
        base = dict(deps.build_env)
        if glibcpin.ceiling(self.job.policy, self.job.image_source):
            base = merge_env(base, {"CFLAGS": glibcpin.FLAG, "CXXFLAGS": glibcpin.FLAG})
        return job_env(self.job, image_env, merge_env(base, self.inputs.recipe.environment))

    @contextlib.contextmanager
    def container(self) -> Iterator[Session]:
        """The job's build container (kept on failure when asked, and noted)."""
        accel = self.inputs.accel.get(self.job.image)
        self.ccache = self.compile_cache(accel)
        self.rkit = self.repair_kit()
        self.env_mount = self.kept_env_mount()
        overlay = accel.overlay if accel else None
        if self.ccache is not None:
            image_path = self.inputs.image_env.get(self.job.image, {}).get("PATH")
            overlay = self.ccache.overlay(accel, image_path or (accel.image_path if accel else ""))
        session = self.inputs.factory.session(
            self.job.image,
            platform=archs.get(self.job.arch).platform,
            job=self.job.id,
            log=self.log,
            keep_on_failure=self.inputs.opts.keep_container,
            mounts=(
                *(accel.mounts if accel else ()),
                self.tools_mount(),
                *((self.env_mount,) if self.env_mount else ()),
                *(self.ccache.mounts() if self.ccache else ()),
                *((nativeuv.mount(),) if self.native_uv else ()),
                *(
                    (Mount(str(self.rkit.path), REPAIR_PREFIX, read_only=True),)
                    if self.rkit
                    else ()
                ),
            ),
            overlay=overlay,
            personality=archs.personality(self.job.arch),
            describe=accel.describe() if accel else "",
            network_mode="none" if self.inputs.opts.offline else None,
            remove_later=True,  # the next step need not wait for the engine
        )
        try:
            with session:
                yield session
        finally:
            if session.kept and session.container is not None:
                self.found.kept_container = session.container.name

    @property
    def native_uv(self) -> bool:
        """The x86_64 uv for an emulated container of this host (not a routed engine's)."""
        return nativeuv.applies(self.job.arch) and not self.inputs.factory.remote

    def compile_cache(self, accel: Accel | None) -> CompileCache | None:
        """ccache for the job's compiler, or None: turned off, or the kit is not built yet
        (it is then built in the background: a first run never waits for it)."""
        if not self.inputs.opts.env.compile_cache or self.inputs.factory.remote:
            return None  # a routed engine: another machine, the kit and the cache are here
        kit = ready_kit(self.log.line)
        if kit is None:
            return None
        image_id = self.image_id
        emulated = not archs.runs_natively(self.job.arch)
        cache = compile_cache_for(kit, self.job.arch, image_id, accel, emulated)
        Path(cache.host_dir).mkdir(parents=True, exist_ok=True)
        self.log.line(f"[ccache] ccache {kit.version}, cache {cache.host_dir}")
        return cache

    def repair_kit(self) -> RepairKit | None:
        """The native auditwheel for an emulated job of a local image, or None: turned off,
        a routed engine (another machine), or not built yet (built in the background; this
        job repairs with the image's emulated auditwheel, as before)."""
        if not repair.applies(self.job) or self.inputs.factory.remote:
            return None
        if not self.inputs.opts.env.native_repair:
            return None
        kit = ready_repair_kit(self.log.line)
        if kit is not None:
            self.log.line(f"[repair] native auditwheel {kit.auditwheel} ({kit.path.name})")
        return kit

    def copy_in(self, session: Session, deps: GroupDeps) -> None:
        prefix = ((deps.prefix_tar, "/opt/orch"),) if deps.prefix_tar else ()
        copy_project(session, self.inputs.recipe, self.inputs.project, prefix)

    def copy_out(self, session: Session) -> Path:
        wheels = copy_out_wheels(session, REPAIRED, self.inputs.staging / self.job.id)
        if len(wheels) != 1:
            raise StageFailed("repair", f"expected one repaired wheel, found {len(wheels)}")
        return wheels[0]

    def reuse_checks(self, wheel: Path) -> bool:
        """Whether this wheel's content passed these very checks before (same recipe
        sections, images, dependencies, orch): then they are not run again."""
        opts = self.inputs.opts
        if not (opts.audit and opts.verify):
            return False
        try:
            self.digest = checks.wheel_digest(wheel)
            self.refs = verify_refs(
                self.inputs.factory, self.inputs.recipe, self.job, wheel, self.log
            )
            if opts.recheck:
                return False
            ids = present_ids(self.inputs.factory, self.refs, self.job.arch)
            if ids is None:  # an image is built or pulled first: it is a new one
                return False
            key = self.checks_key(wheel, list(zip(self.refs, ids, strict=True)))
            record = checks.lookup(key) if key else None
        except Exception as exc:  # a bad zip, an engine error: the checks will say
            self.log.line(f"[checks] not looked up ({type(exc).__name__}: {exc}): they run")
            return False
        if record is None:
            return False
        self.inputs.view.stage(self.job.id, "checks reused")
        self.log.stage("checks reused")
        self.log.line(checks.reused_line(record, checks.records_dir() / f"{record.key}.json"))
        # what was found then, not timed or fetched now
        self.found.audit = {**record.audit, "wheel": str(wheel), "reused": True}
        self.found.verify = tuple(
            {**v, "seconds": 0.0, "wheel_cache": "", "reused": True} for v in record.verify
        )
        self.found.checks = {"status": "reused", "key": record.key, "written": record.when}
        return True

    def checks_key(self, wheel: Path, images: list[tuple[str, str]]) -> checks.ChecksKey | None:
        """None when what verification installs is not in the cache: the checks run."""
        installed = installed_sets(self.inputs.recipe, self.job, wheel, images)
        if installed is None:
            return None
        deps = self.inputs.deps.get(self.job.group)
        linked = dict(deps.artifacts) if deps else {}
        keys = {r.name: r.key for r in deps.results if r.name in linked} if deps else {}
        uv = nativeuv.newest(lambda _line: None) if nativeuv.available() else None
        return checks.checks_key(
            wheel,
            self.inputs.recipe,
            self.job,
            images,
            keys,
            offline=self.inputs.opts.offline,
            digest=self.digest,
            installed=installed,
            uv=uv,
        )

    def record_checks(self, wheel: Path) -> None:
        """The audit and every verification passed (a refusal raised before this): the
        record lets an identical wheel skip them, keyed by the images they ran in."""
        audit = self.found.audit
        if self.digest is None or audit is None:
            return
        if any(f.get("partial") for f in audit.get("findings", ())):
            self.log.line("[checks] not recorded: a tool of the audit gave no answer")
            return
        images = [(str(v.get("image")), str(v.get("image_id") or "")) for v in self.found.verify]
        if not images or not all(i for _r, i in images):
            return
        key = self.checks_key(wheel, images)
        if key is None:
            return
        try:
            checks.store(key, audit, self.found.verify)
        except OSError as exc:  # the cache is an optimisation: the job goes on
            self.log.line(f"[checks] warning: the passed checks were not recorded: {exc}")
            return
        self.found.checks = {"status": "run", "key": key.key}

    def checks(self, wheel: Path) -> None:
        """Audit and verification. With both on, the containers' checks start first and
        the audit (host-side: reading the wheel, auditwheel show) runs meanwhile; an audit
        failure still comes first, once the checks are over (they read the wheel)."""
        opts = self.inputs.opts
        if not opts.verify:
            if opts.audit:
                with self.stage(JobStage.AUDIT):
                    self.audit(wheel)
            return
        if not opts.audit:
            with self.stage(JobStage.VERIFY):
                self.judge(wheel, self.verify(wheel))
            return
        # the checks' own log, appended under the verify header: no line of theirs splices
        # into the audit's
        own = JobLog(self.log.path.with_name(f"{self.log.path.stem}.checks.tmp"))
        try:
            # leaving the pool waits for the checks, whatever happened to the audit
            with ThreadPoolExecutor(1, thread_name_prefix="verify") as pool:
                verified = pool.submit(self.verify, wheel, own)
                with self.stage(JobStage.AUDIT):
                    self.audit(wheel, refuse=False)
                if self.audit_errors:  # refused: what the checks printed meanwhile, then why
                    wait([verified])
                    self.log.take(own)
                    self.refuse_if_audit_failed(wheel)
                with self.stage(JobStage.VERIFY):  # its time: what is left of the checks
                    wait([verified])
                    self.log.take(own)
                    self.judge(wheel, verified.result())
        finally:
            self.log.take(own)  # the audit raised: the checks' lines still reach the job log

    def audit(self, wheel: Path, refuse: bool = True) -> None:
        deps = self.inputs.deps.get(self.job.group)
        linked = dict(deps.artifacts) if deps else {}  # whose symbols are whose: by fact
        result = audit_job_wheel(wheel, self.inputs.recipe, self.log, linked)
        self.found.audit = result.to_json()
        self.audit_errors = audit_errors(result)
        if refuse:
            self.refuse_if_audit_failed(wheel)

    def refuse_if_audit_failed(self, wheel: Path) -> None:
        if self.audit_errors:
            self.refuse(wheel, JobStage.AUDIT, f"audit failed: {', '.join(self.audit_errors)}")

    def verify(self, wheel: Path, log: JobLog | None = None) -> list[VerifyOutcome]:
        outcomes = verify_wheel(
            self.inputs.factory,
            self.inputs.recipe,
            self.job,
            wheel,
            log or self.log,
            offline=self.inputs.opts.offline,
            refs=self.refs,
        )
        statuses = {o.wheel_cache for o in outcomes if o.wheel_cache}
        if statuses:
            self.found.wheel_cache = {
                **self.found.wheel_cache,
                "verify": "/".join(sorted(statuses)),
            }
        self.found.verify = tuple(o.to_json() for o in outcomes)
        return outcomes

    def judge(self, wheel: Path, outcomes: list[VerifyOutcome]) -> None:
        for o in outcomes:
            if o.status == "incompatible":
                why = (
                    f"configuration error: verify image {o.image} cannot run this wheel: {o.detail}"
                )
                self.refuse(wheel, JobStage.VERIFY, why)
            if not o.ok:
                self.refuse(wheel, JobStage.VERIFY, f"verification failed in {o.image}: {o.detail}")

    def refuse(self, wheel: Path, stage: JobStage, why: str) -> None:
        if self.inputs.opts.keep_failed:
            aside = set_aside(wheel, self.inputs.opts.meta_dir / "failed")
            why += f"; wheel kept at {aside}"
        raise Refused(stage, why)


def run_job(
    inputs: JobInputs, job: Job, after_build: Callable[[], None] = lambda: None
) -> JobOutcome:
    """Run one job to its outcome; never raises for the job's own failures. `after_build`
    is called once the wheel is out of the build container (before audit and verify)."""
    log = JobLog(inputs.opts.logs / f"{job.id}.log")
    run = _JobRun(inputs, job, log, after_build)
    t0 = time.monotonic()
    try:
        wheel = run.steps()
        reused = run.found.checks.get("status") == "reused"
        inputs.view.finish(job.id, "ok", wheel.filename + (" (checks reused)" if reused else ""))
        outcome = JobOutcome("ok", wheel=wheel)
    except Exception as exc:  # an engine error or a bug fails this job, the others go on
        outcome = _failure(run, exc)
        inputs.view.finish(job.id, outcome.status, _detail(outcome))
    finally:
        log.close()
        shutil.rmtree(inputs.staging / job.id, ignore_errors=True)
    return _complete(outcome, run, log, time.monotonic() - t0)


def _failure(run: _JobRun, exc: Exception) -> JobOutcome:
    if run.inputs.factory.cancel.is_set():
        return JobOutcome("interrupted" if run.found.started else "cancelled")
    if isinstance(exc, Blocked):
        return JobOutcome("blocked", JobStage.DEPS, str(exc))
    stage = _stage_of(exc, run.found.stage)
    error = str(exc) if isinstance(exc, OrchError) else f"{type(exc).__name__}: {exc}"
    cause = cause_or_error(run.log.tail(400), error)
    return JobOutcome("failed", stage, error, log_tail=tuple(run.log.tail(25)), cause=cause)


def _stage_of(exc: Exception, current: JobStage) -> JobStage:
    if isinstance(exc, Refused):
        return exc.stage
    if isinstance(exc, StageFailed):
        with contextlib.suppress(ValueError):
            return JobStage(exc.stage)
    return current


def _detail(outcome: JobOutcome) -> str:
    if outcome.status == "failed" and outcome.failed_stage:
        return f"{outcome.failed_stage.value}: {outcome.error}"
    return outcome.error or ""


def _complete(outcome: JobOutcome, run: _JobRun, log: JobLog, seconds: float) -> JobOutcome:
    """The step's outcome plus what was learnt on the way, whatever the ending."""
    found = run.found
    return dataclasses.replace(
        outcome,
        audit=found.audit,
        verify=found.verify,
        kept_container=found.kept_container,
        wheel_cache=found.wheel_cache,
        compile_cache=found.compile_cache,
        checks=found.checks,
        seconds=seconds,
        stages=run.inputs.view.stage_times(run.job.id),
        log=str(log.path),
    )
