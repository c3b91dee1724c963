"""The verify stage: each repaired wheel installed and tested in fresh containers that
never saw the build (the runtime image: interpreters only, no compiler, no dependency
prefix, no source tree), plus any images the recipe lists."""

from __future__ import annotations

import ast
import io
import json
import re
import shlex
import tarfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator import archs
from orchestrator.container.factory import ContainerFactory
from orchestrator.container.session import Session, StageFailed
from orchestrator.container.types import ImageInfo
from orchestrator.errors import EnvironmentProblem, OrchError
from orchestrator.images.pull import ensure_local
from orchestrator.images.stock import choose_default, ensure_stock_image, is_stock, stock_ref
from orchestrator.pipeline import nativeuv
from orchestrator.pipeline.buildenv import WHEELS, offline_env
from orchestrator.pipeline.wheelcache import (
    WheelCache,
    requirement_lines,
    set_key,
    wheels_from_tar,
)
from orchestrator.plan.jobs import Job
from orchestrator.recipe.model import Recipe
from orchestrator.report.joblog import JobLog

WHEEL_DIR = "/orch/verify"
TEST_DIR = "/tmp/orch-test"  # outside any source tree
UV_CACHE = "/tmp/orch-uv-cache"  # the native uv's cache: per container, seeded from the host
UV_BUCKET_VERSIONS = 16  # uv's interpreter-v<N> cache buckets looked for, newest first
UV_INTERPRETERS = "uv-interpreters.tar"  # its interpreter answers, in the image's wheel cache


@dataclass(frozen=True)
class VerifyOutcome:
    image: str
    status: str  # passed | failed | incompatible
    detail: str
    seconds: float
    wheel_cache: str = ""  # hit | miss | none (nothing to install besides the wheel)
    image_id: str = ""  # the image it ran in (a passed check is reused only in that image)
    gil: str = ""  # free-threaded wheels: "disabled" | "enabled" after importing its modules

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WheelTags:
    python: str  # cp311
    platforms: tuple[str, ...]  # manylinux_2_31_x86_64, ...
    abi: str = ""  # cp311, cp313t (free-threaded), abi3

    @property
    def version(self) -> str | None:
        """'3.11' for cp311; None for a tag that names no single CPython (py3)."""
        m = re.fullmatch(r"cp(\d)(\d+)", self.python)
        return f"{m.group(1)}.{m.group(2)}" if m else None

    @property
    def free_threaded(self) -> bool:
        return self.abi.endswith("t") and self.abi.startswith("cp")

    @property
    def arch(self) -> str:
        for plat in self.platforms:
            for name in sorted(archs.ARCHS, key=len, reverse=True):
                if plat.endswith("_" + name):
                    return name
        return "unknown"

    @property
    def min_glibc(self) -> tuple[int, int] | None:
        best: tuple[int, int] | None = None
        legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
        for plat in self.platforms:
            m = re.match(r"manylinux_(\d+)_(\d+)_", plat)
            v = (int(m.group(1)), int(m.group(2))) if m else legacy.get(plat.split("_")[0])
            if v and (best is None or v < best):
                best = v
        return best


def wheel_tags(wheel: Path, job_arch: str | None = None) -> WheelTags:
    """The wheel's tags; a platform-independent wheel (`any`) is verified on the job's arch."""
    # name-version(-build)?-python-abi-platform.whl; platform may be a dotted set
    parts = wheel.name[: -len(".whl")].split("-")
    platforms = tuple(parts[-1].split("."))
    if platforms == ("any",) and job_arch:
        platforms = (f"linux_{job_arch}",)
    return WheelTags(python=parts[-3], platforms=platforms, abi=parts[-2])


