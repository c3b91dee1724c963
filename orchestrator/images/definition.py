"""What a local image is made of, and the hashes that name its parts.

A local image for one architecture is built in content-addressed steps, each named by a
hash of exactly what goes into it:

- the **base** (``Dockerfile``): debootstrap root, runtime libraries, Debian's interpreter;
  its build variant adds the toolchain. Named by the suite's packages and pip pins and the
  base scripts.
- the **CPython builder** (``Dockerfile.cpython``): the root plus CPython's build headers.
- one **interpreter** per source-built CPython: compiled in the builder, cached as a
  tarball keyed by its spec (builder, package, flags) and its source tarball's sha256.
- the **job image**: base + the interpreters a plan needs (a small derived image). With
  Debian's interpreter only, it is the base itself.

Everything here is pure (files in, values out): computing a tag never touches Docker, so
callers can name an image before it exists, and a change gives a new tag only to the
parts it touches (a new base package does not recompile an interpreter).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from orchestrator import archs
from orchestrator.archs import Arch
from orchestrator.errors import ConfigError

# Bump when the way a definition turns into an image changes outside the hashed files.
FORMAT_VERSION = 2
ROOTFS_FORMAT_VERSION = 1
INTERPRETER_FORMAT_VERSION = 1
REPOSITORY = "orch-local"
VARIANTS = ("runtime", "build")
BUILDER = "cpython-builder"
DEFINITION_SUBDIR = "local"
DOCKERFILE = "Dockerfile"
BUILDER_DOCKERFILE = "Dockerfile.cpython"
SCRIPTS_SUBDIR = "scripts"
BASE_SCRIPTS = ("common.sh", "setup-runtime.sh", "setup-build.sh")
BUILDER_SCRIPTS = ("common.sh",)
CPYTHON_SCRIPT = "build-cpython.sh"  # copied into each compile container
# PYTHON_FOR_BUILD of emulated compiles: byte-compiles with the host's interpreter.
NATIVE_PYC_SCRIPT = "native-pyc.sh"
DERIVED_SCRIPT = "add-pythons.sh"
# The recipe's default Pythons (recipe/load.py): what an image has when nobody asks.
DEFAULT_VERSIONS = ("3.9", "3.11")

_PY_TAG = re.compile(r"^cp(\d)(\d+)(t?)(?:-cp\d+(t?))?$")
_PY_VERSION = re.compile(r"^(\d)\.(\d+)(t?)$")


@dataclass(frozen=True)
class SourcePython:
    """An interpreter compiled from the upstream tarball of a Debian source package."""

    tag: str  # cp313-cp313t
    suite: str  # the suite whose source package provides the tarball
    package: str  # python3.13
    free_threaded: bool = False  # configure --disable-gil


@dataclass(frozen=True)
class SuiteDefinition:
    suite: str
    glibc: str
    policy: str
    debian_python_tag: str
    debian_python_exe: str
    source_pythons: Mapping[str, SourcePython]
    packages: Mapping[str, tuple[str, ...]]
    pip: Mapping[str, tuple[str, ...]]
    path: Path
    # Further interpreters Debian ships in the suite (tag -> executable): a venv each, made
    # in the job image like a compiled interpreter's (the base keeps one Debian Python).
    debian_extra: Mapping[str, str] = field(default_factory=dict)
    # Tags known not to be offered, with the reason `orch plan` gives for them.
    unavailable: Mapping[str, str] = field(default_factory=dict)

    def available(self) -> tuple[str, ...]:
        """Every interpreter tag an image of this suite can carry, oldest first."""
        tags = {self.debian_python_tag, *self.debian_extra, *self.source_pythons}
        return tuple(sorted(tags, key=version_key))

    def debian_tags(self) -> tuple[str, ...]:
        """Debian's own interpreters: no compile, only a venv."""
        return (self.debian_python_tag, *self.debian_extra)


