"""The build requirements of an emulated job, fetched by the host's pip.

Under QEMU, the fill's `pip wheel` and `pip download uv` are an emulated interpreter and
pip's imports: tens of CPU-seconds that compete with the accelerated dependency builds.
Fetching a wheel needs no target interpreter, only its tags: the host's pip downloads with
`--only-binary :all:` and the target's platforms, Python version and ABI, and the same
wheels land in the set. What cannot be had that way falls back to the emulated fetch:
a requirement with no wheel for the target (pip would build it), a marker that needs a
value only the target interpreter knows (its patch release), or an interpreter whose
tags this does not model (PyPy, free-threaded builds). Markers are evaluated with the
target's values (PIP_FOR_TARGET), as the emulated pip would."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from zipfile import BadZipFile, ZipFile

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from orchestrator import options
from orchestrator.container.hostenv import find_ca_bundle, host_env
from orchestrator.plan import catalog
from orchestrator.plan.jobs import Job

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

Log = Callable[[str], None]
DEFAULT_REQUIRES = ("setuptools >= 40.8.0",)  # build's, for a project without the table
# Marker variables whose target value is not known from the job (a patch release, the
# kernel): a marker naming one is not evaluated on the host's behalf.
UNKNOWN_VARS = (
    "python_full_version",
    "implementation_version",
    "platform_release",
    "platform_version",
)
TIMEOUT = 60  # seconds per pip request, unless PIP_DEFAULT_TIMEOUT says


@dataclass(frozen=True)
class Target:
    """What pip needs to pick the wheels the job's interpreter would pick."""

    python_version: str  # 3.11
    abi: str  # cp311
    platforms: tuple[str, ...]  # most specific first, as packaging orders them
    machine: str  # platform_machine in markers

    def pip_args(self) -> list[str]:
        args = ["--only-binary", ":all:", "--implementation", "cp"]
        args += ["--python-version", self.python_version, "--abi", self.abi]
        for platform in self.platforms:
            args += ["--platform", platform]
        return args

    def marker_env(self) -> dict[str, str]:
        return {
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "platform_machine": self.machine,
            "platform_system": "Linux",
            "sys_platform": "linux",
            "os_name": "posix",
            "python_version": self.python_version,
        }


def target_for(job: Job) -> Target | str:
    """The job's tags, or why the host cannot stand in for its interpreter."""
    interp, _, abi = job.python_tag.partition("-")
    if not interp.startswith("cp") or not abi.startswith("cp"):
        return f"{job.python_tag} is not CPython"
    if abi.endswith("t"):  # abi3 and its tag order differ for free-threaded builds
        return f"{job.python_tag} is free-threaded"
    arch = job.platform_tag[len(job.policy) + 1 :]
    platforms = platform_tags(_image_libc_policy(job), arch)
    if not arch or not platforms:
        return f"policy {job.policy} has no modelled platform tags"
    return Target(job.python, abi, platforms, job.arch)


def _image_libc_policy(job: Job) -> str:
    """The tags the job image's own pip accepts: its glibc's, which in a local image can be
    newer than the policy it repairs to (forky: glibc 2.43 for manylinux_2_39)."""
    have = catalog.newer_local_glibc(job.policy, job.image_source)
    return f"manylinux_{have[0]}_{have[1]}" if have else job.policy


def platform_tags(policy: str, arch: str) -> tuple[str, ...]:
    """packaging's platform tags for a libc of `policy`'s version, newest first."""
    if policy == "manylinux2014":
        policy = "manylinux_2_17"
    family, _, version = policy.partition("_")
    major, _, minor = version.partition("_")
    if not (major.isdigit() and minor.isdigit()):
        return ()
    if family == "manylinux" and major == "2" and int(minor) >= 17:
        tags = [f"manylinux_2_{m}_{arch}" for m in range(int(minor), 16, -1)]
        tags.append(f"manylinux2014_{arch}")  # 2_17's legacy alias, right after it
        return (*tags, f"linux_{arch}")
    if family == "musllinux" and major == "1":
        return (*(f"musllinux_1_{m}_{arch}" for m in range(int(minor), -1, -1)), f"linux_{arch}")
    return ()