def top_level_modules(wheel: Path) -> list[str]:
    """Importable top-level names: top_level.txt if present, else from the file list."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        for n in names:
            if n.endswith(".dist-info/top_level.txt"):
                listed = [m.strip() for m in zf.read(n).decode().splitlines() if m.strip()]
                return [m for m in listed if not m.startswith("_")] or listed
    mods: set[str] = set()
    for n in names:
        first = n.split("/", 1)[0]
        if first.endswith((".dist-info", ".data", ".libs")):
            continue
        if "/" in n:
            mods.add(first)
        elif n.endswith(".py") or ".so" in n:
            mods.add(n.split(".", 1)[0])
    return sorted(m for m in mods if m.isidentifier())


# --- clean-container verification -------------------------------------------------------


def verify_wheel(
    factory: ContainerFactory,
    recipe: Recipe,
    job: Job,
    wheel: Path,
    log: JobLog,
    *,
    offline: bool = False,
    refs: list[str] | None = None,
) -> list[VerifyOutcome]:
    """`refs`: the images as `verify_refs` chose them (None: chosen here)."""
    refs = refs if refs is not None else verify_refs(factory, recipe, job, wheel, log)
    if len(refs) == 1 or not archs.runs_natively(job.arch):
        # emulated checks are CPU-bound (QEMU): side by side they only share the cores
        return [
            verify_in_image(factory, recipe, job, wheel, ref, log, offline=offline) for ref in refs
        ]
    return _side_by_side(factory, recipe, job, wheel, refs, log, offline)


def verify_refs(
    factory: ContainerFactory, recipe: Recipe, job: Job, wheel: Path, log: JobLog
) -> list[str]:
    """The images this wheel is verified in: the runtime image, the recipe's, and the
    default stock image (in auto mode only when it is present)."""
    images = [job.runtime_image or job.image, *recipe.test.verify_images]
    if recipe.test.stock_images != "never":
        images += _default_stock(factory, recipe, wheel_tags(wheel, job.arch), log)
    return list(dict.fromkeys(images))


def present_ids(factory: ContainerFactory, refs: list[str], arch: str) -> list[str] | None:
    """Each image's id as the engine has it now, or None when one is not present (it would
    be built or pulled first: a new image)."""
    ids = []
    for ref in refs:
        info = factory.engine.inspect_image(stock_ref(ref, arch) if is_stock(ref) else ref)
        if info is None:
            return None
        ids.append(info.id)
    return ids


def _side_by_side(
    factory: ContainerFactory,
    recipe: Recipe,
    job: Job,
    wheel: Path,
    refs: list[str],
    log: JobLog,
    offline: bool,
) -> list[VerifyOutcome]:
    """Native checks in every image at once: each is mostly the engine starting a container
    and a few short execs, so one image's waits overlap another's. Each writes its own log,
    appended to the job's in image order (the log reads as if they ran one after another)."""
    logs = [JobLog(log.path.with_name(f"{log.path.stem}.verify{i}.tmp")) for i in range(len(refs))]
    try:
        with ThreadPoolExecutor(len(refs), thread_name_prefix="verify") as pool:
            futures = [
                pool.submit(verify_in_image, factory, recipe, job, wheel, ref, own, offline=offline)
                for ref, own in zip(refs, logs, strict=True)
            ]
            wait(futures)
    finally:
        for own in logs:
            log.take(own)
    return [f.result() for f in futures]


def _default_stock(
    factory: ContainerFactory, recipe: Recipe, tags: WheelTags, log: JobLog
) -> list[str]:
    """The user's side of the fence: a distribution image whose system Python is the
    wheel's, glibc the nearest at or above the wheel's minimum. By default (auto) only when
    that image is present: building one costs a debootstrap (minutes, more under QEMU)."""
    chosen = choose_default(tags.version, tags.min_glibc, tags.arch) if tags.version else None
    if chosen is None or tags.free_threaded:
        if not tags.free_threaded:
            log.line(f"[verify] no stock image has a system Python {tags.version} for {tags.arch}")
        return []
    absent = factory.engine.inspect_image(stock_ref(chosen, tags.arch)) is None
    if recipe.test.stock_images == "auto" and absent:
        suite = chosen.removeprefix("stock:")
        log.line(
            f"[verify] {chosen} ({tags.arch}) is not built, so not verified there: "
            f"`orch images build-stock {suite} --arch {tags.arch}` (or test.stock-images: true)"
        )
        return []
    return [chosen]


