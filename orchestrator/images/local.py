"""`orch images build-local`: manylinux-compatible images built on this host.

For one architecture, Debian suite and set of interpreters there are two images, tagged
by the hash of what goes into them (see `definition.py`):

- ``orch-local/<policy>_<arch>-runtime:<hash12>``: interpreters only, in the manylinux
  layout ``/opt/python/<tag>/bin/python``; for installing and testing wheels.
- ``orch-local/<policy>_<arch>:<hash12>``: the runtime plus compilers, build systems,
  Python headers, ``build`` in every interpreter and auditwheel/patchelf on PATH.

Each is the base image of its variant (Debian's interpreter only) plus, when the plan
needs source-built interpreters, a small derived layer that adds their tarballs
(`interpreters.py`). The base and the interpreters are built in parallel, each only when
missing, with their phases reported as they happen (`progress.py`).

A wheel repaired by auditwheel in these images is manylinux_<glibc> because nothing in them
is newer than the suite's glibc (forky: manylinux_2_39, the newest policy the pinned
auditwheel knows, below its glibc 2.43). Present tags are reused as they are; a changed definition
gives a new tag, so "rebuild when the definition changes" needs no bookkeeping.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from filelock import FileLock

from orchestrator import archs, options
from orchestrator.archs import Arch
from orchestrator.container import engine
from orchestrator.errors import OrchError
from orchestrator.images import definition, interpreters, rootfs
from orchestrator.images.definition import BasePlan, BuilderPlan, ImagePlan, InterpreterPlan
from orchestrator.images.interpreters import Accelerator, Built, Remote
from orchestrator.images.progress import Phases
from orchestrator.util import stoppers

# Debian suite -> (auditwheel policy, glibc). Each must exist in auditwheel's policy list
# (checked by the tests) and have an images/local/<suite>.yaml.
LOCAL_POLICY_BY_SUITE: dict[str, tuple[str, str]] = {
    "bullseye": ("manylinux_2_31", "2.31"),
    "bookworm": ("manylinux_2_36", "2.36"),
    # glibc 2.43 is newer than any policy auditwheel knows (6.8.2: up to manylinux_2_41;
    # 6.4.2, pinned in the images and the repair kit: manylinux_2_39):
    # wheels are repaired to the newest known one, which auditwheel proves from the symbols.
    "forky": ("manylinux_2_39", "2.43"),
}
DEFAULT_SUITE = "bullseye"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Interpreters compiled at once: each runs `make -j$(nproc)`, so more only adds contention.
PARALLEL_COMPILES = 2
# Shared by every image built in this process: a run builds one image per Python at once.
_compile_slots = threading.BoundedSemaphore(PARALLEL_COMPILES)
BUILDER_LABEL = "local-builder"
# CPU weight (Docker's default is 1024) of image work no job of Debian's interpreter waits
# for: the CPython builder and interpreter compiles. On a busy host the base image, the
# dependencies and the first jobs are the critical path; these only fill idle CPU then.
BACKGROUND_CPU_SHARES = interpreters.BACKGROUND_CPU_SHARES

Log = Callable[[str], None]

# The CPython builder's Dockerfile ADDs the root under its old name (Docker unpacks a tar
# whatever its compression): renaming it would change the builder's definition hash and
# with it every compiled interpreter's key, which costs a CPython compile each.
BUILDER_ROOTFS_NAME = "rootfs.tar.gz"

# Roots debootstrapped afresh by this process (see `rebuild`).
_refreshed_rootfs: set[str] = set()


def _quiet(_line: str) -> None:
    pass


def local_image_ref(
    arch: str, variant: str, suite: str = DEFAULT_SUITE, pythons: tuple[str, ...] | None = None
) -> str:
    """The tag the image would have (computed from the definition files; no Docker)."""
    return definition.plan_image(arch, suite, pythons).ref(variant)


def ensure_local_image(
    arch: str,
    variant: str = "build",
    suite: str = DEFAULT_SUITE,
    pythons: tuple[str, ...] | None = None,
    on_line: Log | None = None,
    rebuild: bool = False,
    on_phase: Log | None = None,
    accelerator: Accelerator | None = None,
    remote: Remote | None = None,
) -> engine.ImageInfo:
    """The image for (arch, variant, suite, pythons), built only when its tag is absent.

    ``rebuild`` builds the base even when its tag exists, from a fresh debootstrap (once
    per process and root, so rebuilding runtime then build debootstraps once) to pick up
    Debian updates. The tag stays the same, since the definition did not change; built
    interpreters are reused (their key names their exact source).
    """
    plan = definition.plan_image(arch, suite, pythons)
    fresh = rebuild and plan.base.rootfs_key not in _refreshed_rootfs
    phases = Phases(on_phase, on_line or _quiet)
    info = _ensure(plan, variant, phases, rebuild, fresh, (accelerator, remote))
    if fresh:
        _refreshed_rootfs.add(plan.base.rootfs_key)
    return info


def ensure_local_base(
    arch: str,
    variant: str = "build",
    suite: str = DEFAULT_SUITE,
    on_line: Log | None = None,
    on_phase: Log | None = None,
) -> engine.ImageInfo:
    """Only the base of (arch, variant, suite): the root, packages and (build) toolchain,
    no source-built interpreter. Dependencies need no more, so they start on it while
    the interpreters compile."""
    base = definition.plan_base(definition.load_suite(suite), archs.get(arch))
    engine.ping()
    info = engine.inspect_image(base.ref(variant))
    if info is not None:
        return info
    rootfs.check_binfmt(base.arch)
    phases = Phases(on_phase, on_line or _quiet)
    return _ensure_base(base, variant, _rootfs(base, phases, False), phases, False)


def python_image_ref(arch: str, variant: str, suite: str, python: str) -> str:
    """The image with one Python (plus Debian's, which every base has): a job waits only
    for its own interpreter, not for every interpreter the plan asks for."""
    return local_image_ref(arch, variant, suite, (python,))


def stale_local_images() -> list[str]:
    """Tags of local images whose definition has changed since they were built."""
    stale = []
    for info in engine.list_images("io.orch.image=local"):
        labels = info.labels
        try:
            current = local_image_ref(
                labels["io.orch.arch"],
                labels["io.orch.variant"],
                labels.get("io.orch.suite", DEFAULT_SUITE),
                tuple(labels["io.orch.pythons"].split(",")),
            )
        except (KeyError, OrchError):  # unreadable labels or a suite no longer defined
            current = ""
        if info.ref != current:
            stale.append(info.ref)
    return sorted(stale + _stale_builders())


def _stale_builders() -> list[str]:
    stale = []
    for info in engine.list_images(f"io.orch.image={BUILDER_LABEL}"):
        try:
            defn = definition.load_suite(info.labels["io.orch.suite"])
            current = definition.plan_builder(defn, archs.get(info.labels["io.orch.arch"])).ref
        except (KeyError, OrchError):
            current = ""
        if info.ref != current:
            stale.append(info.ref)
    return stale


def remove_stale_local_images(on_line: Log | None = None) -> list[str]:
    removed = stale_local_images()
    for ref in removed:
        (on_line or _quiet)(f"[orch] removing stale local image {ref}")
        engine.remove_image(ref)
    return removed


# How interpreters are made faster: a compile aid, and a store to fetch them from first.
Helpers = tuple[Accelerator | None, Remote | None]


def _ensure(
    plan: ImagePlan,
    variant: str,
    phases: Phases,
    force: bool,
    fresh_rootfs: bool,
    aid: Helpers,
) -> engine.ImageInfo:
    ref = plan.ref(variant)
    engine.ping()  # an unreachable engine is reported before any slow work
    if not force:
        info = engine.inspect_image(ref)
        if info is not None:
            return info
    rootfs.check_binfmt(plan.arch)
    with _lock(f"{plan.plat}-{plan.tag}-{variant}"):
        if not force:
            info = engine.inspect_image(ref)  # built by another process while we waited
            if info is not None:
                return info
        return _build(plan, variant, phases, force, fresh_rootfs, aid)


def _lock(name: str) -> FileLock:
    lock = rootfs.cache_dir() / "images" / "locks" / f"{name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock))


def _build(
    plan: ImagePlan,
    variant: str,
    phases: Phases,
    force: bool,
    fresh_rootfs: bool,
    aid: Helpers,
) -> engine.ImageInfo:
    """The base and each missing interpreter in parallel, then the derived image."""
    tarball = _rootfs(plan.base, phases, fresh_rootfs)
    if not plan.interpreters:  # Debian's interpreters only: nothing to compile
        base_info = _ensure_base(plan.base, variant, tarball, phases, force)
        return _build_derived(plan, variant, base_info, [], phases) if plan.derived else base_info
    workers = 1 + min(PARALLEL_COMPILES, len(plan.interpreters))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="orch-image") as pool:
        base = pool.submit(_ensure_base, plan.base, variant, tarball, phases, force)
        builder = _ensure_builder(definition.plan_builder(plan.defn, plan.arch), tarball, phases)
        compiles: list[Future[Built]] = [
            pool.submit(_compile_one, i, builder, phases, aid) for i in plan.interpreters
        ]
        try:
            built = [f.result() for f in compiles]
            base_info = base.result()
        except KeyboardInterrupt:
            # The pool waits for its workers on the way out: stop their compile containers
            # (and debootstrap), or an interrupted `build-local` waits for the compile and a
            # second signal leaves the container running.
            stoppers.stop_all()
            raise
    for item in built:
        phases.on_line(f"[orch] {item.tag} ({item.arch}): {item.status}, {item.path.name}")
    return _build_derived(plan, variant, base_info, built, phases)


def _compile_one(
    interp: definition.InterpreterPlan,
    builder: engine.ImageInfo,
    phases: Phases,
    aid: Helpers,
) -> Built:
    with _compile_slots:  # each compile runs make -j$(nproc): more at once only contend
        native = native_python(interp, phases, aid[1])
        return interpreters.ensure_interpreter(interp, builder, phases, aid[0], aid[1], native)


def native_python(
    interp: InterpreterPlan, phases: Phases, remote: Remote | None = None
) -> interpreters.NativePython | None:
    """For an emulated interpreter: the host's interpreter of the same tag and source, which
    byte-compiles its standard library natively (compiled first when missing).

    Taken from the oldest suite that builds it (its glibc is the oldest, so it runs with
    any accelerator root's loader), so that bullseye and bookworm images share one."""
    host = archs.host_arch()
    if archs.runs_natively(interp.arch.name) or host not in archs.ARCHS:
        return None
    defn = _oldest_suite_with(interp.source) or interp.builder.defn

    def ensure(source: interpreters.Source) -> Built | None:
        base = definition.plan_base(defn, archs.get(host))
        builder_plan = definition.plan_builder(defn, base.arch)
        native = definition.plan_interpreter(interp.source, builder_plan)
        found = interpreters.stored(native, source)
        if found is not None:  # the Sources index was just read for the emulated compile
            return found
        builder = _ensure_builder(builder_plan, _rootfs(base, phases, fresh=False), phases)
        return interpreters.ensure_interpreter(native, builder, phases, None, remote)

    return ensure


def _oldest_suite_with(source: definition.SourcePython) -> definition.SuiteDefinition | None:
    suites = [definition.load_suite(name) for name in definition.available_suites()]
    same = [d for d in suites if d.source_pythons.get(source.tag) == source]
    return min(same, key=lambda d: tuple(map(int, d.glibc.split(".")))) if same else None


def _rootfs(base: BasePlan, phases: Phases, fresh: bool) -> Path:
    path = rootfs.tarball_path(base.defn.suite, base.arch, base.rootfs_key)
    if path.is_file() and not fresh:
        return path
    name = f"root {base.defn.suite}/{base.arch.debian}"
    what = "mmdebstrap or debootstrap (downloading and unpacking Debian packages)"
    with phases.phase(name, what) as log:
        return rootfs.ensure_rootfs(base.defn.suite, base.arch, base.rootfs_key, log, fresh)


def _ensure_base(
    base: BasePlan, variant: str, tarball: Path, phases: Phases, force: bool
) -> engine.ImageInfo:
    """The base of `variant`; the build base starts from the runtime base's layers."""
    ref = base.ref(variant)
    info = None if force else engine.inspect_image(ref)
    if info is not None:
        return info
    with _lock(f"base-{base.digest[:16]}-{variant}"):  # one build per base, across processes
        info = None if force else engine.inspect_image(ref)
        return info or _build_base(base, variant, tarball, phases)


def _build_base(base: BasePlan, variant: str, tarball: Path, phases: Phases) -> engine.ImageInfo:
    """One variant; the other, when built, is the only cache source. The CPython builder ADDs
    the same root: left to itself the engine may match that layer, then miss every later
    step (the runtime variant took 49 s instead of 3 s after the build variant)."""
    ref = base.ref(variant)
    sibling = base.ref("build" if variant == "runtime" else "runtime")
    cache_from = [sibling] if engine.inspect_image(sibling) is not None else []
    what = "runtime packages, Debian's Python" if variant == "runtime" else "toolchain"
    with phases.phase(f"base {variant} ({what})", "apt-get and pip in the image build") as log:
        info = _docker_build(
            ref,
            base.arch,
            _context_files(definition.base_files()),
            tarball,
            {**base.buildargs, **_proxy_args()},
            _base_labels(base, variant),
            variant,
            log,
            cache_from=cache_from,
        )
    return info


def _ensure_builder(builder: BuilderPlan, tarball: Path, phases: Phases) -> engine.ImageInfo:
    info = engine.inspect_image(builder.ref)
    if info is not None:
        return info
    with _lock(f"builder-{builder.digest[:16]}"):
        info = engine.inspect_image(builder.ref)
        if info is not None:
            return info
        files = _context_files(definition.builder_files())
        files["Dockerfile"] = files.pop(definition.BUILDER_DOCKERFILE)
        with phases.phase("CPython builder (build headers)", "apt-get in the image build") as log:
            return _docker_build(
                builder.ref,
                builder.arch,
                files,
                tarball,
                {**builder.buildargs, **_proxy_args()},
                _builder_labels(builder),
                None,
                log,
                cpu_shares=BACKGROUND_CPU_SHARES,
                rootfs_name=BUILDER_ROOTFS_NAME,
            )


def _build_derived(
    plan: ImagePlan,
    variant: str,
    base: engine.ImageInfo,
    built: list[Built],
    phases: Phases,
) -> engine.ImageInfo:
    """FROM the base, ADD each interpreter's tarball (or make a venv of each further Debian
    interpreter), pin pip (and build tools) in each."""
    tags = [b.tag for b in built] + [tag for tag, _exe in plan.debian_venvs]
    files = _context_files([f"{definition.SCRIPTS_SUBDIR}/{definition.DERIVED_SCRIPT}"])
    pins = {k: plan.base.buildargs[k] for k in ("PIP_BUILD", "PIP_RUNTIME")}
    args = {**pins, **_proxy_args()}
    name = f"{variant} image with {', '.join(tags)}"
    with (
        phases.phase(name, "pip in the image build") as log,
        tempfile.TemporaryDirectory(prefix="orch-image-") as tmp,
    ):
        context = Path(tmp)
        (context / "Dockerfile").write_text(_derived_dockerfile(base.ref, variant, plan, tags))
        for item in built:
            _link(item.path, context / f"{item.tag}.tar.gz")
        return _docker_build_in(
            context, plan.ref(variant), plan.arch, files, args, plan.labels(variant), None, log
        )


def _derived_dockerfile(base_ref: str, variant: str, plan: ImagePlan, tags: list[str]) -> str:
    setarch = plan.base.buildargs["SETARCH"]
    venvs = dict(plan.debian_venvs)
    adds = "".join(f"ADD {tag}.tar.gz /opt/python/\n" for tag in tags if tag not in venvs)
    # As the base makes its Debian interpreter's (setup-runtime.sh): the system's stdlib
    # and headers, its own site-packages.
    adds += "".join(
        f"RUN {setarch} {exe} -m venv /opt/python/{tag}\n" for tag, exe in venvs.items()
    )
    return (
        f"FROM {base_ref}\n{adds}"
        f"COPY {definition.SCRIPTS_SUBDIR}/{definition.DERIVED_SCRIPT} host-ca.crt "
        "/usr/local/lib/orch-image/\n"
        "ARG PIP_BUILD\nARG PIP_RUNTIME\n"
        f"RUN {setarch} /usr/local/lib/orch-image/{definition.DERIVED_SCRIPT} "
        f"{variant} {' '.join(tags)}\n"
    )


def _docker_build(
    ref: str,
    arch: Arch,
    files: Mapping[str, Path],
    tarball: Path,
    buildargs: Mapping[str, str],
    labels: Mapping[str, str],
    target: str | None,
    log: Log,
    cpu_shares: int | None = None,
    rootfs_name: str = rootfs.CONTEXT_NAME,
    cache_from: Sequence[str] = (),
) -> engine.ImageInfo:
    with tempfile.TemporaryDirectory(prefix="orch-image-") as tmp:
        context = Path(tmp)
        _link(tarball, context / rootfs_name)
        return _docker_build_in(
            context, ref, arch, files, buildargs, labels, target, log, cpu_shares, cache_from
        )


def _docker_build_in(
    context: Path,
    ref: str,
    arch: Arch,
    files: Mapping[str, Path],
    buildargs: Mapping[str, str],
    labels: Mapping[str, str],
    target: str | None,
    log: Log,
    cpu_shares: int | None = None,
    cache_from: Sequence[str] = (),
) -> engine.ImageInfo:
    """Copies `files` (context name -> source) and the host CA into `context`, builds."""
    for name, src in files.items():
        dst = context / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    _host_ca(context / "host-ca.crt")
    info = engine.build_image(
        context,
        tag=ref,
        platform=arch.platform,
        buildargs=buildargs,
        labels=labels,
        target=target,
        on_line=log,
        cpu_shares=cpu_shares,
        cache_from=cache_from,
    )
    _check_built(arch, info)
    return info


def _context_files(rel_paths: list[str]) -> dict[str, Path]:
    base = definition.definition_dir()
    return {rel: base / rel for rel in rel_paths}


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # tarballs are big: no copy when possible
    except OSError:
        shutil.copy2(src, dst)


def _host_ca(dst: Path) -> None:
    """The host's CA bundle, or an empty file when it has none (the Dockerfiles COPY it)."""
    bundle = Path(options.env().ssl_cert_file or HOST_CA_BUNDLE)
    if bundle.is_file():
        shutil.copyfile(bundle, dst)
    else:
        dst.write_bytes(b"")


def _base_labels(base: BasePlan, variant: str) -> dict[str, str]:
    tag = base.defn.debian_python_tag
    return ImagePlan(base, (tag,), (), base.digest).labels(variant)


def _builder_labels(builder: BuilderPlan) -> dict[str, str]:
    return {
        "io.orch.image": BUILDER_LABEL,
        "io.orch.arch": builder.arch.name,
        "io.orch.suite": builder.defn.suite,
        "io.orch.definition": builder.digest,
    }


def _proxy_args() -> dict[str, str]:
    """The host's proxy settings, passed to the build (Docker does not record them)."""
    return dict(options.env().proxies)


def _check_built(arch: Arch, info: engine.ImageInfo) -> None:
    want = arch.oci.split("/")[0]
    if info.architecture != want:
        raise OrchError(
            f"{info.ref} was built as {info.architecture or 'unknown'}, not {want}: "
            "the engine ignored --platform (needs Docker >= 20.10)"
        )