def static_requires(pyproject: bytes | None) -> tuple[str, ...] | None:
    """`[build-system].requires` as `build` reads it, or None where `build` would fail
    (the emulated path then says why)."""
    if pyproject is None:
        return DEFAULT_REQUIRES
    try:
        data: Any = tomllib.loads(pyproject.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    table = data.get("build-system")
    if table is None:
        return DEFAULT_REQUIRES
    requires = table.get("requires") if isinstance(table, dict) else None
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        return None
    return tuple(sorted(requires))


# PIP_* settings the host's download either applies (index_args) or that do not change
# which wheels are chosen; any other (PIP_CONSTRAINT, PIP_PRE, PIP_NO_BINARY ...) would
# apply to the emulated pip only, so such a job keeps the emulated fetch.
NEUTRAL_PIP = frozenset(
    {
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_TRUSTED_HOST",
        "PIP_DEFAULT_TIMEOUT",
        "PIP_TIMEOUT",
        "PIP_RETRIES",
        "PIP_CERT",
        "PIP_CLIENT_CERT",
        "PIP_DISABLE_PIP_VERSION_CHECK",
        "PIP_NO_INPUT",
        "PIP_PROGRESS_BAR",
        "PIP_ROOT_USER_ACTION",
        "PIP_NO_CACHE_DIR",
        "PIP_CACHE_DIR",
        "PIP_NO_COLOR",
        "PIP_QUIET",
        "PIP_VERBOSE",
        "PIP_BREAK_SYSTEM_PACKAGES",
    }
)


def unmodelled_pip(settings: options.EnvSettings, env: Mapping[str, str] | None) -> str | None:
    """Why the host cannot stand in for the container's pip settings, or None."""
    given = {**host_env(settings, use_ca=False).env, **(env or {})}
    other = sorted(k for k in given if k.startswith("PIP_") and k not in NEUTRAL_PIP)
    return f"{', '.join(other)} set: the emulated pip applies it" if other else None


def index_args(settings: options.EnvSettings, env: Mapping[str, str] | None = None) -> list[str]:
    """The index the containers use (the PIP_* variables orch passes them, hostenv, and
    the recipe's `environment` in `env`; the CA bundle it mounts), not the host's own pip
    configuration (file indexes, find-links)."""
    args = ["--isolated", "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
    args += ["--retries", "1"]  # a stalled index: the emulated fetch (its own retries) soon
    given = {**host_env(settings, use_ca=False).env, **(env or {})}
    pip = {k: v for k, v in given.items() if k.startswith("PIP_")}
    if "PIP_INDEX_URL" in pip:
        args += ["--index-url", pip["PIP_INDEX_URL"]]
    for url in pip.get("PIP_EXTRA_INDEX_URL", "").split():
        args += ["--extra-index-url", url]
    for host in pip.get("PIP_TRUSTED_HOST", "").split():
        args += ["--trusted-host", host]
    timeout = pip.get("PIP_DEFAULT_TIMEOUT", "")
    args += ["--timeout", timeout if timeout.isdigit() else str(TIMEOUT)]
    ca = None if settings.no_host_ca else find_ca_bundle(settings)
    if ca is not None:
        args += ["--cert", str(ca)]
    return args


# pip evaluates environment markers with its own interpreter's values, whatever
# --python-version says: `tomli; python_version < "3.11"` would be left out of a cp39 set
# fetched by a 3.11 host. Its marker module asks default_environment() on every
# evaluation, so the target's values (Target.marker_env) are put there for this run.
# It also lists the sdists `--only-binary` skipped that would have been candidates (right
# format aside: the target's Python accepted), so that a newer release with no wheel for
# the target, which the emulated pip would build, is noticed (SDISTS line).
PIP_FOR_TARGET = """
import atexit, json, sys
from pip._vendor.packaging import markers
target, host = json.loads(sys.argv[1]), markers.default_environment
markers.default_environment = lambda: {**host(), **target}
from pip._internal.index import package_finder as pf
evaluate, skipped = pf.LinkEvaluator.evaluate_link, []
def evaluate_link(self, link):
    result = evaluate(self, link)
    if result[0] == pf.LinkType.format_unsupported and result[1].startswith("No sources"):
        formats, self._formats = self._formats, frozenset({"source", "binary"})
        try:
            again = evaluate(self, link)
        finally:
            self._formats = formats
        if again[0] == pf.LinkType.candidate:
            skipped.append((self.project_name, again[1]))
    return result
pf.LinkEvaluator.evaluate_link = evaluate_link
atexit.register(lambda: print("SDISTS", json.dumps(sorted(set(skipped))), flush=True))
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def download_command(
    target: Target, requirements: Sequence[str], dest: Path, index: Sequence[str], no_deps: bool
) -> list[str]:
    marker_env = json.dumps(target.marker_env(), sort_keys=True)
    cmd = [sys.executable, "-c", PIP_FOR_TARGET, marker_env, "download", *index]
    cmd += [*target.pip_args(), "--dest", str(dest), *(["--no-deps"] if no_deps else [])]
    return [*cmd, *requirements]


def fetch(
    target: Target,
    requirements: Sequence[str],
    dest: Path,
    log: Log,
    *,
    uv: bool = False,
    settings: options.EnvSettings | None = None,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """Download `requirements` (with their dependencies) and, with `uv`, the target's uv
    wheel into `dest`; None when done, else why not (then `dest` gained nothing)."""
    settings = settings or options.env()
    unmodelled = unmodelled_pip(settings, env)
    if unmodelled:
        return unmodelled
    index = index_args(settings, env)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        got = Path(tmp)
        asks = [(list(requirements), False)] if requirements else []
        asks += [(["uv"], True)] if uv else []
        sdists: list[tuple[str, str]] = []
        for reqs, no_deps in asks:
            why = _download(download_command(target, reqs, got, index, no_deps), log, sdists)
            if why:
                return why
        wheels = sorted(got.glob("*.whl"))
        why = marker_difference(requirements, wheels, target)
        why = why or newer_sdist(sdists, wheels, requirements, target)
        if why:
            return why
        for wheel in sorted(got.glob("*.whl")):
            wheel.replace(dest / wheel.name)
    return None


def _download(cmd: list[str], log: Log, sdists: list[tuple[str, str]]) -> str | None:
    log(f"[natfetch] pip {' '.join(cmd[4:])}")  # after the interpreter, script, markers
    started, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        return f"the host's pip could not run: {exc}"
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # CPU: all of orch's children that ended meanwhile (pip, mostly); for the benchmark
    log(f"[natfetch] host pip {time.monotonic() - started:.1f} s, cpu {cpu:.1f} s")
    for line in proc.stdout.splitlines():
        if line.startswith(("Saved ", "File was already")):
            log(f"[natfetch] {line}")
        elif line.startswith("SDISTS "):
            sdists.extend((str(n), str(v)) for n, v in json.loads(line[7:]))
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"the host's pip found no wheel set for the target ({last})"
    return None


def marker_difference(
    requirements: Iterable[str], wheels: Iterable[Path], target: Target
) -> str | None:
    """A requirement (given, or of a fetched wheel) whose marker needs a value of the
    target interpreter that the job does not tell (its patch release, its kernel): pip
    evaluated it with a stand-in. None if there is none."""
    reqs = [*requirements, *(r for w in wheels for r in requires_dist(w))]
    for text in reqs:
        req = _parse(text)
        if req is None:
            return f"cannot read requirement {text!r}"
        if req.marker is not None and any(v in str(req.marker) for v in UNKNOWN_VARS):
            return f"{text!r}: its marker names a value only the target interpreter knows"
    return None


def newer_sdist(
    sdists: Iterable[tuple[str, str]],
    wheels: Iterable[Path],
    requirements: Iterable[str],
    target: Target,
) -> str | None:
    """A release newer than the wheel taken, allowed by every requirement on it, that has
    only an sdist for the target: the emulated pip would build it, so the host's pick
    would differ. None if there is none (pre-releases aside, as pip leaves them)."""
    wheels = list(wheels)
    chosen: dict[str, Version] = {}
    for wheel in wheels:
        try:
            name, version, _, _ = parse_wheel_filename(wheel.name)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        chosen[name] = version
    allowed: dict[str, SpecifierSet] = {}
    env = {**{k: str(v) for k, v in default_environment().items()}, **target.marker_env()}
    for text in [*requirements, *(r for w in wheels for r in requires_dist(w))]:
        req = _parse(text)
        if req and (req.marker is None or req.marker.evaluate({**env, "extra": ""})):
            name = canonicalize_name(req.name)
            allowed[name] = allowed.get(name, SpecifierSet()) & req.specifier
    for project, text in sdists:
        name = canonicalize_name(project)
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if name not in chosen or version.is_prerelease or version <= chosen[name]:
            continue
        if allowed.get(name, SpecifierSet()).contains(version, prereleases=False):
            return f"{project} {version} has no wheel for the target (pip would build its sdist)"
    return None


def _parse(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def requires_dist(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist lines."""
    try:
        with ZipFile(wheel) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            meta = BytesParser().parsebytes(zf.read(name), headersonly=True)
    except (OSError, BadZipFile, StopIteration):
        return []
    return [str(v) for v in meta.get_all("Requires-Dist") or []]