def verify_in_image(
    factory: ContainerFactory,
    recipe: Recipe,
    job: Job,
    wheel: Path,
    ref: str,
    log: JobLog,
    *,
    offline: bool = False,
) -> VerifyOutcome:
    t0 = time.monotonic()
    tags = wheel_tags(wheel, job.arch)
    info = _image(factory, ref, job, log)
    problem = _incompatibility(info, tags)
    if problem:
        log.line(f"[verify] {ref}: cannot run this wheel: {problem}")
        return VerifyOutcome(ref, "incompatible", problem, time.monotonic() - t0)
    native = nativeuv.available() and not factory.remote  # a routed engine: another machine
    session = factory.session(
        info.ref,  # stock:<suite> resolved to its tag
        platform=info.platform,
        job=f"{job.id}-verify",
        log=log,
        personality=archs.personality(tags.arch),
        network_mode="none" if offline else None,
        mounts=(nativeuv.mount(),) if native else (),
        remove_later=True,  # the next image's check need not wait for the engine
    )
    cache = WheelCache.for_image(info.id, job.arch)
    checked = Checked("")
    try:
        with session:
            checked = _run_checks(session, recipe, job, wheel, tags, cache, offline, native)
    except StageFailed as exc:
        return VerifyOutcome(ref, "failed", f"{exc}; see the log", time.monotonic() - t0)
    done = "installed, imported and tested"
    if checked.gil:
        done += f"; the GIL {checked.gil} after import"
    seconds = time.monotonic() - t0
    return VerifyOutcome(ref, "passed", done, seconds, checked.source, info.id, checked.gil)


def _image(factory: ContainerFactory, ref: str, job: Job, log: JobLog) -> ImageInfo:
    if is_stock(ref):
        present = factory.engine.inspect_image(stock_ref(ref, job.arch))
        return present or ensure_stock_image(ref, job.arch, on_line=log.line)
    info = factory.engine.inspect_image(ref)
    if info is None and ref == job.runtime_image and job.image_source == "local":
        info = ensure_local(job, "runtime", log.line)
    if info is None:
        raise EnvironmentProblem(f"verification image {ref} is not present (test.verify-images)")
    return info


def _incompatibility(info: ImageInfo, tags: WheelTags) -> str | None:
    """Why an image cannot run a wheel by its tag: architecture, then glibc."""
    want = archs.ARCHS.get(tags.arch)
    if want is None:
        return f"wheel platform {'.'.join(tags.platforms)} names no known architecture"
    if info.architecture != want.oci.split("/")[0]:
        return f"image is {info.architecture}, the wheel is {tags.arch} ({want.oci})"
    glibc = info.labels.get("io.orch.glibc")
    need = tags.min_glibc
    if glibc and need:
        have = tuple(int(x) for x in glibc.split(".")[:2])
        if have < need:
            return f"image has glibc {glibc}, the wheel needs {need[0]}.{need[1]}"
    return None


