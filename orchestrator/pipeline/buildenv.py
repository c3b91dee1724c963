"""The build environment from the wheel cache: `python -m build` installs its isolated
environment with no index, from the wheels of this image x arch's cache. On a miss the
build requirements (static `[build-system].requires` and the backend's dynamic
`get_requires_for_build_wheel`) are fetched once into the cache, then the build runs
offline the same way."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.container.session import Session, StageFailed
from orchestrator.pipeline import natfetch
from orchestrator.pipeline.nativeuv import FALLBACK_VERSION, available, native_uv, version_of
from orchestrator.pipeline.wheelcache import WheelCache, set_key, wheels_from_tar
from orchestrator.plan.jobs import Job
from orchestrator.recipe.model import Recipe
from orchestrator.util.archive import rooted_tar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

WHEELS = "/orch/wheels"
TOOLS = "/orch/tools"  # the cache's extracted tools, mounted read-only
FILL_PATH = "/orch/fill_build_requirements.py"
REQUIRES = "orch-requires.json"  # the fill's record of static and dynamic requirements
HOOK_PATH = "/orch/hook/build_wheel.py"  # alone in its directory: sys.path[0] holds nothing else
DEFAULT_BACKEND = "setuptools.build_meta:__legacy__"  # build's, for a project without one
# Files whose content can change what a setuptools project asks for dynamically.
SETUPTOOLS_FILES = ("setup.py", "setup.cfg")
SETUPTOOLS_BACKENDS = ("setuptools.build_meta", "setuptools.build_meta:__legacy__")

BUILD_ENV_DIR = "/tmp/orch-build-env"  # the isolated environment: one per container
# Run in the job's interpreter. "fill" (a miss): fetch the static requirements (and uv, if
# this build can use it), make the isolated environment offline from them, ask the backend
# for its dynamic requirements, fetch those, and build the wheel in that same environment.
# "build" (a hit): the same with everything already at `fill` (python -m build's steps).
# The environment is always at BUILD_ENV_DIR, never a random temporary directory: its
# include directory is on the compiler's command line (-I<env>/include), and a path that
# changed every run would make every compile a compile-cache miss.
FILL_SCRIPT = r"""
import glob, json, os, subprocess, sys, tempfile, time, zipfile
from build import BuildBackendException, BuildException, ProjectBuilder
from build.env import DefaultIsolatedEnv
mode, src, fill, outdir, env_dir = sys.argv[1:6]
REQUIRES = "orch-requires.json"
known = json.loads(sys.argv[6]) if len(sys.argv) > 6 else None  # dynamic requirements
_mkdtemp = tempfile.mkdtemp
def _env_dir(*args, **kwargs):
    tempfile.mkdtemp = _mkdtemp  # only the environment's own directory is fixed
    os.makedirs(env_dir)
    return env_dir
tempfile.mkdtemp = _env_dir
# kept when the build ends (the container is thrown away): the host keeps a copy for the
# next builds of this set, with the bytecode its imports compiled
DefaultIsolatedEnv.__exit__ = lambda self, *args: None
pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
OFFLINE = dict(PIP_NO_INDEX="1", PIP_FIND_LINKS=fill, UV_OFFLINE="1", UV_NO_INDEX="1",
               UV_FIND_LINKS=fill)
def fetch(reqs):
    if reqs:
        subprocess.run([*pip, "wheel", "--wheel-dir", fill, "--find-links", fill, *reqs],
                       check=True)
