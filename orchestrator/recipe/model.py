"""The recipe as frozen dataclasses: what a loaded, validated ``orch.yaml`` means.

Everything downstream (plan, deps, build, verify) reads these, never raw YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

BUILD_SYSTEMS = ("autotools", "cmake", "meson", "make", "script")


@dataclass(frozen=True)
class SourceSpec:
    """A source archive: tried URL by URL, accepted only with the given sha256."""

    urls: tuple[str, ...]
    sha256: str
    filename: str
    strip_components: int = 1
    patches: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Exports:
    """What a dependency offers to its dependents and to the project build."""

    libs: tuple[str, ...] = ()
    pkg_config: tuple[str, ...] = ()
    cmake_packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unsupported:
    """Platforms a dependency does not build on (globs over `<policy>_<arch>` tags), and why."""

    patterns: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class DependencySpec:
    """One static third-party library built from source into the dependency prefix."""

    name: str
    version: str
    source: SourceSpec
    build_system: str
    options: tuple[str, ...] = ()
    script: str = ""
    env: tuple[tuple[str, str], ...] = ()
    requires: tuple[str, ...] = ()
    exports: Exports = field(default_factory=Exports)
    origin: str = ""  # "file:line" of the definition, for messages
    network: bool = False  # the build container gets a network (off: hermetic build)
    unsupported: tuple[Unsupported, ...] = ()  # `supports`: where the plan must not build it


@dataclass(frozen=True)
class ProjectSource:
    """The Python project: a directory or an sdist, resolved to an absolute path."""

    path: Path
    kind: str  # "directory" | "sdist"


@dataclass(frozen=True)
class RepairOptions:
    plat: str | None = None  # None: the job's own policy tag
    exclude: tuple[str, ...] = ()
    enabled: bool = True
    only_plat: bool = False  # True: exactly the job's tag; default: every tag auditwheel proves


@dataclass(frozen=True)
class AuditOptions:
    """Per-recipe tuning of ``orch audit``: allowed exports and downgraded checks."""

    allow_exports: tuple[str, ...] = ()  # fnmatch patterns of symbols the project means to export
    downgrade: tuple[tuple[str, str, str], ...] = ()  # (check, new severity, reason)


@dataclass(frozen=True)
class TestOptions:
    requires: tuple[str, ...] = ()
    command: str = ""
    imports: tuple[str, ...] = ()
    coexist: tuple[str, ...] = ()  # other distributions to import alongside, both orders
    verify_images: tuple[str, ...] = ()
    # also verify in the nearest stock distribution image: when it is present (auto), always
    # (built on first use), or never
    stock_images: Literal["auto", "always", "never"] = "auto"


@dataclass(frozen=True)
class Recipe:
    path: Path  # the orch.yaml file
    name: str
    project: ProjectSource
    python: tuple[str, ...]  # "3.9", "3.11"
    platforms: tuple[str, ...]  # policy names as written: "manylinux_2_31", "manylinux2014"
    archs: tuple[str, ...]  # "x86_64", "aarch64", ...
    images: Mapping[str, str] = field(default_factory=dict)  # policy -> local | pypa | ref
    build_selectors: tuple[str, ...] = ("*",)
    skip_selectors: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    before_build: tuple[str, ...] = ()
    repair: RepairOptions = field(default_factory=RepairOptions)
    dependencies: tuple[DependencySpec, ...] = ()
    mirrors: tuple[Mapping[str, str], ...] = ()
    test: TestOptions = field(default_factory=TestOptions)
    audit: AuditOptions = field(default_factory=AuditOptions)
    origins: Mapping[str, str] = field(default_factory=dict)  # "build[0]" -> "file:line:col"

    def origin(self, name: str, index: int | None = None) -> str:
        """Where a field was written (`file:line:col`), for messages of later stages."""
        keys = ([f"{name}[{index}]"] if index is not None else []) + [name]
        return next((self.origins[k] for k in keys if k in self.origins), str(self.path))