def _run_checks(
    session: Session,
    recipe: Recipe,
    job: Job,
    wheel: Path,
    tags: WheelTags,
    cache: WheelCache,
    offline: bool,
    native: bool = False,
) -> Checked:
    env = {"PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin", "PIP_NO_INPUT": "1"}
    session.mkdirs(WHEEL_DIR, TEST_DIR, WHEELS)
    session.put(wheel, WHEEL_DIR, arcname=wheel.name)
    uv = nativeuv.newest(session.log.line) if native else None
    # a new venv's pip costs an emulated ensurepip; uv does not need it, a test may
    with_pip = uv is None or "pip" in (recipe.test.command or "") or bool(recipe.test.coexist)
    seeded = _seed_uv_cache(session, cache) if uv else b""
    layout = f"/opt/python/{job.python_tag}"
    if session.exists(f"{layout}/bin/python"):  # the job's own: no process needed
        session.symlink(VENV, layout)  # the whole prefix: it may be a venv
        session.log.line(f"[verify] interpreter {layout}/bin/python (the manylinux layout)")
    elif uv and not with_pip:
        _uv_venv(session, uv, tags)
    else:
        session.run("verify: interpreter", interpreter_script(job.python_tag, tags, with_pip))
    fill = FillWith(uv, not archs.runs_natively(job.arch))
    source = _verify_env(session, recipe, job, wheel, cache, offline, env, fill)
    installs = {**env, **offline_env(WHEELS)}  # installs only: a test command may use pip
    requires = " ".join(shlex.quote(r) for r in recipe.test.requires)
    session.run(
        "verify: install",
        f"{install_command(uv)} {WHEEL_DIR}/{shlex.quote(wheel.name)} {requires}",
        env=installs,
        workdir=TEST_DIR,
    )
    if uv:
        _keep_uv_interpreters(session, cache, seeded)
    modules = list(recipe.test.imports) or top_level_modules(wheel)
    if modules and import_check_in_test(modules, recipe.test.command):
        session.log.line(
            f"[verify] import check: the test command's first statements import "
            f"{', '.join(modules)} (one interpreter for both)"
        )
    elif modules:
        code = (
            "; ".join(f"import {m}" for m in modules)
            + "; print('imported: "
            + ", ".join(modules)
            + "')"
        )
        session.run("verify: import", ["python", "-c", code], env=env, workdir=TEST_DIR)
    if recipe.test.command:
        session.run("verify: test-command", recipe.test.command, env=env, workdir=TEST_DIR)
    if recipe.test.coexist:
        _coexist(session, recipe, modules, installs)
    gil = _gil_after_import(session, modules, env) if tags.free_threaded and modules else ""
    return Checked(source, gil)


@dataclass(frozen=True)
class Checked:
    source: str  # where the test requirements came from (VerifyOutcome.wheel_cache)
    gil: str = ""  # free-threaded wheels: the GIL's state after importing its modules


GIL_MARK = "orch-gil-after-import:"


def gil_probe(modules: list[str]) -> str:
    """Python code printing whether the GIL is on after importing the modules: a
    free-threaded interpreter turns it back on for an extension that does not declare
    Py_MOD_GIL_NOT_USED (with a RuntimeWarning naming it), and the wheel is still valid."""
    imports = "".join(f"import {m}; " for m in modules)
    return (
        f"import sys; {imports}"
        f"print({GIL_MARK!r}, 'enabled' if sys._is_gil_enabled() else 'disabled')"
    )


def gil_state(lines: list[str]) -> str:
    """The probe's answer in its output, or "" when it printed none (it failed)."""
    found = [ln.split(GIL_MARK, 1)[1].split() for ln in lines if GIL_MARK in ln]
    return found[-1][0] if found and found[-1] else ""


def _gil_after_import(session: Session, modules: list[str], env: dict[str, str]) -> str:
    """Reported, never failed on: whether the project's extensions run without the GIL is
    the project's claim; the log and report say what the interpreter did."""
    lines = session.output(["python", "-c", gil_probe(modules)], env=env, workdir=TEST_DIR)
    for line in lines:
        session.log.line(f"[verify] {line}")
    state = gil_state(lines) or "unknown (the probe printed nothing)"
    session.log.line(
        f"[verify] free-threaded: the GIL is {state} after importing {', '.join(modules)}"
    )
    return state


VENV = "/orch/venv"


def install_command(uv: str | None) -> str:
    """pip in the interpreter, or the native uv (x86_64 hosts) installing into it
    from WHEELS only: the same wheels, without an emulated pip's start-up and resolution.
    uv's cache is the container's own (UV_CACHE), seeded with its interpreter answers."""
    if uv is None:
        return "python -m pip install --disable-pip-version-check"
    return (
        f"{uv} pip install --python {VENV}/bin/python --no-index --find-links {WHEELS} "
        f"--cache-dir {UV_CACHE} --link-mode copy"
    )