def uv_binary():
    try:
        from build.env import Installer  # build >= 1.2 installs with uv
    except ImportError:
        return None
    subprocess.run([*pip, "download", "--no-deps", "--only-binary", ":all:", "--dest", fill,
                    "uv"], check=False)
    for wheel in glob.glob(os.path.join(fill, "uv-*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.endswith(".data/scripts/uv"):
                    with open("/tmp/orch-uv", "wb") as f:
                        f.write(zf.read(name))
                    os.chmod("/tmp/orch-uv", 0o755)
                    return "/tmp/orch-uv"
    return None
def host_uv():
    # the x86_64 uv the host named (UV); with a `build` that cannot use uv, pip installs
    # and the set holds no uv wheel, as the emulated fetch would have left it
    try:
        from build.env import Installer  # build >= 1.2 installs with uv
    except ImportError:
        for wheel in glob.glob(os.path.join(fill, "uv-*.whl")):
            os.remove(wheel)
        return None
    return os.environ.get("UV") or None
class Restored:
    # the environment of an earlier build of this set, restored from the cache with the
    # bytecode its imports compiled: nothing to install, nothing to compile again
    python_executable = os.path.join(env_dir, "bin", "python")
    def make_extra_environ(self):
        path = os.environ.get("PATH")
        scripts = os.path.join(env_dir, "bin")
        return {"PATH": os.pathsep.join([scripts, path]) if path else scripts, "PYTHONPATH": ""}
    def install(self, requirements, constraints=()):
        pass
def build():
    if os.environ.get("ORCH_ENV_RESTORED") == "1":
        tempfile.mkdtemp = _mkdtemp  # the environment is there already
        t = time.monotonic()
        builder = ProjectBuilder.from_isolated_env(Restored(), src)
        print("built", builder.build("wheel", outdir), flush=True)
        print(f"[time] build_wheel (restored environment): {time.monotonic() - t:.1f} s")
        return
    try:
        from build.env import Installer  # build >= 1.2 installs with uv
        kwargs = {"installer": "uv"} if os.environ.get("UV") else {}
    except ImportError:
        kwargs = {}
    t = time.monotonic()
    def step(what):  # the job log's per-step times: which part of a build is slow
        nonlocal t
        print(f"[time] {what}: {time.monotonic() - t:.1f} s", flush=True)
        t = time.monotonic()
    with DefaultIsolatedEnv(**kwargs) as env:
        step("isolated environment")
        builder = ProjectBuilder.from_isolated_env(env, src)
        if known is not None:  # recorded when the set was filled: no hook, one install
            env.install(set(builder.build_system_requires) | set(known))
            step("install build-system.requires and the recorded dynamic requirements")
        else:
            env.install(builder.build_system_requires)
            step("install build-system.requires")
            env.install(builder.get_requires_for_build("wheel"))
            step("get_requires_for_build_wheel and install")
        print("built", builder.build("wheel", outdir), flush=True)
        step("build_wheel")
def main():
    if mode == "build":
        return build()
    static = sorted(ProjectBuilder(src).build_system_requires)
    fetched = os.environ.get("ORCH_FETCHED")  # the host fetched them (and uv) natively
    if fetched is None:
        fetch(static)
        uv = uv_binary()
    else:
        uv = host_uv()
        if sorted(json.loads(fetched)) != static:
            print("[wheels] build reads other static requirements than the host:", static,
                  "- fetched with emulated pip", flush=True)
            fetch(static)
    os.environ.update(OFFLINE, **({"UV": uv} if uv else {}))
    with DefaultIsolatedEnv(**({"installer": "uv"} if uv else {})) as env:
        builder = ProjectBuilder.from_isolated_env(env, src)
        env.install(static)
        dynamic = sorted(builder.get_requires_for_build("wheel"))
        if dynamic and fetched is not None:  # the host fetches them, then installs them
            with open(os.path.join(fill, REQUIRES), "w") as f:
                json.dump({"static": static, "dynamic": dynamic}, f)
            print("[wheels] static:", static, "dynamic:", dynamic, "(for the host to fetch)",
                  flush=True)
            return
        if dynamic:
            for name in ("PIP_NO_INDEX", "UV_OFFLINE", "UV_NO_INDEX"):
                del os.environ[name]
            fetch(dynamic)
            os.environ.update(OFFLINE)
            env.install(dynamic)
        print("[wheels] static:", static, "dynamic:", dynamic, "installer:", "uv" if uv else "pip",
              flush=True)
        with open(os.path.join(fill, REQUIRES), "w") as f:
            json.dump({"static": static, "dynamic": dynamic}, f)
        if mode == "fill":  # "prefetch": the environment only, the job builds later
            print("built", builder.build("wheel", outdir))
try:
    main()
except (BuildBackendException, BuildException, subprocess.CalledProcessError) as exc:
    # the backend's own output is above; a traceback of this script would only hide it
    print(f"ERROR: {exc}", file=sys.stderr, flush=True)
    sys.exit(1)
"""


# A restored environment needs no installs: the backend's build_wheel hook is called
# directly by the environment's interpreter, as pyproject-hooks' in-process script does
# (same working directory, PATH and PYTHONPATH), without the `build` front end's own
# Python process in front of it (under QEMU, a second emulated interpreter and its imports).
HOOK_SCRIPT = r"""
import importlib, os, sys, time
backend, outdir = sys.argv[1:3]
t = time.monotonic()
module, _, attrs = backend.partition(":")
hooks = importlib.import_module(module)
for attr in filter(None, attrs.split(".")):
    hooks = getattr(hooks, attr)
name = hooks.build_wheel(os.path.abspath(outdir), None, None)
print("built", os.path.join(outdir, name), flush=True)
print(f"[time] build_wheel (restored environment, hook called directly): "
      f"{time.monotonic() - t:.1f} s", flush=True)
"""


@dataclass(frozen=True)
class EnvSource:
    """Where a job's build (or verify) environment came from, for the log and report."""

    status: str  # hit | miss
    wheels: int
    key: str
    uv: str | None = None  # the uv binary in the container, if the set has one
    built: bool = False  # a miss builds the wheel while it fills the cache
    # the backend's get_requires_for_build_wheel when the set was filled: the key holds
    # everything it depends on, so a hit installs them without asking (one emulated
    # Python and backend import fewer); None for a set filled before they were recorded
    dynamic: tuple[str, ...] | None = None

    def line(self, what: str, cache: WheelCache) -> str:
        installer = f"uv ({self.uv})" if self.uv else "pip"
        return (
            f"[wheels] {what}: {self.status}, {self.wheels} wheel(s) in {cache.root} "
            f"(set {self.key[:12]}), installer {installer}"
        )


def _script_tar() -> bytes:
    """FILL_PATH and HOOK_PATH, for extraction at /orch."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        hook_dir = tarfile.TarInfo(Path(HOOK_PATH).parent.name)
        hook_dir.type, hook_dir.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(hook_dir)
        for path, text in ((FILL_PATH, FILL_SCRIPT), (HOOK_PATH, HOOK_SCRIPT)):
            data = text.encode()
            info = tarfile.TarInfo(str(Path(path).relative_to("/orch")))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def offline_env(find_links: str) -> dict[str, str]:
    """pip with no index: everything from `find_links`."""
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": find_links,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def build_key(recipe: Recipe, job: Job) -> str:
    """The build requirements' key: the interpreter and what decides the requirements."""
    files = project_files(recipe, ("pyproject.toml", *SETUPTOOLS_FILES))
    return set_key("build", job.python_tag, requirement_inputs(files))


def requirement_inputs(files: dict[str, bytes]) -> dict[str, str]:
    """The `[build-system]` table; for setuptools also setup.py/setup.cfg (setup_requires),
    for any other backend the whole pyproject.toml (its dynamic requirements may depend on
    any of it)."""
    raw = files.get("pyproject.toml", b"")
    try:
        table: Any = tomllib.loads(raw.decode()).get("build-system", {})
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        table = None
    parts = {"build-system": json.dumps(table, sort_keys=True)}
    backend = table.get("build-backend") if isinstance(table, dict) else None
    if table is None or (backend and backend not in SETUPTOOLS_BACKENDS):
        parts["pyproject.toml"] = hashlib.sha256(raw).hexdigest()
    for name in SETUPTOOLS_FILES:
        if name in files:
            parts[name] = hashlib.sha256(files[name]).hexdigest()
    return parts


def hook_backend(recipe: Recipe) -> str | None:
    """The build backend a restored environment's build calls directly, or None where
    only the `build` front end keeps the semantics: an in-tree backend (backend-path),
    or a pyproject.toml this cannot read."""
    raw = project_files(recipe, ("pyproject.toml",)).get("pyproject.toml", b"")
    try:
        table: Any = tomllib.loads(raw.decode()).get("build-system", {})
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if not isinstance(table, dict) or "backend-path" in table:
        return None
    backend = table.get("build-backend", DEFAULT_BACKEND)
    return backend if isinstance(backend, str) and backend else None


def hook_command(backend: str, outdir: str) -> list[str]:
    """The restored environment's interpreter calling `backend`'s build_wheel (HOOK_SCRIPT)."""
    return [f"{BUILD_ENV_DIR}/bin/python", HOOK_PATH, backend, outdir]


def hook_env(env: Mapping[str, str]) -> dict[str, str]:
    """What build's isolated environment gives its backend: its scripts first on PATH
    and no PYTHONPATH."""
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    return {**env, "PATH": f"{BUILD_ENV_DIR}/bin:{path}", "PYTHONPATH": ""}


def project_files(recipe: Recipe, names: tuple[str, ...]) -> dict[str, bytes]:
    """The named top-level files of the project (a directory or an sdist) that exist."""
    path = recipe.project.path
    if recipe.project.kind != "sdist":
        return {n: (path / n).read_bytes() for n in names if (path / n).is_file()}
    out: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) == 2 and parts[1] in names and member.isfile():
                data = tar.extractfile(member)
                if data is not None:
                    out[parts[1]] = data.read()
    return out


def prepare_build_env(
    session: Session,
    cache: WheelCache,
    key: str,
    *,
    python: str,
    src: str,
    outdir: str,
    env: dict[str, str],
    offline: bool,
    native: bool = False,
    with_tar: bytes = b"",
    copy_wheels: bool = True,
    native_fetch: NativeFetch | None = None,
) -> EnvSource:
    """Put the build requirements' wheels at WHEELS; on a miss fill the cache from the
    index and build the wheel on the way (`built`). `native`: an emulated container,
    whose installs run the x86_64 uv of the set's release (nativeuv). `with_tar`: more
    for /orch, copied with the wheels on a hit (one engine copy: ~50 ms each).
    `copy_wheels` False: a hit needs no wheels in the container (its kept environment is
    mounted: nothing is installed)."""
    with cache.filling(key, session.cancel):
        found = cache.lookup(key)
        if found is not None:
            wheels = found.tar("wheels", skip=("uv-",)) if copy_wheels else b""
            parts = [(t, "/orch") for t in (wheels, with_tar) if t]
            if len(parts) == 1:
                session.put_tar(parts[0][0], "/orch")
            elif parts:
                session.put_tar(rooted_tar(parts), "/")
            uv = _uv(cache, found.wheels)
            fetched = _native_uv(found.wheels, session.log.line) if available() else None
            if native:  # the set's release, or (a set without uv) the one orch pins
                uv = fetched or native_uv(FALLBACK_VERSION, session.log.line) or uv
            return EnvSource("hit", len(found.wheels), key, uv, dynamic=_dynamic(found.note))
        if offline:
            raise StageFailed(
                "build",
                f"offline and the wheel cache {cache.root} has no build requirements for "
                "this project and Python: run once with the network to fill it",
            )
        if not copy_wheels:  # the kept environment was mounted: it cannot be filled
            raise StageFailed(
                "build",
                f"the build requirements' set {key[:12]} in {cache.root} changed after this "
                "job mounted its kept environment (another run refilled it): build again",
            )
        return fill_set(
            session,
            cache,
            key,
            python=python,
            src=src,
            outdir=outdir,
            env=env,
            mode="fill",
            native=native_fetch,
        )


@dataclass(frozen=True)
class NativeFetch:
    """An emulated job whose fill fetches with the host's pip and installs with the
    x86_64 uv (natfetch): only the backend's hook needs the target interpreter."""

    job: Job
    pyproject: bytes | None  # None: the project has none (build's default table)

    @staticmethod
    def of(recipe: Recipe, job: Job) -> NativeFetch:
        return NativeFetch(job, project_files(recipe, ("pyproject.toml",)).get("pyproject.toml"))


def fill_set(
    session: Session,
    cache: WheelCache,
    key: str,
    *,
    python: str,
    src: str,
    outdir: str,
    env: dict[str, str],
    mode: str,
    native: NativeFetch | None = None,
) -> EnvSource:
    """A miss, with the set's lock held: fetch the build requirements from the index into
    the cache; "fill" also builds the wheel, "prefetch" (run.py, while the dependencies
    build) only makes the environment. `native`: fetched on the host where it can be."""
    session.run("build", ["mkdir", "-p", WHEELS])
    session.put_tar(_script_tar(), "/orch")
    fetched = _fetch_static(session, native, env) if native else None
    session.run(
        "build",
        [python, FILL_PATH, mode, src, WHEELS, outdir, BUILD_ENV_DIR],
        env={**env, **(fetched or {})},
        workdir=src,
    )
    if native and fetched:
        dynamic = _requires(session.get(f"{WHEELS}/{REQUIRES}")).get("dynamic", [])
        if dynamic:  # the script left them to the host: fetch, install, then build
            _fill_dynamic(session, native, dynamic, python=python, uv=fetched["UV"], env=env)
            if mode == "fill":
                session.run(
                    "build",
                    build_command(python, outdir, src, tuple(dynamic)),
                    env={**env, **offline_env(WHEELS), "ORCH_ENV_RESTORED": "1"},
                    workdir=src,
                )
    fetched_tar = session.get(WHEELS)
    wheels = wheels_from_tar(fetched_tar)
    note = {"purpose": "build", **_requires(fetched_tar)}
    stored = cache.store_or_warn(key, wheels, note, session.log.line)
    if stored is None:  # built all the same; the next run fills the cache again
        return EnvSource("miss", len(wheels), key, None, built=True)
    if available():  # for this job's verification already
        _native_uv(stored.wheels, session.log.line)
    return EnvSource("miss", len(stored.wheels), key, _uv(cache, stored.wheels), built=True)


def _fetch_static(
    session: Session, native: NativeFetch, env: Mapping[str, str]
) -> dict[str, str] | None:
    """The static requirements and the target's uv wheel, fetched by the host into the
    container's WHEELS; the script's environment for that, or None (the emulated fetch)."""
    log = session.log.line
    target = natfetch.target_for(native.job)
    static = natfetch.static_requires(native.pyproject)
    why = target if isinstance(target, str) else None
    if static is None:
        why = "the build-system table is not readable here"
    if isinstance(target, str) or static is None:
        log(f"[wheels] emulated pip fetches the build requirements: {why}")
        return None
    with tempfile.TemporaryDirectory(prefix="orch-natfetch-") as tmp:
        why = natfetch.fetch(target, static, Path(tmp), log, uv=True, env=env)
        wheels = sorted(Path(tmp).glob("*.whl"))
        versions = [v for v in (version_of(w.name) for w in wheels) if v]
        uv = native_uv(versions[0], log) if versions and not why else None
        if uv is None:
            log(f"[wheels] emulated pip fetches the build requirements: {why or 'no native uv'}")
            return None
        session.put_tar(_wheels_tar(wheels), WHEELS)
    log(
        f"[wheels] {len(wheels)} wheel(s) fetched natively for {target.platforms[0]} cp{target.abi[2:]}"
    )
    return {"ORCH_FETCHED": json.dumps(list(static)), "UV": uv}


def _fill_dynamic(
    session: Session,
    native: NativeFetch,
    dynamic: list[str],
    *,
    python: str,
    uv: str,
    env: dict[str, str],
) -> None:
    """The backend's dynamic requirements: fetched by the host (else by emulated pip, as
    without natfetch) and installed into the environment by the x86_64 uv."""
    target = natfetch.target_for(native.job)
    assert not isinstance(target, str)  # _fetch_static checked it
    with tempfile.TemporaryDirectory(prefix="orch-natfetch-") as tmp:
        why = natfetch.fetch(target, dynamic, Path(tmp), session.log.line, env=env)
        if why is None:
            session.put_tar(_wheels_tar(sorted(Path(tmp).glob("*.whl"))), WHEELS)
    if why is not None:
        session.log.line(f"[wheels] emulated pip fetches the dynamic requirements: {why}")
        pip = [python, "-m", "pip", "--disable-pip-version-check", "wheel"]
        session.run(
            "build", [*pip, "--wheel-dir", WHEELS, "--find-links", WHEELS, *dynamic], env=env
        )
    offline = {"UV_OFFLINE": "1", "UV_NO_INDEX": "1", "UV_FIND_LINKS": WHEELS}
    install = [uv, "pip", "install", *dynamic, "--python", f"{BUILD_ENV_DIR}/bin/python"]
    session.run("build", install, env={**env, **offline})


def _wheels_tar(wheels: list[Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for wheel in wheels:
            tar.add(str(wheel), arcname=wheel.name)
    return buf.getvalue()


def _requires(tar: bytes) -> dict[str, list[str]]:
    """The static and dynamic requirements the fill recorded (REQUIRES), if it did."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            if Path(member.name).name == REQUIRES and member.isfile():
                data = archive.extractfile(member)
                try:
                    found = json.loads(data.read()) if data else {}
                except ValueError:
                    return {}
                return {k: [str(r) for r in found.get(k, [])] for k in ("static", "dynamic")}
    return {}


def _dynamic(note: Mapping[str, object]) -> tuple[str, ...] | None:
    dynamic = note.get("dynamic")
    if isinstance(dynamic, list) and all(isinstance(r, str) for r in dynamic):
        return tuple(dynamic)
    return None


def _native_uv(wheels: tuple[Path, ...], log: Callable[[str], None]) -> str | None:
    for wheel in wheels:
        version = version_of(wheel.name)
        if version:
            return native_uv(version, log)
    return None


def _uv(cache: WheelCache, wheels: tuple[Path, ...]) -> str | None:
    """The container path of the set's uv binary (extracted once into the cache's tools)."""
    for wheel in wheels:
        if wheel.name.startswith("uv-"):
            found = cache.tool(wheel, "uv")
            return f"{TOOLS}/{found.relative_to(cache.tools).as_posix()}" if found else None
    return None


def build_command(
    python: str, outdir: str, src: str, dynamic: tuple[str, ...] | None = None
) -> list[str]:
    """`python -m build --wheel`'s steps, in the environment at BUILD_ENV_DIR (installed
    with uv when UV names it: installer_env); with the set's recorded dynamic
    requirements, the backend is not asked for them again."""
    known = [] if dynamic is None else [json.dumps(list(dynamic))]
    return [python, FILL_PATH, "build", src, WHEELS, outdir, BUILD_ENV_DIR, *known]


def script_tar() -> bytes:
    return _script_tar()


def installer_env(source: EnvSource) -> dict[str, str]:
    """pip and uv with no index: everything from the wheels put in the container."""
    env = offline_env(WHEELS)
    if source.uv:
        env.update(UV=source.uv, UV_OFFLINE="1", UV_NO_INDEX="1", UV_FIND_LINKS=WHEELS)
    return env
