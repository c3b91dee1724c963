"""What a local image is made of, and the hash that names it.

A definition is the suite's ``images/local/<suite>.yaml``, the shared Dockerfile and build
scripts, the architecture and the chosen interpreters. Everything here is pure (files in,
values out): computing a tag never touches Docker, so callers can name an image before it
exists and a changed definition always gets a new tag.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from orchestrator import archs
from orchestrator.archs import Arch
from orchestrator.errors import ConfigError

# Bump when the way a definition turns into an image changes outside the hashed files.
FORMAT_VERSION = 1
ROOTFS_FORMAT_VERSION = 1
REPOSITORY = "orch-local"
VARIANTS = ("runtime", "build")
DEFINITION_SUBDIR = "local"
DOCKERFILE = "Dockerfile"
SCRIPTS_SUBDIR = "scripts"

_PY_TAG = re.compile(r"^cp(\d)(\d+)(?:-cp\d+)?$")


@dataclass(frozen=True)
class SourcePython:
    """An interpreter compiled from the upstream tarball of a Debian source package."""

    tag: str  # cp311-cp311
    suite: str  # the suite whose source package provides the tarball
    package: str  # python3.11


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
            tag: SourcePython(tag=tag, suite=str(v["suite"]), package=str(v["package"]))
            for tag, v in (raw.get("source_pythons") or {}).items()
        }
        return SuiteDefinition(
            suite=str(raw["suite"]),
            glibc=str(raw["glibc"]),
            policy=str(raw["policy"]),
            debian_python_tag=str(raw["debian_python"]["tag"]),
            debian_python_exe=str(raw["debian_python"]["executable"]),
            source_pythons=sources,
            packages={k: tuple(map(str, v)) for k, v in raw["packages"].items()},
            pip={k: tuple(map(str, v)) for k, v in raw["pip"].items()},
            path=path,
        )
    except (KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
        raise ConfigError(f"malformed image definition {path}: {exc!r}") from exc


def normalize_python(tag: str) -> str:
    """'cp311', 'cp311-cp311' and '3.11' all name cp311-cp311."""
    text = tag.strip()
    version = re.fullmatch(r"(\d)\.(\d+)", text)
    if version:
        text = f"cp{version.group(1)}{version.group(2)}"
    match = _PY_TAG.match(text)
    if not match:
        raise ConfigError(f"not a CPython tag: {tag!r} (expected e.g. cp311 or cp311-cp311)")
    short = f"cp{match.group(1)}{match.group(2)}"
    return f"{short}-{short}"


def _version_key(tag: str) -> tuple[int, int]:
    match = _PY_TAG.match(tag)
    assert match
    return int(match.group(1)), int(match.group(2))


def default_pythons(defn: SuiteDefinition, arch: str, host: str | None = None) -> tuple[str, ...]:
    """Debian's interpreter, plus the source-built ones where compiling is native.

    Compiling CPython under QEMU takes the better part of an hour, so emulated
    architectures get Debian's interpreter only unless asked for more.
    """
    tags = [defn.debian_python_tag]
    if archs.runs_natively(arch, host):
        tags += list(defn.source_pythons)
    return tuple(sorted(set(tags), key=_version_key))


def resolve_pythons(
    defn: SuiteDefinition, arch: str, pythons: tuple[str, ...] | None, host: str | None = None
) -> tuple[str, ...]:
    if pythons is None:
        return default_pythons(defn, arch, host)
    tags = sorted({normalize_python(p) for p in pythons}, key=_version_key)
    known = {defn.debian_python_tag, *defn.source_pythons}
    unknown = [t for t in tags if t not in known]
    if unknown or not tags:
        raise ConfigError(
            f"interpreters {', '.join(unknown) or '(none)'} are not available for "
            f"{defn.suite} local images (available: {', '.join(sorted(known, key=_version_key))})"
        )
    return tuple(tags)


def setarch_for(arch: Arch) -> str:
    """32-bit images run under a 32-bit personality so `uname -m` matches the userland."""
    return "linux32" if arch.bits == 32 else ""


@dataclass(frozen=True)
class ImagePlan:
    """Everything needed to build (or find) one architecture's pair of local images."""

    defn: SuiteDefinition
    arch: Arch
    pythons: tuple[str, ...]
    buildargs: Mapping[str, str]
    digest: str  # sha256 of the whole definition
    rootfs_key: str  # sha256 of what the debootstrap tarball depends on

    @property
    def tag(self) -> str:
        return self.digest[:12]

    @property
    def plat(self) -> str:
        return f"{self.defn.policy}_{self.arch.name}"

    def ref(self, variant: str) -> str:
        if variant not in VARIANTS:
            raise ConfigError(f"unknown local image variant {variant!r} (use runtime or build)")
        suffix = "-runtime" if variant == "runtime" else ""
        return f"{REPOSITORY}/{self.plat}{suffix}:{self.tag}"

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
        }