def uv_venv_command(uv: str, tags: WheelTags) -> list[str]:
    """A venv without pip of the image's own CPython of the wheel's version, made by the
    native uv: it finds the interpreter on PATH as interpreter_script does (free-threaded
    only when the wheel is), with its answers from UV_CACHE, so neither the search nor the
    venv costs an emulated Python. Never a Python uv would download or manage."""
    want = (tags.version or "3") + ("t" if tags.free_threaded else "")
    return [
        uv, "venv", "--python", want, "--python-preference", "only-system",
        "--no-python-downloads", "--no-config", "--cache-dir", UV_CACHE, VENV,
    ]  # fmt: skip


def _uv_venv(session: Session, uv: str, tags: WheelTags) -> None:
    want = uv_venv_command(uv, tags)[3]
    try:
        session.run("verify: interpreter", uv_venv_command(uv, tags), workdir=TEST_DIR)
    except StageFailed:
        session.log.line(f"[verify] no CPython {want} in this image that uv could make a venv of")
        raise
    session.log.line("[verify] system interpreter found by uv (above): installing into its venv")


def import_check_in_test(modules: list[str], command: str | None) -> bool:
    """Whether the test command is `python -c CODE` whose first statements import exactly
    the check's modules, in its order: it then does what the import check does, first,
    in the same interpreter, directory and environment (a failing import fails it), so a
    separate check is one emulated interpreter more for nothing."""
    try:
        argv = shlex.split(command or "")
    except ValueError:
        return False
    if len(argv) != 3 or argv[:2] != ["python", "-c"]:
        return False
    try:
        body = ast.parse(argv[2]).body
    except SyntaxError:
        return False
    leading: list[str] = []
    for node in body:
        if not isinstance(node, ast.Import) or any(a.asname for a in node.names):
            break
        leading += [a.name for a in node.names]
    return leading[: len(modules)] == modules


def _seed_uv_cache(session: Session, cache: WheelCache) -> bytes:
    """uv asks the interpreter for its platform and tags (an emulated Python under
    QEMU) unless its cache has the answer; the answers kept for this image (the cache is
    per image id: another interpreter is another image) are put in the container's uv
    cache. uv checks each against the interpreter file's timestamps and asks again if
    they differ."""
    try:
        seeded = (cache.root / UV_INTERPRETERS).read_bytes()
    except OSError:
        return b""
    session.put_tar(seeded, str(Path(UV_CACHE).parent))
    return seeded


def _keep_uv_interpreters(session: Session, cache: WheelCache, seeded: bytes) -> None:
    """The container's uv interpreter answers, kept for the next verifications in this
    image if they changed (first use, a new uv, a re-created image). Only uv's
    interpreter bucket is copied out, not the wheels it unpacked next to it."""
    try:
        bucket = _interpreter_bucket(session)
        found = interpreter_entries(_under_cache_dir(bucket)) if bucket else b""
        if found and found != seeded:
            cache.keep_file(UV_INTERPRETERS, found)
    except (OSError, OrchError, tarfile.TarError) as exc:
        session.log.line(f"[verify] warning: uv's interpreter answers not kept: {exc}")


def _interpreter_bucket(session: Session) -> bytes | None:
    """The engine's tar of uv's newest interpreter-v<N> directory in the container: a
    newer uv moves to a new N, and the seeded (older) bucket stays beside it."""
    for n in range(UV_BUCKET_VERSIONS - 1, -1, -1):
        try:
            return session.get(f"{UV_CACHE}/interpreter-v{n}")
        except OrchError:  # absent: the engine's copy API found nothing there
            continue
    return None


def _under_cache_dir(bucket_tar: bytes) -> bytes:
    """The engine's tar of one bucket, as the part of a tar of the whole cache directory
    (the shape `interpreter_entries` and the seeding expect)."""
    top = Path(UV_CACHE).name
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bucket_tar)) as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        root = tarfile.TarInfo(top)
        root.type = tarfile.DIRTYPE
        dst.addfile(root)
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            member.name = f"{top}/{member.name}"
            dst.addfile(member, data)
    return out.getvalue()


