"""The build stage: the project copied into a fresh container and built with the job's
interpreter (`python -m build --wheel`)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from orchestrator.container.session import Session
from orchestrator.deps import glibcpin
from orchestrator.errors import OrchError
from orchestrator.pipeline.buildenv import (
    BUILD_ENV_DIR,
    EnvSource,
    NativeFetch,
    build_command,
    build_key,
    hook_backend,
    hook_command,
    hook_env,
    installer_env,
    prepare_build_env,
    script_tar,
)
from orchestrator.pipeline.wheelcache import WheelCache
from orchestrator.plan.jobs import Job
from orchestrator.recipe.model import Recipe
from orchestrator.util.archive import rooted_tar

SRC = "/orch/src"
DIST = "/orch/dist"
# Never copied into the container: VCS data and previous outputs.
EXCLUDED_NAMES = {
    ".git",
    ".hg",
    ".svn",
    ".tox",
    ".nox",
    ".venv",
    "__pycache__",
    "wheelhouse",
    ".orch",
}


def python_bin(job: Job) -> str:
    return f"/opt/python/{job.python_tag}/bin/python"


def project_tar(recipe: Recipe) -> bytes:
    """The project as a tar for the container: a copy (the user's tree is never mounted)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if recipe.project.kind == "sdist":
            tar.add(str(recipe.project.path), arcname=recipe.project.path.name)
        else:
            root = recipe.project.path
            tar.add(str(root), arcname="src", filter=_exclude(root))
    return buf.getvalue()


def _exclude(root: Path) -> Callable[[tarfile.TarInfo], tarfile.TarInfo | None]:
    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if any(p in EXCLUDED_NAMES or p.endswith(".egg-info") for p in parts[1:]):
            return None
        if len(parts) > 1 and parts[1] in ("build", "dist"):
            return None  # setuptools' leftovers from a host build
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    return keep


ONE_COPY_LIMIT = 8 << 20  # bytes: larger projects and prefixes go in one copy each


def copy_project(
    session: Session, recipe: Recipe, tar: bytes, more: Sequence[tuple[bytes, str]] = ()
) -> None:
    """The project at /orch, and `more` (tar, target directory) pairs such as the
    dependency prefix, in one engine copy: each copy costs the engine ~50 ms (it mounts the
    container's filesystem), and a warm job is mostly such fixed costs."""
    dirs = ("/orch", DIST, "/opt/orch")
    parts = [(tar, "/orch"), *more]
    if sum(len(t) for t, _d in parts) <= ONE_COPY_LIMIT:
        session.put_tar(rooted_tar(parts, dirs), "/")
    else:  # re-packing costs more than the copies it saves (~0.3 s for 50 MiB)
        session.mkdirs(*dirs)
        for data, target in parts:
            session.put_tar(data, target)
    if recipe.project.kind == "sdist":
        name = recipe.project.path.name
        session.run(
            "prepare",
            f"mkdir -p {SRC} && tar -xzf /orch/{name} -C {SRC} --strip-components=1 && rm /orch/{name}",
        )


def job_env(job: Job, image_env: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The job's interpreter first on PATH, so `python`/`pip` in before-build and in build
    backends' subprocesses mean the job's Python (as in cibuildwheel)."""
    path = image_env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return {"PATH": f"/opt/python/{job.python_tag}/bin:{path}", **extra}


FLAG_VARS = ("CFLAGS", "CPPFLAGS", "CXXFLAGS", "LDFLAGS")
PATH_VARS = ("PKG_CONFIG_PATH", "CMAKE_PREFIX_PATH")


def merge_env(base: Mapping[str, str], user: Mapping[str, str]) -> dict[str, str]:
    """The recipe's environment over the dependency flags: compiler flags and search
    paths are combined (a user's CFLAGS must not drop the prefix's -I), others replaced."""
    out = dict(base)
    for key, value in user.items():
        if key in out and key in FLAG_VARS:
            out[key] = f"{out[key]} {value}"
        elif key in out and key in PATH_VARS:
            out[key] = f"{value}:{out[key]}"
        else:
            out[key] = value
    return out


def build_wheel(
    session: Session,
    job: Job,
    recipe: Recipe,
    env: Mapping[str, str],
    cache: WheelCache,
    *,
    offline: bool = False,
    native: bool = False,
    env_mounted: bool = False,
    native_fetch: bool = False,
) -> EnvSource:
    """before-build, then the build with its isolated environment installed from the
    wheel cache (no index). `env_mounted`: the set's kept environment is mounted
    read-only at BUILD_ENV_DIR (job.py: only when the set is a hit). `native_fetch`: a
    miss fetches on the host and installs with the x86_64 uv (natfetch)."""
    pin = glibcpin.ceiling(job.policy, job.image_source)
    if pin:  # the header the job's CFLAGS -include (job.py), made from the image's glibc
        session.run("glibc pin", glibcpin.script(pin))
    for command in recipe.before_build:
        session.run("before-build", command, env=env, workdir=SRC)
    source = prepare_build_env(
        session,
        cache,
        build_key(recipe, job),
        python=python_bin(job),
        src=SRC,
        outdir=DIST,
        env=dict(env),
        offline=offline,
        native=native,
        with_tar=script_tar(),
        copy_wheels=not env_mounted,
        native_fetch=NativeFetch.of(recipe, job) if native_fetch else None,
    )
    session.log.line(source.line("build requirements", cache))
    if source.built:
        keep_env(session, cache, source.key)
        return source
    if source.status != "hit":  # a hit copied it in with the wheels
        session.put_tar(script_tar(), "/orch")
    restored = env_mounted or restore_env(session, cache, source.key)
    if env_mounted:
        session.log.line(f"[wheels] build environment mounted read-only ({source.key[:12]})")
    backend = hook_backend(recipe) if restored else None
    if backend is not None:
        session.run(
            "build",
            hook_command(backend, DIST),
            env=hook_env({**env, **installer_env(source)}),
            workdir=SRC,
        )
        return source
    session.run(
        "build",
        build_command(python_bin(job), DIST, SRC, source.dynamic),
        env={**env, **installer_env(source), **({"ORCH_ENV_RESTORED": "1"} if restored else {})},
        workdir=SRC,
    )
    if not restored:
        keep_env(session, cache, source.key)
    return source


def restore_env(session: Session, cache: WheelCache, key: str) -> bool:
    """The set's environment as an earlier build left it, if the cache has it: under
    QEMU, installing it and compiling the backend's bytecode on import are seconds of
    every warm build. Same image (the cache is per image id), same Python, same wheels."""
    try:
        data = cache.env_tar(key).read_bytes()
    except OSError:
        return False
    session.put_tar(data, str(PurePosixPath(BUILD_ENV_DIR).parent))
    session.log.line(f"[wheels] build environment restored ({len(data) >> 20} MiB, {key[:12]})")
    return True


def keep_env(session: Session, cache: WheelCache, key: str) -> None:
    """The environment after a successful build, for the next builds of this set (a cache
    that cannot take it is only a line in the log)."""
    try:
        cache.store_env(key, session.get(BUILD_ENV_DIR))
    except (OSError, OrchError) as exc:
        session.log.line(f"[wheels] warning: the build environment was not kept: {exc}")