def plan_image(
    arch: str, suite: str = "bullseye", pythons: tuple[str, ...] | None = None
) -> ImagePlan:
    if arch not in archs.ARCHS:
        raise ConfigError(f"unknown architecture {arch!r} (known: {', '.join(archs.ARCHS)})")
    defn = load_suite(suite)
    the_arch = archs.get(arch)
    tags = resolve_pythons(defn, arch, pythons)
    args = _buildargs(defn, the_arch, tags)
    rootfs_key = rootfs_key_for(defn.suite, the_arch)
    digest = _digest(
        {
            "format": FORMAT_VERSION,
            "suite": defn.suite,
            "arch": [the_arch.name, the_arch.debian, the_arch.oci],
            "pythons": list(tags),
            "buildargs": dict(args),
            "rootfs": rootfs_key,
            "files": _file_digests(defn),
        }
    )
    return ImagePlan(defn, the_arch, tags, args, digest, rootfs_key)


def rootfs_key_for(suite: str, arch: Arch) -> str:
    return _digest(
        {"format": ROOTFS_FORMAT_VERSION, "suite": suite, "arch": arch.debian, "variant": "minbase"}
    )


def _buildargs(defn: SuiteDefinition, arch: Arch, tags: tuple[str, ...]) -> dict[str, str]:
    sources = [defn.source_pythons[t] for t in tags if t in defn.source_pythons]
    pkgs = defn.packages
    runtime = list(pkgs.get("runtime", ()))
    if sources:
        runtime += pkgs.get("source_python_runtime", ())
    debian = defn.debian_python_tag in tags
    return {
        "SETARCH": setarch_for(arch),
        "SOURCE_PYTHONS": " ".join(f"{s.tag}={s.suite}:{s.package}" for s in sources),
        "SOURCE_PYTHON_BUILD_PACKAGES": " ".join(pkgs.get("source_python_build", ()))
        if sources
        else "",
        "RUNTIME_PACKAGES": " ".join(runtime),
        "DEBIAN_PYTHON": f"{defn.debian_python_tag}={defn.debian_python_exe}" if debian else "",
        "PIP_RUNTIME": " ".join(defn.pip.get("runtime", ())),
        "AUDITWHEEL_POLICY": defn.policy,
        "AUDITWHEEL_ARCH": arch.name,
        "BUILD_PACKAGES": " ".join(pkgs.get("build", ())),
        "PIP_BUILD": " ".join(defn.pip.get("build", ())),
        "PIP_TOOLS": " ".join(defn.pip.get("tools", ())),
        "TOOLS_PYTHON": defn.debian_python_exe,
    }


def definition_files(defn: SuiteDefinition) -> list[Path]:
    """The files copied into the build context (the suite's yaml only feeds build args)."""
    base = definition_dir()
    scripts = sorted(p for p in (base / SCRIPTS_SUBDIR).rglob("*") if p.is_file())
    return [base / DOCKERFILE, *scripts]


def _file_digests(defn: SuiteDefinition) -> dict[str, str]:
    base = definition_dir()
    files = [*definition_files(defn), defn.path]
    return {str(p.relative_to(base)): _file_sha256(p) for p in files}


@lru_cache(maxsize=64)
def _cached_sha256(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _file_sha256(path: Path) -> str:
    st = path.stat()
    return _cached_sha256(str(path), st.st_mtime_ns, st.st_size)


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