def interpreter_entries(data: bytes) -> bytes:
    """The interpreter-v* part of a tar of uv's cache (not the wheels it unpacked), as a
    deterministic tar: the same answers make the same bytes."""
    out = io.BytesIO()
    kept = 0
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in sorted(src.getmembers(), key=lambda m: m.name):
            parts = Path(member.name).parts
            top = len(parts) == 1 and member.isdir()  # the cache directory itself
            if ".." in parts or not (top or (parts[1:2] and parts[1].startswith("interpreter-v"))):
                continue
            if not (member.isdir() or member.isfile()):
                continue
            member.mtime, member.uid, member.gid, member.uname, member.gname = 0, 0, 0, "", ""
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
            kept += member.isfile()
    return out.getvalue() if kept else b""


def interpreter_script(python_tag: str, tags: WheelTags, with_pip: bool = True) -> str:
    """Find the interpreter the wheel is for and make {VENV}/bin its bin directory: the
    manylinux layout's /opt/python/<tag> as it is, else a system python3.X (on PATH,
    /usr/bin/python3) as a fresh venv, where a user would install the wheel."""
    want = (tags.version or "") + ("t" if tags.free_threaded else "")
    probe = (
        "import sys, sysconfig; print('%d.%d%s' % (*sys.version_info[:2], "
        "'t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))"
    )
    system = [f"python{want}", f"python{tags.version}", "python3", "/usr/bin/python3"]
    return f"""
layout=/opt/python/{python_tag}/bin/python
found=""
# the manylinux layout names its interpreter: the job's own, no (emulated) probe needed
[ -x "$layout" ] && found=$layout
[ -n "$found" ] || for c in {" ".join(shlex.quote(c) for c in system)}; do
  p=$(command -v "$c" 2>/dev/null) || continue
  got=$("$p" -c {shlex.quote(probe)} 2>/dev/null) || continue
  [ -z {shlex.quote(want)} ] || [ "$got" = {shlex.quote(want)} ] && {{ found=$p; break; }}
done
[ -n "$found" ] || {{ echo "no CPython {want} in this image (looked for $layout, {", ".join(system)})"; exit 1; }}
if [ "$found" = "$layout" ]; then
  ln -s "$(dirname "$(dirname "$found")")" {VENV}  # the whole prefix: it may be a venv
else
  echo "[verify] system interpreter $found: installing into a venv"
  "$found" -m venv {"" if with_pip else "--without-pip "}{VENV}
fi
"""


def requires_dist(wheel: Path) -> list[str]:
    """The wheel's own runtime requirements (METADATA's Requires-Dist)."""
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.count("/") == 1 and name.endswith(".dist-info/METADATA"):
                text = zf.read(name).decode(errors="replace")
                return [
                    line.split(":", 1)[1].strip()
                    for line in text.split("\n\n", 1)[0].splitlines()
                    if line.lower().startswith("requires-dist:")
                ]
    return []


def _verify_set_key(recipe: Recipe, job: Job, wheel: Path) -> str | None:
    """The wheel-cache set of what verification installs besides the wheel; None: nothing."""
    wanted = {
        "requires-dist": json.dumps(requirement_lines(requires_dist(wheel))),
        "test": json.dumps(requirement_lines(recipe.test.requires)),
        "coexist": json.dumps(
            requirement_lines(r for r, _m in map(coexist_entry, recipe.test.coexist))
        ),
    }
    if all(v == "[]" for v in wanted.values()):
        return None
    return set_key("verify", job.python_tag, wanted)