def images_dir() -> Path:
    """The image definitions: packaged data in a wheel, else the source checkout's images/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_data" / "images", here.parent / "images"):
        if (candidate / DEFINITION_SUBDIR / DOCKERFILE).is_file():
            return candidate
    raise ConfigError(f"image definitions not found (looked in {here / '_data'} and {here.parent})")


def definition_dir() -> Path:
    return images_dir() / DEFINITION_SUBDIR


def available_suites() -> list[str]:
    return sorted(p.stem for p in definition_dir().glob("*.yaml"))


def load_suite(suite: str) -> SuiteDefinition:
    path = definition_dir() / f"{suite}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no local image definition for suite {suite!r} "
            f"(available: {', '.join(available_suites())})"
        )
    stat = path.stat()
    return _load_suite_file(path, stat.st_mtime_ns, stat.st_size)


@functools.cache  # planning asks for image tags per policy/arch: parse each file version once
def _load_suite_file(path: Path, _mtime_ns: int, _size: int) -> SuiteDefinition:
    return _parse_suite(path, path.read_text())


def _parse_suite(path: Path, text: str) -> SuiteDefinition:
    try:
        raw: dict[str, Any] = yaml.safe_load(text)
        sources = {
            normalize_python(tag): _source_python(normalize_python(tag), v)
            for tag, v in (raw.get("source_pythons") or {}).items()
        }
        debian = _debian_pythons(raw["debian_python"])
        first, extra = debian[0], dict(debian[1:])
        _check_distinct(first[0], extra, sources)
        return SuiteDefinition(
            suite=str(raw["suite"]),
            glibc=str(raw["glibc"]),
            policy=str(raw["policy"]),
            debian_python_tag=first[0],
            debian_python_exe=first[1],
            source_pythons=sources,
            packages={k: tuple(map(str, v)) for k, v in raw["packages"].items()},
            pip={k: tuple(map(str, v)) for k, v in raw["pip"].items()},
            path=path,
            debian_extra=extra,
            unavailable={
                normalize_python(t): str(why) for t, why in (raw.get("unavailable") or {}).items()
            },
        )
    except (KeyError, TypeError, AttributeError, yaml.YAMLError, ConfigError) as exc:
        raise ConfigError(f"malformed image definition {path}: {exc}") from exc


def _debian_pythons(raw: Any) -> list[tuple[str, str]]:
    """`debian_python`: one {tag, executable}, or a list of them; the first is the base's
    (the tools run with it), the others are added per job image."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ConfigError("debian_python: the list is empty (name at least one interpreter)")
    return [(normalize_python(str(i["tag"])), str(i["executable"])) for i in items]


def _check_distinct(first: str, extra: Mapping[str, str], sources: Mapping[str, Any]) -> None:
    both = sorted(({first} | set(extra)) & set(sources))
    if both or first in extra:
        twice = ", ".join(both or [first])
        raise ConfigError(f"{twice}: named twice (debian_python and source_pythons, or twice)")


def _source_python(tag: str, raw: Mapping[str, Any]) -> SourcePython:
    free = bool(raw.get("free_threaded", False))
    if free != tag.endswith("t"):
        raise ConfigError(f"source_pythons: {tag}: free_threaded must be {not free} for this tag")
    return SourcePython(tag, str(raw["suite"]), str(raw["package"]), free)


# --- interpreter names ----------------------------------------------------------------


def normalize_python(tag: str) -> str:
    """'cp313t', 'cp313-cp313t' and '3.13t' all name cp313-cp313t (cibuildwheel's layout)."""
    text = tag.strip()
    version = _PY_VERSION.fullmatch(text)
    if version:
        text = f"cp{version.group(1)}{version.group(2)}{version.group(3)}"
    match = _PY_TAG.match(text)
    if not match:
        raise ConfigError(
            f"not a CPython tag: {tag!r} (expected e.g. cp311, cp313t, cp311-cp311 or 3.13t)"
        )
    short = f"cp{match.group(1)}{match.group(2)}"
    return f"{short}-{short}{'t' if match.group(3) or match.group(4) else ''}"


def version_of(tag: str) -> str:
    """cp313-cp313t -> '3.13t' (the spelling of a recipe's `python` list)."""
    major, minor, free = version_key(normalize_python(tag))
    return f"{major}.{minor}{'t' if free else ''}"


def version_key(tag: str) -> tuple[int, int, int]:
    match = _PY_TAG.match(tag)
    if not match:
        raise ConfigError(f"not a CPython tag: {tag!r}")
    return int(match.group(1)), int(match.group(2)), int(bool(match.group(3) or match.group(4)))


def default_pythons(defn: SuiteDefinition, arch: str, host: str | None = None) -> tuple[str, ...]:
    """What an image has when nobody asks: the recipe's default Pythons where the host runs
    the architecture natively; Debian's own interpreter alone where it is emulated
    (compiling CPython under plain QEMU takes the better part of an hour)."""
    if not archs.runs_natively(arch, host):
        return (defn.debian_python_tag,)
    wanted = {normalize_python(v) for v in DEFAULT_VERSIONS}
    return tuple(t for t in defn.available() if t in wanted) or (defn.debian_python_tag,)