def installed_sets(
    recipe: Recipe, job: Job, wheel: Path, images: list[tuple[str, str]]
) -> list[str] | None:
    """What verification installs in each image (the cached set's wheel names, versions
    included), for the checks key: a refilled set that resolved other versions is a new
    key. None when an image's set is not in the cache (its checks run and fill it)."""
    key = _verify_set_key(recipe, job, wheel)
    if key is None:
        return ["none" for _ in images]
    out = []
    for _ref, image_id in images:
        found = WheelCache.for_image(image_id, job.arch).lookup(key)
        if found is None:
            return None
        out.append(" ".join(sorted(p.name for p in found.wheels)))
    return out


def _verify_env(
    session: Session,
    recipe: Recipe,
    job: Job,
    wheel: Path,
    cache: WheelCache,
    offline: bool,
    env: dict[str, str],
    fill: FillWith | None = None,
) -> str:
    """The wheels verification installs (runtime and test requirements, coexist
    packages) at WHEELS, from the cache, filled on a miss; "none" if there are none."""
    key = _verify_set_key(recipe, job, wheel)
    if key is None:
        return "none"
    with cache.filling(key, session.cancel):
        found = cache.lookup(key)
        if found is not None:
            session.put_tar(found.tar("wheels"), "/orch")
            session.log.line(
                f"[wheels] verify requirements: hit, {len(found.wheels)} wheel(s) in {cache.root}"
            )
            return "hit"
        if offline:
            raise StageFailed(
                "verify",
                f"offline and the wheel cache {cache.root} has no verification requirements "
                "for this wheel and Python: run once with the network to fill it",
            )
        _fill_verify(session, recipe, wheel, env, fill or FillWith())
        wheels = wheels_from_tar(session.get(WHEELS))
        stored = cache.store_or_warn(key, wheels, {"purpose": "verify"}, session.log.line)
        if stored is not None:
            session.log.line(
                f"[wheels] verify requirements: miss, {len(stored.wheels)} wheel(s) stored in "
                f"{cache.root}"
            )
        return "miss"


@dataclass(frozen=True)
class FillWith:
    """What fills the verification wheels: `uv`, the native uv's container path (None:
    none here); `emulated`, the container runs under QEMU, where the native resolution
    (pylock_fill_script) replaces the emulated pip's."""

    uv: str | None = None
    emulated: bool = False


FILL_DIR = "/orch/verify-fill"  # the fill's requirements, pylock and fetch script
FETCH_SCRIPT = Path(__file__).with_name("pylockfetch.py")


def _fill_verify(
    session: Session, recipe: Recipe, wheel: Path, env: dict[str, str], fill: FillWith
) -> None:
    """The wheel's requirements with the test ones, resolved for this interpreter; the
    job's own wheel is not cached (it is rebuilt every run)."""
    extra = [*recipe.test.requires, *(r for r, _m in map(coexist_entry, recipe.test.coexist))]
    target = f"{WHEEL_DIR}/{wheel.name}"
    everything = " ".join(shlex.quote(a) for a in [target, *extra])
    uv = fill.uv if fill.emulated else None  # x86_64: pip's own ensurepip, as before
    script = pip_wheel_script(uv, everything, drop=wheel.name)
    if uv:
        session.put_tar(_fill_tar([target, *extra]), str(Path(FILL_DIR).parent))
        script = pylock_fill_script(uv, script)
    session.run("verify: fetch requirements", script, env=env, workdir=TEST_DIR)


def pip_wheel_script(uv: str | None, args: str, drop: str = "") -> str:
    """pip resolves and fetches (or builds) in the interpreter itself; `drop` (the job's
    wheel) is removed after. A venv made without pip gets it for this fill only: from the
    native uv when there is one (no emulated self-install and byte-compilation), else
    from ensurepip."""
    get_pip = (
        f"{uv} pip install -q --python {VENV}/bin/python --cache-dir {UV_CACHE} pip"
        if uv
        else "python -m ensurepip >/dev/null"
    )
    remove = f" && rm -f {WHEELS}/{shlex.quote(drop)}" if drop else ""
    return (
        f"{{ python -m pip --version >/dev/null 2>&1 || {get_pip}; }} && "
        f"python -m pip wheel --disable-pip-version-check --wheel-dir {WHEELS} {args}{remove}"
    )