def resolve_pythons(
    defn: SuiteDefinition, arch: str, pythons: tuple[str, ...] | None, host: str | None = None
) -> tuple[str, ...]:
    if pythons is None:
        return default_pythons(defn, arch, host)
    # Debian's interpreter is in every base, so it is in every image.
    tags = sorted({defn.debian_python_tag, *map(normalize_python, pythons)}, key=version_key)
    known = defn.available()
    unknown = [t for t in tags if t not in known]
    if unknown:
        why = "".join(f"; {t}: {defn.unavailable[t]}" for t in unknown if t in defn.unavailable)
        raise ConfigError(
            f"interpreters {', '.join(unknown)} are not available for "
            f"{defn.suite} local images (available: {', '.join(known)}){why}"
        )
    return tuple(tags)


def setarch_for(arch: Arch) -> str:
    """32-bit images run under a 32-bit personality so `uname -m` matches the userland."""
    return "linux32" if arch.bits == 32 else ""


# --- the steps ------------------------------------------------------------------------


@dataclass(frozen=True)
class BasePlan:
    """The base images of one architecture: rootfs + runtime (+ toolchain for build)."""

    defn: SuiteDefinition
    arch: Arch
    buildargs: Mapping[str, str]
    digest: str
    rootfs_key: str

    @property
    def plat(self) -> str:
        return f"{self.defn.policy}_{self.arch.name}"

    def ref(self, variant: str) -> str:
        return _ref(self.plat, variant, self.digest)


@dataclass(frozen=True)
class BuilderPlan:
    """The image interpreters are compiled in: rootfs + CPython's build headers."""

    defn: SuiteDefinition
    arch: Arch
    buildargs: Mapping[str, str]
    digest: str
    rootfs_key: str

    @property
    def ref(self) -> str:
        return f"{REPOSITORY}/{self.defn.policy}_{self.arch.name}-{BUILDER}:{self.digest[:12]}"


@dataclass(frozen=True)
class InterpreterPlan:
    """One source-built interpreter for one architecture; its artifact key also needs the
    sha256 of the source tarball, known once the suite's Sources index is read."""

    source: SourcePython
    arch: Arch
    builder: BuilderPlan
    spec_digest: str  # builder + package + flags

    @property
    def tag(self) -> str:
        return self.source.tag

    def artifact_key(self, source_sha256: str) -> str:
        return _digest({"spec": self.spec_digest, "source_sha256": source_sha256})


@dataclass(frozen=True)
class ImagePlan:
    """A job's image: the base plus the source-built interpreters the plan needs."""

    base: BasePlan
    pythons: tuple[str, ...]  # every /opt/python/<tag> in it, Debian's included
    interpreters: tuple[InterpreterPlan, ...]
    digest: str
    debian_venvs: tuple[tuple[str, str], ...] = ()  # (tag, executable): Debian's, as venvs

    @property
    def defn(self) -> SuiteDefinition:
        return self.base.defn

    @property
    def arch(self) -> Arch:
        return self.base.arch

    @property
    def plat(self) -> str:
        return self.base.plat

    @property
    def tag(self) -> str:
        return self.digest[:12]

    @property
    def derived(self) -> bool:
        return bool(self.interpreters or self.debian_venvs)

    def ref(self, variant: str) -> str:
        return _ref(self.plat, variant, self.digest)

    def labels(self, variant: str) -> dict[str, str]:
        return {
            "io.orch.image": "local",
            "io.orch.variant": variant,
            "io.orch.policy": self.defn.policy,
            "io.orch.arch": self.arch.name,
            "io.orch.definition": self.digest,
            "io.orch.pythons": ",".join(self.pythons),
            "io.orch.glibc": self.defn.glibc,
            "io.orch.suite": self.defn.suite,
            "io.orch.base": self.base.ref(variant),
        }


def _ref(plat: str, variant: str, digest: str) -> str:
    if variant not in VARIANTS:
        raise ConfigError(f"unknown local image variant {variant!r} (use runtime or build)")
    suffix = "-runtime" if variant == "runtime" else ""
    return f"{REPOSITORY}/{plat}{suffix}:{digest[:12]}"


def plan_image(
    arch: str, suite: str = "bullseye", pythons: tuple[str, ...] | None = None
) -> ImagePlan:
    if arch not in archs.ARCHS:
        raise ConfigError(f"unknown architecture {arch!r} (known: {', '.join(archs.ARCHS)})")
    defn = load_suite(suite)
    the_arch = archs.get(arch)
    tags = resolve_pythons(defn, arch, pythons)
    base = plan_base(defn, the_arch)
    builder = plan_builder(defn, the_arch)
    interps = tuple(
        plan_interpreter(defn.source_pythons[t], builder) for t in tags if t in defn.source_pythons
    )
    venvs = tuple((t, defn.debian_extra[t]) for t in tags if t in defn.debian_extra)
    if not interps and not venvs:
        return ImagePlan(base, tags, (), base.digest)
    spec: dict[str, object] = {
        "format": FORMAT_VERSION,
        "base": base.digest,
        "interpreters": [i.spec_digest for i in interps],
        "derived": _file_digests([f"{SCRIPTS_SUBDIR}/{DERIVED_SCRIPT}"]),
    }
    if venvs:  # only then: every image without one keeps its tag
        spec["debian_venvs"] = [list(v) for v in venvs]
    return ImagePlan(base, tags, interps, _digest(spec), venvs)


def plan_base(defn: SuiteDefinition, arch: Arch) -> BasePlan:
    args = _base_buildargs(defn, arch)
    rootfs_key = rootfs_key_for(defn.suite, arch)
    digest = _step_digest(FORMAT_VERSION, defn, arch, args, rootfs_key, base_files())
    return BasePlan(defn, arch, args, digest, rootfs_key)


def plan_builder(defn: SuiteDefinition, arch: Arch) -> BuilderPlan:
    args = {
        "SETARCH": setarch_for(arch),
        "SOURCE_PYTHON_BUILD_PACKAGES": " ".join(defn.packages.get("source_python_build", ())),
    }
    rootfs_key = rootfs_key_for(defn.suite, arch)
    digest = _step_digest(INTERPRETER_FORMAT_VERSION, defn, arch, args, rootfs_key, builder_files())
    return BuilderPlan(defn, arch, args, digest, rootfs_key)


def _step_digest(
    fmt: int,
    defn: SuiteDefinition,
    arch: Arch,
    args: Mapping[str, str],
    rootfs_key: str,
    files: list[str],
) -> str:
    """An image step's identity: its format, suite, arch, build args, root and files."""
    return _digest(
        {
            "format": fmt,
            "suite": defn.suite,
            "arch": [arch.name, arch.debian, arch.oci],
            "buildargs": dict(args),
            "rootfs": rootfs_key,
            "files": _file_digests(files),
        }
    )


def plan_interpreter(source: SourcePython, builder: BuilderPlan) -> InterpreterPlan:
    spec: dict[str, object] = {
        "format": INTERPRETER_FORMAT_VERSION,
        "builder": builder.digest,
        "tag": source.tag,
        "suite": source.suite,
        "package": source.package,
        "free_threaded": source.free_threaded,
        "script": _file_digests([f"{SCRIPTS_SUBDIR}/{CPYTHON_SCRIPT}"]),
    }
    if not archs.runs_natively(builder.arch.name):
        # Only emulated compiles use it: a native interpreter's key stays as it was.
        spec["native_pyc"] = _file_digests([f"{SCRIPTS_SUBDIR}/{NATIVE_PYC_SCRIPT}"])
    return InterpreterPlan(source, builder.arch, builder, _digest(spec))


def rootfs_key_for(suite: str, arch: Arch) -> str:
    return _digest(
        {"format": ROOTFS_FORMAT_VERSION, "suite": suite, "arch": arch.debian, "variant": "minbase"}
    )


def _base_buildargs(defn: SuiteDefinition, arch: Arch) -> dict[str, str]:
    pkgs = defn.packages
    runtime = [*pkgs.get("runtime", ()), *pkgs.get("source_python_runtime", ())]
    return {
        "SETARCH": setarch_for(arch),
        "RUNTIME_PACKAGES": " ".join(runtime),
        "DEBIAN_PYTHON": f"{defn.debian_python_tag}={defn.debian_python_exe}",
        "PIP_RUNTIME": " ".join(defn.pip.get("runtime", ())),
        "AUDITWHEEL_POLICY": defn.policy,
        "AUDITWHEEL_ARCH": arch.name,
        "BUILD_PACKAGES": " ".join(pkgs.get("build", ())),
        "PIP_BUILD": " ".join(defn.pip.get("build", ())),
        "PIP_TOOLS": " ".join(defn.pip.get("tools", ())),
        "TOOLS_PYTHON": defn.debian_python_exe,
    }


def base_files() -> list[str]:
    """The base build context (relative to images/local/); the suite's yaml feeds build args."""
    return [DOCKERFILE, *(f"{SCRIPTS_SUBDIR}/{s}" for s in BASE_SCRIPTS)]


def builder_files() -> list[str]:
    return [BUILDER_DOCKERFILE, *(f"{SCRIPTS_SUBDIR}/{s}" for s in BUILDER_SCRIPTS)]


def _file_digests(rel_paths: list[str]) -> dict[str, str]:
    base = definition_dir()
    return {rel: _file_sha256(base / rel) for rel in rel_paths}


@lru_cache(maxsize=64)
def _cached_sha256(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _file_sha256(path: Path) -> str:
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"image definition file missing: {path}") from exc
    return _cached_sha256(str(path), st.st_mtime_ns, st.st_size)


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