def _fill_tar(requirements: list[str]) -> bytes:
    """FILL_DIR with requirements.in (one per line) and the fetch script."""
    files = {
        "requirements.in": "".join(f"{r}\n" for r in requirements),
        "pylockfetch.py": FETCH_SCRIPT.read_text(),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo(Path(FILL_DIR).name)
        top.type, top.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(top)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{Path(FILL_DIR).name}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def pylock_fill_script(uv: str, pip_fallback: str) -> str:
    """Under QEMU: the native uv resolves for the container's interpreter (its markers,
    its tags: it asks the interpreter, the answer cached per image) into a pylock.toml, the
    interpreter fetches its wheels by URL with their sha256 checked (pylockfetch: no pip
    start-up, no emulated resolver), and only what has no single wheel (an sdist to build)
    goes to pip, pinned and --no-deps. pip's index settings are passed to uv, best match
    across indexes as pip does. Anything unexpected: the whole fill by pip, logged."""
    rest = f"{FILL_DIR}/rest.txt"
    pinned = pip_wheel_script(uv, f"--no-deps -r {rest}")
    return f"""
idx=()  # expanded as ${{idx[@]+...}}: an empty array is "unbound" to bash < 4.4 under -u
[ -z "${{PIP_INDEX_URL:-}}" ] || idx+=(--index-url "$PIP_INDEX_URL")
for u in ${{PIP_EXTRA_INDEX_URL:-}}; do idx+=(--extra-index-url "$u"); done
for h in ${{PIP_TRUSTED_HOST:-}}; do idx+=(--allow-insecure-host "$h"); done
fallback() {{ echo "[verify] $1: pip resolves and fetches instead (emulated)"; {pip_fallback}; }}
if ! {uv} pip compile -q --format pylock.toml --python {VENV}/bin/python --no-config \
    --index-strategy unsafe-best-match --cache-dir {UV_CACHE} ${{idx[@]+"${{idx[@]}}"}} \
    {FILL_DIR}/requirements.in -o {FILL_DIR}/pylock.toml; then
  fallback "the native uv could not resolve the requirements"
  exit 0
fi
rc=0; python {FILL_DIR}/pylockfetch.py {FILL_DIR}/pylock.toml {WHEELS} > {rest} || rc=$?
if [ $rc = 3 ]; then fallback "this Python cannot read a pylock.toml (no tomllib)"; exit 0; fi
if [ $rc = 4 ]; then fallback "a requirement is not from an index"; exit 0; fi
[ $rc = 0 ] || exit $rc
if [ -s {rest} ]; then
  echo "[verify] no single wheel in the pylock for: $(tr '\n' ' ' < {rest}); pip fetches them"
  {pinned}
fi
echo "[verify] requirements resolved by the native uv, wheels fetched by URL"
"""


def coexist_entry(entry: str) -> tuple[str, str]:
    """'requirement' or 'requirement:module' -> (requirement, module to import)."""
    req, _, module = entry.partition(":")
    if not module:
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        module = name.lower().replace("-", "_").replace(".", "_")
    return req.strip(), module.strip()


def _coexist(session: Session, recipe: Recipe, modules: list[str], env: dict[str, str]) -> None:
    """Import the wheel together with other packages, both orders (weak-symbol clashes
    depend on which library loads first)."""
    pairs = [coexist_entry(entry) for entry in recipe.test.coexist]
    session.run(
        "verify: coexist install",
        "python -m pip install " + " ".join(shlex.quote(req) for req, _mod in pairs),
        env=env,
        workdir=TEST_DIR,
    )
    for _req, mod in pairs:
        for first, second in ((modules, [mod]), ([mod], modules)):
            code = "; ".join(f"import {m}" for m in (*first, *second))
            session.run("verify: coexist", ["python", "-c", code], env=env, workdir=TEST_DIR)
